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

import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring as _escape
from types import MappingProxyType
from typing import Any, TypeAlias

import orjson

from auditml.core import merkle
from auditml.core.canonical import MAX_SAFE_INTEGER, canonical_bytes, canonical_text, loads_strict
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
        None if time is None else check_time(time),
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
        _check_stream(stream)
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


class SegmentVerifier:
    """Check stored records against the ``runtime.segment`` events that commit them, streaming.

    Given every segment event (``(seq, body)``, bodies already verified as part
    of the chain), it is fed the stored record rows in ``(seg, i)`` order and
    raises :class:`~auditml.errors.VerificationError` (kind ``record``) at the
    first record that fails: a changed body, a column that contradicts its
    body, a record missing, added or out of place, or a segment whose records
    do not hash to its root. Only one segment's leaf hashes are held at a time.
    """

    def __init__(self, segments: Iterable[tuple[int, bytes]]) -> None:
        self._expected: dict[int, tuple[int, bytes]] = {}
        for seq, body in segments:
            try:
                data = loads_strict(body)["data"]
                self._expected[seq] = (int(data["count"]), bytes.fromhex(data["root"]))
            except (AuditmlError, KeyError, TypeError, ValueError):
                raise VerificationError(
                    "its runtime.segment data holds no count and root", kind="record", seq=seq
                ) from None
        self._pending = sorted(self._expected, reverse=True)
        self._seg: int | None = None
        self._leaves: list[bytes] = []
        self.records = 0

    def feed(self, rows: Iterable[Sequence[Any]]) -> None:
        """Check the next stored record rows (every column of the record table, seg first)."""
        sha256 = hashlib.sha256
        for row in rows:
            seg, i, body = row[0], row[1], row[-1]
            if seg != self._seg:
                self._close()
                self._open(seg)
            if not isinstance(body, bytes | bytearray | memoryview):
                raise self._fail(seg, i, "its stored bytes are not bytes")
            body = bytes(body)
            if i != len(self._leaves):
                missing = len(self._leaves)
                raise self._fail(
                    seg, missing, f"record {missing} is missing (the next stored is {i})"
                )
            self._leaves.append(sha256(b"\x00" + body).digest())
            self._check_columns(seg, i, row, body)
            self.records += 1

    def finish(self) -> int:
        """Raise for a segment whose records are missing; return how many records were checked."""
        self._close()
        if self._pending:
            seg = self._pending[-1]
            raise VerificationError(
                f"the segment's {self._expected[seg][0]} records are missing from the store",
                kind="record",
                seq=seg,
            )
        return self.records

    def _open(self, seg: object) -> None:
        if not isinstance(seg, int) or seg not in self._expected:
            raise VerificationError(
                f"stored runtime records claim segment {seg!r}, which is no runtime.segment "
                "event of the log: they were added outside auditml",
                kind="record",
                seq=seg if isinstance(seg, int) else None,
            )
        if self._pending and self._pending[-1] < seg:
            skipped = self._pending[-1]
            raise VerificationError(
                f"the segment's {self._expected[skipped][0]} records are missing from the store",
                kind="record",
                seq=skipped,
            )
        self._pending.pop()
        self._seg, self._leaves = seg, []

    def _close(self) -> None:
        if self._seg is None:
            return
        seg, leaves = self._seg, self._leaves
        count, root = self._expected[seg]
        if len(leaves) != count:
            raise self._fail(
                seg,
                len(leaves),
                f"the segment commits {count} records but {len(leaves)} are stored "
                f"(record {len(leaves)} on is missing)",
            )
        if merkle.root_of(leaves) != root:
            raise VerificationError(
                "its records do not hash to the segment's root: a record was changed, "
                "removed or reordered in the database",
                kind="record",
                seq=seg,
            )
        self._seg, self._leaves = None, []

    def _check_columns(self, seg: int, i: int, row: Sequence[Any], body: bytes) -> None:
        try:
            record = loads_strict(body)
        except AuditmlError:
            raise self._fail(seg, i, "its stored bytes are not a JSON record") from None
        if not isinstance(record, dict) or record.get("i") != i:
            raise self._fail(seg, i, f"its bytes say index {record.get('i')!r}, not {i}")
        for name, held in zip(_ROW_COLUMNS, row[2:-1], strict=True):
            says = record.get(name)
            if name == "latency_ms" and isinstance(says, int | float) and held is not None:
                same = float(held) == float(says)
            else:
                same = held == says
            if not same:
                raise self._fail(
                    seg,
                    i,
                    f"its {name} column holds {held!r} but its bytes say {says!r}: the column "
                    "was changed in the database",
                )

    @staticmethod
    def _fail(seg: int, i: int, message: str) -> VerificationError:
        return VerificationError(f"runtime record {i}: {message}", kind="record", seq=seg)
