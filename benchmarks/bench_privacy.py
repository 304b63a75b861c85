"""Erasure benchmark: erase one data subject among 1,000,000 runtime records.

    python benchmarks/bench_privacy.py [--records N] [--subjects N] [--db PATH] [--pg URL]

Builds a log whose runtime records each name one of ``--subjects`` subjects
(so each subject has a handful of records) with features and a payload, all
sealed under the subjects' keys, through the public recorder (or reuses
``--db`` when it already holds enough records). Then times ``AuditLog.erase``
of several subjects, end to end: the lookup, deleting the values, salts,
lookup rows and key, appending the ``privacy.erasure`` event, committing, and
scrubbing the files (SQLite: WAL checkpoint and truncate). Target: at most
1 second per erasure on SQLite. Also times ``retention show`` (the plan over
every segment) and ``verify --deep``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from auditml import AuditLog

ORIGIN = "bench.example/privacy"
SEGMENT = 10_000


def build(url: str, records: int, subjects: int) -> AuditLog:
    """Open the log at ``url``, filling it with ``records`` runtime records if it has none."""
    try:
        log = AuditLog.open(url)
    except Exception:
        log, _ = AuditLog.init(url, origin=ORIGIN, actor="bench@example")
        log.record_training("credit", actor="ds@bench.example")
    held = sum(r.event.data["count"] for r in log.events(action="runtime.segment"))  # type: ignore[misc]
    if held >= records:
        return log
    started = time.perf_counter()
    when = datetime(2027, 1, 1, tzinfo=UTC)
    with log.runtime("credit", env="production", max_records=SEGMENT, background=False) as rec:
        for n in range(held, records):
            rec.record(
                f"req-{n:08d}",
                version="1",
                output={"label": "refer" if n % 3 else "approve", "score": (n % 1000) / 1000},
                latency_ms=2.5,
                subject=f"customer-{n % subjects:07d}",
                features={"income": 20_000 + n % 90_000, "age": 18 + n % 60},
                payload={"channel": "web"},
                time=when,
            )
            if (n + 1) % 100_000 == 0:
                rate = (n + 1 - held) / (time.perf_counter() - started)
                print(f"  built {n + 1:,} records ({rate:,.0f} records/s)", flush=True)
    print(f"built {records - held:,} records in {time.perf_counter() - started:.1f} s")
    return log


def main() -> None:
    """Build the log, then time erasures, the retention plan and the deep check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=200_000)
    parser.add_argument("--erasures", type=int, default=5)
    parser.add_argument("--db", type=Path, help="A SQLite file to build or reuse.")
    parser.add_argument("--pg", help="A PostgreSQL URL to run against instead of SQLite.")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="auditml-bench-privacy-"))
    url = args.pg or f"sqlite:///{args.db or folder / 'audit.db'}"
    with build(url, args.records, args.subjects) as log:
        times = []
        for k in range(args.erasures):
            subject = f"customer-{(k * 7919) % args.subjects:07d}"
            started = time.perf_counter()
            done = log.erase(subject, request=f"DSR-{k}", reason="benchmark", actor="dpo")
            times.append(time.perf_counter() - started)
            print(
                f"erase {subject}: {done.values} values of {done.records} records in "
                f"{times[-1] * 1000:.0f} ms ({done.scrubbed})"
            )
        median, worst = statistics.median(times) * 1000, max(times) * 1000
        print(f"erase: median {median:.0f} ms, max {worst:.0f} ms")
        started = time.perf_counter()
        status = log.retention()
        print(
            f"retention show: {time.perf_counter() - started:.2f} s "
            f"({len(status.plan.upcoming)} upcoming)"
        )
        started = time.perf_counter()
        check = log._privacy.verify_values(log.head().size)
        print(
            f"deep value check: {check.checked:,} values, {check.removed:,} removed, "
            f"{time.perf_counter() - started:.1f} s"
        )


if __name__ == "__main__":
    main()
