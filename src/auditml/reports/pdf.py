"""Print the report's HTML to a PDF/A-3b (through the WeasyPrint edge, ``_internal.pdf``).

The PDF has running headers and footers (report id, "page X of Y", generated
at, UTC), a table of contents with page numbers, a bookmark per section, the
metadata fields title, author, subject and keywords, and the evidence bundle
of the report's scope (docs/format.md section 5) embedded as an attachment, so the
file alone carries its proof: ``auditml verify report.pdf`` re-checks it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from auditml._internal.output import check_output, write_output
from auditml._internal.pdf import Attachment
from auditml._internal.pdf import html_to_pdf as pdf_bytes
from auditml._internal.templates import packaged_templates
from auditml.errors import InvalidInputError
from auditml.reports.model import AuditReport
from auditml.reports.render import render_html

if TYPE_CHECKING:
    from auditml.log import AuditLog

__all__ = ["BUNDLE_NAME", "REPORT_JSON", "html_to_pdf", "write_pdf_report"]

#: The name of the embedded evidence bundle inside every PDF report.
BUNDLE_NAME = "evidence-bundle.zip"
#: The report's own data, embedded beside the bundle for machines.
REPORT_JSON = "audit-report.json"


def html_to_pdf(html: str, report: AuditReport, *, bundle: Path) -> bytes:
    """Return the PDF/A-3b bytes of the report's ``html``, with ``bundle`` embedded."""
    try:
        data = Path(bundle).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the evidence bundle {bundle}: {exc}") from None
    attachments = [
        Attachment(
            name=BUNDLE_NAME,
            data=data,
            description=(
                f"Evidence bundle (auditml docs/format.md section 5) of log {report.origin}, "
                f"{report.checkpoint.size} events, root {report.checkpoint.root}"
            ),
            relationship="Source",
        ),
        Attachment(
            name=REPORT_JSON,
            data=report.model_dump_json(indent=2).encode(),
            description="This report's content as JSON",
        ),
    ]
    return pdf_bytes(
        html,
        base_url=packaged_templates(),
        attachments=attachments,
        variant="pdf/a-3b",
        custom_metadata=True,
    )


def write_pdf_report(
    log: AuditLog,
    report: AuditReport,
    out: Path,
    *,
    paper: str = "a4",
    templates: Path | None = None,
    force: bool = False,
) -> Path:
    """Export the report's evidence bundle, print the report with it embedded, write ``out``.

    ``out`` is never one of the log's own files or a link; an existing file is
    replaced only with ``force``.
    """
    protect = log._own_files()
    check_output(out, force=force, protect=protect)  # before the slow print
    html = render_html(report, templates=templates, paper=paper, for_pdf=True)
    with tempfile.TemporaryDirectory(prefix="auditml-report-") as tmp:
        bundle = log.export(Path(tmp) / BUNDLE_NAME, size=report.checkpoint.size)
        data = html_to_pdf(html, report, bundle=bundle)
    return write_output(out, data, force=force, protect=protect)
