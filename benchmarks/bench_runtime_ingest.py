"""Runtime records, ingest: `auditml runtime ingest` rate against its floor, and peak RSS.

    python benchmarks/bench_runtime_ingest.py [--lines 1000000] [--again] [--keep DIR]

Prints, measured in one run (SQLite):

- the file: ``--lines`` JSON Lines records (request id, version, output,
  latency, time), as a server in another language writes them;
- ``auditml runtime ingest FILE`` run as the command, in a fresh process:
  records/s and that process's peak RSS (``wait4``'s ``ru_maxrss``);
- its floor: sqlite3 inserting the very rows it committed (read back) into the
  same tables and indexes of a fresh log, in transactions of 1,000 rows with
  ``executemany`` and auditml's PRAGMAs (as ``bench_runtime_write.py``), timed
  before and after the ingest; the faster of the two is the floor, and the
  ratio of the ingest's rate to it is the figure;
- with ``--again``, the same file ingested a second time into the same log
  (every record already there), with its time and peak RSS;
- with ``--pg URL``, the same ingest into a PostgreSQL log (a fresh schema,
  dropped after): records/s and peak RSS, for information (no floor).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from auditml import AuditLog

ORIGIN = "bench.example/credit-models"
MODEL, ENV = "credit", "production"
COLUMNS = "log_id, seg, i, request_id, time, model, version, env, latency_ms, error, body"
BATCH = 1000


def write_file(path: Path, lines: int) -> int:
    """Write ``lines`` record lines to ``path``; return its size in bytes."""
    start = datetime(2026, 12, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as fh:
        for n in range(lines):
            when = (start + timedelta(microseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            row = {
                "request_id": f"req-{n:012d}",
                "version": "1",
                "output": {"label": "refer" if n % 3 else "approve", "score": 0.82},
                "latency_ms": 12.5,
                "time": when,
            }
            fh.write(json.dumps(row) + "\n")
    return path.stat().st_size


def ingest(path: Path, url: str) -> tuple[float, int, str]:
    """Run `auditml runtime ingest` in a fresh process; return seconds, peak RSS (KiB), output.

    The output ends with the process's CPU seconds (user + system), steadier than
    the wall time when other work shares the machine.
    """
    args = [sys.executable, "-m", "auditml", "runtime", "ingest", str(path)]
    args += ["--model", MODEL, "--env", ENV, "--db", url, "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"ingest failed ({proc.returncode}): {err.strip()}")
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss, f"{json.dumps(json.loads(out))}; {cpu:,.1f} CPU s"


def floor(source: Path, folder: Path, name: str) -> float:
    """Insert the committed rows into a fresh log's tables, as sqlite3 would; return rows/s."""
    target = folder / name
    AuditLog.init(f"sqlite:///{target}", origin=ORIGIN, actor="admin")[0].close()
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target, isolation_level=None)
    dst.execute("PRAGMA synchronous = FULL")
    dst.execute("PRAGMA cache_size = -65536")
    insert = f"INSERT INTO auditml_record ({COLUMNS}) VALUES ({', '.join('?' * 11)})"
    reader = src.execute(f"SELECT {COLUMNS} FROM auditml_record ORDER BY seg, i")
    seconds, count = 0.0, 0
    while rows := reader.fetchmany(BATCH):
        started = time.perf_counter()
        dst.execute("BEGIN IMMEDIATE")
        dst.executemany(insert, rows)
        dst.execute("COMMIT")
        seconds += time.perf_counter() - started
        count += len(rows)
    src.close()
    dst.close()
    target.unlink()
    return count / seconds


def postgres(base: str, path: Path, lines: int, again: bool) -> None:
    """Ingest the file into a log in a fresh PostgreSQL schema; print rate and peak RSS."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    try:
        log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin")
        log.record_training(MODEL, actor="ds@bench.example")
        log.close()
        for turn in ("ingest", "ingest again") if again else ("ingest",):
            seconds, rss, out = ingest(path, url)
            print(
                f"PostgreSQL {turn}: {seconds:,.1f} s, {lines / seconds:,.0f} lines/s, "
                f"peak RSS {rss / 1024:,.0f} MB ({out})"
            )
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def sqlite_figures(path: Path, db: Path, folder: Path, lines: int, again: bool) -> None:
    """Ingest the file into a fresh SQLite log; print rate, floor, ratio and peak RSS."""
    url = f"sqlite:///{db}"
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin")
    log.record_training(MODEL, actor="ds@bench.example")
    log.close()
    seconds, rss, out = ingest(path, url)
    floors = [floor(db, folder, "floor-a.db"), floor(db, folder, "floor-b.db")]
    best = max(floors)
    rate = lines / seconds
    print(f"ingest: {seconds:,.1f} s, {rate:,.0f} records/s, peak RSS {rss / 1024:,.0f} MB ({out})")
    print(
        f"floor (sqlite3 executemany of the same rows, batches of {BATCH:,}): "
        f"{floors[0]:,.0f} and {floors[1]:,.0f} rows/s; ratio {rate / best:.3f}"
    )
    if again:
        seconds, rss, out = ingest(path, url)
        print(
            f"ingest again (every record on the log already): {seconds:,.1f} s, "
            f"{lines / seconds:,.0f} lines/s, peak RSS {rss / 1024:,.0f} MB ({out})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--again", action="store_true", help="ingest the file a second time")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    parser.add_argument("--pg", default=None, metavar="URL", help="also ingest into PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL figures")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path, db = folder / "served.jsonl", folder / "audit.db"
        size = write_file(path, args.lines)
        print(f"file: {args.lines:,} lines, {size / 1e6:,.1f} MB")
        if not args.no_sqlite:
            sqlite_figures(path, db, folder, args.lines, args.again)
        if args.pg:
            postgres(args.pg, path, args.lines, args.again)
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
