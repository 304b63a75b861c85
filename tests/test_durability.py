"""Many writers at once, and writers killed mid-append, on both backends."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from auditml import AppendError, AuditLog, Draft, StaleHeadError
from auditml.store import HeadState
from tests.conftest import raw_query, raw_sql

ORIGIN = "bank.example/credit-models"
WORKERS = 8
PER_WORKER = 500


def _append_singly(url: str, worker: int, count: int) -> int:
    """Append ``count`` events one durable append at a time; return how many landed."""
    with AuditLog.open(url) as log:
        for i in range(count):
            log.append(
                "model.evaluate",
                subject={"model": f"model-{worker}", "version": "1"},
                data={"metrics": {"i": i}},
                actor=f"worker-{worker}@bank.example",
                imported=True,
            )
    return count


def test_eight_processes_appending_at_once_make_one_unbroken_chain(db_url: str) -> None:
    """8 processes x 500 appends give exactly 4,000 events, in one gapless chain that verifies."""
    AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        done = pool.starmap(_append_singly, [(db_url, w, PER_WORKER) for w in range(WORKERS)])
    assert sum(done) == WORKERS * PER_WORKER
    with AuditLog.open(db_url) as log:
        report = log.verify()
        assert report.size == 1 + WORKERS * PER_WORKER
        per_worker: dict[str, list[int]] = {}
        for rec in log.events(action="model.evaluate"):
            per_worker.setdefault(rec.event.actor.id, []).append(
                int(rec.event.data["metrics"]["i"])
            )
    assert len(per_worker) == WORKERS
    # Each writer's own events are all there, in the order it wrote them.
    assert all(seen == list(range(PER_WORKER)) for seen in per_worker.values())


WRITER = """
import sys
from auditml import AuditLog, Draft
url, batch = sys.argv[1], int(sys.argv[2])
with AuditLog.open(url) as log:
    i = 0
    while True:
        log.append_many([
            Draft.build("model.evaluate", actor="w@bank.example",
                        subject={"model": "m", "version": "1"},
                        data={"metrics": {"i": i + k}, "notes": "x" * 200})
            for k in range(batch)
        ], imported=True)
        i += batch
        print(i, flush=True)
"""


@pytest.mark.parametrize("batch", [1, 50, 20000])
def test_a_killed_writer_leaves_no_half_event(db_url: str, tmp_path: Path, batch: int) -> None:
    """SIGKILL during appends leaves only whole batches, and the next open verifies cleanly."""
    AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script), db_url, str(batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        reported = 0
        deadline = time.monotonic() + 60
        # Let it commit at least one batch, then kill it while it builds or writes the next.
        while reported == 0 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported = int(line)
        time.sleep(0.05 if batch < 1000 else 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert reported > 0, proc.stderr.read() if proc.stderr else ""
        with AuditLog.open(db_url) as log:
            report = log.verify()
            assert (report.size - 1) % batch == 0
            assert report.size == log.head().size


def _stale_setup(db_url: str) -> tuple[AuditLog, HeadState]:
    """Return a log of 3 events and the head as it was at 2: read, then overtaken."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    log.append("model.evaluate", subject={"model": "m", "version": "1"}, imported=True)
    stale = log._ledger.store.head(ORIGIN)
    assert stale is not None and stale.size == 2
    log.append("model.evaluate", subject={"model": "m", "version": "2"}, imported=True)
    return log, stale


def _evaluate_draft(version: str) -> Draft:
    return Draft.build(
        "model.evaluate", actor="w@bank.example", subject={"model": "m", "version": version}
    )


@pytest.mark.parametrize("lie", ["overtaken", "same size, other hash"])
def test_a_writer_with_a_stale_head_is_refused_and_writes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch, lie: str
) -> None:
    """A writer whose head lock did not hold builds on a stale head: refused, never a fork."""
    log, stale = _stale_setup(db_url)
    with log:
        store = log._ledger.store
        before = store.head(ORIGIN)
        assert before is not None
        if lie != "overtaken":  # the size it read is right, but not the hash it builds on
            stale = replace(before, head_hash=stale.head_hash)
        # The writer reads the head without the lock holding, so it sees the old head.
        monkeypatch.setattr(store, "_locked_head", lambda cur, log_id: stale)
        with pytest.raises(StaleHeadError, match="stale head") as info:
            log.append_many([_evaluate_draft("3")], imported=True)
        assert isinstance(info.value, AppendError)
        assert "wrote nothing" in str(info.value)
        monkeypatch.undo()
        assert store.head(ORIGIN) == before
        assert log.verify().size == 3


def test_a_stale_head_is_retried_from_the_new_head(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt sees a stale head and fails; the retry reads the head afresh and lands."""
    log, stale = _stale_setup(db_url)
    with log:
        store = log._ledger.store
        real = store._locked_head
        served: list[int] = []

        def once_stale(cur: object, log_id: int) -> HeadState:
            served.append(log_id)
            return stale if len(served) == 1 else real(cur, log_id)

        monkeypatch.setattr(store, "_locked_head", once_stale)
        receipt = log.append_many([_evaluate_draft("3")], imported=True)[0]
        assert len(served) == 2
        assert receipt.seq == 3
        report = log.verify()
        assert report.size == 4
        assert [r.seq for r in log.events(action="model.evaluate")] == [1, 2, 3]


def test_init_drops_the_unique_prev_index_of_an_older_store(db_url: str) -> None:
    """A store made with the (log, prev) index loses it at `init`, keeping events and triggers."""
    AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    with AuditLog.open(db_url) as log:
        log.append_many([_evaluate_draft(str(v)) for v in range(5)], imported=True)
    _make_old(db_url)
    assert _has_prev_index(db_url)
    with AuditLog.open(db_url) as log:  # opening changes nothing
        assert log.verify().size == 6
    assert _has_prev_index(db_url)
    log, created = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        assert not created
        assert not _has_prev_index(db_url)
        log.append_many([_evaluate_draft("9")], imported=True)
        assert log.verify().size == 7
    with pytest.raises(Exception, match="append-only"):
        raw_sql(db_url, ["UPDATE auditml_event SET time = 'x' WHERE seq = 1"])
    with pytest.raises(Exception, match="append-only"):
        raw_sql(db_url, ["DELETE FROM auditml_event WHERE seq = 6"])


def _make_old(url: str) -> None:
    """Give the event table the unique (log, prev) constraint stores had before issue 20."""
    if not url.startswith("sqlite:///"):
        raw_sql(
            url,
            [
                "ALTER TABLE auditml_event ADD CONSTRAINT auditml_event_log_prev "
                "UNIQUE (log_id, prev)"
            ],
        )
        return
    schema = raw_query(
        url,
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'auditml_event' "
        "AND sql IS NOT NULL",
    )
    table = next(sql for kind, _, sql in schema if kind == "table")
    old = table.replace(
        "PRIMARY KEY", "CONSTRAINT auditml_event_log_prev UNIQUE (log_id, prev), PRIMARY KEY", 1
    )
    assert old != table
    raw_sql(
        url,
        [
            "BEGIN",
            "ALTER TABLE auditml_event RENAME TO auditml_event_new",
            old,
            "INSERT INTO auditml_event SELECT * FROM auditml_event_new",
            "DROP TABLE auditml_event_new",
            *(sql for kind, _, sql in schema if kind != "table"),
            "COMMIT",
        ],
    )


def _has_prev_index(url: str) -> bool:
    if url.startswith("sqlite:///"):
        (sql,) = raw_query(url, "SELECT sql FROM sqlite_master WHERE name = 'auditml_event'")[0]
        return "auditml_event_log_prev" in sql
    return bool(
        raw_query(
            url,
            "SELECT 1 FROM pg_constraint WHERE conname = 'auditml_event_log_prev' "
            "AND conrelid = to_regclass('auditml_event')",  # this test's schema only
        )
    )


def _append_batches(url: str, worker: int, batches: int) -> int:
    """Append ``batches`` batches of 1,300 events (three chunks each); return events landed."""
    size = 1300
    with AuditLog.open(url) as log:
        for b in range(batches):
            log.append_many(
                [
                    Draft.build(
                        "model.evaluate",
                        actor=f"worker-{worker}@bank.example",
                        subject={"model": f"model-{worker}", "version": "1"},
                        data={"metrics": {"i": b * size + k}},
                    )
                    for k in range(size)
                ],
                imported=True,
            )
    return batches * size


def test_processes_appending_long_batches_at_once_make_one_unbroken_chain(db_url: str) -> None:
    """4 processes appending batches written chunk by chunk give one gapless chain, none lost."""
    AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        done = pool.starmap(_append_batches, [(db_url, w, 3) for w in range(4)])
    with AuditLog.open(db_url) as log:
        assert log.verify().size == 1 + sum(done)
        per_worker: dict[str, list[int]] = {}
        for rec in log.events(action="model.evaluate"):
            per_worker.setdefault(rec.event.actor.id, []).append(
                int(rec.event.data["metrics"]["i"])
            )
    assert all(seen == list(range(3 * 1300)) for seen in per_worker.values())


def test_a_long_batch_on_a_stale_head_is_refused_and_writes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of many chunks built on a stale head is refused before any chunk is written."""
    log, stale = _stale_setup(db_url)
    with log:
        store = log._ledger.store
        before = store.head(ORIGIN)
        monkeypatch.setattr(store, "_locked_head", lambda cur, log_id: stale)
        with pytest.raises(StaleHeadError, match="stale head"):
            log.append_many([_evaluate_draft(str(v)) for v in range(2000)], imported=True)
        monkeypatch.undo()
        assert store.head(ORIGIN) == before
        assert log.verify().size == 3
        receipts = log.append_many([_evaluate_draft(str(v)) for v in range(2000)], imported=True)
        assert [r.seq for r in receipts] == list(range(3, 2003))
        assert [r.hash for r in receipts] == [rec.hash for rec in log.events(start=3)]
        assert log.verify().size == 2003


@pytest.mark.parametrize("failing_chunk", [0, 1, 3])
def test_a_long_batch_that_fails_in_any_chunk_writes_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch, failing_chunk: int
) -> None:
    """A write failing on the first, second or last chunk of a batch leaves the log as it was."""
    log, _ = _stale_setup(db_url)
    with log:
        store = log._ledger.store
        before = store.head(ORIGIN)
        real = store._insert_events
        written: list[int] = []

        def flaky(cur: object, log_id: int, rows: list[tuple[object, ...]]) -> None:
            written.append(len(rows))
            if len(written) - 1 == failing_chunk:
                raise RuntimeError("disk on fire")
            real(cur, log_id, rows)

        monkeypatch.setattr(store, "_insert_events", flaky)
        with pytest.raises(AppendError, match="wrote nothing"):
            log.append_many([_evaluate_draft(str(v)) for v in range(2000)], imported=True)
        monkeypatch.undo()
        assert len(written) == failing_chunk + 1
        assert store.head(ORIGIN) == before
        assert raw_query(db_url, "SELECT COUNT(*) FROM auditml_event")[0][0] == 3
        assert log.verify().size == 3
