"""Removing credentials from a URI before it is hashed or written to the log.

The log is append-only: a password written into it can never be taken out.
:func:`scrub_uri` drops the user info (``https://bob:pw@host`` keeps only the
host) and every query or fragment parameter whose name says it carries a
secret (``token``, ``sig``, ``X-Amz-Signature``, anything ending in ``_key``
…), and says what it removed by kind and name, never by value. Anything that
is not ``scheme://…`` (a POSIX or Windows path) is returned untouched.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["has_scheme", "is_secret_name", "scrub_uri"]

#: Query parameter names that carry a secret, lower case.
SECRET_NAMES = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "token",
        "access_token",
        "secret",
        "key",
        "apikey",
        "api-key",
        "sig",
        "signature",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "awsaccesskeyid",
    }
)
#: Name endings that carry a secret (``refresh_token``, ``client_secret``, ``api_key`` …).
SECRET_SUFFIXES = (
    "_token",
    "-token",
    "_secret",
    "-secret",
    "_key",
    "-key",
    "_password",
    "-password",
)
# A scheme of two or more characters followed by "//": one letter is a Windows drive (C://).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+:)//")


def has_scheme(text: str) -> bool:
    """Return whether ``text`` is a ``scheme://…`` URI rather than a (Windows) path."""
    return _SCHEME.match(text) is not None


def is_secret_name(name: str) -> bool:
    """Return whether a query parameter named ``name`` carries a secret (case-insensitive)."""
    lowered = unquote_plus(name).strip().lower()
    return lowered in SECRET_NAMES or lowered.endswith(SECRET_SUFFIXES)


def _scrub_params(text: str, where: str, removed: list[str]) -> str:
    """Drop the ``name=value`` parts of a query or fragment whose name is secret."""
    kept = []
    for part in text.split("&"):
        name = part.partition("=")[0]
        if name and is_secret_name(name):
            removed.append(f"{where}:{unquote_plus(name).strip()}")
        else:
            kept.append(part)
    return "&".join(kept)


def _drop_userinfo(rest: str, removed: list[str]) -> str:
    """Drop ``user:password@`` from what follows ``scheme://``.

    A password written with an unescaped ``/``, ``?`` or ``#`` (``bob:p#w@host``)
    still counts: an authority ``user:x`` whose "port" is not a number, with an
    ``@`` further on, is user info up to that ``@``.
    """
    end = len(rest)
    for delimiter in "/?#":
        at = rest.find(delimiter)
        if 0 <= at < end:
            end = at
    authority = rest[:end]
    if "@" in authority:
        removed.append("userinfo")
        return rest[authority.rindex("@") + 1 :]
    if ":" in authority and not authority.startswith("["):
        port = authority.rpartition(":")[2]
        at = rest.find("@", end)
        if not port.isdigit() and at >= 0:
            removed.append("userinfo")
            return rest[at + 1 :]
    return rest


def scrub_uri(text: str) -> tuple[str, list[str]]:
    """Return ``text`` without credentials, and what was removed (``userinfo``, ``query:NAME``).

    The rest of the URI is kept byte for byte (no re-encoding); a path or a
    Windows path is returned as is with nothing removed.
    """
    found = _SCHEME.match(text)
    if found is None:
        return text, []
    removed: list[str] = []
    head = found.group(0)
    rest = _drop_userinfo(text[len(head) :], removed)
    rest, hash_sign, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    if question:
        query = _scrub_params(query, "query", removed)
    if hash_sign and "=" in fragment:
        fragment = _scrub_params(fragment, "fragment", removed)
    if not removed:
        return text, []
    clean = head + rest
    if query:
        clean += "?" + query
    if fragment:
        clean += "#" + fragment
    return clean, removed
