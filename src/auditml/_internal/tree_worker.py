"""Check the second half of a log's chain and hash its part of the tree, for a verify on two cores.

A parallel verify splits the log in two at an event: the calling process
checks the chain of the events before it and hashes their part of the Merkle
tree, this process does the same for the events from there on, and the
caller checks the link where the two halves meet and merges the two parts of
the tree (perfect subtrees compose: :meth:`CompactRange.merge_range`). It
runs as ``python -m auditml._internal.tree_worker`` (not multiprocessing), so
a user's unguarded script is never re-imported; the request arrives on stdin,
so no password shows in ``ps``.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from auditml.core.canonical import loads_strict
from auditml.core.chain import ChainVerifier
from auditml.core.merkle import SubRange
from auditml.core.records import SegmentVerifier
from auditml.errors import AuditmlError, VerificationError
from auditml.store import Snapshot, Store

__all__ = ["TreeAnswer", "TreeRequest", "fold_stored_tree", "gc_paused", "read_nodes"]


@dataclass(frozen=True, slots=True)
class TreeRequest:
    """What the verifying process asks of this one, sent as one JSON object on stdin."""

    url: str
    log_id: int
    size: int
    chain_from: int | None = None
    origin: str = ""
    roots_at: list[int] = field(default_factory=list)
    #: ``[start, stop)``: check the stored runtime records of these segments instead.
    records: list[int] | None = None
    #: With ``records``: check the values kept off the log for them too.
    values: bool = True

    def to_json(self) -> str:
        """Return the request as the JSON text written to the helper's stdin."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TreeRequest:
        """Read a request written by :meth:`to_json`."""
        raw = json.loads(text)
        return cls(
            str(raw["url"]),
            int(raw["log_id"]),
            int(raw["size"]),
            None if raw.get("chain_from") is None else int(raw["chain_from"]),
            str(raw.get("origin", "")),
            [int(s) for s in raw.get("roots_at", [])],
            None if raw.get("records") is None else [int(s) for s in raw["records"]],
            bool(raw.get("values", True)),
        )


@dataclass(slots=True)
class TreeAnswer:
    """What the helper found, printed as one JSON line on stdout.

    ``stage`` names where a failure was found (``chain`` or ``records``) with
    its ``kind``, ``seq`` and ``message``; the chain fields say where the
    helper's range begins and ends. Its part of the tree (hashes in hex):
    ``nodes``, the stored-node candidates wholly inside the range, as
    ``[level, index, hash]``; ``tail``, the perfect subtrees tiling the range,
    as ``[level, hash]``; ``parts``, the same up to each kept checkpoint's size
    in the range. ``error`` says the helper itself broke, so the caller does
    its part instead.
    """

    ok: bool = True
    stage: str | None = None
    kind: str | None = None
    seq: int | None = None
    message: str = ""
    chain_size: int = 0
    first_prev: str | None = None
    first_time: str | None = None
    last_hash: str | None = None
    last_time: str | None = None
    nodes: list[tuple[int, int, str]] = field(default_factory=list)
    tail: list[tuple[int, str]] = field(default_factory=list)
    parts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    error: str | None = None
    #: How many runtime records were checked (a ``records`` request).
    records: int = 0

    def fail(self, exc: VerificationError, stage: str) -> TreeAnswer:
        """Record the first failure found, at ``stage``; return self."""
        self.ok, self.stage, self.kind, self.seq, self.message = (
            False,
            stage,
            exc.kind,
            exc.seq,
            str(exc),
        )
        return self

    def raise_failure(self, kind: str | None = None) -> None:
        """Raise the failure recorded (as ``kind`` when given)."""
        raise VerificationError(self.message, kind=kind or self.kind or "hash", seq=self.seq)

    def to_json(self) -> str:
        """Return the answer as one JSON line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TreeAnswer:
        """Read an answer written by :meth:`to_json`; a broken answer is an ``error``."""
        try:
            raw = json.loads(text.strip().splitlines()[-1])
            return cls(**raw)
        except (ValueError, IndexError, TypeError):
            return cls(ok=False, error="no answer")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a scan over a log, and restore it after.

    A scan makes and drops millions of rows, lists and tuples, none in a cycle:
    the collector's passes over them cost about a tenth of a verify and free
    nothing (reference counting frees them). Cycles made meanwhile wait.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fold_stored_tree(request: TreeRequest) -> TreeAnswer:
    """Check the chain of events ``chain_from`` to ``size - 1`` and hash their part of the tree.

    The first event is trusted to link to the one before it (the caller checks
    that link, and builds the tree of the events before ``chain_from``). The
    nodes up to each size of ``roots_at`` (the kept checkpoints) in the range
    are recorded on the way, as ``parts``.
    """
    answer = TreeAnswer()
    store = Store.connect(request.url)
    try:
        with store.snapshot() as snap:
            try:
                with gc_paused():
                    _check_chain(snap, answer, request)
            except VerificationError as exc:
                return TreeAnswer().fail(exc, "chain")
    finally:
        store.close()
    return answer


def _check_chain(snap: Any, answer: TreeAnswer, request: TreeRequest) -> None:
    """Verify events ``chain_from`` to ``size - 1``, recording in ``answer`` what the caller needs.

    Records where the range begins and ends, and its part of the tree.
    """
    start = request.chain_from
    if start is None:
        raise ValueError("a chain request names the event its half starts at")
    chunks = snap.scan(request.log_id, start=start, stop=request.size, columns=True)
    first: list[Any] = next(chunks, [])
    if not first:
        return
    try:
        event = loads_strict(first[0][2])
        prev, stamp = bytes.fromhex(event["prev"]), str(event["time"])
    except (AuditmlError, KeyError, TypeError, ValueError):
        raise VerificationError(
            "its bytes are not a valid event", kind="format", seq=start
        ) from None
    verifier = ChainVerifier(
        request.origin,
        start=start,
        prev_hash=prev,
        last_time=stamp,
        subrange=SubRange(start),
        roots_at=[size for size in request.roots_at if size > start],
    )
    verifier.feed(first)
    del first
    for chunk in chunks:
        verifier.feed(chunk)
    state = verifier.state()
    answer.chain_size = state.size - start
    answer.first_prev, answer.first_time = prev.hex(), stamp
    answer.last_hash, answer.last_time = state.last_hash.hex(), state.last_time
    answer.nodes = [(level, index, node.hex()) for level, index, node in state.nodes]
    answer.tail = _hex_nodes(verifier.subrange_nodes())
    answer.parts = {str(size): _hex_nodes(nodes) for size, nodes in verifier.parts.items()}


def _hex_nodes(nodes: Iterable[tuple[int, bytes]]) -> list[tuple[int, str]]:
    return [(level, node.hex()) for level, node in nodes]


def read_nodes(nodes: Iterable[Sequence[Any]]) -> list[tuple[int, bytes]]:
    """Read ``[level, hash]`` pairs of an answer back as ``(level, hash bytes)``."""
    return [(int(level), bytes.fromhex(node)) for level, node in nodes]


def check_records(
    snap: Snapshot,
    log_id: int,
    segments: Sequence[tuple[int, bytes]],
    start: int,
    stop: int,
    head: int,
    rows: Iterable[Sequence[Sequence[Any]]],
    values: Iterable[Sequence[Sequence[Any]]] | None = None,
) -> SegmentVerifier:
    """Check the stored records ``rows`` against the segments ``start`` to ``stop - 1``.

    ``head`` is the log's size: records claiming a segment at or beyond it are
    named as such. ``values`` are the values kept off the log for those
    records, in their order. Returns the verifier, finished (every segment's
    records seen).
    """
    checker = SegmentVerifier(
        segments,
        start=start,
        stop=stop,
        head=head,
        reread=lambda seg: snap.segment_records(log_id, seg),
        values=values,
        body_at=lambda seg, i: snap.record_body(log_id, seg, i),
    )
    for chunk in rows:
        checker.feed(chunk)
    checker.finish()
    return checker


def check_record_range(request: TreeRequest) -> TreeAnswer:
    """Check the stored runtime records of the segments in ``request.records``."""
    assert request.records is not None
    start, stop = request.records
    store = Store.connect(request.url)
    try:
        with store.snapshot() as snap:
            segments = [
                (seq, bytes(body)) for seq, _, body in snap.kept_segments(request.log_id, stop)
            ]
            try:
                checker = check_records(
                    snap,
                    request.log_id,
                    segments,
                    start,
                    stop,
                    request.size,
                    snap.scan_records(request.log_id, start, stop),
                    snap.scan_values(request.log_id, start, stop) if request.values else None,
                )
            except VerificationError as exc:
                return TreeAnswer().fail(exc, "records")
    finally:
        store.close()
    return TreeAnswer(records=checker.records)  # its values too


def main() -> None:
    """Read one request from stdin and print the answer as one JSON line."""
    try:
        request = TreeRequest.from_json(sys.stdin.read())
        if request.records is not None:
            answer = check_record_range(request)
        else:
            answer = fold_stored_tree(request)
    except AuditmlError as exc:
        answer = TreeAnswer(ok=False, error=exc.diagnostics())
    sys.stdout.write(answer.to_json() + "\n")


if __name__ == "__main__":
    main()
