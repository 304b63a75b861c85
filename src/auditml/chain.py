"""Verifying a sequence of stored events: pure, streaming, and precise about the first failure.

:class:`ChainVerifier` is fed rows of ``(seq column or None, stored hash or
None, canonical bytes)`` in order, from a database, a bundle file or a PDF
attachment alike. For every event it recomputes the leaf hash (FORMAT.md
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
from operator import itemgetter
from typing import Any

from auditml.canonical import canonical_text, loads_strict, plain_canonical_bytes
from auditml.errors import AuditmlError, VerificationError
from auditml.merkle import CompactRange

__all__ = [
    "NODE_LEVEL",
    "ChainState",
    "ChainVerifier",
    "Row",
    "check_nodes",
    "gap_error",
    "header_bytes",
]

NODE_LEVEL = 8
ZERO_HEX = b"0" * 64
_TIME_RE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_TAIL_KEY = b',"time":"'
_TAIL_END = b'","v":1}'
_MID = b'%s%s","seq":%d,"subject":'
_FIRST = b'{"action":"log.init",'
# Every digit becomes "0", so one comparison checks the layout of a whole chunk of tails.
_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_TAIL_SHAPE = b',"time":"0000-00-00T00:00:00.000000Z","v":0}'
_col = itemgetter(0)
_stored = itemgetter(1)
_body = itemgetter(2)
_tail = itemgetter(slice(-44, None))
_stamp = itemgetter(slice(-35, -8))

Row = tuple[int | None, bytes | None, bytes]


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


def header_bytes(origin: str) -> bytes:
    """Return the canonical bytes that precede ``prev``'s value in every event of ``origin``."""
    return b',"log":' + canonical_text(origin).encode() + b',"prev":"'


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
    ) -> None:
        """Start at event 0, or at ``start`` trusting ``prev_hash`` and ``last_time``.

        A verifier that starts later builds the tree only when given the
        ``frontier`` of the events before ``start``.
        """
        if frontier is not None and frontier.size != start:
            raise ValueError(f"a frontier of size {frontier.size} cannot start at event {start}")
        self.origin = origin
        self.deep = deep
        self.keep_nodes = keep_nodes
        self.tree = tree and (start == 0 or frontier is not None)
        self._header = header_bytes(origin)
        self._size = start
        self._prev_hex = ZERO_HEX if prev_hash is None else hexlify(prev_hash)
        self._last_time = last_time.encode()
        self._range = frontier if frontier is not None else CompactRange()
        self._nodes: list[tuple[int, int, bytes]] = []

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
        sha256 = hashlib.sha256
        digests = [sha256(b"\x00" + body).digest() for body in bodies]
        if chunk[0][1] is not None and list(map(_stored, chunk)) != digests:
            return False
        if chunk[0][0] is not None and list(map(_col, chunk)) != list(range(start, start + n)):
            return False
        hexes = list(map(hexlify, digests))
        prevs = [self._prev_hex, *hexes[:-1]]
        mids = list(map(_MID.__mod__, zip(repeat(self._header), prevs, range(start, start + n))))
        # Each mid lies near the end of its body (only the subject and time follow it),
        # where rfind reaches it in less than half the time of a forward search.
        if -1 in list(map(bytes.rfind, bodies, mids)):
            return False
        tails = b"".join(map(_tail, bodies))
        if tails.translate(_DIGITS) != _TAIL_SHAPE * n or tails.count(_TAIL_END) != n:
            return False
        stamps = list(map(_stamp, bodies))
        if stamps[0] < self._last_time or stamps != sorted(stamps):
            return False
        if start == 0 and not bodies[0].startswith(_FIRST):
            return False
        self._size = start + n
        self._prev_hex = hexes[-1]
        self._last_time = stamps[-1]
        self._grow(digests)
        return True

    def _grow(self, digests: list[bytes]) -> None:
        """Add verified leaf hashes to the tree, unless another process builds it."""
        if self.tree:
            nodes = self._range.extend(digests, min_level=NODE_LEVEL)
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
            for col_seq, stored, body in rows:
                digest = sha256(b"\x00" + body).digest()
                stamp = body[-35:-8]
                if (
                    (_MID % (header, prev_hex, seq)) not in body
                    or (stored is not None and stored != digest)
                    or (col_seq is not None and col_seq != seq)
                    or body[-44:-35] != _TAIL_KEY
                    or body[-8:] != _TAIL_END
                    or stamp < last_time
                    or time_re(stamp) is None
                    or (seq == 0 and not body.startswith(_FIRST))
                    or self.deep
                ):
                    _diagnose(body, col_seq, stored, digest, seq, prev_hex, last_time, self)
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
    from auditml.events import Event, validate_data  # pydantic, only once something fails

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


def check_nodes(
    stored: dict[tuple[int, int], bytes], computed: Iterable[tuple[int, int, bytes]]
) -> None:
    """Raise unless the stored Merkle nodes are exactly those the events recompute to."""
    seen = 0
    for level, index, digest in computed:
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
