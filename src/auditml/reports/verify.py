"""Verify a PDF audit report offline: its seal, its embedded evidence, and that its text agrees.

:func:`verify_report` reads the file once and checks its seal
(:mod:`auditml.core.pdfseal`): every byte but the seal's own digits, to the
end of the file, must hash to the digest the seal holds. It then extracts the
evidence bundle the PDF carries, verifies it with the same offline verifier as
``auditml verify --bundle``, checks that the checkpoint printed in the report
(origin, size and root, in its text and its metadata) is the checkpoint the
bundle proves, and that the key which signed that checkpoint signed the seal.
Only the seal covers what the pages say; the text check reads the checkpoint.
Any failure raises :class:`~auditml.errors.VerificationError` with a sentence
saying which. A PDF with no seal (written before reports were sealed, or
stripped of its seal) raises one too, of kind ``unsealed``, after its evidence
verified, unless ``allow_unsealed``.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from auditml._internal.infile import open_regular
from auditml.bundle import BundleReport, verify_bundle
from auditml.core.pdfseal import Seal, check_bytes, check_signature, read_seal
from auditml.core.signing import VerifierKey
from auditml.errors import ConfigurationError, InvalidInputError, VerificationError
from auditml.reports.model import BUNDLE_NAME, REPORT_JSON

__all__ = ["MAX_REPORT_BYTES", "ReportCheck", "printed_checkpoints", "verify_report"]

#: The largest PDF read: a report of a million events with its bundle is far smaller.
MAX_REPORT_BYTES = 2 << 30

_PRINTED = re.compile(
    r"Checkpoint origin:\s*(?P<origin>\S+)\s+Checkpoint size:\s*(?P<size>[\d,]+)\s+"
    r"Checkpoint root:\s*(?P<root>[0-9a-f\s]{64,80}?)(?=\s|$)"
)
_KEYWORD = re.compile(r"checkpoint=(?P<origin>[^;,\s]+);(?P<size>\d+);(?P<root>[0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class ReportCheck:
    """What a verified report proved: its log, checkpoint, key, pages, and whether it is sealed.

    ``sealed`` is False only when ``allow_unsealed`` let a PDF without a seal
    through: its evidence verified, but nothing covers its pages.
    """

    path: str
    report_id: str | None
    origin: str
    size: int
    root: str
    vkey: str
    pages: int
    sealed: bool = True
    seal_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON values."""
        return {
            "ok": self.sealed,
            "sealed": self.sealed,
            "seal_sha256": self.seal_sha256,
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


def _read(path: Path) -> bytes:
    """Return the bytes of the regular file ``path``, read once: every check sees the same bytes.

    A device, pipe or folder is refused before it is read, and so is a file
    larger than :data:`MAX_REPORT_BYTES`.
    """
    too_big = InvalidInputError(
        f"{path} is larger than {MAX_REPORT_BYTES >> 30} GiB: no report auditml writes is "
        "that large, so it is not read"
    )
    try:
        with open_regular(path, "PDF report") as f:
            if os.fstat(f.fileno()).st_size > MAX_REPORT_BYTES:
                raise too_big
            data = f.read(MAX_REPORT_BYTES + 1)  # it may have grown since
    except FileNotFoundError:
        raise InvalidInputError(f"no report at {path}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read the report {path}: {exc.strerror}") from None
    if len(data) > MAX_REPORT_BYTES:
        raise too_big
    return data


def _reader(data: bytes, path: Path) -> Any:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise ConfigurationError("verifying a PDF report needs pypdf: pip install pypdf") from None
    try:
        reader = PdfReader(io.BytesIO(data))
        _ = len(reader.pages)
        return reader
    except Exception as exc:  # pypdf raises many types on a hostile file
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


def verify_report(
    path: str | Path, vkey: str | None = None, *, allow_unsealed: bool = False
) -> ReportCheck:
    """Verify a PDF report, its seal and the evidence it carries; raise VerificationError if not.

    ``vkey`` pins the log's verifier key, as for ``auditml verify --bundle``; the
    seal must be by the key that signed the evidence's checkpoint. A PDF with no
    seal raises VerificationError (kind ``unsealed``) after its evidence
    verified, unless ``allow_unsealed``: then the result says ``sealed=False``.
    """
    source = Path(path)
    whole = _read(source)
    try:
        seal = read_seal(whole)  # several seals, or a damaged one, fail before anything is parsed
        changed = None
        if seal is not None:
            try:
                check_bytes(whole, seal)
            except VerificationError as exc:
                changed = exc
    except VerificationError as exc:
        raise VerificationError(f"{source}: {exc}", kind=exc.kind) from None
    try:
        check = _evidence(whole, source, vkey)
    except VerificationError as exc:
        if changed is None:
            raise
        # The changed bytes explain what failed next: say both, the seal first.
        raise VerificationError(f"{source}: {changed}; besides, {exc}", kind="seal") from None
    if changed is not None:
        raise VerificationError(f"{source}: {changed}", kind="seal")
    return _sealed(seal, check, allow_unsealed)


def _evidence(whole: bytes, source: Path, vkey: str | None) -> ReportCheck:
    """Verify the embedded evidence, and that the checkpoint the PDF prints is the one it proves."""
    reader = _reader(whole, source)
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
    try:
        keywords = str((reader.metadata or {}).get("/Keywords") or "")
    except Exception as exc:  # pypdf raises many types on a damaged information dictionary
        raise VerificationError(
            f"the metadata of {source} cannot be read ({exc})", kind="format"
        ) from None
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


def _sealed(seal: Seal | None, check: ReportCheck, allow_unsealed: bool) -> ReportCheck:
    """Check the seal's signature with the evidence's key; return the result saying it is sealed."""
    source = check.path
    if seal is None:
        if allow_unsealed:
            return replace(check, sealed=False)
        raise VerificationError(
            f"{source} carries no seal, so its printed pages are not covered: nothing shows "
            "they are the pages it was written with. Its embedded evidence verifies offline "
            f"({check.size:,} events of log {check.origin!r}, root {check.root}) and the "
            "checkpoint it prints is the one that evidence proves, but any page of an unsealed "
            "PDF can be changed unseen (it was written before auditml sealed its reports, or "
            "its seal was removed). Write the report again with `auditml report` for a "
            "sealed copy",
            kind="unsealed",
        )
    try:
        check_signature(seal, check.origin, VerifierKey.parse(check.vkey))
    except VerificationError as exc:
        raise VerificationError(f"{source}: {exc}", kind=exc.kind) from None
    return replace(check, sealed=True, seal_sha256=seal.digest_hex)
