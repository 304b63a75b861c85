"""Hostile or careless input must not hurt: secrets in URLs, huge text, bad policies, locks.

Issue 14, "Inputs that must not hurt": each test feeds one such input through
the CLI or the API and asserts the exact outcome.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from auditml import AuditLog
from auditml.cards import build_card
from auditml.cards.render import render_card
from auditml.core.policy import CardRules, Policy
from auditml.errors import AppendError, ConfigurationError, InvalidInputError
from auditml.reports import build_report
from auditml.reports.pdf import write_pdf_report
from auditml.reports.render import render_report
from auditml.store import redact
from tests.conftest import postgres_base_url
from tests.conftest import run_cli as run

ORIGIN = "bank.example/credit-models"
SECRET = "s3cret-Pw"


def with_param(url: str, param: str) -> str:
    """Return ``url`` with one more query parameter."""
    return f"{url}{'&' if '?' in url else '?'}{param}"


# -- 1. secrets in database URLs ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:pw1@h/db", "postgresql://bob:***@h/db"),
        (
            f"postgresql://bob@h/db?password={SECRET}&sslmode=require",
            "postgresql://bob@h/db?password=***&sslmode=require",
        ),
        (
            f"postgresql://h/db?sslpassword={SECRET}&passfile=/home/b/.pgpass",
            "postgresql://h/db?passfile=***&sslpassword=***",
        ),
        (
            f"postgresql://h/db?options=-c%20password%3D{SECRET}",
            "postgresql://h/db?options=***",
        ),
        (
            "postgresql://h/db?options=-csearch_path%3Dx",
            "postgresql://h/db?options=-csearch_path%3Dx",
        ),
        (
            f"postgresql://bob:{SECRET}@h:noport/db?password={SECRET}",
            "postgresql://bob:***@h:noport/db?password=***",
        ),
    ],
)
def test_redact_hides_every_password_form(url: str, shown: str) -> None:
    """user:pw@, ?password=, sslpassword, passfile and a password in options all print as ***."""
    assert redact(url) == shown


def test_url_password_never_printed(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`init` output, its --json, `head` and log.url show ?password= masked, on both backends."""
    url = with_param(db_url, f"password={SECRET}")
    code, out, err = run(["init", "--origin", ORIGIN, "--db", url], capsys)
    assert code == 0, err
    assert SECRET not in out + err and "password=***" in out
    code, out, err = run(["init", "--db", url, "--json"], capsys)
    assert code == 0 and SECRET not in out + err and "password=***" in out
    code, out, err = run(["head", "--db", url], capsys)
    assert code == 0 and SECRET not in out + err and "password=***" in out
    with AuditLog.open(url) as log:
        assert SECRET not in log.url and "password=***" in log.url


def test_url_password_hidden_in_connect_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """An unusable store or a URL that does not parse is named without its secrets."""
    bad = [
        f"postgresql://bob:{SECRET}@h:noport/db?password={SECRET}",
        f"mysql://bob:{SECRET}@h/db?password={SECRET}",
    ]
    base = postgres_base_url()
    if base is not None:
        missing = base.rsplit("/", 1)[0] + "/auditml_no_such_db"
        bad.append(with_param(missing, f"password={SECRET}"))
    for url in bad:
        code, out, err = run(["head", "--db", url], capsys)
        assert code == 2, err
        assert err.startswith("error: ") and SECRET not in out + err and "***" in err


# -- 5. control characters in terminal output, empty model names ---------------------

# PostgreSQL keeps model names in a TEXT column, which cannot hold NUL: the actor carries it.
NASTY = "evil\x1b]0;pwned\x07n\x9bame"
NASTY_SHOWN = "evil\\u001b]0;pwned\\u0007n\\u009bame"
ACTOR = "ds\x1b[2J\x00x"
ACTOR_SHOWN = "ds\\u001b[2J\\u0000x"


def _no_controls(text: str) -> bool:
    """Return whether ``text`` holds no control character but tab and newline."""
    return not any((ord(c) < 32 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F for c in text)


def test_cli_escapes_control_characters(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    r"""ESC, BEL, NUL and C1 in a model name or actor print as \uXXXX; --json keeps them exact."""
    assert run(["init", "--origin", ORIGIN, "--db", db_url], capsys)[0] == 0
    with AuditLog.open(db_url) as log:
        log.record_training(NASTY, data={"metrics": {"auc": 0.9}}, actor=ACTOR)
    code, out, err = run(["log", "--db", db_url], capsys)
    assert code == 0 and _no_controls(out + err)
    assert NASTY_SHOWN in out and ACTOR_SHOWN in out
    code, out, err = run(["status", "--db", db_url], capsys)
    assert code == 0 and _no_controls(out + err) and ACTOR_SHOWN in out
    code, out, err = run(["approve", NASTY, "7", "--db", db_url], capsys)
    assert code == 2 and _no_controls(out + err) and "pwned" in err
    code, out, err = run(["log", "--json", "--db", db_url], capsys)
    assert code == 0 and _no_controls(out + err)
    event = json.loads(out)[1]["event"]
    assert event["subject"] == {"model": NASTY, "version": "1"}
    assert event["actor"]["id"] == ACTOR
    code, out, err = run(["status", "--json", "--db", db_url], capsys)
    assert code == 0 and _no_controls(out + err)
    assert json.loads(out)[0]["versions"][0]["trained_by"] == [ACTOR]
    for fmt in ("md", "huggingface", "json"):
        code, out, err = run(["card", "show", NASTY, "1", "-f", fmt, "--db", db_url], capsys)
        assert code == 0 and _no_controls(out + err), fmt
    assert json.loads(out)["model"] == NASTY


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_model_name_refused(
    db_url: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml train ''` exits 2 naming the problem, as the API does; nothing is written."""
    assert run(["init", "--origin", ORIGIN, "--db", db_url], capsys)[0] == 0
    code, out, err = run(["train", name, "--no-code", "--db", db_url], capsys)
    assert (code, out) == (2, "")
    assert err == "error: a training run needs a model name, e.g. model='credit-risk'\n"
    with AuditLog.open(db_url) as log:
        with pytest.raises(InvalidInputError, match="needs a model name"):
            log.record_training(name)
        assert log.head().size == 1


# -- 2 and 5. one huge free-text field, NUL in documents -----------------------------

HUGE = "A" * 100_000


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_huge_unbroken_text_renders_capped_in_every_document(db_url: str, tmp_path: Path) -> None:
    """A 100 KB reason and card section render to PDF capped with a note; JSON keeps them whole."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made as log:
        log.record_training("m", data={"metrics": {"auc": 0.9}}, actor="ds")
        approval = log.approve("m", "1", reason=HUGE, actor="val")
        card_event = log.update_card(
            "m", {"limitations": HUGE, "intended_use": "nul\x00here"}, version="1", actor="ds"
        )
        report = build_report(log)
        html = render_report(report, "html").decode()
        note = f"(truncated: 100,000 characters in total; full text in event {approval.seq})"
        assert note in html and "A" * 2001 not in html.replace("\u200b", "")
        assert max(len(run) for run in html.replace("\u200b", " ").split()) < 200
        markdown = render_report(report, "md").decode()
        assert note.replace("(", "\\(").replace(")", "\\)") in markdown
        assert HUGE in render_report(report, "json").decode()
        pdf = write_pdf_report(log, report, tmp_path / "report.pdf")
        assert pdf.stat().st_size > 0
        card = build_card(log, "m", "1")
        card_html = render_card(card, "html").decode()
        assert f"100,000 characters in total; full text in event {card_event.seq})" in card_html
        assert "nul\\u0000here" in card_html and "\x00" not in card_html
        assert "\x00" not in render_card(card, "md").decode()
        assert HUGE in render_card(card, "json").decode()
        assert render_card(card, "pdf").startswith(b"%PDF")


# -- 3. policies that must not be recorded -------------------------------------------

OFFICER = "off@bank.example"
BAD_POLICIES = [
    (
        'separation_of_duties = "no"\n',
        "separation_of_duties: expected true or false, got the string 'no'",
    ),
    ('[approvals]\nproduction = "2"\n', "approvals.production: expected a whole number"),
    ("require_signatures = 1\n", "require_signatures: expected true or false or a list"),
    (
        '[cards]\nrequired = ["limitation"]\n',
        "cards.required: unknown section 'limitation' (did you mean 'limitations'?)",
    ),
    (
        '[roles]\n"ana@bank.example" = ["trainer"]\n[permissions]\npolicy = ["officer"]\n',
        "permissions.policy grants changing the policy only to role officer, which no one holds",
    ),
    ("[permissions]\npolicy = []\n", "permissions.policy grants changing the policy to no one"),
    (
        '[permissions]\ndeploy = ["release"]\n',
        "permissions.deploy is granted only to role release, which no one holds in [roles]",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_POLICIES)
def test_policy_apply_refuses_bad_policy(
    db_url: str, tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong types, unknown card sections and unheld permissions exit 2; nothing is recorded."""
    assert run(["init", "--origin", ORIGIN, "--db", db_url], capsys)[0] == 0
    path = tmp_path / "auditml.toml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run(["policy", "apply", str(path), "--db", db_url], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and message in err, err
    with AuditLog.open(db_url) as log:
        assert log.head().size == 1
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            log.apply_policy(path, actor=OFFICER)
        assert log.head().size == 1


def test_policy_objects_are_checked_as_files_are(db_url: str) -> None:
    """The API refuses a Policy that locks the log, a wrong type, and an unknown card section."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made as log:
        with pytest.raises(InvalidInputError, match="no one could ever change the policy"):
            log.apply_policy(Policy(permissions={"policy": ["officer"]}), actor=OFFICER)
        with pytest.raises(InvalidInputError, match="did you mean 'limitations'"):
            log.apply_policy(Policy(cards=CardRules(required=["limitation"])), actor=OFFICER)
        with pytest.raises(ValidationError, match="separation_of_duties"):
            Policy(separation_of_duties="no")  # type: ignore[arg-type]
        assert log.head().size == 1
        ok = Policy(roles={OFFICER: ["officer"]}, permissions={"policy": ["officer"], "deploy": []})
        log.apply_policy(ok, actor=OFFICER)
        assert log.policy()[0] == ok


# -- 6. a report without the log key --------------------------------------------------


def test_report_without_key_refuses_or_says_it_is_partial(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keyless, a report exits 2 writing nothing; --allow-partial says what it leaves out."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made as log:
        log.record_training("m", data={"metrics": {"auc": 0.9}}, actor="ds")
        assert log.checkpoint().size == 2
        log.approve("m", "1", reason="late decision", actor="val")
        key = log.key_path()
    key.rename(tmp_path / "moved.key")
    out_file = tmp_path / "report.html"
    code, out, err = run(["report", "--out", str(out_file), "--db", db_url], capsys)
    assert (code, out) == (2, "") and not out_file.exists()
    assert err.startswith("error: the log key is unavailable (")
    assert "cover only up to the checkpoint at size 2 and leave out the 1 later event(s)" in err
    assert "--allow-partial" in err
    code, out, err = run(
        ["report", "--out", str(out_file), "--allow-partial", "--db", db_url], capsys
    )
    assert code == 0, err
    assert "PARTIAL: the report covers events up to the checkpoint at size 2 only" in out
    assert "PARTIAL REPORT:" in out_file.read_text(encoding="utf-8")
    with AuditLog.open(db_url) as log:
        with pytest.raises(ConfigurationError, match="the log key is unavailable"):
            build_report(log)
        report = build_report(log, allow_partial=True)
    assert report.partial is not None
    assert (report.partial.checkpoint_size, report.partial.head_size) == (2, 3)
    assert report.partial.left_out == 1 and report.checkpoint.size == 2
    assert json.loads(render_report(report, "json"))["partial"]["left_out"] == 1
    assert "late decision" not in render_report(report, "html").decode()
    assert "PARTIAL REPORT" in render_report(report, "md").decode()


# -- 4. a write blocked by another writer ---------------------------------------------


@contextmanager
def write_lock_held(url: str) -> Iterator[None]:
    """Hold the log's write lock from a raw connection, as another writer would."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as pg:
        pg.execute("SELECT id FROM auditml_log FOR UPDATE")
        try:
            yield
        finally:
            pg.rollback()


def test_blocked_write_gives_up_clearly_after_the_lock_timeout(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With another writer holding the lock, an append fails in ~1 s naming the fix; no event."""
    monkeypatch.setenv("AUDITML_LOCK_TIMEOUT", "1")
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made as log:
        with write_lock_held(db_url):
            began = time.monotonic()
            with pytest.raises(AppendError) as refused:
                log.record_training("m", actor="ds")
            took = time.monotonic() - began
        assert 0.9 <= took < 5, took
        message = str(refused.value)
        assert "gave up after waiting 1." in message and "for the write lock" in message
        assert "another writer holds it (which one is unknown" in message
        assert "wait longer with AUDITML_LOCK_TIMEOUT=SECONDS (now 1)" in message
        assert log.head().size == 1
        assert log.record_training("m", actor="ds").seq == 1


def test_blocked_cli_write_says_it_is_waiting(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI notes the wait on stderr after 2 s, then exits 2 at the timeout; nothing written."""
    assert run(["init", "--origin", ORIGIN, "--db", db_url], capsys)[0] == 0
    monkeypatch.setenv("AUDITML_LOCK_TIMEOUT", "2.5")
    with write_lock_held(db_url):
        code, out, err = run(["train", "m", "--no-code", "--db", db_url], capsys)
    assert (code, out) == (2, "")
    notice, error = err.splitlines()
    assert notice.startswith("note: waiting for another writer to release the lock on ")
    assert notice.endswith("(2 s so far; giving up after 2.5 s, set by AUDITML_LOCK_TIMEOUT)")
    assert error.startswith("error: the append to ") and "gave up after waiting 2." in error
    with AuditLog.open(db_url) as log:
        assert log.head().size == 1


def test_lock_timeout_must_be_seconds(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """AUDITML_LOCK_TIMEOUT that is not a positive number is a clear error, exit 2."""
    assert run(["init", "--origin", ORIGIN, "--db", db_url], capsys)[0] == 0
    monkeypatch.setenv("AUDITML_LOCK_TIMEOUT", "soon")
    code, out, err = run(["train", "m", "--no-code", "--db", db_url], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: AUDITML_LOCK_TIMEOUT='soon' is not a number of seconds")
