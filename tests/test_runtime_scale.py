"""Runtime records at scale: the fast write path, backpressure, the spool, ingest, many writers."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditml import AuditLog, InvalidInputError
from auditml.core.canonical import canonical_bytes
from auditml.core.records import OUTPUT_MAX, RecordEncoder, check_entry, parse_record_lines
from auditml.errors import StoreUnavailableError
from auditml.runtime import Recorder
from tests.conftest import raw_query, run_cli
from tests.vector_files import require_vectors

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


def _ids(log: AuditLog) -> list[str]:
    rows = raw_query(log.store.url, "SELECT request_id FROM auditml_record ORDER BY seg, i")
    return [str(row[0]) for row in rows]


# -- the encoder: exactly canonical_bytes --------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_ascii = st.text(st.characters(max_codepoint=127), max_size=12)
_flat = st.dictionaries(
    _ascii,
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53) + 1, 2**53 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1.0, 2.0, 1e16, 1e21, 1e-7, 1e-5, 5e-324, 0.05, 1e15 + 0.5]),
        _ascii,
    ),
    max_size=8,
)
_output = st.one_of(
    _flat,
    st.dictionaries(_text, _scalar, max_size=6),
    st.dictionaries(_text, st.lists(_scalar, max_size=3) | st.dictionaries(_text, _scalar)),
)
_ident = st.text(
    st.characters(codec="utf-8"),
    min_size=1,
    max_size=20,
).filter(lambda s: s.isprintable() and not s.isspace())


@settings(max_examples=300, deadline=None)
@given(
    request_id=_ident,
    version=_ident,
    output=_output,
    latency=st.integers(0, 2**53 - 1) | st.floats(0, 1e300, allow_nan=False),
    error=st.none() | _ident,
    ns=st.integers(0, 2**62),
)
def test_encoder_bytes_are_canonical_bytes(
    request_id: str,
    version: str,
    output: dict[str, Any],
    latency: float,
    error: str | None,
    ns: int,
) -> None:
    """The template layout of a record equals canonical_bytes of the same record, always."""
    entry = check_entry(ns, request_id, version, output, latency, error)
    encoder = RecordEncoder("credit-risk", "production")
    ((i, _, time, model, _, env, _, _, body),), _ = encoder.segment([entry])
    record = {
        "v": 1,
        "stream": "credit-risk/production",
        "i": i,
        "request_id": request_id,
        "time": time,
        "model": model,
        "version": version,
        "env": env,
        "output": output,
        "latency_ms": latency,
        "error": error,
        "commitments": {},
    }
    assert body == canonical_bytes(record)
    assert time == RecordEncoder.stamp_of(ns)


def test_every_ascii_character_is_escaped_as_jcs_escapes_it() -> None:
    """A flat output holding each ASCII character, in keys and values, encodes canonically."""
    for first in (0, 64):  # at most 64 keys take the fast path
        output = {chr(c) + "k": chr(c) + "v" for c in range(first, first + 64)}
        entry = check_entry(0, "r", "1", output, 1)
        assert isinstance(entry[3], dict)  # the fast path: checked here, laid out by the flusher
        ((*_, body),), _ = RecordEncoder("credit-risk", "production").segment([entry])
        assert json.loads(body)["output"] == output
        assert canonical_bytes(json.loads(body)) == body


def test_encoder_reproduces_the_known_answers() -> None:
    """Fed the vectors' fields, the encoder writes the vectors' record lines byte for byte."""
    lines = (require_vectors("runtime") / "records.jsonl").read_bytes().splitlines()
    encoder = RecordEncoder("credit-risk", "production")
    entries, commitments = [], {}
    for n, line in enumerate(lines):
        raw = json.loads(line)
        entries.append(
            check_entry(
                0,
                raw["request_id"],
                raw["version"],
                raw["output"],
                raw["latency_ms"],
                raw["error"],
                raw["time"],
            )
        )
        if raw["commitments"]:
            commitments[n] = canonical_bytes(raw["commitments"]).decode()
    rows, _ = encoder.segment(entries, commitments)
    assert [row[-1] for row in rows] == lines


# -- bad input is refused at record() and nothing is written -------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_id": "a\x00b"}, "'request_id' contains a NUL character"),
        ({"request_id": "r" * 513}, "'request_id' is 513 characters long, over 512"),
        ({"request_id": "a\nb"}, "'request_id' contains the character U\\+000A"),
        ({"version": "1\x07"}, "'version' contains the character U\\+0007"),
        ({"error": "E\x00"}, "'error' contains a NUL character"),
        ({"error": "  "}, "'error' is empty"),
        ({"output": {"label": "\ud800"}}, "lone surrogate"),
        ({"output": {"\ud800": 1}}, "lone surrogate"),
        ({"output": {"big": "x" * OUTPUT_MAX}}, "over 65,536"),
        ({"output": {"deep": [{"x": -math.inf}]}}, "output.deep\\[0\\].x is -Infinity"),
        ({"output": {"n": 2**53}}, "outside the range"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"personal": {"email": object()}}, "runtime record email"),
        ({"personal": {"": "x"}}, "'commitments' is empty"),
        ({"time": "2026-12-01 10:00:00"}, "'time'"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    log: AuditLog, kwargs: dict[str, Any], message: str
) -> None:
    """Each bad record is refused by record() naming the field; no segment is ever written."""
    given_: dict[str, Any] = {"request_id": "ok", "version": "1", "latency_ms": 1.0, **kwargs}
    with log.runtime("credit", env="production", background=False) as rec:
        with pytest.raises(InvalidInputError, match=message):
            rec.record(given_.pop("request_id"), **given_)
        assert rec.pending == 0
    assert _segments(log) == []


def test_the_output_is_copied_when_recorded(log: AuditLog) -> None:
    """Changing the output dict after record() changes neither the record nor its segment."""
    output: dict[str, Any] = {"label": "ok", "score": 0.5}
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record("r1", version="1", output=output, latency_ms=1)
        output["score"] = math.nan
        output["extra"] = object()
    (body,) = raw_query(log.store.url, "SELECT body FROM auditml_record")[0]
    assert json.loads(bytes(body))["output"] == {"label": "ok", "score": 0.5}
    log.verify()


def test_records_of_every_size_land_whole(log: AuditLog) -> None:
    """Segments of awkward sizes (bulk inserts in pieces) store every record in order."""
    with log.runtime("credit", env="production", max_records=777, background=False) as rec:
        for n in range(2000):
            rec.record(f"r{n}", version="1", output={"n": n}, latency_ms=n % 7 + 0.25)
    assert [s.data["count"] for s in _segments(log)] == [777, 777, 446]
    assert _ids(log) == [f"r{n}" for n in range(2000)]
    log.verify()


# -- memory stays bounded -----------------------------------------------------------------


def test_a_full_queue_spools_the_oldest_and_delivers_them(log: AuditLog, tmp_path: Path) -> None:
    """With no flusher, the queue never holds more than max_pending; the rest is spooled."""
    spool = tmp_path / "spool.jsonl"
    rec = Recorder(
        log._ledger,
        log_actor(),
        "credit",
        "production",
        max_records=5,
        max_pending=10,
        max_block=0.01,
        spool=spool,
        background=False,
    )
    for n in range(27):
        rec.record(f"r{n}", version="1", output={}, latency_ms=1, subject=f"s{n}")
        assert rec.pending <= 10
    assert rec.spooled > 0 and spool.exists()
    rec.close()
    assert sorted(_ids(log)) == sorted(f"r{n}" for n in range(27))
    assert all(s.data["dropped"] == 0 for s in _segments(log))
    assert log.open_commitment("r0", "subject").value == "s0"
    assert not spool.exists()
    log.verify()


def test_records_with_nowhere_to_go_are_counted_on_the_log(log: AuditLog) -> None:
    """Without a spool, records over max_pending are dropped, warned about and counted."""
    rec = Recorder(
        log._ledger,
        log_actor(),
        "credit",
        "production",
        max_records=4,
        max_pending=4,
        max_block=0.0,
        background=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(6):
            rec.record(f"r{n}", version="1", output={}, latency_ms=1)
    assert any("could not commit 4 runtime records" in str(w.message) for w in caught)
    assert rec.dropped == 4
    rec.close()
    (segment,) = _segments(log)
    assert segment.data["dropped"] == 4 and segment.data["count"] == 2
    assert rec.dropped == 0
    log.verify()


def test_a_waiting_caller_resumes_when_the_flusher_makes_room(log: AuditLog) -> None:
    """With the background flusher, a full queue makes record() wait, not spool or drop."""
    with log.runtime("credit", env="production", max_records=50, max_pending=50) as rec:
        for n in range(500):
            rec.record(f"r{n}", version="1", output={}, latency_ms=1)
            assert rec.pending <= 50
    assert len(_ids(log)) == 500
    assert all(s.data["dropped"] == 0 for s in _segments(log))


# -- the spool ----------------------------------------------------------------------------


def test_a_symlinked_spool_is_refused(log: AuditLog, tmp_path: Path) -> None:
    """A spool path that is a symbolic link is refused when the recorder opens."""
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("", encoding="utf-8")
    link = tmp_path / "spool.jsonl"
    link.symlink_to(target)
    with pytest.raises(InvalidInputError, match="symbolic link"):
        log.runtime("credit", env="production", spool=link)


def test_a_corrupt_spool_line_is_set_aside_and_counted(log: AuditLog, tmp_path: Path) -> None:
    """Spool lines are checked on read: a corrupt one is reported and counted, the rest land."""
    spool = tmp_path / "spool.jsonl"
    good = {
        "request_id": "kept",
        "version": "1",
        "latency_ms": 1,
        "time": "2026-12-01T10:00:00.000000Z",
    }
    lines = [
        json.dumps(good),
        '{"request_id": "torn", "vers',
        json.dumps({**good, "latency_ms": -1}),
    ]
    spool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rec = log.runtime("credit", env="production", spool=spool, background=False)
    assert rec.spooled == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec.flush()
    assert any("2 corrupt line(s)" in str(w.message) and "line 2" in str(w.message) for w in caught)
    rec.close()
    (segment,) = _segments(log)
    assert _ids(log) == ["kept"] and segment.data["dropped"] == 2
    rejected = tmp_path / "spool.jsonl.rejected"
    assert rejected.read_text(encoding="utf-8").count("\n") == 2
    assert not spool.exists()
    log.verify()


def test_the_spool_is_bounded(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the store is away and the spool is full, the overflow is counted, not written."""
    spool = tmp_path / "spool.jsonl"
    rec = Recorder(
        log._ledger, log_actor(), "credit", "production", spool=spool, max_spool=3, background=False
    )
    real = log._ledger.append_segment

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the database is down")

    monkeypatch.setattr(log._ledger, "append_segment", unreachable)
    for n in range(5):
        rec.record(f"r{n}", version="1", output={}, latency_ms=1)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        rec.flush()
    assert rec.spooled == 3 and rec.dropped == 2
    assert spool.read_text(encoding="utf-8").count("\n") == 3
    monkeypatch.setattr(log._ledger, "append_segment", real)
    rec.close()
    (segment,) = _segments(log)
    assert segment.data["count"] == 3 and segment.data["dropped"] == 2
    log.verify()


# -- ingest --------------------------------------------------------------------------------

GOOD = [
    {"request_id": "j1", "version": "1", "output": {"label": "ok"}, "latency_ms": 2.5},
    {
        "request_id": "j2",
        "version": "1",
        "latency_ms": 3,
        "error": "TIMEOUT",
        "time": "2026-12-01T10:00:00.000000Z",
        "subject": "customer-1",
        "personal": {"email": "jo@example.com"},
    },
]


def _jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_ingest_commits_json_lines(log: AuditLog) -> None:
    """ingest_runtime commits every line as record() would, values kept off the log."""
    done = log.ingest_runtime("credit", _jsonl(GOOD).splitlines(), env="production")
    assert (done.records, done.segments) == (2, 1)
    assert _ids(log) == ["j1", "j2"]
    assert log.open_commitment("j2", "email").value == "jo@example.com"
    bodies = b"".join(
        bytes(r[0]) for r in raw_query(log.store.url, "SELECT body FROM auditml_record")
    )
    assert b"customer-1" not in bodies and b"2026-12-01T10:00:00.000000Z" in bodies
    log.verify()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"request_id": "x", "version": "1"}',
            "line 2: runtime record field 'latency_ms' is missing",
        ),
        (
            '{"request_id": "x", "version": "1", "latency_ms": 1, "colour": 1}',
            "unknown key 'colour'",
        ),
        ('{"request_id": "x\\u0000", "version": "1", "latency_ms": 1}', "NUL character"),
        (
            '{"request_id": "x", "version": "1", "latency_ms": NaN}',
            "line 2: JSON text contains NaN",
        ),
        ('{"request_id": "x", "request_id": "y", "version": "1", "latency_ms": 1}', "twice"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('{"request_id": "x", "version": "1", "latency_ms": 1', "line 2: JSON text is invalid"),
    ],
)
def test_ingest_refuses_a_bad_line_and_writes_nothing(
    log: AuditLog, line: str, message: str
) -> None:
    """A bad line is named by its number, and nothing of the input is committed."""
    lines = [json.dumps(GOOD[0]), line, json.dumps(GOOD[1])]
    with pytest.raises(InvalidInputError, match=message):
        log.ingest_runtime("credit", lines, env="production")
    assert _segments(log) == []


def test_ingest_checks_lines_as_record_does() -> None:
    """The JSON Lines parser refuses what record() refuses, with the same words."""
    with pytest.raises(
        InvalidInputError, match="line 1: runtime record field 'output' must be an object"
    ):
        parse_record_lines(['{"request_id":"a","version":"1","latency_ms":1,"output":[1]}'], 0)
    assert parse_record_lines(["", "  "], 0) == []


def test_ingest_cli_commits_a_file(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml runtime ingest FILE --json` commits the file and prints the counts."""
    path = tmp_path / "records.jsonl"
    path.write_text(_jsonl(GOOD), encoding="utf-8")
    args = ["runtime", "ingest", str(path), "--model", "credit", "--env", "production"]
    code, out, _ = run_cli([*args, "--db", log.store.url, "--json"], capsys)
    assert code == 0
    assert json.loads(out)["records"] == 2 and json.loads(out)["segments"] == 1
    assert _ids(log) == ["j1", "j2"]


def test_ingest_cli_reads_stdin(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml runtime ingest -` reads JSON Lines from standard input."""
    stdin = io.TextIOWrapper(io.BytesIO(_jsonl(GOOD).encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    args = ["runtime", "ingest", "-", "--model", "credit", "--env", "production"]
    code, out, _ = run_cli([*args, "--db", log.store.url], capsys)
    assert code == 0 and "Committed 2 runtime record(s) of credit/production" in out


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ('{"request_id":"a","version":"1","latency_ms":1}\nnot json\n', [], "line 2: JSON text"),
        (
            '{"request_id":"a","version":"1","latency_ms":1}\n',
            ["--model", "fraud"],
            "no model 'fraud'",
        ),
        (None, [], "no file"),
    ],
)
def test_ingest_cli_refuses_bad_input_cleanly(
    log: AuditLog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    extra: list[str],
    message: str,
) -> None:
    """A bad line, unknown model or missing file: one sentence, non-zero exit, nothing written."""
    path = tmp_path / "records.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    args = ["runtime", "ingest", str(path), "--model", "credit", "--env", "production", *extra]
    code, _, err = run_cli([*args, "--db", log.store.url], capsys)
    assert code != 0 and message in err
    assert _segments(log) == []


# -- many writers at once -------------------------------------------------------------------


def test_threads_with_their_own_logs_all_verify(log: AuditLog) -> None:
    """Four threads, each with its own connection and recorder, commit segments that all verify."""
    url = log.store.url

    def work(worker: int) -> None:
        mine = AuditLog.open(url)
        with mine.runtime("credit", env="production", max_records=50, actor=f"s{worker}") as rec:
            for n in range(300):
                rec.record(f"t{worker}-{n}", version="1", output={"n": n}, latency_ms=1)
        mine.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_ids(log)) == 1200
    assert sum(s.data["count"] for s in _segments(log)) == 1200
    log.verify()


_WRITER = """
import sys
from auditml import AuditLog
log = AuditLog.open(sys.argv[1])
with log.runtime("credit", env="production", max_records=100, actor="p" + sys.argv[2]) as rec:
    for n in range(int(sys.argv[3])):
        rec.record(f"p{sys.argv[2]}-{n}", version="1", output={"n": n}, latency_ms=1.5)
"""


def test_processes_recording_at_once_all_verify(log: AuditLog, tmp_path: Path) -> None:
    """Three processes recording into one log at once each commit; every segment verifies."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, str(script), log.store.url, str(w), "600"], env=env)
        for w in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert len(_ids(log)) == 1800
    report = log.verify()
    assert report.size == _segments(log)[-1].seq + 1


def log_actor() -> Any:
    """Return the actor a test recorder records as."""
    from auditml.core.events import Actor

    return Actor(id="server@bank.example")


@pytest.mark.parametrize("count", [1, 63, 64, 65, 700, 1000])
def test_multi_row_inserts_respect_an_old_sqlite_parameter_limit(count: int) -> None:
    """Under SQLite's old 999-parameter limit, bulk inserts split into statements that fit."""
    import sqlite3

    from auditml.store._backends import SQLiteBackend, backend_for

    backend = backend_for("sqlite://")
    assert isinstance(backend, SQLiteBackend)
    conn = sqlite3.connect(":memory:")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    conn.execute("CREATE TABLE t (a, b, c, d, e, f, g, h, i, j, k)")
    rows = [tuple(range(n, n + 9)) for n in range(count)]
    backend.bulk_insert(conn.cursor(), "t", list("abcdefghijk"), (7, 8), rows)
    stored = conn.execute("SELECT * FROM t").fetchall()
    assert stored == [(7, 8, *row) for row in rows]


def test_closing_with_uncounted_drops_warns(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drops that no later segment could count are named when the recorder closes."""
    rec = Recorder(log._ledger, log_actor(), "credit", "production", background=False)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the database is down")

    monkeypatch.setattr(log._ledger, "append_segment", unreachable)
    rec.record("r0", version="1", output={}, latency_ms=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec.close()
    assert any("1 dropped runtime records not yet counted" in str(w.message) for w in caught)
