"""Tests for auditml.core.canonical: RFC 8785 encoding and the strict JSON parser."""

from __future__ import annotations

import decimal
import enum
import json
import math
import random
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import auditml.core.canonical
from auditml.core.canonical import (
    MAX_SAFE_INTEGER,
    canonical_bytes,
    canonical_text,
    loads_strict,
    plain_canonical_bytes,
)
from auditml.errors import CanonicalizationError, InvalidInputError
from tests.vector_files import require_vectors

# ---------------------------------------------------------------------------
# Published RFC 8785 vectors


def _vector_names() -> list[str]:
    """Return the names of the published rfc8785 cases."""
    folder = require_vectors("rfc8785") / "input"
    return sorted(path.stem for path in folder.glob("*.json"))


@pytest.mark.parametrize("name", _vector_names())
def test_published_vector(name: str) -> None:
    """Each published rfc8785 input parses strictly and canonicalizes to its output exactly."""
    folder = require_vectors("rfc8785")
    source = (folder / "input" / f"{name}.json").read_bytes()
    expected = (folder / "output" / f"{name}.json").read_bytes()
    assert canonical_bytes(loads_strict(source)) == expected
    assert canonical_text(loads_strict(source)) == expected.decode("utf-8")
    assert plain_canonical_bytes(loads_strict(source)) == expected


def test_published_vectors_are_all_there() -> None:
    """Every published rfc8785 input has its output, so no case is silently left out."""
    folder = require_vectors("rfc8785")
    inputs = {path.name for path in Path(folder / "input").glob("*.json")}
    outputs = {path.name for path in Path(folder / "output").glob("*.json")}
    assert inputs
    assert inputs == outputs


# ---------------------------------------------------------------------------
# Known answers, so a bare checkout still checks something

ES6_NUMBERS = [
    (0, "0"),
    (0.0, "0"),
    (-0.0, "0"),
    (1e21, "1e+21"),
    (-1e21, "-1e+21"),
    (1e20, "100000000000000000000"),
    (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"),
    (0.000001, "0.000001"),
    (0.0001, "0.0001"),
    (123456789012345680000.0, "123456789012345680000"),
    (5e-324, "5e-324"),
    (-5e-324, "-5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (3.0, "3"),
    (-3.0, "-3"),
    (1e16, "10000000000000000"),
    (2.0**53, "9007199254740992"),
    (2.0**60, "1152921504606847000"),
    (0.1, "0.1"),
    (-0.5, "-0.5"),
    (333333333.33333329, "333333333.3333333"),
    (1e30, "1e+30"),
    (4.50, "4.5"),
    (2e-3, "0.002"),
    (1e-27, "1e-27"),
    (0.8123, "0.8123"),
    (MAX_SAFE_INTEGER, "9007199254740991"),
    (-MAX_SAFE_INTEGER, "-9007199254740991"),
    (123456, "123456"),
]


@pytest.mark.parametrize(("number", "text"), ES6_NUMBERS)
def test_number_known_answers(number: float, text: str) -> None:
    """Numbers are laid out as ES6 Number.prototype.toString writes them."""
    assert canonical_text(number) == text
    assert canonical_text([number]) == f"[{text}]"
    assert canonical_text({"n": number}) == f'{{"n":{text}}}'
    assert plain_canonical_bytes({"n": number}) == f'{{"n":{text}}}'.encode()
    assert plain_canonical_bytes(number) == text.encode()


def test_literals_and_bool_is_not_int() -> None:
    """True, False and None are JSON literals, never 1 or 0."""
    assert canonical_text([True, False, None, 1, 0]) == "[true,false,null,1,0]"
    assert canonical_text({"a": True, "b": False, "c": None}) == '{"a":true,"b":false,"c":null}'
    assert canonical_text(True) == "true"
    assert canonical_text(None) == "null"


def test_utf16_key_order() -> None:
    """Keys sort by UTF-16 code units: U+1F600 (a surrogate pair) sorts before U+E000."""
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3, "\u00e9": 4}
    assert canonical_text(value) == '{"a":3,"\u00e9":4,"\U0001f600":2,"\ue000":1}'
    # Code-point order would put U+E000 first; UTF-16 order must not.
    assert sorted(value)[2] == "\ue000"


def test_key_order_ignores_insertion_order() -> None:
    """Dicts with the same items give the same text whatever order they were built in."""
    one = {"b": 1, "a": {"y": 2, "x": 3}, "c": [1, 2]}
    two = {"c": [1, 2], "a": {"x": 3, "y": 2}, "b": 1}
    assert canonical_text(one) == canonical_text(two) == '{"a":{"x":3,"y":2},"b":1,"c":[1,2]}'


def test_sample_event_matches_sorted_json_dumps() -> None:
    """For an all-ASCII event with no special numbers, the text equals sorted compact json.dumps."""
    event = {
        "v": 1,
        "log": "bank.example/credit-models",
        "seq": 123456,
        "prev": "ab" * 32,
        "time": "2026-11-21T20:56:41.123456Z",
        "actor": {"id": "alice@example.com", "source": "env"},
        "action": "model.evaluate",
        "subject": {"model": "credit-risk", "version": "3"},
        "data": {
            "dataset": {"name": "holdout", "sha256": "cd" * 32},
            "metrics": {"auc": 0.8123, "accuracy": 0.91, "f1": 0.77, "recall": 0.75},
            "notes": "nightly evaluation run",
            "tags": [],
            "extra": {},
        },
    }
    expected = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_text(event) == expected
    assert canonical_bytes(event) == expected.encode("utf-8")


def _jcs_escape(char: str) -> str:
    """Return the RFC 8785 form of one character inside a string (written from the RFC)."""
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    short["\r"] = "\\r"
    if char in short:
        return short[char]
    if ord(char) < 0x20:
        return f"\\u{ord(char):04x}"
    return char


def test_string_escaping_of_every_bmp_character() -> None:
    """Only quote, backslash and controls are escaped; every other character is literal UTF-8."""
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert canonical_text(char) == f'"{_jcs_escape(char)}"', hex(code)
    assert canonical_text("\u2028\u2029\u007f\U0001f600") == '"\u2028\u2029\u007f\U0001f600"'
    assert canonical_bytes("é") == b'"\xc3\xa9"'


def test_strings_are_not_normalized() -> None:
    """Unnormalized Unicode is kept exactly as given."""
    assert canonical_text("A\u030a") == '"A\u030a"'
    assert canonical_text("\u00c5") == '"\u00c5"'


def test_tuples_and_subclasses_encode_as_their_json_type() -> None:
    """Tuples are arrays, and subclasses of dict, str, int and float encode as their base type."""

    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    class Score(float):
        pass

    value = OrderedDict([("b", (1, Colour.RED)), ("a", Name("x")), ("c", Score(2.0))])
    assert canonical_text(value) == '{"a":"x","b":[1,1],"c":2}'


def test_many_dict_shapes() -> None:
    """Thousands of distinct key sets (more than the layout cache holds) still encode right."""
    for i in range(6000):
        value = {f"k{i}": i, "z": [i], f"a{i % 7}": {}}
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"))
        assert canonical_text(value) == expected


def test_bytes_are_utf8_of_text() -> None:
    """canonical_bytes is canonical_text encoded as UTF-8."""
    value = {"€": ["😂", "דּ", "\n"], "1": 1.5}
    assert canonical_bytes(value) == canonical_text(value).encode("utf-8")


# ---------------------------------------------------------------------------
# Refusals


class _Thing:
    pass


def _cycle() -> dict[str, Any]:
    """Return a dict whose ``root.self`` is the ``root`` dict itself."""
    inner: dict[str, Any] = {}
    inner["self"] = inner
    return {"root": inner}


REFUSALS: list[tuple[str, Any, str, str]] = [
    ("nan", {"data": {"metrics": {"auc": math.nan}}}, "data.metrics.auc", "record it as a string"),
    ("inf", {"data": {"loss": math.inf}}, "data.loss", "Infinity"),
    ("-inf", {"params": [0, 1, 2, -math.inf]}, "params[3]", "-Infinity"),
    ("2**53", {"counter": 2**53}, "counter", "store large counters"),
    ("-(2**53)", {"data": {"t_ns": -(2**53)}}, "data.t_ns", "nanosecond clocks as strings"),
    ("non-str key", {"data": {"by_class": {1: 0.5}}}, "data.by_class", "str()"),
    ("surrogate value", {"notes": "bad \ud800 text"}, "notes", "lone surrogate"),
    ("surrogate key", {"data": {"k\udfff": 1}}, "data", "lone surrogate"),
    ("set", {"tags": {"a", "b"}}, "tags", "set"),
    ("bytes", {"blob": [b"\x00"]}, "blob[0]", "bytes"),
    ("object", {"data": {"model": _Thing()}}, "data.model", "_Thing"),
    ("decimal", {"price": decimal.Decimal("1.5")}, "price", "decimal.Decimal"),
    ("odd keys", {"weird key": [{"x": math.nan}]}, '["weird key"][0].x', "NaN"),
    ("top-level nan", math.nan, "the value", "NaN"),
    ("top-level list", [1, [2, math.nan]], "[1][1]", "NaN"),
    ("cycle", _cycle(), "root.self", "cycle"),
]


@pytest.mark.parametrize(
    ("value", "path", "hint"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_refusals_name_the_path(value: Any, path: str, hint: str) -> None:
    """Each unencodable value is refused by both encoders with a message naming where it is."""
    for encode in (canonical_text, canonical_bytes, plain_canonical_bytes):
        with pytest.raises(CanonicalizationError) as caught:
            encode(value)
        message = str(caught.value)
        assert path in message
        assert hint in message
        assert message.endswith(".")
        assert "\n" not in message


def test_refusal_is_an_input_error() -> None:
    """CanonicalizationError is an InvalidInputError (and a ValueError) for callers to catch."""
    with pytest.raises(InvalidInputError):
        canonical_bytes({"x": math.nan})
    with pytest.raises(ValueError, match="record it as a string"):
        canonical_bytes({"x": math.nan})


def test_safe_integer_bounds() -> None:
    """Exactly ±(2**53 - 1) is accepted; one more in either direction is refused."""
    assert canonical_text([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        "[9007199254740991,-9007199254740991]"
    )
    assert plain_canonical_bytes([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[9007199254740991,-9007199254740991]"
    )
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**400):
        with pytest.raises(CanonicalizationError, match="store large counters"):
            canonical_text({"n": bad})
        with pytest.raises(CanonicalizationError, match="store large counters"):
            plain_canonical_bytes({"n": bad})


def test_deep_nesting_is_refused_cleanly() -> None:
    """A value nested deeper than Python can recurse is a CanonicalizationError, not a crash."""
    value: Any = 1
    for _ in range(5000):
        value = [value]
    with pytest.raises(CanonicalizationError, match="nested too deeply"):
        canonical_bytes(value)


# ---------------------------------------------------------------------------
# loads_strict

LOADS_REFUSALS = [
    ("duplicate nested key", b'{"a": {"b": [{"c": 1, "c": 2}]}}', '"c" twice'),
    ("duplicate top key", b'{"x": 1, "y": 2, "x": 3}', '"x" twice'),
    ("NaN", b'{"a": NaN}', "NaN"),
    ("Infinity", b"[Infinity]", "Infinity"),
    ("-Infinity", b"[-Infinity]", "-Infinity"),
    ("2**53 + 1", b"[9007199254740993]", "9007199254740993"),
    ("big int", b'{"n": 12345678901234567890}', "store large counters"),
    ("huge int", b"1" * 5000, "store large counters"),
    ("float overflow", b"[1e400]", "too large"),
    ("bad utf-8", b'{"a": "\xff"}', "not valid UTF-8"),
    ("overlong utf-8", b'"\xc0\xaf"', "not valid UTF-8"),
    ("encoded surrogate", b'"\xed\xa0\x80"', "not valid UTF-8"),
    ("lone surrogate escape", b'{"a": ["\\ud800"]}', "a[0]"),
    ("lone surrogate escape in key", b'{"a": {"\\udc00": 1}}', "lone surrogate"),
    ("trailing data", b'{"a": 1} {"b": 2}', "after its value"),
    ("trailing garbage", b"[1]x", "after its value"),
    ("trailing comma", b'{"a": 1,}', "line 1, column"),
    ("single quotes", b"{'a': 1}", "line 1, column"),
    ("empty", b"", "line 1, column 1"),
    ("bare control char", b'"a\nb"', "Invalid control character"),
    ("nested too deeply", b"[" * 100_000, "nested too deeply"),
    ("not text", 42, "bytes or str"),
]


@pytest.mark.parametrize(
    ("data", "hint"),
    [case[1:] for case in LOADS_REFUSALS],
    ids=[case[0] for case in LOADS_REFUSALS],
)
def test_loads_strict_refusals(data: Any, hint: str) -> None:
    """loads_strict refuses non-strict JSON with a message saying what is wrong."""
    with pytest.raises(CanonicalizationError) as caught:
        loads_strict(data)
    assert hint in str(caught.value)


def test_loads_strict_reports_line_and_column() -> None:
    """A syntax error names the line and column where it is."""
    with pytest.raises(CanonicalizationError, match="line 3, column 8"):
        loads_strict('{\n  "a": 1,\n  "b": tru\n}')


def test_loads_strict_refuses_lone_surrogate_in_str_input() -> None:
    """A str holding a raw lone surrogate is refused: it has no UTF-8 form."""
    with pytest.raises(CanonicalizationError, match="lone surrogate"):
        loads_strict('"\ud800"')


def test_loads_strict_accepts_plain_json() -> None:
    """Strict JSON parses to plain Python values, from bytes or str, with surrounding whitespace."""
    text = ' \n{"a": [1, -2.5, "x\\u00e9\\ud83d\\ude02", true, false, null], "b": {}}\r\n\t'
    expected = {"a": [1, -2.5, "x\u00e9\U0001f602", True, False, None], "b": {}}
    assert loads_strict(text) == expected
    assert loads_strict(text.encode("utf-8")) == expected
    assert type(loads_strict(b"[1]")[0]) is int
    assert loads_strict(b"[9007199254740991, -9007199254740991]") == [
        MAX_SAFE_INTEGER,
        -MAX_SAFE_INTEGER,
    ]


def test_loads_strict_reads_back_large_integral_floats() -> None:
    """Large integral floats, written by canonical_text without an exponent, read back as floats."""
    for number in (1e20, -1e20, 2.0**53, 2.0**60, 123456789012345680000.0):
        body = canonical_bytes({"x": number})
        parsed = loads_strict(body)
        assert parsed == {"x": number}
        assert type(parsed["x"]) is float
        assert canonical_bytes(parsed) == body


# ---------------------------------------------------------------------------
# Properties

_safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
_finite_floats = st.floats(allow_nan=False, allow_infinity=False)
_json_values = st.recursive(
    st.none() | st.booleans() | _safe_ints | _finite_floats | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_json_values)
def test_round_trip_property(value: Any) -> None:
    """Canonical text parses back to an equal value, and re-canonicalizing it is a fixed point."""
    text = canonical_text(value)
    # JCS numbers are doubles: 2.0**60 is written 1152921504606847000, which is the same
    # double but not the same Python int, so integers are read back as floats to compare.
    assert json.loads(text, parse_int=float) == value
    body = canonical_bytes(value)
    assert body == text.encode("utf-8")
    assert canonical_bytes(loads_strict(body)) == body


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=8))
def test_key_order_property(value: dict[str, int]) -> None:
    """Keys come out in UTF-16 code-unit order."""
    keys = list(json.loads(canonical_text(value)))
    assert keys == sorted(value, key=lambda k: k.encode("utf-16-be"))


# ---------------------------------------------------------------------------
# The fast encoder for plain JSON values

_any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_plain_values = st.recursive(
    st.none() | st.booleans() | _safe_ints | _finite_floats | _any_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(_any_text, children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(_plain_values)
def test_plain_encoder_equals_the_reference(value: Any) -> None:
    """For any plain JSON value, the orjson-backed encoder gives exactly canonical_bytes."""
    assert plain_canonical_bytes(value) == canonical_bytes(value)


def test_plain_encoder_on_a_sweep_of_floats() -> None:
    """Floats of every magnitude and rounding, alone and in objects, match the reference."""
    rnd = random.Random(8785)
    for i in range(20_000):
        if i % 2:
            x = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
            if not math.isfinite(x):
                continue
        else:
            x = round(rnd.uniform(-1, 1) * 10 ** rnd.randint(-25, 25), rnd.randint(0, 8))
        assert plain_canonical_bytes([x, {"x": x}]) == canonical_bytes([x, {"x": x}]), repr(x)


def test_plain_encoder_on_every_bmp_character_and_astral_keys() -> None:
    """Escaping of every BMP character, and UTF-16 key order around U+E000, match the reference."""
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(chars), 512):
        text = "".join(chars[start : start + 512])
        value = {text: text, "k": [text]}
        assert plain_canonical_bytes(value) == canonical_bytes(value)
    keys = {"\ue000": 1, "\U0001f600": 2, "a": 3, "\u00e9": 4, "\uffff": 5, "\U00010000": 6}
    assert plain_canonical_bytes(keys) == canonical_bytes(keys)


def test_plain_encoder_encodes_subclasses_as_the_reference_does() -> None:
    """Subclasses, tuples and ordered dicts leave orjson's path and come out as the reference's."""

    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    value = OrderedDict([("b", (1, Colour.RED)), ("a", Name("x")), ("c", 2.5)])
    assert plain_canonical_bytes(value) == canonical_bytes(value) == b'{"a":"x","b":[1,1],"c":2.5}'


def test_plain_encoder_takes_the_fast_path_for_typical_event_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Metrics, hashes, URIs and non-Latin text are laid out by orjson, not the slower path."""

    def refuse(value: object) -> bytes:
        raise AssertionError(f"fell back to the careful encoder for {value!r}")

    monkeypatch.setattr(auditml.core.canonical, "canonical_bytes", refuse)
    data = {
        "dataset": {"uri": "s3://datasets/holdout-3.parquet", "sha256": "9e" * 32},
        "metrics": {"auc": 0.8123, "accuracy": 0.91, "n": 10_123, "loss": 0.05, "tiny": 0.0012},
        "slices": {"age<30": {"auc": 0.79}, "région": {"auc": 0.8}, "年齢": {"auc": 0.81}},
        "tags": ["nightly", "v2"],
        "ok": True,
    }
    assert plain_canonical_bytes(data) == json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
