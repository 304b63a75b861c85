"""The auditml command as a user meets it: output, exit codes, and no tracebacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditml import AuditLog
from tests.conftest import drop_triggers, raw_query, raw_sql
from tests.conftest import run_cli as run

ORIGIN = "bank.example/credit-models"


@pytest.fixture
def url(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Return a log holding a few lifecycle events."""
    code, _, _ = run(["init", "--origin", ORIGIN, "--db", db_url, "--actor", "admin"], capsys)
    assert code == 0
    with AuditLog.open(db_url) as log:
        log.append(
            "model.train",
            subject={"model": "credit-risk", "version": "1"},
            data={"metrics": {"auc": 0.87}},
            actor="ds@bank.example",
            imported=True,
        )
        log.append(
            "model.approve",
            subject={"model": "credit-risk", "version": "1"},
            data={"reason": "holdout ok"},
            actor="validator@bank.example",
            imported=True,
        )
        log.append(
            "model.deploy",
            subject={"model": "fraud", "version": "4"},
            data={"environment": "production"},
            actor="release@bank.example",
            imported=True,
        )
    return db_url


def test_init_says_where_the_log_is_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Init names the log and its store; running it again says it already exists, exit 0."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    code, out, _ = run(["init", "--origin", ORIGIN, "--db", db], capsys)
    assert code == 0
    assert f"Created log '{ORIGIN}'" in out and str(tmp_path / "audit.db") in out
    code, out, _ = run(["init", "--db", db], capsys)
    assert code == 0
    assert "Already initialised" in out
    code, out, _ = run(["init", "--db", db, "--json"], capsys)
    assert json.loads(out)["created"] is False


def test_output_prints_brackets_as_written(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Paths with [brackets] print whole, never read as Rich markup; a failure still says FAILED."""
    target = tmp_path / "[b] cards [prod]" / "credit-risk v1.md"
    target.parent.mkdir()
    code, out, err = run(["card", "credit-risk", "1", "--out", str(target), "--db", url], capsys)
    assert code == 0, err
    assert f"to {target} (" in out and target.exists()
    drop_triggers(url)
    raw_sql(url, [("UPDATE auditml_event SET body = %s WHERE seq = 1", (b"[/b] [x]",))])
    code, _, err = run(["verify", "--db", url], capsys)
    assert code == 1 and err.startswith("FAILED: ") and "Traceback" not in err


def test_log_lists_and_filters_events(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Log shows a table, filters by model, action and time, and prints JSON on request."""
    code, out, _ = run(["log", "--db", url], capsys)
    assert code == 0
    assert "model.train" in out and "credit-risk v1" in out and "release@bank.example" in out
    code, out, _ = run(["log", "--db", url, "--model", "fraud"], capsys)
    assert "model.deploy" in out and "model.train" not in out
    code, out, _ = run(["log", "--db", url, "--action", "model.approve", "--json"], capsys)
    items = json.loads(out)
    assert [i["event"]["action"] for i in items] == ["model.approve"]
    assert items[0]["seq"] == 2 and len(items[0]["hash"]) == 64
    code, out, err = run(["log", "--db", url, "--until", "2000-01-01"], capsys)
    assert code == 0 and "no events match" in err
    code, out, _ = run(
        ["log", "--db", url, "--since", "2000-01-01", "--limit", "2", "--json"], capsys
    )
    assert [i["seq"] for i in json.loads(out)] == [0, 1]


def test_log_says_why_a_typo_matches_nothing(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown action or model gets a did-you-mean: a typo never reads as 'nothing happened'."""
    code, _, err = run(["log", "--db", url, "--action", "deploy"], capsys)
    assert code == 2 and "unknown action 'deploy': did you mean 'model.deploy'?" in err
    code, _, err = run(["log", "--db", url, "--action", "model.aprove"], capsys)
    assert code == 2 and "did you mean 'model.approve'?" in err
    code, _, err = run(["log", "--db", url, "--action", "Deploy"], capsys)
    assert code == 2 and "did you mean 'model.deploy'?" in err
    code, _, err = run(["log", "--db", url, "--model", "credit-rsk"], capsys)
    assert "the log has no model 'credit-rsk'; did you mean 'credit-risk'?" in err
    code, _, err = run(["log", "--db", url, "--model", "zzz"], capsys)
    assert "the log has no model 'zzz' (its models: credit-risk" in err
    code, _, err = run(
        ["log", "--db", url, "--model", "credit-risk", "--until", "2000-01-01"], capsys
    )
    assert err.strip() == "no events match"


def test_verify_ok_exits_zero(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Verify prints OK with the size and root, and --json gives the same facts."""
    code, out, _ = run(["verify", "--db", url], capsys)
    assert code == 0
    assert "OK" in out and "4 events verified" in out
    code, out, _ = run(["verify", "--db", url, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["size"] == 4
    assert "deep:" not in run(["verify", "--db", url], capsys)[1]
    code, out, _ = run(["verify", "--deep", "--db", url], capsys)
    assert code == 0 and "deep: every event re-canonicalized and checked against its" in out


def test_a_key_pinned_from_another_log_says_so(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another log's key fails verify (1) naming both logs, without calling this log changed."""
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert run(["init", "--origin", "other.example/x", "--db", other], capsys)[0] == 0
    _, key, _ = run(["key", "show", "--db", other], capsys)
    code, _, err = run(["verify", "--db", url, "--vkey", key.strip()], capsys)
    assert code == 1 and "the pinned key is for the log 'other.example/x'" in err
    assert "Check which log the key belongs to" in err and "changed outside" not in err


def test_a_missing_log_key_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signing with the key file gone names its path once and how to point elsewhere."""
    db = f"sqlite:///{tmp_path / 'k.db'}"
    assert run(["init", "--origin", "k.example/x", "--db", db], capsys)[0] == 0
    (tmp_path / "k.key").rename(tmp_path / "moved.key")
    assert run(["train", "m", "--no-code", "--db", db], capsys)[0] == 0
    code, _, err = run(["checkpoint", "--db", db], capsys)
    assert code == 2 and err.count(str(tmp_path / "k.key")) == 1 and "AUDITML_LOG_KEY" in err


def test_a_key_of_the_same_log_name_that_differs_reads_as_a_rewrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A held key with '+' in its base64 keeps the log's name: a wrong key reads as a rewrite."""
    for n in range(64):  # about half of all keys hold a '+' in their base64
        db = f"sqlite:///{tmp_path / f'k{n}.db'}"
        assert run(["init", "--origin", "k.example/x", "--db", db], capsys)[0] == 0
        held = run(["key", "show", "--db", db], capsys)[1].strip()
        if "+" in held.split("+", 2)[2]:
            break
    else:
        pytest.fail("no key with a '+' in its base64 in 64 tries")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert run(["init", "--origin", "k.example/x", "--db", other], capsys)[0] == 0
    pinned = run(["key", "show", "--db", other], capsys)[1].strip()
    code, _, err = run(["verify", "--db", db, "--vkey", pinned], capsys)
    assert code == 1 and "not the pinned key" in err and "another log" not in err


def test_db_takes_a_plain_sqlite_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--db audit.db (relative or absolute) is the SQLite file there, as sqlite:/// would be."""
    path = tmp_path / "plain.db"
    assert run(["init", "--origin", "plain.example/x", "--db", str(path)], capsys)[0] == 0
    code, out, _ = run(["head", "--db", str(path)], capsys)
    assert code == 0 and "size       1" in out
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["head", "--db", "plain.db"], capsys)
    assert code == 0 and "size       1" in out
    code, _, err = run(["head", "--db", "nowhere.db"], capsys)
    assert code == 2 and "no audit log at nowhere.db" in err
    for name in ("q?x.db", "p%20.db", "h#1.db"):  # a path, not a URL: every character kept
        assert run(["init", "--origin", "plain.example/y", "--db", name], capsys)[0] == 0
        assert (tmp_path / name).is_file()


def test_a_new_log_taking_a_key_file_already_there_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """x.sqlite3 then x.db share x.key: the second init says so; the first says nothing."""
    first = run(["init", "--origin", "a.example/one", "--db", str(tmp_path / "x.sqlite3")], capsys)
    assert first[0] == 0 and "warning" not in first[2]
    code, _, err = run(
        ["init", "--origin", "b.example/two", "--db", str(tmp_path / "x.db")], capsys
    )
    assert code == 0 and f"key file that was already at {tmp_path / 'x.key'}" in err


def test_verify_tampered_exits_one_and_names_the_event(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed event makes verify exit 1, naming the event and what failed, in text and JSON."""
    drop_triggers(url)
    body = bytes(raw_query(url, "SELECT body FROM auditml_event WHERE seq = 2")[0][0])
    raw_sql(
        url,
        [
            (
                "UPDATE auditml_event SET body = %s WHERE seq = 2",
                (body.replace(b"holdout ok", b"holdout OK"),),
            )
        ],
    )
    code, out, err = run(["verify", "--db", url], capsys)
    assert code == 1
    assert "FAILED" in err and "event 2" in err and "(hash)" in err
    assert "Traceback" not in out + err
    code, out, _ = run(["verify", "--db", url, "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report == {**report, "ok": False, "kind": "hash", "seq": 2}


def test_head_shows_size_and_root(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Head prints the origin, size and root, and JSON on request."""
    code, out, _ = run(["head", "--db", url, "--json"], capsys)
    head = json.loads(out)
    assert code == 0 and head["origin"] == ORIGIN and head["size"] == 4
    with AuditLog.open(url) as log:
        assert head["root"] == log.root()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "--db", "mysql://x@localhost/db"], "unsupported database 'mysql'"),
        (["log", "--db", "sqlite:////nonexistent/dir/audit.db"], "run `auditml init`"),
        (["log", "--db", "postgresql://u:pw@127.0.0.1:1/x"], "cannot use the PostgreSQL store"),
        (["init", "--origin", "has space", "--db", "sqlite:///{tmp}/a.db"], "invalid origin"),
        (["log", "--since", "yesterday-ish", "--db", "{url}"], "not a date or time"),
        (["log", "--since", "0001-01-01T00:00:00+01:00", "--db", "{url}"], "out of range"),
        (["log", "--until", "9999-12-31T23:00:00-05:00", "--db", "{url}"], "out of range"),
        (["verify", "--db", "{corrupt}"], "not a database"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_two(
    args: list[str], message: str, tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad URLs, missing logs, dead servers, bad options, corrupt files: exit 2, no traceback."""
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 1000)
    args = [a.format(tmp=tmp_path, url=url, corrupt=f"sqlite:///{corrupt}") for a in args]
    code, out, err = run(args, capsys)
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in out + err
    assert "pw" not in err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped option gets Click's usage message and exit 2."""
    code, _, err = run(["verify", "--colour"], capsys)
    assert code == 2 and "No such option" in err


def test_default_store_is_dot_auditml_under_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --db the commands use ./.auditml/audit.db; AUDITML_DATABASE_URL overrides it."""
    monkeypatch.chdir(tmp_path)
    assert run(["init"], capsys)[0] == 0
    assert (tmp_path / ".auditml" / "audit.db").is_file()
    assert run(["verify"], capsys)[0] == 0
    monkeypatch.setenv("AUDITML_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    code, _, err = run(["verify"], capsys)
    assert code == 2 and "other.db" in err


def test_installed_command_runs_from_any_folder(tmp_path: Path) -> None:
    """The auditml console script works outside the checkout and prints its version."""
    exe = Path(sys.executable).with_name("auditml")
    if not exe.exists():
        pytest.skip("the auditml console script is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if k != "AUDITML_DATABASE_URL"}
    done = subprocess.run(
        [str(exe), "init", "--origin", "t.example/x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [str(exe), "verify"], cwd=tmp_path, capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0 and "intact" in done.stdout
    done = subprocess.run(
        [str(exe), "--version"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.stdout.startswith("auditml ")


def test_command_groups_are_imported_only_by_the_cli_package() -> None:
    """Command groups import only _common of the CLI (it only _startup); only cli/ imports them."""
    import ast

    import auditml.cli

    package = Path(auditml.cli.__file__).parent
    groups = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    assert groups == {
        "card",
        "lifecycle",
        "log",
        "mlflow",
        "privacy",
        "report",
        "runtime",
        "trust",
    }
    for path in Path(auditml.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "auditml.cli":
                names = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "auditml.cli."
            ):
                names = {(node.module or "").removeprefix("auditml.cli.")}
            elif isinstance(node, ast.Import):
                names = {
                    a.name.removeprefix("auditml.cli.")
                    for a in node.names
                    if a.name.startswith("auditml.cli.")
                }
            else:
                continue
            if path == package / "__init__.py":
                continue
            assert not names & groups, f"{path} imports the command group(s) {names & groups}"
            if path.parent == package:
                shared = {"_common"} if path.stem != "_common" else {"_startup"}
                assert names <= shared, f"{path} imports {names} from the CLI"


def test_one_mapping_gives_every_error_its_exit_status() -> None:
    """A failed verification exits 1, a policy refusal 3, any other auditml error 2."""
    from auditml.cli._common import exit_status
    from auditml.errors import (
        InvalidInputError,
        PolicyDeniedError,
        ProofError,
        StoreError,
        VerificationError,
    )

    assert exit_status(VerificationError("x", kind="hash")) == 1
    assert exit_status(ProofError("x")) == 1
    assert exit_status(PolicyDeniedError("x", rule="r", remedy="y")) == 3
    assert exit_status(InvalidInputError("x")) == 2
    assert exit_status(StoreError("x")) == 2
