"""auditml.core is pure: no module in it touches a database, a file, the clock or the network.

An AST scan of every module under ``src/auditml/core``, so lazy imports inside
functions and imports under ``TYPE_CHECKING`` count too. A module fails when
it imports I/O machinery or a layer above core, calls ``open``, or reads the
clock. core may import only itself, ``auditml.errors`` and third-party value
libraries (pydantic, cryptography, orjson).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import auditml.core

CORE = Path(auditml.core.__file__).parent

#: Top-level modules core may never import: databases, processes, files, the network.
FORBIDDEN = frozenset(
    {
        "sqlalchemy",
        "sqlmodel",
        "sqlite3",
        "psycopg",
        "psycopg2",
        "asyncpg",
        "subprocess",
        "multiprocessing",
        "concurrent",
        "socket",
        "ssl",
        "os",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "io",
        "urllib",
        "http",
        "requests",
        "httpx",
        "getpass",
        "time",
        "importlib",
        "weasyprint",
    }
)
#: Submodules of a forbidden package that are pure string functions (no network).
PURE_SUBMODULES = frozenset({"urllib.parse"})
#: The only auditml packages core may import besides itself.
BELOW_CORE = ("auditml.core", "auditml.errors")
#: Calls that read the clock: ``<owner>.<name>()`` where the owner is a datetime, date or time.
CLOCK = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "localtime"},
}
#: Builtins that do I/O or import by name.
FORBIDDEN_CALLS = frozenset({"open", "__import__", "input", "breakpoint"})

#: Known violations still being removed (issue 16), each with why; a stale entry fails.
KNOWN: dict[tuple[str, str], str] = {}


def _module_name(node: ast.ImportFrom, package: str) -> str:
    """Return the absolute module an ImportFrom names, resolving a relative one in ``package``."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported(tree: ast.AST, package: str) -> Iterator[str]:
    """Yield every module a tree imports, anywhere in it (``from auditml import x``: auditml.x)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _module_name(node, package)
            if module == "auditml":
                yield from (f"auditml.{alias.name}" for alias in node.names)
            else:
                yield module


def _bad_import(module: str) -> bool:
    """Return whether core may not import ``module``."""
    if module == "auditml" or module.startswith("auditml."):
        return not any(module == ok or module.startswith(ok + ".") for ok in BELOW_CORE)
    if any(module == ok or module.startswith(ok + ".") for ok in PURE_SUBMODULES):
        return False
    return module.split(".")[0] in FORBIDDEN


def _clock_owners(tree: ast.AST) -> dict[str, str]:
    """Map each local name bound to datetime, date or the time module to which it is."""
    owners = {"datetime": "datetime", "date": "date", "time": "time"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "datetime":
            for alias in node.names:
                if alias.name in ("datetime", "date"):
                    owners[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("datetime", "time"):
                    owners[alias.asname or alias.name] = alias.name
    return owners


def _owner(node: ast.expr, owners: dict[str, str]) -> str | None:
    """Return which clock owner an expression names (``dt``, ``datetime.datetime``), if any."""
    if isinstance(node, ast.Name):
        return owners.get(node.id)
    if isinstance(node, ast.Attribute) and node.attr in ("datetime", "date"):
        return node.attr if _owner(node.value, owners) == "datetime" else None
    return None


def impurities(source: str, package: str = "auditml.core") -> list[str]:
    """Return what makes a module's source impure, one short phrase each (empty: pure).

    ``package`` is the package the module is in, for its relative imports.
    """
    tree = ast.parse(source)
    found = [f"imports {module}" for module in _imported(tree, package) if _bad_import(module)]
    owners = _clock_owners(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"calls {node.func.id}()")
        if isinstance(node, ast.Attribute):
            owner = _owner(node.value, owners)
            if owner is not None and node.attr in CLOCK[owner]:
                found.append(f"reads the clock ({owner}.{node.attr})")
    return found


def _core_modules() -> list[Path]:
    """Return every Python file under src/auditml/core."""
    return sorted(CORE.rglob("*.py"))


def _package(path: Path) -> str:
    """Return the package a core file is in (``auditml.core`` or one of its subpackages)."""
    folder = path.parent.relative_to(CORE).parts
    return ".".join(["auditml", "core", *folder])


def test_the_scan_sees_every_kind_of_impurity() -> None:
    """The scanner flags each forbidden import, builtin call and clock read: a pass means pure."""
    source = """
import os, sqlite3
import subprocess as sp
from pathlib import Path
from urllib.request import urlopen
from auditml.store import Store
from auditml import ledger
from .._internal import keyfiles
from .. import cli
from . import merkle
from datetime import datetime as dt, date
import time

def f():
    from auditml.log import AuditLog
    open("x")
    dt.now()
    date.today()
    time.monotonic()
"""
    assert sorted(impurities(source)) == sorted(
        [
            "imports os",
            "imports sqlite3",
            "imports subprocess",
            "imports pathlib",
            "imports urllib.request",
            "imports auditml.store",
            "imports auditml.ledger",
            "imports auditml._internal",
            "imports auditml.cli",
            "imports time",
            "imports auditml.log",
            "calls open()",
            "reads the clock (datetime.now)",
            "reads the clock (date.today)",
            "reads the clock (time.monotonic)",
        ]
    )


def test_the_scan_lets_pure_code_pass() -> None:
    """Imports of core, errors, value libraries and pure string helpers are not flagged."""
    source = """
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus
import hashlib, json, tomllib
from pydantic import BaseModel
from auditml.core.canonical import canonical_bytes
from auditml.errors import InvalidInputError

def f(moment: datetime) -> datetime:
    return datetime.strptime("2024", "%Y").replace(tzinfo=UTC) + timedelta(days=1)
"""
    assert impurities(source) == []


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.relative_to(CORE).as_posix())
def test_core_module_is_pure(path: Path) -> None:
    """The core module imports no I/O, no clock and no layer above core, and opens no file."""
    name = path.relative_to(CORE).as_posix()
    source = path.read_text(encoding="utf-8")
    found = [f for f in impurities(source, _package(path)) if (name, f) not in KNOWN]
    assert found == [], f"auditml/core/{name} is not pure: {'; '.join(found)}"


def test_known_exceptions_are_still_needed() -> None:
    """Every listed known violation still occurs: once fixed, its entry must be removed."""
    stale = [
        key
        for key in KNOWN
        if key[1] not in impurities((CORE / key[0]).read_text(encoding="utf-8"))
    ]
    assert stale == [], f"remove these fixed entries from KNOWN: {stale}"


def test_core_has_modules_to_scan() -> None:
    """The scan finds core's modules (a wrong path would make every purity test pass vacuously)."""
    names = {p.name for p in _core_modules()}
    assert {"canonical.py", "signing.py", "policy.py", "events.py"} <= names
