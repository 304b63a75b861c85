"""Card benchmark: build and render one version's card with 50 metrics and 20 lifecycle events.

    python benchmarks/bench_cards.py [--runs 20]

Makes a log with the real lifecycle API: five versions trained with 50
metrics each, the benchmarked version evaluated eight times, approved, deployed to
three environments, rolled back, with an incident and card sections (20 events
about that version). Then times ``build_card`` plus rendering, per format, as
``auditml card`` does it (the log is already open; process start is not
included). Targets: HTML, Markdown and JSON 200 ms or less; PDF 3 s or less.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from auditml import AuditLog, Policy
from auditml.cards import build_card
from auditml.cards.render import FORMATS, render_card

ORIGIN = "bench.example/cards"
DS, VAL, OPS = "ds@bench.example", "val@bench.example", "ops@bench.example"
TARGETS = {"html": 0.2, "md": 0.2, "json": 0.2, "pdf": 3.0}


def metrics(version: int) -> dict[str, float]:
    """Return 50 metrics whose values move a little from version to version."""
    return {f"metric_{i:02d}": round(0.5 + i / 200 + version / 100, 4) for i in range(50)}


def make_log(url: str) -> tuple[AuditLog, int]:
    """Build the log; return it and how many events concern the benchmarked version."""
    log, _ = AuditLog.init(url, origin=ORIGIN, actor=OPS)
    log.apply_policy(Policy(environments=["dev", "staging", "production"]), actor=OPS)
    for v in range(1, 6):
        log.record_training("credit", version=str(v), data={"metrics": metrics(v)}, actor=DS)
    log.update_card(
        "credit",
        {
            "intended_use": "Benchmark",
            "limitations": "None known",
            "out_of_scope_use": "Anything else",
            "ethical_considerations": [{"name": "None", "mitigation": "n/a"}],
        },
        actor=DS,
    )
    for v in ("4", "5"):
        log.approve("credit", v, actor=VAL, reason="validated")
    log.deploy("credit", "4", "production", actor=OPS)
    for _ in range(8):
        log.evaluate("credit", "5", metrics=metrics(6), dataset="s3://b/holdout", actor=VAL)
    for env in ("dev", "staging", "production"):
        log.deploy("credit", "5", env, actor=OPS, reason="rollout")
    log.open_incident("credit", "5", "drift", severity="high", environment="production")
    log.rollback("credit", "production", reason="drift", actor=OPS)
    for i in range(6):
        log.update_card("credit", {"overview": f"Revision {i}"}, version="5", actor=DS)
    log.checkpoint()
    about = sum(1 for _ in log.events(model="credit", version="5"))
    return log, about


def main() -> None:
    """Print the median and worst time of each format against its target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'cards.db'}"
        log, about = make_log(url)
        with log:
            card = build_card(log, "credit", "5")
            print(
                f"card of credit v5: {len(card.metrics)} metric values, {about} events about "
                f"the version, {len(card.binding.events)} bound; log of {log.head().size} events"
            )
            print(f"{'format':<12}{'median ms':>10}{'max ms':>10}   target")
            for fmt in FORMATS:
                runs = args.runs if fmt != "pdf" else max(3, args.runs // 5)
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    render_card(build_card(log, "credit", "5"), fmt)
                    times.append(time.perf_counter() - t0)
                target = TARGETS.get(fmt)
                worst = max(times)
                verdict = (
                    ""
                    if target is None
                    else f"≤ {target * 1000:.0f} ms "
                    + ("met" if statistics.median(times) <= target else "MISSED")
                )
                print(
                    f"{fmt:<12}{statistics.median(times) * 1000:>10.1f}{worst * 1000:>10.1f}"
                    f"   {verdict}"
                )


if __name__ == "__main__":
    main()
