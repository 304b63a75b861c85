"""Runtime records: recorded, committed in segments with their event, traced and verified."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError, VerificationError, track_inference
from auditml.errors import StoreUnavailableError
from tests.conftest import drop_triggers, raw_query, raw_sql

DS = "ds@bank.example"


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log with version 1 of 'credit' trained, so records can name it."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    opened.record_training("credit", actor=DS)
    try:
        yield opened
    finally:
        opened.close()


def _segments(log: AuditLog) -> list[Any]:
    return [r.event for r in log.events(action="runtime.segment")]


def _stored(log: AuditLog) -> list[tuple[Any, ...]]:
    url = log.store.url
    return raw_query(url, "SELECT seg, i, request_id, version FROM auditml_record ORDER BY seg, i")


def test_records_land_in_one_segment_with_their_event(log: AuditLog) -> None:
    """A flush commits one runtime.segment event whose root covers the records stored with it."""
    with log.runtime("credit", env="production", background=False) as rec:
        for n in range(5):
            rec.record(f"req-{n}", version="1", output={"score": n / 10}, latency_ms=1.5)
        assert rec.pending == 5
    (segment,) = _segments(log)
    assert segment.data["count"] == 5 and segment.data["stream"] == "credit/production"
    assert [row[2] for row in _stored(log)] == [f"req-{n}" for n in range(5)]
    assert {row[0] for row in _stored(log)} == {segment.seq}
    assert log.verify().size == segment.seq + 1


def test_segments_are_cut_by_count(log: AuditLog) -> None:
    """max_records bounds a segment: ten records in segments of four make three segments."""
    with log.runtime("credit", env="production", max_records=4, background=False) as rec:
        for n in range(10):
            rec.record(f"r{n}", version="1", output={}, latency_ms=1)
            if rec.pending >= 4:
                rec.flush()
    assert [s.data["count"] for s in _segments(log)] == [4, 4, 2]
    log.verify()


def test_the_background_thread_flushes_by_age(log: AuditLog) -> None:
    """With the background thread, records are committed within their max age, unasked."""
    import time

    rec = log.runtime("credit", env="production", max_age=0.05)
    rec.record("r1", version="1", output={"label": "ok"}, latency_ms=2)
    deadline = time.monotonic() + 10
    while not _segments(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    rec.close()
    assert [s.data["count"] for s in _segments(log)] == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_id": ""}, "request_id"),
        ({"output": {"score": math.nan}}, "NaN"),
        ({"output": {"score": math.inf}}, "nfinit"),
        ({"output": {"x": object()}}, "output"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"version": ""}, "version"),
        ({"subject": {1, 2}}, "subject"),
        ({"time": "2026-12-04T20:00:00"}, "time"),  # no zone: the instant is unknown
        ({"time": "0001-01-01T00:00:00+01:00"}, "time"),
        ({"time": "yesterday"}, "time"),
    ],
)
def test_bad_input_is_refused_at_record_time(
    log: AuditLog, kwargs: dict[str, Any], message: str
) -> None:
    """A bad record is refused when recorded, naming the field, and never reaches a segment."""
    given: dict[str, Any] = {
        "request_id": "ok",
        "version": "1",
        "output": {},
        "latency_ms": 1.0,
        **kwargs,
    }
    with log.runtime("credit", env="production", background=False) as rec:
        with pytest.raises(InvalidInputError, match=message):
            rec.record(given.pop("request_id"), **given)
        assert rec.pending == 0
    assert _segments(log) == []


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("2026-12-04T20:00:00Z", "2026-12-04T20:00:00.000000Z"),
        ("2026-12-04T21:00:00.5+01:00", "2026-12-04T20:00:00.500000Z"),
        ("2026-12-04T20:00:00.123456Z", "2026-12-04T20:00:00.123456Z"),
    ],
)
def test_a_record_time_with_a_zone_is_recorded_in_utc(
    log: AuditLog, given: str, recorded: str
) -> None:
    """Any ISO 8601 time with a zone is taken, as the log's UTC form with microseconds."""
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record("t1", version="1", output={}, latency_ms=1, time=given)
    (segment,) = _segments(log)
    assert segment.data["first_time"] == recorded


def test_an_unknown_stream_is_refused(log: AuditLog) -> None:
    """Records of a model never trained on the log are refused when the recorder opens."""
    with pytest.raises(InvalidInputError, match="no model 'fraud'"):
        log.runtime("fraud", env="production")


def test_personal_values_stay_off_the_log_and_open_for_an_auditor(log: AuditLog) -> None:
    """Subject and features are committed, not recorded; opening checks value and salt."""
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record(
            "req-1",
            version="1",
            output={"label": "refer"},
            latency_ms=3,
            subject="customer-4711",
            features={"income": 52000},
            personal={"email": "jo@example.com"},
        )
    url = log.store.url
    bodies = b"".join(bytes(r[0]) for r in raw_query(url, "SELECT body FROM auditml_record"))
    events = b"".join(r.body for r in log.events())
    for secret in (b"customer-4711", b"52000", b"jo@example.com"):
        assert secret not in bodies and secret not in events
    opened = log.open_commitment("req-1", "subject")
    assert opened.value == "customer-4711" and len(opened.salt) == 64
    assert log.open_commitment("req-1", "email").value == "jo@example.com"
    with pytest.raises(InvalidInputError, match="commits no value named 'payload'"):
        log.open_commitment("req-1", "payload")


def test_a_changed_record_is_named_by_verify(log: AuditLog) -> None:
    """Editing a stored record (triggers dropped) fails verify naming its segment and index."""
    with log.runtime("credit", env="production", background=False) as rec:
        for n in range(3):
            rec.record(f"req-{n}", version="1", output={"score": 0.5}, latency_ms=1)
    (segment,) = _segments(log)
    url = log.store.url
    drop_triggers(url)
    (body,) = raw_query(url, "SELECT body FROM auditml_record WHERE i = 1")[0]
    changed = bytes(body).replace(b"0.5", b"0.9")
    raw_sql(url, [("UPDATE auditml_record SET body = %s WHERE i = 1", (changed,))])
    with pytest.raises(VerificationError) as failed:
        log.verify()
    assert failed.value.kind == "record" and failed.value.seq == segment.seq
    log.verify(runtime=False)  # the chain itself is intact


def test_a_deleted_record_is_named_by_verify(log: AuditLog) -> None:
    """Deleting a stored record fails verify: the segment's count and root no longer hold."""
    with log.runtime("credit", env="production", background=False) as rec:
        for n in range(3):
            rec.record(f"req-{n}", version="1", output={}, latency_ms=1)
    url = log.store.url
    drop_triggers(url)
    raw_sql(url, ["DELETE FROM auditml_record WHERE i = 1"])
    with pytest.raises(VerificationError, match="record 1 is missing"):
        log.verify()


def test_a_changed_record_column_is_named_by_verify(log: AuditLog) -> None:
    """A relabelled lookup column (the version a record names) fails verify."""
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record("req-0", version="1", output={}, latency_ms=1)
    url = log.store.url
    drop_triggers(url)
    raw_sql(url, ["UPDATE auditml_record SET version = '2'"])
    with pytest.raises(VerificationError, match="version column holds '2'"):
        log.verify()


def test_records_are_append_only(log: AuditLog) -> None:
    """The store's triggers refuse to change or delete a stored record."""
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record("req-0", version="1", output={}, latency_ms=1)
    with pytest.raises(Exception, match="auditml"):
        raw_sql(log.store.url, ["DELETE FROM auditml_record"])


def test_the_spool_keeps_records_through_an_outage(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the store cannot be reached, records wait in the spool and land on the next flush."""
    spool = tmp_path / "spool" / "credit.jsonl"
    rec = log.runtime("credit", env="production", spool=spool, background=False)
    rec.record("during-outage", version="1", output={}, latency_ms=1, subject="s-1")
    ledger = log._ledger
    real = ledger.append_segment

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the database is down")

    monkeypatch.setattr(ledger, "append_segment", unreachable)
    assert rec.flush() is None
    assert spool.exists() and oct(spool.stat().st_mode & 0o777) == "0o600"
    assert _segments(log) == []
    monkeypatch.setattr(ledger, "append_segment", real)
    rec.record("after", version="1", output={}, latency_ms=1)
    rec.close()
    assert [row[2] for row in _stored(log)] == ["during-outage", "after"]
    assert not spool.exists()
    assert log.open_commitment("during-outage", "subject").value == "s-1"
    log.verify()


def test_track_inference_records_and_never_changes_the_call(log: AuditLog) -> None:
    """The decorator records result and error, returns and raises exactly what the function does."""
    rec = log.runtime("credit", env="production", background=False)

    @track_inference(
        model="credit",
        env="production",
        version="1",
        recorder=rec,
        request_id=lambda x: f"req-{x}",
        output=lambda result: {"score": result},
    )
    def predict(x: int) -> float:
        if x < 0:
            raise ValueError("negative")
        return x / 10

    assert predict(3) == 0.3
    with pytest.raises(ValueError, match="negative"):
        predict(-1)
    rec.close()
    rows = raw_query(log.store.url, "SELECT request_id, error FROM auditml_record ORDER BY i")
    assert [tuple(r) for r in rows] == [("req-3", None), ("req--1", "ValueError")]


def test_track_inference_warns_instead_of_failing(log: AuditLog) -> None:
    """A record auditml cannot make (NaN output) is a warning; the result is returned unchanged."""

    @track_inference(model="credit", env="production", version="1", log=log)
    def predict() -> float:
        return math.nan

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert math.isnan(predict())
    assert any("could not record a prediction" in str(w.message) for w in caught)


_KILLED = """
import os, sys
from auditml import AuditLog
log = AuditLog.open(sys.argv[1])
rec = log.runtime("credit", env="production", background=False)
for n in range(2000):
    rec.record(f"k{n}", version="1", output={"n": n}, latency_ms=1)
ledger = log._ledger
real = ledger._store._write
def write_then_die(cur, batch, old_size):
    real(cur, batch, old_size)
    os.kill(os.getpid(), 9)
ledger._store._write = write_then_die
rec.flush()
"""


def test_a_killed_writer_leaves_no_half_segment(log: AuditLog, tmp_path: Path) -> None:
    """A process killed after writing a segment's rows but before commit leaves nothing of it."""
    script = tmp_path / "killed.py"
    script.write_text(_KILLED, encoding="utf-8")
    env = {**os.environ, "AUDITML_ACTOR": "server"}
    done = subprocess.run(
        [sys.executable, str(script), log.store.url], env=env, capture_output=True, check=False
    )
    assert done.returncode == -signal.SIGKILL
    assert _segments(log) == [] and _stored(log) == []
    log.verify()
