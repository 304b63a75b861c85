"""Verify a PDF audit report offline: its embedded evidence, and that its text agrees with it.

:func:`verify_report` extracts the evidence bundle the PDF carries, verifies
it with the same offline verifier as ``auditml verify --bundle``, and checks
that the checkpoint printed in the report (origin, size and root, in its text
and its metadata) is the checkpoint the bundle proves. Any disagreement raises
:class:`~auditml.errors.VerificationError` with a sentence saying which.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditml._internal.infile import open_regular
from auditml.bundle import BundleReport, verify_bundle
from auditml.errors import ConfigurationError, InvalidInputError, VerificationError
from auditml.reports.model import BUNDLE_NAME, REPORT_JSON

__all__ = ["ReportCheck", "printed_checkpoints", "verify_report"]

_PRINTED = re.compile(
    r"Checkpoint origin:\s*(?P<origin>\S+)\s+Checkpoint size:\s*(?P<size>[\d,]+)\s+"
    r"Checkpoint root:\s*(?P<root>[0-9a-f\s]{64,80}?)(?=\s|$)"
)
_KEYWORD = re.compile(r"checkpoint=(?P<origin>[^;,\s]+);(?P<size>\d+);(?P<root>[0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class ReportCheck:
    """What a verified report proved: its log, checkpoint, key, and how many pages were read."""

    path: str
    report_id: str | None
    origin: str
    size: int
    root: str
    vkey: str
    pages: int

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON values."""
        return {
            "ok": True,
            "path": self.path,
            "report_id": self.report_id,
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "vkey": self.vkey,
            "pages": self.pages,
        }


def printed_checkpoints(text: str) -> list[tuple[str, int, str]]:
    """Return every (origin, size, root) the report's text prints, in order."""
    found = []
    for match in _PRINTED.finditer(text):
        root = re.sub(r"\s+", "", match["root"])[:64]
        found.append((match["origin"], int(match["size"].replace(",", "")), root))
    return found


def _reader(path: Path) -> Any:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise ConfigurationError("verifying a PDF report needs pypdf: pip install pypdf") from None
    try:
        with open_regular(path, "PDF report") as file:
            data = file.read()  # as pypdf reads a path: the whole file, at once
    except FileNotFoundError:
        raise InvalidInputError(f"no report at {path}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read the report {path}: {exc.strerror}") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        _ = len(reader.pages)
        return reader
    except (PyPdfError, OSError, ValueError, KeyError) as exc:
        raise VerificationError(f"{path} is not a readable PDF ({exc})", kind="format") from None


def _attachment(reader: Any, path: Path, name: str, required: bool = True) -> bytes | None:
    try:
        found = reader.attachments.get(name)
    except Exception as exc:  # pypdf raises many types on a damaged name tree
        raise VerificationError(
            f"{path}: its embedded files cannot be read ({exc})", kind="format"
        ) from None
    if not found:
        if required:
            raise VerificationError(
                f"{path} carries no {name}: it is not an auditml PDF report, or its evidence "
                "was removed",
                kind="format",
            )
        return None
    if len(found) > 1:
        raise VerificationError(
            f"{path} carries {len(found)} files named {name}; a report carries exactly one",
            kind="format",
        )
    data: bytes = found[0]
    return data


def _compare(where: str, printed: tuple[str, int, str], proven: BundleReport) -> None:
    origin, size, root = printed
    if origin != proven.origin:
        raise VerificationError(
            f"{where} prints the checkpoint origin {origin!r}, but the embedded evidence is "
            f"of the log {proven.origin!r}: the report and its evidence disagree",
            kind="report",
        )
    if size != proven.size:
        raise VerificationError(
            f"{where} prints a checkpoint of {size:,} events, but the embedded evidence's "
            f"signed checkpoint covers {proven.size:,}: the report and its evidence disagree",
            kind="report",
        )
    if root != proven.root:
        raise VerificationError(
            f"{where} prints the checkpoint root {root}, but the embedded evidence's signed "
            f"root is {proven.root}: the report and its evidence disagree",
            kind="report",
        )


def verify_report(path: str | Path, vkey: str | None = None) -> ReportCheck:
    """Verify a PDF report and the evidence it carries; raise VerificationError if not intact.

    ``vkey`` pins the log's verifier key, as for ``auditml verify --bundle``.
    """
    source = Path(path)
    reader = _reader(source)
    bundle = _attachment(reader, source, BUNDLE_NAME)
    assert bundle is not None
    with tempfile.TemporaryDirectory(prefix="auditml-verify-") as tmp:
        zipped = Path(tmp) / BUNDLE_NAME
        zipped.write_bytes(bundle)
        try:
            proven = verify_bundle(zipped, vkey)
        except VerificationError as exc:
            raise VerificationError(
                f"the evidence bundle embedded in {source} does not verify: {exc}",
                kind=exc.kind,
            ) from None
        except InvalidInputError as exc:
            raise VerificationError(
                f"the evidence bundle embedded in {source} is not a bundle: {exc}",
                kind="format",
            ) from None
    try:
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception as exc:  # pypdf raises many types on a damaged content stream
        raise VerificationError(
            f"the text of {source} cannot be read ({exc})", kind="format"
        ) from None
    printed = printed_checkpoints(text)
    if not printed:
        raise VerificationError(
            f"{source} prints no checkpoint (origin, size and root) in its text, so nothing "
            "ties what it says to the evidence it carries",
            kind="report",
        )
    for found in printed:
        _compare(f"the text of {source}", found, proven)
    keywords = str((reader.metadata or {}).get("/Keywords") or "")
    for match in _KEYWORD.finditer(keywords):
        found_kw = (match["origin"], int(match["size"]), match["root"])
        _compare(f"the metadata (keywords) of {source}", found_kw, proven)
    report_id = None
    raw = _attachment(reader, source, REPORT_JSON, required=False)
    if raw is not None:
        try:
            data = json.loads(raw)
            cp = data["checkpoint"]
            report_id = str(data.get("report_id"))
            found_js = (str(cp["origin"]), int(cp["size"]), str(cp["root"]))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise VerificationError(
                f"the {REPORT_JSON} embedded in {source} is not a report ({exc})", kind="format"
            ) from None
        _compare(f"the {REPORT_JSON} embedded in {source}", found_js, proven)
    return ReportCheck(
        path=str(source),
        report_id=report_id,
        origin=proven.origin,
        size=proven.size,
        root=proven.root,
        vkey=proven.vkey,
        pages=len(reader.pages),
    )
