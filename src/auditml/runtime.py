"""Runtime records: what each deployed model version did, recorded at serving speed.

A :class:`Recorder` takes one record per request. :meth:`Recorder.record` checks
what it is given and queues it, nothing more, so a serving thread pays a couple
of microseconds: a bad record (no request id, NaN or infinity in the output, a
value JSON cannot hold, NUL or other control characters in a column, an
over-long text) is refused there and then, with an error naming the field, so
it can never poison a later segment. The record's canonical bytes, its hash,
the commitments to its personal values and the segment's Merkle root are made
on the flushing thread.

Personal and bulky values (``subject``, ``features``, ``payload`` and any value
named in ``personal``) never enter a record: each is kept off the log with its
own random salt, and the record carries only its commitment (format section 6).

Records are committed in segments, by count or age, from a background thread,
and on :meth:`Recorder.flush` and :meth:`Recorder.close`. One flush of a segment
is one transaction: the ``runtime.segment`` event and its records land together
or not at all.

Memory is bounded by ``max_pending`` queued records. When the queue is full,
``record()`` wakes the flusher and waits for room for at most ``max_block``
seconds; if there is still none, it moves the oldest queued records to the
spool file and goes on. When the store cannot be reached, the flusher moves
what it could not commit to the spool too, and delivers the spool on a later
flush. The spool (mode 0600, never a symlink) holds at most ``max_spool``
records; records that fit nowhere, and spool lines found corrupt, are counted,
warned about, and the count is recorded on the log in the ``dropped`` field of
the next segment event. Nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time as _time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from auditml.core import merkle
from auditml.core.canonical import canonical_bytes, canonical_text, loads_strict
from auditml.core.events import Actor, Draft, SegmentData
from auditml.core.records import (
    COMMITTED,
    ERROR_MAX,
    REQUEST_ID_MAX,
    VERSION_MAX,
    Entry,
    RecordEncoder,
    check_latency,
    check_output,
    check_text,
    check_time,
    check_values,
    entry_line,
    open_commitment,
    parse_record_line,
    parse_record_lines,
)
from auditml.errors import InvalidInputError, StoreError

if TYPE_CHECKING:
    from auditml.ledger import Ledger, Receipt

__all__ = ["COMMITTED", "Ingested", "Opened", "Recorder", "ingest", "open_value"]

_time_ns = _time.time_ns
_ID_FIX = "pass the caller's id for the request"
_VERSION_FIX = "name the version that served it"
_ERROR_FIX = "give an error code, or None for none"


@dataclass(frozen=True, slots=True)
class _Made:
    """A segment made and ready to append: store rows, value rows, and its event's figures."""

    rows: list[tuple[Any, ...]]
    values: list[tuple[Any, ...]]
    root: str
    first_time: str
    last_time: str
    versions: list[str]


@dataclass(frozen=True, slots=True)
class Opened:
    """A commitment opened for an auditor: the value and salt, checked against the record."""

    request_id: str
    name: str
    value: Any
    salt: str
    commitment: str


@dataclass(frozen=True, slots=True)
class Ingested:
    """What an ingest of JSON Lines committed: records, segments and their event seqs."""

    records: int
    segments: int
    first_seq: int | None
    last_seq: int | None

    def as_dict(self) -> dict[str, int | None]:
        """Return the counts as a JSON object."""
        return {
            "records": self.records,
            "segments": self.segments,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


class Recorder:
    """A thread-safe recorder of one model's runtime records in one environment.

    Get one from ``AuditLog.runtime(model, env=...)`` and close it (or use it as
    a context manager) so the last records are committed.
    """

    def __init__(
        self,
        ledger: Ledger,
        actor: Actor,
        model: str,
        env: str,
        *,
        max_records: int = 1000,
        max_age: float = 1.0,
        spool: str | os.PathLike[str] | None = None,
        max_spool: int = 1_000_000,
        max_pending: int = 100_000,
        max_block: float = 0.05,
        background: bool = True,
    ) -> None:
        if max_records < 1:
            raise InvalidInputError(f"max_records must be 1 or more, not {max_records}")
        if max_age <= 0:
            raise InvalidInputError(f"max_age must be more than 0 seconds, not {max_age}")
        if max_pending < max_records:
            raise InvalidInputError(
                f"max_pending ({max_pending}) must be at least max_records ({max_records}), "
                "so a whole segment fits in memory"
            )
        if max_block < 0:
            raise InvalidInputError(f"max_block must be 0 seconds or more, not {max_block}")
        if max_spool < 0:
            raise InvalidInputError(f"max_spool must be 0 or more, not {max_spool}")
        self._ledger = ledger
        self._actor = actor
        self._encoder = RecordEncoder(model, env)  # refuses a bad stream now
        self.model = model
        self.env = env
        self.stream = self._encoder.stream
        self._max_records = max_records
        self._max_age_ns = int(max_age * 1e9)
        self._tick = max_age / 4
        self._max_pending = max_pending
        self._max_block = max_block
        self._max_spool = max_spool
        self._queue: deque[Entry] = deque()
        self._woken = False
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._flush_lock = threading.Lock()  # one flush (and one spool delivery) at a time
        self._spool_lock = threading.Lock()  # the spool file, its count and the dropped count
        self._dropped = 0
        self._spool = _spool_path(spool) if spool is not None else None
        self._spooled = self._count_spool()
        self._closed = False
        self._maker: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"auditml-runtime-{self.stream}", daemon=True
            )
            self._thread.start()

    # -- recording ------------------------------------------------------------------------

    def record(
        self,
        request_id: str,
        *,
        version: str,
        output: Mapping[str, Any] | None = None,
        latency_ms: float,
        error: str | None = None,
        subject: object = None,
        features: object = None,
        payload: object = None,
        personal: Mapping[str, object] | None = None,
        time: str | datetime | None = None,
    ) -> None:
        """Record one request; refuse a bad record now, with an error naming the field.

        Only checks and a queue append happen here; the record is made and
        committed on the flushing thread. When ``max_pending`` records are
        queued, this waits up to ``max_block`` seconds for room, then spools.
        """
        if self._closed:
            raise InvalidInputError(f"the recorder of {self.stream!r} is closed; open another")
        # The checks of core.records.check_entry, written out: a call each would cost more.
        if not (
            type(request_id) is str
            and 0 < len(request_id) <= REQUEST_ID_MAX
            and request_id.isprintable()
            and not request_id.isspace()
        ):
            check_text("request_id", request_id, REQUEST_ID_MAX, _ID_FIX)
        if not (
            type(version) is str
            and 0 < len(version) <= VERSION_MAX
            and version.isprintable()
            and not version.isspace()
        ):
            check_text("version", version, VERSION_MAX, _VERSION_FIX)
        held = {} if output is None else check_output(output)
        kind = type(latency_ms)
        if not (
            (kind is float and 0.0 <= latency_ms < _INF)
            or (kind is int and 0 <= latency_ms <= _MAX_SAFE)
        ):
            latency_ms = check_latency(latency_ms)
        if error is not None and not (
            type(error) is str
            and 0 < len(error) <= ERROR_MAX
            and error.isprintable()
            and not error.isspace()
        ):
            check_text("error", error, ERROR_MAX, _ERROR_FIX)
        values = (
            None
            if subject is None and features is None and payload is None and personal is None
            else check_values(
                {"subject": subject, "features": features, "payload": payload}, personal
            )
        )
        stamp = None if time is None else _given_time(time)
        queue = self._queue
        if len(queue) >= self._max_pending:
            self._backpressure()
        queue.append((_time_ns(), request_id, version, held, latency_ms, error, stamp, values))
        if len(queue) >= self._max_records and not self._woken:
            self._woken = True
            self._wake.set()

    def _backpressure(self) -> None:
        """Wait up to max_block for room in the queue; then move its oldest records to the spool."""
        self._woken = True
        self._wake.set()
        deadline = _time.monotonic() + self._max_block
        with self._room:
            while len(self._queue) >= self._max_pending:
                left = deadline - _time.monotonic()
                if left <= 0:
                    break
                self._room.wait(left)
        if len(self._queue) < self._max_pending:
            return
        taken = self._take(max(self._max_records, len(self._queue) - self._max_pending + 1))
        self._to_spool(taken, "the queue was full (the store is slower than the records)")

    def _take(self, count: int) -> list[Entry]:
        """Take up to ``count`` of the oldest queued entries, and tell waiters there is room."""
        popleft = self._queue.popleft
        taken = []
        with contextlib.suppress(IndexError):  # another thread took the last ones
            for _ in range(count):
                taken.append(popleft())
        if taken:
            with self._room:
                self._room.notify_all()
        return taken

    # -- committing -----------------------------------------------------------------------

    def flush(self) -> Receipt | None:
        """Commit what is queued (and spooled) now; return the last segment's receipt."""
        return self._drain(everything=True)

    def _drain(self, *, everything: bool) -> Receipt | None:
        """Deliver the spool, then commit full segments, and the rest when due or asked.

        While one segment is being written (the database holds no GIL), the next
        one is made on a helper thread, so making records and writing them overlap.
        While the store cannot be reached, what is due goes to the spool instead.
        """
        with self._flush_lock:
            receipt = None
            away: str | None = None
            try:
                receipt = self._deliver_spool()
            except StoreError as exc:
                away = f"the store could not be reached: {exc}"
            batches = self._due(everything)
            taken = next(batches, None)
            made = None if taken is None or away is not None else self._make(taken)
            while taken is not None:
                following = next(batches, None)
                ahead = None
                if following is not None and away is None:
                    ahead = self._helper().submit(self._make, following)
                if made is not None and away is None:
                    try:
                        receipt = self._append(made)
                    except StoreError as exc:
                        away = f"the store refused them: {exc}"
                if away is not None:
                    self._to_spool(taken, away)
                taken, made = following, None if ahead is None else ahead.result()
            return receipt

    def _due(self, everything: bool) -> Iterator[list[Entry]]:
        """Yield the queued entries due for a segment, a segment's worth at a time."""
        queue = self._queue
        # flush() commits what was queued when it was called, however fast callers add more.
        budget = len(queue) if everything else -1
        while queue and budget != 0:
            self._woken = False
            if (
                not everything
                and len(queue) < self._max_records
                and _time_ns() - queue[0][0] < self._max_age_ns
            ):
                return
            taken = self._take(self._max_records if budget < 0 else min(budget, self._max_records))
            if not taken:
                return
            budget = max(budget - len(taken), 0) if budget > 0 else budget
            yield taken

    def _helper(self) -> ThreadPoolExecutor:
        """Return the thread that makes the next segment while one is written."""
        if self._maker is None:
            self._maker = ThreadPoolExecutor(1, thread_name_prefix=f"auditml-make-{self.stream}")
        return self._maker

    def _make(self, entries: Sequence[Entry]) -> _Made:
        """Make a segment's records: bytes, leaf hashes, root, and the values' commitments."""
        commitments: dict[int, str] = {}
        values: list[tuple[Any, ...]] = []
        for i in [i for i, entry in enumerate(entries) if entry[7]]:
            named: dict[str, str] = {}
            for name, body in entries[i][7] or ():
                salt = secrets.token_bytes(32)
                digest = hashlib.sha256(salt + body).hexdigest()
                named[name] = digest
                values.append((digest, i, name, salt, body))
            commitments[i] = canonical_text(named)
        rows, leaves = self._encoder.segment(entries, commitments)
        times = [row[2] for row in rows]
        return _Made(
            rows,
            values,
            merkle.root_of(leaves).hex(),
            min(times),
            max(times),
            sorted({row[4] for row in rows}),
        )

    def _append(self, made: _Made) -> Receipt:
        """Append a made segment: its event and records in one transaction, all or none.

        The records dropped so far are counted in it, and no longer once it is on the log.
        """
        with self._spool_lock:
            dropped = self._dropped
        data = SegmentData(
            stream=self.stream,
            count=len(made.rows),
            root=made.root,
            first_time=made.first_time,
            last_time=made.last_time,
            model=self.model,
            env=self.env,
            versions=made.versions,
            dropped=dropped,
        )
        draft = Draft.build(
            "runtime.segment", actor=self._actor, subject={"model": self.model}, data=data
        )
        receipt = self._ledger.append_segment(draft, made.rows, made.values)
        with self._spool_lock:
            self._dropped -= dropped
        return receipt

    def _commit(self, entries: Sequence[Entry]) -> Receipt:
        """Commit ``entries`` as one segment: one transaction, all of it or none."""
        return self._append(self._make(entries))

    def _commit_all(self, entries: Sequence[Entry]) -> list[Receipt]:
        """Commit ``entries`` in segments of max_records, now; a store error is raised."""
        with self._flush_lock:
            step = self._max_records
            return [self._commit(entries[at : at + step]) for at in range(0, len(entries), step)]

    # -- the spool ------------------------------------------------------------------------

    def _count_spool(self) -> int:
        if self._spool is None:
            return 0
        return _count_lines(self._spool) + _count_lines(_delivering(self._spool))

    def _to_spool(self, entries: Sequence[Entry], why: str) -> None:
        """Keep entries that could not be committed in the spool, or count them as dropped."""
        with self._spool_lock:
            room = self._max_spool - self._spooled if self._spool is not None else 0
            keep, lost = entries[: max(room, 0)], len(entries) - max(room, 0)
            if keep:
                assert self._spool is not None
                try:
                    self._append_spool(self._spool, keep)
                    self._spooled += len(keep)
                except OSError as exc:
                    lost += len(keep)
                    why = f"{why}; the spool {self._spool} could not be written ({exc})"
            if lost > 0:
                self._dropped += lost
        if lost > 0:
            where = "no spool" if self._spool is None else f"no room in the spool {self._spool}"
            warnings.warn(
                f"auditml could not commit {lost} runtime records of {self.stream!r} and had "
                f"{where} ({why}); the count is recorded on the log with the next segment",
                stacklevel=3,
            )

    @staticmethod
    def _append_spool(path: Path, entries: Iterable[Entry]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = b"".join(canonical_bytes(entry_line(entry)) + b"\n" for entry in entries)
        with _open_nofollow(path, _APPEND) as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def _deliver_spool(self) -> Receipt | None:
        """Commit the spooled records, in segments, then remove the spool.

        The spool is first renamed aside, so records spooled meanwhile go to a
        fresh file; after each segment the number of lines delivered is kept
        beside it, so a crash re-delivers at most one segment. A corrupt line is
        set aside in ``<spool>.rejected``, warned about and counted as dropped.
        """
        if self._spool is None or not self._spooled:
            return None
        spool, delivering = self._spool, _delivering(self._spool)
        with self._spool_lock:
            if not delivering.exists():
                with contextlib.suppress(FileNotFoundError):
                    os.replace(spool, delivering)
        done_file = delivering.with_name(delivering.name + ".done")
        done = _read_done(done_file)
        numbered: list[tuple[int, Entry]] = []
        rejected: list[tuple[int, bytes, str]] = []
        now = _time_ns()
        with (
            contextlib.suppress(FileNotFoundError),
            _open_nofollow(delivering, os.O_RDONLY) as fh,
        ):
            for number, line in enumerate(fh, 1):
                if number <= done:
                    continue
                try:
                    entry = parse_record_line(line, now)
                    if entry[6] is None:
                        raise InvalidInputError("the line has no time")
                except InvalidInputError as exc:
                    rejected.append((number, line, str(exc)))
                    continue
                numbered.append((number, entry))
        if rejected:
            self._reject(rejected)
        receipt = None
        step = self._max_records
        for at in range(0, len(numbered), step):
            chunk = numbered[at : at + step]
            receipt = self._commit([entry for _, entry in chunk])  # StoreError: resumed later
            _write_done(done_file, chunk[-1][0])
        with self._spool_lock:
            delivering.unlink(missing_ok=True)
            done_file.unlink(missing_ok=True)
            self._spooled = _count_lines(spool)
        return receipt

    def _reject(self, rejected: list[tuple[int, bytes, str]]) -> None:
        """Set corrupt spool lines aside, count them as dropped and warn, naming the first."""
        assert self._spool is not None
        aside = self._spool.with_name(self._spool.name + ".rejected")
        lines = b"".join(line.rstrip(b"\n") + b"\n" for _, line, _ in rejected)
        with contextlib.suppress(OSError), _open_nofollow(aside, _APPEND) as fh:
            fh.write(lines)
        with self._spool_lock:
            self._dropped += len(rejected)
        number, _, why = rejected[0]
        warnings.warn(
            f"auditml found {len(rejected)} corrupt line(s) in the spool of {self.stream!r} "
            f"(line {number}: {why}); they are kept in {aside} and counted as dropped on the "
            "log with the next segment",
            stacklevel=2,
        )

    # -- the background thread and closing ----------------------------------------------

    def _run(self) -> None:
        while True:
            closing = self._closed
            try:
                self._drain(everything=closing)
            except Exception as exc:  # the serving process must never die of auditml
                warnings.warn(
                    f"auditml could not flush the runtime records of {self.stream!r}: {exc}",
                    stacklevel=1,
                )
            if closing:
                return
            if len(self._queue) < self._max_records:
                self._wake.wait(self._tick)
            self._wake.clear()

    def close(self) -> None:
        """Commit what is left and stop the background thread."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        finally:
            if self._maker is not None:
                self._maker.shutdown()
        if self._dropped:
            warnings.warn(
                f"auditml closed the recorder of {self.stream!r} with {self._dropped} dropped "
                "runtime records not yet counted on the log (no segment followed them): the "
                "next recorder of this stream cannot count them either",
                stacklevel=2,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Return how many records wait in memory for their segment."""
        return len(self._queue)

    @property
    def spooled(self) -> int:
        """Return how many records wait in the spool file for their segment."""
        return self._spooled

    @property
    def dropped(self) -> int:
        """Return how many records were dropped and are not yet counted on the log."""
        return self._dropped


_INF = float("inf")
_MAX_SAFE = 2**53 - 1


def _given_time(value: str | datetime) -> str:
    """Return a record time given as text (checked) or as a datetime (naive: local time)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return check_time(value)


def _spool_path(spool: str | os.PathLike[str]) -> Path:
    """Return the spool path, refusing a symlink (a spool is opened without following one)."""
    path = Path(spool)
    if path.is_symlink():
        raise InvalidInputError(
            f"the spool {path} is a symbolic link; auditml writes a spool only to a plain file "
            "it creates (mode 0600): remove the link or choose another path"
        )
    if path.exists() and not path.is_file():
        raise InvalidInputError(f"the spool {path} is not a file; choose another path")
    return path


_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def _count_lines(path: Path) -> int:
    """Return how many lines the file at ``path`` holds (0 when there is none)."""
    try:
        with _open_nofollow(path, os.O_RDONLY) as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def _delivering(spool: Path) -> Path:
    return spool.with_name(spool.name + ".delivering")


def _open_nofollow(path: Path, flags: int) -> Any:
    """Open ``path`` (binary, mode 0600 when created), never through a symbolic link."""
    fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    return os.fdopen(fd, "rb" if flags == os.O_RDONLY else "ab")


def _read_done(path: Path) -> int:
    try:
        with _open_nofollow(path, os.O_RDONLY) as fh:
            return int(fh.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_done(path: Path, done: int) -> None:
    fresh = path.with_name(path.name + ".tmp")
    fresh.unlink(missing_ok=True)
    with _open_nofollow(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL) as fh:
        fh.write(str(done).encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(fresh, path)


def ingest(
    ledger: Ledger,
    actor: Actor,
    model: str,
    env: str,
    lines: Iterable[str | bytes],
    *,
    max_records: int = 1000,
) -> Ingested:
    """Check every JSON Lines record, then commit them all in segments (see AuditLog)."""
    entries = parse_record_lines(lines, _time_ns())
    if not entries:
        return Ingested(0, 0, None, None)
    recorder = Recorder(ledger, actor, model, env, max_records=max_records, background=False)
    try:
        receipts = recorder._commit_all(entries)
    finally:
        recorder.close()
    return Ingested(len(entries), len(receipts), receipts[0].seq, receipts[-1].seq)


def open_value(request_id: str, name: str, body: bytes, salt: bytes, value: bytes) -> Opened:
    """Open the commitment ``name`` of a stored record: check value and salt against it."""
    record = loads_strict(body)
    expected = record.get("commitments", {}).get(name)
    if expected is None:
        raise InvalidInputError(f"request {request_id!r} commits no value named {name!r}")
    parsed = loads_strict(value)
    open_commitment(parsed, salt, expected)
    return Opened(request_id, name, parsed, salt.hex(), expected)
