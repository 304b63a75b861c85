"""Many writers at once, and writers killed mid-append, on both backends."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditml import AuditLog

ORIGIN = "bank.example/credit-models"
WORKERS = 8
PER_WORKER = 500


def _append_singly(url: str, worker: int, count: int) -> int:
    """Append ``count`` events one durable append at a time; return how many landed."""
    with AuditLog.open(url) as log:
        for i in range(count):
            log.append(
                "model.evaluate",
                subject={"model": f"model-{worker}", "version": "1"},
                data={"metrics": {"i": i}},
                actor=f"worker-{worker}@bank.example",
                imported=True,
            )
    return count


def test_eight_processes_appending_at_once_make_one_unbroken_chain(db_url: str) -> None:
    """8 processes x 500 appends give exactly 4,000 events, in one gapless chain that verifies."""
    AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        done = pool.starmap(_append_singly, [(db_url, w, PER_WORKER) for w in range(WORKERS)])
    assert sum(done) == WORKERS * PER_WORKER
    with AuditLog.open(db_url) as log:
        report = log.verify()
        assert report.size == 1 + WORKERS * PER_WORKER
        per_worker: dict[str, list[int]] = {}
        for rec in log.events(action="model.evaluate"):
            per_worker.setdefault(rec.event.actor.id, []).append(
                int(rec.event.data["metrics"]["i"])
            )
    assert len(per_worker) == WORKERS
    # Each writer's own events are all there, in the order it wrote them.
    assert all(seen == list(range(PER_WORKER)) for seen in per_worker.values())


WRITER = """
import sys
from auditml import AuditLog, Draft
url, batch = sys.argv[1], int(sys.argv[2])
with AuditLog.open(url) as log:
    i = 0
    while True:
        log.append_many([
            Draft.build("model.evaluate", actor="w@bank.example",
                        subject={"model": "m", "version": "1"},
                        data={"metrics": {"i": i + k}, "notes": "x" * 200})
            for k in range(batch)
        ], imported=True)
        i += batch
        print(i, flush=True)
"""


@pytest.mark.parametrize("batch", [1, 50, 20000])
def test_a_killed_writer_leaves_no_half_event(db_url: str, tmp_path: Path, batch: int) -> None:
    """SIGKILL during appends leaves only whole batches, and the next open verifies cleanly."""
    AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for _round in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(script), db_url, str(batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        reported = 0
        deadline = time.monotonic() + 60
        # Let it commit at least one batch, then kill it while it builds or writes the next.
        while reported == 0 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported = int(line)
        time.sleep(0.05 if batch < 1000 else 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert reported > 0, proc.stderr.read() if proc.stderr else ""
        with AuditLog.open(db_url) as log:
            report = log.verify()
            assert (report.size - 1) % batch == 0
            assert report.size == log.head().size
