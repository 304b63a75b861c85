"""Verifying a sequence of stored events: pure, streaming, and precise about the first failure.

:class:`ChainVerifier` is fed rows of ``(seq column or None, stored hash or
None, canonical bytes)`` in order, from a database, a bundle file or a PDF
attachment alike. For every event it recomputes the leaf hash (docs/format.md
section 2) and checks, by exact byte comparison at their canonical places,
that the event names the expected origin, ``prev`` link and ``seq``, and that
its time is well formed and never goes backwards. It feeds the hashes into the
Merkle compact range, so the root at the end costs O(1) memory.

Bytes are canonical JCS, so the top-level keys always come in the order
action, actor, data, log, prev, seq, subject, time, v: the header fields can
be checked without parsing the event. When any check fails, the event is
parsed in full to say exactly what is wrong. ``deep=True`` also parses every
event, checks that its bytes are exactly ``JCS(event)`` and validates its data
against its action's model: slower, and it catches malformed events that a
consistent rewrite could otherwise hide in a nested value.
"""

from __future__ import annotations

import hashlib
import re
from binascii import hexlify
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add, itemgetter
from typing import Any

from auditml.core.canonical import loads_strict, plain_canonical_bytes
from auditml.core.envelope import FIRST, MID, TAIL_END, TAIL_KEY, action_prefix, header_bytes
from auditml.core.merkle import CompactRange, SubRange, leaf_hashes
from auditml.errors import AuditmlError, VerificationError

__all__ = [
    "NODE_LEVEL",
    "ChainState",
    "ChainVerifier",
    "Row",
    "check_nodes",
    "gap_error",
]

NODE_LEVEL = 8
ZERO_HEX = b"0" * 64
_TIME_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# Every digit becomes "0", so one comparison checks the layout of a whole chunk of tails.
_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_TAIL_SHAPE = TAIL_KEY + b'0000-00-00T00:00:00.000000Z","v":0}'
_col = itemgetter(0)
_stored = itemgetter(1)
_body = itemgetter(2)
_tail = itemgetter(slice(-44, None))
_stamp = itemgetter(slice(-35, -8))

#: ``(seq column or None, stored hash or None, canonical bytes)`` from a bundle or a PDF;
#: from a database, verify's full read: ``(seq, hash, body, prev, time, action, model,
#: version)`` as stored, each column held against the body, its type included.
Row = tuple[Any, ...]
_prev_col = itemgetter(3)
_time_col = itemgetter(4)
_action_col = itemgetter(5)
_model_col = itemgetter(6)
_version_col = itemgetter(7)
_NEVER = b"\xff"  # no event's bytes start with this
_CACHE_MAX = 65536


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where a verified prefix of a log ends."""

    size: int
    last_hash: bytes
    last_time: str
    frontier: CompactRange
    nodes: tuple[tuple[int, int, bytes], ...]

    @property
    def root(self) -> bytes:
        """Return the Merkle root of the verified prefix."""
        return self.frontier.root()


class _ActionPrefixes(dict[Any, bytes]):
    """The bytes an event must start with for each stored action column, built once each.

    A column of the wrong type (bytes where text belongs) gets bytes no event starts with.
    """

    def __missing__(self, key: Any) -> bytes:
        if len(self) >= _CACHE_MAX:
            self.clear()
        value = _NEVER
        if isinstance(key, str):
            try:
                value = action_prefix(key)
            except AuditmlError:
                value = _NEVER
        self[key] = value
        return value


class _Subjects(dict[bytes, tuple[str | None, str | None] | None]):
    """The (model, version) that each distinct subject's bytes hold, parsed once each."""

    def __missing__(self, key: bytes) -> tuple[str | None, str | None] | None:
        if len(self) >= _CACHE_MAX:
            self.clear()
        found: tuple[str | None, str | None] | None = None
        try:
            parsed = loads_strict(key)
        except AuditmlError:
            parsed = None
        if isinstance(parsed, dict):
            model, version = parsed.get("model"), parsed.get("version")
            if isinstance(model, str | None) and isinstance(version, str | None):
                found = (model, version)
        self[key] = found
        return found


class _SubjectBytes(dict[tuple[Any, Any], bytes]):
    """The canonical bytes of ``{"model", "version"}`` for each pair of stored columns."""

    def __missing__(self, key: tuple[Any, Any]) -> bytes:
        if len(self) >= _CACHE_MAX:
            self.clear()
        value = _NEVER
        if all(isinstance(held, str | None) for held in key):
            named = zip(("model", "version"), key, strict=True)
            try:
                value = plain_canonical_bytes({n: h for n, h in named if h is not None})
                value += TAIL_KEY
            except AuditmlError:
                value = _NEVER
        self[key] = value
        return value


class ChainVerifier:
    """Checks events one chunk at a time, remembering only the last hash, time and frontier."""

    def __init__(
        self,
        origin: str,
        *,
        deep: bool = False,
        keep_nodes: bool = True,
        tree: bool = True,
        start: int = 0,
        prev_hash: bytes | None = None,
        last_time: str = "",
        frontier: CompactRange | None = None,
        roots_at: Iterable[int] = (),
        subrange: SubRange | None = None,
    ) -> None:
        """Start at event 0, or at ``start`` trusting ``prev_hash`` and ``last_time``.

        A verifier that starts later builds the tree only when given the
        ``frontier`` of the events before ``start``, or a ``subrange`` that
        begins at ``start``: then it hashes only this part of the tree, and
        records in :attr:`parts` (not :attr:`roots`) the nodes up to each size of
        ``roots_at`` (kept checkpoints), whose roots the tree records on its way.
        """
        if frontier is not None and frontier.size != start:
            raise ValueError(f"a frontier of size {frontier.size} cannot start at event {start}")
        if subrange is not None and (frontier is not None or subrange.end != start):
            raise ValueError(f"a sub-range ending at {subrange.end} cannot start at event {start}")
        self.origin = origin
        self.deep = deep
        self.keep_nodes = keep_nodes
        self.tree = tree and (start == 0 or frontier is not None or subrange is not None)
        self._sub = subrange
        self.parts: dict[int, list[tuple[int, bytes]]] = {}
        self._header = header_bytes(origin)
        self._size = start
        self._prev_hex = ZERO_HEX if prev_hash is None else hexlify(prev_hash)
        self._last_time = last_time.encode()
        self._range = frontier if frontier is not None else CompactRange()
        self._nodes: list[tuple[int, int, bytes]] = []
        self._wanted = sorted(set(roots_at))
        self.roots: dict[int, bytes] = {}
        self._actions = _ActionPrefixes()
        self._subjects = _Subjects()
        self._subject_bytes = _SubjectBytes()

    @property
    def size(self) -> int:
        """Return how many events verified so far."""
        return self._size

    def feed(self, rows: Iterable[Row]) -> None:
        """Verify the next events in order; raise VerificationError at the first that fails."""
        chunk = rows if isinstance(rows, list) else list(rows)
        if chunk and (self.deep or not self._feed_fast(chunk)):
            self._feed_one_by_one(chunk)

    def _feed_fast(self, chunk: Sequence[Row]) -> bool:
        """Check a whole chunk with C-level passes; return False, changing nothing, if any fails.

        Each check runs over the chunk at once (map, join, list comparison), so the
        per-event cost stays close to reading the row and hashing it.
        """
        bodies = list(map(_body, chunk))
        n = len(bodies)
        start = self._size
        stored_columns = len(chunk[0]) > 3
        try:
            digests = leaf_hashes(bodies)
        except TypeError:  # a body that is not bytes: named one by one
            return False
        if (stored_columns or chunk[0][1] is not None) and list(map(_stored, chunk)) != digests:
            return False
        if (stored_columns or chunk[0][0] is not None) and list(map(_col, chunk)) != list(
            range(start, start + n)
        ):
            return False
        hexes = list(map(hexlify, digests))
        prevs = [self._prev_hex, *hexes[:-1]]
        mids = list(map(MID.__mod__, zip(repeat(self._header), prevs, range(start, start + n))))
        # Each mid lies near the end of its body (only the subject and time follow it),
        # where rfind reaches it in less than half the time of a forward search.
        found = list(map(bytes.rfind, bodies, mids))
        if -1 in found:
            return False
        tails = b"".join(map(_tail, bodies))
        if tails.translate(_DIGITS) != _TAIL_SHAPE * n or tails.count(TAIL_END) != n:
            return False
        stamps = list(map(_stamp, bodies))
        if stamps[0] < self._last_time or stamps != sorted(stamps):
            return False
        if start == 0 and not bodies[0].startswith(FIRST):
            return False
        if stored_columns:
            subjects = list(map(add, found, map(len, mids)))
            prev = bytes.fromhex(self._prev_hex.decode())
            if not self._columns_match(chunk, bodies, [prev, *digests[:-1]], stamps, subjects):
                return False
        self._size = start + n
        self._prev_hex = hexes[-1]
        self._last_time = stamps[-1]
        self._grow(digests)
        return True

    def _columns_match(
        self,
        rows: Sequence[Row],
        bodies: list[bytes],
        prevs: list[bytes],
        stamps: list[bytes],
        subjects: list[int],
    ) -> bool:
        """Return whether every lookup column of ``rows`` says what the bytes it indexes say.

        ``prevs`` are the hashes the rows link to, ``stamps`` their times and
        ``subjects`` where each body's subject starts. Each check is one C-level
        pass over the rows, as in :meth:`_feed_fast`.
        """
        if list(map(_prev_col, rows)) != prevs:
            return False
        if list(map(_time_col, rows)) != list(map(bytes.decode, stamps)):
            return False
        prefixes = map(self._actions.__getitem__, map(_action_col, rows))
        if not all(map(bytes.startswith, bodies, prefixes)):
            return False
        # Most subjects are exactly {"model", "version"}: compare bytes built once per pair in
        # place. Only a subject with other keys is parsed (once per distinct subject).
        columns = list(zip(map(_model_col, rows), map(_version_col, rows), strict=True))
        expected = map(self._subject_bytes.__getitem__, columns)
        exact = list(map(bytes.startswith, bodies, expected, subjects))
        if False not in exact:
            return True
        for i, ok in enumerate(exact):
            if not ok and self._subjects[bodies[i][subjects[i] : -44]] != columns[i]:
                return False
        return True

    def _grow(self, digests: list[bytes]) -> None:
        """Add verified leaf hashes to the tree, unless another process builds it."""
        if self.tree:
            if self._sub is not None:
                nodes = self._sub.extend_recording(
                    digests, self._wanted, self.parts, min_level=NODE_LEVEL
                )
            else:
                nodes = self._range.extend_recording(
                    digests, self._wanted, self.roots, min_level=NODE_LEVEL
                )
            if self.keep_nodes:
                self._nodes.extend(nodes)

    def _feed_one_by_one(self, rows: Sequence[Row]) -> None:
        """Check events one at a time, so the first failure is named exactly."""
        sha256 = hashlib.sha256
        header = self._header
        time_re = _TIME_RE.fullmatch
        seq = self._size
        prev_hex = self._prev_hex
        last_time = self._last_time
        leaves: list[bytes] = []
        add = leaves.append
        try:
            for row in rows:
                col_seq, stored, body = row[0], row[1], row[2]
                stored_columns = len(row) > 3
                if stored_columns:
                    _check_stored_types(row, seq)
                    if isinstance(body, str):  # text in the blob column: a hash failure first
                        body = body.encode("utf-8", "surrogateescape")
                        if stored == sha256(b"\x00" + body).digest():
                            raise _fail(
                                "its body column holds text where auditml wrote bytes: the "
                                "row was changed outside auditml",
                                "column",
                                seq,
                            )
                digest = sha256(b"\x00" + body).digest()
                stamp = body[-35:-8]
                mid = MID % (header, prev_hex, seq)
                if (
                    mid not in body
                    or (stored is not None and stored != digest)
                    or (col_seq is not None and col_seq != seq)
                    or body[-44:-35] != TAIL_KEY
                    or body[-8:] != TAIL_END
                    or stamp < last_time
                    or time_re(stamp) is None
                    or (seq == 0 and not body.startswith(FIRST))
                    or self.deep
                ):
                    _diagnose(body, col_seq, stored, digest, seq, prev_hex, last_time, self)
                if stored_columns:
                    prev = bytes.fromhex(prev_hex.decode())
                    subject = body.rfind(mid) + len(mid)
                    if not self._columns_match([row], [body], [prev], [stamp], [subject]):
                        _diagnose_columns(row, body, prev, stamp, seq)
                add(digest)
                prev_hex = hexlify(digest)
                last_time = stamp
                seq += 1
        finally:
            # Whatever verified before a failure still counts, so the report can say how far it got.
            self._size = seq
            self._prev_hex = prev_hex
            self._last_time = last_time
            self._grow(leaves)

    def subrange_nodes(self) -> list[tuple[int, bytes]]:
        """Return the perfect subtrees tiling the events verified (with a ``subrange``)."""
        return [] if self._sub is None else self._sub.nodes

    def state(self) -> ChainState:
        """Return where the verified prefix ends."""
        return ChainState(
            size=self._size,
            last_hash=bytes.fromhex(self._prev_hex.decode()),
            last_time=self._last_time.decode(),
            frontier=self._range.copy(),
            nodes=tuple(self._nodes),
        )


def gap_error(expected: int, found: int) -> VerificationError:
    """Return the error for events ``expected`` to ``found - 1`` missing from the log."""
    missing = f"event {expected}" if found == expected + 1 else f"events {expected} to {found - 1}"
    return _fail(
        f"gap in seq: found seq {found} where {expected} was expected ({missing} missing)",
        "seq",
        expected,
    )


def _fail(message: str, kind: str, seq: int) -> VerificationError:
    return VerificationError(message, kind=kind, seq=seq)


def _diagnose(
    body: bytes,
    col_seq: int | None,
    stored: bytes | None,
    digest: bytes,
    seq: int,
    prev_hex: bytes,
    last_time: bytes,
    verifier: ChainVerifier,
) -> None:
    """Parse one event in full and raise the precise reason it fails, or return if it passes."""
    from auditml.core.events import Event, validate_data  # pydantic, only once something fails

    if stored is not None and stored != digest:
        raise _fail(
            "its bytes do not match the hash recorded when it was written: "
            "the event was changed after it was appended",
            "hash",
            seq,
        )
    try:
        parsed: Any = loads_strict(body)
    except AuditmlError as exc:
        raise _fail(f"its bytes are not valid JSON: {exc}", "format", seq) from None
    if not isinstance(parsed, dict):
        raise _fail("it is not a JSON object", "format", seq)
    found_seq = parsed.get("seq")
    if not isinstance(found_seq, int) or isinstance(found_seq, bool):
        raise _fail("it has no integer 'seq'", "format", seq)
    if found_seq > seq:
        raise gap_error(seq, found_seq)
    if found_seq < seq:
        raise _fail(
            f"duplicate or out-of-order seq: found seq {found_seq} again where {seq} was expected",
            "seq",
            seq,
        )
    if col_seq is not None and col_seq != seq:
        raise _fail(f"it is stored at seq {col_seq} but its bytes say seq {seq}", "seq", seq)
    if parsed.get("log") != verifier.origin:
        raise _fail(
            f"wrong origin: it names log {parsed.get('log')!r}, not {verifier.origin!r}",
            "origin",
            seq,
        )
    if parsed.get("prev") != prev_hex.decode():
        what = "the zero hash" if seq == 0 else f"the hash of event {seq - 1}"
        raise _fail(
            f"broken link: its prev is not {what} (an event before it was changed, "
            "removed, inserted or reordered)",
            "link",
            seq,
        )
    try:
        event = Event.model_validate(parsed)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise _fail(f"not a valid auditml event: {' '.join(first[:3])}", "format", seq) from None
    if event.time.encode() < last_time:
        raise _fail(
            f"time goes backwards: {event.time} is earlier than the event before it "
            f"({last_time.decode()})",
            "time",
            seq,
        )
    if seq == 0 and event.action != "log.init":
        raise _fail(f"the first event must be log.init, not {event.action!r}", "format", 0)
    if plain_canonical_bytes(parsed) != body:
        raise _fail("its bytes are not the canonical JCS form of the event", "format", seq)
    try:
        validate_data(event.action, event.data)
    except AuditmlError as exc:
        raise _fail(f"its data does not fit its action: {exc}", "format", seq) from None


_COLUMNS = ("seq", "hash", "body", "prev", "time", "action", "model", "version")


def _check_stored_types(row: Row, seq: int) -> None:
    """Raise when a stored row lacks a column verify needs, or holds text where bytes belong."""
    for name, value in zip(_COLUMNS[:4], row[:4], strict=True):
        wanted = int if name == "seq" else bytes
        if name == "body" and isinstance(value, str):
            continue  # its bytes are checked against the hash first
        if not isinstance(value, wanted) or isinstance(value, bool):
            held = "NULL" if value is None else f"a {type(value).__name__}"
            raise _fail(
                f"its {name} column holds {held}, not {'an integer' if wanted is int else 'bytes'}:"
                " the row was changed outside auditml",
                "column",
                seq,
            )


def _diagnose_columns(row: Row, body: bytes, prev: bytes, stamp: bytes, seq: int) -> None:
    """Raise naming the first lookup column of a stored event that its bytes contradict."""
    if row[3] != prev:
        raise _column_lie("prev", _show(row[3]), prev.hex(), seq)
    event = loads_strict(body)  # parsed once already by the checks before this one
    subject = event.get("subject") if isinstance(event.get("subject"), dict) else {}
    for index, name, value in (
        (4, "time", stamp.decode()),
        (5, "action", event.get("action")),
        (6, "model", subject.get("model")),
        (7, "version", subject.get("version")),
    ):
        held = row[index]
        if held is not None and not isinstance(held, str):
            raise _fail(
                f"its {name} column holds {type(held).__name__} where auditml wrote text: the "
                "row was changed outside auditml (a lookup by that column no longer finds it)",
                "column",
                seq,
            )
        if held != value:
            raise _column_lie(name, held, value, seq)
    raise _fail("its lookup columns do not match its bytes", "column", seq)  # pragma: no cover


def _show(value: object) -> object:
    return value.hex() if isinstance(value, bytes) else value


def _column_lie(name: str, held: object, says: object, seq: int) -> VerificationError:
    return _fail(
        f"its {name} column says {held!r} but its bytes say {says!r}: the column was changed "
        "after the event was appended (decisions read it to find events)",
        "column",
        seq,
    )


def check_nodes(
    stored: dict[tuple[int, int], bytes], computed: Iterable[tuple[int, int, bytes]]
) -> None:
    """Raise unless the stored Merkle nodes are exactly those the events recompute to.

    The nodes are checked in one order however they were computed (in one pass
    or two halves): the one whose last leaf comes first, a lower one first.
    """
    seen = 0
    for level, index, digest in sorted(computed, key=_node_order):
        seen += 1
        found = stored.get((level, index))
        if found != digest:
            state = "missing" if found is None else "wrong"
            raise VerificationError(
                f"the stored Merkle node at level {level}, index {index} is {state}",
                kind="head",
                seq=index << level,
            )
    if len(stored) != seen:
        raise VerificationError(
            f"the store holds {len(stored) - seen} Merkle node(s) that no event accounts for",
            kind="head",
        )


def _node_order(node: tuple[int, int, bytes]) -> tuple[int, int]:
    """Order tree nodes by where they end, then by level: as one pass completes them."""
    level, index, _ = node
    return ((index + 1) << level, level)
