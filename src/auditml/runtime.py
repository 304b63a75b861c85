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
import marshal
import os
import secrets
import struct
import tempfile
import threading
import time as _time
import warnings
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from auditml.core import merkle
from auditml.core.canonical import canonical_bytes, canonical_text, loads_strict
from auditml.core.events import Actor, Draft, DroppedData, SegmentData
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
    check_values,
    entry_line,
    given_time,
    open_commitment,
    parse_record_line,
)
from auditml.errors import (
    AuditmlError,
    ConfigurationError,
    InvalidInputError,
    StoreError,
    VerificationError,
)

if TYPE_CHECKING:
    from auditml.ledger import Ledger, Receipt

__all__ = [
    "COMMITTED",
    "LINE_MAX",
    "IngestSource",
    "Ingested",
    "Opened",
    "Recorder",
    "ingest",
    "open_value",
]

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
    """What an ingest of JSON Lines did: records and segments committed, and records skipped.

    ``first_seq`` and ``last_seq`` are the seqs of the first and last segment
    events; ``skipped`` counts the records left out because the log holds them.
    """

    records: int
    segments: int
    first_seq: int | None
    last_seq: int | None
    skipped: int = 0

    def as_dict(self) -> dict[str, int | None]:
        """Return the counts as a JSON object."""
        return {
            "records": self.records,
            "segments": self.segments,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "skipped": self.skipped,
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
        self._count_drops()

    def _count_drops(self) -> None:
        """Put the drops no segment counted on the log as one ``runtime.dropped`` event."""
        with self._spool_lock:
            dropped = self._dropped
        if not dropped:
            return
        data = DroppedData(stream=self.stream, model=self.model, env=self.env, dropped=dropped)
        try:
            draft = Draft.build(
                "runtime.dropped", actor=self._actor, subject={"model": self.model}, data=data
            )
            self._ledger.append_segment(draft, ())
        except StoreError as exc:
            warnings.warn(
                f"auditml closed the recorder of {self.stream!r} with {dropped} dropped "
                f"runtime records it could not count on the log ({exc}): note this count",
                stacklevel=3,
            )
            return
        with self._spool_lock:
            self._dropped -= dropped

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
    """Return a record time given as text (see core.records.given_time) or as a datetime.

    A naive datetime is local time.
    """
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return given_time(value)


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


#: A JSON Lines line longer than this (bytes, or characters of text) is refused, unread.
#: The largest record line auditml takes holds a few values of ``VALUE_MAX`` (16 MiB).
LINE_MAX = 64 * 1024 * 1024

#: An ingest cuts a segment at ``max_records`` records or at this many bytes of lines.
SEGMENT_BYTES = 16 * 1024 * 1024

#: What ingest reads: lines, a path, or a file object (binary or text) read line by line.
IngestSource = Iterable[str | bytes] | os.PathLike[str] | IO[bytes] | IO[str]

_MASK = (1 << 64) - 1
_LENGTH = struct.Struct(">Q")

#: One checked line as the ingest spool keeps it: its number, whether it is on the log, its entry.
_Checked = tuple[int, bool, Entry]


def ingest(
    ledger: Ledger,
    actor: Actor,
    model: str,
    env: str,
    source: IngestSource,
    *,
    max_records: int = 1000,
) -> Ingested:
    """Check every JSON Lines record, then commit those not on the log yet (see AuditLog).

    Two passes, memory flat in the input's size. The first reads the input once,
    checks every line as ``record()`` would, refuses a request recorded twice by
    one version in the input, looks up which records the log holds already (and
    checks those are really on it), and keeps the checked records in a private
    temporary file. Nothing is written unless all of that passes. The second
    commits what is not on the log from that file, in segments.
    """
    return _Ingest(ledger, actor, model, env, max_records).run(source)


class _Ingest:
    """One ingest of JSON Lines: the checking pass, then the writing pass."""

    def __init__(
        self, ledger: Ledger, actor: Actor, model: str, env: str, max_records: int
    ) -> None:
        self._ledger = ledger
        # Refuses a bad stream or max_records now, before the input is read.
        self._recorder = Recorder(
            ledger, actor, model, env, max_records=max_records, background=False
        )
        self._stream = self._recorder.stream
        self._max_records = max_records
        self._segment: tuple[int, list[bytes]] | None = None

    def run(self, source: IngestSource) -> Ingested:
        try:
            try:
                spool = tempfile.TemporaryFile(prefix="auditml-ingest-")  # noqa: SIM115 (the with below closes it)
            except OSError as exc:
                raise _no_room(exc, writing=False) from None
            with spool:
                mark = self._ledger.head().size
                digests = self._check(source, spool)
                spool.seek(0)
                self._refuse_twice(digests, spool)
                spool.seek(0)
                return self._write(spool, mark)
        finally:
            self._recorder.close()

    # -- the first pass: check everything, write nothing ---------------------------------

    def _check(self, source: IngestSource, spool: IO[bytes]) -> array[int]:
        """Check every line and keep it in ``spool``; return the digests of their keys."""
        now = _time_ns()
        digests: array[int] = array("Q")
        note = digests.append
        batch: list[tuple[int, Entry]] = []
        held = 0
        for number, line in enumerate(_lines(source), 1):
            if not line.strip():
                continue
            try:
                entry = parse_record_line(line, now)
            except InvalidInputError as exc:
                raise InvalidInputError(f"line {number}: {exc}") from None
            note(hash((entry[1], entry[2])) & _MASK)
            batch.append((number, entry))
            held += len(line)
            if len(batch) >= self._max_records or held >= SEGMENT_BYTES:
                self._keep(batch, spool)
                batch, held = [], 0
        if batch:
            self._keep(batch, spool)
        return digests

    def _keep(self, batch: list[tuple[int, Entry]], spool: IO[bytes]) -> None:
        """Mark the records of ``batch`` the log holds already, and add the batch to the spool."""
        found = self._on_log(batch)
        body = marshal.dumps([(n, k in found, e) for k, (n, e) in enumerate(batch)])
        try:
            spool.write(_LENGTH.pack(len(body)))
            spool.write(body)
        except OSError as exc:
            raise _no_room(exc, writing=False) from None

    def _refuse_twice(self, digests: array[int], spool: IO[bytes]) -> None:
        """Refuse an input that records one request twice by one version, naming both lines.

        Which of two such lines is the record cannot be told, nor whether a
        record on the log is the first or the second: the input is ambiguous.
        """
        if len(digests) < 2:
            return
        import numpy as np

        ordered = np.frombuffer(digests, dtype=np.uint64)
        ordered.sort()  # in place, over the array's own memory: no second copy of the digests
        twice = ordered[1:][ordered[1:] == ordered[:-1]]
        if not twice.size:
            return
        suspects = {int(d) for d in twice.tolist()}
        first: dict[tuple[str, str], int] = {}
        for batch in _spooled(spool, writing=False):
            for number, _, entry in batch:
                key = (entry[1], entry[2])
                if hash(key) & _MASK in suspects:
                    seen = first.setdefault(key, number)
                    if seen != number:
                        raise InvalidInputError(
                            f"line {number}: request {entry[1]!r} served by version "
                            f"{entry[2]!r} is on line {seen} too; the log keeps one record of "
                            "a request per version, so remove one of the two lines (or, if "
                            "they are two requests, give each its own request_id)"
                        )

    def _on_log(self, batch: Sequence[tuple[int, Entry]]) -> set[int]:
        """Return the places in ``batch`` of the records already on the log.

        A stored row counts only when its bytes are the record of that request
        by that version in this stream, stored at its index of a segment whose
        event is in the log's tree and whose root and count its records give.
        A row that fails is a VerificationError, never a record skipped. A
        record on the log that differs from its line is refused, naming both.
        """
        rows = self._ledger.records_of_requests(sorted({entry[1] for _, entry in batch}))
        if not rows:
            return set()
        where = {(entry[1], entry[2]): k for k, (_, entry) in enumerate(batch)}
        found: set[int] = set()
        for row in rows:
            seg, column, body = row[0], row[2], row[-1]
            record = stored_request(seg, body, column)
            if record.get("stream") != self._stream:
                continue
            k = where.get((column, record.get("version")))  # type: ignore[arg-type]
            if k is None or k in found:
                continue
            bodies = self._segment_bodies(seg)
            index = record.get("i")
            if not (type(index) is int and 0 <= index < len(bodies) and bodies[index] == body):
                raise VerificationError(
                    f"runtime record {index!r} of request {column!r}: its bytes are not the "
                    "record stored at that index of its segment: the segment's records were "
                    "changed in the database; run `auditml verify`",
                    kind="record",
                    seq=seg,
                )
            _same(*batch[k], record, seg)
            found.add(k)
        return found

    def _segment_bodies(self, seg: int) -> list[bytes]:
        """Return the checked bodies of segment ``seg`` (the last one asked for is kept)."""
        if self._segment is None or self._segment[0] != seg:
            self._segment = (seg, self._ledger.segment_on_log(seg, self._stream))
        return self._segment[1]

    # -- the second pass: commit what is not on the log ----------------------------------

    def _write(self, spool: IO[bytes], mark: int) -> Ingested:
        """Commit the spooled records not on the log, a segment per batch.

        What the check found on the log stays on it (the log only grows; records
        a retention run removes were recorded once and are not due again). What
        it did not find may have been recorded since by another writer of this
        stream: once one has appended a segment since the check began, each
        batch is looked up again before it is written. While one segment is
        appended, the next is made on a helper thread (as ``Recorder`` does).
        """
        recorder = self._recorder
        records = segments = skipped = 0
        first: int | None = None
        last: int | None = None
        again = False
        ahead: tuple[Future[_Made], int] | None = None
        for batch in _spooled(spool, writing=True):
            if not again:
                again, mark = self._others_since(mark, last)
            if again:
                found = self._on_log([(number, entry) for number, _, entry in batch])
                batch = [(n, k in found, e) for k, (n, _, e) in enumerate(batch)]
            fresh = [entry for _, on_log, entry in batch if not on_log]
            skipped += len(batch) - len(fresh)
            if not fresh:
                continue
            following = (recorder._helper().submit(recorder._make, fresh), len(fresh))
            if ahead is not None:
                last = recorder._append(ahead[0].result()).seq
                first = last if first is None else first
                records, segments = records + ahead[1], segments + 1
            ahead = following
        if ahead is not None:
            last = recorder._append(ahead[0].result()).seq
            first = last if first is None else first
            records, segments = records + ahead[1], segments + 1
        return Ingested(records, segments, first, last, skipped)

    def _others_since(self, mark: int, mine: int | None) -> tuple[bool, int]:
        """Return whether another segment of this stream is at ``mark`` or after; and where next.

        ``mine`` is the seq of this ingest's last segment, which does not count.
        """
        for record in self._ledger.events(action="runtime.segment", start=mark):
            mark = record.seq + 1
            if record.seq != mine and record.event.data.get("stream") == self._stream:
                return True, mark
        return False, mark


def _lines(source: IngestSource) -> Iterator[str | bytes]:
    """Yield the lines of ``source`` one at a time, refusing one longer than LINE_MAX."""
    if isinstance(source, os.PathLike):
        with open_input(Path(source)) as fh:
            yield from _lines(fh)
        return
    if isinstance(source, str | bytes):
        raise InvalidInputError(
            "give the lines of JSON Lines as a list or a file, or a path as a pathlib.Path"
        )
    readline = getattr(source, "readline", None)
    if readline is not None:
        number = 0
        while True:
            try:
                line = readline(LINE_MAX + 1)
            except UnicodeDecodeError as exc:
                # A text file decodes ahead of the line it returns: the number is a bound.
                after = f" after line {number}" if number else ""
                raise InvalidInputError(
                    f"the input is not UTF-8 text{after} ({exc.reason}); save the file as "
                    "UTF-8, or give it opened in binary mode, which names the line"
                ) from None
            except OSError as exc:
                raise InvalidInputError(
                    f"line {number + 1}: the input cannot be read ({exc.strerror or exc})"
                ) from None
            if not line:
                return
            number += 1
            _check_length(number, line)
            yield line
    for number, line in enumerate(source, 1):
        _check_length(number, line)
        yield line


def _check_length(number: int, line: str | bytes) -> None:
    size = len(line.rstrip(b"\r\n")) if isinstance(line, bytes) else len(line.rstrip("\r\n"))
    if size > LINE_MAX:
        raise InvalidInputError(
            f"line {number}: it is longer than {LINE_MAX:,} bytes, more than any record "
            "takes; check that the input is JSON Lines, one record per line"
        )


def open_input(path: Path) -> IO[bytes]:
    """Open the JSON Lines file at ``path`` to read, or raise naming the problem.

    Through open_regular, as the CLI opens it: a FIFO (which would block) or a
    device is refused unread.
    """
    from auditml._internal.infile import open_regular

    try:
        return open_regular(path, "JSON Lines file")
    except FileNotFoundError:
        raise InvalidInputError(f"no file {path}: give a JSON Lines file, or - for stdin") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path} is a folder: give a JSON Lines file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None


def _spooled(spool: IO[bytes], *, writing: bool) -> Iterator[list[_Checked]]:
    """Yield the batches kept in an ingest's spool, in order."""
    while True:
        try:
            head = spool.read(_LENGTH.size)
            if not head:
                return
            (length,) = _LENGTH.unpack(head)
            batch: list[_Checked] = marshal.loads(spool.read(length))
        except OSError as exc:
            raise _no_room(exc, writing=writing) from None
        yield batch


def _no_room(exc: OSError, *, writing: bool) -> ConfigurationError:
    """Return the error of an ingest's temporary file that cannot be made, written or read."""
    what = (
        "The segments committed so far stay: ingest the input again to commit the rest "
        "(what is on the log is skipped)."
        if writing
        else "Nothing was written."
    )
    return ConfigurationError(
        f"auditml could not keep the checked records in a temporary file in "
        f"{tempfile.gettempdir()} ({exc.strerror or exc}): it needs room for about the input's "
        f"size there; free some, or set TMPDIR to a folder with room. {what}"
    )


def stored_record(seg: object, body: object) -> dict[str, Any]:
    """Return a stored record's bytes as a JSON object, or raise naming what is wrong."""
    where = f"a runtime record of segment event {seg!r}"
    if not isinstance(seg, int) or isinstance(seg, bool):
        raise VerificationError(
            f"{where}: its segment column is not an integer; it was changed in the database; "
            "run `auditml verify`",
            kind="column",
        )
    if not isinstance(body, bytes | bytearray | memoryview):
        raise VerificationError(
            f"{where}: its bytes are stored as {type(body).__name__}, not the bytes auditml "
            "wrote: it was changed in the database; run `auditml verify`",
            kind="record",
            seq=seg,
        )
    try:
        record = loads_strict(bytes(body))
    except (AuditmlError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise VerificationError(
            f"{where}: its stored bytes are not a JSON record: they were changed in the "
            "database; run `auditml verify`",
            kind="record",
            seq=seg,
        )
    return record


def stored_request(seg: object, body: object, request_id: object) -> dict[str, Any]:
    """Return :func:`stored_record`, refusing bytes of another request than the row's index says.

    The request id column is only an index: a row found under one request whose
    bytes are another's fails as a column changed in the database.
    """
    record = stored_record(seg, body)
    if record.get("request_id") != request_id:
        raise VerificationError(
            f"a runtime record was found under request id {request_id!r}, but its bytes "
            f"are those of request {record.get('request_id')!r}: its request_id column "
            "was changed in the database; run `auditml verify`",
            kind="column",
            seq=seg if isinstance(seg, int) else None,
        )
    return record


def _same(number: int, entry: Entry, record: Mapping[str, Any], seg: int) -> None:
    """Refuse a line whose request and version are on the log with other fields, naming both."""
    _, _, _, output, latency, error, time, values = entry
    stored_output = record.get("output")
    wanted = output if isinstance(output, str) else canonical_text(output)
    names = sorted(name for name, _ in values or ())
    differs = [
        name
        for name, same in (
            ("output", isinstance(stored_output, dict) and canonical_text(stored_output) == wanted),
            ("latency_ms", record.get("latency_ms") == latency),
            ("error", record.get("error") == error),
            ("time", time is None or record.get("time") == time),
            ("values kept off the log", sorted(record.get("commitments") or {}) == names),
        )
        if not same
    ]
    if differs:
        raise InvalidInputError(
            f"line {number}: request {entry[1]!r} served by version {entry[2]!r} is on the log "
            f"already (record {record.get('i')} of segment event {seg}) with another "
            f"{', '.join(differs)}; the log keeps one record of a request per version, so "
            "if this is another request, give it its own request_id"
        )


def open_value(request_id: str, name: str, body: bytes, salt: bytes, value: bytes) -> Opened:
    """Open the commitment ``name`` of a stored record: check value and salt against it."""
    record = loads_strict(body)
    expected = record.get("commitments", {}).get(name)
    if expected is None:
        raise InvalidInputError(f"request {request_id!r} commits no value named {name!r}")
    parsed = loads_strict(value)
    open_commitment(parsed, salt, expected)
    return Opened(request_id, name, parsed, salt.hex(), expected)
