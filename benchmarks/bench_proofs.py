"""Proof benchmark: inclusion and consistency proofs on a 1,000,000-event log.

    python benchmarks/bench_proofs.py [--events 1000000] [--proofs 300] [--db PATH] [--pg URL]

Builds the log once with ``append_many`` (or reuses ``--db`` when it already
holds enough events), then asks for proofs at random leaves and sizes through
the public API, exactly as ``auditml prove`` does. Each call opens a fresh read
snapshot, reads the stored interior nodes it needs and at most a few hundred
leaf hashes, and never reads every leaf. Every proof is checked with the
library's RFC 9162 verifier outside the timed section. Also times the
``auditml prove`` command end to end (process start included), and with
``--pg`` the same API figures on PostgreSQL.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditml import Actor, AuditLog, Draft
from auditml.core.merkle import verify_consistency, verify_inclusion

BATCH = 10_000
ORIGIN = "bench.example/proofs"


def drafts(start: int, count: int, actor: Actor) -> list[Draft]:
    """Return ``count`` evaluation drafts, spread over seven models."""
    return [
        Draft.build(
            "model.evaluate",
            actor=actor,
            subject={"model": f"model-{i % 7}", "version": str(1 + i // 10_000)},
            data={"metrics": {"auc": 0.8 + (i % 997) / 10_000, "n": 10_000 + i}},
        )
        for i in range(start, start + count)
    ]


def build(url: str, total: int) -> AuditLog:
    """Open the log at ``url``, filling it to ``total`` events if it holds fewer."""
    actor = Actor(id="pipeline@bench.example", source="api")
    try:
        log = AuditLog.open(url)
    except Exception:
        log, _ = AuditLog.init(url, origin=ORIGIN, actor=actor, checkpoint_every=100_000)
    done = log.head().size
    t0 = time.perf_counter()
    while done < total:
        n = min(BATCH, total - done)
        log.append_many(drafts(done, n, actor), imported=True)
        done += n
        if done % 100_000 < BATCH:
            print(f"  built {done:,} events ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return log


def timed(call: Callable[[], Any], runs: int) -> tuple[list[float], list[Any]]:
    """Return the wall time in ms of each of ``runs`` calls, and what they returned."""
    times, results = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        results.append(call())
        times.append((time.perf_counter() - t0) * 1000)
    return times, results


def summary(label: str, times: list[float]) -> None:
    """Print median, p95 and max of ``times`` (ms)."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(
        f"{label:<44} median {statistics.median(ordered):6.2f} ms   "
        f"p95 {p95:6.2f} ms   max {ordered[-1]:6.2f} ms   ({len(ordered)} proofs)"
    )


def check_inclusion(proof: dict[str, Any]) -> None:
    """Raise unless ``proof`` verifies."""
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["leaf_index"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )


def check_consistency(proof: dict[str, Any]) -> None:
    """Raise unless ``proof`` verifies."""
    verify_consistency(
        proof["size1"],
        proof["size2"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root1"]),
        bytes.fromhex(proof["root2"]),
    )


def measure(log: AuditLog, proofs: int, backend: str) -> None:
    """Time inclusion and consistency proofs at random leaves and sizes on ``log``."""
    size = log.head().size
    rng = random.Random(9162)
    seqs = iter([rng.randrange(size) for _ in range(proofs)])
    times, results = timed(lambda: log.prove_inclusion(next(seqs)), proofs)
    for proof in results:
        check_inclusion(proof)
    summary(f"{backend}: inclusion, latest size {size:,}", times)

    def older() -> dict[str, Any]:
        n = rng.randrange(2, size + 1)
        return log.prove_inclusion(rng.randrange(n), n)

    times, results = timed(older, proofs)
    for proof in results:
        check_inclusion(proof)
    summary(f"{backend}: inclusion, random earlier sizes", times)

    def consistency() -> dict[str, Any]:
        n = rng.randrange(2, size + 1)
        return log.prove_consistency(rng.randrange(1, n), n)

    times, results = timed(consistency, proofs)
    for proof in results:
        check_consistency(proof)
    summary(f"{backend}: consistency, random size pairs", times)


def cli(url: str, size: int) -> None:
    """Time ``auditml prove`` as a user runs it, process start included."""
    exe = str(Path(sys.executable).with_name("auditml"))
    for args in (["inclusion", str(size // 3)], ["consistency", str(size // 2)]):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([exe, "prove", *args, "--db", url], check=True, capture_output=True)
            runs.append((time.perf_counter() - t0) * 1000)
        print(f"CLI: auditml prove {args[0]:<12} median of 3 {statistics.median(runs):7.1f} ms")


def main() -> None:
    """Build or reuse the log, then print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=300)
    parser.add_argument("--db", help="SQLite file to build or reuse (default: a temp folder)")
    parser.add_argument("--pg", help="also measure on this PostgreSQL URL (built there too)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "proofs.db"
        url = f"sqlite:///{path}"
        t0 = time.perf_counter()
        with build(url, args.events) as log:
            print(f"log of {log.head().size:,} events ready in {time.perf_counter() - t0:.1f} s")
            measure(log, args.proofs, "SQLite")
        cli(url, args.events)
        if args.pg:
            with build(args.pg, args.events) as log:
                measure(log, args.proofs, "PostgreSQL")
    print("target: each proof 50 ms or less on a 1,000,000-event log")


if __name__ == "__main__":
    main()
