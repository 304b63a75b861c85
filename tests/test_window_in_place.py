"""The monitor's window read: fields read in place from records' bytes, and the helper process.

The in-place read must give exactly what parsing each whole record gives, or
decline (None) so the record is parsed: never a different value, never a crash.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditml import AuditLog, VerificationError, evidence
from auditml._internal import window_read
from auditml._internal.window_read import Segment, _columns_in_place
from auditml.core.canonical import canonical_bytes
from auditml.core.merkle import leaf_hash, root_of
from auditml.core.policy import policy_from_toml
from auditml.evidence import window_samples
from tests.conftest import drop_triggers, raw_query, raw_sql

MODEL, ENV = "credit", "production"
STREAM = f"{MODEL}/{ENV}"
KEYS = {
    "commitments",
    "env",
    "error",
    "i",
    "latency_ms",
    "model",
    "output",
    "request_id",
    "stream",
    "time",
    "v",
    "version",
}
WIDE = {"since": "2000-01-01T00:00:00.000000Z", "until": "2100-01-01T00:00:00.000000Z"}


def _segment(bodies: list[bytes], stream: object = STREAM) -> Segment:
    leaves = [leaf_hash(b) for b in bodies]
    return Segment(
        1,
        "2100-01-01T00:00:00.000000Z",
        len(bodies),
        root_of(leaves),
        stream,
        MODEL,
        ENV,
        None,
        None,
    )


def _record(i: int, **fields: Any) -> dict[str, Any]:
    record = {
        "v": 1,
        "stream": STREAM,
        "i": i,
        "request_id": f"r-{i}",
        "time": f"2026-12-01T10:00:{i % 60:02d}.000000Z",
        "model": MODEL,
        "version": "1",
        "env": ENV,
        "output": {"label": "refer", "score": 0.5},
        "latency_ms": 12.5,
        "error": None,
        "commitments": {},
    }
    record.update(fields)
    return record


def _parsed(bodies: list[bytes]) -> dict[str, Any] | None:
    """Return the columns a whole parse gives, or None if a record is not one the read takes."""
    records = []
    for i, body in enumerate(bodies):
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(record) is not dict or set(record) != KEYS:
            return None
        fixed = {"commitments": {}, "env": ENV, "model": MODEL, "stream": STREAM, "v": 1, "i": i}
        if any(record[k] != v or type(record[k]) is not type(v) for k, v in fixed.items()):
            return None
        records.append(record)
    return {
        "times": [r["time"] for r in records],
        "versions": [r["version"] for r in records],
        "failed": [r["error"] is not None for r in records],
        "latencies": [r["latency_ms"] for r in records],
        "outputs": [r["output"] for r in records],
        "errors": [r["error"] for r in records],
        "request_ids": [r["request_id"] for r in records],
    }


def _check(bodies: list[bytes]) -> bool:
    """Assert the in-place read of ``bodies`` is what a whole parse gives; True if it read."""
    columns = _columns_in_place(_segment(bodies), bodies, model=MODEL, env=ENV)
    if columns is None:
        return False
    expected = _parsed(bodies)
    assert expected is not None, bodies  # read in place, yet not records as parsed: unsound
    times = columns.times or [p[len(b'time":"') : -1].decode() for p in columns.time_pieces]
    assert times == expected["times"]
    assert (columns.low, columns.high) == (min(times), max(times))
    assert columns.labels == [columns.label(v) for v in expected["versions"]]
    if columns.plain:  # the pieces `version":"V"}` as they stand
        assert [p[10:-2].decode() for p in columns.labels] == expected["versions"]
    else:
        assert columns.labels == expected["versions"]
    assert (columns.failed or [False] * len(bodies)) == expected["failed"]
    assert all(type(t) is str for t in expected["times"] + expected["versions"])
    assert all(type(t) is str for t in expected["request_ids"])
    assert all(e is None or type(e) is str for e in expected["errors"])
    assert columns.latencies == expected["latencies"]
    assert [type(x) for x in columns.latencies] == [type(x) for x in expected["latencies"]]
    assert all(type(x) in (int, float) and math.isfinite(x) for x in columns.latencies)
    if columns.outputs is not None:
        assert columns.outputs == expected["outputs"]
    else:  # read member by member: every output holds those members, numbers as parsed
        assert columns.numbers is not None
        for output in expected["outputs"]:
            assert set(columns.numbers) <= set(output)
            assert all(type(v) in (str, int, float) for v in output.values())
    names = {name for output in expected["outputs"] for name in output} | {"score", "x"}
    for name in names:
        found = columns.scores(name)
        want = [output.get(name) for output in expected["outputs"]]
        numbers = [v if type(v) in (int, float) else None for v in want]
        if found is None:
            assert numbers == [None] * len(want)
        else:
            assert [v if type(v) in (int, float) else None for v in found] == numbers
            assert [type(v) for v in found if type(v) in (int, float)] == [
                type(v) for v in numbers if v is not None
            ]
    return True


def test_records_as_auditml_writes_them_are_read_in_place() -> None:
    """Records laid out by the writer, errors and all, are read in place with the parsed values."""
    bodies = [
        canonical_bytes(_record(i, error="timeout" if i % 3 == 0 else None, version=str(i % 2)))
        for i in range(7)
    ]
    assert _check(bodies)


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_odd_keys = st.sampled_from(
    ["output", "version", "error", "i", "time", "score", "", '"', ',"', "\\", "é"]
)
_outputs = st.dictionaries(_text | _odd_keys, _json, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            _text,  # request_id
            _text,  # version
            st.none() | _text,  # error
            st.integers(0, 10**6) | st.floats(0, 1e9, allow_nan=False),  # latency
            _outputs,
            _text,  # time
        ),
        min_size=1,
        max_size=6,
    )
)
def test_in_place_read_equals_the_whole_parse(rows: list[tuple[Any, ...]]) -> None:
    """For any strings (escapes, unicode, quotes), numbers and outputs, in place = parsed."""
    bodies = []
    for i, (request_id, version, error, latency, output, when) in enumerate(rows):
        fields = {"request_id": request_id, "version": version, "error": error}
        fields.update({"latency_ms": latency, "output": output, "time": when})
        bodies.append(canonical_bytes(_record(i, **fields)))
    _check(bodies)


# (a comma before a quote would cut a piece: such outputs are parsed whole, tested below)
_plain = st.characters(min_codepoint=0x23, max_codepoint=0x7E, exclude_characters="\\,")
_plain_keys = st.text(_plain, min_size=1, max_size=6)
_numbers = st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False)
_plain_text = st.text(_plain, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_plain_keys, st.booleans()), st.data())
def test_outputs_of_plain_members_are_read_member_by_member(
    members: dict[str, bool], data: st.DataObject
) -> None:
    """Outputs with the same plain keys, each all numbers or all plain text, read as columns."""
    n = data.draw(st.integers(1, 5))
    bodies = []
    for i in range(n):
        output = {
            k: data.draw(_numbers if numeric else _plain_text) for k, numeric in members.items()
        }
        bodies.append(canonical_bytes(_record(i, output=output)))
    assert _check(bodies)
    columns = _columns_in_place(_segment(bodies), bodies, model=MODEL, env=ENV)
    assert columns is not None
    if members:  # not `{}`: read member by member, the numbers kept
        assert columns.numbers is not None
        assert set(columns.numbers) == {k for k, numeric in members.items() if numeric}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(_plain_keys | _odd_keys, _numbers | _text, max_size=3),
        min_size=1,
        max_size=5,
    )
)
def test_outputs_of_mixed_members_are_read_as_a_parse_reads_them(
    outputs: list[dict[str, Any]],
) -> None:
    """Outputs whose keys or kinds differ from record to record: read as parsed, or declined."""
    _check([canonical_bytes(_record(i, output=output)) for i, output in enumerate(outputs)])


_snippets = st.sampled_from(
    [
        b',"',
        b'"',
        b"\\",
        b"{",
        b"}",
        b" ",
        b",",
        b":",
        b"null",
        b'"x"',
        b',"version":"9"',
        b',"output":{}',
        b',"error":"e"',
        b'\\"',
        b"\x00",
        b"\n",
        b"\xff",
        b"\xc3",
        b'},"',
        b'{"commitments":{}',
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(2, 5),
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 400), st.integers(0, 6), _snippets),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([{"a": 1, "b": [1, 2]}, {"label": "x", "score": 0.5}, {"score": 7}]),
)
def test_hostile_bytes_are_read_in_place_only_as_a_parse_reads_them(
    n: int, edits: list[tuple[int, int, int, bytes]], output: dict[str, Any]
) -> None:
    """Bytes changed anyhow (inserted, cut): the read declines, or gives what a parse gives."""
    bodies = [
        canonical_bytes(_record(i, error="e" if i == 1 else None, output=output)) for i in range(n)
    ]
    for which, at, cut, snippet in edits:
        body = bodies[which % n]
        at %= len(body) + 1
        bodies[which % n] = body[:at] + snippet + body[at + cut :]
    _check(bodies)


@pytest.mark.parametrize(
    "body",
    [
        # a key given twice: a parse keeps the last; the read declines or agrees
        b'{"commitments":{},"env":"production","error":null,"i":0,"latency_ms":1,"model":"credit",'
        b'"output":{"score":1},"request_id":"r","stream":"credit/production","time":"t","v":1,'
        b'"version":"1","version":"2"}',
        # the output holds what looks like the record's own members
        b'{"commitments":{},"env":"production","error":null,"i":0,"latency_ms":1,"model":"credit",'
        b'"output":{"a":1,"output":{"x":2},"version":"9"},"request_id":"r","stream":'
        b'"credit/production","time":"t","v":1,"version":"1"}',
        # an escaped quote and comma in a string
        b'{"commitments":{},"env":"production","error":"a\\",\\"b","i":0,"latency_ms":1,'
        b'"model":"credit","output":{},"request_id":"r\\\\","stream":"credit/production",'
        b'"time":"t\\u0000","v":1,"version":"\\u00e9"}',
        # whitespace between members
        b'{"commitments":{}, "env":"production","error":null,"i":0,"latency_ms":1,"model":"credit",'
        b'"output":{},"request_id":"r","stream":"credit/production","time":"t","v":1,"version":"1"}',
        # values kept off the log (commitments), as auditml writes them: parsed whole instead
        canonical_bytes(_record(0, commitments={"output": "ab" * 32})),
        # a latency JSON has but a record may not hold, and one no JSON has
        canonical_bytes(_record(0)).replace(b'"latency_ms":12.5', b'"latency_ms":1e400'),
        canonical_bytes(_record(0)).replace(b'"latency_ms":12.5', b'"latency_ms":NaN'),
        canonical_bytes(_record(0)).replace(b'"latency_ms":12.5', b'"latency_ms":true'),
        # not the index of its place, another stream, another model
        canonical_bytes(_record(1)),
        canonical_bytes(_record(0, stream="credit/staging")),
        canonical_bytes(_record(0, model="other")),
        # unicode the writer leaves as it is, and a line separator
        canonical_bytes(_record(0, version="v\u2028é😀", request_id="\u00e9\u0301")),
        # not UTF-8, cut short, empty
        canonical_bytes(_record(0)).replace(b'"r-0"', b'"r-\xff"'),
        canonical_bytes(_record(0))[:-1],
        b"",
    ],
)
def test_odd_records_are_read_as_a_parse_reads_them_or_parsed(body: bytes) -> None:
    """Keys twice or in odd places, escapes, unicode, bad numbers: never a value a parse lacks."""
    _check([body])
    _check([canonical_bytes(_record(0)), body.replace(b'"i":0', b'"i":1')])


def test_two_records_glued_into_one_body_are_not_read_as_two() -> None:
    """Bodies cut at another place than the records' bounds are never read in place."""
    one, two = canonical_bytes(_record(0)), canonical_bytes(_record(1))
    glued = [one + b',"' + two[:40], two[40:]]
    assert not _check(glued)


# --------------------------------------------------------------------------- through a log

ORIGIN = "test.example/window"
POLICY = b"""
[monitor.production]
triggers = ["error_rate > 0.5", "score_psi(score) > 5"]
min_requests = 1
window = "1h"
"""


def _serve(log: AuditLog, plan: dict[str, int], *, errors: int = 0) -> None:
    with log.runtime(MODEL, env=ENV, background=False) as rec:
        for version, count in plan.items():
            for n in range(count):
                rec.record(
                    f"{version}-{n}-{uuid.uuid4().hex[:8]}",
                    version=version,
                    output={"score": (n % 10) / 10, "label": 'é"\\' if n % 2 else "x"},
                    latency_ms=10.0 + n % 7 + (n % 3) / 8,
                    error='boom "quoted" \\ é' if version == "2" and n < errors else None,
                )


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log with v1 stable and v2 a 10% canary in production, under a monitor policy."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made:
        for _ in range(2):
            made.record_training(MODEL, actor="ds@x.example")
        for version in ("1", "2"):
            made.approve(MODEL, version, actor="val@x.example", reason="ok")
        made.deploy(MODEL, "1", ENV, actor="ops@x.example")
        made.apply_policy(policy_from_toml(POLICY, where="test"), actor="admin")
        made.deploy(MODEL, "2", ENV, actor="ops@x.example", traffic="10%")
        yield made


def _figures(found: dict[str, Any]) -> dict[str, Any]:
    return {
        v: (s.requests, s.errors, sorted(s.latency), {k: sorted(a) for k, a in s.scores.items()})
        for v, s in found.items()
    }


def _window(log: AuditLog, **kw: Any) -> dict[str, Any]:
    return _figures(
        window_samples(
            log._ledger, model=MODEL, env=ENV, versions=["1", "2"], fields=["score"], **WIDE, **kw
        )
    )


def test_a_window_read_in_place_equals_one_parsing_every_record(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samples read in place are those of parsing each record whole, and in place was used."""
    for _ in range(3):
        _serve(log, {"1": 9, "2": 4}, errors=2)
    read: list[bool] = []
    real = window_read._columns_in_place

    def spy(*args: Any, **kw: Any) -> Any:
        found = real(*args, **kw)
        read.append(found is not None)
        return found

    monkeypatch.setattr(window_read, "_columns_in_place", spy)
    in_place = _window(log, parallel=False)
    assert read and all(read)
    monkeypatch.setattr(window_read, "_columns_in_place", lambda *a, **k: None)
    assert _window(log, parallel=False) == in_place
    assert in_place["2"][:2] == (12, 6)
    monkeypatch.undo()
    result = log.monitor(MODEL, ENV)
    counts = result.data["counts"]
    assert (counts["canary"], counts["stable"], counts["canary_latency"]) == (12, 27, 12)


def test_a_record_changed_in_the_database_is_a_named_failure(log: AuditLog, db_url: str) -> None:
    """A record's bytes changed after commit fail its segment's root: the error names it."""
    _serve(log, {"1": 5, "2": 2})
    _serve(log, {"1": 5, "2": 2})
    seg = raw_query(db_url, "SELECT seg FROM auditml_record ORDER BY seg DESC LIMIT 1")[0][0]
    body = raw_query(db_url, "SELECT body FROM auditml_record WHERE seg = %s AND i = 0", (seg,))
    changed = bytes(body[0][0]).replace(b'"version":"1"', b'"version":"2"')
    drop_triggers(db_url)
    raw_sql(
        db_url, [("UPDATE auditml_record SET body = %s WHERE seg = %s AND i = 0", (changed, seg))]
    )
    for parallel in (False, True):
        with pytest.raises(VerificationError) as failed:
            _window(log, parallel=parallel)
        assert failed.value.seq == seg


def _patient(monkeypatch: pytest.MonkeyPatch, delay: float) -> list[list[tuple[int, int]]]:
    """Make this process wait for the helper to start, then read slowly; return what was handed."""
    real_read, real_hand, real_finish = (
        evidence.read_into,
        evidence._Helper.hand,
        evidence._Helper.finish,
    )
    handed: list[list[tuple[int, int]]] = []

    def slow(*args: Any) -> None:
        time.sleep(delay)
        real_read(*args)

    def hand(self: Any, front: int, back: int) -> int:
        back = real_hand(self, front, back)
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while not (self.ready or self.broken) and time.monotonic() < deadline:
            time.sleep(0.05)
            back = real_hand(self, front, back)
        return back

    def finish(self: Any) -> Any:
        handed.append(list(self.handed))
        return real_finish(self)

    monkeypatch.setattr(evidence, "OWN_STEP", 1)
    monkeypatch.setattr(evidence, "HELPER_STEP", 2)
    monkeypatch.setattr(evidence, "read_into", slow)
    monkeypatch.setattr(evidence._Helper, "hand", hand)
    monkeypatch.setattr(evidence._Helper, "finish", finish)
    return handed


def test_a_slow_reader_hands_the_helper_the_last_segments(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When this process reads slowly the helper takes the later segments: the same samples."""
    for _ in range(12):
        _serve(log, {"1": 6, "2": 2}, errors=1)
    one = _window(log, parallel=False)
    handed = _patient(monkeypatch, 0.3)
    assert _window(log, parallel=True) == one
    assert handed and handed[0], "the helper was handed nothing"
    assert all(high <= 12 for _, high in handed[0])


BROKEN = """
import sys
sys.stdin.buffer.readline()
sys.stdout.buffer.write(b"ready\\n"); sys.stdout.buffer.flush()
sys.stdin.buffer.readline()
"""


def test_a_helper_that_dies_after_being_handed_segments_leaves_them_here(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that takes segments and dies without answering: this process reads them all."""
    for _ in range(10):
        _serve(log, {"1": 4, "2": 2})
    one = _window(log, parallel=False)

    def broken(*_: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", BROKEN], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    monkeypatch.setattr(evidence, "_spawn", broken)
    handed = _patient(monkeypatch, 0.2)
    assert _window(log, parallel=True) == one
    assert handed and handed[0], "the broken helper was handed nothing"


def _with(i: int, old: bytes, new: bytes) -> bytes:
    body = canonical_bytes(_record(i))
    assert old in body
    return body.replace(old, new)


def test_values_cut_across_records_are_not_read_as_theirs() -> None:
    """Values spanning two records' pieces, made up by an extra one in a third, are not read."""
    versions = [
        _with(0, b'"version":"1"}', b'"version":"a}'),
        _with(1, b'"version":"1"}', b'"version":b"}'),
        _with(2, b'"version":"1"}', b'"version":"c", "d"}'),
    ]
    assert not _check(versions)
    tabs = [versions[0], versions[1], _with(2, b'"version":"1"}', b'"version":"c",\t"d"}')]
    assert not _check(tabs)
    output = b'"output":{"label":"refer","score":0.5}'
    outputs = [
        _with(0, output, b'"output":{"a":"x'),
        _with(1, output, b'"output":y"}'),
        _with(2, output, b'"output":{}, {}'),
    ]
    assert not _check(outputs)
    escaped = [
        _with(0, b'"version":"1"}', b'"version":"a\\"}'),
        _with(1, b'"version":"1"}', b'"version":"}'),
        _with(2, b'"version":"1"}', b'"version":"c", "d"}'),
    ]
    assert not _check(escaped)


def test_escaped_strings_are_read_one_by_one() -> None:
    """Strings with escapes (quotes, backslashes, control characters) are read, each by itself."""
    bodies = [
        canonical_bytes(_record(0, error='a "b" \\ c', version='v"1', request_id="x\ny")),
        canonical_bytes(_record(1, error=None, version="v\\2", time="t\u0001")),
    ]
    assert _check(bodies)


def test_a_read_that_fails_here_ends_the_helper(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When this process fails while it reads, the helper is ended, not left waiting."""
    for _ in range(6):
        _serve(log, {"1": 4, "2": 2})
    _patient(monkeypatch, 0.0)
    started: list[Any] = []
    real_start = evidence._Helper.start

    def start(*args: Any) -> Any:
        helper = real_start(*args)
        started.append(helper)
        return helper

    def fail(*_: Any) -> None:
        raise OSError("the disk went away")

    monkeypatch.setattr(evidence._Helper, "start", start)
    monkeypatch.setattr(evidence, "read_into", fail)
    with pytest.raises(OSError, match="disk went away"):
        _window(log, parallel=True)
    assert started and started[0] is not None
    assert started[0].proc.poll() is not None  # ended and reaped
