"""Ingest of JSON Lines: streamed in flat memory, all or nothing on bad input, each line once.

Every test runs on both backends. The hostile ones: bad lines at the start,
middle and end of inputs longer than a segment, over-long lines, a request
given twice in one file, ingests stopped part-way and run again, lines that
disagree with the log, and stored rows forged to make ingest skip a record.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError, VerificationError
from auditml import runtime as runtime_module
from auditml.errors import ConfigurationError, StoreUnavailableError
from auditml.ledger import Ledger
from tests.conftest import drop_triggers, raw_query, raw_sql, run_cli

DS = "ds@bank.example"
ARGS = ["runtime", "ingest", "--model", "credit", "--env", "production"]


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log with version 1 and 2 of 'credit' trained, so records can name them."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    opened.record_training("credit", actor=DS)
    opened.record_training("credit", actor=DS)
    try:
        yield opened
    finally:
        opened.close()


def _line(n: int, **extra: Any) -> str:
    row = {
        "request_id": f"r-{n}",
        "version": "1",
        "output": {"label": "ok", "n": n},
        "latency_ms": 1.5,
        "time": f"2026-12-01T10:00:{n % 60:02d}.{n:06d}Z",
        **extra,
    }
    return json.dumps(row)


def _lines(count: int, start: int = 0) -> list[str]:
    return [_line(n) for n in range(start, start + count)]


def _ids(log: AuditLog) -> list[str]:
    rows = raw_query(log.store.url, "SELECT request_id FROM auditml_record ORDER BY seg, i")
    return [str(row[0]) for row in rows]


def _segments(log: AuditLog) -> int:
    return sum(1 for _ in log.events(action="runtime.segment"))


def _ingest(log: AuditLog, lines: Any, **kw: Any) -> runtime_module.Ingested:
    return log.ingest_runtime("credit", lines, env="production", **kw)


# -- streaming: every kind of source, read once --------------------------------------------


def test_a_generator_is_read_once_and_committed_in_segments(log: AuditLog) -> None:
    """A one-shot generator is read once (the check keeps it aside) and committed whole."""
    reads = []

    def lines() -> Iterator[str]:
        reads.append(1)
        yield from _lines(25)

    done = _ingest(log, lines(), max_records=10)
    assert (done.records, done.segments, done.skipped) == (25, 3, 0)
    assert reads == [1] and _ids(log) == [f"r-{n}" for n in range(25)]
    log.verify()


@pytest.mark.parametrize("kind", ["path", "binary", "text", "bytes-list"])
def test_every_kind_of_source_gives_the_same_records(
    log: AuditLog, tmp_path: Path, kind: str
) -> None:
    """A Path, a binary file, a text file and a list of bytes lines all commit the same records."""
    path = tmp_path / "served.jsonl"
    path.write_text("\n".join(_lines(7)) + "\n\n", encoding="utf-8")
    if kind == "path":
        done = _ingest(log, path)
    elif kind == "binary":
        with path.open("rb") as fh:
            done = _ingest(log, fh)
    elif kind == "text":
        with path.open(encoding="utf-8") as fh:
            done = _ingest(log, fh)
    else:
        done = _ingest(log, path.read_bytes().split(b"\n"))
    assert done.records == 7 and _ids(log) == [f"r-{n}" for n in range(7)]


def test_a_pipe_on_standard_input_is_read_once(log: AuditLog) -> None:
    """`auditml runtime ingest -` fed by a real pipe (no seeking back) commits every line."""
    src = str(Path(runtime_module.__file__).parents[1])
    proc = subprocess.run(
        [sys.executable, "-m", "auditml", *ARGS[:2], "-", *ARGS[2:], "--db", log.store.url],
        input=("\n".join(_lines(1_500)) + "\n").encode(),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": src},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Committed 1,500 runtime record(s)" in proc.stdout
    assert len(_ids(log)) == 1_500


def test_a_string_is_refused_not_read_as_characters(log: AuditLog) -> None:
    """A str given as the input (a path, or one line) is refused; it is no iterable of lines."""
    with pytest.raises(InvalidInputError, match=r"pathlib\.Path"):
        _ingest(log, _line(1))
    assert _segments(log) == 0


def test_memory_stays_flat_in_the_input_size(log: AuditLog) -> None:
    """Ten times the lines take about the same peak of Python memory (batches, not the file)."""

    def peak(count: int, start: int) -> int:
        tracemalloc.start()
        try:
            _ingest(log, (_line(n) for n in range(start, start + count)), max_records=500)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak(2_000, 0)
    large = peak(20_000, 10_000)
    assert len(_ids(log)) == 22_000
    assert large < small * 1.5 + 200_000, (small, large)


# -- bad input writes nothing --------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 13, 29])
def test_a_bad_line_anywhere_writes_nothing(log: AuditLog, where: int) -> None:
    """A bad line at the start, middle or end, segments after the first: nothing committed."""
    lines = _lines(30)
    lines[where] = '{"request_id": "x", "version": "1", "latency_ms": NaN}'
    with pytest.raises(InvalidInputError, match=f"line {where + 1}: JSON text contains NaN"):
        _ingest(log, lines, max_records=5)
    assert _segments(log) == 0 and _ids(log) == []


def test_a_bad_line_in_a_file_writes_nothing_from_the_cli(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml runtime ingest` with a bad last line of 2,500: one sentence, exit 1, no segment."""
    path = tmp_path / "served.jsonl"
    path.write_text("\n".join([*_lines(2_499), "not json"]) + "\n", encoding="utf-8")
    code, _, err = run_cli([*ARGS, str(path), "--db", log.store.url], capsys)
    assert code != 0 and "line 2500: JSON text" in err
    assert _segments(log) == 0


def test_an_over_long_line_is_refused_unread(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line over LINE_MAX is refused by number before it is read whole; nothing is written."""
    monkeypatch.setattr(runtime_module, "LINE_MAX", 200)
    reads: list[int] = []

    class Watched(io.BytesIO):
        def readline(self, size: int | None = -1) -> bytes:
            reads.append(-1 if size is None else size)
            return super().readline(size)

    good = _line(1).encode()
    assert len(good) < 200
    huge = b'{"request_id": "r-2", "version": "1", "latency_ms": 1, "output": {"x": "' + (
        b"y" * 10_000
    )
    with pytest.raises(InvalidInputError, match="line 2: it is longer than 200 bytes"):
        _ingest(log, Watched(good + b"\n" + huge + b"\n" + _line(3).encode()))
    assert reads and max(reads) == 201
    assert _segments(log) == 0


def test_a_line_of_exactly_line_max_is_taken(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is on a line's text: exactly LINE_MAX bytes, then its line break, passes."""
    line = _line(1).encode()
    monkeypatch.setattr(runtime_module, "LINE_MAX", len(line))
    done = _ingest(log, io.BytesIO(line + b"\r\n" + line.replace(b"r-1", b"r-2") + b"\n"))
    assert done.records == 2


def test_a_request_twice_for_one_version_is_refused(log: AuditLog) -> None:
    """One request twice by one version, lines far apart (other segments): both named, no write."""
    lines = _lines(40)
    lines[33] = _line(2)
    with pytest.raises(InvalidInputError, match=r"line 34: request 'r-2' .* is on line 3 too"):
        _ingest(log, lines, max_records=4)
    assert _segments(log) == 0


def test_a_request_twice_is_refused_even_when_identical(log: AuditLog) -> None:
    """Two identical lines are refused too: which one a record on the log is cannot be told."""
    with pytest.raises(InvalidInputError, match="line 2: request 'r-0'"):
        _ingest(log, [_line(0), _line(0)])
    assert _segments(log) == 0


def test_one_request_by_two_versions_is_two_records(log: AuditLog) -> None:
    """A request served by a version and its shadow gives two records, and again none."""
    lines = [_line(0), _line(0, version="2")]
    assert _ingest(log, lines).records == 2
    again = _ingest(log, lines)
    assert (again.records, again.skipped) == (0, 2)
    assert _ids(log) == ["r-0", "r-0"]


def test_a_text_file_that_is_not_utf8_is_refused(log: AuditLog, tmp_path: Path) -> None:
    """A file opened as text with bytes that are not UTF-8: refused, saying so; nothing written."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(("\n".join(_lines(2)) + "\n").encode() + b'{"request_id": "caf\xe9"}\n')
    with (
        path.open(encoding="utf-8") as fh,
        pytest.raises(InvalidInputError, match="the input is not UTF-8 text"),
    ):
        _ingest(log, fh)
    assert _segments(log) == 0


def test_no_temporary_folder_is_a_clear_error(
    log: AuditLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """TMPDIR pointing nowhere: one sentence naming it and TMPDIR, exit 1, nothing written."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    path = tmp_path / "served.jsonl"
    path.write_text("\n".join(_lines(3)) + "\n", encoding="utf-8")
    code, _, err = run_cli([*ARGS, str(path), "--db", log.store.url], capsys)
    assert code != 0 and "set TMPDIR to a folder with room" in err and "gone" in err
    assert "Nothing was written" in err and _segments(log) == 0


def test_a_full_disk_while_checking_writes_nothing(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file fills up (ENOSPC) after the first batch: refused, nothing written."""
    real = tempfile.TemporaryFile

    class Full:
        def __init__(self, inner: Any) -> None:
            self.inner, self.writes = inner, 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.inner.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.close()

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kw: Full(real(**kw)))
    with pytest.raises(ConfigurationError, match=r"No space left on device.*Nothing was written"):
        _ingest(log, _lines(12), max_records=5)
    assert _segments(log) == 0


# -- ingesting again records each line once --------------------------------------------------


def test_ingesting_a_file_again_skips_every_record(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same file twice: the second run writes nothing, counts the skips, and says so."""
    path = tmp_path / "served.jsonl"
    path.write_text("\n".join(_lines(12)) + "\n", encoding="utf-8")
    code, out, _ = run_cli([*ARGS, str(path), "--db", log.store.url, "--json"], capsys)
    assert code == 0 and json.loads(out)["skipped"] == 0
    size = log.head().size
    code, out, _ = run_cli([*ARGS, str(path), "--db", log.store.url], capsys)
    assert code == 0
    assert "All 12 record(s) of the input are on the log already: nothing was written." in out
    assert log.head().size == size and len(_ids(log)) == 12
    log.verify()


def test_an_overlapping_file_commits_only_the_new_records(
    log: AuditLog, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file that repeats some records already ingested commits the rest and counts the skips."""
    _ingest(log, _lines(10))
    path = tmp_path / "next.jsonl"
    path.write_text("\n".join(_lines(15, start=5)) + "\n", encoding="utf-8")
    code, out, _ = run_cli([*ARGS, str(path), "--db", log.store.url], capsys)
    assert code == 0
    assert "Committed 10 runtime record(s)" in out and "Skipped 5 record(s)" in out
    assert _ids(log) == [f"r-{n}" for n in range(20)]
    log.verify()


def test_records_of_a_recorder_are_skipped_too(log: AuditLog) -> None:
    """A record the server wrote through record() is on the log: the same line is skipped."""
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record("r-1", version="1", output={"label": "ok", "n": 1}, latency_ms=1.5)
    done = _ingest(log, [_no_time(1)])
    assert (done.records, done.skipped) == (0, 1)


def _no_time(n: int) -> str:
    row = json.loads(_line(n))
    del row["time"]
    return json.dumps(row)


def test_a_line_without_time_is_skipped_on_its_second_ingest(log: AuditLog) -> None:
    """A line with no time is stamped now; ingested again, it still matches and is skipped."""
    _ingest(log, [_no_time(1), _no_time(2)])
    done = _ingest(log, [_no_time(1), _no_time(2), _no_time(3)])
    assert (done.records, done.skipped) == (1, 2)


def test_the_same_request_in_another_env_is_not_skipped(log: AuditLog) -> None:
    """A record of the request in another stream (env) does not count: it is recorded here."""
    log.ingest_runtime("credit", [_line(1)], env="staging")
    done = _ingest(log, [_line(1)])
    assert (done.records, done.skipped) == (1, 0)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"output": {"label": "refer", "n": 1}}, "another output"),
        ({"latency_ms": 9}, "another latency_ms"),
        ({"error": "TIMEOUT"}, "another error"),
        ({"time": "2026-12-02T00:00:00.000000Z"}, "another time"),
        ({"subject": "customer-1"}, "another values kept off the log"),
    ],
)
def test_a_line_that_disagrees_with_the_log_is_refused(
    log: AuditLog, change: dict[str, Any], what: str
) -> None:
    """A line whose request and version are on the log with other fields: refused, not skipped."""
    _ingest(log, [_line(1)])
    size = log.head().size
    with pytest.raises(InvalidInputError, match=f"line 2: request 'r-1' .*{what}"):
        _ingest(log, [_line(0), _line(1, **change), _line(2)])
    assert log.head().size == size and _ids(log) == ["r-1"]


class _Dies:
    """Make Ledger.append_segment fail after ``after`` segments, as a process dying would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, after: int, exc: BaseException) -> None:
        self.calls = 0
        real = Ledger.append_segment

        def append(ledger: Ledger, *args: Any, **kw: Any) -> Any:
            self.calls += 1
            if self.calls > after:
                raise exc
            return real(ledger, *args, **kw)

        monkeypatch.setattr(Ledger, "append_segment", append)


@pytest.mark.parametrize(
    "exc", [StoreUnavailableError("the server went away"), KeyboardInterrupt()]
)
def test_an_ingest_stopped_part_way_and_run_again_records_each_line_once(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    """Stopped after 3 of 6 segments, then run again: all 30 lines on the log, each once."""
    lines = _lines(30)
    with monkeypatch.context() as patched:
        _Dies(patched, 3, exc)
        with pytest.raises(type(exc)):
            _ingest(log, lines, max_records=5)
    assert len(_ids(log)) == 15
    done = _ingest(log, lines, max_records=5)
    assert (done.records, done.segments, done.skipped) == (15, 3, 15)
    assert _ids(log) == [f"r-{n}" for n in range(30)]
    log.verify()


def test_a_record_written_by_another_writer_meanwhile_is_skipped(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer records a line of a later segment while the ingest writes: it is skipped."""
    real = Ledger.append_segment
    calls: list[int] = []

    def append(ledger: Ledger, *args: Any, **kw: Any) -> Any:
        receipt = real(ledger, *args, **kw)
        calls.append(1)
        if len(calls) == 1:  # right after the ingest's first segment, a server records r-17
            monkeypatch.setattr(Ledger, "append_segment", real)
            with AuditLog.open(log.store.url) as other:
                other.ingest_runtime("credit", [_line(17)], env="production")
            monkeypatch.setattr(Ledger, "append_segment", append)
        return receipt

    monkeypatch.setattr(Ledger, "append_segment", append)
    done = _ingest(log, _lines(20), max_records=5)
    assert (done.records, done.skipped) == (19, 1)
    assert sorted(_ids(log)) == sorted(f"r-{n}" for n in range(20))


_KILLED = """
import os, sys
from auditml import AuditLog
from auditml.ledger import Ledger

real, calls = Ledger.append_segment, []

def append(ledger, *args, **kw):
    calls.append(1)
    if len(calls) > 3:
        os._exit(9)  # the process dies at once: no finally, no cleanup
    return real(ledger, *args, **kw)

Ledger.append_segment = append
with AuditLog.open(sys.argv[1]) as log:
    log.ingest_runtime("credit", open(sys.argv[2], "rb"), env="production", max_records=5)
"""


def test_a_killed_ingest_run_again_records_each_line_once(log: AuditLog, tmp_path: Path) -> None:
    """A process that dies (os._exit) after 3 segments, then the CLI again: each line once."""
    path = tmp_path / "served.jsonl"
    path.write_text("\n".join(_lines(28)) + "\n", encoding="utf-8")
    src = str(Path(runtime_module.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED, log.store.url, str(path)],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == 9, killed.stderr
    assert len(_ids(log)) == 15
    url = log.store.url
    again = subprocess.run(
        [sys.executable, "-m", "auditml", *ARGS[:2], str(path), *ARGS[2:], "--db", url, "--json"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 15
    assert _ids(log) == [f"r-{n}" for n in range(28)]
    log.verify()


# -- a skip stands on the verified log, never on a lookup row ---------------------------------

_INSERT = (
    "INSERT INTO auditml_record (log_id, seg, i, request_id, time, model, version, env, "
    "latency_ms, error, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _forge(log: AuditLog, seg: int, i: int, body: dict[str, Any] | bytes) -> None:
    """Store a record row outside auditml, as someone holding the database could."""
    drop_triggers(log.store.url)
    data = body if isinstance(body, bytes) else json.dumps(body, sort_keys=True).encode()
    record = json.loads(data)
    row = (1, seg, i, record["request_id"], record["time"], "credit", record["version"])
    raw_sql(log.store.url, [(_INSERT, (*row, "production", 1.5, None, data))])


def _record_of(n: int, i: int) -> dict[str, Any]:
    row = json.loads(_line(n))
    return {
        "v": 1,
        "stream": "credit/production",
        "i": i,
        "request_id": row["request_id"],
        "time": row["time"],
        "model": "credit",
        "version": "1",
        "env": "production",
        "output": row["output"],
        "latency_ms": 1.5,
        "error": None,
        "commitments": {},
    }


def _seg(log: AuditLog) -> int:
    return int(raw_query(log.store.url, "SELECT max(seg) FROM auditml_record")[0][0])


def test_a_forged_row_in_a_real_segment_does_not_hide_a_record(log: AuditLog) -> None:
    """A row added to a real segment (its root no longer matches) fails; the line is not skipped."""
    _ingest(log, _lines(3))
    _forge(log, _seg(log), 3, _record_of(7, 3))
    size = log.head().size
    with pytest.raises(VerificationError, match="do not give its record count and root"):
        _ingest(log, [_line(6), _line(7)])
    assert log.head().size == size


def test_a_row_claiming_an_event_that_is_no_segment_does_not_hide_a_record(
    log: AuditLog,
) -> None:
    """A row claiming the model.train event as its segment fails verification; nothing written."""
    _forge(log, 1, 0, _record_of(7, 0))
    with pytest.raises(VerificationError, match=r"no runtime\.segment of 'credit/production'"):
        _ingest(log, [_line(7)])
    assert _segments(log) == 0


def test_a_row_beyond_the_head_does_not_hide_a_record(log: AuditLog) -> None:
    """A row claiming a segment event beyond the log's head fails; nothing written."""
    _forge(log, 99, 0, _record_of(7, 0))
    with pytest.raises(VerificationError, match="but the log has"):
        _ingest(log, [_line(7)])
    assert _segments(log) == 0


def test_a_row_whose_request_column_lies_fails(log: AuditLog) -> None:
    """A stored row found under request id r-5 whose bytes are another request's: refused."""
    _ingest(log, _lines(3))
    drop_triggers(log.store.url)
    raw_sql(log.store.url, ["UPDATE auditml_record SET request_id = 'r-5' WHERE i = 0"])
    with pytest.raises(VerificationError, match="its request_id column was changed"):
        _ingest(log, [_line(5)])


def test_a_rewritten_segment_event_does_not_hide_a_record(log: AuditLog) -> None:
    """A segment event rewritten (its hash fixed up too) is not in the tree: refused."""
    _ingest(log, _lines(3))
    seg = _seg(log)
    body = bytes(
        raw_query(log.store.url, "SELECT body FROM auditml_event WHERE seq = %s", (seg,))[0][0]
    )
    event = json.loads(body)
    event["data"]["count"] = 4
    forged = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(b"\x00" + forged).digest()
    drop_triggers(log.store.url)
    raw_sql(
        log.store.url,
        [("UPDATE auditml_event SET body = %s, hash = %s WHERE seq = %s", (forged, digest, seg))],
    )
    _forge(log, seg, 3, _record_of(7, 3))
    with pytest.raises(VerificationError, match="not in the log's tree"):
        _ingest(log, [_line(7)])


def test_a_skipped_record_is_the_one_proven_on_the_log(log: AuditLog) -> None:
    """After a skip, the request has one record, proven by trace, and the log verifies."""
    from auditml.serving import trace

    _ingest(log, _lines(4))
    _ingest(log, _lines(6))
    (story,) = trace(log, "r-2").records
    assert story.proof_ok and story.record["output"] == {"label": "ok", "n": 2}
    assert _ids(log) == [f"r-{n}" for n in range(6)]
    log.verify()


def test_a_line_time_with_a_zone_is_recorded_in_utc_and_skipped_when_given_again(
    log: AuditLog,
) -> None:
    """'…T20:00:00Z' and '+01:00' are taken in UTC form; ingesting them again skips them."""
    lines = [
        _line(1, time="2026-12-04T20:00:00Z"),
        _line(2, time="2026-12-04T21:00:00.25+01:00"),
    ]
    assert _ingest(log, lines).records == 2
    times = [str(r[0]) for r in raw_query(log.store.url, "SELECT time FROM auditml_record")]
    assert sorted(times) == ["2026-12-04T20:00:00.000000Z", "2026-12-04T20:00:00.250000Z"]
    again = _ingest(log, lines)
    assert again.records == 0 and again.skipped == 2
    with pytest.raises(InvalidInputError, match=r"line 1: .*time"):
        _ingest(log, [_line(3, time="2026-12-04T20:00:00")])  # no zone
