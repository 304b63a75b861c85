"""MLflow watch benchmark: one poll of an unchanged registry as the log grows, against its floor.

    python benchmarks/bench_mlflow_poll.py [--sizes 2000,20000,100000] [--rounds 5]

A poll of ``auditml mlflow watch`` (without MLflow's own round trip) is what
``cli.mlflow._record`` does with the snapshot MLflow returned: look up what
the log knows of the registry (``registry_known``), then record the difference
under the head lock (``record_registry``, which decides from the log again).
Here the registry shows one model with 50 versions and nothing has changed
since the last poll, so each poll appends nothing: what it costs is reading
what the log already holds.

For each log size (``registry.change`` events, built in batches of 5,000
alias moves and tag changes on the 50 versions), measured in the same run on
SQLite, best and median of ``--rounds``:

- the floor: reading every ``registry.change`` event of the log once
  (``AuditLog.events(action="registry.change")``: the query, one hash check and
  one parse per event);
- a poll as each release before this one did it: every read folds all the
  registry's events again (the kept fold is dropped before each of the two
  reads, which is what reading without it costs);
- a poll now: the fold kept from the last poll, advanced by the events after
  it (none here) once its last event reads back with the same bytes.

The uncached poll grows with the log (about two floors); the kept one stays flat.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from auditml import AuditLog, Draft
from auditml.core.events import Actor
from auditml.core.registry import KnownModel, KnownVersion, Snapshot

ORIGIN = "bench.example/credit-models"
URI = "http://mlflow.internal:5000"
MODEL = "credit-risk"
VERSIONS = 50
BATCH = 5_000


def _registry() -> Snapshot:
    """Return what the registry shows: MODEL with VERSIONS versions, a champion and tags."""
    versions = {str(v): KnownVersion(str(v), tags={"stage-ok": "yes"}) for v in range(1, 51)}
    return {MODEL: KnownModel(MODEL, versions=versions, aliases={"champion": "50"})}


def _history(count: int) -> list[Draft]:
    """Return ``count`` registry.change drafts: alias moves and tag changes, as polls record."""
    actor = Actor(id="ops@bank.example")
    drafts = []
    for n in range(count):
        version = str(n % VERSIONS + 1)
        if n % 2:
            data = {"kind": "alias.set", "alias": "champion", "previous": "1"}
        else:
            data = {"kind": "tag.set", "key": "stage-ok", "value": "yes" if n % 4 else "no"}
        drafts.append(
            Draft.build(
                "registry.change",
                actor=actor,
                subject={"model": MODEL, "version": version},
                data={**data, "uri": URI, "via": "poll", "violations": []},
            )
        )
    return drafts


def build(path: Path, size: int) -> None:
    """Make a log at ``path`` holding about ``size`` registry.change events."""
    log, _ = AuditLog.init(f"sqlite:///{path}", origin=ORIGIN)
    with log:
        log.record_registry(_registry(), via="import", uri=URI, actor="ops@bank.example")
        left = size
        while left > 0:
            drafts = _history(min(BATCH, left))
            log._ledger.decide_batch(lambda view, d=drafts: d)
            left -= len(drafts)
        # The last poll brings the log back to what the registry shows.
        log.record_registry(_registry(), via="poll", uri=URI, actor="ops@bank.example")


def _timed(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Return the best and median seconds of ``rounds`` runs of ``run``."""
    took = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        took.append(time.perf_counter() - start)
    return min(took), statistics.median(took)


def measure(path: Path, rounds: int) -> dict[str, tuple[float, float]]:
    """Return the floor, the uncached poll and the kept-fold poll on the log at ``path``."""
    with AuditLog.open(f"sqlite:///{path}") as log:
        states = log._ledger._states
        shows = _registry()

        def floor() -> int:
            return sum(1 for _ in log.events(action="registry.change"))

        def poll(keep: bool) -> None:
            if not keep:
                states.registries = None
            known = log.registry_known(URI)
            if not keep:
                states.registries = None
            recorded = log.record_registry(shows, via="poll", uri=URI, actor="ops@bank.example")
            assert not recorded.changes and known

        size = log.head().size
        poll(True)  # warm: the first poll of a process folds the log once
        found: dict[str, tuple[float, float]] = {}
        found["floor"] = _timed(floor, rounds)
        found["poll, no kept fold"] = _timed(lambda: poll(False), rounds)
        found["poll, kept fold"] = _timed(lambda: poll(True), rounds)
        assert log.head().size == size
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            path = Path(folder) / f"poll-{size}.db"
            build(path, size)
            found = measure(path, args.rounds)
            floor = found["floor"][0]
            print(f"{size:>8,} registry.change events")
            for name, (best, median) in found.items():
                print(
                    f"  {name:<20} best {best * 1000:9.2f} ms  median {median * 1000:9.2f} ms"
                    f"  ({best / floor:6.3f} x floor)"
                )


if __name__ == "__main__":
    main()
