"""HTML to PDF with WeasyPrint: the only module that imports it.

Cards and reports render HTML from the same templates as their HTML format,
then print it here with the templates' paged CSS. Metadata (title, author,
subject, keywords) come from the HTML head; attachments are embedded files.
An attachment can be kept uncompressed (``compress=False``) so that its bytes
appear in the file as given: a seal placeholder is found and filled that way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditml.errors import ConfigurationError

__all__ = ["Attachment", "html_to_pdf"]


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF."""

    name: str
    data: bytes
    description: str
    relationship: str = "Data"  # PDF/A-3 AFRelationship: Source, Data, Supplement, …
    compress: bool = True
    mime: str = "application/octet-stream"  # of an uncompressed attachment


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
    raw = [a for a in attachments if not a.compress]
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
        if a.compress
    ]
    document = weasyprint.HTML(string=html, base_url=str(base_url))
    pdf = document.write_pdf(
        attachments=files or None,
        pdf_variant=variant,
        custom_metadata=custom_metadata,
        finisher=(lambda _doc, out: _embed_uncompressed(out, raw, now)) if raw else None,
    )
    assert isinstance(pdf, bytes)
    return pdf


def _embed_uncompressed(pdf: Any, attachments: Sequence[Attachment], now: datetime) -> None:
    """Add ``attachments`` to WeasyPrint's document as embedded files whose streams stay raw.

    Runs as WeasyPrint's finisher, after it has listed its own attachments in the
    catalog (and in ``/AF`` for PDF/A-3), before the file is written. A stream is
    never put in a compressed object stream, so its bytes appear in the file as given.
    """
    import pydyf

    stamp = pydyf.String(now.strftime("D:%Y%m%d%H%M%SZ"))
    if "Names" not in pdf.catalog:
        pdf.catalog["Names"] = pydyf.Dictionary()
    if "EmbeddedFiles" in pdf.catalog["Names"]:
        reference = pdf.catalog["Names"]["EmbeddedFiles"]  # b"12 0 R"
        names = pdf.objects[int(bytes(reference).split()[0])]
    else:
        names = pydyf.Dictionary({"Names": pydyf.Array()})
        pdf.add_object(names)
        pdf.catalog["Names"]["EmbeddedFiles"] = names.reference
    if "AF" not in pdf.catalog:
        pdf.catalog["AF"] = pydyf.Array()
    for attachment in attachments:
        stream = pydyf.Stream(
            [attachment.data],
            pydyf.Dictionary(
                {
                    "Type": "/EmbeddedFile",
                    "Subtype": "/" + attachment.mime.replace("/", "#2f"),
                    "Params": pydyf.Dictionary(
                        {"Size": len(attachment.data), "CreationDate": stamp, "ModDate": stamp}
                    ),
                }
            ),
            compress=False,
        )
        pdf.add_object(stream)
        spec = pydyf.Dictionary(
            {
                "Type": "/Filespec",
                "F": pydyf.String(attachment.name.encode()),
                "UF": pydyf.String(attachment.name),
                "EF": pydyf.Dictionary({"F": stream.reference}),
                "Desc": pydyf.String(attachment.description),
                "AFRelationship": f"/{attachment.relationship}",
            }
        )
        pdf.add_object(spec)
        names["Names"].append(pydyf.String(attachment.name.encode()))
        names["Names"].append(spec.reference)
        pdf.catalog["AF"].append(spec.reference)
