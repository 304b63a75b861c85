"""The everyday path: one model's cycle in-process, and one decision from the command line.

Usage: python benchmarks/bench_everyday.py [--cycles N] [--cli-runs K]

Prints, measured in one run, each figure next to its floor (issue 20):

1. The cycle, in-process, on SQLite: a training run through
   ``@track_training`` (parameters, two metrics and a 4 KB artifact written
   and hashed), an approval by a second person and a deploy to production.
   Each cycle decorates its training function anew, as a script does, so the
   code version and environment are captured for every run (the environment
   from the process's cache, the git state checked against the work tree).
   Target: median cycle at most 5 ms.
   Floor: the same work with nothing of auditml: the training function
   itself, hashing its artifact, and three durable single-row sqlite3
   commits (WAL, ``synchronous=FULL``, as auditml's store) of rows of the
   same size as the three events.
2. The decorator's overhead: a decorated call minus the plain call minus
   hashing the artifact (median of paired runs). Target: at most 2 ms.
3. One decision from the command line, whole process (``auditml status``,
   ``approve``, ``deploy`` on SQLite), against ``python -c pass`` run in
   turns in the same loop. Target: each at most 0.25 s. Each is given as wall
   time and as the CPU time the process used (user + system): on a machine
   other jobs load, CPU time is what the command itself costs, while wall
   time also counts waiting for a core. The commands run with their bytecode
   cached, as an installed package runs (pip compiles it at install): the
   cache goes to the run's temporary folder, whatever PYTHONDONTWRITEBYTECODE
   says, and one warm-up run of each command fills it.

Figures of the append path, ``Draft.build`` and ``verify`` come from
``benchmarks/bench_append.py``; see EXTRA_SECTIONS at the end of this file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from auditml import AuditLog, track_training

MODEL = "credit-risk"
TRAINER, APPROVER, RELEASER = "ds@bank.example", "validator@bank.example", "release@bank.example"
ARTIFACT_BYTES = 4096
EVENT_BYTES = 900  # about the size of the train event of this cycle; approvals are smaller
CYCLE_TARGET_MS = 5.0
OVERHEAD_TARGET_MS = 2.0
CLI_TARGET_S = 0.25


def median_ms(samples: list[float]) -> float:
    """Return the median of samples in seconds, in milliseconds."""
    return statistics.median(samples) * 1000


def train_body(artifact: Path, max_depth: int = 6, learning_rate: float = 0.1) -> dict[str, float]:
    """Stand in for training: write a 4 KB model file and return two metrics."""
    artifact.write_bytes(os.urandom(ARTIFACT_BYTES))
    return {"auc": 0.87 - learning_rate / 100, "ks": 0.41 + max_depth / 1000}


def make_train(log: AuditLog, artifact: Path) -> Callable[..., dict[str, float]]:
    """Decorate a fresh training function, as a training script does once per run."""

    @track_training(model=MODEL, log=log, actor=TRAINER, artifacts={"model": artifact})
    def train(max_depth: int = 6, learning_rate: float = 0.1) -> dict[str, float]:
        return train_body(artifact, max_depth, learning_rate)

    return train


def one_cycle(log: AuditLog, artifact: Path) -> float:
    """Train, approve and deploy one version; return the wall time in seconds."""
    t0 = time.perf_counter()
    train = make_train(log, artifact)
    train(max_depth=6, learning_rate=0.1)
    version = train.last_run.version  # type: ignore[attr-defined]
    log.approve(MODEL, version, reason="holdout AUC above 0.80", actor=APPROVER)
    log.deploy(MODEL, version, "production", reason="quarterly refresh", actor=RELEASER)
    return time.perf_counter() - t0


def floor_db(folder: Path) -> sqlite3.Connection:
    """Open a sqlite3 database set as auditml's store is, with one table of events."""
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE event (seq INTEGER PRIMARY KEY, hash BLOB, body BLOB)")
    return conn


def floor_cycle(conn: sqlite3.Connection, artifact: Path, seq: list[int]) -> float:
    """Do the cycle's work with nothing of auditml; return the wall time in seconds."""
    t0 = time.perf_counter()
    train_body(artifact)
    hashlib.sha256(artifact.read_bytes()).hexdigest()
    for _ in range(3):
        body = os.urandom(EVENT_BYTES)
        seq[0] += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO event VALUES (?, ?, ?)", (seq[0], hashlib.sha256(body).digest(), body)
        )
        conn.execute("COMMIT")
    return time.perf_counter() - t0


def cycle_figures(folder: Path, cycles: int) -> dict[str, float]:
    """Time the cycle and its floor in turns; return the medians and the decorator overhead."""
    log, _ = AuditLog.init(f"sqlite:///{folder / 'cycle.db'}", actor="admin@bank.example")
    artifact = folder / "model.bin"
    conn = floor_db(folder)
    seq = [0]
    for _ in range(5):  # warm up: imports, caches, the first capture of the work tree
        one_cycle(log, artifact)
        floor_cycle(conn, artifact, seq)
    cycle: list[float] = []
    floor: list[float] = []
    overhead: list[float] = []
    for _ in range(cycles):
        cycle.append(one_cycle(log, artifact))
        floor.append(floor_cycle(conn, artifact, seq))
        # The decorator's own cost: a decorated call against the plain call plus the hash.
        train = make_train(log, artifact)
        t0 = time.perf_counter()
        train(max_depth=6, learning_rate=0.1)
        t1 = time.perf_counter()
        train_body(artifact)
        hashlib.sha256(artifact.read_bytes()).hexdigest()
        t3 = time.perf_counter()
        overhead.append((t1 - t0) - (t3 - t1))
    conn.close()
    log.close()
    return {
        "cycle": median_ms(cycle),
        "floor": median_ms(floor),
        "overhead": median_ms(overhead),
    }


def child_cpu_s() -> float:
    """Return the user plus system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_figures(folder: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Time ``auditml status``, ``approve`` and ``deploy`` as whole processes, and the floor.

    Returns each command's median wall and median CPU seconds.
    """
    url = f"sqlite:///{folder / 'cli.db'}"
    with AuditLog.init(url, actor="admin@bank.example")[0] as log:
        for _ in range(runs + 2):
            log.record_training(MODEL, actor=TRAINER)  # versions 1 .. runs + 2
    env = {**os.environ, "AUDITML_ACTOR": RELEASER, "PYTHONPYCACHEPREFIX": str(folder / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    python = sys.executable
    auditml = [python, "-m", "auditml"]

    def run(argv: list[str]) -> tuple[float, float]:
        c0, t0 = child_cpu_s(), time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        took, cpu = time.perf_counter() - t0, child_cpu_s() - c0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[2:])} failed: {done.stderr.decode()}")
        return took, cpu

    times: dict[str, list[tuple[float, float]]] = {
        "pass": [],
        "status": [],
        "approve": [],
        "deploy": [],
    }
    run([python, "-c", "pass"])
    run([*auditml, "status", "--db", url])  # warm: bytecode caches, page cache
    run([*auditml, "approve", MODEL, "1", "--reason", "warm-up", "--actor", APPROVER, "--db", url])
    for i in range(2, runs + 2):
        times["pass"].append(run([python, "-c", "pass"]))
        times["status"].append(run([*auditml, "status", "--db", url]))
        approve = ["approve", MODEL, str(i), "--reason", "VR-1", "--actor", APPROVER]
        times["approve"].append(run([*auditml, *approve, "--db", url]))
        deploy = ["deploy", MODEL, str(i), "--env", "production", "--reason", "release"]
        times["deploy"].append(run([*auditml, *deploy, "--db", url]))
    return {
        name: (
            statistics.median(wall for wall, _ in samples),
            statistics.median(cpu for _, cpu in samples),
        )
        for name, samples in times.items()
    }


def print_cycle(figures: dict[str, float]) -> None:
    """Print the in-process figures with their floor and targets."""
    cycle, floor, overhead = figures["cycle"], figures["floor"], figures["overhead"]
    print("\nthe cycle, in-process on SQLite (train with a 4 KB artifact, approve, deploy):")
    print(f"  median cycle               {cycle:7.2f} ms   (target at most {CYCLE_TARGET_MS} ms)")
    print(f"  floor: same work, sqlite3  {floor:7.2f} ms")
    print(f"  cycle / floor              {cycle / floor:7.2f}x")
    print(
        f"  decorator overhead         {overhead:7.2f} ms   beyond the call and hashing the "
        f"artifact (target at most {OVERHEAD_TARGET_MS} ms)"
    )


def print_cli(figures: dict[str, tuple[float, float]]) -> None:
    """Print the command-line figures against ``python -c pass``, wall and CPU time."""
    wall0, cpu0 = figures["pass"]
    print("\none decision from the command line, whole process (SQLite), median:")
    print("                             wall ms    x floor     CPU ms    x floor")
    print(f"  python -c pass             {wall0 * 1000:7.1f}               {cpu0 * 1000:7.1f}")
    for name in ("status", "approve", "deploy"):
        wall, cpu = figures[name]
        print(
            f"  auditml {name:<18} {wall * 1000:7.1f}    {wall / wall0:6.1f}x    "
            f"{cpu * 1000:7.1f}    {cpu / max(cpu0, 1e-6):6.1f}x"
        )
    print(f"  (target: each at most {CLI_TARGET_S * 1000:.0f} ms of wall time)")


#: Sections the lead adds at merge: the append path (append_many against sqlite3 into a
#: 1,000,000-event log, Draft.build) and verify, from benchmarks/bench_append.py. Each is a
#: callable taking the temporary folder and printing its own figures and floors.
EXTRA_SECTIONS: list[Callable[[Path], None]] = []


def append_and_verify(events: int) -> Callable[[Path], None]:
    """Return the section printing bench_append.py's figures for a log of ``events`` events."""

    def section(_folder: Path) -> None:
        sys.path.insert(0, str(Path(__file__).parent))
        import bench_append

        print(f"append path and verify, {events:,}-event log (benchmarks/bench_append.py):")
        bench_append.print_figures({"append", "build", "verify"}, events, 50_000, 3)

    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--cli-runs", type=int, default=15)
    parser.add_argument(
        "--log-events",
        type=int,
        default=1_000_000,
        help="size of the log for the append and verify figures (0 skips them)",
    )
    args = parser.parse_args()
    if args.log_events:
        EXTRA_SECTIONS.append(append_and_verify(args.log_events))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="auditml-everyday-") as tmp:
        folder = Path(tmp)
        print_cycle(cycle_figures(folder, args.cycles))
        print_cli(cli_figures(folder, args.cli_runs))
        for section in EXTRA_SECTIONS:
            section(folder)


if __name__ == "__main__":
    main()
