"""RFC 8785 (JSON Canonicalization Scheme) encoding, and a strict JSON parser.

:func:`canonical_text` and :func:`canonical_bytes` turn a JSON-able Python value
into its one canonical JSON form: object keys sorted by UTF-16 code units, no
whitespace, strings escaped only where JSON requires it, and numbers laid out
as ECMAScript's ``Number.prototype.toString`` does. Values that JCS cannot
represent exactly (NaN, infinities, integers beyond 2**53 - 1, non-string keys,
lone surrogates, other types) are refused with a
:class:`~auditml.errors.CanonicalizationError` that names where the problem is.

:func:`loads_strict` is the matching parser: one JSON value, valid UTF-8, and
nothing JCS would refuse (duplicate keys, NaN literals, unsafe integers).

The encoder is on the append path, so it is built for speed: one pass that
validates while it emits, C-accelerated string escaping, and a cache of the
sorted key layout of each dict shape seen. When anything looks wrong, a second,
careful walk finds the first problem and names its path.

:func:`plain_canonical_bytes` is faster still for values already made only of
JSON types (a pydantic JSON-mode dump, or what :func:`loads_strict` returns):
orjson lays them out, and its output is kept only where it provably equals the
RFC 8785 form; anything else goes to :func:`canonical_bytes`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

import orjson

from auditml.errors import CanonicalizationError

__all__ = [
    "MAX_SAFE_INTEGER",
    "canonical_bytes",
    "canonical_text",
    "loads_strict",
    "plain_canonical_bytes",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer an IEEE 754 double (and so every JCS reader) holds exactly."""

_MIN_SAFE_INTEGER = -MAX_SAFE_INTEGER

# encode_basestring is json's C string escaper for ensure_ascii=False. It escapes
# exactly what RFC 8785 section 3.2.2.2 requires: '"', '\\', \b \t \n \f \r in
# short form and the other controls below U+0020 as lowercase \u00xx; every
# other character, U+007F and U+2028/U+2029 included, passes through literally.
_escape: Callable[[str], str] = encode_basestring

_SHAPE_CACHE_LIMIT = 4096
_SHAPE_MAX_KEYS = 64

# The sorted layout of a dict, keyed by its keys in insertion order: a getter that
# returns the values in canonical order, and the text before each value
# ('{"a":' for the first, ',"b":' for the rest).
_Shape = tuple[Callable[[Any], Any], list[str]]
_shapes: dict[tuple[Any, ...], _Shape] = {}


class _RefusedError(Exception):
    """The fast encoder met something it will not encode; the careful walk explains it."""


# ---------------------------------------------------------------------------
# Numbers


def _float_text(x: float) -> str:
    """Return ``x`` as ECMAScript's Number.prototype.toString writes it."""
    if not math.isfinite(x):
        raise _RefusedError
    if x == 0.0:
        return "0"  # both zeros: ES6 prints -0 as "0"
    # repr gives the shortest digits that round-trip (the digits ES6 asks for);
    # only the layout differs.
    text = float.__repr__(x)
    sign = ""
    if text[0] == "-":
        sign = "-"
        text = text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k = len(digits)  # x == 0.<digits> * 10**point
    if k <= point <= 21:
        body = digits + "0" * (point - k)
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * -point + digits
    else:
        e = point - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e >= 0 else "e-")
        body += str(abs(e))
    return sign + body


# ---------------------------------------------------------------------------
# The fast encoder


def _utf16_key(key: str) -> bytes:
    """Return a sort key that orders strings by their UTF-16 code units."""
    return key.encode("utf-16-be", "surrogatepass")


def _shape_of(d: dict[Any, Any]) -> _Shape:
    """Work out (and cache) the canonical key order and key text of ``d``'s keys."""
    keys = list(d)
    for key in keys:
        if not isinstance(key, str):
            raise _RefusedError
    if "".join(keys).isascii():
        keys.sort()  # code-point order is UTF-16 order for ASCII
    else:
        keys.sort(key=_utf16_key)
    prefixes = [("," if i else "{") + _escape(key) + ":" for i, key in enumerate(keys)]
    getter: Callable[[Any], Any]
    if len(keys) == 1:
        only = keys[0]

        def getter(mapping: Any) -> tuple[Any]:
            return (mapping[only],)

    else:
        getter = itemgetter(*keys)
    shape = (getter, prefixes)
    if len(keys) <= _SHAPE_MAX_KEYS:
        if len(_shapes) >= _SHAPE_CACHE_LIMIT:
            _shapes.clear()
        _shapes[tuple(d)] = shape
    return shape


# The two loops below share one dispatch, written out twice because a function call
# per value would cost more than the rest of the work. Exact types are tested
# first (most common first); subclasses and everything else go to _emit_other.


def _emit_dict(d: dict[Any, Any], append: Callable[[str], None]) -> None:
    """Append the canonical text of a dict (the fast path)."""
    if not d:
        append("{}")
        return
    shape = _shapes.get(tuple(d))
    if shape is None:
        shape = _shape_of(d)
    getter, prefixes = shape
    # Same length by construction; zip's strict= keyword alone costs ~150 ns a call on 3.11.
    for prefix, x in zip(prefixes, getter(d)):  # noqa: B905
        append(prefix)
        t = type(x)
        if t is str:
            append(_escape(x))
        elif t is int:
            if _MIN_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
                append(str(x))
            else:
                raise _RefusedError
        elif t is float:
            # repr is already the ES6 form of a non-integral value in this range.
            if (1e-4 <= x < 1e16 or -1e16 < x <= -1e-4) and x % 1.0:
                append(repr(x))
            else:
                append(_float_text(x))
        elif t is dict:
            _emit_dict(x, append)
        elif x is None:
            append("null")
        elif x is True:
            append("true")
        elif x is False:
            append("false")
        elif t is list or t is tuple:
            _emit_list(x, append)
        else:
            _emit_other(x, append)
    append("}")


def _emit_list(seq: list[Any] | tuple[Any, ...], append: Callable[[str], None]) -> None:
    """Append the canonical text of a list or tuple (the fast path).

    The type dispatch repeats _emit_dict's on purpose: a shared helper would
    cost a function call per value on the append path.
    """
    if not seq:
        append("[]")
        return
    prefix = "["
    for x in seq:
        append(prefix)
        prefix = ","
        t = type(x)
        if t is str:
            append(_escape(x))
        elif t is int:
            if _MIN_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
                append(str(x))
            else:
                raise _RefusedError
        elif t is float:
            if (1e-4 <= x < 1e16 or -1e16 < x <= -1e-4) and x % 1.0:
                append(repr(x))
            else:
                append(_float_text(x))
        elif t is dict:
            _emit_dict(x, append)
        elif x is None:
            append("null")
        elif x is True:
            append("true")
        elif x is False:
            append("false")
        elif t is list or t is tuple:
            _emit_list(x, append)
        else:
            _emit_other(x, append)
    append("]")


def _emit_other(x: object, append: Callable[[str], None]) -> None:
    """Append a top-level value or a subclass of a JSON type; refuse everything else."""
    if isinstance(x, str):
        append(_escape(x))
    elif x is None:
        append("null")
    elif isinstance(x, bool):  # before int: bool subclasses int
        append("true" if x else "false")
    elif isinstance(x, int):
        if not _MIN_SAFE_INTEGER <= x <= MAX_SAFE_INTEGER:
            raise _RefusedError
        append(int.__repr__(x))
    elif isinstance(x, float):
        append(_float_text(x))
    elif isinstance(x, dict):
        _emit_dict(x, append)
    elif isinstance(x, list | tuple):
        _emit_list(x, append)
    else:
        raise _RefusedError


def _encode(value: object) -> str:
    """Return the canonical text of ``value``, which may still hold lone surrogates."""
    if type(value) is str:
        return _escape(value)
    out: list[str] = []
    try:
        if type(value) is dict:
            _emit_dict(value, out.append)
        else:
            _emit_other(value, out.append)
    except Exception as exc:
        _explain(value)  # raises CanonicalizationError naming the path
        # The careful walk found nothing wrong: a getter or __iter__ misbehaved.
        raise CanonicalizationError(
            f"the value could not be canonicalized ({type(exc).__name__}: {exc}); "
            "pass plain dicts, lists, str, int, float, bool and None."
        ) from exc
    return "".join(out)


# ---------------------------------------------------------------------------
# The careful walk: find the first problem and say where it is


def _quote(key: str) -> str:
    """Return ``key`` as a JSON string for a message (escaped only if it has a lone surrogate)."""
    return json.dumps(key, ensure_ascii=_lone_surrogate(key) is not None)


def _key_path(path: str, key: str) -> str:
    """Return the path of ``key`` inside the object at ``path``."""
    if key.isidentifier() and key.isascii():
        return f"{path}.{key}" if path else key
    return f"{path}[{_quote(key)}]"


def _describe(path: str) -> str:
    """Return a path as it reads at the start of a message."""
    return path or "the value"


def _lone_surrogate(text: str) -> str | None:
    """Return the first lone surrogate in ``text`` as U+XXXX, or None when it has none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X}"
    return None


def _explain(value: object) -> None:
    """Raise CanonicalizationError for the first value under ``value`` JCS cannot encode."""
    try:
        _walk(value, "", set())
    except RecursionError:
        raise CanonicalizationError(
            "the value is nested too deeply to canonicalize; flatten the structure."
        ) from None


def _walk(value: object, path: str, active: set[int]) -> None:
    """Check ``value`` (found at ``path``) and everything in it; raise on the first problem."""
    where = _describe(path)
    if isinstance(value, str):
        bad = _lone_surrogate(value)
        if bad is not None:
            raise CanonicalizationError(
                f"{where} contains a lone surrogate ({bad}), which has no UTF-8 form; "
                "fix how the text was decoded or remove the character."
            )
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            # Python refuses to print an int of more than 4,300 digits: say its size instead.
            shown = value if value.bit_length() < 256 else f"a {value.bit_length()}-bit integer"
            raise CanonicalizationError(
                f"{where} is {shown}, outside the range JSON numbers hold exactly "
                f"(±{MAX_SAFE_INTEGER}); store large counters and nanosecond clocks as strings."
            )
        return
    if isinstance(value, float):
        if math.isnan(value):
            raise CanonicalizationError(
                f"{where} is NaN, which JSON cannot represent; "
                "record it as a string or leave it out."
            )
        if math.isinf(value):
            name = "Infinity" if value > 0 else "-Infinity"
            raise CanonicalizationError(
                f"{where} is {name}, which JSON cannot represent; "
                "record it as a string or leave it out."
            )
        return
    if isinstance(value, dict | list | tuple):
        if id(value) in active:
            raise CanonicalizationError(
                f"{where} contains itself, and JSON cannot represent a reference cycle; "
                "pass a copy without the cycle."
            )
        active.add(id(value))
        try:
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise CanonicalizationError(
                            f"{where} has the key {key!r} of type {type(key).__name__}, "
                            "but JSON object keys must be strings; convert the key with str()."
                        )
                    bad = _lone_surrogate(key)
                    if bad is not None:
                        raise CanonicalizationError(
                            f"{where} has the key {_quote(key)} with a lone surrogate "
                            f"({bad}), which has no UTF-8 form; fix how the key was decoded "
                            "or remove the character."
                        )
                    _walk(item, _key_path(path, key), active)
            else:
                for index, item in enumerate(value):
                    _walk(item, f"{path}[{index}]", active)
        finally:
            active.discard(id(value))
        return
    kind = type(value)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    raise CanonicalizationError(
        f"{where} is of type {name}, which JSON cannot represent; convert it to a dict, "
        "list, str, int, float, bool or None."
    )


# ---------------------------------------------------------------------------
# Public encoder


def canonical_text(value: object) -> str:
    """Return the RFC 8785 canonical JSON text of ``value``."""
    text = _encode(value)
    if not text.isascii() and _lone_surrogate(text) is not None:
        _explain(value)
    return text


def canonical_bytes(value: object) -> bytes:
    """Return the RFC 8785 canonical JSON of ``value`` as UTF-8 bytes."""
    text = _encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        _explain(value)
        raise  # unreachable: the walk finds the lone surrogate


# Sorted keys, and no integer beyond 2**53 - 1; subclasses, dataclasses and dates go
# to _not_plain, so only exact JSON types are laid out by orjson.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_STRICT_INTEGER
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)

# Where orjson's output can differ from RFC 8785, found in the output itself:
# - floats: orjson writes 1e20 as 1e+20 and 1e-5 as 1e-5 (ES: 100000000000000000000,
#   0.00001), and 1.0 and -0.0 as they are (ES: 1 and 0). Every such number has a
#   signed exponent or ends in ".0";
# - NaN and the infinities: orjson writes null, JCS refuses them;
# - keys: orjson sorts by code point, JCS by UTF-16 code unit, and the two orders
#   differ only for characters from U+E000 up (UTF-8 lead bytes 0xEE to 0xF4).
# A match inside a string is a false alarm that costs only the slower path. Each
# pattern starts with a literal, which keeps re's search quick.
_INTEGRAL_FLOAT = re.compile(rb"\.0(?![0-9])")
_EXPONENT = re.compile(rb"e[+-][0-9]")
_FROM_U_E000 = re.compile(rb"[\xee-\xf4]")


def _not_plain(value: object) -> object:
    """Send anything but an exact JSON type to the careful encoder."""
    raise TypeError


def plain_canonical_bytes(value: object) -> bytes:
    """Return :func:`canonical_bytes` of ``value``, fast when it holds only exact JSON types.

    For dicts, lists, str, int, float, bool and None the result is identical to
    :func:`canonical_bytes`, refusals included. Meant for pydantic JSON-mode dumps
    and :func:`loads_strict` results: unlike :func:`canonical_bytes`, it writes a
    UUID or an Enum member inside ``value`` as orjson does rather than refusing it.
    """
    try:
        out = orjson.dumps(value, default=_not_plain, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return canonical_bytes(value)  # encodes subclasses, or names what it refuses
    if (
        _INTEGRAL_FLOAT.search(out)
        or _EXPONENT.search(out)
        or b"null" in out
        or (not out.isascii() and _FROM_U_E000.search(out))
    ):
        return canonical_bytes(value)
    return out


# ---------------------------------------------------------------------------
# Strict parser


def _refuse_constant(name: str) -> Any:
    """Refuse the non-standard literals NaN, Infinity and -Infinity."""
    raise CanonicalizationError(
        f"JSON text contains {name}, which is not JSON; "
        "record such values as strings or leave them out."
    )


def _parse_int(text: str) -> int | float:
    """Parse a JSON integer, refusing one that is not exactly a safe integer or a double.

    An integer literal beyond the safe range is accepted only when it is exactly
    how ES6 (and so :func:`canonical_text`) writes a double, such as
    ``100000000000000000000`` for ``1e20``; it is returned as that float, so
    every canonical text reads back. Anything else would silently lose digits.
    """
    if len(text) < 16:  # at most 15 digits: always safe
        return int(text)
    if len(text) <= 22:  # ES6 writes at most 21 integer digits, plus a sign
        value = int(text)
        if _MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        as_float = float(text)
        if _float_text(as_float) == text:
            return as_float
    shown = text if len(text) <= 40 else text[:20] + "..." + text[-5:]
    raise CanonicalizationError(
        f"JSON text contains the integer {shown}, outside the range JSON numbers hold "
        f"exactly (±{MAX_SAFE_INTEGER}); store large counters and nanosecond clocks "
        "as strings."
    )


def _parse_float(text: str) -> float:
    """Parse a JSON number with a fraction or exponent, refusing one too large for a double."""
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else text[:20] + "..." + text[-5:]
        raise CanonicalizationError(
            f"JSON text contains the number {shown}, too large for a double; record it as a string."
        )
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build an object from its pairs, refusing a key that appears twice."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CanonicalizationError(
                    f"JSON text has the key {_quote(key)} twice in one "
                    "object; each key may appear only once."
                )
            seen.add(key)
    return obj


_decoder = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_refuse_constant,
    parse_int=_parse_int,
    parse_float=_parse_float,
    strict=True,
)

# A \u escape of a surrogate, the only way JSON text in valid UTF-8 can carry one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads_strict(data: bytes | str) -> Any:
    """Parse one JSON value, refusing anything RFC 8785 cannot canonicalize."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CanonicalizationError(
                f"JSON text is not valid UTF-8 (byte {exc.start}: {exc.reason}); "
                "send it UTF-8 encoded."
            ) from None
    elif isinstance(data, str):
        text = data
        if not text.isascii():
            bad = _lone_surrogate(text)
            if bad is not None:
                raise CanonicalizationError(
                    f"JSON text contains a lone surrogate ({bad}), which has no UTF-8 form; "
                    "fix how the text was decoded."
                )
    else:
        raise CanonicalizationError(
            f"loads_strict takes bytes or str, not {type(data).__name__}; "
            "pass the JSON text itself."
        )
    if text.startswith("\ufeff"):
        raise CanonicalizationError(
            "JSON text starts with a byte order mark (U+FEFF), which JSON does not allow; "
            "write it as UTF-8 without a BOM."
        )
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            raise CanonicalizationError(
                f"JSON text has data after its value at line {exc.lineno}, column {exc.colno}; "
                "pass exactly one JSON value."
            ) from None
        raise CanonicalizationError(
            f"JSON text is invalid at line {exc.lineno}, column {exc.colno}: {exc.msg}."
        ) from None
    except RecursionError:
        raise CanonicalizationError(
            "JSON text is nested too deeply to parse; flatten the structure."
        ) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _check_escaped_surrogates(value, "")
    return value


def _check_escaped_surrogates(value: Any, path: str) -> None:
    """Refuse a parsed value holding a lone surrogate (from an escaped surrogate)."""
    if isinstance(value, str):
        bad = _lone_surrogate(value)
        if bad is not None:
            raise CanonicalizationError(
                f"JSON text has a lone surrogate escape ({bad}) in {_describe(path)}, "
                "which has no UTF-8 form; escape whole surrogate pairs only."
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            bad = _lone_surrogate(key)
            if bad is not None:
                raise CanonicalizationError(
                    f"JSON text has a lone surrogate escape ({bad}) in a key of "
                    f"{_describe(path)}, which has no UTF-8 form; escape whole surrogate "
                    "pairs only."
                )
            _check_escaped_surrogates(item, _key_path(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_escaped_surrogates(item, f"{path}[{index}]")
