"""Working beside MLflow: import its registry, watch its changes, move its aliases on decisions.

Each test runs against a real MLflow store: a SQLite-backed registry made in
the test's folder, or a real ``mlflow server`` process on 127.0.0.1 that this
module starts once and stops at the end.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog
from auditml.core.events import is_imported
from auditml.core.registry import KnownModel, KnownVersion, diff, fold_known
from tests.conftest import run_cli

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.filterwarnings("ignore")

RELEASE_POLICY = """
[roles]
"rhea@bank.example" = ["release"]
"victor@bank.example" = ["validator"]

[permissions]
deploy = ["release"]
rollback = ["release"]

[mlflow]
tracking_uri = "{uri}"
aliases = {{ production = "champion" }}
stages = {{ production = "Production" }}
on_violation = {command}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(uri: str) -> Any:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Make an empty MLflow SQLite store, migrated once per module (MLflow takes seconds to)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    _client(f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def registry_uri(empty_registry: Path, tmp_path: Path) -> str:
    """Return a fresh, empty MLflow registry (SQLite backend) in the test's own folder."""
    path = tmp_path / "mlflow.db"
    shutil.copy(empty_registry, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run a real `mlflow server` on 127.0.0.1 (SQLite backend), started once for the module."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        # The server caches each event's webhooks (60 s by default): a new one must count now.
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--default-artifact-root",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(folder / "server.log", "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise AssertionError((folder / "server.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        else:
            raise AssertionError("mlflow server did not answer /health")
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _version(client: Any, model: str, *, auc: float, depth: int) -> str:
    """Log one run and register its model as a new version; return the version."""
    experiment = client.get_experiment_by_name("auditml-tests")
    exp_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment("auditml-tests")
    )
    run = client.create_run(exp_id, tags={"mlflow.user": "dana@bank.example"})
    run_id = run.info.run_id
    client.log_param(run_id, "depth", depth)
    client.log_metric(run_id, "auc", auc)
    client.set_terminated(run_id)
    mv = client.create_model_version(
        model, f"runs:/{run_id}/model", run_id=run_id, tags={"stage-ok": "yes"}
    )
    return str(mv.version)


def _registry(uri: str, model: str = "credit-risk", other: str = "fraud") -> dict[str, Any]:
    """Make a registry of two models: versions, a stage, aliases, tags and a description."""
    client = _client(uri)
    client.create_registered_model(model, tags={"team": "risk"}, description="scores applicants")
    client.create_registered_model(other)
    v1 = _version(client, model, auc=0.81, depth=4)
    v2 = _version(client, model, auc=0.84, depth=6)
    f1 = _version(client, other, auc=0.9, depth=3)
    client.set_registered_model_alias(model, "champion", v1)
    client.set_registered_model_alias(model, "challenger", v2)
    client.transition_model_version_stage(other, f1, "Staging")
    return {"client": client, "versions": [v1, v2], "other": f1}


def _init(db_url: str) -> AuditLog:
    log, _ = AuditLog.init(db_url, origin="bank.example/credit-models")
    log.close()
    return AuditLog.open(db_url)


def _changes(log: AuditLog) -> list[Any]:
    return [r.event for r in log.events(action="registry.change")]


def _policy(tmp_path: Path, db_url: str, uri: str, command: list[str] | None = None) -> None:
    """Record a policy that maps production to the champion alias and Production stage."""
    text = RELEASE_POLICY.format(uri=uri, command=json.dumps(command or []))
    (tmp_path / "auditml.toml").write_text(text)
    with AuditLog.open(db_url) as log:
        log.apply_policy(tmp_path / "auditml.toml", actor="officer@bank.example")


# -- import ---------------------------------------------------------------------------------


def test_import_records_registry_history(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import records each version's run, stage, aliases, tags and description, as imported."""
    made = _registry(registry_uri)
    _init(db_url).close()
    code, out, err = run_cli(
        ["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url], capsys
    )
    assert code == 0, err
    assert "MLflow's word" in out
    with AuditLog.open(db_url) as log:
        trains = {r.event.subject["version"]: r.event for r in log.events(action="model.train")}
        assert set(trains) == {"1", "2"}  # both models have a version 1: see below
        credit = [r.event for r in log.events(model="credit-risk", action="model.train")]
        assert [e.subject["version"] for e in credit] == made["versions"]
        first = credit[0]
        mark = first.data["imported"]
        assert mark["source"] == "mlflow"
        run = made["client"].get_run(mark["id"])
        assert mark["uri"] == f"runs:/{run.info.run_id}"
        assert first.data["params"] == {"depth": "4"}
        assert first.data["metrics"] == {"auc": 0.81}
        assert first.actor.id == "dana@bank.example"
        mv = made["client"].get_model_version("credit-risk", "1")
        # MLflow's own time is kept apart from the time auditml recorded the event.
        assert mark["time"].startswith(
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mv.creation_timestamp / 1000))
        )
        assert mark["details"]["run_start"] is not None
        assert mark["details"]["model_version"] == "models:/credit-risk/1"
        changes = _changes(log)
        assert all(is_imported(e.data) for e in changes)
        aliases = {
            e.data["alias"]: e.subject["version"] for e in changes if e.data["kind"] == "alias.set"
        }
        assert aliases == {"champion": "1", "challenger": "2"}
        stages = [
            (e.subject["model"], e.data["stage"]) for e in changes if e.data["kind"] == "stage.set"
        ]
        assert stages == [("fraud", "Staging")]
        kinds = {(e.subject["model"], e.data["kind"], e.data.get("key")) for e in changes}
        assert ("credit-risk", "tag.set", "team") in kinds
        assert ("credit-risk", "description.set", None) in kinds
        assert all("source_time" not in e.data for e in changes if e.data["kind"] == "alias.set")
        assert log.status("credit-risk")["credit-risk"].versions["1"].trained_imported


def test_second_import_adds_nothing_and_third_only_what_changed(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Importing again records nothing; after an alias moves, only that move is recorded."""
    made = _registry(registry_uri)
    _init(db_url).close()
    args = ["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url]
    assert run_cli(args, capsys)[0] == 0
    with AuditLog.open(db_url) as log:
        size = log.head().size
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    assert "Nothing new" in out
    with AuditLog.open(db_url) as log:
        assert log.head().size == size
    made["client"].set_registered_model_alias("credit-risk", "champion", "2")
    assert run_cli(args, capsys)[0] == 0
    with AuditLog.open(db_url) as log:
        new = [r.event for r in log.events(start=size)]
    assert [(e.action, e.data["kind"]) for e in new] == [("registry.change", "alias.set")]
    assert new[0].subject["version"] == "2"
    assert new[0].data["previous"] == "1"


def test_import_of_one_model_and_of_an_unknown_one(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model imports only that model; a model MLflow lacks is named, and nothing is written."""
    _registry(registry_uri)
    _init(db_url).close()
    base = ["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url]
    code, _, err = run_cli([*base, "--model", "no-such-model"], capsys)
    assert code == 2
    assert "no registered model 'no-such-model'" in err
    assert run_cli([*base, "--model", "fraud"], capsys)[0] == 0
    with AuditLog.open(db_url) as log:
        assert {r.event.subject["model"] for r in log.events(start=1)} == {"fraud"}


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("http://127.0.0.1:{port}", "nothing answers there"),
        ("nonsense-scheme://registry", "could not use the MLflow registry"),
    ],
)
def test_bad_tracking_uri_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, said: str
) -> None:
    """A tracking URI nothing answers at fails in one sentence, exit 2, no traceback."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    _init(db).close()
    given = uri.format(port=_free_port())
    code, _, err = run_cli(["import", "mlflow", "--tracking-uri", given, "--db", db], capsys)
    assert code == 2
    assert said in err
    assert err.startswith("error:")
    with AuditLog.open(db) as log:
        assert log.head().size == 1


@pytest.mark.parametrize("missing", ["sqlite:///{tmp}/typo/mlflow.db", "{tmp}/no-mlruns"])
def test_a_missing_local_store_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    """A mistyped local store path is an error, exit 2; MLflow does not get to create one."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    _init(db).close()
    given = missing.format(tmp=tmp_path)
    code, _, err = run_cli(["import", "mlflow", "--tracking-uri", given, "--db", db], capsys)
    assert code == 2
    assert err.startswith("error: no MLflow")
    assert not (tmp_path / "typo").exists()
    with AuditLog.open(db) as log:
        assert log.head().size == 1


def test_import_from_another_registry_never_reads_as_deletions(
    db_url: str,
    registry_uri: str,
    empty_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Importing a second, empty MLflow records nothing: the first one's models stay undeleted."""
    _registry(registry_uri)
    _init(db_url).close()
    assert (
        run_cli(["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url], capsys)[0]
        == 0
    )
    other = tmp_path / "other.db"
    shutil.copy(empty_registry, other)
    with AuditLog.open(db_url) as log:
        size = log.head().size
    code, _, err = run_cli(
        ["import", "mlflow", "--tracking-uri", f"sqlite:///{other}", "--db", db_url], capsys
    )
    assert code == 0, err
    with AuditLog.open(db_url) as log:
        assert log.head().size == size, [r.event.data for r in log.events(start=size)]


def test_import_without_a_tracking_uri_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --tracking-uri, policy setting or MLFLOW_TRACKING_URI: the error names all three."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    _init(db).close()
    code, _, err = run_cli(["import", "mlflow", "--db", db], capsys)
    assert code == 2
    assert "--tracking-uri" in err and "MLFLOW_TRACKING_URI" in err


def test_policy_refuses_a_tracking_uri_with_credentials(tmp_path: Path) -> None:
    """A password in [mlflow] tracking_uri would stay on the log for ever: the policy is refused."""
    from auditml.errors import InvalidInputError

    (tmp_path / "auditml.toml").write_text(
        '[mlflow]\ntracking_uri = "https://bob:secret@mlflow.example"\n'
    )
    with _init(f"sqlite:///{tmp_path / 'audit.db'}") as log:
        with pytest.raises(InvalidInputError, match="MLFLOW_TRACKING_PASSWORD"):
            log.apply_policy(tmp_path / "auditml.toml")
        assert log.head().size == 1


# -- watch ----------------------------------------------------------------------------------


def test_watch_records_an_alias_moved_in_mlflow_within_one_poll(
    db_url: str, server_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An alias moved in MLflow (a real server) is recorded live by the next poll, nothing more."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    made = _registry(server_uri, model, f"o-{uuid.uuid4().hex[:8]}")
    _init(db_url).close()
    base = ["--tracking-uri", server_uri, "--model", model, "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    made["client"].set_registered_model_alias(model, "champion", "2")
    code, out, err = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 0, err
    assert "by reading it once" in out and "every 30 s" not in out
    assert f"{model} v2: alias champion -> v2 (was v1)" in out
    with AuditLog.open(db_url) as log:
        last = list(log.events(action="registry.change"))[-1].event
        assert not is_imported(last.data)
        assert last.data["via"] == "poll"
        assert last.data["kind"] == "alias.set"
        assert "violations" not in last.data  # no policy maps champion to an environment
        size = log.head().size
    code, out, _ = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert "no changes" in out
    with AuditLog.open(db_url) as log:
        assert log.head().size == size
    made["client"].set_registered_model_alias(model, "champion", "1")
    code, out, err = run_cli(["mlflow", "watch", "--once", "--json", *base], capsys)
    assert code == 0, err
    (line,) = [json.loads(text) for text in out.splitlines()]  # one JSON line per change
    assert (line["kind"], line["version"], line["previous"], line["via"]) == (
        "alias.set",
        "1",
        "2",
        "poll",
    )
    assert line["violations"] == [] and line["seq"] == size
    code, out, _ = run_cli(["mlflow", "watch", "--once", "--json", *base], capsys)
    assert code == 0 and out == ""  # nothing new: no line


def test_watch_records_each_kind_of_change(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new version, a tag set, a stage moved and a version deleted are each recorded once."""
    made = _registry(registry_uri)
    _init(db_url).close()
    base = ["--tracking-uri", registry_uri, "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    client = made["client"]
    v3 = _version(client, "credit-risk", auc=0.86, depth=8)
    client.set_model_version_tag("credit-risk", "1", "reviewed", "no")
    client.transition_model_version_stage("credit-risk", "2", "Archived")
    client.delete_model_version("fraud", made["other"])
    code, _, _ = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 0
    with AuditLog.open(db_url) as log:
        seen = [
            (e.subject.get("model"), e.subject.get("version"), e.data["kind"])
            for e in _changes(log)
            if not is_imported(e.data)
        ]
        assert sorted(seen, key=str) == sorted(
            [
                ("credit-risk", v3, "version.created"),
                ("credit-risk", v3, "tag.set"),
                ("credit-risk", "1", "tag.set"),
                ("credit-risk", "2", "stage.set"),
                ("fraud", made["other"], "version.deleted"),
            ],
            key=str,
        )
        # The new version's run is MLflow's word: imported training, live observation.
        train = next(iter(log.events(model="credit-risk", version=v3, action="model.train")))
        assert is_imported(train.event.data)
        assert train.event.data["metrics"] == {"auc": 0.86}


def test_a_violating_change_is_recorded_shown_and_runs_the_command(
    db_url: str, registry_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Champion moved in MLflow to an unapproved version: a violation, in status, to the command."""
    made = _registry(registry_uri)
    _init(db_url).close()
    got = tmp_path / "violation.json"
    command = [sys.executable, "-c", f"import sys; open({str(got)!r}, 'a').write(sys.stdin.read())"]
    _policy(tmp_path, db_url, registry_uri, command)
    base = ["--tracking-uri", registry_uri, "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    made["client"].set_registered_model_alias("credit-risk", "champion", "2")
    code, out, _ = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 1  # a scheduled --once run can tell it recorded a violation
    assert "VIOLATION" in out and "mlflow.unapproved" in out
    with AuditLog.open(db_url) as log:
        (found,) = [v for v in log.registry_violations() if v.rule == "mlflow.unapproved"]
        assert (found.model, found.version, found.environment) == ("credit-risk", "2", "production")
        rules = {v.rule for v in log.registry_violations()}
        assert rules == {"mlflow.unapproved", "mlflow.no_release_decision"}
    payloads = [json.loads(line) for line in got.read_text().replace("}{", "}\n{").splitlines()]
    assert {p["rule"] for p in payloads} == rules
    assert all(p["model"] == "credit-risk" and p["version"] == "2" for p in payloads)
    code, out, _ = run_cli(["status", "--db", db_url], capsys)
    assert code == 0
    assert "violations: 2 change(s) made in MLflow" in out
    assert "mlflow.no_release_decision" in out
    code, out, _ = run_cli(["status", "--json", "--db", db_url], capsys)
    assert code == 0
    shown = {m["model"]: m["registry_violations"] for m in json.loads(out)}
    assert {v["rule"] for v in shown["credit-risk"]} == rules
    assert all(v["version"] == "2" and v["seq"] > 0 for v in shown["credit-risk"])
    report = tmp_path / "report.md"
    code, _, err = run_cli(
        ["report", "--format", "md", "--out", str(report), "--db", db_url], capsys
    )
    assert code == 0, err
    text = report.read_text()
    section = text.split("Changes made in MLflow that policy would have refused")[1]
    assert "credit-risk v2" in section and "VIOLATION mlflow.unapproved" in section


def test_watch_of_a_model_deleted_in_mlflow_records_its_versions_gone(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A watched model deleted in MLflow is recorded as its versions deleted, not an error."""
    made = _registry(registry_uri)
    _init(db_url).close()
    base = ["--tracking-uri", registry_uri, "--model", "credit-risk", "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    made["client"].delete_registered_model("credit-risk")
    code, _, err = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 0, err
    with AuditLog.open(db_url) as log:
        live = [e for e in _changes(log) if not is_imported(e.data)]
    assert sorted((e.data["kind"], e.subject.get("version")) for e in live) == sorted(
        [
            ("version.deleted", "1"),
            ("version.deleted", "2"),
            ("alias.removed", None),
            ("alias.removed", None),
            ("tag.deleted", None),
            ("description.set", None),
        ],
        key=str,
    )


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ([sys.executable, "-c", "import sys; sys.exit(3)"], "exited with status 3"),
        (["/nonexistent/page-oncall"], "could not run '/nonexistent/page-oncall'"),
    ],
)
def test_a_failing_violation_command_is_reported_and_the_violation_kept(
    registry_uri: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    said: str,
) -> None:
    """on_violation that fails or cannot start is a warning; the violation is recorded anyway."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    made = _registry(registry_uri)
    _init(db).close()
    _policy(tmp_path, db, registry_uri, command)
    base = ["--tracking-uri", registry_uri, "--db", db]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    made["client"].set_registered_model_alias("credit-risk", "champion", "2")
    code, out, err = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 1
    assert "VIOLATION" in out
    assert said in err and err.startswith("warning: on_violation for event")
    with AuditLog.open(db) as log:
        assert len(log.registry_violations()) == 2


def test_a_stage_moved_to_production_without_a_decision_is_a_violation(
    db_url: str, registry_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Moving a version to the Production stage in MLflow, with no auditml deploy, is recorded."""
    made = _registry(registry_uri)
    _init(db_url).close()
    _policy(tmp_path, db_url, registry_uri)
    base = ["--tracking-uri", registry_uri, "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    made["client"].transition_model_version_stage("fraud", made["other"], "Production")
    assert run_cli(["mlflow", "watch", "--once", *base], capsys)[0] == 1  # a violation recorded
    with AuditLog.open(db_url) as log:
        assert {(v.model, v.kind, v.stage) for v in log.registry_violations()} == {
            ("fraud", "stage.set", "Production")
        }


def test_imported_history_is_never_checked_for_violations(
    db_url: str, registry_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An import of a champion already in place records MLflow's word, not a violation."""
    _registry(registry_uri)
    _init(db_url).close()
    _policy(tmp_path, db_url, registry_uri)
    base = ["--tracking-uri", registry_uri, "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    with AuditLog.open(db_url) as log:
        assert log.registry_violations() == []


# -- driving MLflow from decisions ----------------------------------------------------------


def test_deploy_and_rollback_move_the_alias(
    db_url: str, server_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deploy moves the production alias on a real server; the watch then sees no violation."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    made = _registry(server_uri, model, f"o-{uuid.uuid4().hex[:8]}")
    client = made["client"]
    client.delete_registered_model_alias(model, "champion")
    _init(db_url).close()
    _policy(tmp_path, db_url, server_uri)
    base = ["--tracking-uri", server_uri, "--model", model, "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    for version in ("1", "2"):
        args = ["approve", model, version, "--actor", "victor@bank.example", "--db", db_url]
        assert run_cli(args, capsys)[0] == 0
        args = ["deploy", model, version, "-e", "production", "--actor", "rhea@bank.example"]
        code, _, err = run_cli([*args, "--db", db_url], capsys)
        assert code == 0, err
        assert f"moved {model}@champion to version {version}" in err
        assert str(client.get_model_version_by_alias(model, "champion").version) == version
    code, _, err = run_cli(
        ["rollback", model, "-e", "production", "--actor", "rhea@bank.example", "--db", db_url],
        capsys,
    )
    assert code == 0, err
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    with AuditLog.open(db_url) as log:
        syncs = [r.event.data for r in log.events(action="registry.sync")]
        assert [(s["status"], s.get("previous")) for s in syncs] == [
            ("done", None),
            ("done", "1"),
            ("done", "2"),
        ]
    code, out, _ = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 0
    assert "VIOLATION" not in out
    with AuditLog.open(db_url) as log:
        assert log.registry_violations() == []


def test_a_canary_leaves_the_alias_and_an_automatic_rollback_moves_it_back(
    db_url: str, server_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A canary never moves the alias; the monitor's automatic rollback moves it to the stable."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    made = _registry(server_uri, model, f"o-{uuid.uuid4().hex[:8]}")
    client = made["client"]
    client.delete_registered_model_alias(model, "champion")
    _init(db_url).close()
    text = RELEASE_POLICY.format(uri=server_uri, command="[]").replace(
        '"victor@bank.example" = ["validator"]',
        '"victor@bank.example" = ["validator"]\n"monitor@bank.example" = ["release"]',
    )
    text += (
        '\n[monitor.production]\ntriggers = ["error_rate > 0.1"]\nmin_requests = 10\n'
        'window = "1h"\nactor = "monitor@bank.example"\n'
    )
    (tmp_path / "auditml.toml").write_text(text)
    with AuditLog.open(db_url) as log:
        log.apply_policy(tmp_path / "auditml.toml", actor="officer@bank.example")
    db = ["--db", db_url]
    base = ["--tracking-uri", server_uri, "--model", model, *db]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    for version in ("1", "2"):
        args = ["approve", model, version, "--actor", "victor@bank.example", *db]
        assert run_cli(args, capsys)[0] == 0
    deploy = ["deploy", model, "1", "-e", "production", "--actor", "rhea@bank.example", *db]
    assert run_cli(deploy, capsys)[0] == 0
    canary = [*deploy[:2], "2", *deploy[3:], "--traffic", "10%"]
    code, out, err = run_cli(canary, capsys)
    assert code == 0 and "canary" in out, err
    assert "moved" not in err
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    client.set_registered_model_alias(model, "champion", "2")  # moved by hand meanwhile
    with AuditLog.open(db_url) as log, log.runtime(model, env="production") as rec:
        for n in range(40):
            version = "2" if n % 2 else "1"
            error = "timeout" if version == "2" and n < 20 else None
            rec.record(
                f"r-{n}", version=version, output={"score": 0.5}, latency_ms=5.0, error=error
            )
    code, out, err = run_cli(["monitor", model, "-e", "production", "--act", *db], capsys)
    assert code == 4 and "Rolled production back" in out, err
    assert f"moved {model}@champion to version 1" in err
    assert str(client.get_model_version_by_alias(model, "champion").version) == "1"
    with AuditLog.open(db_url) as log:
        rollback = next(iter(log.events(action="model.rollback")))
        syncs = [r.event.data for r in log.events(action="registry.sync")]
    assert syncs[-1]["status"] == "done"
    assert syncs[-1]["decision_seq"] == rollback.seq


def test_a_failed_alias_move_is_reported_and_recorded_and_the_decision_stays(
    db_url: str, registry_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow unreachable at deploy: the deploy stands, the failure is said and recorded."""
    _registry(registry_uri)
    _init(db_url).close()
    assert (
        run_cli(["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url], capsys)[0]
        == 0
    )
    _policy(tmp_path, db_url, f"http://127.0.0.1:{_free_port()}")
    args = ["approve", "credit-risk", "2", "--actor", "victor@bank.example", "--db", db_url]
    assert run_cli(args, capsys)[0] == 0
    code, out, err = run_cli(
        [
            "deploy",
            "credit-risk",
            "2",
            "-e",
            "production",
            "--actor",
            "rhea@bank.example",
            *["--db", db_url],
        ],
        capsys,
    )
    assert code == 0
    assert "Deployed credit-risk v2 to production" in out
    assert "decision stands" in err and "NOT moved" in err
    with AuditLog.open(db_url) as log:
        assert log.status("credit-risk")["credit-risk"].running == {"production": "2"}
        (sync,) = [r.event.data for r in log.events(action="registry.sync")]
        assert sync["status"] == "failed"
        assert "nothing answers there" in sync["error"]


# -- webhooks -------------------------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_forged_stale_and_replayed_webhooks_are_refused() -> None:
    """Only a delivery signed with the secret, fresh and not seen before, wakes the watch."""
    from auditml.mlflow_bridge import WebhookListener, sign_webhook

    secret = "s3cret-for-the-webhook-test"
    listener = WebhookListener("127.0.0.1", 0, secret)
    listener.start()
    try:
        body = b'{"entity": "model_version_alias", "action": "created", "data": {}}'
        now = str(int(time.time()))

        def headers(delivery: str, stamp: str, key: str = secret) -> dict[str, str]:
            return {
                "X-MLflow-Delivery-Id": delivery,
                "X-MLflow-Timestamp": stamp,
                "X-MLflow-Signature": sign_webhook(key, delivery, stamp, body),
                "Content-Type": "application/json",
            }

        assert _post(listener.url, body, headers("d1", now, key="not-the-secret")) == 401
        assert _post(listener.url, body, {"Content-Type": "application/json"}) == 401
        assert _post(listener.url, body, headers("d2", str(int(time.time()) - 3600))) == 401
        assert listener.wake.empty()
        assert _post(listener.url, body, headers("d3", now)) == 200
        assert listener.wake.get_nowait()["entity"] == "model_version_alias"
        assert _post(listener.url, body, headers("d3", now)) == 401  # replayed
        assert listener.wake.empty()
        assert len(listener.refused) == 4
    finally:
        listener.stop()


def test_watch_takes_signed_webhooks_from_a_real_server(
    db_url: str, server_uri: str, tmp_path: Path
) -> None:
    """With --listen and a secret, the watch registers a webhook, and a move arrives by it."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    made = _registry(server_uri, model, f"o-{uuid.uuid4().hex[:8]}")
    _init(db_url).close()
    secret = tmp_path / "secret"
    secret.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    port = _free_port()
    command = [sys.executable, "-m", "auditml", "mlflow", "watch", "--tracking-uri", server_uri]
    command += ["--model", model, "--interval", "600", "--db", db_url]
    command += ["--listen", f"127.0.0.1:{port}", "--secret-file", str(secret)]
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode())
        lines.put("")

    def next_line() -> str:
        try:
            line = lines.get(timeout=120)  # a bound on a hang, not a measurement
        except queue.Empty:
            raise AssertionError("the watch printed nothing for 2 minutes") from None
        assert line, "the watch ended"
        return line

    threading.Thread(target=read, daemon=True).start()
    try:
        first = next_line()
        assert "by webhooks" in first and "signatures checked" in first, first
        hooks = [h for h in made["client"].list_webhooks() if str(port) in h.url]
        assert len(hooks) == 1
        # The first poll records the model as it is (its description comes last) before any wait.
        line = ""
        while f"{model}: description set" not in line:
            line = next_line()
        time.sleep(1.5)  # past the server's webhook cache, so the new webhook is posted to
        made["client"].set_registered_model_alias(model, "champion", "2")
        while "(via webhook)" not in line:
            line = next_line()
        assert f"{model} v2: alias champion -> v2 (was v1)  (via webhook)" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert [h for h in made["client"].list_webhooks() if str(port) in h.url] == []
    with AuditLog.open(db_url) as log:
        last = list(log.events(action="registry.change"))[-1].event
        assert last.data["via"] == "webhook"


def test_watch_refuses_half_a_webhook_setup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--listen without --secret-file (or a short secret) is refused before anything runs."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    _init(db).close()
    base = ["mlflow", "watch", "--tracking-uri", "sqlite:///x.db", "--db", db]
    code, _, err = run_cli([*base, "--listen", "127.0.0.1:9"], capsys)
    assert code == 2 and "--secret-file" in err
    (tmp_path / "short").write_text("abc")
    code, _, err = run_cli([*base, "--listen", "127.0.0.1:9", "--secret-file", "short"], capsys)
    assert code == 2 and "at least 16" in err
    code, _, err = run_cli([*base, "--listen", "nowhere", "--secret-file", "short"], capsys)
    assert code == 2 and "HOST:PORT" in err


# -- MLflow stays out of everything else ----------------------------------------------------


def test_auditml_and_status_never_import_mlflow(tmp_path: Path) -> None:
    """`import auditml`, `auditml status` and a deploy without [mlflow] leave mlflow unimported."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    script = f"""
import sys
import auditml
from auditml.cli import main
assert "mlflow" not in sys.modules, "import auditml"
for args in (
    ["init", "--origin", "t", "--db", {db!r}], ["status", "--db", {db!r}], ["log", "--db", {db!r}]
):
    try:
        main(args)
    except SystemExit:
        pass
print("mlflow" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_track_training_records_the_active_mlflow_run(tmp_path: Path, registry_uri: str) -> None:
    """@track_training inside an MLflow run records its run and experiment ids; outside, none."""
    from auditml import track_training

    db = f"sqlite:///{tmp_path / 'audit.db'}"
    log = _init(db)

    @track_training(model="credit-risk", log=log)
    def train() -> dict[str, float]:
        return {"auc": 0.8}

    mlflow.set_tracking_uri(registry_uri)
    with mlflow.start_run() as run:
        train()
    train()
    first, second = [r.event.data for r in log.events(action="model.train")]
    assert first["tags"]["mlflow.run_id"] == run.info.run_id
    assert first["tags"]["mlflow.experiment_id"] == run.info.experiment_id
    assert "mlflow.run_id" not in second.get("tags", {})
    log.close()


# -- the pure rules -------------------------------------------------------------------------


def test_diff_then_fold_round_trips_to_what_the_registry_shows() -> None:
    """Folding the changes diff names gives back the snapshot, so a second diff is empty."""
    from auditml.core.events import Event

    now = {
        "m": KnownModel(
            "m",
            versions={
                "1": KnownVersion("1", stage="Production", tags={"a": "1"}, description="d"),
                "2": KnownVersion("2"),
            },
            aliases={"champion": "1"},
            tags={"team": "risk"},
            description="model",
        )
    }
    changes = diff({}, now)
    events = [
        Event(
            v=1,
            log="t",
            seq=i,
            prev="0" * 64,
            time="2026-01-01T00:00:00.000000Z",
            actor={"id": "x"},
            action="registry.change",
            subject=c.subject(),
            data=c.data(),
        )
        for i, c in enumerate(changes)
    ]
    known = fold_known(events)
    assert diff(known, now) == []
    assert diff(known, now, models=["other"]) == []
    # A model left out of `models` is not taken for deleted.
    assert diff(known, {}, models=[]) == []
    assert {c.kind for c in diff(known, {}, models=["m"])} == {
        "version.deleted",
        "alias.removed",
        "tag.deleted",
        "description.set",
    }


# -- version numbers auditml and MLflow both gave -------------------------------------------


def _trained_live(db_url: str, tags: dict[str, str] | None = None) -> int:
    """Record credit-risk v1 as a live auditml training; return the log's size after it."""
    with _init(db_url) as log:
        data: dict[str, Any] = {"metrics": {"auc": 0.7}, **({"tags": tags} if tags else {})}
        receipt = log.record_training("credit-risk", data=data, actor="dana@bank.example")
        assert receipt.version == "1"
        return log.head().size


@pytest.mark.parametrize("command", [["import", "mlflow"], ["mlflow", "watch", "--once"]])
def test_mlflow_version_numbered_like_another_training_is_refused_naming_both(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """MLflow's own v1 of a model auditml trained live as v1 is refused, named; nothing written."""
    size = _trained_live(db_url)
    client = _client(registry_uri)
    client.create_registered_model("credit-risk")
    version = _version(client, "credit-risk", auc=0.81, depth=4)
    run_id = client.get_model_version("credit-risk", version).run_id
    code, out, err = run_cli([*command, "--tracking-uri", registry_uri, "--db", db_url], capsys)
    assert code == 2, out
    assert err.startswith("error:") and "Traceback" not in err
    assert "'credit-risk' version 1" in err and run_id in err
    assert "event 1" in err and "no MLflow run" in err
    assert "mlflow.run_id" in err and "--model" in err
    with AuditLog.open(db_url) as log:
        assert log.head().size == size  # MLflow's run never lands on auditml's training
        assert list(log.events(action="registry.change")) == []


def test_mlflow_version_of_the_same_run_is_attached_to_the_live_training(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live training naming MLflow's run (mlflow.run_id) is that version: attached, not copied."""
    client = _client(registry_uri)
    client.create_registered_model("credit-risk")
    version = _version(client, "credit-risk", auc=0.81, depth=4)
    run_id = client.get_model_version("credit-risk", version).run_id
    _trained_live(db_url, {"mlflow.run_id": run_id})
    code, _, err = run_cli(
        ["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url], capsys
    )
    assert code == 0, err
    with AuditLog.open(db_url) as log:
        trains = [r.event for r in log.events(action="model.train")]
        assert len(trains) == 1 and not is_imported(trains[0].data)
        created = [e for e in _changes(log) if e.data["kind"] == "version.created"]
        assert [e.subject for e in created] == [{"model": "credit-risk", "version": "1"}]


def test_mlflow_version_with_another_run_than_the_live_training_is_refused(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live training naming a different MLflow run is another training: refused, both named."""
    size = _trained_live(db_url, {"mlflow.run_id": "0" * 32})
    client = _client(registry_uri)
    client.create_registered_model("credit-risk")
    _version(client, "credit-risk", auc=0.81, depth=4)
    code, _, err = run_cli(
        ["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url], capsys
    )
    assert code == 2
    assert "MLflow run " + "0" * 32 in err
    with AuditLog.open(db_url) as log:
        assert log.head().size == size


def test_model_recreated_in_mlflow_is_not_attached_to_the_old_version_1(
    db_url: str, registry_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model deleted and made again in MLflow restarts at v1: not the imported old v1's run."""
    made = _registry(registry_uri)
    _init(db_url).close()
    base = ["--tracking-uri", registry_uri, "--model", "credit-risk", "--db", db_url]
    assert run_cli(["import", "mlflow", *base], capsys)[0] == 0
    client = made["client"]
    client.delete_registered_model("credit-risk")
    assert run_cli(["mlflow", "watch", "--once", *base], capsys)[0] == 0
    client.create_registered_model("credit-risk")
    _version(client, "credit-risk", auc=0.5, depth=1)
    with AuditLog.open(db_url) as log:
        size = log.head().size
    code, _, err = run_cli(["mlflow", "watch", "--once", *base], capsys)
    assert code == 2
    assert "'credit-risk' version 1" in err and "imported" in err
    with AuditLog.open(db_url) as log:
        assert log.head().size == size


def test_same_model_name_in_a_second_registry_is_not_attached_to_the_first(
    db_url: str,
    registry_uri: str,
    empty_registry: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two MLflow servers both with credit-risk v1: the second's run never joins the first's."""
    _registry(registry_uri)
    _init(db_url).close()
    assert (
        run_cli(["import", "mlflow", "--tracking-uri", registry_uri, "--db", db_url], capsys)[0]
        == 0
    )
    other = tmp_path / "other.db"
    shutil.copy(empty_registry, other)
    client = _client(f"sqlite:///{other}")
    client.create_registered_model("credit-risk")
    _version(client, "credit-risk", auc=0.5, depth=1)
    with AuditLog.open(db_url) as log:
        size = log.head().size
    code, _, err = run_cli(
        ["import", "mlflow", "--tracking-uri", f"sqlite:///{other}", "--db", db_url], capsys
    )
    assert code == 2 and "'credit-risk' version 1" in err
    with AuditLog.open(db_url) as log:
        assert log.head().size == size


# -- one registry under every spelling of its URI -------------------------------------------


def test_a_local_registry_typed_relative_then_absolute_is_one_registry(
    db_url: str,
    registry_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Imported as sqlite:///mlflow.db, watched as its absolute path or +driver: nothing new."""
    _registry(registry_uri)
    _init(db_url).close()
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        ["import", "mlflow", "--tracking-uri", "sqlite:///mlflow.db", "--db", db_url], capsys
    )
    assert code == 0, err
    with AuditLog.open(db_url) as log:
        size = log.head().size
        uris = {e.data["uri"] for e in _changes(log)}
    assert uris == {f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for spelling in (
        f"sqlite:///{tmp_path}/./mlflow.db",
        f"sqlite:///{tmp_path}/../{tmp_path.name}/mlflow.db",
        "sqlite+pysqlite:///mlflow.db",
    ):
        code, out, err = run_cli(
            ["mlflow", "watch", "--once", "--tracking-uri", spelling, "--db", db_url], capsys
        )
        assert code == 0, err
        assert "no changes" in out, spelling
    with AuditLog.open(db_url) as log:
        assert log.head().size == size


def test_a_server_typed_with_a_slash_or_in_capitals_is_one_registry(
    db_url: str, server_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """http://host:port, http://host:port/ and HTTP://HOST:port// follow one registry's history."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    made = _registry(server_uri, model, f"o-{uuid.uuid4().hex[:8]}")
    _init(db_url).close()
    base = ["--model", model, "--db", db_url]
    assert run_cli(["import", "mlflow", "--tracking-uri", server_uri, *base], capsys)[0] == 0
    with AuditLog.open(db_url) as log:
        size = log.head().size
    for spelling in (server_uri + "/", server_uri.upper() + "//"):
        code, out, err = run_cli(
            ["mlflow", "watch", "--once", "--tracking-uri", spelling, *base], capsys
        )
        assert code == 0, err
        assert "no changes" in out
    with AuditLog.open(db_url) as log:
        assert log.head().size == size
    made["client"].set_registered_model_alias(model, "champion", "2")
    code, out, _ = run_cli(
        ["mlflow", "watch", "--once", "--tracking-uri", server_uri + "/", *base], capsys
    )
    assert code == 0 and "alias champion -> v2 (was v1)" in out


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("http://127.0.0.1:5000/\nerror: all verified", "whitespace or control"),
        ("http://127.0.0.1:99999", "port '99999'"),
        ("http://:5000", "no host"),
        ("http://x" + "y" * 5000, "characters long"),
    ],
)
def test_a_hostile_tracking_uri_is_refused_before_mlflow_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, said: str
) -> None:
    """A URI no registry can have fails in one line, exit 2, in import and watch; writes nothing."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    _init(db).close()
    for command in (["import", "mlflow"], ["mlflow", "watch", "--once"]):
        code, out, err = run_cli([*command, "--tracking-uri", uri, "--db", db], capsys)
        assert code == 2, out
        assert err.startswith("error: the MLflow tracking URI") and said in err
        assert err.count("\n") == 1 and len(err) < 400
    with AuditLog.open(db) as log:
        assert log.head().size == 1


def test_a_deploy_never_points_the_alias_at_mlflows_own_version_of_that_number(
    db_url: str, registry_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live v1 deployed while MLflow's v1 is another run: alias stays, the failure recorded."""
    _trained_live(db_url)
    client = _client(registry_uri)
    client.create_registered_model("credit-risk")
    _version(client, "credit-risk", auc=0.5, depth=1)
    _version(client, "credit-risk", auc=0.6, depth=2)
    client.set_registered_model_alias("credit-risk", "champion", "2")
    _policy(tmp_path, db_url, registry_uri)
    db = ["--db", db_url]
    assert (
        run_cli(["approve", "credit-risk", "1", "--actor", "victor@bank.example", *db], capsys)[0]
        == 0
    )
    code, out, err = run_cli(
        ["deploy", "credit-risk", "1", "-e", "production", "--actor", "rhea@bank.example", *db],
        capsys,
    )
    assert code == 0 and "Deployed credit-risk v1 to production" in out
    assert "NOT moved" in err and "is not the training auditml deployed as version 1" in err
    assert str(client.get_model_version_by_alias("credit-risk", "champion").version) == "2"
    with AuditLog.open(db_url) as log:
        (sync,) = [r.event.data for r in log.events(action="registry.sync")]
        assert sync["status"] == "failed" and "live, event 1" in sync["error"]
        assert sync["uri"] == registry_uri  # the registry's identity: already absolute


def test_a_deploy_of_the_same_run_moves_the_alias(
    db_url: str, registry_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live v1 trained inside the MLflow run of MLflow's v1 is that version: the alias moves."""
    client = _client(registry_uri)
    client.create_registered_model("credit-risk")
    version = _version(client, "credit-risk", auc=0.5, depth=1)
    _trained_live(
        db_url, {"mlflow.run_id": client.get_model_version("credit-risk", version).run_id}
    )
    _policy(tmp_path, db_url, registry_uri)
    db = ["--db", db_url]
    assert (
        run_cli(["approve", "credit-risk", "1", "--actor", "victor@bank.example", *db], capsys)[0]
        == 0
    )
    code, _, err = run_cli(
        ["deploy", "credit-risk", "1", "-e", "production", "--actor", "rhea@bank.example", *db],
        capsys,
    )
    assert code == 0 and "moved credit-risk@champion to version 1" in err
    assert str(client.get_model_version_by_alias("credit-risk", "champion").version) == "1"
