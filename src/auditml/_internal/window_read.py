"""The fast read of a monitor's window: runtime records held to their roots, read in place.

:func:`read_into` reads the stored records of some ``runtime.segment`` events:
per segment, one SHA-256 per record and the segment's Merkle tree built with
C-level maps, then the few fields a window needs read in place from the
records' bytes, column by column (see ``_columns_in_place``), or, for a segment
not laid out as auditml writes records, one orjson parse per record and the
fields taken out in bulk. A segment in which anything looks wrong is reported
back for the careful reader (:func:`auditml.evidence.verified_records`), which
names the first record that fails.

It imports only the store and the pure core, so the helper process of a
window read (:mod:`auditml._internal.window_worker`, serving
:func:`serve_request`) starts in a fraction of the time the whole library
takes to import; :mod:`auditml.evidence` holds the rest (the segments on the
log, the helper's management, the careful reader).
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from json.encoder import encode_basestring as _escape
from operator import and_, itemgetter, methodcaller
from typing import IO, Any

import orjson

from auditml._internal.tree_worker import gc_paused
from auditml.core import merkle
from auditml.core.samples import Sample
from auditml.errors import AuditmlError, VerificationError
from auditml.store import Store

__all__ = [
    "Read",
    "Segment",
    "WindowRequest",
    "add_record",
    "merge",
    "merge_read",
    "no_table",
    "read_into",
    "sample_of",
    "serve_request",
]


@dataclass(frozen=True, slots=True)
class Segment:
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


def sample_of(samples: dict[str, Sample], version: str) -> Sample:
    found = samples.get(version)
    if found is None:
        found = samples[version] = Sample(0, 0, array("d"), {})
    return found


def add_record(
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


def merge(into: Sample, part: Sample) -> None:
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
    seg: Segment,
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
    if merkle.unchecked_root(merkle.leaf_hashes(bodies)) != seg.root:
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
    quotes = head.count(b'"') + end.count(b'"')  # three a piece for a plain key
    return (
        text.startswith(head)
        and text.endswith(end)
        and text.count(end + _SPLIT + head) == n - 1  # every piece: head … end
        and text.count(b'"') == (quotes + 1) * n - 1  # those a piece, one a join: none in TEXT
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
    outputs: list[dict[str, Any]] | None  # each record's output, parsed; or else:
    numbers: dict[str, list[Any]] | None  # the output members read as columns, numbers only

    def scores(self, name: str) -> list[Any] | None:
        """Return each record's output member ``name`` (None: no record has a number there)."""
        if self.outputs is not None:
            return list(map(methodcaller("get", name), self.outputs))
        assert self.numbers is not None
        return self.numbers.get(name)

    def label(self, version: str) -> Any:
        """Return what ``labels`` holds for the records of ``version``."""
        if not self.plain:
            return version
        try:
            return b'version":' + _escape(version).encode() + b"}"
        except UnicodeEncodeError:
            return None


def _columns_in_place(
    seg: Segment, bodies: list[bytes], *, model: str, env: str
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
    numbers = _output_columns(pieces, k, n)
    outputs = None if numbers is not None else _outputs(pieces, k, n)
    if numbers is None and outputs is None:
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
    return _Columns(
        low, high, times, time_pieces, labels, plain, failed, latencies, outputs, numbers
    )


#: How each record's output object starts: its first member's key follows.
_OUTPUT = b'output":{"'


def _output_columns(pieces: list[bytes], k: int, n: int) -> dict[str, list[Any]] | None:
    """Return the records' output members read column by column, or None if one is not plain.

    Where every record's output holds the same members, each a plain ASCII key
    (:data:`_UNPLAIN`-free, distinct) with a plain string or a number, the
    member in the same place of each output is one column: strings are held
    to :func:`_plain`, numbers read by orjson as one array (:func:`_values`).
    Each output is then, byte for byte, the object ``{"K1":V1,…}`` of those
    values. Returns the numeric members by key; a string member is no score.
    """
    outs = k - _ENDS
    keys: list[bytes] = []
    numbers: dict[str, list[Any]] = {}
    for j in range(outs):
        column = pieces[6 + j :: k]
        first = column[0]
        start = len(_OUTPUT) if j == 0 else 0
        if j == 0 and not first.startswith(_OUTPUT):
            return None
        end = first.find(b'":', start)
        name = first[start:end]
        if end < 0 or not name.isascii() or len(name.translate(None, _UNPLAIN)) != len(name):
            return None
        key, close = first[:end], b"}" if j == outs - 1 else b""
        keys.append(name)
        if _plain(column, key, close):
            continue
        values = _values(column, key, close, strings=False)
        if values is None or not set(map(type, values)) <= _NUMBERS:
            return None
        numbers[name.decode()] = values
    if len(set(keys)) != len(keys):
        return None  # a key given twice: a parse keeps the last
    return numbers


def _outputs(pieces: list[bytes], k: int, n: int) -> list[dict[str, Any]] | None:
    """Return each record's output object, the outputs read as one array; None if one is not.

    Each record's pieces are joined back at ``,"`` where they were cut, and the
    records' outputs read as one array, a string no one can have written between
    two (drawn now): n-1 of them read back in their places means each output is one object.
    """
    outs = k - _ENDS
    head = b'output":'
    text = _SPLIT.join(pieces[6::k])
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
    outputs: list[dict[str, Any]] = found[0::2]
    if set(map(type, outputs)) != {dict}:
        return None
    return outputs


def _add_columns(
    seg: Segment,
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
    scores = {name: columns.scores(name) for name in fields}
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
            column = scores[name]
            if column is None:
                part.scores[name] = array("d")
                continue
            found = column if rows is None else list(compress(column, rows))
            part.scores[name] = _score_array(found)
        merge(sample_of(samples, version), part)
    return True


def _parsed_segment(
    seg: Segment,
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
        merge(sample_of(samples, version), part)
    return True


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
class Read:
    """What reading some segments found: samples, segments read, segments that need a look."""

    samples: dict[str, Sample]
    seen: set[int]
    slow: list[int]


def read_into(
    snap: Any, log_id: int, segments: Sequence[Segment], ask: WindowRequest, found: Read
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


def no_table(seg: Segment) -> VerificationError:
    return VerificationError(
        "the log has runtime.segment events but the store has no runtime record table",
        kind="record",
        seq=seg.seq,
    )


def serve_request(given: IO[bytes], out: IO[bytes]) -> None:
    """Serve one helper exchange: the request line, then the ranges handed, on ``given``.

    Says ``ready`` and ``done`` lines on ``out``, and after ``end`` (or the
    end of ``given``) the answer: one JSON line (``ok``, the ranges read, the
    segments read and those that need a careful read, and per version its
    counts and the byte lengths of its arrays), then the arrays' bytes in the
    order the header lists them.
    """
    read = Read({}, set(), [])
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
            Segment(**{**seg, "root": bytes.fromhex(seg["root"])}) for seg in request["segments"]
        ]
        store = Store.connect(str(request["url"]))
        try:
            with gc_paused(), store.snapshot() as snap:
                if not snap.holds_records():
                    raise no_table(segments[0])
                out.write(b"ready\n")
                out.flush()
                while (line := given.readline().strip()) and line != b"end":
                    low, high = map(int, line.split())
                    if not 0 <= low < high <= len(segments):
                        raise ValueError(line)
                    part = Read({}, set(), [])
                    read_into(snap, int(request["log_id"]), segments[low:high], ask, part)
                    merge_read(read, part)
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


def merge_read(into: Read, part: Read) -> None:
    for version, sample in part.samples.items():
        merge(sample_of(into.samples, version), sample)
    into.seen |= part.seen
    into.slow += part.slow
