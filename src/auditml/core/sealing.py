"""Sealed values: a data subject's off-log values encrypted under a key that erasure destroys.

Pure and light (no pydantic models), so verify's helper process and the store
can use it: AES-256-GCM with a random nonce per sealed part, bound to the
value's commitment and to which part it is (value or salt).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from auditml.errors import InvalidInputError, VerificationError

# AES-GCM is loaded when a value is sealed or opened: every command imports this module
# through the store, and most never touch a sealed value (issue 20).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "SEALED",
    "SEALED_SALT_LENGTH",
    "cipher_for",
    "erased_digest",
    "is_sealed",
    "new_subject_key",
    "open_sealed",
    "removed_by_retention",
    "seal",
    "subject_handle",
    "unseal",
]

#: The first bytes of a value or salt sealed under its subject's key (format version 1).
SEALED = b"AMS1"
_NONCE = 12
_KEY = 32
#: The length of a sealed 32-byte salt: marker, nonce, salt, GCM tag.
SEALED_SALT_LENGTH = len(SEALED) + _NONCE + 32 + 16


def new_subject_key() -> bytes:
    """Return a fresh random AES-256 key for one data subject."""
    return secrets.token_bytes(_KEY)


def subject_handle(pepper: bytes, subject: bytes) -> str:
    """Return the off-log handle of a subject: HMAC-SHA256 of its canonical bytes (128 bits, hex).

    The handle finds a subject's key and values without storing its
    identifier; ``pepper`` is the store's own secret, so the handle of a
    guessed identifier cannot be computed without the database.
    """
    return hmac.new(pepper, subject, hashlib.sha256).digest()[:16].hex()  # 128 bits


def _aad(commitment: str, part: str) -> bytes:
    return f"auditml/value/{part}/{commitment}".encode()


def cipher_for(key: bytes) -> AESGCM:
    """Return the AES-256-GCM cipher of a subject's key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def seal(key: bytes | AESGCM, commitment: str, part: str, plain: bytes) -> bytes:
    """Encrypt a value's bytes or its salt (``part``) under the subject's key, bound to its row."""
    nonce = secrets.token_bytes(_NONCE)
    cipher = cipher_for(key) if isinstance(key, bytes) else key
    return SEALED + nonce + cipher.encrypt(nonce, plain, _aad(commitment, part))


def is_sealed(blob: bytes, part: str) -> bool:
    """Return whether a stored value (``part`` value) or salt (``part`` salt) is sealed."""
    if part == "salt":
        return len(blob) == SEALED_SALT_LENGTH and blob.startswith(SEALED)
    return blob.startswith(SEALED)  # plain values are JCS text: never an "A" first


def unseal(key: bytes, commitment: str, part: str, blob: bytes) -> bytes:
    """Decrypt a sealed value or salt, or raise VerificationError when it was changed."""
    from cryptography.exceptions import InvalidTag

    nonce = blob[len(SEALED) : len(SEALED) + _NONCE]
    try:
        return cipher_for(key).decrypt(nonce, blob[len(SEALED) + _NONCE :], _aad(commitment, part))
    except (InvalidTag, ValueError):
        raise VerificationError(
            f"the stored {part} of commitment {commitment[:16]}… does not decrypt under its "
            "subject's key: it was changed or moved in the database",
            kind="value",
        ) from None


def erased_digest(commitments: Iterable[str]) -> str:
    """Return the digest an erasure event records: SHA-256 of the sorted commitments, one a line."""
    digest = hashlib.sha256()
    for commitment in sorted(commitments):
        digest.update(commitment.encode() + b"\n")
    return digest.hexdigest()


def open_sealed(
    commitment: str, salt: bytes, value: bytes, key: bytes | None
) -> tuple[bytes, bytes]:
    """Return a stored value's salt and bytes, unsealing each part that is sealed.

    A part left in clear (a row written before sealing, or changed in the
    database) is returned as stored, for the commitment check to judge. A sealed
    value whose key is gone was erased: that raises InvalidInputError.
    """
    sealed_salt, sealed_value = is_sealed(salt, "salt"), is_sealed(value, "value")
    if not (sealed_salt or sealed_value):
        return salt, value
    if key is None:
        raise InvalidInputError(
            f"the value of commitment {commitment[:16]}… was erased: its subject's key is "
            "gone, so it can no longer be opened"
        )
    return (
        unseal(key, commitment, "salt", salt) if sealed_salt else salt,
        unseal(key, commitment, "value", value) if sealed_value else value,
    )


def removed_by_retention(events: Iterable[tuple[int, bytes]]) -> set[int]:
    """Return the segments whose records the ``retention.applied`` events ``(seq, body)`` removed.

    Only segments before the run's own event count: a run never removes a later one.
    """
    removed: set[int] = set()
    for seq, body in events:
        try:
            segments = orjson.loads(body).get("data", {}).get("segments")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(segments, list):
            removed.update(s for s in segments if type(s) is int and 0 <= s < seq)
    return removed
