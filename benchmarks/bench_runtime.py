"""Runtime records benchmark, the read side: verify against its floor, peak RSS, trace latency.

    python benchmarks/bench_runtime.py [--verify-records 1000000] [--records 10000000]
                                       [--db-dir DIR] [--keep]

Prints, measured in one run:

- ``verify``'s records pass (every record against its segment root, its
  columns against its bytes, and every value kept off the log against its
  salt and its record) on a log of ``--verify-records`` records (SQLite), in
  one process and with its helper process, against its floor: one plain loop
  that runs the same SELECT over ``auditml_record``, streaming, and computes
  one SHA-256 per record (and, as a second floor, the value rows read and
  hashed too); best of ``--rounds`` of each, interleaved. Peak RSS is measured
  in a fresh process running the whole ``verify`` (chain, records, values);
- ``auditml trace`` (``auditml.serving.trace``, what the command runs) on a log
  of ``--records`` records (SQLite): median and p99 over random request ids,
  with the query plan of the request id lookup.

The write figures (records/s against the insert floor, ``record()`` latency,
PostgreSQL with 4 writers) are ``benchmarks/bench_runtime_write.py``'s.

How the logs are built (the bulk path). The model is trained, approved and
deployed to production through the public API. Records are then committed
through ``Ledger.append_segment``, the call ``Recorder`` itself ends in, one
segment of 1,000 records (``Recorder``'s default) per transaction: each record
is a format section 6 record with a salted commitment to its subject, whose
value row is stored too. The bodies are encoded with orjson (sorted keys),
which gives RFC 8785 bytes for the values used here (ASCII text, numbers that
are not whole); every 1,000th body is checked against
``auditml.core.canonical.canonical_bytes``. So the logs are what a recorder
writes, only built without ``record()``'s per-call validation, and they verify.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
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
from auditml.store import RECORD_COLUMNS, VALUE_COLUMNS

ORIGIN = "bench.example/credit-models"
MODEL, ENV = "credit", "production"
SEGMENT = 1_000
DS, VAL, OPS = "ds@bank.example", "val@bank.example", "ops@bank.example"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def request_id(k: int) -> str:
    """Return the request id of the ``k``-th record of a benchmark log."""
    return f"req-{k:010d}"


def build(url: str, count: int, *, quiet: bool = False) -> float:
    """Build a log of ``count`` runtime records of one deployed version; return its seconds."""
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin")
    started = time.perf_counter()
    with log:
        log.record_training(MODEL, actor=DS)
        log.approve(MODEL, "1", actor=VAL, reason="VR-1")
        log.deploy(MODEL, "1", ENV, actor=OPS)
        ledger = log._ledger  # the bulk path: the call Recorder._commit ends in
        who = resolve_actor("serving@bank.example")
        rng = random.Random(17)
        start = datetime.now(UTC) + timedelta(seconds=1)
        stream = f"{MODEL}/{ENV}"
        dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
        sha256, token = hashlib.sha256, os.urandom
        k = 0
        while k < count:
            n = min(SEGMENT, count - k)
            rows: list[tuple[Any, ...]] = []
            values: list[tuple[Any, ...]] = []
            leaves = []
            times = []
            for i in range(n):
                rid = request_id(k + i)
                when = _stamp(start + timedelta(microseconds=k + i))
                subject = f"customer-{rng.randrange(10**9):09d}"
                salt = token(32)
                held = dumps(subject)
                commitment = sha256(salt + held).hexdigest()
                latency = round(rng.uniform(1, 80), 3) + 0.0005
                record = {
                    "v": 1,
                    "stream": stream,
                    "i": i,
                    "request_id": rid,
                    "time": when,
                    "model": MODEL,
                    "version": "1",
                    "env": ENV,
                    "output": {
                        "label": "refer" if (k + i) % 3 else "approve",
                        "score": round(rng.random(), 4) + 0.00005,
                    },
                    "latency_ms": latency,
                    "error": "timeout" if (k + i) % 997 == 0 else None,
                    "commitments": {"subject": commitment},
                }
                body = dumps(record, option=sort)
                if (k + i) % 1000 == 0:
                    assert body == canonical_bytes(record), body
                rows.append((i, rid, when, MODEL, "1", ENV, latency, record["error"], body))
                values.append((commitment, i, "subject", salt, held))
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
                versions=["1"],
            )
            draft = Draft.build("runtime.segment", actor=who, subject={"model": MODEL}, data=data)
            ledger.append_segment(draft, rows, values)
            k += n
            if not quiet and k % 500_000 < SEGMENT:
                rate = k / (time.perf_counter() - started)
                print(f"  {k:,} records ({rate:,.0f}/s)", file=sys.stderr)
        log.checkpoint()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- verify


def floor(path: str) -> float:
    """Read the records with verify's SELECT, streaming, and hash each once; return seconds."""
    conn = sqlite3.connect(path)
    sha256 = hashlib.sha256
    t0 = time.perf_counter()
    cur = conn.execute(
        f"SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record "
        "WHERE log_id = ? AND seg < ? ORDER BY seg, i",
        (1, 2**62),
    )
    while rows := cur.fetchmany(5000):
        for row in rows:
            sha256(b"\x00" + row[-1]).digest()
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def floor_with_values(path: str) -> float:
    """Return the floor plus reading the values kept off the log and hashing each once."""
    seconds = floor(path)
    conn = sqlite3.connect(path)
    sha256 = hashlib.sha256
    t0 = time.perf_counter()
    cur = conn.execute(
        f"SELECT {', '.join(VALUE_COLUMNS)} FROM auditml_value WHERE +log_id = ? ORDER BY rowid",
        (1,),
    )
    while rows := cur.fetchmany(5000):
        for row in rows:
            sha256(row[4] + row[5]).digest()
    seconds += time.perf_counter() - t0
    conn.close()
    return seconds


def verify_records_seconds(url: str, parallel: bool, values: bool = True) -> tuple[float, int]:
    """Run verify's records pass (with their values, by default); return (seconds, count)."""
    with AuditLog.open(url) as log:
        size = log.head().size
        t0 = time.perf_counter()
        cpu0, helper0 = time.process_time(), _children_cpu()
        checked = log._ledger.verify_records(size, parallel=parallel, values=values)
        CPU[(parallel, values)] = (time.process_time() - cpu0, _children_cpu() - helper0)
        return time.perf_counter() - t0, checked


#: CPU seconds of the last run of each kind: (this process, its helper process).
CPU: dict[tuple[bool, bool], tuple[float, float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor_cpu(path: str) -> float:
    """Return the CPU seconds of one floor run (what an idle machine's wall time would be)."""
    t0 = time.process_time()
    floor(path)
    return time.process_time() - t0


# ru_maxrss survives exec on Linux, so the child reads its own high-water mark, VmHWM.
RSS_CHILD = """
import resource, sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from auditml import AuditLog
with AuditLog.open(sys.argv[1]) as log:
    before = hwm()
    t0 = time.perf_counter()
    report = log.verify()
    seconds = time.perf_counter() - t0
after = hwm()
helper = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(report.size, before, after, helper, seconds)
"""


def verify_rss(url: str) -> tuple[int, float, float, float, float]:
    """Run the whole verify in a fresh process; return (size, MB before, peak MB, helper MB, s)."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, url], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1]) / 1024, int(out[2]) / 1024, int(out[3]) / 1024, float(out[4])


# ---------------------------------------------------------------------------- trace


def trace_times(url: str, count: int, samples: int) -> list[float]:
    """Trace ``samples`` random requests, each on a freshly opened log; return milliseconds."""
    from auditml.serving import trace

    rng = random.Random(5)
    out = []
    with AuditLog.open(url) as log:
        trace(log, request_id(0))  # warm the imports and the connection pool
        for _ in range(samples):
            rid = request_id(rng.randrange(count))
            t0 = time.perf_counter()
            found = trace(log, rid)
            out.append((time.perf_counter() - t0) * 1000)
            assert found.records and found.records[0].proof_ok, found
    return out


def query_plan(path: str) -> list[str]:
    """Return SQLite's plan for the request id lookup ``auditml trace`` runs."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record "
            "WHERE log_id = ? AND request_id = ? ORDER BY +seg, +i",
            (1, request_id(0)),
        ).fetchall()
    finally:
        conn.close()
    return [str(row[-1]) for row in rows]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify-records", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000_000, help="records of the trace log")
    parser.add_argument("--traces", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="verify rounds; the best counts")
    parser.add_argument("--db-dir", help="keep (and reuse) the logs in this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="auditml-bench-") as tmp:
        folder = Path(args.db_dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)

        path = str(folder / f"verify-{args.verify_records}.db")
        url = f"sqlite:///{path}"
        if not Path(path).exists():
            print(f"building a {args.verify_records:,}-record log ...", file=sys.stderr)
            seconds = build(url, args.verify_records)
            print(f"built {args.verify_records:,} records in {seconds:.1f} s (bulk path)")
        size, rss_before, rss_peak, rss_helper, whole = verify_rss(url)
        floors, with_values = [], []
        runs: dict[tuple[bool, bool], list[float]] = {}
        for _ in range(args.rounds):  # interleaved, so a busy machine slows all alike
            floors.append(floor(path))
            with_values.append(floor_with_values(path))
            for key in ((False, False), (False, True), (True, False), (True, True)):
                seconds, checked = verify_records_seconds(url, *key)
                assert checked == args.verify_records, checked
                runs.setdefault(key, []).append(seconds)
        f, fv = min(floors), min(with_values)
        print(
            f"floor: the same SELECT of {args.verify_records:,} records, streamed, one SHA-256 "
            f"each: {f:.2f} s; with the value rows read and hashed too: {fv:.2f} s"
        )
        for (parallel, values), times in runs.items():
            v = min(times)
            what = "the records and their values" if values else "the records alone"
            how = "with its helper process" if parallel else "one process"
            against = (
                f"{v / fv:.2f}x the floor with values" if values else f"{v / f:.2f}x the floor"
            )
            print(
                f"verify of {what}, {how} (SQLite): {v:.2f} s = {against}, "
                f"{args.verify_records / v:,.0f} records/s (best of {args.rounds})"
            )
        print(f"cores: {os.cpu_count()}, load average at the end: {os.getloadavg()[0]:.1f}")
        fc = min(floor_cpu(path) for _ in range(args.rounds))
        print(
            f"CPU seconds (what wall time is on an idle machine): floor {fc:.2f}; "
            + "; ".join(
                f"{'records and values' if values else 'records'}, "
                f"{'main process / helper' if parallel else 'one process'}: "
                + (f"{main:.2f} / {helper:.2f}" if parallel else f"{main:.2f}")
                + f" = {max(main, helper) / fc:.2f}x the floor"
                for (parallel, values), (main, helper) in CPU.items()
            )
        )
        print(
            f"whole verify (chain of {size:,} events, records, values), fresh process: "
            f"{whole:.2f} s; peak RSS {rss_peak:.0f} MB (was {rss_before:.0f} MB before "
            f"verifying; its helper process peaked at {rss_helper:.0f} MB)"
        )

        path = str(folder / f"trace-{args.records}.db")
        url = f"sqlite:///{path}"
        if not Path(path).exists():
            print(f"building a {args.records:,}-record log ...", file=sys.stderr)
            seconds = build(url, args.records)
            print(f"built {args.records:,} records in {seconds:.1f} s (bulk path)")
        print(f"trace log: {args.records:,} records, {Path(path).stat().st_size / 2**30:.2f} GiB")
        print("request id lookup plan: " + "; ".join(query_plan(path)))
        times = trace_times(url, args.records, args.traces)
        print(
            f"auditml trace on {args.records:,} records (SQLite), {args.traces} random requests: "
            f"median {statistics.median(times):.1f} ms, p99 {_quantile(times, 0.99):.1f} ms"
        )
    print(
        f"peak RSS of this benchmark process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
