"""verify's check of record columns without parsing holds them to the bytes as parsing does.

``_columns_in_place`` makes the text each column must have in a record's
canonical bytes and finds it in place. Over generated records it must accept
every honest row (returning the record's commitments), and refuse every row
whose column differs from its bytes in value or type, or whose bytes are junk:
then verify falls back to parsing, which names the record.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditml.core.records import RuntimeRecord, _columns_in_place, _fast_columns

_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True)
_text = st.text(min_size=1, max_size=24).filter(lambda t: t.strip() == t and t.isprintable())
_latency = st.one_of(
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
    st.integers(min_value=0, max_value=10**9),
)
_record = st.builds(
    lambda model, env, i, rid, version, latency, error, micro, label, commit: RuntimeRecord(
        stream=f"{model}/{env}",
        i=i,
        request_id=rid,
        time=f"2026-12-04T10:00:00.{micro:06d}Z",
        model=model,
        version=version,
        env=env,
        output={"label": label, "score": 0.5},
        latency_ms=latency,
        error=error,
        commitments={"subject": "ab" * 32} if commit else {},
    ),
    _names,
    _names,
    st.integers(min_value=0, max_value=10**6),
    _text,
    _text,
    _latency,
    st.one_of(st.none(), _text),
    st.integers(min_value=0, max_value=999_999),
    _text,
    st.booleans(),
)


def _row(record: RuntimeRecord) -> list[Any]:
    d = record.as_dict()
    body = record._canonical
    return [7, d["i"], d["request_id"], d["time"], d["model"], d["version"], d["env"],
            d["latency_ms"], d["error"], body]  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_record, min_size=1, max_size=5))
def test_honest_rows_pass_with_their_commitments(records: list[RuntimeRecord]) -> None:
    """Every honest row passes in place, with the commitments parsing finds."""
    rows = [tuple(_row(r)) for r in records]  # as the store gives them
    bodies = [row[9] for row in rows]
    found = _columns_in_place(rows, bodies)
    assert found is not None
    assert [orjson.loads(c) for c in found] == _fast_columns(rows, bodies)


_LIES = [
    (1, lambda v: v + 1),
    (1, float),
    (1, lambda v: True if v == 1 else v + 1),
    (2, lambda v: v + "x"),
    (2, lambda v: v.encode()),
    (3, lambda v: v.replace("10:00", "10:01")),
    (4, lambda v: v + "x"),
    (5, lambda v: v + "x"),
    (5, lambda v: None),
    (6, lambda v: v + "x"),
    (7, lambda v: v + 1),
    (7, lambda v: v * 1.0000001 + 1e-3),
    (7, str),
    (8, lambda v: "timeout" if v is None else None),
    (8, lambda v: "null"),
    (9, lambda v: v[:-1]),
    (9, lambda v: v.replace(b'"commitments"', b'"commitmentz"')),
    (9, lambda v: v.decode()),
    (9, lambda v: b"[" + v),
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=_record, lie=st.sampled_from(range(len(_LIES))), at=st.integers(0, 2))
def test_a_lying_column_or_junk_body_never_passes_in_place(
    record: RuntimeRecord, lie: int, at: int
) -> None:
    """A column changed in value or type, or bytes changed, sends the chunk to parsing."""
    rows = [_row(record) for _ in range(3)]
    column, change = _LIES[lie]
    before = rows[at][column]
    rows[at][column] = change(before)
    if rows[at][column] == before and type(rows[at][column]) is type(before):
        return  # the change changed nothing here
    assert _columns_in_place(rows, [row[9] for row in rows]) is None


def test_hostile_rows_never_raise() -> None:
    """Rows of junk types, NaN latencies and lone surrogates give None, never an exception."""
    good = _row(
        RuntimeRecord(
            stream="m/e", i=0, request_id="r", time="2026-12-04T10:00:00.000000Z",
            model="m", version="1", env="e", output={}, latency_ms=1.5,
        )
    )  # fmt: skip
    for column, junk in [
        (7, float("nan")),
        (7, float("inf")),
        (7, None),
        (2, "\udcff"),
        (4, ["m"]),
        (4, bytearray(b"m")),
        (1, None),
        (9, None),
        (9, memoryview(b"{}")),
    ]:
        row = list(good)
        row[column] = junk
        assert _columns_in_place([row], [row[9]]) is None
    assert _columns_in_place([good[:5]], [good[9]]) is None
