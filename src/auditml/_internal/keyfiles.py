"""Key files: PEM private keys, the log key's path, people's public key files, the passphrase.

The keys themselves (signing, verifier keys, notes) are :mod:`auditml.core.signing`,
which touches no file; this module reads and writes them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from auditml._internal.infile import read_regular
from auditml._internal.output import write_output
from auditml.core.signing import FileSigner, Signer, fingerprint
from auditml.errors import ConfigurationError, InvalidInputError

# cryptography's key serialization is loaded when a key file is made or read (issue 20).
if TYPE_CHECKING:
    from auditml.store import Store

__all__ = [
    "KEY_ENV",
    "PASSPHRASE_ENV",
    "PublicKeyFile",
    "check_new_key_path",
    "generate_key_file",
    "key_path_for",
    "load_signer",
    "new_log_signer",
    "passphrase_from_env",
    "read_public_key",
]

KEY_ENV = "AUDITML_LOG_KEY"
PASSPHRASE_ENV = "AUDITML_KEY_PASSPHRASE"
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
#: The most read of a key file: a PEM key or a public key file is a few hundred bytes.
_MAX_KEY_FILE = 1 << 20


def passphrase_from_env() -> bytes | None:
    """Return ``AUDITML_KEY_PASSPHRASE`` as bytes, or None when it is unset or empty."""
    value = os.environ.get(PASSPHRASE_ENV, "")
    return value.encode() if value else None


# -- private key files ---------------------------------------------------------------


def check_new_key_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if a new key file may be made there, else raise saying why not.

    Run before a passphrase is asked for: a link, an existing file, or a folder
    to create under something that is not a folder refuses the key anyway.
    """
    target = Path(path)
    if target.is_symlink():
        raise InvalidInputError(
            f"{target} is a symbolic link; auditml never writes a key through a link: "
            "give the path of a new file"
        )
    if os.path.lexists(target):
        raise InvalidInputError(
            f"a key already exists at {target}; it is never overwritten: "
            "move it away first or choose another path"
        )
    folder = target.absolute().parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InvalidInputError(
            f"cannot create the key file {target}: {folder} is not a folder; choose another path"
        )
    return target


def generate_key_file(path: str | os.PathLike[str], passphrase: bytes | None) -> FileSigner:
    """Create a new Ed25519 key as a PEM file of mode 0600; refuse to overwrite one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    target = Path(path)
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    check_new_key_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create the key file {target}: {exc.strerror}") from None
    write_output(target, pem, mode=0o600)  # never over a file, never through a link
    return FileSigner(key, str(target))


def load_signer(path: str | os.PathLike[str], passphrase: bytes | None = None) -> FileSigner:
    """Load an Ed25519 PEM key file, or raise a sentence saying what is wrong (never the key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    source = Path(path)
    try:
        pem = read_regular(source, "key file", _MAX_KEY_FILE)
    except FileNotFoundError:
        raise ConfigurationError(f"no key file at {source}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the key file {source}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise ConfigurationError(
                f"the key file {source} is not encrypted, but a passphrase was given"
            ) from None
        raise ConfigurationError(
            f"the key file {source} is encrypted: set {PASSPHRASE_ENV} "
            "or enter its passphrase when asked"
        ) from None
    except ValueError:
        if passphrase:
            raise ConfigurationError(
                f"cannot open the key file {source}: wrong passphrase, or not a PEM key"
            ) from None
        raise ConfigurationError(f"the file {source} is not a PEM private key") from None
    except Exception:  # cryptography raises several types for malformed input
        raise ConfigurationError(f"the file {source} is not a usable PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"the key in {source} is not an Ed25519 key")
    return FileSigner(key, str(source))


# -- people's keys ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicKeyFile:
    """The public half of a person's signing key, as ``auditml keygen`` writes it (JSON)."""

    signer: str
    name: str
    public_key: bytes

    @property
    def key(self) -> str:
        """Return the key's fingerprint: hex SHA-256 of the raw public key."""
        return fingerprint(self.public_key)

    def to_json(self) -> str:
        """Return the file's text."""
        return (
            json.dumps(
                {
                    "signer": self.signer,
                    "name": self.name,
                    "algorithm": "ed25519",
                    "public_key": base64.b64encode(self.public_key).decode(),
                    "key": self.key,
                },
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        )


def key_path_for(store: Store, origin: str, given: Path | None = None) -> Path:
    """Return where a log's private key is kept.

    ``given`` (``key=`` when opening), else ``AUDITML_LOG_KEY``, else beside a
    SQLite file under its name with ``.key`` (``audit.db`` has ``audit.key``),
    else ``./.auditml/<origin>.key``.
    """
    if given is not None:
        return given
    env = os.environ.get(KEY_ENV, "").strip()
    if env:
        return Path(env)
    path = getattr(store.backend, "path", None)
    if isinstance(path, str) and path:
        return Path(path).resolve().with_suffix(".key")
    return Path(".auditml") / f"{_SLUG.sub('-', origin).strip('-') or 'log'}.key"


def new_log_signer(
    store: Store, origin: str, given: Path | None, passphrase: bytes | None
) -> tuple[Signer, bool]:
    """Return the signer for a log that has no key yet, and whether its key file is new.

    The key file found where :func:`key_path_for` says is used; without one a new
    key is made there. An in-memory store gets an in-memory key that vanishes with it.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = key_path_for(store, origin, given)
    if getattr(store.backend, "path", "") is None and given is None:
        return FileSigner(Ed25519PrivateKey.generate()), False
    if path.exists():
        return load_signer(path, passphrase or passphrase_from_env()), False
    return generate_key_file(path, passphrase or passphrase_from_env()), True


def read_public_key(path: str | os.PathLike[str]) -> PublicKeyFile:
    """Read a ``.pub`` file written by ``auditml keygen``, or raise a sentence saying why not."""
    source = Path(path)
    try:
        found = json.loads(read_regular(source, "public key file", _MAX_KEY_FILE).decode())
        raw = base64.b64decode(found["public_key"], validate=True)
        record = PublicKeyFile(str(found["signer"]), str(found["name"]), raw)
    except FileNotFoundError:
        raise InvalidInputError(f"no public key file at {source}") from None
    except InvalidInputError:  # a pipe, device or folder: the sentence names it
        raise
    except (OSError, ValueError, KeyError, TypeError, RecursionError, binascii.Error):
        raise InvalidInputError(
            f"{source} is not a public key file written by `auditml keygen` (JSON with "
            "signer, name and public_key)"
        ) from None
    if len(raw) != 32:
        raise InvalidInputError(f"{source} does not hold a 32-byte Ed25519 public key")
    if "key" in found and found["key"] != record.key:
        raise InvalidInputError(f"{source}: its 'key' fingerprint does not match its public key")
    return record
