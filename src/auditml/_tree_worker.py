"""Fold a log's stored leaf hashes into its Merkle tree, for a verify that uses two cores.

A parallel verify splits the work by kind, not by range: the calling process
recomputes every leaf hash from the event bytes and checks that it equals the
stored hash column and links the chain; this process reads only that hash
column and rebuilds the tree from it. Together they check every hash against
the bytes and the root against the head. It runs as ``python -m
auditml._tree_worker`` (not multiprocessing), so a user's unguarded script is
never re-imported; the request arrives on stdin, so no password shows in ``ps``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from auditml.chain import NODE_LEVEL
from auditml.errors import AuditmlError, VerificationError
from auditml.merkle import CompactRange
from auditml.store import Store

__all__ = ["fold_stored_tree"]


def fold_stored_tree(url: str, log_id: int, size: int) -> dict[str, Any]:
    """Rebuild the tree of the first ``size`` stored hashes and check the stored nodes against it."""
    from auditml.ledger import check_nodes  # the ledger imports this module lazily too

    store = Store.connect(url)
    try:
        with store.snapshot() as snap:
            frontier = CompactRange()
            nodes: list[tuple[int, int, bytes]] = []
            for chunk in snap.scan_hashes(log_id, size):
                nodes += frontier.extend(chunk, min_level=NODE_LEVEL)
            try:
                check_nodes(snap.nodes(log_id, NODE_LEVEL), nodes)
            except VerificationError as exc:
                return {"ok": False, "kind": exc.kind, "seq": exc.seq, "message": str(exc)}
    finally:
        store.close()
    return {
        "ok": True,
        "size": frontier.size,
        "root": frontier.root().hex(),
        "frontier": frontier.to_bytes().hex(),
    }


def main() -> None:
    """Read one request from stdin and print the result as one JSON line."""
    request = json.loads(sys.stdin.read())
    try:
        result = fold_stored_tree(request["url"], int(request["log_id"]), int(request["size"]))
    except AuditmlError as exc:
        result = {"error": exc.diagnostics()}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
