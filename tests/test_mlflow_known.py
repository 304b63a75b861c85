"""What the log says a registry showed: one registry under every spelling, folded once per process.

These tests need no MLflow: they record snapshots as ``auditml mlflow watch``
would, through ``AuditLog.record_registry``, on both backends.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from auditml import AuditLog
from auditml.core.events import Actor, Draft
from auditml.core.registry import KnownModel, KnownVersion, Snapshot
from auditml.errors import InvalidInputError, VerificationError
from tests.conftest import drop_triggers, raw_query, raw_sql

URI = "http://mlflow.internal:5000"


def _init(db_url: str) -> AuditLog:
    log, _ = AuditLog.init(db_url, origin="bank.example/credit-models")
    log.close()
    return AuditLog.open(db_url)


def _shows(
    *versions: str, champion: str | None = None, tag: str = "a", name: str = "credit-risk"
) -> Snapshot:
    """Return a registry that shows one model with ``versions`` (runless) and its champion."""
    model = KnownModel(
        name,
        versions={v: KnownVersion(v, tags={"t": tag}) for v in versions},
        aliases={"champion": champion} if champion else {},
    )
    return {name: model}


def _old_change(log: AuditLog, uri: str, kind: str, version: str, **data: str) -> None:
    """Append a registry.change as a release before URI identities did: ``uri`` as it was typed."""
    draft = Draft.build(
        "registry.change",
        actor=Actor(id="ops@bank.example"),
        subject={"model": "credit-risk", "version": version},
        data={"kind": kind, "uri": uri, "via": "poll", "violations": [], **data},
    )
    log._ledger.decide_batch(lambda view: [draft])


@pytest.mark.parametrize(
    "spelling",
    [
        "http://mlflow.internal:5000/",
        "HTTP://MLFLOW.internal:5000",
        "http://mlflow.internal:5000//",
        "http://ops@mlflow.internal:5000/./",
    ],
)
def test_a_second_spelling_of_the_registry_records_nothing_new(db_url: str, spelling: str) -> None:
    """Recording the same registry under another spelling of its URI finds it already known."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
        size = log.head().size
        recorded = log.record_registry(
            _shows("1", "2", champion="1"), via="poll", uri=spelling, actor="ops"
        )
        assert recorded.changes == [] and log.head().size == size
        assert set(log.registry_known(spelling)["credit-risk"].versions) == {"1", "2"}
        recorded = log.record_registry(
            _shows("1", "2", champion="2"), via="poll", uri=spelling, actor="ops"
        )
        assert [c.kind for c, _, _ in recorded.changes] == ["alias.set"]
        last = list(log.events(action="registry.change"))[-1].event
        assert last.data["uri"] == URI  # recorded under the one identity, not as typed


def test_old_events_under_other_spellings_are_read_as_one_registry_and_still_verify(
    db_url: str,
) -> None:
    """Events an older release recorded as typed stay byte for byte, fold together, and verify."""
    with _init(db_url) as log:
        _old_change(log, "HTTP://MLflow.Internal:5000/", "version.created", "1")
        _old_change(log, "http://mlflow.internal:5000", "version.created", "2")
        _old_change(log, "http://mlflow.internal:5000//", "alias.set", "2", alias="champion")
        _old_change(log, "http://elsewhere:5000", "version.created", "3")
        raw = [r.event.data["uri"] for r in log.events(action="registry.change")]
        known = log.registry_known(URI)["credit-risk"]
        assert set(known.versions) == {"1", "2"} and known.aliases == {"champion": "2"}
        assert set(log.registry_known(None)["credit-risk"].versions) == {"1", "2", "3"}
        recorded = log.record_registry(
            _shows("1", "2", champion="2"), via="poll", uri=URI + "/", actor="ops"
        )
        # Only the tags are new: nothing of the old spellings is recorded again.
        assert {c.kind for c, _, _ in recorded.changes} == {"tag.set"}
        assert [r.event.data["uri"] for r in log.events(action="registry.change")][:4] == raw
        assert log.verify().size == log.head().size


def test_an_old_event_with_an_unusable_uri_is_kept_apart_not_an_error(db_url: str) -> None:
    """An old event whose URI no registry can have never joins a lookup, and reading never fails."""
    with _init(db_url) as log:
        _old_change(log, "http://mlflow.internal:99999", "version.created", "9")
        assert log.registry_known(URI) == {}
        assert set(log.registry_known(None)["credit-risk"].versions) == {"9"}
        with pytest.raises(InvalidInputError, match="port"):
            log.registry_known("http://mlflow.internal:99999")


@pytest.mark.parametrize("uri", ["", "http://h:5000/\nforged", "http://h:70000", "x" * 5000])
def test_recording_under_a_hostile_uri_is_refused_and_writes_nothing(db_url: str, uri: str) -> None:
    """A URI no registry can have is refused before anything is appended."""
    with _init(db_url) as log:
        with pytest.raises(InvalidInputError, match="tracking URI"):
            log.record_registry(_shows("1"), via="poll", uri=uri, actor="ops")
        assert log.head().size == 1


def test_a_relative_store_is_recorded_under_its_absolute_path(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """./mlruns is recorded as the folder it names, so the absolute spelling finds it again."""
    monkeypatch.chdir(tmp_path)
    with _init(db_url) as log:
        log.record_registry(_shows("1"), via="import", uri="./mlruns/", actor="ops")
        (event,) = [
            r.event
            for r in log.events(model="credit-risk", action="registry.change")
            if r.event.data["kind"] == "version.created"
        ]
        assert event.data["uri"] == f"file://{tmp_path}/mlruns"
        assert log.registry_known(f"file://{tmp_path}/mlruns")
        monkeypatch.chdir(tmp_path.parent)
        assert log.registry_known("./mlruns") == {}  # another folder's ./mlruns
        assert log.registry_known(f"{tmp_path}/mlruns")


# -- the fold kept between polls ---------------------------------------------------------------


def _steps() -> list[tuple[str, Snapshot]]:
    """Return a run of registry states under two registries, with every kind of change."""
    other = "sqlite:////srv/mlflow.db"
    return [
        (URI, _shows("1", champion="1")),
        (other, _shows("1", "2", name="fraud")),
        (URI + "/", _shows("1", "2", champion="2", tag="b")),
        (URI, _shows("2", champion="2", tag="b")),
        (other, _shows("2", name="fraud", champion="2")),
        (other, {}),
        (URI, _shows("2", "3", tag="c")),
    ]


def test_the_kept_fold_always_equals_a_fresh_fold_of_the_log(db_url: str) -> None:
    """After every recording, the watching handle's fold equals one read afresh from the bytes."""
    with _init(db_url) as log:
        for uri, shows in _steps():
            log.record_registry(shows, via="poll", uri=uri, actor="ops")
            with AuditLog.open(db_url) as fresh:
                for key in (URI, "sqlite:////srv/mlflow.db", None):
                    assert log.registry_known(key) == fresh.registry_known(key)


def test_a_fold_handed_out_cannot_change_the_kept_one(db_url: str) -> None:
    """Changing what registry_known returned never reaches the next decision."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", champion="1"), via="poll", uri=URI, actor="ops")
        got = log.registry_known(URI)
        got["credit-risk"].aliases.clear()
        got["credit-risk"].versions.clear()
        assert log.record_registry(_shows("1", champion="1"), via="poll", uri=URI, actor="ops") == (
            log.record_registry(_shows("1", champion="1"), via="poll", uri=URI, actor="ops")
        )
        assert log.registry_known(URI)["credit-risk"].aliases == {"champion": "1"}


def test_events_another_writer_appends_reach_the_kept_fold(db_url: str) -> None:
    """A change recorded by another process is seen by the watching handle's next poll."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", champion="1"), via="poll", uri=URI, actor="ops")
        assert log.registry_known(URI)["credit-risk"].aliases == {"champion": "1"}
        with AuditLog.open(db_url) as other:
            other.record_registry(_shows("1", "2", champion="2"), via="poll", uri=URI, actor="ops")
        assert log.registry_known(URI)["credit-risk"].aliases == {"champion": "2"}
        recorded = log.record_registry(
            _shows("1", "2", champion="2"), via="poll", uri=URI, actor="ops"
        )
        assert recorded.changes == []


def _last_change(db_url: str) -> tuple[int, bytes]:
    rows = raw_query(
        db_url, "SELECT seq, body FROM auditml_event WHERE action = 'registry.change' ORDER BY seq"
    )
    seq, body = rows[-1]
    return int(seq), bytes(body)


def test_a_kept_fold_over_changed_bytes_is_refused_not_trusted(db_url: str) -> None:
    """The last event the fold stands on, changed in the database, fails as it would uncached."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", champion="1"), via="poll", uri=URI, actor="ops")
        assert log.registry_known(URI)
        seq, body = _last_change(db_url)
        drop_triggers(db_url)
        forged = body.replace(b'"champion"', b'"champi0n"')
        assert forged != body
        raw_sql(db_url, [("UPDATE auditml_event SET body = %s WHERE seq = %s", (forged, seq))])
        with pytest.raises(VerificationError, match="changed after it was appended"):
            log.registry_known(URI)


def test_a_kept_fold_over_a_consistent_rewrite_is_folded_again(db_url: str) -> None:
    """Bytes and hash both rewritten under the fold's last event: folded afresh, as a new reader."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", champion="1"), via="poll", uri=URI, actor="ops")
        assert log.registry_known(URI)["credit-risk"].aliases == {"champion": "1"}
        seq, body = _last_change(db_url)
        drop_triggers(db_url)
        forged = body.replace(b'"champion"', b'"champi0n"')
        digest = hashlib.sha256(b"\x00" + forged).digest()
        raw_sql(
            db_url,
            [
                (
                    "UPDATE auditml_event SET body = %s, hash = %s WHERE seq = %s",
                    (forged, digest, seq),
                )
            ],
        )
        with AuditLog.open(db_url) as fresh:
            assert log.registry_known(URI) == fresh.registry_known(URI)
        assert log.registry_known(URI)["credit-risk"].aliases == {"champi0n": "1"}
        with pytest.raises(VerificationError):  # and verify names the rewrite
            log.verify()


# -- what a hostile or broken MLflow server can send ---------------------------------------------


class _Page(list[Any]):
    """One page of an MLflow search, as MlflowClient returns it (a list with a ``token``)."""

    def __init__(self, items: list[Any], token: Any = None) -> None:
        super().__init__(items)
        self.token = token


class _FakeClient:
    """An MlflowClient double: one model whose versions and pages a test chooses."""

    def __init__(self, versions: list[Any], *, token: Any = None) -> None:
        self.versions = versions
        self.token = token

    def search_registered_models(self, page_token: Any = None, **_: Any) -> _Page:
        model = SimpleNamespace(
            name="credit-risk", aliases={}, tags={}, description="", last_updated_timestamp=None
        )
        return _Page([model])

    def search_model_versions(self, page_token: Any = None, **_: Any) -> _Page:
        return _Page(self.versions, self.token)

    def get_run(self, run_id: str) -> Any:
        raise LookupError(f"no run {run_id[:20]}")


def _mv(version: str, run_id: str | None = None, created: Any = 1_700_000_000_000) -> Any:
    return SimpleNamespace(
        version=version,
        current_stage="None",
        tags={},
        description="",
        source="s3://bucket/model",
        run_id=run_id,
        creation_timestamp=created,
        last_updated_timestamp=created,
    )


def test_a_search_that_hands_back_the_same_page_token_is_stopped() -> None:
    """A server whose pages never end (a token repeated) is an error, not an endless poll."""
    from auditml.errors import StoreError
    from auditml.mlflow_bridge import read_snapshot

    with pytest.raises(StoreError, match="page token it had already given"):
        read_snapshot(_FakeClient([_mv("1")], token="again"), URI)


def test_a_search_past_the_item_limit_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server sending more items than any registry holds is stopped at the limit, named."""
    from auditml import mlflow_bridge
    from auditml.errors import StoreError

    monkeypatch.setattr(mlflow_bridge, "MAX_ITEMS", 10)
    versions = [_mv(str(n)) for n in range(1, 12)]
    with pytest.raises(StoreError, match="more than 10 items"):
        mlflow_bridge.read_snapshot(_FakeClient(versions), URI)


@pytest.mark.parametrize("created", [-1, 0, True, float("nan"), float("inf"), 1e30, 2**63, "soon"])
def test_timestamps_no_clock_can_say_are_kept_as_none(created: Any) -> None:
    """A version time that is negative, NaN, past year 9999 or text reads as MLflow kept none."""
    from auditml.mlflow_bridge import read_snapshot

    shown = read_snapshot(_FakeClient([_mv("1", created=created)]), URI)
    assert shown["credit-risk"].versions["1"].created is None


@pytest.mark.parametrize(
    "run_id", ["r" * 1_000_000, "\x1b[2J\nerror: forged line", "0" * 32 + "\u202e"]
)
def test_a_colliding_version_with_a_hostile_run_id_is_refused_in_one_short_line(
    db_url: str, run_id: str
) -> None:
    """A huge run id or one with control characters never floods or forges the refusal."""
    from auditml.mlflow_bridge import read_runs, read_snapshot

    with _init(db_url) as log:
        log.record_training("credit-risk", data={}, actor="dana@bank.example")
        client = _FakeClient([_mv("1", run_id=run_id)])
        shown = read_snapshot(client, URI)
        runs = read_runs(client, URI, shown, log.registry_known(URI))
        with pytest.raises(InvalidInputError) as caught:
            log.record_registry(shown, via="poll", uri=URI, actor="ops", runs=runs)
        message = str(caught.value)
        assert len(message) < 1200 and "\n" not in message and "\x1b" not in message
        assert "'credit-risk' version 1" in message
        assert log.head().size == 2


@pytest.mark.parametrize("odd", ["9" * 10_000, "\u00b2", "\u0663", "007"])
def test_version_names_no_int_can_take_are_recorded_in_order_not_a_crash(
    db_url: str, odd: str
) -> None:
    """MLflow versions of 10,000 digits or non-ASCII digits sort and record; none crashes a poll."""
    from auditml.mlflow_bridge import read_snapshot

    with _init(db_url) as log:
        shown = read_snapshot(_FakeClient([_mv("2"), _mv(odd), _mv("10")]), URI)
        recorded = log.record_registry(shown, via="import", uri=URI, actor="ops")
        created = [c.version for c, _, _ in recorded.changes if c.kind == "version.created"]
        assert sorted(created) == sorted(["2", odd, "10"])
        assert created.index("2") < created.index("10")
        assert log.record_registry(shown, via="poll", uri=URI, actor="ops").changes == []


def test_an_old_relative_spelling_is_read_against_the_folder_of_the_reader(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old event typed ./mlruns names the store in the folder it is read from, cache or not."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    with _init(db_url) as log:
        _old_change(log, "./mlruns", "version.created", "1")
        assert log.registry_known(f"file://{first}/mlruns")
        monkeypatch.chdir(second)
        assert log.registry_known(f"file://{first}/mlruns") == {}
        assert set(log.registry_known(f"file://{second}/mlruns")["credit-risk"].versions) == {"1"}


def test_an_alias_auditml_moved_is_known_so_a_move_back_in_mlflow_is_a_change(db_url: str) -> None:
    """After a done sync (v1 -> v2), MLflow showing v2 is nothing new and v1 again is a change."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
        log.approve("credit-risk", "2", actor="val@bank.example")
        decision = log.deploy("credit-risk", "2", "production", actor="ops@bank.example").seq
        for status in ("failed", "done"):  # a failed move leaves the registry as it was
            log.record_registry_sync(
                model="credit-risk",
                version="2",
                environment="production",
                alias="champion",
                decision_seq=decision,
                uri=URI,
                previous="1",
                error="nothing answers there" if status == "failed" else None,
                actor="ops",
            )
            champion = log.registry_known(URI)["credit-risk"].aliases["champion"]
            assert champion == ("1" if status == "failed" else "2")
        size = log.head().size
        same = log.record_registry(_shows("1", "2", champion="2"), via="poll", uri=URI, actor="o")
        assert same.changes == [] and log.head().size == size  # auditml's own move, not MLflow's
        back = log.record_registry(_shows("1", "2", champion="1"), via="poll", uri=URI, actor="o")
        ((change, _, _),) = back.changes
        assert (change.kind, change.version, change.previous) == ("alias.set", "1", "2")
        log.verify()


@pytest.mark.parametrize(
    ("version", "environment", "at"),
    [("1", "production", "deploy"), ("2", "staging", "deploy"), ("2", "production", "import")],
)
def test_a_sync_that_names_no_decision_putting_the_version_there_is_refused(
    db_url: str, version: str, environment: str, at: str
) -> None:
    """A done sync hides MLflow moves: one naming no matching live decision writes nothing."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
        imported = log.head().size - 1
        log.approve("credit-risk", "2", actor="val@bank.example")
        deployed = log.deploy("credit-risk", "2", "production", actor="ops@bank.example").seq
        size = log.head().size
        with pytest.raises(InvalidInputError, match="is no live deploy, rollback or promotion"):
            log.record_registry_sync(
                model="credit-risk",
                version=version,
                environment=environment,
                alias="champion",
                decision_seq=deployed if at == "deploy" else imported,
                uri=URI,
                actor="ops",
            )
        assert log.head().size == size
        assert log.registry_known(URI)["credit-risk"].aliases == {"champion": "1"}


def test_an_alias_sync_refused_after_the_decision_warns_and_the_command_stands(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sync for a decision already replaced is refused: a warning, never an error after it."""
    from auditml.cli._common import sync_alias
    from auditml.core.policy import MlflowRules, Policy

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with _init(db_url) as log:
        log.apply_policy(Policy(mlflow=MlflowRules(aliases={"production": "champion"})))
        for version in ("1", "2"):
            log.record_training("credit-risk", actor="ds@bank.example")
            log.approve("credit-risk", version, actor="val@bank.example")
        first = log.deploy("credit-risk", "1", "production", actor="ops@bank.example").seq
        log.deploy("credit-risk", "2", "production", actor="ops@bank.example")  # in between
        size = log.head().size
        sync_alias(log, "credit-risk", "1", "production", first, "ops@bank.example")
        assert log.head().size == size
    err = capsys.readouterr().err
    assert f"the production decision stands (event {first})" in err
    assert "could not be recorded" in err and "mlflow watch" in err
