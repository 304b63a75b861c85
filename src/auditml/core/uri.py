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
from urllib.parse import unquote, unquote_plus

from auditml.errors import InvalidInputError

__all__ = ["has_scheme", "is_secret_name", "registry_identity", "scrub_uri"]

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


# -- one spelling per registry ----------------------------------------------------------------

#: The longest tracking URI taken (a real one is a few dozen characters).
MAX_REGISTRY_URI = 4096
#: Ports a URI of these schemes names when it names none.
_DEFAULT_PORTS = {
    "http": "80",
    "https": "443",
    "postgresql": "5432",
    "mysql": "3306",
    "mssql": "1433",
}
#: Schemes whose ``+driver`` (SQLAlchemy's) names how to connect, not what to.
_SQL_SCHEMES = frozenset({"postgresql", "mysql", "mssql", "sqlite"})
#: Schemes whose authority is a Databricks profile (case-sensitive), not a host.
_PROFILE_SCHEMES = frozenset({"databricks", "databricks-uc"})
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _escapes(text: str) -> str:
    """Return ``text`` with unreserved characters unescaped and other escapes in upper case."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(one, text)


def _dot_free(path: str) -> str:
    """Return an absolute path without ``.``/``..`` segments, doubled or trailing slashes."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _local(path: str, cwd: str) -> str:
    """Return a local path made absolute against ``cwd``, without dot segments."""
    return _dot_free(path if path.startswith("/") else cwd.rstrip("/") + "/" + path)


def _refuse(text: str, why: str, fix: str) -> InvalidInputError:
    shown = scrub_uri(text)[0]
    shown = shown if len(shown) <= 80 else shown[:80] + "…"
    return InvalidInputError(f"the MLflow tracking URI {shown!r} {why}: {fix}")


def registry_identity(text: str, cwd: str) -> str:
    """Return the one spelling of an MLflow tracking or registry URI that names its registry.

    Spellings of one registry give one identity, so the log keys what it
    records by registry, not by how it was typed: the scheme and host in lower
    case, a default port dropped (``:80``, ``:443``, ``:5432`` …), ``.``/``..``
    and trailing slashes gone, escapes of unreserved characters undone, no
    fragment, no credentials (:func:`scrub_uri`), a SQLAlchemy ``+driver``
    dropped, and a local path (``./mlruns``, ``file:``, ``sqlite:///rel.db``)
    made absolute against ``cwd``. ``databricks`` and ``databricks://`` are
    one; a named profile keeps its case and stays apart from the bare form,
    which reads the ``DATABRICKS_*`` environment first. Raises
    InvalidInputError for a URI no registry can have (empty, too long,
    whitespace or control characters, a port that is not 1 to 65535, no host).
    """
    if not text.strip():
        raise InvalidInputError("the MLflow tracking URI is empty: give --tracking-uri URI")
    if len(text) > MAX_REGISTRY_URI:
        raise InvalidInputError(
            f"the MLflow tracking URI is {len(text)} characters long, more than the "
            f"{MAX_REGISTRY_URI} any registry needs: check --tracking-uri"
        )
    if any(c.isspace() or ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise _refuse(
            text,
            "holds whitespace or control characters",
            "escape them (%20) or check --tracking-uri",
        )
    clean = scrub_uri(text)[0]
    found = _SCHEME.match(clean)
    if found is None:
        head, sep, rest = clean.partition(":")
        lowered = head.lower()
        if not sep and lowered in _PROFILE_SCHEMES:
            return lowered
        if sep and lowered == "file":
            return "file://" + _local(unquote(rest), cwd)
        return "file://" + _local(clean, cwd)
    scheme = found.group(1)[:-1].lower()
    base, plus, _driver = scheme.partition("+")
    if plus and base in _SQL_SCHEMES:
        scheme = base
    rest = clean[found.end() :]
    rest = rest.partition("#")[0]
    if scheme in _PROFILE_SCHEMES:
        profile = rest.rstrip("/")
        return f"{scheme}://{profile}" if profile else scheme
    if scheme == "sqlite":
        path, question, query = rest.partition("?")
        if path in ("", "/:memory:", ":memory:"):
            return "sqlite:///:memory:"
        if not path.startswith("/"):
            raise _refuse(text, "names a host", "use sqlite:///relative.db or sqlite:////abs.db")
        return "sqlite:///" + _local(path[1:], cwd) + (question + query if query else "")
    path_start = len(rest)
    for delimiter in "/?":
        at = rest.find(delimiter)
        if 0 <= at < path_start:
            path_start = at
    authority, remainder = rest[:path_start], rest[path_start:]
    path, question, query = remainder.partition("?")
    host, port = authority, ""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise _refuse(text, "has an unclosed [IPv6] host", "write it as http://[::1]:5000")
        host, after = authority[: close + 1], authority[close + 1 :]
        if after and not after.startswith(":"):
            raise _refuse(text, "has text after its [IPv6] host", "check --tracking-uri")
        port = after[1:]
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise _refuse(text, f"has port {port[:20]!r}", "a port is a number from 1 to 65535")
    host = _escapes(host).lower()
    if scheme == "file":
        local = host in ("", "localhost")
        return "file://" + ("" if local else host) + _dot_free(unquote(path))
    if not host and scheme in _DEFAULT_PORTS:
        raise _refuse(text, "names no host", "e.g. http://127.0.0.1:5000")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _refuse(text, "has a host name no DNS can hold", "check its spelling") from None
    if port and port.lstrip("0") == _DEFAULT_PORTS.get(scheme, "").lstrip("0"):
        port = ""
    elif port:
        port = str(int(port))
    path = _dot_free(_escapes(path)) if path.strip("/") else ""
    path = "" if path == "/" else path
    return f"{scheme}://{host}{':' + port if port else ''}{path}{question + query if query else ''}"
