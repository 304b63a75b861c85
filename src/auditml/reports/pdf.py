"""Print the report's HTML to a PDF/A-3b with WeasyPrint: the only module that imports it.

The PDF has running headers and footers (report id, "page X of Y", generated
at, UTC), a table of contents with page numbers, a bookmark per section, the
metadata fields title, author, subject and keywords, and the evidence bundle
of the report's scope (FORMAT.md section 5) embedded as an attachment, so the
file alone carries its proof: ``auditml verify report.pdf`` re-checks it.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from auditml.errors import ConfigurationError, InvalidInputError
from auditml.reports.model import AuditReport
from auditml.reports.render import packaged_templates, render_html, write_output

if TYPE_CHECKING:
    from auditml.ledger import AuditLog

__all__ = ["BUNDLE_NAME", "REPORT_JSON", "html_to_pdf", "write_pdf_report"]

#: The name of the embedded evidence bundle inside every PDF report.
BUNDLE_NAME = "evidence-bundle.zip"
#: The report's own data, embedded beside the bundle for machines.
REPORT_JSON = "audit-report.json"


def html_to_pdf(html: str, report: AuditReport, *, bundle: Path) -> bytes:
    """Return the PDF/A-3b bytes of the report's ``html``, with ``bundle`` embedded."""
    try:
        import weasyprint  # type: ignore[import-untyped]  # ships no type information
    except ImportError:
        raise ConfigurationError(
            "PDF reports need WeasyPrint: pip install 'auditml[pdf]' (it also needs the Pango "
            "library; see weasyprint.org)"
        ) from None
    except OSError as exc:  # pragma: no cover - installed, but a system library is missing
        raise ConfigurationError(f"WeasyPrint cannot start: {exc}") from None
    try:
        data = Path(bundle).read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read the evidence bundle {bundle}: {exc}") from None
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    now = datetime.now(UTC)
    attachments = [
        weasyprint.Attachment(
            string=data,
            name=BUNDLE_NAME,
            description=(
                f"Evidence bundle (auditml FORMAT.md section 5) of log {report.origin}, "
                f"{report.checkpoint.size} events, root {report.checkpoint.root}"
            ),
            created=now,
            modified=now,
            relationship="Source",
        ),
        weasyprint.Attachment(
            string=report.model_dump_json(indent=2).encode(),
            name=REPORT_JSON,
            description="This report's content as JSON",
            created=now,
            modified=now,
            relationship="Data",
        ),
    ]
    document = weasyprint.HTML(string=html, base_url=str(packaged_templates())).render()
    out: bytes = document.write_pdf(
        attachments=attachments,
        pdf_variant="pdf/a-3b",
        custom_metadata=True,
    )
    return out


def write_pdf_report(
    log: AuditLog,
    report: AuditReport,
    out: Path,
    *,
    paper: str = "a4",
    templates: Path | None = None,
) -> Path:
    """Export the report's evidence bundle, print the report with it embedded, write ``out``."""
    html = render_html(report, templates=templates, paper=paper)
    with tempfile.TemporaryDirectory(prefix="auditml-report-") as tmp:
        bundle = log.export(Path(tmp) / BUNDLE_NAME, size=report.checkpoint.size)
        data = html_to_pdf(html, report, bundle=bundle)
    return write_output(out, data)
