"""The lifecycle commands as a user meets them: decisions, refusals, status, history and demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditml import AuditLog
from tests.test_cli import run

DS = "ds@bank.example"
VAL = "val@bank.example"
REL = "rel@bank.example"


@pytest.fixture
def url(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Return an initialised, empty log."""
    code, _, _ = run(["init", "--origin", "bank.example/cli", "--db", db_url], capsys)
    assert code == 0
    return db_url


def size(url: str) -> int:
    """Return the log's size."""
    with AuditLog.open(url) as log:
        return log.head().size


def test_train_approve_deploy_rollback_status_history(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The whole path by command, and status and history derived from the log."""
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(b"m")
    for _ in range(2):
        code, out, err = run(
            [
                "train",
                "credit",
                "--metric",
                "auc=0.9",
                "--param",
                "depth=6",
                "--artifact",
                f"model={model_file}",
                "--dataset",
                "train=s3://bucket/train.parquet",
                "--actor",
                DS,
                "--db",
                url,
            ],
            capsys,
        )
        assert code == 0, err
    assert "credit v2" in out
    for version in ("1", "2"):
        assert run(["approve", "credit", version, "--actor", VAL, "--db", url], capsys)[0] == 0
        code, out, err = run(
            [
                "deploy",
                "credit",
                version,
                "--env",
                "production",
                "--reason",
                "go",
                "--actor",
                REL,
                "--db",
                url,
            ],
            capsys,
        )
        assert code == 0, err
    code, out, _ = run(
        [
            "rollback",
            "credit",
            "--env",
            "production",
            "--reason",
            "INC-1",
            "--actor",
            REL,
            "--db",
            url,
        ],
        capsys,
    )
    assert code == 0 and "back to credit v1" in out
    code, out, _ = run(["status", "credit", "--json", "--db", url], capsys)
    (state,) = json.loads(out)
    assert state["running"] == {"production": "1"}
    assert [v["state"] for v in state["versions"]] == ["deployed", "approved"]
    code, out, _ = run(["status", "--db", url], capsys)
    assert code == 0 and "production: v1" in out
    code, out, _ = run(["history", "credit", "--env", "production", "--json", "--db", url], capsys)
    moves = json.loads(out)
    assert [(m["action"], m["version"], m["replaces"]) for m in moves] == [
        ("model.deploy", "1", None),
        ("model.deploy", "2", "1"),
        ("model.rollback", "1", "2"),
    ]
    code, out, _ = run(["history", "credit", "--db", url], capsys)
    assert code == 0 and "rollback" in out


def test_refusals_exit_3_name_the_rule_and_record_a_denial(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Self-approval exits 3 with the rule and a remedy, no traceback, one denial event."""
    run(["train", "credit", "--actor", DS, "--db", url], capsys)
    before = size(url)
    code, out, err = run(["approve", "credit", "1", "--actor", DS, "--db", url], capsys)
    assert code == 3
    assert "separation-of-duties" in err and "To proceed" in err
    assert "Traceback" not in err + out
    assert size(url) == before + 1
    code, _, err = run(
        ["deploy", "credit", "1", "--env", "prod", "--actor", REL, "--db", url], capsys
    )
    assert code == 3 and "approval-required" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["approve", "nope", "1"], "no model 'nope'"),
        (["approve", "credit", "9"], "no version '9'"),
        (["train", "credit", "--metric", "auc=high"], "not a number"),
        (["train", "credit", "--metric", "auc"], "is not NAME=VALUE"),
        (["train", "credit", "--metric", "auc=nan"], "must be finite"),
        (["train", "credit", "--dataset", "train=/no/such/file.csv"], "does not exist"),
        (["evaluate", "credit", "1", "--metric", "auc=x"], "not a number"),
        (["evaluate", "credit", "1", "--slice", "auc=1"], "is not SLICE:NAME=VALUE"),
        (["rollback", "credit", "--env", "prod"], "nothing to roll back"),
        (["policy", "apply", "/no/such/auditml.toml"], "no policy file"),
        (["incident", "open", "credit", "1", "--summary", "x", "--severity", "huge"], "severity"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Each bad input gets one sentence naming the problem, exit 2, and the log unchanged."""
    run(["train", "credit", "--actor", DS, "--db", url], capsys)
    before = size(url)
    code, out, err = run([*args, "--actor", VAL, "--db", url], capsys)
    assert code == 2, out + err
    assert message in err
    assert "Traceback" not in err
    assert size(url) == before


def test_policy_apply_and_show(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A policy file is in force only once applied; show names the event that recorded it."""
    file = tmp_path / "auditml.toml"
    file.write_text('[gates]\nproduction = ["auc >= 0.8"]\n', encoding="utf-8")
    code, out, _ = run(["policy", "show", "--json", "--db", url], capsys)
    assert json.loads(out)["seq"] is None
    code, out, err = run(["policy", "apply", str(file), "--reason", "MRM-7", "--db", url], capsys)
    assert code == 0, err
    code, out, _ = run(["policy", "show", "--json", "--db", url], capsys)
    shown = json.loads(out)
    assert shown["seq"] == 1 and shown["policy"]["gates"] == {"production": ["auc >= 0.8"]}
    run(["train", "credit", "--metric", "auc=0.7", "--actor", DS, "--db", url], capsys)
    run(["approve", "credit", "1", "--actor", VAL, "--db", url], capsys)
    code, _, err = run(
        ["deploy", "credit", "1", "-e", "production", "--actor", REL, "--db", url], capsys
    )
    assert code == 3 and "metric-gate" in err
    code, _, err = run(
        [
            "evaluate",
            "credit",
            "1",
            "--metric",
            "auc=0.85",
            "--slice",
            "age<30:auc=0.8",
            "--actor",
            VAL,
            "--db",
            url,
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = run(
        ["deploy", "credit", "1", "-e", "production", "--actor", REL, "--db", url], capsys
    )
    assert code == 0, err


def test_a_deploy_to_an_environment_never_used_says_so(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no environments declared, a deploy to a new (misspelt?) one notes it; the first not."""
    with AuditLog.open(url) as log:
        log.record_training("credit", actor=DS)
        log.approve("credit", "1", actor=VAL)
    deploy = ["deploy", "credit", "1", "--actor", REL, "--db", url, "--env"]
    code, _, err = run([*deploy, "production"], capsys)
    assert code == 0 and "note:" not in err
    code, _, err = run([*deploy, "prdouction"], capsys)
    assert code == 0 and "'prdouction' is an environment credit never served in before" in err
    assert "did you mean 'production'?" in err and "environments = [...]" in err
    with AuditLog.open(url) as log:
        log.record_training("credit", actor=DS)
        log.approve("credit", "2", actor=VAL)
    code, _, err = run(
        ["deploy", "credit", "2", "--actor", REL, "--db", url, "-e", "prdouction"], capsys
    )
    assert code == 0 and "note:" not in err  # known now


def test_a_second_approval_by_the_same_person_is_noted(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Approving again is recorded, with a note that rules count the person once."""
    with AuditLog.open(url) as log:
        log.record_training("credit", actor=DS)
    approve = ["approve", "credit", "1", "--actor", VAL, "--db", url]
    code, _, err = run(approve, capsys)
    assert code == 0 and "note:" not in err
    code, _, err = run(approve, capsys)
    assert code == 0 and f"{VAL} approved v1 before (event 2)" in err and "count one person" in err


def test_an_undeclared_environment_gets_a_did_you_mean(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With environments declared, a misspelt or miscased one is refused with a suggestion."""
    policy = tmp_path / "auditml.toml"
    policy.write_text('environments = ["staging", "production"]\n', encoding="utf-8")
    assert run(["policy", "apply", str(policy), "--db", url], capsys)[0] == 0
    with AuditLog.open(url) as log:
        log.record_training("credit", actor=DS)
        log.approve("credit", "1", actor=VAL)
    for typed in ("prdouction", "Production"):
        code, _, err = run(["deploy", "credit", "1", "-e", typed, "--db", url], capsys)
        assert code == 2 and "did you mean 'production'?" in err


def test_status_says_who_rejected_a_version(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A rejected version reads 'rejected by' its validator in status, not a bare state."""
    with AuditLog.open(url) as log:
        log.record_training("credit", actor=DS)
        log.reject("credit", "1", reason="VR-9 failed", actor=VAL)
    code, out, _ = run(["status", "credit", "--db", url], capsys)
    assert code == 0 and f"rejected by {VAL}" in out
    with AuditLog.open(url) as log:  # a running version rejected later still runs
        log.record_training("credit", actor=DS)
        log.approve("credit", "2", actor=VAL)
        log.deploy("credit", "2", "production", actor=REL)
        log.reject("credit", "2", reason="VR-10 failed", actor=VAL)
    code, out, _ = run(["status", "credit", "--db", url], capsys)
    assert code == 0 and "deployed by" not in out


def test_train_from_json_file_records_a_failed_pipeline_run(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A JSON file supplies params and metrics; --failed records the run as failed."""
    spec = tmp_path / "run.json"
    spec.write_text(json.dumps({"params": {"lr": 0.1}, "metrics": {"loss": 1.5}}), "utf-8")
    code, out, err = run(
        [
            "train",
            "credit",
            "--from-json",
            str(spec),
            "--failed",
            "spark job lost",
            "--actor",
            DS,
            "--db",
            url,
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["version"] == "1"
    with AuditLog.open(url) as log:
        data = next(log.events(action="model.train")).event.data
    assert data["params"] == {"lr": 0.1} and data["metrics"] == {"loss": 1.5}
    assert data["status"] == "failed" and data["error"]["message"] == "spark job lost"


@pytest.mark.parametrize(
    ("started", "ended", "recorded"),
    [
        ("2026-12-04T20:00:00Z", "2026-12-04T21:30:00.5Z", "2026-12-04T20:00:00.000000Z"),
        ("2026-12-04T21:00:00+01:00", "2026-12-04T20:10:00Z", "2026-12-04T20:00:00.000000Z"),
        ("2026-12-04T20:00:00.000000Z", "2026-12-04T20:00:00.000000Z", None),
    ],
)
def test_train_from_json_takes_any_iso_time_with_a_zone_and_records_utc(
    url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    started: str,
    ended: str,
    recorded: str | None,
) -> None:
    """Run times in any ISO 8601 form with a zone are recorded in the log's UTC form."""
    spec = tmp_path / "run.json"
    spec.write_text(json.dumps({"started_at": started, "ended_at": ended}), "utf-8")
    code, _, err = run(["train", "credit", "--from-json", str(spec), "--db", url], capsys)
    assert code == 0, err
    with AuditLog.open(url) as log:
        data = next(log.events(action="model.train")).event.data
    assert data["started_at"] == (recorded or started)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (
            {"started_at": "2026-12-04T20:00:00"},
            "started_at '2026-12-04T20:00:00' has no time zone",
        ),
        ({"ended_at": "yesterday"}, "ended_at 'yesterday' is not a date or time; use ISO 8601"),
        ({"started_at": "0001-01-01T00:00:00+01:00"}, "is out of range: give a time between"),
        ({"started_at": "0999-01-01T00:00:00Z"}, "is out of range: give a time between"),
        (
            {"started_at": "2026-12-04T20:00:00Z", "ended_at": "2026-12-04T19:00:00Z"},
            "the run ended (2026-12-04T19:00:00Z) before it started (2026-12-04T20:00:00Z)",
        ),
    ],
)
def test_train_from_json_refuses_a_zoneless_unreadable_or_reversed_time(
    url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    times: dict[str, str],
    message: str,
) -> None:
    """A time with no zone, not a time, or an end before the start is refused; nothing written."""
    spec = tmp_path / "run.json"
    spec.write_text(json.dumps(times), "utf-8")
    with AuditLog.open(url) as log:
        size = log.head().size
    code, _, err = run(["train", "credit", "--from-json", str(spec), "--db", url], capsys)
    assert code == 2 and message in err and "Traceback" not in err and "pattern" not in err
    with AuditLog.open(url) as log:
        assert log.head().size == size


def test_demo_tells_the_story_and_the_log_verifies(tmp_path: Path) -> None:
    """`auditml demo` runs as a user would run it, and its log verifies and holds the story."""
    out_dir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "auditml", "demo", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rolled production back to v1" in done.stdout
    url = f"sqlite:///{out_dir / 'audit.db'}"
    with AuditLog.open(url) as log:
        log.verify()
        state = log.status("credit-risk")["credit-risk"]
        assert state.running == {"staging": "2", "production": "1"}
        actions = [r.event.action for r in log.events()]
        denied = [r.event.data["rule"] for r in log.events(action="policy.denied")]
    assert denied == ["separation-of-duties", "card-incomplete", "rollout-evidence"]
    assert actions.count("model.rollback") == 1 and actions.count("card.update") == 1
    cards = sorted(p.name for p in (out_dir / "cards").iterdir())
    assert "credit-risk-v1.html" in cards and "credit-risk-v2.md" in cards
    assert (out_dir / "audit-report.html").read_text().startswith("<!DOCTYPE html>")
    assert (out_dir / "audit-report.pdf").read_bytes().startswith(b"%PDF")
    card = json.loads((out_dir / "cards" / "credit-risk-v1.json").read_text())
    assert card["completeness"]["missing"] == [] and card["binding"]["checkpoint"] is not None
    again = subprocess.run(
        [sys.executable, "-m", "auditml", "demo", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr


def test_demo_without_weasyprint_says_how_to_get_the_pdf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without WeasyPrint the demo names the pdf extra and a check that needs no PDF."""
    from rich.console import Console

    from auditml._internal import demo as _demo

    monkeypatch.setattr(_demo, "_can_write_pdf", lambda: False)
    out_dir = tmp_path / "demo [copy]"  # Rich markup would eat the brackets
    console = Console(record=True, width=300)
    _demo.run_demo(out_dir, console)
    text = console.export_text()
    assert "audit-report.html (install auditml[pdf] for the PDF)" in text
    assert f"recorded in {out_dir / 'audit.db'}" in text
    assert f"auditml verify --db sqlite:///{out_dir / 'audit.db'}" in text
    assert "audit-report.pdf" not in text
    assert not (out_dir / "audit-report.pdf").exists()
    assert not list((out_dir / "cards").glob("*.pdf"))


def test_demo_refuses_a_folder_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo never clears a non-empty folder that is not its own."""
    (tmp_path / "precious.txt").write_text("keep", encoding="utf-8")
    code, _, err = run(["demo", "--out", str(tmp_path)], capsys)
    assert code == 2 and "not made by `auditml demo`" in err
    assert (tmp_path / "precious.txt").exists()


def test_a_misspelt_model_or_environment_is_named_with_what_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Status suggests the model meant; history refuses an environment the policy lacks."""
    from auditml import AuditLog, Policy
    from auditml.cli import main

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    log, _ = AuditLog.init(url, origin="bank.example/typos", actor="admin@bank.example")
    with log:
        log.record_training("credit-risk", actor="dana@bank.example")
        log.apply_policy(Policy(environments=["staging", "production"]), actor="admin@bank.example")
    for args, wanted in (
        (["status", "credit-rsik"], "did you mean 'credit-risk'?"),
        (["history", "credit-risk", "--env", "prod"], "unknown environment 'prod'"),
    ):
        try:
            main([*args, "--db", url])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        assert code == 2 and wanted in capsys.readouterr().err


def test_emoji_codes_and_brackets_in_a_reason_print_as_written(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reason holding `:smile:` and `[bold]` shows in history exactly as it was recorded."""
    reason = "ok :smile: per [bold]VR-7[/] :thumbs_up:"
    assert run(["train", "credit", "--actor", DS, "--db", url], capsys)[0] == 0
    assert run(["approve", "credit", "1", "--actor", VAL, "--db", url], capsys)[0] == 0
    deploy = ["deploy", "credit", "1", "--env", "production", "--reason", reason]
    code, out, err = run([*deploy, "--actor", REL, "--db", url], capsys)
    assert code == 0, err
    code, out, err = run(["history", "credit", "--db", url], capsys)
    assert code == 0, err
    assert reason in out and "😄" not in out and "👍" not in out
