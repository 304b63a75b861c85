import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditml import (
    Actor,
    AppendError,
    AuditLog,
    ConfigurationError,
    Draft,
    InvalidInputError,
    LogNotFoundError,
    StoreUnavailableError,
    UnknownActionError,
    VerificationError,
)
from auditml.core.canonical import canonical_bytes, loads_strict
from auditml.core.merkle import EMPTY_ROOT, root_of
from auditml.errors import CanonicalizationError
from auditml.store import EventFilter
from tests.conftest import drop_triggers, raw_query, raw_sql

ORIGIN = "bank.example/credit-models"


def _log(url: str) -> AuditLog:
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin@bank.example")
    return log


def _evaluations(n: int, start: int = 0) -> list[Draft]:
    return [
        Draft.build(
            "model.evaluate",
            actor="ci@bank.example",
            subject={"model": "credit-risk", "version": str(1 + i % 3)},
            data={"metrics": {"auc": 0.8 + i / 1e6, "n": i}, "notes": f"run {i}"},
        )
        for i in range(start, start + n)
    ]


def _count(url: str) -> int:
    return int(raw_query(url, "SELECT count(*) FROM auditml_event")[0][0])


def test_init_writes_log_init_and_is_idempotent(db_url: str) -> None:
    """Init creates the log with a log.init event at seq 0, and a second init changes nothing."""
    log, created = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        assert created
        first = list(log.events())
        assert [r.event.action for r in first] == ["log.init"]
        assert first[0].event.seq == 0 and first[0].event.prev == "0" * 64
        assert first[0].event.actor.id == "admin@bank.example"
    again, created_again = AuditLog.init(db_url)
    with again:
        assert not created_again
        assert again.origin == ORIGIN
        assert again.head().size == 1


def test_init_refuses_a_second_origin(db_url: str) -> None:
    """A store holds one log: init with another origin is refused and writes nothing."""
    _log(db_url).close()
    with pytest.raises(ConfigurationError, match="already holds the log"):
        AuditLog.init(db_url, origin="other.example/log")
    assert _count(db_url) == 1


def test_init_refuses_bad_origin(tmp_path: Path) -> None:
    """An origin with spaces or '+' (which break checkpoints) is refused before any file exists."""
    url = f"sqlite:///{tmp_path / 'x' / 'audit.db'}"
    for bad in ("has space", "a+b", "", "new\nline"):
        with pytest.raises(InvalidInputError, match="invalid origin"):
            AuditLog.init(url, origin=bad)
    assert not (tmp_path / "x").exists()


def test_appended_bytes_are_canonical_and_chained(db_url: str) -> None:
    """Every stored body is exactly JCS(event), hashed with the 0x00 prefix, and linked by prev."""
    with _log(db_url) as log:
        log.append(
            "model.train",
            subject={"model": "credit-risk", "version": "1"},
            data={"metrics": {"auc": 0.91, "loss": 1.0}, "params": {"lr": 1e-7, "é": [1]}},
            actor="ds@bank.example",
            imported=True,
        )
        log.append_many(_evaluations(5), imported=True)
        records = list(log.events())
    assert [r.seq for r in records] == list(range(7))
    prev = "0" * 64
    for rec in records:
        assert rec.body == canonical_bytes(json.loads(rec.body))
        assert rec.hash == hashlib.sha256(b"\x00" + rec.body).hexdigest()
        assert rec.event.prev == prev
        assert rec.event.log == ORIGIN
        prev = rec.hash
    assert b'"lr":1e-7' in records[1].body and b'"loss":1}' in records[1].body


def test_receipts_match_the_stored_events(db_url: str) -> None:
    """Append and append_many return the seq, hash and time of what was stored."""
    with _log(db_url) as log:
        one = log.append("model.retire", subject={"model": "m", "version": "1"}, imported=True)
        many = log.append_many(_evaluations(3), imported=True)
        stored = {r.seq: r for r in log.events()}
    for receipt in [one, *many]:
        assert stored[receipt.seq].hash == receipt.hash
        assert stored[receipt.seq].event.time == receipt.time
    assert [r.seq for r in many] == [2, 3, 4]


def test_append_many_keeps_each_actor_of_a_generator_batch(tmp_path: Path) -> None:
    """Drafts made one at a time and dropped at once still record their own actors."""

    def made() -> Iterator[Draft]:
        for i in range(300):
            who = Actor(id=f"user-{i}@bank.example", team=f"team-{i}")
            yield Draft.build("model.evaluate", actor=who, subject={"model": "m"}, data={})

    with _log(f"sqlite:///{tmp_path / 'audit.db'}") as log:
        log.append_many(made(), imported=True)
        actors = [r.event.actor for r in log.events(action="model.evaluate")]
    assert [(a.id, (a.model_extra or {})["team"]) for a in actors] == [
        (f"user-{i}@bank.example", f"team-{i}") for i in range(300)
    ]


def test_time_is_rfc3339_utc_and_never_goes_backwards(db_url: str) -> None:
    """Times have microseconds and Z, and never decrease along the log."""
    with _log(db_url) as log:
        for _ in range(5):
            log.append("model.retire", subject={"model": "m"}, imported=True)
        times = [r.event.time for r in log.events()]
    assert times == sorted(times)
    assert all(len(t) == 27 and t.endswith("Z") for t in times)


def test_unknown_action_is_refused_and_writes_nothing(db_url: str) -> None:
    """An action with no model is refused with the list of known actions; nothing is written."""
    with _log(db_url) as log:
        with pytest.raises(UnknownActionError, match=r"model\.deploy"):
            log.append("model.explode", subject={"model": "m"})
        assert log.head().size == 1
    assert _count(db_url) == 1


@pytest.mark.parametrize(
    ("action", "data", "error", "match"),
    [
        ("model.evaluate", {"metrics": {"auc": math.nan}}, InvalidInputError, "metrics.auc"),
        ("model.evaluate", {"metrics": {"auc": math.inf}}, InvalidInputError, "metrics.auc"),
        ("model.train", {"params": {"seed": 2**60}}, CanonicalizationError, "params.seed"),
        ("model.deploy", {}, InvalidInputError, "environment"),
        ("model.deploy", {"environment": "prod", "colour": "red"}, InvalidInputError, "colour"),
        ("model.train", {"status": "maybe"}, InvalidInputError, "status"),
    ],
)
def test_invalid_data_is_refused_and_writes_nothing(
    db_url: str, action: str, data: dict[str, object], error: type[Exception], match: str
) -> None:
    """Bad data gets an error naming the field, and the log is exactly as it was."""
    with _log(db_url) as log:
        before = log.head()
        with pytest.raises(error, match=match):
            log.append(action, subject={"model": "m", "version": "1"}, data=data, imported=True)
        assert log.head() == before


def test_a_bad_draft_in_a_batch_writes_nothing(db_url: str) -> None:
    """append_many validates everything first: one bad item, and no event of the batch lands."""
    with _log(db_url) as log:
        good = _evaluations(3)
        with pytest.raises(InvalidInputError):
            log.append_many([*good, "not a draft"], imported=True)  # type: ignore[list-item]
        assert log.head().size == 1


def test_a_failed_append_leaves_the_log_exactly_as_it_was(db_url: str) -> None:
    """When the database refuses part of a batch, the whole transaction rolls back."""
    with _log(db_url) as log:
        log.append_many(_evaluations(3), imported=True)
        before = log.head()
        # A row squatting on the next seq makes the batch's insert fail half-way through.
        raw_sql(
            db_url,
            [
                (
                    "INSERT INTO auditml_event (log_id, seq, prev, hash, time, action, body) "
                    "VALUES (1, %s, %s, %s, 'x', 'model.retire', %s)",
                    (6, b"\1" * 32, b"\2" * 32, b"{}"),
                )
            ],
        )
        with pytest.raises(AppendError, match="wrote nothing"):
            log.append_many(_evaluations(5), imported=True)
        assert log.head() == before
        assert _count(db_url) == 4 + 1


def test_events_filters(db_url: str) -> None:
    """events() filters by model, version, action, time window, start and limit."""
    with _log(db_url) as log:
        log.append_many(_evaluations(6), imported=True)
        log.append(
            "model.deploy",
            subject={"model": "other", "version": "9"},
            data={"environment": "production"},
            imported=True,
        )
        assert len(list(log.events(model="credit-risk"))) == 6
        assert len(list(log.events(model="credit-risk", version="2"))) == 2
        assert [r.seq for r in log.events(action="model.deploy")] == [7]
        assert len(list(log.events(action=["model.deploy", "log.init"]))) == 2
        assert len(list(log.events(limit=3))) == 3
        assert [r.seq for r in log.events(start=5)] == [5, 6, 7]
        assert [r.seq for r in log.events(newest_first=True, limit=2)] == [7, 6]
        assert len(list(log.events(since="2000-01-01", until="2999-01-01"))) == 8
        assert list(log.events(until="2000-01-01")) == []
        with pytest.raises(InvalidInputError, match="not a date"):
            list(log.events(since="last tuesday"))


def test_events_of_several_actions_come_in_seq_order(db_url: str) -> None:
    """Several actions come in seq order, newest first and limited as asked, read either way."""
    with _log(db_url) as log:
        for i in range(4):
            log.append_many(_evaluations(2, start=i), imported=True)
            log.append("model.retire", subject={"model": "m", "version": str(i)}, imported=True)
            log.append(
                "model.deploy",
                subject={"model": "m", "version": str(i)},
                data={"environment": "production"},
                imported=True,
            )
        both = ["model.retire", "model.deploy"]
        assert [r.seq for r in log.events(action=both)] == [3, 4, 7, 8, 11, 12, 15, 16]
        assert [r.seq for r in log.events(action=[*both, *both], start=5, stop=12)] == [7, 8, 11]
        newest = log.events(action=[*both, "log.init"], newest_first=True, limit=3)
        assert [r.seq for r in newest] == [16, 15, 12]
        assert [r.seq for r in log.events(action=both, model="m", version="2")] == [11, 12]
        store, log_id = log.store, log._ledger.log_id
        for sparse in (False, True):
            merged = EventFilter(actions=(*both, *both, "log.init"), start=1, sparse=sparse)
            seqs = [seq for seq, _, _ in store.query(log_id, merged)]
            assert seqs == [3, 4, 7, 8, 11, 12, 15, 16]
            newest = EventFilter(actions=tuple(both), descending=True, limit=3, sparse=sparse)
            assert [seq for seq, _, _ in store.query(log_id, newest)] == [16, 15, 12]


def test_store_picks_events_by_the_bytes_they_hold(db_url: str) -> None:
    """EventFilter.containing keeps the events whose canonical bytes hold any needle."""
    with _log(db_url) as log:
        log.append_many(_evaluations(5), imported=True)
        store, log_id = log.store, log._ledger.log_id
        picked = store.query(log_id, EventFilter(containing=(b'"notes":"run 1"', b'"n":3}')))
        assert [seq for seq, _, _ in picked] == [2, 4]
        none = store.query(log_id, EventFilter(containing=(b"\x00\xff",)))
        assert list(none) == []


def test_root_at_every_size_matches_the_tree_of_the_events(db_url: str) -> None:
    """root(size) equals RFC 9162 MTH over the first size events, across stored-node boundaries."""
    with _log(db_url) as log:
        log.append_many(_evaluations(700), imported=True)
        leaves = [bytes.fromhex(r.hash) for r in log.events()]
        assert len(leaves) == 701
        for size in (1, 2, 3, 255, 256, 257, 511, 512, 513, 600, 700):
            assert log.root(size) == root_of(leaves[:size]).hex(), size
        assert log.root() == log.head().root == root_of(leaves).hex()
        assert log.root(0) == EMPTY_ROOT.hex()
        with pytest.raises(InvalidInputError, match="out of range"):
            log.root(702)


def test_verify_passes_on_an_intact_log(db_url: str) -> None:
    """Verify recomputes the whole log and reports its size and root."""
    with _log(db_url) as log:
        log.append_many(_evaluations(600), imported=True)
        report = log.verify()
        assert report.size == 601
        assert report.root == log.head().root
        assert log.verify(deep=True).root == report.root


def test_raw_sql_cannot_change_or_remove_an_event(db_url: str) -> None:
    """The append-only triggers refuse UPDATE and DELETE on events, tree nodes and the head."""
    with _log(db_url) as log:
        log.append_many(_evaluations(300), imported=True)
    attempts = [
        "UPDATE auditml_event SET body = %s WHERE seq = 1",
        "DELETE FROM auditml_event WHERE seq = 1",
        "DELETE FROM auditml_event",
        "UPDATE auditml_node SET hash = %s",
        "DELETE FROM auditml_node",
        "DELETE FROM auditml_log",
        "UPDATE auditml_log SET size = 1",
    ]
    for sql in attempts:
        params = (b"{}",) if "%s" in sql else ()
        with pytest.raises(Exception, match="append-only"):
            raw_sql(db_url, [(sql, params)])
    if db_url.startswith("postgresql"):
        with pytest.raises(Exception, match="append-only"):
            raw_sql(db_url, ["TRUNCATE auditml_event CASCADE"])
    with AuditLog.open(db_url) as log:
        assert log.verify().size == 301


def test_open_without_a_log_creates_nothing(tmp_path: Path) -> None:
    """Opening a path with no log says to run init, and leaves no file behind."""
    path = tmp_path / "nothing" / "audit.db"
    with pytest.raises(StoreUnavailableError, match="auditml init"):
        AuditLog.open(f"sqlite:///{path}")
    assert not path.exists()


def test_open_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not a SQLite database gets one sentence naming the store."""
    path = tmp_path / "audit.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailableError, match="not a database"):
        AuditLog.open(f"sqlite:///{path}")


def test_empty_sqlite_file_holds_no_log(tmp_path: Path) -> None:
    """An empty SQLite file is not an auditml store, and opening it says so."""
    path = tmp_path / "audit.db"
    path.write_bytes(b"")
    with pytest.raises(StoreUnavailableError, match="holds no auditml log"):
        AuditLog.open(f"sqlite:///{path}")


def test_bad_urls_are_clear_errors() -> None:
    """Unsupported schemes and garbage URLs name the fix."""
    with pytest.raises(ConfigurationError, match="unsupported database 'mysql'"):
        AuditLog.open("mysql://root@localhost/db")
    with pytest.raises(ConfigurationError, match="not a database URL"):
        AuditLog.open("::not a url::")


def test_unreachable_postgres_is_a_clear_error() -> None:
    """A PostgreSQL server that does not answer gives one sentence with the password hidden."""
    with pytest.raises(StoreUnavailableError, match=r"PostgreSQL store at .*\*\*\*") as info:
        AuditLog.open("postgresql://postgres:secret@127.0.0.1:1/test")
    assert "secret" not in info.value.diagnostics()


def test_open_checks_the_expected_origin(db_url: str) -> None:
    """open(origin=...) refuses a store that holds another log."""
    _log(db_url).close()
    with pytest.raises(LogNotFoundError, match=r"not 'x\.example/y'"):
        AuditLog.open(db_url, origin="x.example/y")


def test_default_url_is_dot_auditml_under_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no URL and no AUDITML_DATABASE_URL, the log lives in ./.auditml/audit.db."""
    monkeypatch.chdir(tmp_path)
    log, created = AuditLog.init()
    with log:
        assert created
    assert (tmp_path / ".auditml" / "audit.db").is_file()
    monkeypatch.setenv("AUDITML_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    AuditLog.init()[0].close()
    assert (tmp_path / "env.db").is_file()


def test_actor_comes_from_the_environment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit actor, AUDITML_ACTOR is used and the event records its source."""
    monkeypatch.setenv("AUDITML_ACTOR", "release@bank.example")
    with _log(db_url) as log:
        log.append("model.retire", subject={"model": "m", "version": "1"}, imported=True)
        last = next(log.events(newest_first=True, limit=1)).event
    assert last.actor.id == "release@bank.example"
    assert last.actor.source == "env"


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditLog]:
    """Yield one log that a property test appends to across all its examples."""
    with _log(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'audit.db'}") as log:
        yield log


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.dictionaries(st.text(), _json, max_size=5),
    # No store keeps a NUL in a name (PostgreSQL text cannot hold one), so names never have it.
    subject=st.dictionaries(
        st.text(min_size=1).filter(lambda t: "\x00" not in t),
        st.text().filter(lambda t: "\x00" not in t),
        max_size=3,
    ),
    actor=st.text(min_size=1).filter(str.strip),
)
def test_any_event_is_stored_as_exact_jcs_and_verifies(
    shared_log: AuditLog, params: dict[str, object], subject: dict[str, str], actor: str
) -> None:
    """Whatever strings and numbers an event holds, it is stored as exact JCS and verifies."""
    receipt = shared_log.append(
        "model.train", subject=subject, data={"params": params}, actor=actor, imported=True
    )
    record = next(shared_log.events(start=receipt.seq))
    assert record.body == canonical_bytes(loads_strict(record.body))
    assert record.event.data.get("params", {}) == params
    assert record.event.subject == subject and record.event.actor.id == actor
    assert shared_log.verify(deep=True).size == receipt.seq + 1


def test_a_misspelt_action_filter_is_an_error(db_url: str) -> None:
    """events(action=...) with an unknown action says so instead of quietly matching nothing."""
    with _log(db_url) as log, pytest.raises(UnknownActionError, match=r"model\.deplyo"):
        list(log.events(action="model.deplyo"))


def test_reading_a_corrupt_event_names_it(db_url: str) -> None:
    """Reading back bytes that are no longer an event raises a format failure naming the event."""
    with _log(db_url) as log:
        log.append_many(_evaluations(3), imported=True)
    drop_triggers(db_url)
    garbage = b"{not json"
    digest = hashlib.sha256(b"\x00" + garbage).digest()  # rehashed, so only its form is wrong
    raw_sql(
        db_url, [("UPDATE auditml_event SET body = %s, hash = %s WHERE seq = 2", (garbage, digest))]
    )
    with AuditLog.open(db_url) as log, pytest.raises(VerificationError) as info:
        list(log.events())
    assert (info.value.kind, info.value.seq) == ("format", 2)


def test_reading_a_changed_event_names_it_as_a_hash_failure(db_url: str) -> None:
    """Reading back bytes changed without rehashing raises a hash failure naming the event."""
    with _log(db_url) as log:
        log.append_many(_evaluations(3), imported=True)
    drop_triggers(db_url)
    raw_sql(db_url, [("UPDATE auditml_event SET body = %s WHERE seq = 2", (b"{not json",))])
    with AuditLog.open(db_url) as log, pytest.raises(VerificationError) as info:
        list(log.events())
    assert (info.value.kind, info.value.seq) == ("hash", 2)


def test_draft_without_an_actor_resolves_one(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A draft built without actor= gets AUDITML_ACTOR (then git, the OS user) when appended."""
    monkeypatch.setenv("AUDITML_ACTOR", "pipeline@bank.example")
    draft = Draft.build("model.retire", subject={"model": "m"})
    assert draft.actor is None  # building a draft runs no git and reads no environment
    with AuditLog.init(db_url, origin=ORIGIN)[0] as log:
        (receipt,) = log.append_many([draft], imported=True)
        event = next(log.events(start=receipt.seq)).event
    assert (event.actor.id, event.actor.source) == ("pipeline@bank.example", "env")
