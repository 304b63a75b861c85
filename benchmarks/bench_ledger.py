"""Ledger benchmark: batched appends, full verify against its floor, durable appends, concurrency.

    python benchmarks/bench_ledger.py [--events 1000000] [--pg URL | --no-pg]

Prints the figures the README quotes. It builds a log of realistic lifecycle
events (mostly evaluations with a dozen metrics, plus trains, approvals and
deploys) with ``append_many`` in transactions of 10,000, then:

- splits append_many's time into its two ceilings: SQLite alone inserting the
  same rows (into empty tables and into the full log, with and without the
  unique ``(log, prev)`` index) and auditml's own work with no database;
- times full ``verify`` against the floor: one plain loop that reads the same
  rows with the same query and computes one SHA-256 per row, in the same run;
- measures verify's peak RSS in a fresh process;
- measures the median latency of single durable appends on SQLite and PostgreSQL;
- runs 8 processes x 500 appends on each backend and verifies the result.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from auditml import Actor, AuditLog, Draft
from auditml.store._backends import SQLiteBackend

BATCH = 10_000
FIRST = 100_001  # the init event, then 100,000 appended
ORIGIN = "bench.example/credit-models"


def drafts(start: int, count: int, actor: Actor) -> list[Draft]:
    """Return ``count`` realistic drafts: 85% evaluations, the rest trains, approvals, deploys."""
    out = []
    for i in range(start, start + count):
        version = str(1 + i // 1000)
        subject = {"model": f"model-{i % 7}", "version": version}
        kind = i % 20
        if kind < 17:
            out.append(
                Draft.build(
                    "model.evaluate",
                    actor=actor,
                    subject=subject,
                    data={
                        "dataset": {
                            "uri": f"s3://datasets/holdout-{i % 13}.parquet",
                            "kind": "uri",
                        },
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
                    },
                )
            )
        elif kind == 17:
            out.append(
                Draft.build(
                    "model.train",
                    actor=actor,
                    subject=subject,
                    data={
                        "params": {"lr": 0.001, "depth": 8, "estimators": 400},
                        "datasets": {
                            "train": {"uri": "s3://datasets/train.parquet", "kind": "uri"}
                        },
                        "metrics": {"train_auc": 0.88},
                        "duration_s": 812.5,
                        "code": {"commit": "9f" * 20, "branch": "main", "dirty": False},
                    },
                )
            )
        elif kind == 18:
            out.append(
                Draft.build(
                    "model.approve",
                    actor=actor,
                    subject=subject,
                    data={"reason": "validated on holdout", "role": "validator"},
                )
            )
        else:
            out.append(
                Draft.build(
                    "model.deploy",
                    actor=actor,
                    subject=subject,
                    data={"environment": "production", "replaces": "1"},
                )
            )
    return out


def build(url: str, total: int) -> tuple[float, float, float]:
    """Fill the log to ``total`` events with ``append_many``.

    Returns events/s of append_many over the first 100,000 events and over the
    whole build, and events/s of the whole build including ``Draft.build``.
    """
    actor = Actor(id="pipeline@bench.example", source="api")
    log, _ = AuditLog.init(url, origin=ORIGIN, actor=actor)
    append_s = build_s = 0.0
    first = 0.0
    done = log.head().size
    with log:
        while done < total:
            n = min(BATCH, total - done)
            t0 = time.perf_counter()
            batch = drafts(done, n, actor)
            t1 = time.perf_counter()
            log.append_many(batch, imported=True)
            t2 = time.perf_counter()
            build_s += t1 - t0
            append_s += t2 - t1
            done += n
            if done <= FIRST:
                first = (done - 1) / append_s
            if done % 100_000 < BATCH:
                print(f"  built {done:,} events", file=sys.stderr)
    appended = total - 1
    return first, appended / append_s, appended / (append_s + build_s)


def python_alone(url: str, total: int = 100_000) -> float:
    """Canonicalize, chain and hash ``total`` events as append_many does, with no database.

    Returns events/s: the ceiling that auditml's own Python work puts on append_many,
    measured from the same private steps append_many runs (Draft.build excluded).
    """
    from auditml.core.envelope import PartCache, draft_part
    from auditml.ledger import _preparer
    from auditml.store import Store

    actor = Actor(id="pipeline@bench.example", source="api")
    AuditLog.init(url, origin=ORIGIN, actor=actor)[0].close()
    store = Store.connect(url)
    head = store.head(ORIGIN)
    store.close()
    assert head is not None
    batches = [drafts(1 + start, BATCH, actor) for start in range(0, total, BATCH)]
    t0 = time.perf_counter()
    for batch in batches:
        cache = PartCache()
        head = _preparer(ORIGIN, [draft_part(d, cache) for d in batch])(head).head
    return total / (time.perf_counter() - t0)


def floor(path: str) -> float:
    """Read the same rows with verify's query and hash each once; return seconds."""
    import sqlite3

    conn = sqlite3.connect(path)
    sha256 = hashlib.sha256
    t0 = time.perf_counter()
    columns = SQLiteBackend.scan_columns  # verify reads every column, to check each one
    cur = conn.execute(
        f"SELECT {columns} FROM auditml_event WHERE log_id = ? AND seq >= ? ORDER BY seq",
        (1, 0),
    )
    while rows := cur.fetchmany(5000):
        for row in rows:
            sha256(b"\x00" + row[2]).digest()
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds


def verify_seconds(url: str) -> float:
    with AuditLog.open(url) as log:
        return log.verify().seconds


# ru_maxrss survives exec on Linux (a child starts with its parent's peak), so the child
# reads its own high-water mark, VmHWM, which starts afresh with the new program.
RSS_CHILD = """
import resource, sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from auditml import AuditLog
with AuditLog.open(sys.argv[1]) as log:
    before = hwm()
    report = log.verify()
after = hwm()
helper = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(report.size, before, after, helper)
"""


def verify_rss(url: str) -> tuple[int, float, float, float]:
    """Verify in a fresh process; return (size, MB before verify, peak MB, helper's peak MB).

    The helper's figure is an upper bound: it counts what it shared from its parent at start.
    """
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, url], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1]) / 1024, int(out[2]) / 1024, int(out[3]) / 1024


PREV_UNIQUE = "CONSTRAINT auditml_event_log_prev UNIQUE (log_id, prev), "


def sqlite_alone(
    path: str, *, fresh: bool = False, prev_index: bool = True, count: int = 50_000
) -> float:
    """Insert ``count`` rows like the log's, 10,000 per transaction; return rows/s.

    This is SQLite's own cost for the rows auditml writes, with nothing of
    auditml's around it: the ceiling for append_many on this machine. The rows
    go into a copy of the log (``fresh=False``, tables and indexes as large as
    the log's) or into empty tables (``fresh=True``); ``prev_index=True`` adds
    the unique ``(log, prev)`` index that stores had before issue 20, to show
    what it cost.
    """
    import shutil
    import sqlite3

    src = sqlite3.connect(path)
    src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = 1 if fresh else src.execute("SELECT size FROM auditml_log").fetchone()[0]
    rows = src.execute(
        "SELECT log_id, seq, prev, hash, time, action, model, version, body FROM auditml_event "
        "WHERE seq BETWEEN 1 AND ? ORDER BY seq",
        (count,),
    ).fetchall()
    schema = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'table' DESC"
        )
    ]
    src.close()
    copy = path + ".alone"
    if not prev_index and not fresh:  # the log has no (log, prev) index since issue 20
        shutil.copyfile(path, copy)
    else:
        conn = sqlite3.connect(copy, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        for sql in schema:
            if sql.startswith("CREATE TABLE auditml_event") and prev_index:
                assert PREV_UNIQUE not in sql and "PRIMARY KEY" in sql, "the schema changed"
                sql = sql.replace("PRIMARY KEY", PREV_UNIQUE + "PRIMARY KEY", 1)
            conn.execute(sql)
        conn.execute("ATTACH DATABASE ? AS src", (path,))
        conn.execute("BEGIN")
        conn.execute("INSERT INTO auditml_log SELECT * FROM src.auditml_log")
        conn.execute(
            "INSERT INTO auditml_event SELECT * FROM src.auditml_event WHERE seq < ?", (size,)
        )
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        conn.close()
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA cache_size = -65536")
    sha256 = hashlib.sha256
    total = 0.0
    for start in range(0, len(rows), BATCH):
        batch = [
            (r[0], r[1] + size - 1, sha256(r[2]).digest(), sha256(r[3]).digest(), *r[4:])
            for r in rows[start : start + BATCH]
        ]
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO auditml_event VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
        total += time.perf_counter() - t0
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(copy + suffix).unlink(missing_ok=True)
    return len(rows) / total


def single_appends(url: str, count: int) -> float:
    """Median latency (ms) of ``append`` of one event, each its own durable transaction."""
    AuditLog.init(url, origin=ORIGIN, actor="bench")[0].close()
    times = []
    with AuditLog.open(url) as log:
        for i in range(count):
            t0 = time.perf_counter()
            log.append(
                "model.approve",
                subject={"model": "m", "version": str(i)},
                data={"reason": "ok"},
                actor="validator@bench.example",
                imported=True,
            )
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _worker(url: str, worker: int, count: int) -> None:
    with AuditLog.open(url) as log:
        for i in range(count):
            log.append(
                "model.evaluate",
                subject={"model": f"m{worker}", "version": "1"},
                data={"metrics": {"i": i}},
                actor=f"worker-{worker}",
                imported=True,
            )


def concurrency(url: str, workers: int = 8, each: int = 500) -> tuple[int, float, bool]:
    """Run ``workers`` processes appending ``each`` events; return (events, seconds, verified)."""
    AuditLog.init(url, origin=ORIGIN, actor="bench")[0].close()
    ctx = multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    with ctx.Pool(workers) as pool:
        pool.starmap(_worker, [(url, w, each) for w in range(workers)])
    seconds = time.perf_counter() - t0
    with AuditLog.open(url) as log:
        report = log.verify()
        appended = sum(1 for _ in log.events(action="model.evaluate"))
    return appended, seconds, report.size == appended + 1


def pg_schema_url(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"auditml_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}", schema


def pg_drop(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "AUDITML_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="auditml-bench-") as tmp:
        path = str(Path(tmp) / "audit.db")
        url = f"sqlite:///{path}"
        print(f"building a {args.events:,}-event log on SQLite ...", file=sys.stderr)
        first, rate, rate_with_build = build(url, args.events)
        print(
            f"append_many, {BATCH:,} per transaction (SQLite): {first:,.0f} events/s over "
            f"the first 100,000; {rate:,.0f} events/s over all {args.events:,} "
            f"({rate_with_build:,.0f} events/s including Draft.build validation)"
        )
        print(f"database size: {Path(path).stat().st_size / 2**20:,.0f} MiB")
        print("SQLite alone, inserting the same rows, 10,000 per transaction (the ceiling):")
        fresh = min(FIRST - 1, args.events - 1)
        print(
            f"  into empty tables, {fresh:,} rows: "
            f"{sqlite_alone(path, fresh=True, count=fresh):,.0f} rows/s with the (log, prev) "
            f"index, {sqlite_alone(path, fresh=True, prev_index=False, count=fresh):,.0f} "
            f"without it"
        )
        print(
            f"  into the {args.events:,}-event log, 50,000 rows: "
            f"{sqlite_alone(path):,.0f} rows/s with the (log, prev) index, "
            f"{sqlite_alone(path, prev_index=False):,.0f} without it"
        )
        alone = python_alone(f"sqlite:///{Path(tmp) / 'python.db'}")
        print(
            f"  auditml's own work alone (canonicalize, chain, hash, Merkle; no database): "
            f"{alone:,.0f} events/s"
        )

        floors, verifies = [], []
        for _ in range(3):
            floors.append(floor(path))
            verifies.append(verify_seconds(url))
        f, v = min(floors), min(verifies)
        print(f"floor (same rows, one SHA-256 each): {f:.2f} s")
        print(
            f"verify of {args.events:,} events (SQLite): {v:.2f} s = {v / f:.2f}x the floor, "
            f"{args.events / v:,.0f} events/s (best of 3)"
        )
        size, rss_before, rss_peak, rss_helper = verify_rss(url)
        print(
            f"verify peak RSS: {rss_peak:.0f} MB (process was {rss_before:.0f} MB before "
            f"verifying {size:,} events; its helper process peaked at {rss_helper:.0f} MB)"
        )

        single_url = f"sqlite:///{Path(tmp) / 'single.db'}"
        print(
            f"single durable append, median of {args.singles} (SQLite): "
            f"{single_appends(single_url, args.singles):.2f} ms"
        )
        events, seconds, ok = concurrency(f"sqlite:///{Path(tmp) / 'concurrent.db'}")
        print(
            f"8 processes x 500 appends (SQLite): {events:,} events in {seconds:.1f} s, "
            f"one chain that verifies: {ok}"
        )

    if args.no_pg:
        return
    pg_url, schema = pg_schema_url(args.pg)
    try:
        print(
            f"single durable append, median of {args.singles} (PostgreSQL): "
            f"{single_appends(pg_url, args.singles):.2f} ms"
        )
    finally:
        pg_drop(args.pg, schema)
    pg_url, schema = pg_schema_url(args.pg)
    try:
        events, seconds, ok = concurrency(pg_url)
        print(
            f"8 processes x 500 appends (PostgreSQL): {events:,} events in {seconds:.1f} s, "
            f"one chain that verifies: {ok}"
        )
    finally:
        pg_drop(args.pg, schema)
    print(
        f"peak RSS of this benchmark process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
