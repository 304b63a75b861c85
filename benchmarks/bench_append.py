"""Append and verify benchmark (issue 20): each figure a ratio to a floor timed in the same run.

    python benchmarks/bench_append.py [--events 1000000] [--count 50000] [--only NAME ...]

Prints, and returns from one function each (so ``bench_everyday.py`` can call them):

- :func:`measure_append_many`: ``append_many`` of prepared drafts, 10,000 per
  transaction, into a log of ``--events`` events (SQLite), against its floor:
  plain ``sqlite3`` inserting the same rows into a copy of the same log (same
  schema, indexes, pragmas), 10,000 per transaction. The two run in turns,
  batch by batch, so a busy machine slows both alike. Target: at least 0.6x.
- :func:`measure_draft_build`: ``Draft.build`` of a typical evaluation event
  (a dataset, seven metrics, two slices, notes), best of several runs, beside
  the same call through the pydantic models alone. Target: at most 5 us.
- :func:`measure_verify`: full ``verify`` of the log (SQLite), against the
  single-thread floor of reading the same rows with verify's query and
  computing one SHA-256 each; and peak RSS of a verify in a fresh process.
  Target: at least 1,000,000 events/s, peak RSS under 200 MB.

The log of ``--events`` events is built once and kept in the temp folder
(``auditml-bench-append/events-N.db``), keyed by size; ``--fresh`` rebuilds it.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from auditml import Actor, AuditLog, Draft
from auditml.store._backends import SQLiteBackend

BATCH = 10_000
ORIGIN = "bench.example/credit-models"
ACTOR = Actor(id="pipeline@bench.example", source="api")
CACHE = Path(tempfile.gettempdir()) / "auditml-bench-append"
_COLUMNS = "log_id, seq, prev, hash, time, action, model, version, body"


def evaluation(i: int) -> dict[str, Any]:
    """Return the data of a typical evaluation event (about 800 bytes on the log)."""
    return {
        "dataset": {"uri": f"s3://datasets/holdout-{i % 13}.parquet", "kind": "uri"},
        "metrics": {
            "auc": 0.8 + (i % 997) / 10_000,
            "accuracy": 0.91,
            "f1": 0.77,
            "precision": 0.8,
            "recall": 0.75,
            "log_loss": 0.3412,
            "n": 10_000 + i,
        },
        "slices": {"age<30": {"auc": 0.79}, "age>=30": {"auc": 0.83}},
        "notes": "nightly evaluation run",
    }


def drafts(start: int, count: int) -> list[Draft]:
    """Return ``count`` prepared drafts: 85% evaluations, the rest approvals and deploys."""
    out = []
    for i in range(start, start + count):
        subject = {"model": f"model-{i % 7}", "version": str(1 + i // 1000)}
        kind = i % 20
        if kind < 17:
            out.append(
                Draft.build("model.evaluate", actor=ACTOR, subject=subject, data=evaluation(i))
            )
        elif kind < 19:
            data = {"reason": "validated on holdout", "role": "validator"}
            out.append(Draft.build("model.approve", actor=ACTOR, subject=subject, data=data))
        else:
            data = {"environment": "production", "replaces": "1"}
            out.append(Draft.build("model.deploy", actor=ACTOR, subject=subject, data=data))
    return out


def cached_log(events: int, *, fresh: bool = False, quiet: bool = False) -> Path:
    """Return the path of a SQLite log of ``events`` events, building it once per size."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"events-{events}.db"
    done = CACHE / f"events-{events}.done"
    if done.exists() and path.exists() and not fresh:
        return path
    for stale in CACHE.glob(f"events-{events}.*"):
        stale.unlink()
    started = time.perf_counter()
    log, _ = AuditLog.init(f"sqlite:///{path}", origin=ORIGIN, actor=ACTOR)
    prepared = drafts(0, BATCH)
    with log:
        size = log.head().size
        while size < events:
            n = min(BATCH, events - size)
            log.append_many(prepared[:n], imported=True)
            size += n
            if not quiet and size % 200_000 < BATCH:
                print(f"  built {size:,} events", file=sys.stderr)
    if not quiet:
        print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    done.touch()
    return path


def _copy(path: Path, name: str) -> Path:
    """Copy a log (database and key) into a work folder; return the copy's path."""
    work = CACHE / "work"
    work.mkdir(exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    target = work / f"{name}.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(path, target)
    shutil.copyfile(path.with_suffix(".key"), target.with_suffix(".key"))
    return target


def _floor_connection(path: Path) -> sqlite3.Connection:
    """Open a log's copy with plain sqlite3 and the pragmas auditml appends with."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def measure_append_many(
    events: int = 1_000_000, count: int = 50_000, *, quiet: bool = False
) -> dict[str, Any]:
    """Time ``append_many`` into a log of ``events`` against sqlite3 inserting the same rows.

    Batch by batch, in turns: auditml appends ``BATCH`` prepared drafts to one
    copy of the log, then plain sqlite3 inserts the rows auditml wrote into
    another copy, at the same seqs, in one transaction of the same size.
    """
    source = cached_log(events, quiet=quiet)
    mine, floor_path = _copy(source, "auditml"), _copy(source, "floor")
    prepared = [drafts(events + k, BATCH) for k in range(0, count, BATCH)]
    floor = _floor_connection(floor_path)
    reader = sqlite3.connect(mine)
    insert = f"INSERT INTO auditml_event ({_COLUMNS}) VALUES ({', '.join('?' * 9)})"
    auditml_s = floor_s = 0.0
    appended = 0
    try:
        with AuditLog.open(f"sqlite:///{mine}") as log:
            for batch in prepared:
                start = log.head().size
                t0 = time.perf_counter()
                log.append_many(batch, imported=True)
                auditml_s += time.perf_counter() - t0
                rows = reader.execute(
                    f"SELECT {_COLUMNS} FROM auditml_event WHERE log_id = 1 AND seq >= ? "
                    "ORDER BY seq",
                    (start,),
                ).fetchall()
                assert len(rows) == len(batch)
                t0 = time.perf_counter()
                floor.execute("BEGIN IMMEDIATE")
                floor.executemany(insert, rows)
                floor.execute("COMMIT")
                floor_s += time.perf_counter() - t0
                appended += len(batch)
    finally:
        reader.close()
        floor.close()
        for path in (mine, floor_path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            path.with_suffix(".key").unlink(missing_ok=True)
    rate, floor_rate = appended / auditml_s, appended / floor_s
    return {
        "log_events": events,
        "appended": appended,
        "batch": BATCH,
        "events_per_s": rate,
        "floor_rows_per_s": floor_rate,
        "ratio": rate / floor_rate,
        "target_ratio": 0.6,
    }


def measure_draft_build(number: int = 20_000, repeat: int = 7) -> dict[str, Any]:
    """Return ``Draft.build``'s microseconds for a typical evaluation (best of ``repeat``)."""
    subject = {"model": "model-3", "version": "3"}
    data = evaluation(5)

    def fast() -> Draft:
        return Draft.build("model.evaluate", actor=ACTOR, subject=subject, data=data)

    def slow() -> Draft:
        return Draft._build_validated("model.evaluate", actor=ACTOR, subject=subject, data=data)

    assert fast() == slow()
    fast_us = min(timeit.repeat(fast, number=number, repeat=repeat)) / number * 1e6
    slow_us = min(timeit.repeat(slow, number=number, repeat=repeat)) / number * 1e6
    return {
        "us": fast_us,
        "pydantic_us": slow_us,
        "speedup": slow_us / fast_us,
        "target_us": 5.0,
    }


def verify_floor(path: Path) -> float:
    """Read the rows with verify's query (every column) and hash each once; return seconds."""
    conn = sqlite3.connect(path)
    sha256 = hashlib.sha256
    t0 = time.perf_counter()
    cur = conn.execute(
        f"SELECT {SQLiteBackend.scan_columns} FROM auditml_event WHERE log_id = ? AND seq >= ? "
        "ORDER BY seq",
        (1, 0),
    )
    while rows := cur.fetchmany(5000):
        for row in rows:
            sha256(b"\x00" + row[2]).digest()
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


# ru_maxrss survives exec on Linux, so the child reads its own high-water mark, VmHWM.
_RSS_CHILD = """
import resource, sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from auditml import AuditLog
with AuditLog.open(sys.argv[1]) as log:
    t0 = time.perf_counter()
    report = log.verify()
    seconds = time.perf_counter() - t0
helper = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(report.size, hwm(), helper, seconds)
"""


def measure_verify(
    events: int = 1_000_000, rounds: int = 3, *, quiet: bool = False
) -> dict[str, Any]:
    """Time full ``verify`` against the single-thread floor, best of ``rounds`` each, in turns."""
    path = cached_log(events, quiet=quiet)
    url = f"sqlite:///{path}"
    floors, verifies = [], []
    for _ in range(rounds):
        floors.append(verify_floor(path))
        with AuditLog.open(url) as log:
            t0 = time.perf_counter()
            report = log.verify()
            verifies.append(time.perf_counter() - t0)
        assert report.size == events
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, url], capture_output=True, text=True, check=True
    ).stdout.split()
    f, v = min(floors), min(verifies)
    return {
        "events": events,
        "seconds": v,
        "events_per_s": events / v,
        "floor_seconds": f,
        "ratio_to_floor": v / f,
        "peak_rss_mb": int(out[1]) / 1024,
        "helper_peak_rss_mb": int(out[2]) / 1024,
        "target_events_per_s": 1_000_000,
        "target_rss_mb": 200,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the log")
    parser.add_argument("--count", type=int, default=50_000, help="events appended to it")
    parser.add_argument("--rounds", type=int, default=3, help="verify rounds; the best counts")
    parser.add_argument("--only", nargs="*", choices=["append", "build", "verify"], default=None)
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached log")
    args = parser.parse_args()
    chosen = set(args.only or ["append", "build", "verify"])
    if args.fresh:
        cached_log(args.events, fresh=True)
    if "build" in chosen:
        b = measure_draft_build()
        print(
            f"Draft.build, typical evaluation: {b['us']:.2f} us (target {b['target_us']:.0f} us); "
            f"through the pydantic models alone {b['pydantic_us']:.2f} us ({b['speedup']:.1f}x)"
        )
    if "append" in chosen:
        a = measure_append_many(args.events, args.count)
        print(
            f"append_many of prepared drafts, {a['batch']:,} per transaction, into a "
            f"{a['log_events']:,}-event log (SQLite): {a['events_per_s']:,.0f} events/s vs "
            f"sqlite3 inserting the same rows {a['floor_rows_per_s']:,.0f} rows/s = "
            f"{a['ratio']:.2f}x the floor (target {a['target_ratio']}x)"
        )
    if "verify" in chosen:
        v = measure_verify(args.events, args.rounds)
        print(
            f"verify of {v['events']:,} events (SQLite): {v['seconds']:.2f} s, "
            f"{v['events_per_s']:,.0f} events/s = {v['ratio_to_floor']:.2f}x the single-thread "
            f"floor's time ({v['floor_seconds']:.2f} s; target {v['target_events_per_s']:,}/s); "
            f"peak RSS {v['peak_rss_mb']:.0f} MB, helper {v['helper_peak_rss_mb']:.0f} MB "
            f"(target < {v['target_rss_mb']} MB)"
        )


if __name__ == "__main__":
    main()
