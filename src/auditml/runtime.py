"""Runtime records: what each deployed model version did, recorded at serving speed.

A :class:`Recorder` takes one record per request. Each is validated when it is
recorded, so a bad record is refused at once and can never poison a later
segment. Personal and bulky values (``subject``, ``features``, ``payload`` and
any value named in ``personal``) never enter a record: each is kept off the log
with its own random salt, and the record carries only its commitment (format
section 6).

Records are buffered in memory and committed in segments, by count or age,
from a background thread, and on :meth:`Recorder.flush` and
:meth:`Recorder.close`. One flush is one transaction: the ``runtime.segment``
event and its records land together or not at all. When the store cannot be
reached, the records go to a local spool file (mode 0600) and are delivered
on the next flush, so memory stays bounded; when even the spool is full, the
records dropped are counted and the count is recorded on the log with the
next segment. Nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from auditml.core.canonical import canonical_bytes, loads_strict
from auditml.core.events import Actor, Draft, SegmentData
from auditml.core.records import RuntimeRecord, commitment, open_commitment, segment_root
from auditml.errors import AuditmlError, InvalidInputError, StoreError

if TYPE_CHECKING:
    from auditml.ledger import Ledger, Receipt

__all__ = ["COMMITTED", "Opened", "Recorder", "open_value"]

#: The values a record always keeps off the log, when given.
COMMITTED = ("subject", "features", "payload")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_NEVER_FLUSHED = float("inf")


def _stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class _Pending:
    """One record waiting for its segment: the record without its index, and its values."""

    record: dict[str, Any]
    #: ``(name, commitment, salt, canonical bytes of the value)`` of each value kept off the log.
    values: tuple[tuple[str, str, bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Opened:
    """A commitment opened for an auditor: the value and salt, checked against the record."""

    request_id: str
    name: str
    value: Any
    salt: str
    commitment: str


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
        background: bool = True,
    ) -> None:
        if max_records < 1:
            raise InvalidInputError(f"max_records must be 1 or more, not {max_records}")
        if max_age <= 0:
            raise InvalidInputError(f"max_age must be more than 0 seconds, not {max_age}")
        self._ledger = ledger
        self._actor = actor
        self.model = model
        self.env = env
        self.stream = f"{model}/{env}"
        self._check(self._template("check", "v", {}, 0.0, None))  # refuses a bad stream now
        self._max_records = max_records
        self._max_age = max_age
        self._max_spool = max_spool
        self._buffer: list[_Pending] = []
        self._oldest = _NEVER_FLUSHED
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._dropped = 0
        self._spool = Path(spool) if spool is not None else None
        self._spooled = self._count_spool()
        self._closed = False
        self._wake = threading.Event()
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
        """Record one request; refuse a bad record now, with an error naming the field."""
        if self._closed:
            raise InvalidInputError(f"the recorder of {self.stream!r} is closed; open another")
        stamp = time if isinstance(time, str) else _stamp(time)
        record = self._template(
            request_id, version, {} if output is None else output, latency_ms, error, stamp
        )
        values = []
        named = {"subject": subject, "features": features, "payload": payload}
        for name, value in {**named, **(personal or {})}.items():
            if value is None and name in named:
                continue
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"a personal value needs a text name, not {name!r}")
            salt = secrets.token_bytes(32)
            try:
                held = canonical_bytes(value)
            except AuditmlError as exc:
                raise InvalidInputError(f"runtime record {name}: {exc}") from None
            values.append((name, commitment(value, salt), salt, held))
        record["commitments"] = {name: c for name, c, _, _ in values}
        self._check(record)
        pending = _Pending(record, tuple(values))
        with self._lock:
            if not self._buffer:
                self._oldest = _monotonic()
            self._buffer.append(pending)
            full = len(self._buffer) >= self._max_records
        if full:
            self._wake.set()

    def _template(
        self,
        request_id: str,
        version: str,
        output: Mapping[str, Any],
        latency_ms: float,
        error: str | None,
        stamp: str = "2000-01-01T00:00:00.000000Z",
    ) -> dict[str, Any]:
        return {
            "v": 1,
            "stream": self.stream,
            "request_id": request_id,
            "time": stamp,
            "model": self.model,
            "version": version,
            "env": self.env,
            "output": dict(output) if isinstance(output, Mapping) else output,
            "latency_ms": latency_ms,
            "error": error,
            "commitments": {},
        }

    @staticmethod
    def _check(record: dict[str, Any]) -> None:
        """Refuse a record the format would refuse, naming the field (index 0 stands in)."""
        RuntimeRecord.from_dict({**record, "i": 0})

    # -- committing -----------------------------------------------------------------------

    def flush(self) -> Receipt | None:
        """Commit what is buffered (and spooled) now; return the last segment's receipt."""
        with self._flush_lock:
            with self._lock:
                taken, self._buffer = self._buffer, []
                self._oldest = _NEVER_FLUSHED
            receipt = None
            try:
                receipt = self._deliver_spool()
                if taken:
                    receipt = self._commit(taken)
            except StoreError as exc:
                if taken:
                    self._to_spool(taken, exc)
            return receipt

    def _commit(self, pending: Sequence[_Pending]) -> Receipt:
        """Commit ``pending`` as one segment: one transaction, all of it or none."""
        bodies: list[bytes] = []
        rows: list[tuple[Any, ...]] = []
        values: list[tuple[Any, ...]] = []
        records: list[dict[str, Any]] = []
        for i, item in enumerate(pending):
            record = {**item.record, "i": i}
            body = canonical_bytes(record)
            records.append(record)
            bodies.append(body)
            rows.append(
                (
                    i,
                    record["request_id"],
                    record["time"],
                    record["model"],
                    record["version"],
                    record["env"],
                    record["latency_ms"],
                    record["error"],
                    body,
                )
            )
            values += [(c, i, name, salt, held) for name, c, salt, held in item.values]
        times = [r["time"] for r in records]
        data = SegmentData(
            stream=self.stream,
            count=len(records),
            root=segment_root(records),
            first_time=min(times),
            last_time=max(times),
            model=self.model,
            env=self.env,
            versions=sorted({r["version"] for r in records}),
            dropped=self._dropped,
        )
        draft = Draft.build(
            "runtime.segment",
            actor=self._actor,
            subject={"model": self.model},
            data=data,
        )
        receipt = self._ledger.append_segment(draft, rows, values)
        self._dropped = 0
        return receipt

    # -- the spool ------------------------------------------------------------------------

    def _count_spool(self) -> int:
        if self._spool is None or not self._spool.exists():
            return 0
        with self._spool.open("rb") as fh:
            return sum(1 for _ in fh)

    def _to_spool(self, pending: Sequence[_Pending], why: Exception) -> None:
        """Keep records the store refused in the spool file, or count them as dropped."""
        room = self._max_spool - self._spooled if self._spool is not None else 0
        keep, lost = pending[: max(room, 0)], len(pending) - max(room, 0)
        if keep:
            assert self._spool is not None
            self._spool.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                for item in keep:
                    line = {
                        "record": item.record,
                        "values": [[n, c, s.hex(), h.decode()] for n, c, s, h in item.values],
                    }
                    fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._spooled += len(keep)
        if lost > 0:
            self._dropped += lost
            warnings.warn(
                f"auditml could not commit {lost} runtime records of {self.stream!r} and had no "
                f"room to spool them ({why}); the count is recorded with the next segment",
                stacklevel=3,
            )

    def _deliver_spool(self) -> Receipt | None:
        """Commit the spooled records, in segments, then empty the spool."""
        if self._spool is None or not self._spooled:
            return None
        pending = []
        with self._spool.open(encoding="utf-8") as fh:
            for line in fh:
                raw = loads_strict(line)
                values = tuple(
                    (str(n), str(c), bytes.fromhex(s), str(h).encode())
                    for n, c, s, h in raw["values"]
                )
                pending.append(_Pending(dict(raw["record"]), values))
        receipt = None
        for start in range(0, len(pending), self._max_records):
            receipt = self._commit(pending[start : start + self._max_records])
            self._rewrite_spool(pending[start + self._max_records :])
        return receipt

    def _rewrite_spool(self, rest: Sequence[_Pending]) -> None:
        """Keep only ``rest`` in the spool (replaced whole), so nothing is delivered twice."""
        assert self._spool is not None
        if not rest:
            with contextlib.suppress(FileNotFoundError):
                self._spool.unlink()
            self._spooled = 0
            return
        fresh = self._spool.with_name(self._spool.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        self._spooled = 0
        spool, self._spool = self._spool, fresh
        try:
            self._to_spool(rest, StoreError("rewriting the spool"))
        finally:
            self._spool = spool
        os.replace(fresh, spool)

    # -- the background thread and closing ----------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._max_age / 4)
            self._wake.clear()
            with self._lock:
                due = bool(self._buffer) and (
                    len(self._buffer) >= self._max_records
                    or _monotonic() - self._oldest >= self._max_age
                )
            if due or self._spooled:
                try:
                    self.flush()
                except Exception as exc:  # the serving process must never die of auditml
                    warnings.warn(
                        f"auditml could not flush the runtime records of {self.stream!r}: {exc}",
                        stacklevel=1,
                    )

    def close(self) -> None:
        """Commit what is left and stop the background thread."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

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
        with self._lock:
            return len(self._buffer)


def _monotonic() -> float:
    return time.monotonic()


def open_value(request_id: str, name: str, body: bytes, salt: bytes, value: bytes) -> Opened:
    """Open the commitment ``name`` of a stored record: check value and salt against it."""
    record = loads_strict(body)
    expected = record.get("commitments", {}).get(name)
    if expected is None:
        raise InvalidInputError(f"request {request_id!r} commits no value named {name!r}")
    parsed = loads_strict(value)
    open_commitment(parsed, salt, expected)
    return Opened(request_id, name, parsed, salt.hex(), expected)
