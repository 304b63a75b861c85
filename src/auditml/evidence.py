"""Runtime evidence: the runtime records a log commits to, read from their verified bytes.

Views of runtime records (:mod:`auditml.serving`), promotion rules and
monitors (:mod:`auditml.lifecycle`) read records through this module only.
Each reads the ``runtime.segment`` events on the log up to its head and counts
a segment's records only once they hash to the segment's root, so a record
row added, changed or relabelled in the database is never counted: the
columns copied out of a record are indexes, never facts.

:func:`window_samples` is the fast path the monitor uses over a window of
many records, with a helper process reading part of the window: the read
itself is :mod:`auditml._internal.window_read`'s (one SHA-256 per record, the
tree built with C-level maps, the few fields a window needs read in place). A
segment in which anything looks wrong is read again by
:func:`verified_records`, which names the first record that fails. As in
``verify``'s fast path, a key given twice in a record is read as orjson reads
it (the last wins); auditml never writes one, and such a record still has to
hash to its segment's root.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from auditml._internal.tree_worker import gc_paused
from auditml._internal.window_read import (
    Read,
    Segment,
    WindowRequest,
    add_record,
    merge,
    no_table,
    read_into,
    sample_of,
)
from auditml.core import merkle
from auditml.core.canonical import loads_strict
from auditml.core.records import SEGMENT_ACTION
from auditml.core.samples import Sample
from auditml.errors import AuditmlError, VerificationError
from auditml.ledger import Ledger

__all__ = [
    "PARALLEL_MIN",
    "WindowRequest",
    "checked_record",
    "segments_of",
    "verified_records",
    "window_samples",
]


# --------------------------------------------------------------------------- verified records


def segments_of(
    ledger: Ledger,
    *,
    model: str | None = None,
    env: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[Segment]:
    """Return the segment events up to the log's head whose data may hold matching records.

    The events are read through their checked bytes; their data, not the
    record columns, says which model, environment and times a segment covers.
    """
    found = []
    for rec in ledger.events(action=SEGMENT_ACTION, stop=ledger.head().size):
        data = rec.event.data
        try:
            count, root = data["count"], bytes.fromhex(str(data["root"]))
            if not isinstance(count, int) or count < 1 or len(root) != 32:
                raise ValueError(count)
        except (KeyError, TypeError, ValueError):
            raise VerificationError(
                "its runtime.segment data holds no count and root; run `auditml verify`",
                kind="record",
                seq=rec.seq,
            ) from None
        seg = Segment(
            rec.seq,
            rec.event.time,
            count,
            root,
            data.get("stream"),
            data.get("model"),
            data.get("env"),
            data.get("first_time"),
            data.get("last_time"),
        )
        if model is not None and seg.model != model:
            continue
        if env is not None and seg.env != env:
            continue
        if since is not None and isinstance(seg.last_time, str) and seg.last_time < since:
            continue
        if until is not None and isinstance(seg.first_time, str) and seg.first_time >= until:
            continue
        found.append(seg)
    return found


def _record_fault(seg: int, i: int, problem: str) -> VerificationError:
    return VerificationError(
        f"runtime record {i}: {problem}; run `auditml verify`", kind="record", seq=seg
    )


def checked_record(seg: int, i: int, body: object) -> dict[str, Any]:
    """Return the record held in ``body`` if it has every field a view reads, else raise."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise _record_fault(seg, i, "its bytes are stored as text, not the bytes auditml wrote")
    try:
        record = loads_strict(bytes(body))
    except (AuditmlError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise _record_fault(seg, i, "its stored bytes are not a JSON record")
    for name in ("request_id", "time", "model", "version", "env"):
        if not isinstance(record.get(name), str):
            raise _record_fault(seg, i, f"its {name} is {record.get(name)!r}, not a string")
    latency = record.get("latency_ms")
    if (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not math.isfinite(latency)
    ):
        raise _record_fault(seg, i, f"its latency_ms is {latency!r}, not a number")
    if not (record.get("error") is None or isinstance(record.get("error"), str)):
        raise _record_fault(seg, i, f"its error is {record.get('error')!r}, not a string or null")
    if not isinstance(record.get("output"), dict):
        raise _record_fault(seg, i, "its output is not an object")
    return record


def _within(seg: Segment, record: Mapping[str, Any]) -> bool:
    """Return whether a record is of the model, env and time span its segment event states."""
    return (
        (seg.model is None or record["model"] == seg.model)
        and (seg.env is None or record["env"] == seg.env)
        and (not isinstance(seg.first_time, str) or record["time"] >= seg.first_time)
        and (not isinstance(seg.last_time, str) or record["time"] <= seg.last_time)
    )


def _close(seg: Segment, leaves: list[bytes]) -> None:
    """Raise unless the leaves read for ``seg`` are exactly the records its event commits."""
    if len(leaves) != seg.count:
        raise VerificationError(
            f"the segment commits {seg.count} runtime records but {len(leaves)} are stored: "
            "records were removed or added in the database; run `auditml verify`",
            kind="record",
            seq=seg.seq,
        )
    if merkle.root_of(leaves) != seg.root:
        raise VerificationError(
            "its stored runtime records do not hash to the segment's root: a record was "
            "changed, removed or reordered in the database; run `auditml verify`",
            kind="record",
            seq=seg.seq,
        )


def verified_records(
    ledger: Ledger,
    *,
    model: str | None = None,
    env: str | None = None,
    since: str | None = None,
    until: str | None = None,
    only: frozenset[int] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(segment time, record)`` of the committed records that match the filters.

    ``only`` limits the read to the segments of those seqs.

    Records come from their verified bytes, with the time their segment was
    appended (no record in it can have been made later).

    Segment by segment, in log order: a segment's records are yielded only once
    they hash to its root, and a segment whose stored records do not raise
    VerificationError naming it. Filters are applied to the records' bytes.
    """
    segments = segments_of(ledger, model=model, env=env, since=since, until=until)
    if only is not None:
        segments = [seg for seg in segments if seg.seq in only]
    if not segments:
        return
    wanted = {seg.seq: seg for seg in segments}
    with ledger.store.snapshot() as snap:
        if not snap.holds_records():
            raise VerificationError(
                "the log has runtime.segment events but the store has no runtime record table",
                kind="record",
                seq=segments[0].seq,
            )
        current: Segment | None = None
        leaves: list[bytes] = []
        held: list[tuple[str, dict[str, Any]]] = []
        seen: set[int] = set()
        for seg_no, bodies in snap.bodies_of_segments(ledger.log_id, list(wanted)):
            if current is not None:
                _close(current, leaves)
                yield from held
            current, leaves, held = wanted[seg_no], [], []
            seen.add(current.seq)
            for i, body in enumerate(bodies):
                record = checked_record(current.seq, i, body)
                leaves.append(merkle.leaf_hash(bytes(body)))
                said, stream = record.get("i"), record.get("stream")
                if said != i or stream != current.stream:
                    raise _record_fault(
                        current.seq,
                        i,
                        f"the record stored in its place says it is record {said!r} of "
                        f"{stream!r}: the segment's records ({current.stream!r}) are missing, "
                        "added or out of order in the store",
                    )
                if not _within(current, record):
                    raise _record_fault(
                        current.seq,
                        i,
                        f"it is of {record['model']!r} in {record['env']!r} at {record['time']}, "
                        f"outside what its segment event says it holds ({current.model!r} in "
                        f"{current.env!r}, {current.first_time} to {current.last_time})",
                    )
                if (
                    (model is None or record["model"] == model)
                    and (env is None or record["env"] == env)
                    and (since is None or record["time"] >= since)
                    and (until is None or record["time"] < until)
                ):
                    held.append((current.time, record))
        if current is not None:
            _close(current, leaves)
            yield from held
    if len(seen) != len(wanted):
        missing = min(set(wanted) - seen)
        raise VerificationError(
            f"the segment's {wanted[missing].count} runtime records are missing from the "
            "store; run `auditml verify`",
            kind="record",
            seq=missing,
        )


#: A window of at least this many segments is read by two processes (one a helper).
PARALLEL_MIN = 200


#: Segments this process reads between two looks at the helper, and that it hands the
#: helper at a time (two at once, so the helper never waits for this process to look).
OWN_STEP = 4
HELPER_STEP = 8


def window_samples(
    ledger: Ledger,
    *,
    model: str,
    env: str,
    since: str,
    until: str,
    versions: Sequence[str],
    fields: Sequence[str] = (),
    parallel: bool | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> dict[str, Sample]:
    """Return, per version asked for, its verified runtime records in ``[since, until)``.

    Each :class:`~auditml.core.rollout.Sample` holds the requests, errors,
    latencies and the numeric output ``fields`` of one version's records of
    ``model`` in ``env``, read from records that hash to their segments' roots.
    A segment whose stored records do not hold up raises VerificationError.
    With ``parallel`` (the default for a window of ``PARALLEL_MIN`` segments or
    more on a machine with two cores), a helper process reads segments too:
    this process reads from the first segment on and hands the helper the
    last ones, a few at a time, until they meet, so neither waits for the other
    (a helper slow to start simply gets less). Whatever the helper was handed
    and did not answer, this process reads. ``meanwhile`` (the caller's next
    preparation, e.g. an import) runs while the helper finishes its last
    segments; whatever it raises is left for the caller to meet again.
    The cyclic garbage collector is paused while the records are read.
    """
    ask = WindowRequest(model, env, since, until, tuple(versions), tuple(fields))
    samples: dict[str, Sample] = {v: Sample(0, 0, array("d"), {}) for v in versions}
    segments = segments_of(ledger, model=model, env=env, since=since, until=until)
    if not segments:
        return samples
    by_seq = {seg.seq: seg for seg in segments}
    if parallel is None:
        parallel = len(segments) >= PARALLEL_MIN and (os.cpu_count() or 1) > 1
    helper = _Helper.start(ledger, segments, ask) if parallel and len(segments) > 1 else None
    parts = [Read({}, set(), [])]
    try:
        with gc_paused(), ledger.store.snapshot() as snap:
            if not snap.holds_records():
                raise no_table(segments[0])
            front, back = 0, len(segments)
            while front < back:
                if helper is not None:
                    back = helper.hand(front, back)
                step = min(front + OWN_STEP, back)
                if step > front:
                    read_into(snap, ledger.log_id, segments[front:step], ask, parts[0])
                front = step
            if helper is not None:
                if meanwhile is not None:  # while the helper finishes its last ranges
                    helper.end()
                    with contextlib.suppress(Exception):
                        meanwhile()
                theirs, handed = helper.finish(), helper.handed
                helper = None
                if theirs is None:  # the helper broke: read what it was handed here
                    theirs = Read({}, set(), [])
                    for low, high in handed:
                        read_into(snap, ledger.log_id, segments[low:high], ask, theirs)
                parts.append(theirs)
    finally:
        if helper is not None:  # this process failed (or was interrupted) while it read
            helper.stop()
    seen = set().union(*(part.seen for part in parts))
    if len(seen) != len(by_seq):
        missing = min(set(by_seq) - seen)
        raise VerificationError(
            f"the segment's {by_seq[missing].count} runtime records are missing from the "
            "store; run `auditml verify`",
            kind="record",
            seq=missing,
        )
    for part in parts:
        for version, sample in part.samples.items():
            merge(sample_of(samples, version), sample)
    wanted = frozenset(versions)
    for seq in sorted(s for part in parts for s in part.slow):
        # The careful reader names the first record that fails, or reads a segment
        # that only looked odd (e.g. a record of another model it may hold).
        seg = by_seq[seq]
        for _, record in _verified_segment(ledger, seg, model, env, since, until):
            if record["version"] in wanted:
                add_record(
                    sample_of(samples, record["version"]),
                    record["error"],
                    float(record["latency_ms"]),
                    record["output"],
                    fields,
                )
    return samples


# --------------------------------------------------------------------------- the helper process


class _Helper:
    """A helper process reading the segments this process hands it, from the last ones down.

    The exchange, one line each way at a time: the helper says ``ready``, then
    ``done`` after each range it was handed; this process answers with the
    next range (``LOW HIGH``, indexes into the segment list) or ``end``. After
    ``end`` the helper answers with what it read (see :func:`serve_request`).
    Where this process cannot look at the helper's lines without waiting (no
    non-blocking pipes), it hands the helper the later half at once.
    """

    def __init__(self, proc: subprocess.Popen[bytes], size: int) -> None:
        self.proc = proc
        self.handed: list[tuple[int, int]] = []
        self.size = size
        self.ended = False
        self.broken = False
        self.waiting = 0  # ranges handed and not yet done
        self.said = b""
        self.ready = False
        self.writer: threading.Thread | None = None
        assert proc.stdout is not None
        self.out = proc.stdout.fileno()
        try:
            os.set_blocking(self.out, False)
            self.polled = True
        except (OSError, AttributeError, ValueError):
            self.polled = False

    @classmethod
    def start(
        cls, ledger: Ledger, segments: Sequence[Segment], ask: WindowRequest
    ) -> _Helper | None:
        """Start a helper over ``segments``, or return None if it cannot start.

        The request is written by a thread: it is larger than a pipe holds, and
        the helper reads it only once it has started, which this process does not wait for.
        """
        proc = _spawn(ledger, segments, ask)
        if proc is None:
            return None
        if proc.stdin is None or proc.stdout is None:
            proc.kill()
            proc.wait()
            return None
        helper = cls(proc, len(segments))
        helper.writer = threading.Thread(
            target=helper._write, args=(_request(ledger, segments, ask),), daemon=True
        )
        helper.writer.start()
        return helper

    def _write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.broken = True

    def _send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        if self.writer is not None:
            self.writer.join()  # the request goes first
            self.writer = None
        try:
            self.proc.stdin.write(line + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self.broken = True

    def _give(self, front: int, back: int, step: int) -> int:
        """Hand the helper up to ``step`` segments below ``back`` (none of this process's).

        Ranges shrink as the two readers near each other, so that when this
        process is done the helper has little left to finish.
        """
        step = max(1, min(step, (back - front) // 8))
        low = max(back - step, front + OWN_STEP)
        if low >= back or self.broken:
            return back
        self._send(b"%d %d" % (low, back))
        if self.broken:
            return back
        self.handed.append((low, back))
        self.waiting += 1
        return low

    def hand(self, front: int, back: int) -> int:
        """Look at what the helper said, hand it more if it is ready for it; return new back.

        Never waits. ``front`` is where this process reads next: the helper is
        handed only segments at or after ``front + OWN_STEP``.
        """
        if self.ended or self.broken:
            return back
        if not self.polled:  # hand over the later half once; the helper reads it all
            half = max(front + OWN_STEP, (front + back) // 2)
            if half < back:
                self._send(b"%d %d" % (half, back))
                if not self.broken:
                    self.handed.append((half, back))
                    back = half
            self.end()
            return back
        try:
            while chunk := os.read(self.out, 1 << 16):
                self.said += chunk
            self.broken = True  # the helper closed its output without answering
            return back
        except BlockingIOError:
            pass
        except OSError:
            self.broken = True
            return back
        while b"\n" in self.said and not self.said.startswith(b"{"):
            line, _, self.said = self.said.partition(b"\n")
            if line == b"ready" and not self.ready:
                self.ready = True
                back = self._give(front, back, HELPER_STEP)
                back = self._give(front, back, HELPER_STEP)
            elif line == b"done" and self.waiting > 0:
                self.waiting -= 1
                back = self._give(front, back, HELPER_STEP)
            else:
                self.broken = True
                return back
        return back

    def end(self) -> None:
        """Tell the helper no more ranges come: it answers once it has read what it has."""
        if not self.ended:
            self.ended = True
            self._send(b"end")

    def stop(self) -> None:
        """End the helper at once, whatever it is doing."""
        self.proc.kill()
        self.proc.wait()
        if self.writer is not None:
            self.writer.join()
            self.writer = None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def finish(self) -> Read | None:
        """Return what the helper read of what it was handed, or None when it broke."""
        if not self.handed or self.broken:
            self.stop()
            return Read({}, set(), []) if not self.handed else None
        self.end()
        if self.broken:
            self.stop()
            return None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
            os.set_blocking(self.out, True)
            rest = [self.said]
            while chunk := os.read(self.out, 1 << 20):
                rest.append(chunk)
        except OSError:
            self.stop()
            return None
        self.proc.stdout.close()
        self.proc.wait()
        out = b"".join(rest)
        while out.startswith((b"ready\n", b"done\n")):
            out = out.partition(b"\n")[2]
        return _answer(out, self.handed)


def _spawn(
    ledger: Ledger, segments: Sequence[Segment], ask: WindowRequest
) -> subprocess.Popen[bytes] | None:
    """Start a helper process for ``segments``, or return None if it cannot start.

    The helper runs as ``python -m auditml._internal.window_worker``, never
    re-importing a user's script; its request follows on stdin (:func:`_request`).
    """
    if not ledger.store.shareable:
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "auditml._internal.window_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def _request(ledger: Ledger, segments: Sequence[Segment], ask: WindowRequest) -> bytes:
    """Return the helper's request: one JSON line (on stdin, so no password shows in ``ps``)."""
    request = {
        "url": ledger.store.url,
        "log_id": ledger.log_id,
        "ask": asdict(ask),
        "segments": [_segment_json(seg) for seg in segments],
    }
    return json.dumps(request).encode() + b"\n"


def _segment_json(seg: Segment) -> dict[str, Any]:
    return {**asdict(seg), "root": seg.root.hex()}


def _answer(out: bytes, handed: list[tuple[int, int]]) -> Read | None:
    """Return what the helper's answer says it read, or None unless it read all it was handed."""
    head, _, rest = out.partition(b"\n")
    try:
        header = json.loads(head)
        if not header.get("ok"):
            return None
        if sorted(tuple(r) for r in header["ranges"]) != sorted(handed):
            return None
        view = memoryview(rest)
        at = 0
        samples: dict[str, Sample] = {}

        def take(size: int) -> array[float]:
            nonlocal at
            values = array("d")
            values.frombytes(view[at : at + size])
            at += size
            return values

        for version, figures in header["versions"].items():
            latency = take(int(figures["latency"]))
            scores = {name: take(int(size)) for name, size in figures["scores"].items()}
            samples[version] = Sample(
                int(figures["requests"]), int(figures["errors"]), latency, scores
            )
        if at != len(rest):
            return None
        return Read(samples, {int(s) for s in header["seen"]}, [int(s) for s in header["slow"]])
    except (ValueError, KeyError, TypeError):
        return None


def _verified_segment(
    ledger: Ledger, seg: Segment, model: str, env: str, since: str, until: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield the matching verified records of one segment, raising at the first that fails."""
    yield from verified_records(
        ledger, model=model, env=env, since=since, until=until, only=frozenset({seg.seq})
    )
