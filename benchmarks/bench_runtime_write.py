"""Runtime records, the write path: commit rate against its floor, record() latency, PG writers.

    python benchmarks/bench_runtime_write.py [--records 1000000] [--batch 1000]
        [--pg URL | --no-pg] [--pg-processes 4] [--pg-records 250000]

Prints, measured in one run:

- SQLite: committed records/s for ``--records`` records (``Recorder.flush``
  making, hashing and inserting them in segments of ``--batch``), against the
  floor: sqlite3 inserting the same rows (read back from that log) into the
  same tables and indexes of a fresh log, in transactions of the same batch
  size with ``executemany``, with auditml's PRAGMAs, timed in turns with the
  commits so both see the same machine load. The ratio is the figure. Also the
  rate of one tight loop of ``record()`` with the background flusher.
- record()'s caller cost while flushes run: median and p99 of each call,
  at a steady 100,000 records/s (bursts of 100 every millisecond), and, for
  information, in the tight loop of the commit-rate run (where the caller
  outruns the store and ``max_pending`` holds it back).
- PostgreSQL: ``--pg-processes`` processes recording ``--pg-records`` records
  in all into one log at once: total committed records/s, and that ``verify``
  checks every record of every segment.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from auditml import AuditLog

ORIGIN = "bench.example/credit-models"
MODEL, ENV = "credit", "production"
OUTPUT = {"label": "refer", "score": 0.82, "reason": "income-to-debt ratio above threshold"}
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
COLUMNS = "log_id, seg, i, request_id, time, model, version, env, latency_ms, error, body"


def _new_log(url: str) -> AuditLog:
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin@bench.example")
    log.record_training(MODEL, actor="ds@bench.example")
    return log


def _quantiles(samples: list[int]) -> tuple[float, float]:
    """Return the median and p99 of nanosecond samples, in microseconds."""
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def sqlite_commit_rate(folder: Path, records: int, batch: int) -> tuple[float, float, float]:
    """Time committing ``records`` records against the floor; return rate, overall, floor.

    Records are queued 100 segments at a time, then flushed; right after each
    chunk, the floor inserts the very rows just committed (read back) into a
    fresh log's tables with sqlite3 ``executemany``, one transaction per batch,
    so both are timed under the same machine load. The first rate is the commit
    path alone (records made, hashed and inserted in segments of ``batch``); the
    second counts ``record()`` too, in the same thread. (Queueing all of them
    first would time Python's garbage collector walking a million queued records.)
    """
    path, target = folder / "runtime.db", folder / "floor.db"
    log = _new_log(f"sqlite:///{path}")
    _new_log(f"sqlite:///{target}").close()
    src = sqlite3.connect(path)
    dst = sqlite3.connect(target, isolation_level=None)
    dst.execute("PRAGMA synchronous = FULL")
    dst.execute("PRAGMA cache_size = -65536")
    insert = f"INSERT INTO auditml_record ({COLUMNS}) VALUES ({', '.join('?' * 11)})"
    chunk = batch * 100
    rec = log.runtime(MODEL, env=ENV, max_records=batch, max_pending=chunk, background=False)
    record = rec.record
    committing = recording = floor = 0.0
    last_seg = -1
    for start in range(0, records, chunk):
        began = time.perf_counter()
        for n in range(start, min(start + chunk, records)):
            record(f"req-{n:012d}", version="1", output=OUTPUT, latency_ms=12.5)
        queued = time.perf_counter()
        rec.flush()
        committing += time.perf_counter() - queued
        recording += queued - began
        reader = src.execute(
            f"SELECT {COLUMNS} FROM auditml_record WHERE seg > ? ORDER BY seg, i", (last_seg,)
        )
        while rows := reader.fetchmany(batch):
            last_seg = rows[-1][1]
            started = time.perf_counter()
            dst.execute("BEGIN IMMEDIATE")
            dst.executemany(insert, rows)
            dst.execute("COMMIT")
            floor += time.perf_counter() - started
    rec.close()
    log.close()
    src.close()
    dst.close()
    return records / committing, records / (committing + recording), records / floor


def background_rate(folder: Path, records: int, batch: int) -> tuple[float, list[int]]:
    """Record from one tight loop while the background thread flushes; return rate, samples."""
    log = _new_log(f"sqlite:///{folder / 'background.db'}")
    clock = time.perf_counter_ns
    samples: list[int] = []
    note = samples.append
    rec = log.runtime(MODEL, env=ENV, max_records=batch, spool=folder / "spool.jsonl")
    record = rec.record
    started = time.perf_counter()
    for n in range(records):
        t0 = clock()
        record(f"req-{n:012d}", version="1", output=OUTPUT, latency_ms=12.5)
        note(clock() - t0)
    rec.close()
    elapsed = time.perf_counter() - started
    log.close()
    return records / elapsed, samples


def paced_latency(folder: Path, records: int, batch: int) -> tuple[float, float, int]:
    """Record at 100,000/s in bursts of 100 per ms while flushes run; return median, p99."""
    log = _new_log(f"sqlite:///{folder / 'paced.db'}")
    clock = time.perf_counter_ns
    samples: list[int] = []
    note = samples.append
    with log.runtime(MODEL, env=ENV, max_records=batch, max_age=0.2) as rec:
        record = rec.record
        start = clock()
        for burst in range(records // 100):
            while clock() - start < burst * 1_000_000:
                time.sleep(0.0002)
            for k in range(100):
                t0 = clock()
                record(f"p-{burst}-{k}", version="1", output=OUTPUT, latency_ms=3.25)
                note(clock() - t0)
    segments = sum(1 for _ in log.events(action="runtime.segment"))
    log.close()
    median, p99 = _quantiles(samples)
    return median, p99, segments


def _pg_worker(url: str, worker: int, count: int, go: object, background: bool) -> None:
    log = AuditLog.open(url)
    go.wait()  # type: ignore[attr-defined]
    with log.runtime(
        MODEL,
        env=ENV,
        max_records=1000,
        max_pending=max(count, 1000),
        actor=f"server-{worker}",
        background=background,
    ) as rec:
        for n in range(count):
            rec.record(f"w{worker}-{n}", version="1", output=OUTPUT, latency_ms=7.5)
    log.close()


def postgres_writers(
    base: str, processes: int, total: int, background: bool
) -> tuple[float, int, int]:
    """Run ``processes`` recorders into one PostgreSQL log; return rate, verified, segments."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    try:
        _new_log(url).close()
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Event()
        each = total // processes
        workers = [
            ctx.Process(target=_pg_worker, args=(url, w, each, go, background))
            for w in range(processes)
        ]
        for w in workers:
            w.start()
        time.sleep(3)  # let every process import and connect
        started = time.perf_counter()
        go.set()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        if any(w.exitcode for w in workers):
            raise SystemExit("a PostgreSQL writer failed")
        log = AuditLog.open(url)
        log.verify()
        verified = log._ledger.verify_records(log.store.head(ORIGIN).size)  # type: ignore[union-attr]
        segments = sum(1 for _ in log.events(action="runtime.segment"))
        log.close()
        return each * processes / elapsed, verified, segments
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def sqlite_figures(folder: Path, records: int, batch: int, paced: int) -> None:
    """Print the SQLite commit rate against its floor, and record()'s cost."""
    rate, overall, floor = sqlite_commit_rate(folder, records, batch)
    print(
        f"SQLite, {records:,} records in segments of {batch:,}: "
        f"{rate:,.0f} records/s committed; floor (sqlite3 executemany, same rows, tables, "
        f"indexes, batch) {floor:,.0f} rows/s; ratio {rate / floor:.2f} (target >= 0.6); "
        f"with record() in the same thread {overall:,.0f} records/s"
    )
    rate, tight = background_rate(folder, records, batch)
    median, p99 = _quantiles(tight)
    print(
        f"SQLite, one tight loop of record() with the background flusher: {rate:,.0f} "
        f"records/s; record() median {median:.2f} us, p99 {p99:.2f} us (max_pending "
        "holds the caller back when it outruns the store)"
    )
    median, p99, segments = paced_latency(folder, paced, batch)
    print(
        f"record() at 100,000/s while {segments} segments flushed: median {median:.2f} us, "
        f"p99 {p99:.2f} us (target: median <= 3, p99 <= 50)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--paced", type=int, default=300_000)
    parser.add_argument("--pg", default=os.environ.get("AUDITML_TEST_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--pg-processes", type=int, default=4)
    parser.add_argument("--pg-records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_figures(Path(tmp), args.records, args.batch, args.paced)
    for background in () if args.no_pg else (True, False):
        rate, verified, segments = postgres_writers(
            args.pg, args.pg_processes, args.pg_records, background
        )
        how = (
            "a tight loop of record() each, background flusher"
            if background
            else "each records its share, then flushes"
        )
        print(
            f"PostgreSQL, {args.pg_processes} processes x {args.pg_records // args.pg_processes:,}"
            f" records at once ({how}): {rate:,.0f} records/s in all; verify checked "
            f"{verified:,} records in {segments:,} segments: "
            + ("all verify" if verified == args.pg_records else "MISSING RECORDS")
        )
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
