"""Runtime evidence: the runtime records a log commits to, read from their verified bytes.

Views of runtime records (:mod:`auditml.serving`), promotion rules and
monitors (:mod:`auditml.lifecycle`) read records through this module only.
Each reads the ``runtime.segment`` events on the log up to its head and counts
a segment's records only once they hash to the segment's root, so a record
row added, changed or relabelled in the database is never counted: the
columns copied out of a record are indexes, never facts.

:func:`window_samples` is the fast path the monitor uses over a window of
many records: per segment, one SHA-256 per record and the tree built with
C-level maps, then the few fields a window needs read in place from the
records' bytes, column by column (see ``_columns_in_place``), or, for a segment
not laid out as auditml writes records, one orjson parse per record and the
fields taken out in bulk. A segment in which anything looks wrong is read
again by :func:`verified_records`, which names the first record that fails. As
in ``verify``'s fast path, a key given twice in a record is read as orjson
reads it (the last wins); auditml never writes one, and such a record still
has to hash to its segment's root.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import compress, repeat
from json.encoder import encode_basestring as _escape
from operator import and_, itemgetter, methodcaller
from typing import IO, Any

import orjson

from auditml.core import merkle
from auditml.core.canonical import loads_strict
from auditml.core.records import SEGMENT_ACTION, _leaf_hashes_of, _tree_root
from auditml.core.rollout import Sample
from auditml.errors import AuditmlError, VerificationError
from auditml.ledger import Ledger
from auditml.store import Store

__all__ = [
    "PARALLEL_MIN",
    "WindowRequest",
    "checked_record",
    "segments_of",
    "serve_request",
    "verified_records",
    "window_samples",
]


# --------------------------------------------------------------------------- verified records


@dataclass(frozen=True, slots=True)
class _Segment:
    """What a ``runtime.segment`` event on the log commits to."""

    seq: int
    time: str  # when the segment was appended: no record in it can be later
    count: int
    root: bytes
    stream: object
    model: object
    env: object
    first_time: object
    last_time: object


def segments_of(
    ledger: Ledger,
    *,
    model: str | None = None,
    env: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[_Segment]:
    """Return the segment events up to the log's head whose data may hold matching records.

    The events are read through their checked bytes; their data, not the
    record columns, says which model, environment and times a segment covers.
    """
    found = []
    for rec in ledger.events(action=SEGMENT_ACTION, stop=ledger.head().size):
        data = rec.event.data
        try:
            count, root = data["count"], bytes.fromhex(str(data["root"]))
            if not isinstance(count, int) or count < 1 or len(root) != 32:
                raise ValueError(count)
        except (KeyError, TypeError, ValueError):
            raise VerificationError(
                "its runtime.segment data holds no count and root; run `auditml verify`",
                kind="record",
                seq=rec.seq,
            ) from None
        seg = _Segment(
            rec.seq,
            rec.event.time,
            count,
            root,
            data.get("stream"),
            data.get("model"),
            data.get("env"),
            data.get("first_time"),
            data.get("last_time"),
        )
        if model is not None and seg.model != model:
            continue
        if env is not None and seg.env != env:
            continue
        if since is not None and isinstance(seg.last_time, str) and seg.last_time < since:
            continue
        if until is not None and isinstance(seg.first_time, str) and seg.first_time >= until:
            continue
        found.append(seg)
    return found


def _record_fault(seg: int, i: int, problem: str) -> VerificationError:
    return VerificationError(
        f"runtime record {i}: {problem}; run `auditml verify`", kind="record", seq=seg
    )


def checked_record(seg: int, i: int, body: object) -> dict[str, Any]:
    """Return the record held in ``body`` if it has every field a view reads, else raise."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise _record_fault(seg, i, "its bytes are stored as text, not the bytes auditml wrote")
    try:
        record = loads_strict(bytes(body))
    except (AuditmlError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise _record_fault(seg, i, "its stored bytes are not a JSON record")
    for name in ("request_id", "time", "model", "version", "env"):
        if not isinstance(record.get(name), str):
            raise _record_fault(seg, i, f"its {name} is {record.get(name)!r}, not a string")
    latency = record.get("latency_ms")
    if (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not math.isfinite(latency)
    ):
        raise _record_fault(seg, i, f"its latency_ms is {latency!r}, not a number")
    if not (record.get("error") is None or isinstance(record.get("error"), str)):
        raise _record_fault(seg, i, f"its error is {record.get('error')!r}, not a string or null")
    if not isinstance(record.get("output"), dict):
        raise _record_fault(seg, i, "its output is not an object")
    return record


def _within(seg: _Segment, record: Mapping[str, Any]) -> bool:
    """Return whether a record is of the model, env and time span its segment event states."""
    return (
        (seg.model is None or record["model"] == seg.model)
        and (seg.env is None or record["env"] == seg.env)
        and (not isinstance(seg.first_time, str) or record["time"] >= seg.first_time)
        and (not isinstance(seg.last_time, str) or record["time"] <= seg.last_time)
    )


def _close(seg: _Segment, leaves: list[bytes]) -> None:
    """Raise unless the leaves read for ``seg`` are exactly the records its event commits."""
    if len(leaves) != seg.count:
        raise VerificationError(
            f"the segment commits {seg.count} runtime records but {len(leaves)} are stored: "
            "records were removed or added in the database; run `auditml verify`",
            kind="record",
            seq=seg.seq,
        )
    if merkle.root_of(leaves) != seg.root:
        raise VerificationError(
            "its stored runtime records do not hash to the segment's root: a record was "
            "changed, removed or reordered in the database; run `auditml verify`",
            kind="record",
            seq=seg.seq,
        )


def verified_records(
    ledger: Ledger,
    *,
    model: str | None = None,
    env: str | None = None,
    since: str | None = None,
    until: str | None = None,
    only: frozenset[int] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(segment time, record)`` of the committed records that match the filters.

    ``only`` limits the read to the segments of those seqs.

    Records come from their verified bytes, with the time their segment was
    appended (no record in it can have been made later).

    Segment by segment, in log order: a segment's records are yielded only once
    they hash to its root, and a segment whose stored records do not raise
    VerificationError naming it. Filters are applied to the records' bytes.
    """
    segments = segments_of(ledger, model=model, env=env, since=since, until=until)
    if only is not None:
        segments = [seg for seg in segments if seg.seq in only]
    if not segments:
        return
    wanted = {seg.seq: seg for seg in segments}
    with ledger.store.snapshot() as snap:
        if not snap.holds_records():
            raise VerificationError(
                "the log has runtime.segment events but the store has no runtime record table",
                kind="record",
                seq=segments[0].seq,
            )
        current: _Segment | None = None
        leaves: list[bytes] = []
        held: list[tuple[str, dict[str, Any]]] = []
        seen: set[int] = set()
        for seg_no, bodies in snap.bodies_of_segments(ledger.log_id, list(wanted)):
            if current is not None:
                _close(current, leaves)
                yield from held
            current, leaves, held = wanted[seg_no], [], []
            seen.add(current.seq)
            for i, body in enumerate(bodies):
                record = checked_record(current.seq, i, body)
                leaves.append(merkle.leaf_hash(bytes(body)))
                said, stream = record.get("i"), record.get("stream")
                if said != i or stream != current.stream:
                    raise _record_fault(
                        current.seq,
                        i,
                        f"the record stored in its place says it is record {said!r} of "
                        f"{stream!r}: the segment's records ({current.stream!r}) are missing, "
                        "added or out of order in the store",
                    )
                if not _within(current, record):
                    raise _record_fault(
                        current.seq,
                        i,
                        f"it is of {record['model']!r} in {record['env']!r} at {record['time']}, "
                        f"outside what its segment event says it holds ({current.model!r} in "
                        f"{current.env!r}, {current.first_time} to {current.last_time})",
                    )
                if (
                    (model is None or record["model"] == model)
                    and (env is None or record["env"] == env)
                    and (since is None or record["time"] >= since)
                    and (until is None or record["time"] < until)
                ):
                    held.append((current.time, record))
        if current is not None:
            _close(current, leaves)
            yield from held
    if len(seen) != len(wanted):
        missing = min(set(wanted) - seen)
        raise VerificationError(
            f"the segment's {wanted[missing].count} runtime records are missing from the "
            "store; run `auditml verify`",
            kind="record",
            seq=missing,
        )


# --------------------------------------------------------------------------- window samples

_FIELDS = itemgetter(
    "i", "stream", "model", "env", "time", "version", "error", "latency_ms", "output"
)
_NUMBERS = {int, float}


def _score_array(found: list[Any]) -> array[float]:
    """Return the numbers among one field's values (text, true/false and none are no score)."""
    if not set(map(type, found)) <= _NUMBERS:
        found = [v for v in found if type(v) in _NUMBERS]
    return array("d", found)


_ERRORS = {str, type(None)}


def _sample_of(samples: dict[str, Sample], version: str) -> Sample:
    found = samples.get(version)
    if found is None:
        found = samples[version] = Sample(0, 0, array("d"), {})
    return found


def _add(
    sample: Sample, error: object, latency: float, output: Mapping[str, Any], fields: Sequence[str]
) -> None:
    sample.requests += 1
    if error is not None:
        sample.errors += 1
    assert sample.latency is not None and sample.scores is not None
    sample.latency.append(latency)
    for name in fields:
        value = output.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            sample.scores.setdefault(name, array("d")).append(float(value))


def _merge(into: Sample, part: Sample) -> None:
    assert into.latency is not None and into.scores is not None
    into.requests += part.requests
    into.errors += part.errors
    into.latency.extend(part.latency or array("d"))
    for name, values in (part.scores or {}).items():
        into.scores.setdefault(name, array("d")).extend(values)


def _pick(column: Sequence[Any], rows: list[int] | None) -> Sequence[Any]:
    """Return the entries of ``column`` at ``rows`` (None: all of it), with a C-level getter."""
    if rows is None:
        return column
    if len(rows) == 1:
        return (column[rows[0]],)
    return itemgetter(*rows)(column) if rows else ()


def _part(
    errors: Sequence[Any], latencies: Sequence[Any], outputs: Sequence[Any], fields: Sequence[str]
) -> Sample | None:
    """Return one version's sample from its columns, or None if a field is not as a view reads."""
    if not (
        set(map(type, errors)) <= _ERRORS
        and set(map(type, latencies)) <= _NUMBERS
        and set(map(type, outputs)) <= {dict}
    ):
        return None
    part = Sample(len(errors), len(errors) - list(errors).count(None), array("d", latencies), {})
    assert part.scores is not None
    for name in fields:
        found = list(map(methodcaller("get", name), outputs))
        part.scores[name] = _score_array(found)
    return part


def _fast_segment(
    seg: _Segment,
    bodies: list[Any],
    *,
    model: str,
    env: str,
    since: str,
    until: str,
    versions: frozenset[str],
    fields: Sequence[str],
    samples: dict[str, Sample],
) -> bool:
    """Add a segment's matching records to ``samples``; False (nothing added) if it needs a look.

    True means the records hash to the segment's root, and every record was
    read (in place, else parsed whole) and fits its place in the segment and its event.
    """
    if len(bodies) != seg.count or not set(map(type, bodies)) <= {bytes}:
        return False
    if _tree_root(_leaf_hashes_of(bodies)) != seg.root:
        return False
    columns = _columns_in_place(seg, bodies, model=model, env=env)
    if columns is None:  # not laid out as auditml writes records: parse each one whole
        return _parsed_segment(
            seg,
            bodies,
            model=model,
            env=env,
            since=since,
            until=until,
            versions=versions,
            fields=fields,
            samples=samples,
        )
    return _add_columns(
        seg, columns, since=since, until=until, versions=versions, fields=fields, samples=samples
    )


# The in-place read. A record as auditml writes it (RecordEncoder, FORMAT.md) is JCS:
#
#   {"commitments":{},"env":E,"error":X,"i":N,"latency_ms":L,"model":M,"output":{...},
#    "request_id":R,"stream":S,"time":T,"v":1,"version":V}
#
# Split at each `,"`, such a record falls into pieces `key":value` (an output object
# falls into several, joined back). A segment is read in place only if each record has
# the same number of pieces and each piece, column by column, is its key and exactly
# one JSON value as orjson reads it: the record is then, byte for byte, the object
# {"commitments":{},"env":E,...,"version":V} with those values, whatever else its bytes
# could have been, and a parse of the whole record gives the same values. A segment any
# of whose records reads otherwise (values kept off the log in commitments, a key out of
# place, whitespace, a piece cut inside a string) is parsed whole, record by record.
_SPLIT = b',"'
_OPEN = b'{"commitments":{}'
_NULL = b'error":null'
_ENDS = 11  # pieces of a record besides its output's
_PLACES: list[bytes] = []  # the piece `i":N` of record N


def _places(n: int) -> list[bytes]:
    """Return the pieces ``i":0`` … ``i":n-1``."""
    if len(_PLACES) < n:
        _PLACES.extend(b'i":%d' % k for k in range(len(_PLACES), n))
    return _PLACES[:n]


def _values(
    column: list[bytes], key: bytes, close: bytes = b"", *, strings: bool = True
) -> list[Any] | None:
    """Return the JSON value in each piece ``key":VALUE`` + ``close`` of ``column``, else None.

    The pieces are joined at ``,"`` (which none holds), so the one count says
    every piece starts with ``key":`` and ends with ``close``. orjson then reads
    the values as one array, which must hold exactly one per piece, and each
    piece must be exactly its value:

    - ``strings``: every value is a string written plainly (no escape, no space
      around it), so the array's text is its n strings and n-1 commas; a comma
      that separates two strings there is followed by a quote, which no piece
      holds after a comma: each separator is a join, each piece one string;
    - numbers (``strings`` false; the caller checks every value is a number):
      an array of numbers only has no comma but its separators, so its n
      values need all n-1 joins and no comma within a piece.
    """
    head, n = key + b'":', len(column)
    text = _SPLIT.join(column)
    if not (text.startswith(head) and text.endswith(close)):
        return None
    if text.count(close + _SPLIT + head) != n - 1:
        return None
    inner = text[len(head) : len(text) - len(close)].replace(close + _SPLIT + head, b",")
    if strings and b"\\" in inner:
        return _each(column, head, close)
    try:
        found = orjson.loads(b"[" + inner + b"]")
    except (ValueError, RecursionError):
        return _each(column, head, close) if strings else None
    if type(found) is not list or len(found) != n:
        return _each(column, head, close) if strings else None
    if strings and (
        set(map(type, found)) != {str}
        or len(inner) != len("".join(found).encode()) + 3 * n - 1  # nothing but the strings
    ):
        return _each(column, head, close)
    return found


def _each(column: list[bytes], head: bytes, close: bytes) -> list[str] | None:
    """Return the string in each piece ``head`` + VALUE + ``close``, each read by itself."""
    try:
        found = list(
            map(
                orjson.loads,
                map(bytes.__getitem__, column, repeat(slice(len(head), -len(close) or None))),
            )
        )
    except (ValueError, RecursionError):
        return None
    return found if set(map(type, found)) == {str} else None


#: Deleted from a column's text, it must lose nothing: no control character, space,
#: ``!`` (so that `"` ends each value below every character it holds) or backslash.
_UNPLAIN = bytes(range(0x22)) + b"\\"


def _plain(column: list[bytes], key: bytes, close: bytes = b"") -> bool:
    """Return whether each piece is ``key":"TEXT"`` + ``close``, TEXT plain ASCII.

    Plain: no quote, backslash, control character, space or ``!``: each piece is
    then exactly one JSON string, whose value is TEXT as it stands, and the
    pieces sort as their values do. Checked on the column's text, not piece by piece.
    """
    head, end, n = key + b'":"', b'"' + close, len(column)
    text = _SPLIT.join(column)
    return (
        text.startswith(head)
        and text.endswith(end)
        and text.count(end + _SPLIT + head) == n - 1  # every piece: head … end
        and text.count(b'"') == 4 * n - 1  # three a piece, one a join: none in TEXT
        and text.isascii()
        and len(text.translate(None, _UNPLAIN)) == len(text)
    )


@dataclass(frozen=True, slots=True)
class _Columns:
    """The fields a window read takes from each record of a segment, in record order."""

    low: str  # the earliest and latest record time
    high: str
    times: list[str] | None  # None: read from time_pieces when needed
    time_pieces: list[bytes]
    labels: list[Any]  # each record's version, or (plain) its piece `version":"V"}`
    plain: bool
    failed: list[bool] | None  # whether each record's error is not null; None: none is
    latencies: list[float]
    outputs: list[dict[str, Any]]

    def label(self, version: str) -> Any:
        """Return what ``labels`` holds for the records of ``version``."""
        if not self.plain:
            return version
        try:
            return b'version":' + _escape(version).encode() + b"}"
        except UnicodeEncodeError:
            return None


def _columns_in_place(
    seg: _Segment, bodies: list[bytes], *, model: str, env: str
) -> _Columns | None:
    """Return the fields of a segment's records read in place, or None if one reads otherwise.

    Every record must be laid out as auditml writes it, hold index ``i`` in
    its place, the segment's stream, ``model`` and ``env``; its strings, numbers
    and output object are read by orjson (so they are exactly what a parse of
    the whole record gives). Nothing is taken on trust: any doubt returns None.
    """
    n = len(bodies)
    if not isinstance(seg.stream, str):
        return None
    if not all(map(bytes.startswith, bodies, repeat(_OPEN))):
        return None
    pieces = _SPLIT.join(bodies).split(_SPLIT)
    k, odd = divmod(len(pieces), n)  # pieces per record
    outs = k - _ENDS  # pieces of the output object
    if odd or outs < 1:
        return None
    # Each body starts with `{"commitments":{}`, and of the pieces checked below only
    # the first of a record can (inside a JSON object, a piece after `,"` starts with a
    # key's text or with what follows a string): so the bodies are cut where the
    # records are, k pieces each.
    try:
        env_piece = b'env":' + _escape(env).encode()
        model_piece = b'model":' + _escape(model).encode()
        stream_piece = b'stream":' + _escape(seg.stream).encode()
    except UnicodeEncodeError:  # a lone surrogate: auditml writes no such record
        return None
    constant = (
        (0, _OPEN),
        (1, env_piece),
        (5, model_piece),
        (k - 4, stream_piece),
        (k - 2, b'v":1'),
    )
    if any(pieces[at::k].count(piece) != n for at, piece in constant):
        return None
    if pieces[3::k] != _places(n):
        return None
    errors = pieces[2::k]
    failed: list[bool] | None = None
    if errors.count(_NULL) != n:
        failed = list(map(_NULL.__ne__, errors))
        if _values(list(compress(errors, failed)), b"error") is None:
            return None
    latencies = _values(pieces[4::k], b"latency_ms", strings=False)
    if latencies is None or not set(map(type, latencies)) <= _NUMBERS:
        return None
    if not (math.isfinite(min(latencies)) and math.isfinite(max(latencies))):
        return None
    # The outputs: each record's pieces joined back at `,"` where they were cut, and the
    # records' outputs read as one array, a string no one can have written between two
    # (drawn now): n-1 of them read back in their places means each output is one object.
    head = b'output":'
    firsts = pieces[6::k]
    text = _SPLIT.join(firsts)
    if not text.startswith(head) or text.count(_SPLIT + head) != n - 1:
        return None  # now every record's first output piece starts with `output":`
    if outs > 1:
        joined = [b""] * (n * outs)
        for j in range(outs):
            joined[j::outs] = pieces[6 + j :: k]
        text = _SPLIT.join(joined)
    mark = os.urandom(16).hex()
    between = b',"' + mark.encode() + b'",'
    try:
        found = orjson.loads(b"[" + text[len(head) :].replace(_SPLIT + head, between) + b"]")
    except (ValueError, RecursionError):
        return None
    if type(found) is not list or len(found) != 2 * n - 1 or found[1::2].count(mark) != n - 1:
        return None
    outputs = found[0::2]
    if set(map(type, outputs)) != {dict}:
        return None
    requests = pieces[k - 5 :: k]
    if not _plain(requests, b"request_id") and _values(requests, b"request_id") is None:
        return None
    time_pieces = pieces[k - 3 :: k]
    times: list[str] | None = None
    if _plain(time_pieces, b"time"):
        low = min(time_pieces)[len(b'time":"') : -1].decode()
        high = max(time_pieces)[len(b'time":"') : -1].decode()
    else:
        times = _values(time_pieces, b"time")
        if times is None:
            return None
        low, high = min(times), max(times)
    labels: list[Any] | None = pieces[k - 1 :: k]
    plain = _plain(pieces[k - 1 :: k], b"version", b"}")
    if not plain:
        labels = _values(pieces[k - 1 :: k], b"version", b"}")
    if labels is None:
        return None
    return _Columns(low, high, times, time_pieces, labels, plain, failed, latencies, outputs)


def _add_columns(
    seg: _Segment,
    columns: _Columns,
    *,
    since: str,
    until: str,
    versions: frozenset[str],
    fields: Sequence[str],
    samples: dict[str, Sample],
) -> bool:
    """Add the records read in place that match to ``samples``; False if one is out of its span.

    The rows of a version (within the window) are picked with C-level maps.
    """
    low, high = columns.low, columns.high
    if (isinstance(seg.first_time, str) and low < seg.first_time) or (
        isinstance(seg.last_time, str) and high > seg.last_time
    ):
        return False
    inside: list[bool] | None = None
    if not (low >= since and high < until):
        times = columns.times or _values(columns.time_pieces, b"time")
        if times is None:
            return False
        inside = list(map(and_, map(since.__le__, times), map(until.__gt__, times)))
    labels = columns.labels
    present = set(labels) if inside is None else set(compress(labels, inside))
    wanted = {columns.label(v): v for v in versions}
    wanted.pop(None, None)
    if not present & wanted.keys():
        return True
    scores = {name: list(map(methodcaller("get", name), columns.outputs)) for name in fields}
    everyone = inside is None and len(present) == 1
    for label in present & wanted.keys():
        version = wanted[label]
        rows: list[bool] | None = None
        if not everyone:
            rows = list(map(label.__eq__, labels))
            if inside is not None:
                rows = list(map(and_, rows, inside))
        latency = array(
            "d", columns.latencies if rows is None else compress(columns.latencies, rows)
        )
        failed = columns.failed
        errors = 0 if failed is None else sum(failed if rows is None else compress(failed, rows))
        part = Sample(len(latency), errors, latency, {})
        assert part.scores is not None
        for name in fields:
            found = scores[name] if rows is None else list(compress(scores[name], rows))
            part.scores[name] = _score_array(found)
        _merge(_sample_of(samples, version), part)
    return True


def _parsed_segment(
    seg: _Segment,
    bodies: list[Any],
    *,
    model: str,
    env: str,
    since: str,
    until: str,
    versions: frozenset[str],
    fields: Sequence[str],
    samples: dict[str, Sample],
) -> bool:
    """Add a segment's matching records, each parsed whole; False (nothing added) if odd.

    True means every record parsed and fits its place in the segment and its
    event (the caller has held the records to the segment's root).
    """
    try:
        columns = list(zip(*map(_FIELDS, map(orjson.loads, bodies)), strict=True))
    except (ValueError, TypeError, KeyError):
        return False
    indexes, streams, models, envs, times, names, errors, latencies, outputs = columns
    if list(indexes) != list(range(seg.count)) or set(streams) != {seg.stream}:
        return False
    if not set(models) <= ({seg.model} if seg.model is not None else {model}):
        return False
    if not set(envs) <= ({seg.env} if seg.env is not None else {env}):
        return False
    if not set(map(type, times)) | set(map(type, names)) <= {str}:
        return False
    low, high = min(times), max(times)
    if (isinstance(seg.first_time, str) and low < seg.first_time) or (
        isinstance(seg.last_time, str) and high > seg.last_time
    ):
        return False
    if set(models) != {model} or set(envs) != {env}:
        return True  # nothing of this model and environment (the event said otherwise)
    inside = None if low >= since and high < until else [since <= t < until for t in times]
    present = set(names) if inside is None else {n for n, k in zip(names, inside, strict=True) if k}
    found: dict[str, Sample] = {}
    for version in versions & present:
        rows = (
            None
            if inside is None and len(present) == 1
            else [k for k, n in enumerate(names) if n == version and (inside is None or inside[k])]
        )
        part = _part(_pick(errors, rows), _pick(latencies, rows), _pick(outputs, rows), fields)
        if part is None:
            return False  # nothing of this segment was added: the careful read adds it all
        found[version] = part
    for version, part in found.items():
        _merge(_sample_of(samples, version), part)
    return True


#: A window of at least this many segments is read by two processes (one a helper).
PARALLEL_MIN = 200


@dataclass(frozen=True)
class WindowRequest:
    """What a window read needs besides its segments: the filters and the fields to keep."""

    model: str
    env: str
    since: str
    until: str
    versions: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass
class _Read:
    """What reading some segments found: samples, segments read, segments that need a look."""

    samples: dict[str, Sample]
    seen: set[int]
    slow: list[int]


def _read_into(
    snap: Any, log_id: int, segments: Sequence[_Segment], ask: WindowRequest, found: _Read
) -> None:
    """Read the stored records of ``segments`` on the fast path into ``found``, in ``snap``."""
    wanted = frozenset(ask.versions)
    by_seq = {seg.seq: seg for seg in segments}
    for seg_no, bodies in snap.bodies_of_segments(log_id, list(by_seq)):
        found.seen.add(seg_no)
        ok = _fast_segment(
            by_seq[seg_no],
            bodies,
            model=ask.model,
            env=ask.env,
            since=ask.since,
            until=ask.until,
            versions=wanted,
            fields=ask.fields,
            samples=found.samples,
        )
        if not ok:
            found.slow.append(seg_no)


def _no_table(seg: _Segment) -> VerificationError:
    return VerificationError(
        "the log has runtime.segment events but the store has no runtime record table",
        kind="record",
        seq=seg.seq,
    )


def _read_segments(
    store: Store, log_id: int, segments: Sequence[_Segment], ask: WindowRequest
) -> _Read:
    """Read the stored records of ``segments`` on the fast path, in one snapshot."""
    found = _Read({}, set(), [])
    if not segments:
        return found
    with store.snapshot() as snap:
        if not snap.holds_records():
            raise _no_table(segments[0])
        _read_into(snap, log_id, segments, ask, found)
    return found


#: Segments this process reads between two looks at the helper, and that it hands the
#: helper at a time (two at once, so the helper never waits for this process to look).
OWN_STEP = 4
HELPER_STEP = 8


def window_samples(
    ledger: Ledger,
    *,
    model: str,
    env: str,
    since: str,
    until: str,
    versions: Sequence[str],
    fields: Sequence[str] = (),
    parallel: bool | None = None,
) -> dict[str, Sample]:
    """Return, per version asked for, its verified runtime records in ``[since, until)``.

    Each :class:`~auditml.core.rollout.Sample` holds the requests, errors,
    latencies and the numeric output ``fields`` of one version's records of
    ``model`` in ``env``, read from records that hash to their segments' roots.
    A segment whose stored records do not hold up raises VerificationError.
    With ``parallel`` (the default for a window of ``PARALLEL_MIN`` segments or
    more on a machine with two cores), a helper process reads segments too:
    this process reads from the first segment on and hands the helper the
    last ones, a few at a time, until they meet, so neither waits for the other
    (a helper slow to start simply gets less). Whatever the helper was handed
    and did not answer, this process reads.
    """
    ask = WindowRequest(model, env, since, until, tuple(versions), tuple(fields))
    samples: dict[str, Sample] = {v: Sample(0, 0, array("d"), {}) for v in versions}
    segments = segments_of(ledger, model=model, env=env, since=since, until=until)
    if not segments:
        return samples
    by_seq = {seg.seq: seg for seg in segments}
    if parallel is None:
        parallel = len(segments) >= PARALLEL_MIN and (os.cpu_count() or 1) > 1
    helper = _Helper.start(ledger, segments, ask) if parallel and len(segments) > 1 else None
    parts = [_Read({}, set(), [])]
    try:
        with ledger.store.snapshot() as snap:
            if not snap.holds_records():
                raise _no_table(segments[0])
            front, back = 0, len(segments)
            while front < back:
                if helper is not None:
                    back = helper.hand(front, back)
                step = min(front + OWN_STEP, back)
                if step > front:
                    _read_into(snap, ledger.log_id, segments[front:step], ask, parts[0])
                front = step
            if helper is not None:
                theirs, handed = helper.finish(), helper.handed
                helper = None
                if theirs is None:  # the helper broke: read what it was handed here
                    theirs = _Read({}, set(), [])
                    for low, high in handed:
                        _read_into(snap, ledger.log_id, segments[low:high], ask, theirs)
                parts.append(theirs)
    finally:
        if helper is not None:  # this process failed (or was interrupted) while it read
            helper.stop()
    seen = set().union(*(part.seen for part in parts))
    if len(seen) != len(by_seq):
        missing = min(set(by_seq) - seen)
        raise VerificationError(
            f"the segment's {by_seq[missing].count} runtime records are missing from the "
            "store; run `auditml verify`",
            kind="record",
            seq=missing,
        )
    for part in parts:
        for version, sample in part.samples.items():
            _merge(_sample_of(samples, version), sample)
    wanted = frozenset(versions)
    for seq in sorted(s for part in parts for s in part.slow):
        # The careful reader names the first record that fails, or reads a segment
        # that only looked odd (e.g. a record of another model it may hold).
        seg = by_seq[seq]
        for _, record in _verified_segment(ledger, seg, model, env, since, until):
            if record["version"] in wanted:
                _add(
                    _sample_of(samples, record["version"]),
                    record["error"],
                    float(record["latency_ms"]),
                    record["output"],
                    fields,
                )
    return samples


# --------------------------------------------------------------------------- the helper process


class _Helper:
    """A helper process reading the segments this process hands it, from the last ones down.

    The exchange, one line each way at a time: the helper says ``ready``, then
    ``done`` after each range it was handed; this process answers with the
    next range (``LOW HIGH``, indexes into the segment list) or ``end``. After
    ``end`` the helper answers with what it read (see :func:`serve_request`).
    Where this process cannot look at the helper's lines without waiting (no
    non-blocking pipes), it hands the helper the later half at once.
    """

    def __init__(self, proc: subprocess.Popen[bytes], size: int) -> None:
        self.proc = proc
        self.handed: list[tuple[int, int]] = []
        self.size = size
        self.ended = False
        self.broken = False
        self.waiting = 0  # ranges handed and not yet done
        self.said = b""
        self.ready = False
        self.writer: threading.Thread | None = None
        assert proc.stdout is not None
        self.out = proc.stdout.fileno()
        try:
            os.set_blocking(self.out, False)
            self.polled = True
        except (OSError, AttributeError, ValueError):
            self.polled = False

    @classmethod
    def start(
        cls, ledger: Ledger, segments: Sequence[_Segment], ask: WindowRequest
    ) -> _Helper | None:
        """Start a helper over ``segments``, or return None if it cannot start.

        The request is written by a thread: it is larger than a pipe holds, and
        the helper reads it only once it has started, which this process does not wait for.
        """
        proc = _spawn(ledger, segments, ask)
        if proc is None:
            return None
        if proc.stdin is None or proc.stdout is None:
            proc.kill()
            proc.wait()
            return None
        helper = cls(proc, len(segments))
        helper.writer = threading.Thread(
            target=helper._write, args=(_request(ledger, segments, ask),), daemon=True
        )
        helper.writer.start()
        return helper

    def _write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.broken = True

    def _send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        if self.writer is not None:
            self.writer.join()  # the request goes first
            self.writer = None
        try:
            self.proc.stdin.write(line + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.broken = True

    def _give(self, front: int, back: int, step: int) -> int:
        """Hand the helper up to ``step`` segments below ``back`` (none of this process's).

        Ranges shrink as the two readers near each other, so that when this
        process is done the helper has little left to finish.
        """
        step = max(1, min(step, (back - front) // 8))
        low = max(back - step, front + OWN_STEP)
        if low >= back or self.broken:
            return back
        self._send(b"%d %d" % (low, back))
        if self.broken:
            return back
        self.handed.append((low, back))
        self.waiting += 1
        return low

    def hand(self, front: int, back: int) -> int:
        """Look at what the helper said, hand it more if it is ready for it; return new back.

        Never waits. ``front`` is where this process reads next: the helper is
        handed only segments at or after ``front + OWN_STEP``.
        """
        if self.ended or self.broken:
            return back
        if not self.polled:  # hand over the later half once; the helper reads it all
            half = max(front + OWN_STEP, (front + back) // 2)
            if half < back:
                self._send(b"%d %d" % (half, back))
                if not self.broken:
                    self.handed.append((half, back))
                    back = half
            self._end()
            return back
        try:
            while chunk := os.read(self.out, 1 << 16):
                self.said += chunk
            self.broken = True  # the helper closed its output without answering
            return back
        except BlockingIOError:
            pass
        except OSError:
            self.broken = True
            return back
        while b"\n" in self.said and not self.said.startswith(b"{"):
            line, _, self.said = self.said.partition(b"\n")
            if line == b"ready" and not self.ready:
                self.ready = True
                back = self._give(front, back, HELPER_STEP)
                back = self._give(front, back, HELPER_STEP)
            elif line == b"done" and self.waiting > 0:
                self.waiting -= 1
                back = self._give(front, back, HELPER_STEP)
            else:
                self.broken = True
                return back
        return back

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self._send(b"end")

    def stop(self) -> None:
        """End the helper at once, whatever it is doing."""
        self.proc.kill()
        self.proc.wait()
        if self.writer is not None:
            self.writer.join()
            self.writer = None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def finish(self) -> _Read | None:
        """Return what the helper read of what it was handed, or None when it broke."""
        if not self.handed or self.broken:
            self.stop()
            return _Read({}, set(), []) if not self.handed else None
        self._end()
        if self.broken:
            self.stop()
            return None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
            os.set_blocking(self.out, True)
            rest = [self.said]
            while chunk := os.read(self.out, 1 << 20):
                rest.append(chunk)
        except OSError:
            self.stop()
            return None
        self.proc.stdout.close()
        self.proc.wait()
        out = b"".join(rest)
        while out.startswith((b"ready\n", b"done\n")):
            out = out.partition(b"\n")[2]
        return _answer(out, self.handed)


def _spawn(
    ledger: Ledger, segments: Sequence[_Segment], ask: WindowRequest
) -> subprocess.Popen[bytes] | None:
    """Start a helper process for ``segments``, or return None if it cannot start.

    The helper runs as ``python -m auditml._internal.window_worker``, never
    re-importing a user's script; its request follows on stdin (:func:`_request`).
    """
    if not ledger.store.shareable:
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "auditml._internal.window_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def _request(ledger: Ledger, segments: Sequence[_Segment], ask: WindowRequest) -> bytes:
    """Return the helper's request: one JSON line (on stdin, so no password shows in ``ps``)."""
    request = {
        "url": ledger.store.url,
        "log_id": ledger.log_id,
        "ask": asdict(ask),
        "segments": [_segment_json(seg) for seg in segments],
    }
    return json.dumps(request).encode() + b"\n"


def _segment_json(seg: _Segment) -> dict[str, Any]:
    return {**asdict(seg), "root": seg.root.hex()}


def serve_request(given: IO[bytes], out: IO[bytes]) -> None:
    """Serve one helper exchange: the request line, then the ranges handed, on ``given``.

    Says ``ready`` and ``done`` lines on ``out``, and after ``end`` (or the
    end of ``given``) the answer: one JSON line (``ok``, the ranges read, the
    segments read and those that need a careful read, and per version its
    counts and the byte lengths of its arrays), then the arrays' bytes in the
    order the header lists them.
    """
    read = _Read({}, set(), [])
    ranges: list[list[int]] = []
    try:
        request = json.loads(given.readline())
        asked = request["ask"]
        ask = WindowRequest(
            str(asked["model"]),
            str(asked["env"]),
            str(asked["since"]),
            str(asked["until"]),
            tuple(str(v) for v in asked["versions"]),
            tuple(str(f) for f in asked["fields"]),
        )
        segments = [
            _Segment(**{**seg, "root": bytes.fromhex(seg["root"])}) for seg in request["segments"]
        ]
        store = Store.connect(str(request["url"]))
        try:
            with store.snapshot() as snap:
                if not snap.holds_records():
                    raise _no_table(segments[0])
                out.write(b"ready\n")
                out.flush()
                while (line := given.readline().strip()) and line != b"end":
                    low, high = map(int, line.split())
                    if not 0 <= low < high <= len(segments):
                        raise ValueError(line)
                    part = _Read({}, set(), [])
                    _read_into(snap, int(request["log_id"]), segments[low:high], ask, part)
                    _merge_read(read, part)
                    ranges.append([low, high])
                    out.write(b"done\n")
                    out.flush()
        finally:
            store.close()
    except (AuditmlError, ValueError, KeyError, TypeError, OSError) as exc:
        out.write(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
        return
    blobs: list[bytes] = []
    versions = {}
    for version, sample in read.samples.items():
        latency = (sample.latency or array("d")).tobytes()
        scores = {name: values.tobytes() for name, values in (sample.scores or {}).items()}
        versions[version] = {
            "requests": sample.requests,
            "errors": sample.errors,
            "latency": len(latency),
            "scores": {name: len(blob) for name, blob in scores.items()},
        }
        blobs += [latency, *scores.values()]
    header = {
        "ok": True,
        "ranges": ranges,
        "seen": sorted(read.seen),
        "slow": read.slow,
        "versions": versions,
    }
    out.write(json.dumps(header).encode() + b"\n" + b"".join(blobs))


def _merge_read(into: _Read, part: _Read) -> None:
    for version, sample in part.samples.items():
        _merge(_sample_of(into.samples, version), sample)
    into.seen |= part.seen
    into.slow += part.slow


def _answer(out: bytes, handed: list[tuple[int, int]]) -> _Read | None:
    """Return what the helper's answer says it read, or None unless it read all it was handed."""
    head, _, rest = out.partition(b"\n")
    try:
        header = json.loads(head)
        if not header.get("ok"):
            return None
        if sorted(tuple(r) for r in header["ranges"]) != sorted(handed):
            return None
        view = memoryview(rest)
        at = 0
        samples: dict[str, Sample] = {}

        def take(size: int) -> array[float]:
            nonlocal at
            values = array("d")
            values.frombytes(view[at : at + size])
            at += size
            return values

        for version, figures in header["versions"].items():
            latency = take(int(figures["latency"]))
            scores = {name: take(int(size)) for name, size in figures["scores"].items()}
            samples[version] = Sample(
                int(figures["requests"]), int(figures["errors"]), latency, scores
            )
        if at != len(rest):
            return None
        return _Read(samples, {int(s) for s in header["seen"]}, [int(s) for s in header["slow"]])
    except (ValueError, KeyError, TypeError):
        return None


def _verified_segment(
    ledger: Ledger, seg: _Segment, model: str, env: str, since: str, until: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield the matching verified records of one segment, raising at the first that fails."""
    yield from verified_records(
        ledger, model=model, env=env, since=since, until=until, only=frozenset({seg.seq})
    )
