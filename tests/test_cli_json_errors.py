"""Errors as a script reads them: with --json, one JSON object on stderr; without, ``error:`` first.

With ``--json`` on the command line, an error is one line of stderr, a JSON
object with ``error`` (the sentence), ``kind`` and ``exit`` (the process's exit
status), after any warnings (JSON lines too), and stdout is empty or valid
JSON. Click's usage errors (a missing argument, an unknown option, a bad
value) are reported the same way, and without --json they start with
``error:`` as ours do, never Click's ``Error:``.
Exit statuses are those the CLI always had.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog
from tests.conftest import drop_triggers, raw_sql
from tests.conftest import run_cli as run

DS = "ds@bank.example"
VAL = "val@bank.example"


@pytest.fixture
def url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Return a log where DS trained credit v1."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    code, _, err = run(["init", "--origin", "bank.example/m", "--db", db], capsys)
    assert code == 0, err
    with AuditLog.open(db) as log:
        log.record_training("credit", version="1", data={}, actor=DS)
    return db


def _one_json_error(code: int, out: str, err: str) -> dict[str, Any]:
    """Assert stderr is one JSON error line for this exit status, stdout empty or JSON."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].isascii()
    found = json.loads(lines[0])
    assert isinstance(found, dict)
    assert isinstance(found["error"], str) and found["error"]
    assert isinstance(found["kind"], str)
    assert found["exit"] == code
    if out.strip():
        json.loads(out)
    return found


CASES = [
    # (command line, exit status, kind)
    (["approve", "credit", "9", "--actor", VAL], 2, "invalid_input"),
    (["approve", "credit", "1", "--actor", DS], 3, "policy_denied"),
    (["deploy", "credit", "1", "--env", "production", "--actor", VAL], 3, "policy_denied"),
    (["status", "--db", "sqlite:///{tmp}/none.db"], 2, "store"),
    (["status", "--db", "mysql://nowhere/x"], 2, "configuration"),
    (["log", "--since", "garbage"], 2, "invalid_input"),
    (["log", "--limit", "x"], 2, "usage"),
    (["evaluate", "credit"], 2, "usage"),
    (["deploy", "credit", "1"], 2, "usage"),
    (["status", "--bogus"], 2, "usage"),
    (["head", "extra"], 2, "usage"),
    (["policy", "apply", "{tmp}/fifo"], 2, "invalid_input"),
    (["verify", "--checkpoint", "{tmp}/none.txt"], 2, "invalid_input"),
    (["verify", "{tmp}/none.pdf"], 2, "invalid_input"),
    (["key", "register", "{tmp}/none.pub"], 2, "invalid_input"),
]


@pytest.mark.parametrize(("argv", "status", "kind"), CASES, ids=lambda v: str(v))
def test_with_json_an_error_is_one_json_object_on_stderr(
    argv: list[str],
    status: int,
    kind: str,
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each error kind, ours or Click's, is one JSON line on stderr with its unchanged exit."""
    monkeypatch.setenv("AUDITML_DATABASE_URL", url)
    os.mkfifo(tmp_path / "fifo")
    line = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run([*line, "--json"], capsys)
    assert code == status, err
    found = _one_json_error(code, out, err)
    assert found["kind"] == kind
    code, out, err = run(line, capsys)  # the same error without --json: same status, text
    assert code == status
    assert err.splitlines()[0].startswith(("error: ", "denied: ")), err
    assert "Error:" not in err


def test_a_denial_in_json_names_its_rule_and_event(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy denial's JSON carries the rule, the remedy and the denial event's seq."""
    code, out, err = run(["approve", "credit", "1", "--actor", DS, "--db", url, "--json"], capsys)
    found = _one_json_error(code, out, err)
    assert (code, found["rule"], out) == (3, "separation-of-duties", "")
    assert found["remedy"] and found["seq"] == 2
    with AuditLog.open(url) as log:
        (denial,) = log.events(action="policy.denied")
        assert denial.seq == found["seq"]


def test_a_failed_verification_in_json_has_its_result_on_stdout_and_error_on_stderr(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Verify --json of a tampered log: exit 1, its failed check on stdout, one error on stderr."""
    drop_triggers(url)
    raw_sql(url, [("UPDATE auditml_event SET body = %s WHERE seq = 1", (b"{}",))])
    code, out, err = run(["verify", "--db", url, "--json"], capsys)
    assert code == 1
    found = _one_json_error(code, out, err)
    result = json.loads(out)
    assert result["ok"] is False and found["kind"] == "verification_failed"
    assert found["check"] == result["kind"] and found["seq"] == result["seq"]


def test_verify_json_other_errors_keep_stdout_and_add_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Verify --json of a missing log prints {"ok": false} on stdout and the error on stderr."""
    db = f"sqlite:///{tmp_path / 'none.db'}"
    code, out, err = run(["verify", "--db", db, "--json"], capsys)
    assert code == 2
    assert json.loads(out)["ok"] is False
    assert _one_json_error(code, out, err)["kind"] == "store"


def test_json_as_the_value_of_another_option_is_not_the_json_flag(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--reason --json gives the reason "--json": the command's error is text, not JSON."""
    line = ["approve", "credit", "9", "--reason", "--json", "--actor", VAL, "--db", url]
    code, _, err = run(line, capsys)
    assert code == 2 and err.startswith("error: "), err


def test_a_usage_error_without_json_says_error_first_then_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Click's usage errors start with 'error:' as ours do, then the usage and the --help hint."""
    code, out, err = run(["evaluate", "credit"], capsys)
    lines = err.splitlines()
    assert (code, out) == (2, "")
    assert lines[0] == "error: Missing argument 'version'."
    assert lines[1].startswith("Usage: auditml evaluate [OPTIONS] MODEL VERSION")
    assert lines[2] == "Try 'auditml evaluate --help' for help."
    code, _, err = run(["nosuch"], capsys)
    assert code == 2 and err.startswith("error: No such command 'nosuch'."), err


def test_a_usage_error_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option holding ESC is shown escaped in text and in JSON, never raw."""
    code, _, err = run(["status", "--bo\x1b[31mgus"], capsys)
    assert code == 2 and "\x1b" not in err and err.startswith("error: "), err
    code, out, err = run(["status", "--bo\x1b[31mgus", "--json"], capsys)
    assert code == 2 and "\x1b" not in err
    assert "--bo" in _one_json_error(code, out, err)["error"]


def test_no_command_and_help_are_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    """A bare command prints the help (exit 2), --help and --version exit 0 on stdout."""
    code, out, err = run([], capsys)
    assert code == 2 and out == "" and err.startswith("Usage: auditml"), err
    code, out, err = run(["policy"], capsys)
    assert code == 2 and err.startswith("Usage: auditml policy"), err
    code, out, err = run(["status", "--help"], capsys)
    assert code == 0 and "--json" in out and err == ""
    code, out, err = run(["--version"], capsys)
    assert code == 0 and out.startswith("auditml ") and err == ""


def test_an_internal_error_in_json_is_one_json_object(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception is reported as kind internal, exit 70, in JSON too."""
    monkeypatch.delenv("AUDITML_DEBUG", raising=False)

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("auditml.log.AuditLog.open", boom)
    code, out, err = run(["status", "--db", url, "--json"], capsys)
    found = _one_json_error(code, out, err)
    assert (code, found["kind"]) == (70, "internal") and "boom" in found["error"]
    code, _, err = run(["status", "--db", url], capsys)
    assert code == 70 and err.startswith("internal error: RuntimeError: boom"), err


def test_an_aborted_prompt_in_json_is_one_json_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-D at the passphrase prompt ends with exit 1: 'Aborted!', or JSON kind aborted."""
    import typer

    def aborted(*_: object, **__: object) -> str:
        raise typer.Abort()

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("typer.prompt", aborted)
    monkeypatch.delenv("AUDITML_KEY_PASSPHRASE", raising=False)
    line = ["keygen", "--actor", VAL, "--out", str(tmp_path / "k.key")]
    code, out, err = run([*line, "--json"], capsys)
    assert _one_json_error(code, out, err)["kind"] == "aborted" and code == 1
    code, _, err = run(line, capsys)
    assert code == 1 and err.strip() == "Aborted!"
    assert not (tmp_path / "k.key").exists()


def test_with_json_a_warning_is_a_json_line_on_stderr_too(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A warning (credentials removed from a URI) is {"warning": ...} with --json, text without."""
    line = ["train", "credit", "--dataset", "d=https://user:pw-xyzzy@host/x.csv", "--db", url]
    code, out, err = run([*line, "--json"], capsys)
    assert code == 0 and json.loads(out)["version"] == "2"
    (warning,) = [json.loads(text) for text in err.splitlines()]
    assert list(warning) == ["warning"] and "credentials" in warning["warning"]
    assert "xyzzy" not in err
    code, _, err = run(line, capsys)
    assert code == 0 and err.startswith("warning: auditml removed credentials"), err
