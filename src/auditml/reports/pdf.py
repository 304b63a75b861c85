"""Write a PDF/A-3b audit report: export its evidence bundle, print it, write the file.

The PDF has running headers and footers (report id, "page X of Y", generated
at, UTC), a table of contents with page numbers, a bookmark per section, the
metadata fields title, author, subject and keywords, and the evidence bundle
of the report's scope (docs/format.md section 5) embedded as an attachment, so the
file alone carries its proof: ``auditml verify report.pdf`` re-checks it. The
printing itself is :func:`auditml.reports.render.html_to_pdf`; this module only
adds the log (the bundle's export) and the file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from auditml._internal.output import check_output, write_output
from auditml.reports.model import BUNDLE_NAME, REPORT_JSON, AuditReport
from auditml.reports.render import html_to_pdf, render_html

if TYPE_CHECKING:
    from auditml.log import AuditLog

__all__ = ["BUNDLE_NAME", "REPORT_JSON", "html_to_pdf", "write_pdf_report"]


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
