"""HTML to PDF with WeasyPrint: the only module that imports it.

Cards and reports render HTML from the same templates as their HTML format,
then print it here with the templates' paged CSS. Metadata (title, author,
subject, keywords) come from the HTML head; attachments are embedded files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from auditml.errors import ConfigurationError

__all__ = ["Attachment", "html_to_pdf"]


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF."""

    name: str
    data: bytes
    description: str
    relationship: str = "Data"  # PDF/A-3 AFRelationship: Source, Data, Supplement, …


def html_to_pdf(
    html: str,
    *,
    base_url: Path,
    attachments: Sequence[Attachment] = (),
    variant: str | None = None,
    custom_metadata: bool = False,
) -> bytes:
    """Return the PDF bytes of ``html``; ``variant`` is e.g. ``pdf/a-3b``.

    ``custom_metadata`` also copies the HTML head's other ``<meta>`` fields
    into the PDF's document information.
    """
    try:
        import weasyprint
    except ImportError:
        raise ConfigurationError(
            "PDF output needs WeasyPrint: pip install 'auditml[pdf]' "
            "(and the Pango library it uses, see weasyprint.org)"
        ) from None
    except OSError as exc:  # WeasyPrint is installed but a system library is missing
        raise ConfigurationError(f"WeasyPrint cannot start: {exc}") from None
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    now = datetime.now(UTC)
    files = [
        weasyprint.Attachment(
            string=a.data,
            name=a.name,
            description=a.description,
            created=now,
            modified=now,
            relationship=a.relationship,
        )
        for a in attachments
    ]
    document = weasyprint.HTML(string=html, base_url=str(base_url))
    pdf = document.write_pdf(
        attachments=files or None, pdf_variant=variant, custom_metadata=custom_metadata
    )
    assert isinstance(pdf, bytes)
    return pdf
