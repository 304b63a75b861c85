"""Red-team cases for the window read's outputs read member by member (held to a whole parse)."""

from __future__ import annotations

from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditml import AuditLog, VerificationError
from auditml.core.canonical import canonical_bytes
from auditml.core.rollout import psi, quantile, quantiles
from tests.conftest import drop_triggers, raw_query, raw_sql, run_cli
from tests.test_rollouts import _sorted_psi, _sorted_quantile
from tests.test_window_in_place import ENV, MODEL, _check, _record, _serve, _window
from tests.test_window_in_place import log as log


def _raw(i: int, output: bytes) -> bytes:
    """Return record ``i`` as written, its output object replaced by the raw bytes ``output``."""
    body = canonical_bytes(_record(i, output={"q": 0}))
    return body.replace(b'"output":{"q":0}', b'"output":' + output)


_PLAIN = b'{"label":"refer","score":0.5}'
# Raw output bytes, each paired with a plain record's output: the pair must read as a parse does.
HOSTILE_OUTPUTS = [
    b'{"a\\":1":1,"score":0.5}',
    b'{"a,\\"b":1,"score":0.5}',
    b'{"{":"x","}":0.5}',
    b'{"label":"refer","score":0.5,"score":0.7}',
    b'{"label":"refer","label":"x"}',
    b'{"label":{"score":1},"score":0.5}',
    b'{"label":["a","b"],"score":0.5}',
    b'{"label":"refer","score":[0.5]}',
    b'{"label":"refer","score":{"a":1,"b":2}}',
    b'{"score":0.5,"label":"refer"}',
    b'{"label":"refer","score":1e400}',
    b'{"label":"refer","score":-1e400}',
    b'{"label":"refer","score":-0}',
    b'{"label":"refer","score":-0.0}',
    b'{"label":"refer","score":1E5}',
    b'{"label":"refer","score":1e-400}',
    b'{"label":"refer","score":01}',
    b'{"label":"refer","score":.5}',
    b'{"label":"refer","score":1.}',
    b'{"label":"refer","score":+1}',
    b'{"label":"refer","score":0x1}',
    b'{"label":"refer","score":NaN}',
    b'{"label":"refer","score":Infinity}',
    b'{"label":"refer","score":99999999999999999999999}',
    b'{"label":"refer","score":-9223372036854775809}',
    b'{"label":"refer","score":18446744073709551615}',
    b'{"label":"refer","score":18446744073709551616}',
    b'{"label":"refer","score": 0.5}',
    b'{"label":"refer","score":0.5 }',
    b'{"label":"refer" ,"score":0.5}',
    b'{"label": "refer","score":0.5}',
    b'{ "label":"refer","score":0.5}',
    b'{"label":"re\\u0066er","score":0.5}',
    b'{"label":"re\\"fer","score":0.5}',
    b'{"label":"ref}","score":0.5}',
    b'{"label":"refer","score":"0.5}"}',
    b'{"label":"refer}","score":0.5}',
    b'{"label":"refer","score":0.5}}',
    b'{"label":"refer","score":0.5',
    b"{}",
    b'{"label":"refer"}',
    b'{"label":"refer","score":0.5,"x":1}',
    b'{"l\xc3\xa9":"refer","score":0.5}',
    b'{"label":"r\xc3\xa9fer","score":0.5}',
    b'{"label":"refer","sc\xc3\xb6re":0.5}',
    b'{"label":"x,","score":0.5}',
    b'{"label":"x,","":0.5}',
    b'{"label,":"x","score":0.5}',
    b'{"label":"refer","score,":0.5}',
    b'{"label":"refer","score":true}',
    b'{"label":"refer","score":null}',
    b'{"label":"refer","score":"0.5"}',
    b'{"label":1,"score":0.5}',
    b'{"label":"","score":0.5}',
    b'{"":"refer","score":0.5}',
    b'{"label":"a!b","score":0.5}',
    b'{"label":"a b","score":0.5}',
    b'{"label":"a\tb","score":0.5}',
    b'{"label":"refer","score":0.5,"label":"refer"}',
    b'{"label":"refer","score":0.5e}',
    b'{"label":"refer","score":--1}',
    b'{"label":"refer","score":1 2}',
    b'{"label":"refer","score":1,2}',
    b'{"label":"refer","score":[]}',
    b'{"label":"refer","score":0.5,}',
    b'{"label":"refer",,"score":0.5}',
    b'{"label":"refer","score":0.5}\n',
    b'{"label":"refer","score":\x00}',
]


@pytest.mark.parametrize("output", HOSTILE_OUTPUTS)
@pytest.mark.parametrize("place", [0, 1, 2])
def test_hostile_outputs_beside_plain_ones_read_as_a_parse_does(output: bytes, place: int) -> None:
    """A hostile output among plain ones is read in place only as a whole parse reads it."""
    bodies = [_raw(i, _PLAIN) for i in range(3)]
    bodies[place] = _raw(place, output)
    _check(bodies)
    _check([_raw(0, output)])
    _check([_raw(i, output) for i in range(3)])


@pytest.mark.parametrize("a", HOSTILE_OUTPUTS[:40])
@pytest.mark.parametrize("b", HOSTILE_OUTPUTS[:40:3])
def test_pairs_of_hostile_outputs_read_as_a_parse_does(a: bytes, b: bytes) -> None:
    """Two hostile outputs side by side are read in place only as a whole parse reads them."""
    _check([_raw(0, a), _raw(1, b)])
    _check([_raw(0, b), _raw(1, a), _raw(2, _PLAIN)])


OUTPUTS: list[list[dict[str, Any]]] = [
    [{"a": 1, "b": "x"}, {"b": "x", "a": 1}],
    [{"a": 1}, {"a": 1.5}, {"a": -0.0}, {"a": 2**53 - 1}],
    [{"a": "x"}, {"a": 1}],
    [{"a": {"b": 1}}, {"a": 1}],
    [{"a": [1, 2]}, {"a": 1}],
    [{}, {"a": 1}],
    [{"a": 1}, {}],
    [{"a": "é"}, {"a": "e"}],
    [{"é": 1}, {"é": 2}],
    [{"a": 'x"'}, {"a": "y"}],
    [{"a": "x\\"}, {"a": "y"}],
    [{"a": "x,"}, {"a": "y"}],
    [{"a": "x,", "b": 1}, {"a": "y", "b": 2}],
    [{'a":': 1}, {'a":': 2}],
    [{',"': 1}, {',"': 2}],
    [{"}": 1, "{": 2}, {"}": 3, "{": 4}],
    [{"a": "}"}, {"a": "{"}],
    [{"a": "\u200b"}, {"a": "e\u0301"}],
    [{"score": 1, "x": True}, {"score": 2, "x": False}],
    [{"score": None}, {"score": 1}],
    [{"score": 1, "x": 2}, {"score": 3, "x": "4"}],
]


@pytest.mark.parametrize("outputs", OUTPUTS)
def test_written_outputs_of_odd_shapes_read_as_a_parse_does(outputs: list[dict[str, Any]]) -> None:
    """Outputs as the writer lays them out, shapes mixed per record, read as a parse reads them."""
    _check([canonical_bytes(_record(i, output=o)) for i, o in enumerate(outputs)])
    _check([canonical_bytes(_record(i, output=o)) for i, o in enumerate(reversed(outputs))])


# -- the store's rows, edited outside auditml ---------------------------------------------------

COLUMNS = "log_id, seg, i, request_id, time, model, version, env, latency_ms, error, body"


def _loose(url: str) -> None:
    """Rebuild the record table without keys or NOT NULL (on SQLite, without column types)."""
    if url.startswith("sqlite"):
        raw_sql(
            url,
            [
                f"CREATE TABLE loose ({COLUMNS})",
                f"INSERT INTO loose SELECT {COLUMNS} FROM auditml_record",
                "DROP TABLE auditml_record",
                "ALTER TABLE loose RENAME TO auditml_record",
            ],
        )
        return
    raw_sql(
        url,
        [
            "ALTER TABLE auditml_record DROP CONSTRAINT auditml_record_pkey",
            "ALTER TABLE auditml_record DROP CONSTRAINT auditml_record_log_id_fkey",
            "ALTER TABLE auditml_record ALTER COLUMN body DROP NOT NULL",
        ],
    )


def _copy(where: str, **changes: str) -> str:
    """Return SQL copying the rows ``where`` with some columns replaced by SQL expressions."""
    picked = ", ".join(changes.get(c.strip(), c) for c in COLUMNS.split(","))
    return f"INSERT INTO auditml_record ({COLUMNS}) SELECT {picked} FROM auditml_record {where}"


ATTACKS: dict[str, tuple[bool, list[str]]] = {
    # name: (sqlite only, statements); {seg} is the attacked segment
    "duplicate row": (False, [_copy("WHERE seg = {seg} AND i = 1")]),
    "duplicate i, another body": (False, [_copy("WHERE seg = {seg} - 1 AND i = 1", seg="{seg}")]),
    "replaced by another body": (
        False,
        [
            "DELETE FROM auditml_record WHERE seg = {seg} AND i = 1",
            _copy("WHERE seg = {seg} - 1 AND i = 1", seg="{seg}"),
        ],
    ),
    "text seg copies": (True, [_copy("WHERE seg = {seg}", seg="CAST(seg AS TEXT)")]),
    "text seg moved": (
        True,
        ["UPDATE auditml_record SET seg = CAST(seg AS TEXT) WHERE seg = {seg}"],
    ),
    "real seg copies": (True, [_copy("WHERE seg = {seg}", seg="seg + 0.0")]),
    "text i": (True, ["UPDATE auditml_record SET i = CAST(i AS TEXT) WHERE seg = {seg}"]),
    "text body": (True, ["UPDATE auditml_record SET body = CAST(body AS TEXT) WHERE seg = {seg}"]),
    "null body": (False, ["UPDATE auditml_record SET body = NULL WHERE seg = {seg} AND i = 0"]),
    "another log's copies": (False, [_copy("WHERE seg = {seg}", log_id="log_id + 1")]),
    "moved to another log": (False, ["UPDATE auditml_record SET log_id = 7 WHERE seg = {seg}"]),
    "missing row": (False, ["DELETE FROM auditml_record WHERE seg = {seg} AND i = 2"]),
    "missing segment": (False, ["DELETE FROM auditml_record WHERE seg = {seg}"]),
    "swapped i": (
        False,
        [
            "UPDATE auditml_record SET i = 99 WHERE seg = {seg} AND i = 0",
            "UPDATE auditml_record SET i = 0 WHERE seg = {seg} AND i = 1",
            "UPDATE auditml_record SET i = 1 WHERE seg = {seg} AND i = 99",
        ],
    ),
    "negative i copy": (False, [_copy("WHERE seg = {seg} AND i = 0", i="i - 5")]),
}


@pytest.mark.parametrize("attack", [a for a, (only, _) in ATTACKS.items() if not only])
def test_forged_rows_fail_the_window_naming_the_segment_or_read_as_stored(
    log: AuditLog, db_url: str, attack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows edited with raw SQL are named (VerificationError, the segment) or change no figure."""
    _forged(log, db_url, attack, capsys)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL's typed columns
@pytest.mark.parametrize("attack", [a for a, (only, _) in ATTACKS.items() if only])
def test_rows_only_sqlite_can_store_fail_the_window_or_read_as_stored(
    log: AuditLog, db_url: str, attack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Text or real seg and i, text bodies (which PostgreSQL refuses): named or no figure moved."""
    _forged(log, db_url, attack, capsys)


def _forged(log: AuditLog, db_url: str, attack: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, statements = ATTACKS[attack]
    _serve(log, {"1": 4, "2": 2})
    _serve(log, {"1": 3, "2": 3})
    before = _window(log, parallel=False)
    monitored = log.monitor(MODEL, ENV).data["counts"]
    seg = raw_query(db_url, "SELECT MAX(seg) FROM auditml_record")[0][0]
    drop_triggers(db_url)
    _loose(db_url)
    raw_sql(db_url, [s.replace("{seg}", str(seg)) for s in statements])
    outcomes: list[object] = []
    for call in (
        lambda: _window(log, parallel=False),
        lambda: _window(log, parallel=True),
        lambda: log.monitor(MODEL, ENV).data["counts"],
    ):
        try:
            outcomes.append(call())
        except VerificationError as exc:
            assert exc.seq == seg, (attack, exc)
            outcomes.append(None)
    assert outcomes in ([before, before, monitored], [None, None, None]), (attack, outcomes)
    code, out, err = run_cli(["monitor", MODEL, "--env", ENV, "--db", db_url], capsys)
    assert (code == 1) == (outcomes[0] is None), (code, out, err)
    if code == 1:
        assert str(seg) in err and "Traceback" not in err


# -- the monitor's statistics against a sort --------------------------------------------------

_wild = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e308, -1e308, 5e-324]
)
_wild_samples = st.lists(_wild | st.integers(-(2**53), 2**53), max_size=40)


def _same(a: float | None, b: float | None) -> bool:
    """Return whether two figures are the same float, NaN and the sign of zero included."""
    return repr(a) == repr(b)


@settings(max_examples=400, deadline=None)
@given(_wild_samples, st.lists(st.floats(0, 1) | st.sampled_from([0.0, 1.0]), max_size=5))
def test_quantiles_of_wild_values_equal_a_sort(values: list[float], qs: list[float]) -> None:
    """Quantiles of huge, infinite, signed-zero and int values equal a sort's, bit for bit."""
    ordered = sorted(float(v) for v in values)
    expected = [_sorted_quantile(ordered, q) for q in qs]
    found = quantiles(values, qs)
    assert all(map(_same, found, expected)), (found, expected)
    assert all(map(_same, quantiles(array("d", values), qs), expected))


@settings(max_examples=400, deadline=None)
@given(_wild_samples, _wild_samples)
def test_psi_of_wild_values_equals_a_sort(stable: list[float], canary: list[float]) -> None:
    """PSI of huge, infinite, signed-zero and int values equals the sort-and-bisect PSI."""
    found = psi(array("d", stable), array("d", canary))
    assert _same(found, _sorted_psi([float(v) for v in stable], [float(v) for v in canary]))
    assert _same(psi(stable, canary), found)


@pytest.mark.parametrize(
    "values", [[], [3], [3.5], [2, 2, 2], [-0.0, 0.0], [0.0, -0.0], [1, 2.5], [2**53, 1.0]]
)
def test_quantiles_and_psi_of_small_samples_equal_a_sort(values: list[float]) -> None:
    """Empty, one value, all equal, signed zeros, ints with floats: as a sort gives them."""
    ordered = sorted(float(v) for v in values)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert _same(quantile(values, q), _sorted_quantile(ordered, q))
    assert _same(psi(values, values), _sorted_psi(ordered, ordered))
    assert _same(psi(values, [1.0]), _sorted_psi(ordered, [1.0]))


def test_no_quantile_asked_and_psi_of_one_bin_give_what_a_sort_gives() -> None:
    """No quantile asked is an empty answer, and PSI in one bin is 0, as before NumPy (no crash)."""
    assert quantiles([1.0, 2.0], []) == []
    assert psi([1.0, 2.0], [5.0], bins=1) == _sorted_psi([1.0, 2.0], [5.0], bins=1) == 0.0


_numberish = st.from_regex(rb"\A[ \t]?-{0,2}[0-9]{0,3}\.?[0-9]{0,2}([eE][+-]?[0-9]{0,4})?[ }]?\Z")
_keyish = st.sampled_from([b"score", b"x", b"", b"}", b"{", b"a:b", b"score,", b"sc ore"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.tuples(_keyish, _numberish), min_size=1, max_size=3), min_size=1))
def test_number_like_members_spliced_raw_read_as_a_parse_does(
    outputs: list[list[tuple[bytes, bytes]]],
) -> None:
    """Raw number-like text (signs, dots, exponents, spaces, braces) reads as a parse reads it."""
    bodies = [
        _raw(i, b"{" + b",".join(b'"' + k + b'":' + v for k, v in members) + b"}")
        for i, members in enumerate(outputs)
    ]
    _check(bodies)
