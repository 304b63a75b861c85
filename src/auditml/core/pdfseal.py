"""Seal a whole file with the log key, the way a PDF signature's ByteRange does (pure, no I/O).

A sealed file holds one placeholder, found by its marker: :data:`MARKER`
followed by :data:`HEX_LEN` hex digits. Sealing hashes every byte of the file
except those hex digits (SHA-256, the marker included), signs a statement of
that digest with the log key as a C2SP signed note (the scheme the log's
checkpoints use, :mod:`auditml.core.signing`) and writes the file's length,
the digest and the signature into the digits::

    <origin>
    auditml.pdf-seal/v1
    bytes <length> except <offset>+216
    sha256 <digest hex>

The statement names the covered range, so the range runs to the end of the
file as sealed: a byte appended afterwards (an incremental update) is outside
it and the seal fails, as does any byte changed anywhere else. Its second line
is no number, so it can never be read as a checkpoint, nor a checkpoint as a seal.

Which file holds the placeholder, and where, is the writer's business
(:mod:`auditml.reports.pdf` puts it in an uncompressed attachment of the
PDF); this module sees bytes only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from auditml.core.signing import SIG_PREFIX, Signer, VerifierKey, open_note, sign_note
from auditml.errors import InvalidInputError, VerificationError

__all__ = [
    "BLANK",
    "HEX_LEN",
    "MARKER",
    "Seal",
    "check_bytes",
    "check_seal",
    "check_signature",
    "find_seal",
    "placeholder",
    "read_seal",
    "seal_bytes",
    "seal_statement",
]

#: What precedes the placeholder's hex digits; a sealed file holds it exactly once.
MARKER = b"AUDITML-PDF-SEAL/1:"
#: The file's length (8 bytes), the digest (32), the key ID (4) and the signature (64), as hex.
HEX_LEN = 2 * (8 + 32 + 4 + 64)
#: The placeholder's digits before the file is sealed.
BLANK = b"0" * HEX_LEN
STATEMENT = "auditml.pdf-seal/v1"
_HEX = re.compile(rb"[0-9a-f]*")


@dataclass(frozen=True, slots=True)
class Seal:
    """A seal as read from a file: where its digits are, and what they say."""

    offset: int  # of the first hex digit
    length: int  # of the whole file when it was sealed
    digest: bytes  # SHA-256 of every byte but the digits
    key_id: bytes
    signature: bytes

    @property
    def digest_hex(self) -> str:
        """Return the sealed digest as lowercase hex."""
        return self.digest.hex()


def placeholder() -> bytes:
    """Return the text a writer embeds uncompressed, once, where the seal will go."""
    return (
        b"auditml seal: the SHA-256 of every byte of this PDF except the hex digits below,\n"
        b"signed with the log key. Check it with: auditml verify <this file>\n"
        + MARKER
        + BLANK
        + b"\n"
    )


def seal_statement(origin: str, offset: int, length: int, digest: bytes) -> str:
    """Return the text the log key signs: the log, the covered range and its digest."""
    return (
        f"{origin}\n{STATEMENT}\nbytes {length} except {offset}+{HEX_LEN}\nsha256 {digest.hex()}\n"
    )


def _digest(data: bytes, offset: int) -> bytes:
    sha = hashlib.sha256()
    view = memoryview(data)
    sha.update(view[:offset])
    sha.update(view[offset + HEX_LEN :])
    return sha.digest()


def find_seal(data: bytes) -> int | None:
    """Return the offset of the one placeholder's digits, None if there is none.

    Raises VerificationError when the marker occurs more than once: which one
    counts would be ambiguous.
    """
    first = data.find(MARKER)
    if first < 0:
        return None
    count = data.count(MARKER)
    if count > 1:
        raise VerificationError(
            f"the file holds {count} seals (the marker {MARKER.decode()} occurs {count} times), "
            "but a sealed report holds exactly one: seals were added to it after it was written",
            kind="seal",
        )
    return first + len(MARKER)


def seal_bytes(data: bytes, origin: str, signer: Signer) -> bytes:
    """Return ``data`` with its one blank placeholder filled: its length, digest and signature."""
    try:
        offset = find_seal(data)
    except VerificationError as exc:
        raise InvalidInputError(f"cannot seal the file: {exc}") from None
    if offset is None or data[offset : offset + HEX_LEN] != BLANK:
        raise InvalidInputError(
            "cannot seal the file: it holds no blank seal placeholder "
            f"({MARKER.decode()} and {HEX_LEN} zeros)"
        )
    digest = _digest(data, offset)
    note = sign_note(seal_statement(origin, offset, len(data), digest), origin, signer)
    line = note.rstrip("\n").rsplit("\n", 1)[1]
    raw = base64.b64decode(line.rsplit(" ", 1)[1])  # key ID and signature, 68 bytes
    fields = (len(data).to_bytes(8, "big") + digest + raw).hex().encode()
    assert len(fields) == HEX_LEN
    return data[:offset] + fields + data[offset + HEX_LEN :]


def read_seal(data: bytes) -> Seal | None:
    """Return the file's seal, None when it has no marker; raise if the seal is malformed."""
    offset = find_seal(data)
    if offset is None:
        return None
    digits = data[offset : offset + HEX_LEN]
    if len(digits) < HEX_LEN:
        raise VerificationError(
            "the file ends inside its seal: it was cut short after it was sealed",
            kind="seal",
        )
    if digits == BLANK:
        raise VerificationError(
            "the file's seal is blank: it was never sealed (its writer stopped before sealing "
            "it), so nothing covers its pages",
            kind="seal",
        )
    if _HEX.fullmatch(digits) is None:
        raise VerificationError(
            f"the file's seal is not {HEX_LEN} lowercase hex digits after {MARKER.decode()}: "
            "it was damaged or edited",
            kind="seal",
        )
    raw = binascii.unhexlify(digits)
    return Seal(
        offset=offset,
        length=int.from_bytes(raw[:8], "big"),
        digest=raw[8:40],
        key_id=raw[40:44],
        signature=raw[44:],
    )


_CHANGED = "the PDF's bytes changed since it was sealed"
_CONSEQUENCE = "its pages may show something the evidence does not"


def check_bytes(data: bytes, seal: Seal) -> None:
    """Raise VerificationError unless ``seal`` covers every byte of ``data``, to its end.

    This needs no key: it says whether the file is the one the seal's digest
    names. :func:`check_signature` then says whether the log key signed it.
    """
    if len(data) > seal.length:
        raise VerificationError(
            f"{_CHANGED}: it is {len(data) - seal.length:,} byte(s) longer than when sealed "
            f"(at byte {seal.length:,}): bytes were appended after its sealed end (an "
            "incremental update) or the file was written again (a re-save), and the seal does "
            f"not cover that: {_CONSEQUENCE}",
            kind="seal",
        )
    if len(data) < seal.length:
        raise VerificationError(
            f"{_CHANGED}: it is {len(data):,} bytes long, but it was sealed at "
            f"{seal.length:,} bytes: it was cut short or rewritten, and {_CONSEQUENCE}",
            kind="seal",
        )
    found = _digest(data, seal.offset)
    if found != seal.digest:
        raise VerificationError(
            f"{_CHANGED}: {_CONSEQUENCE} (the SHA-256 of its bytes is {found.hex()}, but its "
            f"seal says {seal.digest.hex()})",
            kind="seal",
        )


def check_signature(seal: Seal, origin: str, key: VerifierKey) -> None:
    """Raise VerificationError unless ``key``, the key of the log ``origin``, signed ``seal``."""
    if key.name != origin:
        raise VerificationError(
            f"the seal must be by the key of the log {origin!r}, but the key given is named "
            f"{key.name!r}",
            kind="seal",
        )
    body = seal_statement(origin, seal.offset, seal.length, seal.digest)
    encoded = base64.b64encode(seal.key_id + seal.signature).decode()
    note = f"{body}\n{SIG_PREFIX}{origin} {encoded}\n"
    try:
        open_note(note, [key])
    except VerificationError:
        raise VerificationError(
            f"the PDF's seal is not signed by the log key {key}: the file was sealed again by "
            f"someone else after it was changed, or its seal was forged; {_CONSEQUENCE}",
            kind="seal",
        ) from None


def check_seal(data: bytes, seal: Seal, origin: str, key: VerifierKey) -> None:
    """Raise VerificationError unless ``seal`` covers all of ``data`` and the log key signed it."""
    check_bytes(data, seal)
    check_signature(seal, origin, key)
