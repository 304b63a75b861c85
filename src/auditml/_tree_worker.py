"""Fold a log's stored leaf hashes into its Merkle tree, for a verify that uses two cores.

A parallel verify splits the work two ways. By range: the calling process
checks the chain of the first events, this process the rest, and the caller
checks the link where the two ranges meet. By kind: this process also rebuilds
the tree from the stored hash column alone, which the chain checks prove
equal to the hashes of the bytes. It runs as ``python -m
auditml._tree_worker`` (not multiprocessing), so a user's unguarded script is
never re-imported; the request arrives on stdin, so no password shows in ``ps``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from auditml.canonical import loads_strict
from auditml.chain import NODE_LEVEL, ChainVerifier
from auditml.errors import AuditmlError, VerificationError
from auditml.merkle import CompactRange
from auditml.store import Store

__all__ = ["fold_stored_tree"]


def fold_stored_tree(
    url: str, log_id: int, size: int, chain_from: int | None = None, origin: str = ""
) -> dict[str, Any]:
    """Check the chain of events ``chain_from`` to ``size - 1`` (if given), then rebuild the tree.

    The first event of that range is trusted to link to the one before it; the
    caller checks that link. The tree covers the stored hashes ``0`` to
    ``size - 1`` and is checked against the stored nodes.
    """
    from auditml.ledger import check_nodes  # the ledger imports this module lazily too

    result: dict[str, Any] = {"ok": True}
    store = Store.connect(url)
    try:
        with store.snapshot() as snap:
            if chain_from is not None:
                try:
                    result.update(_check_chain(snap, log_id, size, chain_from, origin))
                except VerificationError as exc:
                    return _failure(exc, "chain")
            frontier = CompactRange()
            nodes: list[tuple[int, int, bytes]] = []
            for chunk in snap.scan_hashes(log_id, size):
                nodes += frontier.extend(chunk, min_level=NODE_LEVEL)
            try:
                check_nodes(snap.nodes(log_id, NODE_LEVEL), nodes)
            except VerificationError as exc:
                result.update(_failure(exc, "tree"))
                return result
    finally:
        store.close()
    result.update(
        size=frontier.size, root=frontier.root().hex(), frontier=frontier.to_bytes().hex()
    )
    return result


def _check_chain(snap: Any, log_id: int, size: int, start: int, origin: str) -> dict[str, Any]:
    """Verify events ``start`` to ``size - 1``; return where the range begins and ends."""
    chunks = snap.scan(log_id, start=start, stop=size)
    first: list[Any] = next(chunks, [])
    if not first:
        return {"chain_size": 0}
    try:
        event = loads_strict(first[0][2])
        prev, stamp = bytes.fromhex(event["prev"]), str(event["time"])
    except (AuditmlError, KeyError, TypeError, ValueError):
        raise VerificationError(
            "its bytes are not a valid event", kind="format", seq=start
        ) from None
    verifier = ChainVerifier(origin, tree=False, start=start, prev_hash=prev, last_time=stamp)
    verifier.feed(first)
    for chunk in chunks:
        verifier.feed(chunk)
    state = verifier.state()
    return {
        "chain_size": state.size - start,
        "first_prev": prev.hex(),
        "first_time": stamp,
        "last_hash": state.last_hash.hex(),
        "last_time": state.last_time,
    }


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
        )
    except AuditmlError as exc:
        result = {"error": exc.diagnostics()}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
