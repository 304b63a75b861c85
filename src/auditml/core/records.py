"""Runtime records of docs/format.md section 6: their bytes, commitments, segments and proofs.

A runtime record says what a deployed model did for one request. Records are
committed to the log in segments: a ``runtime.segment`` event holds the RFC
9162 Merkle root of its records, so one record is proven with two inclusion
proofs, record to segment root, then segment event to checkpoint root::

    commitment(value) = hex SHA-256( salt || JCS(value) )     salt: 32 bytes
    record hash       = SHA-256( 0x00 || JCS(record) )
    segment root      = MTH( JCS(record_0) … JCS(record_{count-1}) )

Everything here is pure: values and bytes in, values out; no database, file,
clock or network. Writing refuses bad input with
:class:`~auditml.errors.InvalidInputError` naming the field and the fix;
verifying raises :class:`~auditml.errors.VerificationError` saying what
failed, and never anything else, whatever it is given.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from json.encoder import encode_basestring as _escape
from types import MappingProxyType
from typing import Any, TypeAlias

import orjson

from auditml.core import merkle
from auditml.core.canonical import MAX_SAFE_INTEGER, canonical_bytes, canonical_text, loads_strict
from auditml.core.sealing import is_sealed
from auditml.errors import AuditmlError, InvalidInputError, VerificationError

__all__ = [
    "COMMITTED",
    "ERROR_MAX",
    "LINE_KEYS",
    "OUTPUT_MAX",
    "RECORD_VERSION",
    "REQUEST_ID_MAX",
    "SALT_SIZE",
    "SEGMENT_ACTION",
    "VALUE_MAX",
    "VERSION_MAX",
    "Entry",
    "RecordEncoder",
    "RecordLike",
    "RuntimeRecord",
    "SegmentVerifier",
    "build_record_proof",
    "check_entry",
    "check_latency",
    "check_output",
    "check_text",
    "check_time",
    "check_values",
    "commitment",
    "entry_line",
    "given_time",
    "log_time",
    "open_commitment",
    "parse_record_line",
    "parse_record_lines",
    "record_bytes",
    "record_hash",
    "record_inclusion_path",
    "segment_data",
    "segment_root",
    "verify_record_proof",
]

RECORD_VERSION = 1
"""The ``v`` of every record of format version 1."""

SALT_SIZE = 32
"""Bytes of random salt drawn for each committed value."""

SEGMENT_ACTION = "runtime.segment"
"""The action of the event that commits a segment of records to the log."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_TIME_EXAMPLE = "2026-12-01T10:00:00.000000Z"
_STREAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_STREAM_MAX = 255
_MAX_NESTING = 64  # object/array levels in output and commitments: their copies recurse
_FIELDS = (
    "v",
    "stream",
    "i",
    "request_id",
    "time",
    "model",
    "version",
    "env",
    "output",
    "latency_ms",
    "error",
    "commitments",
)


# --------------------------------------------------------------------------- the record


def _refuse(name: str, problem: str, fix: str) -> InvalidInputError:
    """Return the error for a bad record field: which field, what is wrong, how to fix it."""
    return InvalidInputError(f"runtime record field {name!r} {problem}; {fix}")


def _show(value: object) -> str:
    """Return a short, always printable description of an untrusted value for a message."""
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        # Python refuses to print an int of more than 4,300 digits.
        return str(value) if value.bit_length() < 128 else f"a {value.bit_length()}-bit integer"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:60]) + f"… ({len(value)} chars)"
    return f"a value of type {type(value).__name__}"


def _is_int(value: object) -> bool:
    """Return whether ``value`` is an int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _freeze(value: Any) -> Any:
    """Return a JSON value with its objects read-only and its arrays as tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    """Return a fresh copy of a JSON value made of dicts and lists (undoes :func:`_freeze`)."""
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(item) for item in value]
    return value


def _check_text(name: str, value: object, fix: str) -> None:
    """Refuse a field that is not a non-blank string."""
    if not isinstance(value, str):
        raise _refuse(name, f"must be a string, not {type(value).__name__}", fix)
    if not value.strip():
        raise _refuse(name, "is empty", fix)


def _check_time(value: object) -> None:
    """Refuse a time that is not RFC 3339 UTC with microseconds and ``Z``, or not a real date."""
    fix = f"write it as RFC 3339 UTC with microseconds and Z, e.g. {_TIME_EXAMPLE!r}"
    if not isinstance(value, str):
        raise _refuse("time", f"must be a string, not {type(value).__name__}", fix)
    if not _TIME.fullmatch(value):
        raise _refuse("time", f"is {_show(value)}, not in the format's time layout", fix)
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise _refuse(
            "time", f"is {_show(value)}, which is not a real date and time", fix
        ) from None


def _check_number(name: str, value: object, fix: str) -> None:
    """Refuse a field that is not a finite, non-negative JSON number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(name, f"must be a number, not {type(value).__name__}", fix)
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(name, f"is {value!r}, which JSON cannot represent", fix)
    if isinstance(value, int) and value > MAX_SAFE_INTEGER:
        raise _refuse(name, f"is {_show(value)}, beyond ±(2**53 - 1)", fix)
    if value < 0:
        raise _refuse(name, f"is {_show(value)}, but it cannot be negative", fix)


def _json_copy(name: str, value: object, example: str) -> dict[str, Any]:
    """Return a fresh dict copy of a JSON object field, refusing anything JCS cannot encode."""
    if not isinstance(value, Mapping):
        raise _refuse(
            name, f"must be an object (a dict), not {type(value).__name__}", f"pass e.g. {example}"
        )
    # A record's own read-only copy (from dataclasses.replace) is thawed first; anything
    # else is checked as given, so a cycle or a stray type is named before it is copied.
    try:
        plain = value if isinstance(value, dict) else _thaw(value)
        # Encoded under its field name, so a refusal names the path, e.g. output.score.
        canonical_bytes({name: plain})
    except RecursionError:
        raise _refuse(name, "contains itself or is nested too deeply", "flatten it") from None
    except InvalidInputError as exc:
        raise InvalidInputError(f"runtime record field {name!r} is not JSON: {exc}") from None
    if _nesting(plain) > _MAX_NESTING:
        raise _refuse(
            name, f"nests objects and arrays more than {_MAX_NESTING} levels deep", "flatten it"
        )
    copy: dict[str, Any] = _thaw(plain)
    return copy


def _nesting(value: object) -> int:
    """Return how deeply objects and arrays nest in an acyclic JSON value (0 for a scalar)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack and deepest <= _MAX_NESTING:  # iterative: no recursion limit to hit
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_commitments(value: dict[str, Any]) -> None:
    """Refuse commitments that are not names mapped to 64 lowercase hex digits."""
    fix = "map each name to commitment(value, salt), 64 lowercase hex digits"
    for name, digest in value.items():
        if not name.strip():
            raise _refuse("commitments", "has an empty name", fix)
        if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            raise _refuse("commitments", f"[{name!r}] is {_show(digest)}", fix)


@dataclass(frozen=True, slots=True, eq=False)
class RuntimeRecord:
    """One runtime record, validated: what a deployed model did for one request.

    Construction refuses a bad field with an InvalidInputError naming it and the
    fix. ``output`` and ``commitments`` are read-only copies of what was given
    (objects as mappings, arrays as tuples); :meth:`as_dict` returns the plain
    JSON value. Two records are equal when their canonical bytes are.
    """

    stream: str
    i: int
    request_id: str
    time: str
    model: str
    version: str
    env: str
    output: Mapping[str, Any]
    latency_ms: int | float
    error: str | None = None
    commitments: Mapping[str, str] = field(default_factory=dict)
    v: int = RECORD_VERSION
    _canonical: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (_is_int(self.v) and self.v == RECORD_VERSION):
            raise _refuse("v", f"is {_show(self.v)}", f"this is format version {RECORD_VERSION}")
        _check_stream(self.stream)
        if not (_is_int(self.i) and 0 <= self.i <= MAX_SAFE_INTEGER):
            raise _refuse(
                "i", f"is {_show(self.i)}", "give the record's index in its segment, 0, 1, 2, …"
            )
        _check_text("request_id", self.request_id, "pass the caller's id for the request")
        _check_time(self.time)
        for name in ("model", "version", "env"):
            _check_text(name, getattr(self, name), "name what served the prediction")
        output = _json_copy("output", self.output, '{"label": "refer", "score": 0.82}')
        _check_number("latency_ms", self.latency_ms, "give the time to answer in milliseconds")
        if self.error is not None:
            _check_text("error", self.error, "give an error code, or None when there was none")
        commitments = _json_copy(
            "commitments", self.commitments, '{"subject": commitment(value, salt)}'
        )
        _check_commitments(commitments)
        plain = self._plain(output, commitments)
        object.__setattr__(self, "output", _freeze(output))
        object.__setattr__(self, "commitments", MappingProxyType(commitments))
        object.__setattr__(self, "_canonical", canonical_bytes(plain))

    def _plain(self, output: dict[str, Any], commitments: dict[str, Any]) -> dict[str, Any]:
        """Return the record as a JSON object, with the given output and commitments."""
        return {
            "v": self.v,
            "stream": self.stream,
            "i": self.i,
            "request_id": self.request_id,
            "time": self.time,
            "model": self.model,
            "version": self.version,
            "env": self.env,
            "output": output,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "commitments": commitments,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeRecord:
        """Validate a record given as a JSON object (every key of the format table, no other)."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(
                f"a runtime record must be an object (a dict), not {type(data).__name__}"
            )
        for name in _FIELDS:
            if name not in data:
                raise _refuse(name, "is missing", f"a version 1 record has {', '.join(_FIELDS)}")
        extra = sorted(str(key) for key in data if key not in _FIELDS)
        if extra:
            raise _refuse(
                extra[0], "is unknown", f"a version 1 record has only {', '.join(_FIELDS)}"
            )
        return cls(**{name: data[name] for name in _FIELDS})

    def as_dict(self) -> dict[str, Any]:
        """Return the record as a fresh JSON object (dicts and lists)."""
        return self._plain(_thaw(self.output), dict(self.commitments))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuntimeRecord):
            return NotImplemented
        return self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)


def _check_stream(value: object) -> None:
    """Refuse a stream name that is not slash-separated names of letters, digits, ``._-``."""
    fix = (
        "name it like 'credit-risk/production': parts of letters, digits, '.', '_' and '-', "
        "each starting with a letter or digit, joined by '/'"
    )
    if not isinstance(value, str):
        raise _refuse("stream", f"must be a string, not {type(value).__name__}", fix)
    if not value:
        raise _refuse("stream", "is empty", fix)
    if len(value) > _STREAM_MAX:
        raise _refuse("stream", f"is {len(value)} characters long, over {_STREAM_MAX}", fix)
    if not _STREAM.fullmatch(value):
        raise _refuse("stream", f"is {_show(value)}, not a valid stream name", fix)


RecordLike: TypeAlias = RuntimeRecord | Mapping[str, Any]
"""A validated record, or a record as a JSON object (hashed exactly as it is)."""


# --------------------------------------------------------------------------- commitments


def _salt(salt: object) -> bytes:
    """Return ``salt`` as bytes if it is exactly SALT_SIZE bytes, else raise InvalidInputError."""
    if not isinstance(salt, bytes | bytearray | memoryview):
        raise InvalidInputError(
            f"a commitment salt must be bytes, not {type(salt).__name__}; "
            f"draw it with secrets.token_bytes({SALT_SIZE})"
        )
    raw = bytes(salt)
    if len(raw) != SALT_SIZE:
        raise InvalidInputError(
            f"a commitment salt must be exactly {SALT_SIZE} bytes, got {len(raw)}; "
            f"draw it with secrets.token_bytes({SALT_SIZE})"
        )
    return raw


def commitment(value: object, salt: bytes) -> str:
    """Return the commitment to ``value``: lowercase hex of SHA-256(salt || JCS(value))."""
    return hashlib.sha256(_salt(salt) + canonical_bytes(value)).hexdigest()


def open_commitment(value: object, salt: bytes, expected: str) -> None:
    """Check that ``value`` and ``salt`` open the commitment ``expected``; raise if they do not."""
    try:
        got = commitment(value, salt)
    except (AuditmlError, RecursionError) as exc:
        raise VerificationError(f"the commitment cannot be opened: {exc}", kind="format") from None
    if not (isinstance(expected, str) and _HEX64.fullmatch(expected)):
        raise VerificationError(
            f"the expected commitment is {_show(expected)}, not 64 lowercase hex digits",
            kind="format",
        )
    if not hmac.compare_digest(got, expected):
        raise VerificationError(
            f"the value and salt give the commitment {got}, not {expected}: "
            "the value or its salt is not the one committed to",
            kind="hash",
        )


# --------------------------------------------------------------------------- records and segments


def record_bytes(record: RecordLike) -> bytes:
    """Return ``JCS(record)``: the bytes hashed, stored and exported for a record."""
    if isinstance(record, RuntimeRecord):
        return record._canonical
    return canonical_bytes(record if isinstance(record, dict) else dict(record))


def record_hash(record: RecordLike) -> str:
    """Return the record hash, hex of SHA-256(0x00 || JCS(record)) (its RFC 9162 leaf hash)."""
    return merkle.leaf_hash(record_bytes(record)).hex()


def _leaf_hashes(records: Sequence[RecordLike]) -> list[bytes]:
    """Return the RFC 9162 leaf hash of each record, in order."""
    return [merkle.leaf_hash(record_bytes(record)) for record in records]


def segment_root(records: Sequence[RecordLike]) -> str:
    """Return the segment root: hex of the RFC 9162 Merkle Tree Hash over JCS(record_i)."""
    return merkle.root_of(_leaf_hashes(records)).hex()


def record_inclusion_path(records: Sequence[RecordLike], index: int) -> list[str]:
    """Return the RFC 9162 inclusion path (hex) of record ``index`` in the segment ``records``."""
    count = len(records)
    if not count:
        raise InvalidInputError("the segment has no records, so no record is in it")
    if not (_is_int(index) and 0 <= index < count):
        raise InvalidInputError(
            f"record index {_show(index)} is not in the segment of {count} records; "
            f"give an index from 0 to {count - 1}"
        )
    leaves = _leaf_hashes(records)

    def node(level: int, start: int) -> bytes:
        """Return the perfect subtree hash over leaves [start << level, (start + 1) << level)."""
        return merkle.perfect_root(leaves[start << level : (start + 1) << level])

    return [h.hex() for h in merkle.inclusion_proof(index, count, node)]


def segment_data(records: Sequence[RuntimeRecord]) -> dict[str, Any]:
    """Return the ``data`` of the ``runtime.segment`` event that commits ``records``.

    The records must be one stream's, numbered ``i = 0 … count-1`` in order.
    ``first_time`` and ``last_time`` are the earliest and latest record times,
    so the segment covers every record's time even when requests finished out
    of order.
    """
    if not records:
        raise InvalidInputError("a segment needs at least one record")
    for position, record in enumerate(records):
        if not isinstance(record, RuntimeRecord):
            raise InvalidInputError(
                f"segment record {position} is a {type(record).__name__}; "
                "validate it first with RuntimeRecord.from_dict"
            )
    stream = records[0].stream
    for position, record in enumerate(records):
        if record.i != position:
            raise InvalidInputError(
                f"segment record {position} has i={record.i}; a segment's records are "
                "numbered 0 … count-1 in order"
            )
        if record.stream != stream:
            raise InvalidInputError(
                f"segment record {position} is of stream {record.stream!r}, not {stream!r}; "
                "a segment holds the records of one stream"
            )
    times = [record.time for record in records]  # one fixed layout: text order is time order
    return {
        "stream": stream,
        "count": len(records),
        "root": segment_root(records),
        "first_time": min(times),
        "last_time": max(times),
    }


def build_record_proof(
    *,
    log: str,
    records: Sequence[RecordLike],
    index: int,
    segment_event: bytes,
    segment_seq: int,
    event_inclusion: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the record proof of record ``index`` of a segment, as docs/format.md lays it out.

    ``segment_event`` is the stored ``JCS`` bytes of the segment event at
    ``segment_seq``, and ``event_inclusion`` its section 3 inclusion proof.
    """
    path = record_inclusion_path(records, index)
    record = records[index]
    return {
        "type": "record",
        "log": log,
        "record": loads_strict(record_bytes(record)),  # exactly what was hashed
        "segment_event": segment_event.decode("utf-8"),
        "segment_seq": segment_seq,
        "index": index,
        "count": len(records),
        "proof": path,
        "event_inclusion": dict(event_inclusion),
    }


# ------------------------------------------------------------------------ writing records fast
#
# A recorder checks what it is given on the caller's thread and does nothing else
# there: the record's bytes, its hash and its commitments are made later, on the
# flushing thread, by RecordEncoder. So every check a record could fail at flush
# time is made here, up front: a record refused late would poison its segment.
# The checks are stricter than the format's (which any verifier accepts) where a
# store would refuse the value: NUL and other control characters in the columns,
# and lengths the indexes hold.

REQUEST_ID_MAX = 512
"""The most characters a request id may have (it is indexed: PostgreSQL caps index rows)."""

VERSION_MAX = 255
"""The most characters a version name may have."""

ERROR_MAX = 1024
"""The most characters an error code may have."""

OUTPUT_MAX = 65_536
"""The most bytes ``JCS(output)`` may have: bulky results belong in ``payload``, committed."""

VALUE_MAX = 16 * 1024 * 1024
"""The most bytes ``JCS(value)`` of a value kept off the log may have."""

COMMITTED = ("subject", "features", "payload")
"""The values a record always keeps off the log, when given."""

_FAST_KEYS = 64  # a flat output of at most this many keys ...
_FAST_CHARS = 8_192  # ... and this many characters of keys and text is surely under OUTPUT_MAX
_OUTPUT_EXAMPLE = '{"label": "refer", "score": 0.82}'
_INF = math.inf

#: What a recorder queues for one record, checked: ``(ns, request_id, version, output,
#: latency_ms, error, time, values)``. ``output`` is a private dict copy of a flat output
#: or the canonical text of any other; ``time`` is None when ``ns`` (the enqueue time, ns
#: since the epoch) is the record's time; ``values`` is None or ``((name, JCS(value)), …)``.
Entry: TypeAlias = tuple[
    int,
    str,
    str,
    "dict[str, Any] | str",
    "int | float",
    "str | None",
    "str | None",
    "tuple[tuple[str, bytes], ...] | None",
]


def check_text(name: str, value: object, limit: int, fix: str) -> str:
    """Return ``value`` if it is printable, non-blank text of at most ``limit`` characters."""
    if (
        type(value) is str
        and 0 < len(value) <= limit
        and value.isprintable()
        and not value.isspace()
    ):
        return value
    _check_text(name, value, fix)
    assert isinstance(value, str)  # _check_text refused anything else
    if len(value) > limit:
        raise _refuse(name, f"is {len(value)} characters long, over {limit}", "shorten it")
    bad = next(char for char in value if not char.isprintable())
    what = "a NUL character" if bad == "\x00" else f"the character U+{ord(bad):04X}"
    raise _refuse(
        name,
        f"contains {what}, which a record column may not hold (control characters, "
        "separators other than the space, and lone surrogates are refused)",
        "remove it",
    )


def check_output(output: object) -> dict[str, Any] | str:
    """Return a private copy of a flat ``output``, or the canonical text of any other.

    Refuses, naming the path, what JCS cannot encode (NaN, infinities, unsafe
    integers, other types, lone surrogates, cycles) and an output over
    :data:`OUTPUT_MAX` bytes. A dict of at most 64 ASCII keys and plain
    scalars is checked in one pass and copied; anything else is encoded now.
    """
    if type(output) is dict and len(output) <= _FAST_KEYS:
        chars = 0
        for key, value in output.items():
            if type(key) is not str or not key.isascii():
                break
            kind = type(value)
            if kind is str:
                if not value.isascii():
                    break
                chars += len(value)
            elif kind is float:
                if value - value != 0.0:  # NaN and the infinities
                    break
            elif kind is int:
                if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                    break
            elif value is not None and kind is not bool:
                break
            chars += len(key)
        else:
            if chars <= _FAST_CHARS:
                return output.copy()
    return _output_text(output)


def _output_text(output: object) -> str:
    """Return the canonical text of any output, or refuse it naming what is wrong."""
    copy = _json_copy("output", output, _OUTPUT_EXAMPLE)
    text = canonical_text(copy)
    size = len(text.encode("utf-8"))
    if size > OUTPUT_MAX:
        raise _refuse(
            "output",
            f"is {size:,} bytes as canonical JSON, over {OUTPUT_MAX:,}",
            "keep the record's output small and pass bulky values as payload=, which is "
            "committed to, not recorded",
        )
    return text


def check_latency(latency_ms: object) -> int | float:
    """Return ``latency_ms`` as an int or float if it is a finite, non-negative number."""
    kind = type(latency_ms)
    if kind is float:
        if 0.0 <= latency_ms < _INF:  # type: ignore[operator]
            return latency_ms  # type: ignore[return-value]
    elif kind is int and 0 <= latency_ms <= MAX_SAFE_INTEGER:  # type: ignore[operator]
        return latency_ms  # type: ignore[return-value]
    _check_number("latency_ms", latency_ms, "give the time to answer in milliseconds")
    # A subclass of int or float (numpy's float64, say) that passed: keep its plain value.
    return float(latency_ms) if isinstance(latency_ms, float) else int(latency_ms)  # type: ignore[call-overload]


def check_time(value: object) -> str:
    """Return ``value`` if it is a record time (RFC 3339 UTC with microseconds and Z)."""
    _check_time(value)
    assert isinstance(value, str)
    return value


def given_time(value: object) -> str:
    """Return a time given for a record in the log's form: as it stands, or taken to UTC.

    A time in the log's form is checked as it stands; any other ISO 8601 time
    with a zone (``2026-12-04T20:00:00Z``, ``…+01:00``) is taken in UTC with
    microseconds. Anything else is refused as :func:`check_time` refuses it.
    """
    try:
        return check_time(value)
    except InvalidInputError as exc:
        if not isinstance(value, str) or len(value) > 64:
            raise
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise exc from None
        found = log_time(when) if when.tzinfo is not None else None
        if found is None:
            raise
        return found


def log_time(when: datetime) -> str | None:
    """Return an aware time in the log's form (UTC, microseconds, Z); None when out of range.

    Out of range: before the year 1000 or after 9999 once in UTC (the log's times
    have a four-digit year).
    """
    try:
        utc = when.astimezone(UTC)
    except OverflowError:
        return None
    return None if utc.year < 1000 else utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_values(
    named: Mapping[str, object], personal: Mapping[str, object] | None
) -> tuple[tuple[str, bytes], ...] | None:
    """Return ``(name, JCS(value))`` of each value kept off the log, or None when there is none.

    ``named`` are ``subject``, ``features`` and ``payload`` (None: not given);
    ``personal`` any other values the caller marks as personal (None is a value there).
    """
    merged = {name: value for name, value in named.items() if value is not None}
    if personal is not None:
        if not isinstance(personal, Mapping):
            raise InvalidInputError(
                f"personal must map value names to values, not {type(personal).__name__}; "
                "pass e.g. personal={'email': 'jo@example.com'}"
            )
        for key in personal:
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"personal names a value by {key!r}, of type {type(key).__name__}; "
                    "name each value kept off the log with a string, e.g. personal={'email': ...}"
                )
            if named.get(key) is not None:
                raise InvalidInputError(
                    f"personal names a value {key!r}, but {key}= is given too and one would "
                    f"hide the other; give the personal value another name"
                )
        merged.update(personal)
    if not merged:
        return None
    held = []
    for name, value in merged.items():
        check_text("commitments", name, VERSION_MAX, "name each value kept off the log")
        try:
            body = canonical_bytes(value)
        except RecursionError:
            raise _refuse(name, "contains itself or is nested too deeply", "flatten it") from None
        except AuditmlError as exc:
            raise InvalidInputError(f"runtime record {name}: {exc}") from None
        if len(body) > VALUE_MAX:
            raise _refuse(
                name, f"is {len(body):,} bytes as canonical JSON, over {VALUE_MAX:,}", "shrink it"
            )
        held.append((name, body))
    return tuple(held)


def check_entry(
    ns: int,
    request_id: object,
    version: object,
    output: object,
    latency_ms: object,
    error: object = None,
    time: object = None,
    values: tuple[tuple[str, bytes], ...] | None = None,
) -> Entry:
    """Return the checked entry of one record's fields, or refuse the first bad one by name.

    :meth:`auditml.runtime.Recorder.record` makes the same checks inline, for speed.
    """
    return (
        ns,
        check_text(
            "request_id", request_id, REQUEST_ID_MAX, "pass the caller's id for the request"
        ),
        check_text("version", version, VERSION_MAX, "name the version that served it"),
        {} if output is None else check_output(output),
        check_latency(latency_ms),
        None
        if error is None
        else check_text("error", error, ERROR_MAX, "give an error code, or None for none"),
        None if time is None else given_time(time),
        values,
    )


#: The keys of a record line of JSON Lines (``auditml runtime ingest``): record()'s arguments.
LINE_KEYS = (
    "request_id",
    "version",
    "output",
    "latency_ms",
    "error",
    "time",
    "subject",
    "features",
    "payload",
    "personal",
)
_LINE_REQUIRED = ("request_id", "version", "latency_ms")


def parse_record_line(line: str | bytes, now_ns: int) -> Entry:
    """Parse and check one JSON Lines record exactly as ``Recorder.record`` checks its arguments.

    A line is a JSON object of :data:`LINE_KEYS` (``request_id``, ``version`` and
    ``latency_ms`` required); a record without ``time`` is stamped ``now_ns``.
    """
    try:
        raw = loads_strict(line)
    except AuditmlError as exc:
        raise InvalidInputError(str(exc)) from None
    except RecursionError:
        raise InvalidInputError("the line is nested too deeply to parse") from None
    if not isinstance(raw, dict):
        raise InvalidInputError(
            f"a record line must be a JSON object, not {_json_kind(raw)}; give e.g. "
            '{"request_id": "r-1", "version": "2", "output": {"label": "ok"}, "latency_ms": 3.5}'
        )
    unknown = sorted(key for key in raw if key not in LINE_KEYS)
    if unknown:
        raise InvalidInputError(
            f"a record line has the unknown key {unknown[0]!r}; its keys are {', '.join(LINE_KEYS)}"
        )
    for key in _LINE_REQUIRED:
        if key not in raw:
            raise _refuse(key, "is missing", f"a record line needs {', '.join(_LINE_REQUIRED)}")
    values = check_values({name: raw.get(name) for name in COMMITTED}, raw.get("personal"))
    return check_entry(
        now_ns,
        raw["request_id"],
        raw["version"],
        raw.get("output"),
        raw["latency_ms"],
        raw.get("error"),
        raw.get("time"),
        values,
    )


def parse_record_lines(lines: Iterable[str | bytes], now_ns: int) -> list[Entry]:
    """Parse every line (blank lines skipped); refuse the first bad one naming its number."""
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(parse_record_line(line, now_ns))
        except InvalidInputError as exc:
            raise InvalidInputError(f"line {number}: {exc}") from None
    return entries


def entry_line(entry: Entry) -> dict[str, Any]:
    """Return the record line of an entry (``time`` always set): how a spool keeps it."""
    ns, request_id, version, output, latency_ms, error, time, values = entry
    line: dict[str, Any] = {
        "request_id": request_id,
        "version": version,
        "output": loads_strict(output) if isinstance(output, str) else output,
        "latency_ms": latency_ms,
        "error": error,
        "time": time if time is not None else RecordEncoder.stamp_of(ns),
    }
    if values:
        line["personal"] = {name: loads_strict(body) for name, body in values}
    return line


def _json_kind(value: object) -> str:
    """Return how JSON names the type of a parsed value."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


# Where orjson's layout of a checked flat output can differ from RFC 8785's: an integral
# float (orjson 2.0, JCS 2) and an exponent (orjson 1e+16, JCS 10000000000000000). A
# match inside a string is a false alarm that only costs the careful encoder.
_NOT_JCS = re.compile(rb"\.0(?![0-9])|[0-9]e[+-][0-9]")
_SORTED = orjson.OPT_SORT_KEYS


def _output_json(output: Any) -> str:
    """Return the canonical text of an output that check_output copied (a flat, ASCII dict).

    orjson lays it out (keys sorted: for ASCII keys, code point order is UTF-16
    order); wherever its numbers could differ from ES6's, canonical_text does.
    """
    raw = orjson.dumps(output, option=_SORTED)
    if _NOT_JCS.search(raw):
        return canonical_text(output)
    return raw.decode()


def _number_text(x: int | float) -> str:
    """Return the ES6 text of a checked number (the layout canonical_text gives it)."""
    if type(x) is int:
        return str(x)
    if 1e-4 <= x < 1e16 and x % 1.0:  # repr is already the ES6 form here
        return repr(x)
    return canonical_text(x)


class RecordEncoder:
    """Lay out the canonical bytes of one stream's records from checked entries.

    The layout is JCS's, fixed once: the record's keys in sorted order, the
    stream's own names escaped once, and each field written as canonical_text
    writes it, so a record's bytes are exactly ``canonical_bytes`` of the record
    (the tests hold it to that), at a fraction of the cost.
    """

    def __init__(self, model: str, env: str) -> None:
        stream = f"{model}/{env}"
        try:
            _check_stream(stream)
        except InvalidInputError as exc:
            raise InvalidInputError(f"model {model!r} with env {env!r}: {exc}") from None
        self.model, self.env, self.stream = model, env, stream
        self._env = _escape(env)
        self._model = _escape(model)
        self._stream = _escape(stream)
        self._second = -1
        self._prefix = ""

    @staticmethod
    def stamp_of(ns: int) -> str:
        """Return the record time of ``ns`` nanoseconds since the epoch (microseconds, Z)."""
        second, micro = divmod(ns // 1000, 1_000_000)
        return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{micro:06d}Z"

    def stamp(self, ns: int) -> str:
        """Return :meth:`stamp_of` ``ns``, formatting each second only once."""
        second, micro = divmod(ns // 1000, 1_000_000)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            self._second = second
        return f"{self._prefix}{micro:06d}Z"

    def segment(
        self, entries: Sequence[Entry], commitments: Mapping[int, str] | None = None
    ) -> tuple[list[tuple[Any, ...]], list[bytes]]:
        """Return the store rows and leaf hashes of a segment of entries, numbered from 0.

        A row is ``(i, request_id, time, model, version, env, latency_ms, error,
        body)``; ``commitments`` gives the canonical text of the commitments of
        the entries that keep values off the log, by index.
        """
        escape, number, canonical, sha256 = _escape, _number_text, _output_json, hashlib.sha256
        env, model, stream = self._env, self._model, self._stream
        plain_model, plain_env = self.model, self.env
        second, prefix = self._second, self._prefix
        rows: list[tuple[Any, ...]] = []
        leaves: list[bytes] = []
        add_row, add_leaf = rows.append, leaves.append
        held = commitments or {}
        for i, (ns, request_id, version, output, latency, error, time, _) in enumerate(entries):
            if time is None:  # stamp() written out: it runs once per record
                micro = ns // 1000
                if micro // 1_000_000 != second:
                    second = micro // 1_000_000
                    prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
                time = "%s%06dZ" % (prefix, micro % 1_000_000)  # noqa: UP031 (faster here)
            body = (
                f'{{"commitments":{held.get(i, "{}") if held else "{}"},"env":{env},"error":'
                f'{"null" if error is None else escape(error)},"i":{i},"latency_ms":'
                f'{latency if type(latency) is int else number(latency)},"model":{model},'
                f'"output":{output if type(output) is str else canonical(output)},"request_id":'
                f'{escape(request_id)},"stream":{stream},"time":"{time}","v":1,'
                f'"version":{escape(version)}}}'
            ).encode()
            add_row((i, request_id, time, plain_model, version, plain_env, latency, error, body))
            add_leaf(sha256(b"\x00" + body).digest())
        self._second, self._prefix = second, prefix
        return rows, leaves


# ------------------------------------------------------------------------ verifying a record proof


def _bad(message: str) -> VerificationError:
    """Return the error for a record proof that is malformed."""
    return VerificationError(f"record proof: {message}", kind="format")


def _fails(message: str) -> VerificationError:
    """Return the error for a well-formed record proof that does not prove what it claims."""
    return VerificationError(f"record proof: {message}", kind="proof")


def _get(obj: Mapping[Any, Any], key: str, where: str) -> Any:
    """Return ``obj[key]``, or raise naming the missing key."""
    if key not in obj:
        raise _bad(f"{where}{key} is missing")
    return obj[key]


def _object(value: object, what: str) -> Mapping[Any, Any]:
    """Return ``value`` if it is a JSON object, else raise naming it."""
    if not isinstance(value, Mapping):
        raise _bad(f"{what} must be an object, not {type(value).__name__}")
    return value


def _index(value: object, what: str, minimum: int = 0) -> int:
    """Return ``value`` if it is an integer in [minimum, 2**53 - 1], else raise naming it."""
    problem = f"{what} must be an integer from {minimum} to 2**53 - 1, got {_show(value)}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(problem)
    if not minimum <= value <= MAX_SAFE_INTEGER:
        raise _bad(problem)
    return value


def _text(value: object, what: str) -> str:
    """Return ``value`` if it is a string, else raise naming it."""
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {_show(value)}")
    return value


def _hash(value: object, what: str) -> bytes:
    """Return a hash given as 64 lowercase hex digits, else raise naming it."""
    if not (isinstance(value, str) and _HEX64.fullmatch(value)):
        raise _bad(f"{what} must be 64 lowercase hex digits, got {_show(value)}")
    return bytes.fromhex(value)


def _path(value: object, what: str) -> list[bytes]:
    """Return an inclusion path given as a list of hex hashes, else raise naming the bad one."""
    if not isinstance(value, list | tuple):
        raise _bad(f"{what} must be a list of hashes, got {_show(value)}")
    if len(value) > 64:  # a tree below 2**64 leaves has paths of at most 64 hashes
        raise _bad(f"{what} has {len(value)} hashes; no inclusion path is longer than 64")
    return [_hash(item, f"{what}[{n}]") for n, item in enumerate(value)]


@dataclass(frozen=True, slots=True)
class _Segment:
    """The fields of a segment event that a record proof relies on."""

    leaf: bytes
    log: str
    seq: int
    action: str
    stream: object
    count: int
    root: bytes


def _segment(value: object) -> _Segment:
    """Parse ``segment_event``: canonical JSON text of an event with a segment's data."""
    text = _text(value, "segment_event")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("segment_event holds a lone surrogate, which has no UTF-8 form") from None
    try:
        event = loads_strict(raw)
        canonical = canonical_text(event) == text
    except (AuditmlError, RecursionError) as exc:
        raise _bad(f"segment_event is not JSON text: {exc}") from None
    if not canonical:
        raise _bad("segment_event is not in canonical (JCS) form, so it is not what the log hashed")
    event = _object(event, "segment_event")
    data = _object(_get(event, "data", "segment_event."), "segment_event.data")
    return _Segment(
        leaf=merkle.leaf_hash(raw),
        log=_text(_get(event, "log", "segment_event."), "segment_event.log"),
        seq=_index(_get(event, "seq", "segment_event."), "segment_event.seq"),
        action=_text(_get(event, "action", "segment_event."), "segment_event.action"),
        stream=_get(data, "stream", "segment_event.data."),
        count=_index(_get(data, "count", "segment_event.data."), "segment_event.data.count", 1),
        root=_hash(_get(data, "root", "segment_event.data."), "segment_event.data.root"),
    )


def verify_record_proof(
    proof: object,
    checkpoint_root: str,
    *,
    origin: str | None = None,
    tree_size: int | None = None,
) -> None:
    """Check a record proof against a trusted checkpoint root (hex); raise if it fails.

    The checks are docs/format.md section 6's: ``index`` is ``record.i``; the
    segment event's ``data.count`` is ``count`` and its ``seq`` is
    ``segment_seq``; the record hash with ``proof`` at ``index`` in a tree of
    ``count`` gives ``data.root``; SHA-256(0x00 || segment_event) is the
    ``leaf_hash`` of ``event_inclusion`` (a section 3 proof for event
    ``segment_seq``), which verifies against ``checkpoint_root``. Besides, the
    proof, its segment event and its event inclusion name one log (``origin``
    when given), the segment event's action is ``runtime.segment`` and its
    stream is the record's, and ``event_inclusion.tree_size`` is ``tree_size``
    when given. Returns None; raises VerificationError (kind ``format`` for a
    malformed proof, ``proof`` for one that does not hold), never anything else.
    """
    try:
        _verify(proof, checkpoint_root, origin, tree_size)
    except VerificationError:
        raise
    except (AuditmlError, ValueError, TypeError, RecursionError) as exc:  # pragma: no cover
        raise _bad(f"it could not be read ({type(exc).__name__}: {exc})") from None


def _verify(proof: object, checkpoint_root: str, origin: str | None, tree_size: int | None) -> None:
    """Do the work of :func:`verify_record_proof`."""
    trusted = _hash(checkpoint_root, "the trusted checkpoint root")
    body = _object(proof, "the proof")
    kind = _get(body, "type", "")
    if kind != "record":
        raise _bad(f"type must be 'record', got {_show(kind)}")
    log = _text(_get(body, "log", ""), "log")
    record = _object(_get(body, "record", ""), "record")
    record_i = _index(_get(record, "i", "record."), "record.i")
    segment = _segment(_get(body, "segment_event", ""))
    segment_seq = _index(_get(body, "segment_seq", ""), "segment_seq")
    index = _index(_get(body, "index", ""), "index")
    count = _index(_get(body, "count", ""), "count", 1)
    path = _path(_get(body, "proof", ""), "proof")
    inclusion = _object(_get(body, "event_inclusion", ""), "event_inclusion")
    try:
        leaf = merkle.leaf_hash(canonical_bytes(record))
    except (AuditmlError, RecursionError) as exc:
        raise _bad(f"record has no canonical form: {exc}") from None

    if index != record_i:
        raise _fails(f"index {index} is not record.i {record_i}")
    if count != segment.count:
        raise _fails(f"count {count} is not the segment event's data.count {segment.count}")
    if segment_seq != segment.seq:
        raise _fails(f"segment_seq {segment_seq} is not the segment event's seq {segment.seq}")
    if segment.action != SEGMENT_ACTION:
        raise _fails(
            f"the segment event's action is {_show(segment.action)}, not 'runtime.segment'"
        )
    if record.get("stream") != segment.stream:
        raise _fails(
            f"record.stream {_show(record.get('stream'))} is not the segment's stream "
            f"{_show(segment.stream)}"
        )
    if origin is not None and log != origin:
        raise _fails(f"log {_show(log)} is not the trusted log {origin!r}")
    if segment.log != log:
        raise _fails(f"log {_show(log)} is not the segment event's log {_show(segment.log)}")
    try:
        merkle.verify_inclusion(leaf, index, count, path, segment.root)
    except VerificationError as exc:
        raise _fails(f"the record is not in the segment (data.root): {exc}") from None
    _verify_event_inclusion(inclusion, segment, log, trusted, tree_size)


def _verify_event_inclusion(
    inclusion: Mapping[Any, Any],
    segment: _Segment,
    log: str,
    trusted: bytes,
    tree_size: int | None,
) -> None:
    """Check the section 3 inclusion proof of the segment event against the trusted root."""
    where = "event_inclusion."
    kind = _get(inclusion, "type", where)
    if kind != "inclusion":
        raise _bad(f"event_inclusion.type must be 'inclusion', got {_show(kind)}")
    inclusion_log = _text(_get(inclusion, "log", where), "event_inclusion.log")
    size = _index(_get(inclusion, "tree_size", where), "event_inclusion.tree_size", 1)
    leaf_index = _index(_get(inclusion, "leaf_index", where), "event_inclusion.leaf_index")
    leaf = _hash(_get(inclusion, "leaf_hash", where), "event_inclusion.leaf_hash")
    root = _hash(_get(inclusion, "root", where), "event_inclusion.root")
    path = _path(_get(inclusion, "proof", where), "event_inclusion.proof")

    if inclusion_log != log:
        raise _fails(f"event_inclusion.log {_show(inclusion_log)} is not log {_show(log)}")
    if leaf_index != segment.seq:
        raise _fails(
            f"event_inclusion.leaf_index {leaf_index} is not the segment event's seq {segment.seq}"
        )
    if leaf != segment.leaf:
        raise _fails(
            f"event_inclusion.leaf_hash {leaf.hex()} is not the hash of segment_event "
            f"{segment.leaf.hex()}"
        )
    if root != trusted:
        raise _fails(
            f"event_inclusion.root {root.hex()} is not the trusted checkpoint root {trusted.hex()}"
        )
    if tree_size is not None and size != tree_size:
        raise _fails(
            f"event_inclusion.tree_size {size} is not the trusted checkpoint size {tree_size}"
        )
    try:
        merkle.verify_inclusion(leaf, leaf_index, size, path, trusted)
    except VerificationError as exc:
        raise _fails(f"the segment event is not in the checkpointed log: {exc}") from None


# -- verifying stored records against their segments ---------------------------------------

#: The columns a stored record row holds, as the store reads them for verify.
_ROW_COLUMNS = ("request_id", "time", "model", "version", "env", "latency_ms", "error")
#: What the fast path reads out of a parsed record to hold against ``row[1:9]``.
_ROW_FIELDS = operator.itemgetter("i", *_ROW_COLUMNS, "commitments")
_FIRST8, _NINTH = operator.itemgetter(slice(0, 8)), operator.itemgetter(8)
_ROW_SLICE = operator.itemgetter(slice(1, 9))
_BODY = operator.itemgetter(9)
_SEG, _INDEX = operator.itemgetter(0), operator.itemgetter(1)
_COL_REQUEST, _COL_TIME, _COL_MODEL, _COL_VERSION, _COL_ENV, _COL_LATENCY, _COL_ERROR = (
    operator.itemgetter(n) for n in range(2, 9)
)
_BYTES = {bytes}
#: Reads a segment's stored rows again (``RECORD_COLUMNS``, in ``i`` order), for diagnosis.
Reread: TypeAlias = Callable[[int], Iterable[Sequence[Any]]]
#: Returns the stored body of the record at ``(seg, i)``, or None when there is none.
BodyAt: TypeAlias = Callable[[object, object], Any]


@dataclass(frozen=True, slots=True)
class _Expected:
    """What a segment event commits its records to."""

    count: int
    root: bytes
    stream: object
    first_time: object
    last_time: object


def _parse_segment(seq: int, body: bytes) -> _Expected:
    """Return what the ``runtime.segment`` event ``seq`` commits to, or raise naming it."""
    try:
        data = loads_strict(body if isinstance(body, bytes) else bytes(body))["data"]
        count, root = data["count"], data["root"]
        if not (_is_int(count) and count >= 1 and isinstance(root, str) and _HEX64.fullmatch(root)):
            raise ValueError(root)
        return _Expected(
            count,
            bytes.fromhex(root),
            data.get("stream"),
            data.get("first_time"),
            data.get("last_time"),
        )
    except (AuditmlError, KeyError, TypeError, ValueError, RecursionError):
        raise VerificationError(
            "its runtime.segment data holds no record count and root", kind="record", seq=seq
        ) from None


def _fast_columns(rows: Sequence[Sequence[Any]], bodies: list[Any]) -> list[Any] | None:
    """Return each row's committed values if every body parses and fits its row, else None.

    A body fits its row when it parses as an object whose index and columns are
    the row's. That is the common case, checked with C-level maps; None sends
    the rows to the slow path, which names the first that fails. The fast path
    reads a key given twice as orjson (and Python's json, and JavaScript) do:
    the last one wins. auditml never writes one; a body that holds one still
    has to match its segment's root.
    """
    if not set(map(type, bodies)) <= {bytes}:  # orjson would read text too
        return None
    try:
        # Streamed: each parsed body is dropped as soon as its fields are out.
        fields = list(map(_ROW_FIELDS, map(orjson.loads, bodies)))
        if list(map(_FIRST8, fields)) != list(map(_ROW_SLICE, rows)):
            return None
        return list(map(_NINTH, fields))
    except (ValueError, TypeError, KeyError, IndexError):  # orjson's errors are these too
        return None


class _Escaped(dict[Any, str]):
    """The JSON text of each distinct text column value (model, env, version, error), made once.

    None is ``null``; a value of another type gets text no record holds, so it never matches.
    """

    def __missing__(self, key: Any) -> str:
        if len(self) >= 4096:
            self.clear()
        value = "null" if key is None else _escape(key) if type(key) is str else "\x00"
        self[key] = value
        return value


_ESCAPED = _Escaped()
#: What follows the commitments of every record, and how every record ends (RecordEncoder).
_MID = ',"env":%s,"error":%s,"i":%d,"latency_ms":%s,"model":%s,"output":'
_TAIL = ',"request_id":%s,"stream":%s,"time":%s,"v":1,"version":%s}'
_OPEN = b'{"commitments":'
_FLOAT, _INT = {float}, {int}
_ONE = 1.0


def _latency_texts(values: list[Any]) -> list[str] | None:
    """Return the ES6 text of each latency, as records hold it, in C-level passes when plain."""
    kinds = set(map(type, values))
    if (
        kinds == _FLOAT
        and min(values) >= 1e-4
        and max(values) < 1e16
        and 0.0 not in map(float.__mod__, values, [_ONE] * len(values))
    ):
        return list(map(float.__repr__, values))  # repr is the ES6 form in this range
    if not kinds <= {int, float}:
        return None
    try:
        return list(map(_number_text, values))
    except (AuditmlError, ValueError, OverflowError):
        return None


def _columns_in_place(rows: Sequence[Sequence[Any]], bodies: list[Any]) -> list[Any] | None:
    """Return each row's commitments (raw bytes) if its columns sit in its body, else None.

    A record's bytes are canonical JCS with its keys in one order, so the text
    each column must have in them is known: the columns from ``env`` to
    ``model`` in one run right after the commitments, and ``request_id`` to
    ``version`` in one run ending the record. Both runs are made from the
    columns and found in place with C-level maps, without parsing the record.
    Inside a JSON string a quote is escaped, so a run can only match the
    record's own members. None sends the rows to the parsing fast path, and
    any body that is not what was written fails its segment's root anyway.
    """
    try:
        if set(map(type, bodies)) != _BYTES or set(map(type, map(_INDEX, rows))) != _INT:
            return None
        latencies = _latency_texts(list(map(_COL_LATENCY, rows)))
        if latencies is None:
            return None
        get = _ESCAPED.__getitem__
        models, envs = list(map(get, map(_COL_MODEL, rows))), list(map(get, map(_COL_ENV, rows)))
        streams = list(
            map(
                get,
                map("%s/%s".__mod__, zip(map(_COL_MODEL, rows), map(_COL_ENV, rows), strict=True)),
            )
        )
        mids = map(
            _MID.__mod__,
            zip(
                envs,
                map(get, map(_COL_ERROR, rows)),
                map(_INDEX, rows),
                latencies,
                models,
                strict=True,
            ),
        )
        tails = map(
            _TAIL.__mod__,
            zip(
                map(_escape, map(_COL_REQUEST, rows)),
                streams,
                map(_escape, map(_COL_TIME, rows)),
                map(get, map(_COL_VERSION, rows)),
                strict=True,
            ),
        )
        if not all(map(bytes.endswith, bodies, map(str.encode, tails))):
            return None
        found = list(map(bytes.find, bodies, map(str.encode, mids)))
        if min(found) < len(_OPEN) or not all(map(bytes.startswith, bodies, repeat(_OPEN))):
            return None
        return list(map(bytes.__getitem__, bodies, map(slice, repeat(len(_OPEN)), found)))
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError):
        return None  # UnicodeEncodeError (a lone surrogate in a column) is a ValueError


class SegmentVerifier:
    """Check stored records against the ``runtime.segment`` events that commit them, streaming.

    Given every segment event (``(seq, body)``, bodies already verified as part
    of the chain), it is fed the stored record rows (``RECORD_COLUMNS``) in
    ``(seg, i)`` order and raises :class:`~auditml.errors.VerificationError`
    (kind ``record``, ``seq`` the segment) at the first record that fails: bytes
    that are not a JSON record, a column that contradicts its body, a record
    missing, added or out of place, a segment whose records do not hash to its
    root, or records claiming a segment that is no segment event of the log.
    It never raises anything else, whatever the rows hold. Only one segment's
    leaf hashes are held at a time.

    The common case runs a fast path (one SHA-256 and one orjson parse per
    record, the columns compared in bulk); a chunk in which anything looks
    wrong is checked again row by row, so the first failing record is named.
    When a segment's root does not match, ``reread`` (when given) reads that
    segment's rows again to name the first record that does not hold up on its own.
    """

    def __init__(
        self,
        segments: Iterable[tuple[int, bytes]],
        *,
        start: int = 0,
        stop: int | None = None,
        head: int | None = None,
        reread: Reread | None = None,
        values: Iterable[Sequence[Sequence[Any]]] | None = None,
        body_at: BodyAt | None = None,
    ) -> None:
        self._expected: dict[int, _Expected] = {}
        for seq, body in segments:
            if start <= seq and (stop is None or seq < stop):
                self._expected[seq] = _parse_segment(seq, body)
        self._pending = sorted(self._expected, reverse=True)
        self._head = head if head is not None else stop
        self._reread = reread
        self._seg: int | None = None
        self._leaves: list[bytes] = []
        self._commitments: list[Any] = []
        self._values = _ValueMerge(values) if values is not None else None
        self._body_at = body_at
        self.records = 0
        self.values = 0

    def feed(self, rows: Sequence[Sequence[Any]]) -> None:
        """Check the next stored record rows (``RECORD_COLUMNS``: seg, i, …, body)."""
        try:
            bodies = list(map(_BODY, rows))
        except (IndexError, TypeError):
            bodies = []
        committed = None
        if bodies:
            committed = _columns_in_place(rows, bodies) or _fast_columns(rows, bodies)
        if committed is None:
            self._feed_slowly(rows)
            return
        segs = list(map(_SEG, rows))
        indexes = list(map(_INDEX, rows))
        at, total = 0, len(rows)
        while at < total:
            if segs[at] != self._seg or self._seg is None:
                self._close()
                self._open(segs[at])
            seg, have = self._seg, len(self._leaves)
            take = min(self._expected[seg].count - have, total - at)  # type: ignore[index]
            end = at + take
            if (
                take <= 0
                or segs[at:end] != [seg] * take
                or indexes[at:end] != list(range(have, have + take))
            ):
                self._feed_slowly(rows[at:])  # names the record out of place
                return
            self._leaves += merkle.leaf_hashes(bodies[at:end])
            self._commitments += committed[at:end]
            self.records += take
            at = end

    def _feed_slowly(self, rows: Iterable[Sequence[Any]]) -> None:
        """Check rows one by one, naming the first that fails (the fast path found one)."""
        for row in rows:
            if len(row) != 10:
                raise VerificationError(
                    f"a stored runtime record row has {len(row)} columns, not 10",
                    kind="record",
                )
            seg, i, body = row[0], row[1], row[9]
            if seg != self._seg or self._seg is None:
                self._close()
                self._open(seg)
            assert self._seg is not None
            self._slot(self._seg, i)
            if not isinstance(body, bytes | bytearray | memoryview):
                raise _fail(self._seg, i, f"its stored bytes are {_kind(body)}, not bytes")
            body = bytes(body)
            self._commitments.append(_check_columns(self._seg, i, row, body))
            self._leaves.append(hashlib.sha256(b"\x00" + body).digest())
            self.records += 1

    def split(self, share: float) -> int:
        """Return the segment seq before which about ``share`` of the committed records lie."""
        total = sum(e.count for e in self._expected.values())
        seen = 0
        for seq in sorted(self._expected):
            if seen >= share * total:
                return seq
            seen += self._expected[seq].count
        return max(self._expected, default=-1) + 1

    @property
    def committed(self) -> int:
        """Return how many records the segments commit to."""
        return sum(e.count for e in self._expected.values())

    def finish(self) -> int:
        """Raise for a segment whose records are missing; return how many records were checked.

        Then the values that did not come in their records' order are checked.
        """
        self._close()
        if self._pending:
            seg = self._pending[-1]
            raise VerificationError(
                f"the segment's {self._expected[seg].count} records are missing from the store",
                kind="record",
                seq=seg,
            )
        self._check_leftover_values()
        return self.records

    def _slot(self, seg: int, i: object) -> None:
        """Raise unless ``i`` is the index of the next record of segment ``seg``."""
        have = len(self._leaves)
        count = self._expected[seg].count
        index = i if isinstance(i, int) and not isinstance(i, bool) else None
        if index == have and have < count:
            return
        if have >= count:
            raise _fail(
                seg, i, f"the segment commits {count} records, and this one is stored beyond them"
            )
        if index is not None and index > have:
            raise _fail(seg, have, f"record {have} is missing (the next stored is {index})")
        if index is not None and 0 <= index < have:
            raise _fail(seg, index, f"record {index} is stored twice")
        raise _fail(
            seg,
            have,
            f"a record stored in its place has the index {_show(i)} (record {have} is missing)",
        )

    def _open(self, seg: object) -> None:
        if not isinstance(seg, int) or isinstance(seg, bool) or seg not in self._expected:
            where = "which is no runtime.segment event of the log"
            if isinstance(seg, int) and self._head is not None and seg >= self._head:
                where = f"beyond the log's last event ({self._head - 1})"
            raise VerificationError(
                f"stored runtime records claim segment {_show(seg)}, {where}: they were "
                "added outside auditml",
                kind="record",
                seq=seg if isinstance(seg, int) and 0 <= seg <= MAX_SAFE_INTEGER else None,
            )
        if self._pending and self._pending[-1] < seg:
            skipped = self._pending[-1]
            raise VerificationError(
                f"the segment's {self._expected[skipped].count} records are missing from the store",
                kind="record",
                seq=skipped,
            )
        if not self._pending or self._pending[-1] != seg:  # pragma: no cover - sorted input
            raise VerificationError(
                "stored runtime records of the segment come out of order",
                kind="record",
                seq=seg,
            )
        self._pending.pop()
        self._seg, self._leaves, self._commitments = seg, [], []

    def _close(self) -> None:
        if self._seg is None:
            return
        seg, leaves = self._seg, self._leaves
        expected = self._expected[seg]
        if len(leaves) != expected.count:
            raise _fail(
                seg,
                len(leaves),
                f"the segment commits {expected.count} records but {len(leaves)} are stored "
                f"(record {len(leaves)} on is missing)",
            )
        if merkle.unchecked_root(leaves) != expected.root:
            raise self._root_fails(seg, expected)
        if self._values is not None:
            self._check_values(seg, self._values.take(seg))
        self._seg, self._leaves, self._commitments = None, [], []

    def _check_values(self, seg: int, rows: list[Sequence[Any]]) -> None:
        """Check the values kept for the records of segment ``seg``, just verified."""
        self.values += len(rows)
        if rows and not _values_fit(rows, list(map(_parsed, self._commitments))):
            bodies = {}
            if self._reread is not None:
                bodies = {row[1]: row[9] for row in self._reread(seg) if len(row) == 10}
            for row in rows:
                _check_value((*row, bodies.get(row[2])))

    def _check_leftover_values(self) -> None:
        """Check the values that came out of their records' order (or name no segment)."""
        if self._values is None:
            return
        for row in self._values.rest():
            self.values += 1
            if len(row) != 6:
                _check_value(row)
            body = self._body_at(row[1], row[2]) if self._body_at is not None else None
            _check_value((*row, body))

    def _root_fails(self, seg: int, expected: _Expected) -> VerificationError:
        """Return the error for a segment whose records do not hash to its root.

        The root alone cannot say which record changed; each record is checked
        on its own (canonical bytes, a valid record of the segment's stream and
        time span) and the first that does not hold up is named.
        """
        why = (
            "its records do not hash to the segment's root: a record was changed, "
            "removed or reordered in the database"
        )
        if self._reread is not None:
            for row in self._reread(seg):
                problem = _record_problem(row, expected)
                if problem is not None:
                    return _fail(seg, row[1], f"{problem}; {why}")
        return VerificationError(
            f"{why}, and each record on its own is well formed, so the log cannot tell "
            f"which of its {expected.count} records it was",
            kind="record",
            seq=seg,
        )


def _parsed(commitments: Any) -> Any:
    """Return a record's commitments as an object: the fast path keeps them as raw bytes."""
    if type(commitments) is not bytes:
        return commitments
    try:
        return orjson.loads(commitments)
    except orjson.JSONDecodeError:
        return None


def _kind(value: object) -> str:
    return "NULL" if value is None else f"a {type(value).__name__}"


def _fail(seg: int, i: object, message: str) -> VerificationError:
    return VerificationError(f"runtime record {_show(i)}: {message}", kind="record", seq=seg)


def _check_columns(seg: int, i: int, row: Sequence[Any], body: bytes) -> Any:
    """Raise unless ``body`` is a JSON record whose index and columns agree with the row.

    Returns the record's ``commitments``.
    """
    try:
        record = loads_strict(body)
    except (AuditmlError, RecursionError):
        raise _fail(seg, i, "its stored bytes are not a JSON record") from None
    if not isinstance(record, dict):
        raise _fail(seg, i, "its stored bytes are not a JSON record") from None
    if not (_is_int(record.get("i")) and record["i"] == i):
        raise _fail(seg, i, f"its bytes say index {_show(record.get('i'))}, not {i}")
    for name, held in zip(_ROW_COLUMNS, row[2:9], strict=True):
        says = record.get(name)
        if name == "latency_ms":
            same = (
                isinstance(says, int | float)
                and not isinstance(says, bool)
                and isinstance(held, int | float)
                and float(held) == float(says)
            )
        else:
            same = type(held) is type(says) and held == says
        if not same:
            raise _fail(
                seg,
                i,
                f"its {name} column holds {_show(held)} but its bytes say {_show(says)}: the "
                "column was changed in the database",
            )
    return record.get("commitments")


def _record_problem(row: Sequence[Any], expected: _Expected) -> str | None:
    """Return what is wrong with one stored record on its own, or None if nothing shows."""
    body = row[9] if len(row) == 10 else None
    if not isinstance(body, bytes | bytearray | memoryview):
        return "its stored bytes are not bytes"
    try:
        record = loads_strict(bytes(body))
        canonical = canonical_bytes(record) == bytes(body)
    except (AuditmlError, RecursionError):
        return "its stored bytes are not a JSON record"
    if not canonical:
        return "its stored bytes are not in canonical (JCS) form, so they are not what was written"
    try:
        RuntimeRecord.from_dict(record)
    except AuditmlError as exc:
        return f"it is no valid record ({exc})"
    if record["stream"] != expected.stream:
        return f"its stream {_show(record['stream'])} is not the segment's {_show(expected.stream)}"
    first, last = expected.first_time, expected.last_time
    if isinstance(first, str) and isinstance(last, str) and not first <= record["time"] <= last:
        return f"its time {record['time']} lies outside the segment's span {first} to {last}"
    return None


# -- verifying the values kept off the log against the records that commit to them -------------

_HEXDIGEST = type(hashlib.sha256()).hexdigest
_COMMITMENT_OF_VALUE, _SEG_OF_VALUE, _INDEX_OF_VALUE = (operator.itemgetter(n) for n in range(3))


class _ValueMerge:
    """The values kept off the log, streamed in their records' order, taken segment by segment.

    A row out of that order, or of no number segment, is kept aside for
    :meth:`rest`; auditml writes them in order, so only a changed table has any.
    Chunks whose segments are ordered numbers are cut with a binary search.
    """

    def __init__(self, chunks: Iterable[Sequence[Sequence[Any]]]) -> None:
        self._chunks = iter(chunks)
        self._rows: Sequence[Sequence[Any]] = []
        self._segs: list[Any] = []
        self._sorted = True
        self._at = 0
        self._aside: list[Sequence[Any]] = []

    def _refill(self) -> bool:
        """Load the next chunk; return False at the end."""
        for rows in self._chunks:
            if not rows:
                continue
            try:
                segs = list(map(_SEG_OF_VALUE, rows))
            except (IndexError, TypeError):
                segs = [None] * len(rows)
            self._sorted = set(map(type, segs)) <= {int} and segs == sorted(segs)
            self._rows, self._segs, self._at = rows, segs, 0
            return True
        return False

    def take(self, seg: int) -> list[Sequence[Any]]:
        """Return the rows of segment ``seg``; rows before it go aside."""
        out: list[Sequence[Any]] = []
        while True:
            if self._at >= len(self._rows) and not self._refill():
                return out
            rows, segs, at = self._rows, self._segs, self._at
            if self._sorted:
                start = bisect.bisect_left(segs, seg, at)
                end = bisect.bisect_right(segs, seg, start)
                self._aside += rows[at:start]
                out += rows[start:end]
                self._at = end
                if end < len(rows):
                    return out
                continue
            while at < len(rows):  # a chunk out of order: row by row
                found = segs[at]
                if found == seg and _is_int(found):
                    out.append(rows[at])
                elif _is_int(found) and found > seg:
                    self._at = at
                    return out
                else:
                    self._aside.append(rows[at])
                at += 1
            self._at = at

    def rest(self) -> Iterable[Sequence[Any]]:
        """Yield the rows set aside, then every row not taken."""
        yield from self._aside
        yield from self._rows[self._at :]
        for rows in self._chunks:
            yield from rows


def _values_fit(rows: Sequence[Sequence[Any]], committed: Sequence[Any]) -> bool:
    """Return whether each value row opens its commitment and its record commits to it.

    A value sealed under its subject's key (:mod:`auditml.core.privacy`) opens
    only with that key: it is opened when read, and by ``verify --deep``.
    """
    try:
        commitments = list(map(_COMMITMENT_OF_VALUE, rows))
        opened = map(
            _HEXDIGEST, map(hashlib.sha256, map(bytes.__add__, _col(rows, 4), _col(rows, 5)))
        )
        if list(opened) != commitments and not _sealed_fit(rows, commitments):
            return False
        indexes = list(map(_INDEX_OF_VALUE, rows))
        if not (
            set(map(type, indexes)) <= {int} and 0 <= min(indexes) <= max(indexes) < len(committed)
        ):
            return False
        records = map(committed.__getitem__, indexes)
        return list(map(dict.get, records, _col(rows, 3))) == commitments
    except (TypeError, IndexError, ValueError):
        return False


def _sealed_fit(rows: Sequence[Sequence[Any]], commitments: list[Any]) -> bool:
    """Return whether every value row that does not open its commitment in clear is sealed."""
    for row, expected in zip(rows, commitments, strict=True):
        salt, value = bytes(row[4]), bytes(row[5])
        if is_sealed(salt, "salt") and is_sealed(value, "value"):
            continue
        if hashlib.sha256(salt + value).hexdigest() != expected:
            return False
    return True


def _col(rows: Sequence[Sequence[Any]], n: int) -> Iterable[Any]:
    return map(operator.itemgetter(n), rows)


def _check_value(row: Sequence[Any]) -> None:
    """Raise unless one value row opens its commitment and its record commits to it."""
    if len(row) != 7:
        raise VerificationError(f"a stored value row has {len(row)} columns, not 7", kind="record")
    commitment, seg, i, name, salt, value, body = row
    seq = seg if _is_int(seg) and 0 <= seg <= MAX_SAFE_INTEGER else None
    what = f"the value {_show(name)} kept for runtime record {_show(i)}"

    def fail(problem: str) -> VerificationError:
        return VerificationError(f"{what}: {problem}", kind="record", seq=seq)

    if not (isinstance(commitment, str) and _HEX64.fullmatch(commitment)):
        raise fail(f"its commitment {_show(commitment)} is not 64 lowercase hex digits")
    sealed_salt = isinstance(salt, bytes | bytearray | memoryview) and is_sealed(
        bytes(salt), "salt"
    )
    sealed_value = isinstance(value, bytes | bytearray | memoryview) and is_sealed(
        bytes(value), "value"
    )
    if not sealed_salt and (
        not isinstance(salt, bytes | bytearray | memoryview) or len(salt) != SALT_SIZE
    ):
        raise fail(f"its salt is {_kind(salt)} of {_size(salt)}, not {SALT_SIZE} bytes")
    if sealed_salt != sealed_value:  # one of the two was replaced
        raise fail(
            f"its value and salt do not open its commitment {commitment}: the value or the "
            "salt was changed in the database"
        )
    # A sealed value opens only with its subject's key: when read, and by verify --deep.
    sealed = sealed_salt and sealed_value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise fail(f"its stored value is {_kind(value)}, not bytes")
    if not sealed and not hmac.compare_digest(
        hashlib.sha256(bytes(salt) + bytes(value)).hexdigest(), commitment
    ):
        raise fail(
            f"its value and salt do not open its commitment {commitment}: the value or the "
            "salt was changed in the database"
        )
    if body is None:
        raise fail(f"no record is stored at segment {_show(seg)}, index {_show(i)}")
    try:
        record = loads_strict(bytes(body) if isinstance(body, bytearray | memoryview) else body)
        committed = record["commitments"]
        held = committed.get(name) if isinstance(name, str) else None
    except (AuditmlError, RecursionError, KeyError, TypeError, AttributeError):
        raise fail("its record's stored bytes hold no commitments") from None
    if held != commitment:
        raise fail(
            f"its record commits {_show(name)} to {_show(held)}, not to this value's "
            f"commitment {commitment}: the value row was moved or relabelled in the database"
        )


def _size(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes | bytearray | memoryview) else "no size"


def record_proof_of_stored(
    *,
    log: str,
    bodies: Sequence[bytes],
    index: int,
    segment_event: bytes,
    segment_seq: int,
    event_inclusion: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the record proof of stored record ``index``, from its segment's stored bytes.

    The same proof as :func:`build_record_proof`, built from exactly the bytes
    the segment root covers: each leaf is hashed as stored, with nothing parsed
    and encoded again but the one record the proof shows.
    """
    count = len(bodies)
    if not (_is_int(index) and 0 <= index < count):
        raise InvalidInputError(
            f"record index {_show(index)} is not in the segment of {count} records"
        )
    leaves = merkle.leaf_hashes(bodies)

    def node(level: int, start: int) -> bytes:
        """Return the perfect subtree hash over leaves [start << level, (start + 1) << level)."""
        return merkle.unchecked_root(leaves[start << level : (start + 1) << level])

    path = merkle.inclusion_proof(index, count, node)
    return {
        "type": "record",
        "log": log,
        "record": loads_strict(bodies[index]),
        "segment_event": segment_event.decode("utf-8"),
        "segment_seq": segment_seq,
        "index": index,
        "count": count,
        "proof": [h.hex() for h in path],
        "event_inclusion": dict(event_inclusion),
    }
