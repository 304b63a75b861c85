"""Ed25519 keys, C2SP signed notes and checkpoints, and people's e-signatures (pure, no database).

The log's checkpoints follow docs/format.md section 4: the C2SP ``tlog-checkpoint``
body (origin, size, base64 root) signed as a C2SP ``signed-note``. The log's
key name is its origin; the key ID is ``SHA-256(name || 0x0A || 0x01 ||
public key)[:4]`` and the verifier key is ``<name>+<key ID hex>+<base64(0x01
|| public key)>``.

People sign decisions (21 CFR Part 11) with keys of their own: the signature
is over the JCS bytes of a statement naming the log, the action, the model,
version and artifact digest, the meaning, the signer's id and printed name,
the time and a nonce (:func:`esig_statement`), so it cannot be moved to any
other record.

Private keys live behind the small :class:`Signer` protocol, so a KMS or an HSM
can stand in for the PEM files of :class:`FileSigner`. Private key material
never appears in a message, a ``repr`` or an error. Reading and writing key
files is :mod:`auditml._internal.keyfiles`' work; this module touches no file
and reads no clock (a signature's time is given by the caller).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from auditml.core.canonical import canonical_bytes
from auditml.core.events import ESignature
from auditml.errors import InvalidInputError, VerificationError

# Ed25519 is loaded when a key signs or a signature is checked: a decision that does
# neither (most do) does not pay for it (issue 20).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "FileSigner",
    "Signer",
    "VerifierKey",
    "checkpoint_body",
    "esig_statement",
    "fingerprint",
    "key_id",
    "make_esignature",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "sign_checkpoint",
    "sign_note",
    "verify_esignature",
]

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # an em dash and a space start every signature line
ESIG_TYPE = "auditml.esignature/v1"
_NAME = re.compile(r"^[^\s+]+$")
_MAX_NOTE = 1 << 20


@runtime_checkable
class Signer(Protocol):
    """Something that signs with an Ed25519 key: a PEM file, a KMS or an HSM."""

    @property
    def public_key(self) -> bytes:
        """Return the raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        ...


class FileSigner:
    """A signer holding an Ed25519 private key in memory, labelled with the file it came from.

    :func:`auditml._internal.keyfiles.load_signer` and ``generate_key_file`` read
    and write the PEM file (PKCS#8, optionally passphrase-encrypted); ``path`` is
    only where the key came from, for ``repr``. Without one, the key lives only here.
    """

    def __init__(self, key: Ed25519PrivateKey, path: str | None = None) -> None:
        from cryptography.hazmat.primitives import serialization

        self._key = key
        self.path = path
        self._public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def __repr__(self) -> str:
        return f"FileSigner(path={str(self.path)!r}, key={fingerprint(self._public)[:16]}…)"

    @property
    def public_key(self) -> bytes:
        """Return the raw 32-byte public key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with the private key."""
        return self._key.sign(message)


def fingerprint(public_key: bytes) -> str:
    """Return the hex SHA-256 of a raw public key: how the key registry names a person's key."""
    return hashlib.sha256(public_key).hexdigest()


# -- verifier keys and signed notes (C2SP signed-note) -------------------------------


def _check_name(name: str) -> str:
    if not name or not _NAME.match(name) or not name.isprintable():
        raise InvalidInputError(
            f"key name {name!r} is not usable in a signed note: it must be non-empty, "
            "printable, and hold no spaces or '+'"
        )
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte C2SP key ID of an Ed25519 key named ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A named Ed25519 public key, as written ``<name>+<key ID hex>+<base64(0x01 || key)>``."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte key ID."""
        return key_id(self.name, self.public_key)

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def of(cls, name: str, signer: Signer) -> VerifierKey:
        """Return the verifier key of ``signer`` under ``name``."""
        return cls(_check_name(name), signer.public_key)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse a verifier key line, checking its key ID; raise InvalidInputError if malformed."""
        line = text.strip()
        parts = line.split("+", 2)  # the name has no '+'; base64 may
        if len(parts) != 3 or not parts[0]:
            raise InvalidInputError(
                f"a verifier key has the form <name>+<key ID hex>+<base64 key>, not {line[:80]!r}"
            )
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise InvalidInputError(
                f"the verifier key for {name!r} is not valid hex and base64"
            ) from None
        if len(wanted) != 4 or len(raw) != 33 or raw[0] != ALG_ED25519:
            raise InvalidInputError(
                f"the verifier key for {name!r} is not an Ed25519 key (4-byte ID, 0x01 and "
                "32 bytes expected)"
            )
        key = cls(_check_name(name), raw[1:])
        if key.key_id != wanted:
            raise InvalidInputError(
                f"the verifier key for {name!r} names key ID {hex_id}, but its key has ID "
                f"{key.key_id.hex()}"
            )
        return key

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise VerificationError unless ``signature`` is this key's signature of ``message``."""
        if len(signature) != 64:
            raise VerificationError(
                f"a signature by {self.name!r} (key {self.key_id.hex()}) is {len(signature)} "
                "bytes long, but an Ed25519 signature has 64",
                kind="signature",
            )
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            raise VerificationError(
                f"the signature is not by the key {self.name!r} (key {self.key_id.hex()}) over "
                "these bytes: they were changed or signed by another key",
                kind="signature",
            ) from None


def sign_note(body: str, name: str, signer: Signer) -> str:
    """Return the signed note: ``body``, an empty line, and the signature line of ``name``."""
    if not body.endswith("\n"):
        raise InvalidInputError("a note's text must end with a newline")
    _check_note_text(body)
    kid = key_id(_check_name(name), signer.public_key)
    signature = signer.sign(body.encode())
    return f"{body}\n{SIG_PREFIX}{name} {base64.b64encode(kid + signature).decode()}\n"


def _check_note_text(text: str) -> None:
    for char in text:
        if char != "\n" and not char.isprintable():
            raise InvalidInputError(f"a note's text holds the control character U+{ord(char):04X}")


def open_note(note: str, keys: list[VerifierKey]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names of the known keys that signed it.

    Signature lines of unknown keys are ignored; a bad signature by a known key
    fails; at least one good signature by a known key is needed.
    """
    if len(note) > _MAX_NOTE:
        raise VerificationError("the signed note is larger than 1 MiB", kind="signature")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerificationError(
            "not a signed note: expected its text, an empty line, then signature lines",
            kind="format",
        )
    body = note[: split + 1]
    lines = note[split + 2 : -1].split("\n")
    try:
        _check_note_text(body)
    except InvalidInputError as exc:
        raise VerificationError(str(exc), kind="format") from None
    by_id = {(k.name, k.key_id): k for k in keys}
    good: list[str] = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise VerificationError(
                f"malformed signature line {line[:80]!r}: it must start with an em dash",
                kind="format",
            )
        name, _, encoded = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise VerificationError(
                f"the signature line of {name!r} is not base64", kind="format"
            ) from None
        if len(raw) < 5:
            raise VerificationError(f"the signature line of {name!r} is too short", kind="format")
        known = by_id.get((name, raw[:4]))
        if known is None:
            continue  # a key we do not know: not ours to judge
        try:
            known.verify(body.encode(), raw[4:])
        except VerificationError:
            raise VerificationError(
                f"the signature by {name!r} (key {raw[:4].hex()}) does not verify: "
                "the note was changed or signed by another key",
                kind="signature",
            ) from None
        good.append(name)
    if not good:
        names = ", ".join(str(k) for k in keys) or "none"
        raise VerificationError(
            f"no signature on the note is by a known key (known: {names})", kind="signature"
        )
    return body, good


# -- checkpoints (C2SP tlog-checkpoint) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed commitment to the log at one size: origin, size, root, and the note itself."""

    origin: str
    size: int
    root: bytes
    note: str

    @property
    def root_hex(self) -> str:
        """Return the root as lowercase hex."""
        return self.root.hex()

    def as_dict(self) -> dict[str, Any]:
        """Return the checkpoint as plain JSON values."""
        return {"origin": self.origin, "size": self.size, "root": self.root_hex, "note": self.note}


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """Return the ``tlog-checkpoint`` text: origin, size and base64 root, one line each."""
    if not origin or "\n" in origin or not origin.isprintable():
        raise InvalidInputError(f"origin {origin!r} cannot head a checkpoint")
    if size < 0 or len(root) != 32:
        raise InvalidInputError("a checkpoint needs a size of 0 or more and a 32-byte root")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def parse_checkpoint(body: str) -> tuple[str, int, bytes]:
    """Parse a checkpoint's text into origin, size and root; extension lines are allowed."""
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError(
            "a checkpoint's text has an origin, a size and a root, one line each",
            kind="format",
        )
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin:
        raise VerificationError("the checkpoint's origin line is empty", kind="format")
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or (len(size_text) > 1 and size_text[0] == "0")
    ):
        raise VerificationError(
            f"the checkpoint's size {size_text[:40]!r} is not a decimal number", kind="format"
        )
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        root = b""
    if len(root) != 32:
        raise VerificationError(
            "the checkpoint's root is not the base64 of 32 bytes", kind="format"
        )
    return origin, int(size_text), root


def sign_checkpoint(origin: str, size: int, root: bytes, signer: Signer) -> Checkpoint:
    """Sign the log's state at ``size`` with the log key (named by the origin)."""
    note = sign_note(checkpoint_body(origin, size, root), origin, signer)
    return Checkpoint(origin, size, root, note)


def open_checkpoint(note: str, key: VerifierKey, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with the log's verifier key; refuse another key or origin."""
    if "\n\n" not in note:
        raise VerificationError(
            "not a signed checkpoint: expected its text, an empty line, then signatures",
            kind="format",
        )
    body = note[: note.rfind("\n\n") + 1]
    claimed, size, root = parse_checkpoint(body)
    expected = origin if origin is not None else key.name
    if claimed != expected:
        raise VerificationError(
            f"the checkpoint is for the log {claimed!r}, not {expected!r}", kind="anchor"
        )
    if key.name != claimed:
        raise VerificationError(
            f"the checkpoint of {claimed!r} must be signed by the log's own key, but the key "
            f"given is named {key.name!r}",
            kind="signature",
        )
    try:
        open_note(note, [key])
    except VerificationError as exc:
        if "no signature on the note is by a known key" in str(exc):
            raise VerificationError(
                f"the checkpoint of {claimed!r} at size {size} is not signed by the key "
                f"{key}: it was signed by another key",
                kind="signature",
            ) from None
        raise
    return Checkpoint(claimed, size, root, note)


# -- people's electronic signatures (21 CFR Part 11) ------------------------------


def _stamp(moment: datetime) -> str:
    when = moment.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def esig_statement(
    *,
    origin: str,
    action: str,
    model: str,
    version: str,
    artifact_sha256: str | None,
    meaning: str,
    signer: str,
    name: str,
    time: str,
    nonce: str,
) -> bytes:
    """Return the JCS bytes a person signs: everything that makes the signature this record's."""
    return canonical_bytes(
        {
            "type": ESIG_TYPE,
            "log": origin,
            "action": action,
            "model": model,
            "version": version,
            "artifact_sha256": artifact_sha256,
            "meaning": meaning,
            "signer": signer,
            "name": name,
            "time": time,
            "nonce": nonce,
        }
    )


def make_esignature(
    signer: Signer,
    *,
    origin: str,
    action: str,
    model: str,
    version: str,
    artifact_sha256: str | None,
    meaning: str,
    actor: str,
    name: str,
    at: datetime,
) -> ESignature:
    """Sign the statement of a decision with a person's key and return the signature record.

    ``at`` is the time the signature states; the caller reads the clock.
    """
    time = _stamp(at)
    nonce = secrets.token_hex(16)
    statement = esig_statement(
        origin=origin,
        action=action,
        model=model,
        version=version,
        artifact_sha256=artifact_sha256,
        meaning=meaning,
        signer=actor,
        name=name,
        time=time,
        nonce=nonce,
    )
    return ESignature.model_validate(
        {
            "meaning": meaning,
            "signer": actor,
            "name": name,
            "key": fingerprint(signer.public_key),
            "time": time,
            "nonce": nonce,
            "sig": base64.b64encode(signer.sign(statement)).decode(),
        }
    )


def verify_esignature(
    signature: ESignature,
    *,
    origin: str,
    action: str,
    model: str,
    version: str,
    artifact_sha256: str | None,
    public_key: bytes,
) -> None:
    """Raise VerificationError unless ``signature`` is ``public_key``'s signature of this record."""
    if fingerprint(public_key) != signature.key:
        raise VerificationError(
            f"the e-signature of {signature.signer} names the key {signature.key[:16]}…, "
            f"not the key {fingerprint(public_key)[:16]}… it is checked with",
            kind="signature",
        )
    statement = esig_statement(
        origin=origin,
        action=action,
        model=model,
        version=version,
        artifact_sha256=artifact_sha256,
        meaning=signature.meaning,
        signer=signature.signer,
        name=signature.name,
        time=signature.time,
        nonce=signature.nonce,
    )
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(signature.sig), statement
        )
    except (InvalidSignature, ValueError, binascii.Error):
        raise VerificationError(
            f"the e-signature of {signature.signer} does not verify for this record: it was "
            "made for another record, or the record was changed",
            kind="signature",
        ) from None
