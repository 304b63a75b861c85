"""Red-team cases for the window read's outputs read member by member (held to a whole parse)."""

from __future__ import annotations

from typing import Any

import pytest

from auditml.core.canonical import canonical_bytes
from tests.test_window_in_place import _check, _record


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
    b'{}',
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
