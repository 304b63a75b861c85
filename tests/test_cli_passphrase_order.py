"""A passphrase is asked for (or used) only once every check that would refuse anyway has passed.

The passphrase comes the non-interactive way, ``AUDITML_KEY_PASSPHRASE``, set
wrong on purpose: a command that answers "wrong passphrase" looked at the key
before the policy, the log or the version. Where the terminal route matters,
the prompt is replaced by one that records being called.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from auditml import AuditLog
from tests.conftest import run_cli as run

DS = "ds@bank.example"
VAL = "val@bank.example"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Return a log where DS trained credit v1."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    code, _, err = run(["init", "--origin", "bank.example/m", "--db", db], capsys)
    assert code == 0, err
    with AuditLog.open(db) as log:
        log.record_training("credit", version="1", data={}, actor=DS)
    return db


@pytest.fixture
def key(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """Return VAL's encrypted key file, registered on the log; the env passphrase is then wrong."""
    monkeypatch.setenv("AUDITML_KEY_PASSPHRASE", PASSPHRASE)
    found = tmp_path / "val.key"
    code, _, err = run(["keygen", "--actor", VAL, "--out", str(found)], capsys)
    assert code == 0, err
    code, _, err = run(["key", "register", f"{found}.pub", "--db", url], capsys)
    assert code == 0, err
    monkeypatch.setenv("AUDITML_KEY_PASSPHRASE", "wrong")
    return found


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make stdin a terminal whose passphrase prompt records each call and answers right."""
    asked: list[str] = []

    def prompt(text: str, **_: object) -> str:
        asked.append(text)
        return PASSPHRASE

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("typer.prompt", prompt)
    monkeypatch.delenv("AUDITML_KEY_PASSPHRASE", raising=False)
    return asked


def _size(url: str) -> int:
    with AuditLog.open(url) as log:
        return log.head().size


def _denials(url: str) -> list[str]:
    with AuditLog.open(url) as log:
        return [str(r.event.data["rule"]) for r in log.events(action="policy.denied")]


@pytest.mark.parametrize("command", ["approve", "reject"])
def test_a_policy_denial_comes_before_the_key(
    command: str, url: str, key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A decision the policy refuses is denied (exit 3, recorded) without opening the key."""
    policy = tmp_path / "auditml.toml"
    policy.write_text("require_reason = true\n", encoding="utf-8")
    code, _, err = run(["policy", "apply", str(policy), "--db", url], capsys)
    assert code == 0, err
    line = [command, "credit", "1", "--sign-with", str(key), "--actor", VAL, "--db", url]
    code, _, err = run(line, capsys)
    assert code == 3 and err.startswith("denied: "), err
    assert "passphrase" not in err
    assert _denials(url) == ["reason-required"]


def test_self_approval_is_denied_before_the_key(
    url: str, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trainer approving their own version is refused for that, not for a wrong passphrase."""
    line = ["approve", "credit", "1", "--sign-with", str(key), "--actor", DS, "--db", url]
    code, _, err = run(line, capsys)
    assert code == 3 and "passphrase" not in err, err
    assert len(_denials(url)) == 1


@pytest.mark.parametrize("command", ["approve", "reject"])
def test_an_unknown_version_is_named_before_the_key(
    command: str, url: str, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version never trained is the error, not the key's passphrase; nothing is recorded."""
    before = _size(url)
    line = [command, "credit", "9", "--sign-with", str(key), "--actor", VAL, "--db", url]
    code, _, err = run(line, capsys)
    assert code == 2 and "passphrase" not in err and "9" in err, err
    assert _size(url) == before


def test_a_missing_log_is_named_before_the_key(
    key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no log at --db, that is the error, not the passphrase."""
    db = f"sqlite:///{tmp_path / 'none.db'}"
    line = ["approve", "credit", "1", "--sign-with", str(key), "--actor", VAL, "--db", db]
    code, _, err = run(line, capsys)
    assert code == 2 and "no audit log" in err and "passphrase" not in err, err


def test_the_wrong_passphrase_is_still_refused_when_the_decision_may_go_ahead(
    url: str, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once the rules pass, a wrong passphrase is refused (exit 2) and nothing is recorded."""
    before = _size(url)
    line = ["approve", "credit", "1", "--sign-with", str(key), "--actor", VAL, "--db", url]
    code, _, err = run(line, capsys)
    assert code == 2 and "wrong passphrase" in err, err
    assert _size(url) == before


def test_the_prompt_comes_only_after_the_checks(
    url: str, key: Path, prompts: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal, a refused decision asks nothing; one that may go ahead asks once and signs."""
    line = ["approve", "credit", "1", "--sign-with", str(key), "--db", url]
    code, _, err = run([*line, "--actor", DS], capsys)
    assert code == 3 and prompts == [], err
    code, _, err = run([*line, "--actor", VAL], capsys)
    assert code == 0, err
    assert len(prompts) == 1 and str(key) in prompts[0]
    with AuditLog.open(url) as log:
        (approval,) = log.events(action="model.approve")
        assert approval.event.data["signature"] is not None


def test_keygen_refuses_an_impossible_path_before_asking(
    tmp_path: Path, prompts: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Keygen --out under a file (not a folder) is refused before the passphrase is asked."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["keygen", "--actor", VAL, "--out", str(blocker / "k.key")], capsys)
    assert code == 2 and str(blocker) in err, err
    assert prompts == []
    assert blocker.read_text() == "x"


def test_keygen_refuses_an_impossible_path_without_a_passphrase_on_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal or the env passphrase, a bad --out is still the error named first."""
    monkeypatch.delenv("AUDITML_KEY_PASSPHRASE", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["keygen", "--actor", VAL, "--out", str(blocker / "k.key")], capsys)
    assert code == 2 and "passphrase" not in err and str(blocker) in err, err
