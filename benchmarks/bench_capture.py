"""Training capture: the decorator's overhead per call, and fingerprint throughput.

Usage: python benchmarks/bench_capture.py [--calls N] [--file-mib M] [--files K]

1. Overhead. Times the same training function plain and decorated (no
   datasets or artifacts, so no hashing), on a log that already holds a few
   hundred runs of the model. Prints the median and 90th percentile of each,
   and the overhead: what the decorator adds to one call (target: at most
   2 ms). The decorated call includes a durable append (fsync) and the policy
   and version checks.
2. A large file. Hashes one file of M MiB (warm in the page cache) with
   auditml and, in the same run, with ``hashlib.sha256`` over the same bytes
   already in memory: the single-stream speed of SHA-256 itself (target:
   auditml at 90% of it or more).
3. A folder of K files. Hashes it with auditml's manifest (a thread pool) and
   with a one-file-at-a-time loop, and prints the speed-up and the CPU time
   per wall second (2.0 means both cores are busy).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from auditml import AuditLog, track_training
from auditml._internal.fingerprint import dataset_ref, folder_manifest, hash_file

ACTOR = "bench@bank.example"


def work(n: int) -> dict[str, float]:
    """Stand in for a tiny training step: a fixed amount of pure-Python arithmetic."""
    total = 0.0
    for i in range(n):
        total += (i % 7) * 0.5
    return {"loss": total / max(n, 1)}


def timed(fn: object, calls: int, *args: object) -> list[float]:
    """Return the wall time in ms of each of ``calls`` calls."""
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p90(values: list[float]) -> float:
    """Return the 90th percentile."""
    return sorted(values)[int(len(values) * 0.9)]


def cpu_s() -> float:
    """Return this process's user plus system CPU time, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best(fn: Callable[[], object], repeat: int = 3) -> tuple[float, float]:
    """Return the best wall time of ``repeat`` runs of ``fn`` and that run's CPU seconds."""
    runs = []
    for _ in range(repeat):
        c0, t0 = cpu_s(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0, cpu_s() - c0))
    return min(runs)


def sha256_in_memory(data: bytes) -> str:
    """Hash bytes already in memory in 1 MiB updates: SHA-256's single-stream speed."""
    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(data), 1 << 20):
        digest.update(view[start : start + (1 << 20)])
    return digest.hexdigest()


def fingerprints(tmp: Path, file_mib: int, files: int) -> None:
    """Measure and print large-file and many-file hashing throughput."""
    data = os.urandom(file_mib << 20)
    big = tmp / "big.bin"
    big.write_bytes(data)
    hash_file(big)  # warm the page cache
    base, _ = best(lambda: sha256_in_memory(data))
    ours, _ = best(lambda: hash_file(big))
    mib = file_mib
    print(f"large file            {mib} MiB, warm in the page cache")
    print(f"  hashlib.sha256      {mib / base:,.0f} MiB/s over the bytes in memory")
    print(
        f"  auditml hash_file   {mib / ours:,.0f} MiB/s from the file: "
        f"{base / ours:.1%} of hashlib (target >= 90%)"
    )
    big.unlink()
    data = b""
    folder = tmp / "folder"
    folder.mkdir()
    each = 256 << 10
    for i in range(files):
        (folder / f"part-{i:05}.bin").write_bytes(os.urandom(each))
    total_mib = files * each / (1 << 20)
    paths = sorted(folder.iterdir())
    folder_manifest(folder)  # warm
    serial, serial_cpu = best(lambda: [hash_file(p) for p in paths])
    parallel, parallel_cpu = best(lambda: dataset_ref(folder))
    print(f"folder                {files:,} files of 256 KiB ({total_mib:,.0f} MiB), warm")
    print(
        f"  one file at a time  {total_mib / serial:,.0f} MiB/s, "
        f"{serial_cpu / serial:.2f} CPU s per wall s"
    )
    print(
        f"  auditml manifest    {total_mib / parallel:,.0f} MiB/s, "
        f"{parallel_cpu / parallel:.2f} CPU s per wall s: {serial / parallel:.2f}x "
        f"on {os.cpu_count()} cores"
    )


def main() -> None:
    """Measure and print the decorator's overhead and fingerprint throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--work", type=int, default=20_000, help="loop size of the function")
    parser.add_argument("--file-mib", type=int, default=1024, help="size of the large file")
    parser.add_argument("--files", type=int, default=2000, help="files in the folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'audit.db'}"
        log, _ = AuditLog.init(url, origin="bench.example/capture", actor=ACTOR)
        with log:
            tracked = track_training(model="bench", log=log, actor=ACTOR)(work)
            for _ in range(20):  # warm up: imports, provenance capture, caches
                tracked(args.work)
                work(args.work)
            plain: list[float] = []
            decorated: list[float] = []
            for _ in range(args.calls // 10):  # interleave, so drift hits both alike
                plain += timed(work, 10, args.work)
                decorated += timed(tracked, 10, args.work)
            size = log.head().size
        plain_med, dec_med = statistics.median(plain), statistics.median(decorated)
        print(f"calls                 {len(decorated)} (log ends with {size} events)")
        print(f"plain call            median {plain_med:.3f} ms, p90 {p90(plain):.3f} ms")
        print(f"decorated call        median {dec_med:.3f} ms, p90 {p90(decorated):.3f} ms")
        print(
            f"overhead per call     median {dec_med - plain_med:.3f} ms "
            f"(p90 {p90(decorated) - p90(plain):.3f} ms; target <= 2 ms, no hashing involved)"
        )
        fingerprints(Path(tmp), args.file_mib, args.files)


if __name__ == "__main__":
    main()
