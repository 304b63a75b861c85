"""Fold a log's stored leaf hashes into its Merkle tree, for a verify that uses two cores.

A parallel verify splits the work two ways. By range: the calling process
checks the chain of the first events, this process the rest, and the caller
checks the link where the two ranges meet. By kind: this process also rebuilds
the tree from the stored hash column alone, which the chain checks prove
equal to the hashes of the bytes. It runs as ``python -m
auditml._internal.tree_worker`` (not multiprocessing), so a user's unguarded script is
never re-imported; the request arrives on stdin, so no password shows in ``ps``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from auditml.core.canonical import loads_strict
from auditml.core.chain import NODE_LEVEL, ChainVerifier, check_nodes
from auditml.core.merkle import CompactRange
from auditml.errors import AuditmlError, VerificationError
from auditml.store import Store

__all__ = ["fold_stored_tree"]


def fold_stored_tree(
    url: str,
    log_id: int,
    size: int,
    chain_from: int | None = None,
    origin: str = "",
    roots_at: list[int] | None = None,
) -> dict[str, Any]:
    """Rebuild the tree of the first ``size`` events; check the chain from ``chain_from`` on.

    The tree takes the stored hashes of the events before ``chain_from`` (the
    caller proves those equal to the hashes of their bytes) and the recomputed
    hashes of the rest. The first event from ``chain_from`` is trusted to link
    to the one before it; the caller checks that link. Then the stored tree
    nodes are checked against the tree. The root at each size of ``roots_at``
    (the kept checkpoints) is recorded on the way, as ``roots``.
    """
    result: dict[str, Any] = {"ok": True}
    stored_until = size if chain_from is None else chain_from
    store = Store.connect(url)
    try:
        with store.snapshot() as snap:
            frontier = CompactRange()
            nodes: list[tuple[int, int, bytes]] = []
            wanted = sorted(set(roots_at or ()))
            roots: dict[int, bytes] = {}
            for chunk in snap.scan_hashes(log_id, stored_until):
                nodes += frontier.extend_recording(chunk, wanted, roots, min_level=NODE_LEVEL)
            result["roots"] = roots
            if chain_from is not None:
                try:
                    found, frontier, more = _check_chain(
                        snap, log_id, size, chain_from, origin, frontier, wanted, roots
                    )
                except VerificationError as exc:
                    return _failure(exc, "chain")
                result.update(found)
                nodes += more
            try:
                check_nodes(snap.nodes(log_id, NODE_LEVEL), nodes)
            except VerificationError as exc:
                result.update(_failure(exc, "tree"))
                return result
    finally:
        store.close()
    result.update(
        size=frontier.size,
        root=frontier.root().hex(),
        frontier=frontier.to_bytes().hex(),
        roots={str(k): v.hex() for k, v in roots.items()},
    )
    return result


def _check_chain(
    snap: Any,
    log_id: int,
    size: int,
    start: int,
    origin: str,
    frontier: CompactRange,
    wanted: list[int],
    roots: dict[int, bytes],
) -> tuple[dict[str, Any], CompactRange, tuple[tuple[int, int, bytes], ...]]:
    """Verify events ``start`` to ``size - 1``, growing ``frontier`` over them.

    Returns where the range begins and ends, the grown frontier, and the tree
    nodes it completed.
    """
    chunks = snap.scan(log_id, start=start, stop=size, columns=True)
    first: list[Any] = next(chunks, [])
    if not first or frontier.size != start:
        return {"chain_size": 0}, frontier, ()
    try:
        event = loads_strict(first[0][2])
        prev, stamp = bytes.fromhex(event["prev"]), str(event["time"])
    except (AuditmlError, KeyError, TypeError, ValueError):
        raise VerificationError(
            "its bytes are not a valid event", kind="format", seq=start
        ) from None
    verifier = ChainVerifier(
        origin, start=start, prev_hash=prev, last_time=stamp, frontier=frontier, roots_at=wanted
    )
    verifier.feed(first)
    for chunk in chunks:
        verifier.feed(chunk)
    state = verifier.state()
    roots.update(verifier.roots)
    found = {
        "chain_size": state.size - start,
        "first_prev": prev.hex(),
        "first_time": stamp,
        "last_hash": state.last_hash.hex(),
        "last_time": state.last_time,
    }
    return found, state.frontier, state.nodes


def _failure(exc: VerificationError, stage: str) -> dict[str, Any]:
    return {"ok": False, "stage": stage, "kind": exc.kind, "seq": exc.seq, "message": str(exc)}


def main() -> None:
    """Read one request from stdin and print the result as one JSON line."""
    request = json.loads(sys.stdin.read())
    try:
        result = fold_stored_tree(
            request["url"],
            int(request["log_id"]),
            int(request["size"]),
            request.get("chain_from"),
            request.get("origin", ""),
            [int(s) for s in request.get("roots_at", [])],
        )
    except AuditmlError as exc:
        result = {"error": exc.diagnostics()}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
