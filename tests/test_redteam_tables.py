"""Red-team cases for tables and styled lines written without Rich: Rich's bytes, no raw control."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import auditml
from auditml import AuditLog
from auditml.cli._common import LazyConsole, PlainTable, Styled, _safe_console, table

SETTINGS: dict[str, Any] = {"highlight": False, "markup": False, "emoji": False, "soft_wrap": True}


def _rich(shown: object, width: int = 200) -> str:
    written = io.StringIO()
    _safe_console()(file=written, width=width, **SETTINGS).print(shown)
    return written.getvalue()


def _table(columns: list[str], rows: list[list[Any]]) -> PlainTable:
    shown = table(*columns)
    for row in rows:
        shown.add_row(*row)
    return shown


CASES: list[tuple[list[str], list[list[Any]]]] = [
    (["a" * 200], []),
    (["a" * 201], []),
    (["a" * 99, "b" * 99], []),
    (["a" * 99, "b" * 100], []),
    (["x"] * 67, [["y"] * 67]),
    (["x"] * 67, [["y "] * 67]),
    (["", "b"], [["c", "d"]]),
    (["h", "b"], [["c  ", "d   "]]),
    (["h", "b"], [["   ", "d"]]),
    (["h"], [[" " * 200]]),
    (["h"], [[" " * 201]]),
    (["h", "i"], [["a" * 190, "b" * 8]]),
    (["h", "i"], [["a" * 190, "b" * 9]]),
    (["a" * 100, "b" * 98], [["x a" * 33, "y"]]),
    (["h", "i"], [[1, "x"]]),
    (["h", "i"], [[None, "x"]]),
    (["h", "i"], [["a\x1b[31mb", "x"]]),
    (["h", "i"], [["a\rb", "x"]]),
    (["h", "i"], [["a\x00b", "x"]]),
    (["h", "i"], [["a\u200bb", "x"]]),
    (["h", "i"], [["e\u0301", "x"]]),
    (["h", "i"], [["x"]]),
    (["h"], [["x", "y"]]),
]


@pytest.mark.parametrize(("columns", "rows"), CASES)
def test_tables_near_the_width_and_odd_cells_are_rich_bytes_or_left_to_rich(
    columns: list[str], rows: list[list[Any]]
) -> None:
    """At 200 columns, at 201, odd cells: written only as Rich prints them, never a raw control."""
    shown = _table(columns, rows)
    plain = shown.plain(200)
    if plain is None:
        return
    assert plain == _rich(shown)
    assert plain.isascii() and all(line.isprintable() for line in plain.splitlines())


@pytest.mark.parametrize(
    "parts",
    [
        (("a" * 300, "bold"),),
        ("e\u0301", ("漢字", "red")),
        (("x", "link https://example.org"),),
        ("a  ",),
        ("",),
        ("\u00a0x",),
        ("a\x1b[2Jb",),
        ("a\rb",),
        ("a\u2028b",),
    ],
)
def test_styled_lines_to_a_pipe_are_rich_bytes(parts: tuple[Any, ...]) -> None:
    """A styled line written without Rich is what Rich writes; one with a control goes to Rich."""
    line = Styled(*parts)
    written = io.StringIO()
    console = LazyConsole(**SETTINGS)
    text = console._plain_text(line, written)
    if text is not None:
        assert text == _rich(line) == line.plain() + "\n"
        assert "\x1b" not in text and "\r" not in text


class _NoTty:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_stdout_without_isatty_or_closed_is_left_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """No isatty, or a closed file: the table and line go to Rich, which decides (no crash here)."""
    console = LazyConsole(width=200, **SETTINGS)
    shown = _table(["h"], [["x"]])
    assert console._plain_text(shown, _NoTty()) is None
    closed = io.StringIO()
    closed.close()
    assert console._plain_text(shown, closed) is None
    assert console._plain_text(Styled("x"), closed) is None
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.setenv(name, "0")
        assert console._plain_text(shown, io.StringIO()) is None
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    assert console._plain_text(shown, io.StringIO()) == _rich(shown)


REASONS = ["ok  ", "a\x1b[31mred", "cr\rx", "zw\u200bj", "e\u0301", "x" * 150, "t\tab", " lead"]


def test_commands_print_rich_bytes_with_hostile_text(tmp_path: Path) -> None:
    """status, log, history, actors, key list, head to a pipe: Rich's bytes, no raw control."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditLog.init(url, actor="admin@bank.example")[0] as log:
        for n, reason in enumerate(REASONS):
            log.record_training("credit", actor=f"ds{n}@bank.example")
            log.approve("credit", str(n + 1), actor="val@bank.example", reason=reason)
        log.deploy("credit", "1", "production", actor="ops@bank.example")
        log.record_training("m" + "y" * 180, actor="ds@bank.example")
    env = {**os.environ, "PYTHONPATH": str(Path(auditml.__file__).parents[1])}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        env.pop(name, None)
    commands = [["status"], ["log"], ["history", "credit"], ["key", "list"], ["actors"], ["head"]]
    for command in commands:
        found = [
            subprocess.run(
                [sys.executable, "-m", "auditml", *command, "--db", url],
                capture_output=True,
                check=True,
                env={**env, **extra},
            ).stdout
            for extra in ({}, {"TTY_COMPATIBLE": "0"}, {"NO_COLOR": "1"})
        ]
        assert found[0] == found[1] == found[2], command
        text = found[0].decode()
        assert not [c for c in text if c != "\n" and not c.isprintable()], command
