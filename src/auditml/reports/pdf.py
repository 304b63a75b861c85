"""Write a PDF/A-3b audit report: export its evidence bundle, print it, write the file.

The PDF has running headers and footers (report id, "page X of Y", generated
at, UTC), a table of contents with page numbers, a bookmark per section, the
metadata fields title, author, subject and keywords, and the evidence bundle
of the report's scope (docs/format.md section 5) embedded as an attachment, so the
file alone carries its proof: ``auditml verify report.pdf`` re-checks it.

The written file is sealed as a PDF signature's ByteRange seals it: an
uncompressed attachment (``auditml-seal.txt``) holds a placeholder, and every
other byte of the final file is hashed and signed with the log key
(:mod:`auditml.core.pdfseal`), so a page, font, annotation, metadata field or
attachment changed afterwards, or an update appended, fails verification.
The printing itself is :func:`auditml.reports.render.html_to_pdf`; this module
adds the log (the bundle's export and its key) and the file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from auditml._internal.output import check_output, write_output
from auditml.core.pdfseal import check_seal, read_seal, seal_bytes
from auditml.core.signing import Signer, VerifierKey
from auditml.errors import ConfigurationError
from auditml.reports.model import BUNDLE_NAME, REPORT_JSON, AuditReport
from auditml.reports.render import html_to_pdf, render_html

if TYPE_CHECKING:
    from auditml.log import AuditLog

__all__ = ["BUNDLE_NAME", "REPORT_JSON", "html_to_pdf", "seal_signer", "write_pdf_report"]


def seal_signer(log: AuditLog) -> Signer:
    """Return the log key's signer that seals a PDF report; raise ConfigurationError if absent."""
    try:
        return log._log_signer()
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"a PDF report is sealed with the log key, so that no page can be changed unseen, "
            f"and the key is unavailable: {exc}. Make it available, or write the report as "
            "HTML, Markdown or JSON (--format), which carry no evidence of their own"
        ) from None


def write_pdf_report(
    log: AuditLog,
    report: AuditReport,
    out: Path,
    *,
    paper: str = "a4",
    templates: Path | None = None,
    force: bool = False,
) -> Path:
    """Export the evidence bundle, print the report with it embedded, seal it, write ``out``.

    The seal needs the log key (``$AUDITML_LOG_KEY``, ``$AUDITML_KEY_PASSPHRASE``):
    without it ConfigurationError is raised before anything is printed or written.
    ``out`` is never one of the log's own files or a link; an existing file is
    replaced only with ``force``.
    """
    protect = log._own_files()
    check_output(out, force=force, protect=protect)  # before the slow print
    signer = seal_signer(log)  # before the slow print too
    html = render_html(report, templates=templates, paper=paper, for_pdf=True)
    with tempfile.TemporaryDirectory(prefix="auditml-report-") as tmp:
        bundle = log.export(Path(tmp) / BUNDLE_NAME, size=report.checkpoint.size)
        data = seal_bytes(
            html_to_pdf(html, report, bundle=bundle, sealable=True), log.origin, signer
        )
    seal = read_seal(data)  # the file as written must verify: never write a seal that fails
    assert seal is not None
    check_seal(data, seal, log.origin, VerifierKey.of(log.origin, signer))
    return write_output(out, data, force=force, protect=protect)
