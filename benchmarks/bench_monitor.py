"""Monitor benchmark: ``auditml monitor`` over a window of many runtime records, against its floor.

    python benchmarks/bench_monitor.py [--records 1000000] [--rounds 3] [--db-dir DIR] [--keep]
    python benchmarks/bench_monitor.py --reuse PATH/monitor.db [--rounds 3]

``--keep`` leaves the log built (its path goes to stderr); ``--reuse`` measures a log
kept that way again, without building it (each run adds its ``monitor.check`` events).

Prints, measured in one run on SQLite:

- ``AuditLog.monitor`` (what ``auditml monitor`` runs) over a window that holds
  ``--records`` runtime records of a canary at 10% and its stable version: it
  reads every record of the window from its verified bytes (each segment's
  records hashed into its Merkle root and held to the segment event), computes
  error rates, latency quantiles and the PSI of the score, and records a
  ``monitor.check``;
- its floors, measured on the same records in the same run: a raw ``sqlite3``
  scan of the window's record bodies (SELECT only), and that scan with one
  SHA-256 per record and one orjson parse per record, which is the least a
  reader that stands on verified bytes must do;
- ``auditml monitor`` run as a command in the same rounds (process start and
  imports included);
- the ratios of the monitor to each floor, best and median of ``--rounds`` of each,
  interleaved, and the statistics the monitor computed (to compare across changes).

The log is built through the bulk path (``Ledger.append_segment``, what a
``Recorder`` ends in), 1,000 records a segment, after the rollout started.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from auditml import AuditLog, Draft
from auditml._internal.identity import resolve_actor
from auditml.core.canonical import canonical_bytes
from auditml.core.events import SegmentData
from auditml.core.merkle import leaf_hash, root_of
from auditml.core.policy import policy_from_toml

ORIGIN = "bench.example/credit-models"
MODEL, ENV = "credit", "production"
SEGMENT = 1_000
DS, VAL, OPS = "ds@bank.example", "val@bank.example", "ops@bank.example"
POLICY = b"""
[monitor.production]
triggers = ["error_rate > 0.02", "latency_p95_ms > 250", "score_psi(score) > 0.2"]
min_requests = 500
window = "1h"
"""


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(url: str, count: int) -> float:
    """Build a log with v1 stable and v2 a 10% canary, then ``count`` records; return seconds."""
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin")
    started = time.perf_counter()
    with log:
        log.record_training(MODEL, actor=DS)
        log.record_training(MODEL, actor=DS)
        log.approve(MODEL, "1", actor=VAL)
        log.approve(MODEL, "2", actor=VAL)
        log.deploy(MODEL, "1", ENV, actor=OPS)
        log.apply_policy(policy_from_toml(POLICY, where="bench policy"), actor="admin")
        log.deploy(MODEL, "2", ENV, actor=OPS, traffic="10%")
        ledger = log._ledger  # the bulk path: the call Recorder._commit ends in
        who = resolve_actor("serving@bank.example")
        rng = random.Random(19)
        start = datetime.now(UTC) + timedelta(seconds=1)
        stream = f"{MODEL}/{ENV}"
        dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
        k = 0
        while k < count:
            n = min(SEGMENT, count - k)
            rows: list[tuple[Any, ...]] = []
            leaves, times = [], []
            for i in range(n):
                version = "2" if (k + i) % 10 == 0 else "1"
                when = _stamp(start + timedelta(microseconds=k + i))
                latency = round(rng.uniform(1, 80), 3) + 0.0005
                error = "timeout" if rng.random() < (0.03 if version == "2" else 0.01) else None
                record = {
                    "v": 1,
                    "stream": stream,
                    "i": i,
                    "request_id": f"req-{k + i:010d}",
                    "time": when,
                    "model": MODEL,
                    "version": version,
                    "env": ENV,
                    "output": {"label": "refer", "score": round(rng.random(), 4) + 0.00005},
                    "latency_ms": latency,
                    "error": error,
                    "commitments": {},
                }
                body = dumps(record, option=sort)
                if (k + i) % 1000 == 0:
                    assert body == canonical_bytes(record), body
                rows.append(
                    (i, record["request_id"], when, MODEL, version, ENV, latency, error, body)
                )
                leaves.append(leaf_hash(body))
                times.append(when)
            data = SegmentData(
                stream=stream,
                count=n,
                root=root_of(leaves).hex(),
                first_time=min(times),
                last_time=max(times),
                model=MODEL,
                env=ENV,
                versions=sorted({r[4] for r in rows}),
            )
            draft = Draft.build("runtime.segment", actor=who, subject={"model": MODEL}, data=data)
            ledger.append_segment(draft, rows)
            k += n
    return time.perf_counter() - started


def floor_scan(path: str) -> float:
    """Read the window's record bodies with one plain SELECT, streaming; return seconds."""
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    cur = conn.execute("SELECT seg, i, body FROM auditml_record WHERE log_id = 1 ORDER BY seg, i")
    while cur.fetchmany(5000):
        pass
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def floor_verified(path: str) -> float:
    """Return the scan plus one SHA-256 and one orjson parse per record."""
    conn = sqlite3.connect(path)
    sha256, loads = hashlib.sha256, orjson.loads
    t0 = time.perf_counter()
    cur = conn.execute("SELECT seg, i, body FROM auditml_record WHERE log_id = 1 ORDER BY seg, i")
    while rows := cur.fetchmany(5000):
        for row in rows:
            sha256(b"\x00" + row[2]).digest()
            loads(row[2])
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def monitor_seconds(url: str, window: str = "1h") -> tuple[float, dict[str, Any]]:
    """Run the monitor over the whole window (it records a check); return seconds and counts."""
    with AuditLog.open(url) as log:
        t0 = time.perf_counter()
        result = log.monitor(MODEL, ENV, window=window)
        return time.perf_counter() - t0, result.as_dict()


def command_seconds(url: str, window: str = "1h") -> float:
    """Run ``auditml monitor`` as a whole process (start, imports, the read); return seconds."""
    command = [sys.executable, "-m", "auditml", "monitor", MODEL, "--env", ENV]
    command += ["--window", window, "--db", url]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 4):  # 4: tripped, as the canary is built to
        raise SystemExit(f"auditml monitor failed: {done.stderr.decode(errors='replace')}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    """Build the log, measure the monitor and its floors, print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", type=Path, default=None, help="a log kept by --keep")
    args = parser.parse_args(argv)
    if args.reuse is not None:
        folder, path, window = args.reuse.parent, str(args.reuse), "10000h"  # the rollout bounds it
        url = f"sqlite:///{path}"
    else:
        folder = Path(tempfile.mkdtemp(dir=args.db_dir))
        path, window = str(folder / "monitor.db"), "1h"
        url = f"sqlite:///{path}"
        building = f"building a log of {args.records:,} runtime records (10% canary)..."
        print(building, file=sys.stderr)
        print(f"build: {build(url, args.records):.1f} s")
    runs: dict[str, list[float]] = {"monitor": [], "command": [], "scan": [], "verified": []}
    result: dict[str, Any] = {}
    for _ in range(args.rounds):
        seconds, result = monitor_seconds(url, window)
        runs["monitor"].append(seconds)
        runs["command"].append(command_seconds(url, window))
        runs["scan"].append(floor_scan(path))
        runs["verified"].append(floor_verified(path))
    best = {name: min(values) for name, values in runs.items()}
    middle = {name: statistics.median(values) for name, values in runs.items()}
    counts = result["counts"]
    print(
        f"monitor over {counts['canary'] + counts['stable']:,} records "
        f"(canary {counts['canary']:,}, stable {counts['stable']:,}; verdict {result['verdict']}): "
        f"best {best['monitor']:.2f} s, median {middle['monitor']:.2f} s (budget 2 s)"
    )
    print(
        f"`auditml monitor` as a command, whole process: best {best['command']:.2f} s, "
        f"median {middle['command']:.2f} s"
    )
    print(
        f"floor, raw sqlite3 scan of the bodies: best {best['scan']:.2f} s, "
        f"median {middle['scan']:.2f} s"
    )
    print(
        "floor, scan + one SHA-256 + one orjson parse per record: "
        f"best {best['verified']:.2f} s, median {middle['verified']:.2f} s"
    )
    for name, label in (("scan", "raw scan"), ("verified", "scan+hash+parse")):
        print(
            f"ratio monitor / {label}: best {best['monitor'] / best[name]:.2f}, "
            f"median {middle['monitor'] / middle[name]:.2f}"
        )
    print(f"statistics: {json.dumps(result.get('statistics'), sort_keys=True)}")
    if args.reuse is None and not args.keep:
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    elif args.reuse is None:
        print(f"kept {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
