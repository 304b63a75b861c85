"""Report benchmark: one model with 10,000 events (HTML and PDF), and a 1,000,000-event log.

    python benchmarks/bench_report.py [--small 10000] [--big 1000000] [--db PATH] [--skip-big]

The small log is one model's life: trainings, approvals, deploys, a rollback and
thousands of evaluations, all recorded with ``append_many`` as imported history.
The big log is built like ``bench_proofs.py`` does (or reused from ``--db``), and
its report is built and rendered to HTML in a fresh process, whose peak RSS is
read with ``resource.getrusage``. Targets: HTML <= 3 s and PDF <= 15 s for the
small log; <= 60 s and <= 1 GB peak RSS for the big one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from auditml import Actor, AuditLog, Draft
from auditml.reports import build_report, render_report, write_pdf_report

BATCH = 10_000


def small_log(url: str, total: int) -> AuditLog:
    """Return a log holding one model with ``total`` events: decisions and evaluations."""
    log, _ = AuditLog.init(url, origin="bench.example/report", actor="admin@bench.example")
    ds, val, rel = (Actor(id=f"{who}@bench.example", source="api") for who in ("ds", "val", "rel"))
    drafts: list[Draft] = []
    versions = 20
    for v in range(1, versions + 1):
        subject = {"model": "credit", "version": str(v)}
        drafts.append(
            Draft.build(
                "model.train", actor=ds, subject=subject, data={"metrics": {"auc": 0.7 + v / 100}}
            )
        )
        drafts.append(
            Draft.build("model.approve", actor=val, subject=subject, data={"reason": f"VR-{v}"})
        )
        for env in ("staging", "production"):
            drafts.append(
                Draft.build(
                    "model.deploy",
                    actor=rel,
                    subject=subject,
                    data={"environment": env, "reason": "release"},
                )
            )
    drafts.append(
        Draft.build(
            "model.rollback",
            actor=rel,
            subject={"model": "credit", "version": str(versions - 1)},
            data={"environment": "production", "reason": "drift"},
        )
    )
    log.append_many(drafts, imported=True)
    done = log.head().size
    i = 0
    while done < total:
        n = min(BATCH, total - done)
        log.append_many(
            [
                Draft.build(
                    "model.evaluate",
                    actor=val,
                    subject={"model": "credit", "version": str(1 + (i + k) % versions)},
                    data={"metrics": {"auc": 0.8 + ((i + k) % 97) / 1000, "n": i + k}},
                )
                for k in range(n)
            ],
            imported=True,
        )
        done += n
        i += n
    return log


def bench_small(events: int) -> dict[str, float]:
    """Time the HTML and PDF reports of one model with ``events`` events."""
    with tempfile.TemporaryDirectory() as tmp:
        log = small_log(f"sqlite:///{tmp}/small.db", events)
        with log:
            t0 = time.perf_counter()
            report = build_report(log, models=["credit"])
            html = render_report(report, "html")
            html_s = time.perf_counter() - t0
            Path(tmp, "r.html").write_bytes(html)
            t0 = time.perf_counter()
            report = build_report(log, models=["credit"])
            path = write_pdf_report(log, report, Path(tmp) / "r.pdf")
            pdf_s = time.perf_counter() - t0
            from pypdf import PdfReader

            pages = len(PdfReader(path).pages)
        return {
            "events": float(events),
            "html_s": html_s,
            "pdf_s": pdf_s,
            "pdf_pages": float(pages),
            "pdf_mb": path.stat().st_size / 1e6 if path.exists() else 0.0,
        }


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from auditml import AuditLog
from auditml.reports import build_report, render_report, write_pdf_report
log = AuditLog.open(sys.argv[1])
fmt = sys.argv[2]
t0 = time.perf_counter()
report = build_report(log)
built = time.perf_counter() - t0
if fmt == "pdf":
    write_pdf_report(log, report, Path(sys.argv[3]))
else:
    Path(sys.argv[3]).write_bytes(render_report(report, fmt))
total = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"size": report.checkpoint.size, "build_s": built, "total_s": total,
                  "peak_rss_mb": rss, "decisions": len(report.changes)}))
"""


def bench_big(url: str, fmt: str) -> dict[str, float]:
    """Build the big log's report in a fresh process; return its times and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, url, fmt, f"{tmp}/big.{fmt}"],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="SQLite file for the big log (kept)")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--big-pdf", action="store_true", help="also print the big log as PDF")
    args = parser.parse_args()

    small = bench_small(args.small)
    print(
        f"one model, {args.small:,} events: HTML {small['html_s']:.2f}s (target 3s), "
        f"PDF {small['pdf_s']:.2f}s (target 15s), {small['pdf_pages']:.0f} pages, "
        f"{small['pdf_mb']:.2f} MB"
    )
    if args.skip_big:
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_proofs import build  # the same 1M-event log as the proof benchmark

    path = Path(args.db or Path(tempfile.gettempdir()) / "auditml-bench-report.db")
    url = f"sqlite:///{path}"
    build(url, args.big).close()
    big = bench_big(url, "html")
    print(
        f"{big['size']:,.0f}-event log, HTML: build {big['build_s']:.1f}s, total "
        f"{big['total_s']:.1f}s (target 60s), peak RSS {big['peak_rss_mb']:.0f} MB "
        f"(target 1024 MB), {big['decisions']:.0f} decisions listed"
    )
    if args.big_pdf:
        pdf = bench_big(url, "pdf")
        print(
            f"{pdf['size']:,.0f}-event log, PDF with its bundle: total {pdf['total_s']:.1f}s, "
            f"peak RSS {pdf['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
