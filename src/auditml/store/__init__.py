"""The store: the only part of auditml that knows SQL.

The SQLModel tables are imported where they are used, so that verify's helper
process, which needs only plain reads, starts without loading SQLModel.

It keeps events as rows of exact canonical bytes, serializes appends with a
lock on the log's head row, and streams rows back. It never hashes or builds
events itself: the ledger hands it a pure ``prepare`` function that turns the
locked head into the rows to insert.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from auditml.core.sealing import removed_by_retention
from auditml.errors import (
    AppendError,
    AuditmlError,
    InvalidInputError,
    StaleHeadError,
    StoreError,
    StoreUnavailableError,
    VerificationError,
)
from auditml.store._backends import (
    LOCK_TIMEOUT_ENV,
    SCHEMA_VERSION,
    Backend,
    backend_for,
    close_quietly,
    iter_chunks,
    lock_timeout_from_env,
    redact,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from sqlalchemy import Engine

__all__ = [
    "RECORD_COLUMNS",
    "VALUE_COLUMNS",
    "Batch",
    "EventFilter",
    "EventRow",
    "HeadState",
    "Removed",
    "RowStream",
    "Store",
    "TxReader",
    "redact",
]

MAX_RETRIES = 50
#: Attempts of an append whose head turned out stale (see StaleHeadError) before it gives up.
STALE_RETRIES = 5
#: A write still waiting for another writer's lock after this many seconds says so.
WAIT_NOTICE_S = 2.0
SCAN_CHUNK = 5000
_FIRST = itemgetter(0)

_log = logging.getLogger("auditml.store")

T = TypeVar("T")

#: An append's event rows, chunk by chunk, then (as the generator's return value) its batch.
RowStream = Generator[Sequence["EventRow"], None, "Batch"]

#: The unique (log, prev) constraint of stores made before issue 20, which ``init`` drops.
PREV_INDEX = "auditml_event_log_prev"
_EVENT_COLUMNS = ("log_id", "seq", "prev", "hash", "time", "action", "model", "version", "body")


@dataclass(frozen=True, slots=True)
class HeadState:
    """A log's head as stored: its size and the state after its last event."""

    log_id: int
    origin: str
    size: int
    head_hash: bytes
    head_time: str
    root: bytes
    frontier: bytes


#: The columns of a stored runtime record, in the order ``Batch.records`` gives them.
RECORD_COLUMNS = (
    "seg",
    "i",
    "request_id",
    "time",
    "model",
    "version",
    "env",
    "latency_ms",
    "error",
    "body",
)
#: The columns of a value kept off the log, as stored.
VALUE_COLUMNS = ("commitment", "seg", "i", "name", "salt", "value")
#: The store setting that holds the secret of subject handles (hex).
PEPPER_SETTING = "subject_pepper"
#: The columns of a bulk insert: the log and the segment, then the columns of each row
#: of ``Batch.records`` and ``Batch.values``.
_RECORD_BULK = ("log_id", "seg", *RECORD_COLUMNS[1:])
_VALUE_BULK = ("log_id", "seg", "commitment", "i", "name", "salt", "value")


#: One event as an append writes it: ``(seq, prev, hash, time, action, model, version, body)``.
EventRow = tuple[int, bytes, bytes, str, str, str | None, str | None, bytes]


@dataclass(frozen=True, slots=True)
class Batch:
    """What one append writes: event rows, completed tree nodes and the new head."""

    rows: Sequence[EventRow]
    nodes: Sequence[tuple[int, int, bytes]]
    head: HeadState
    #: ``(size, root, signed note)`` of the automatic checkpoints this append reaches.
    checkpoints: Sequence[tuple[int, bytes, str]] = ()
    #: Runtime records stored with the batch's (one) segment event, as ``RECORD_COLUMNS``
    #: without ``seg``: the store fills in the event's seq, and the log id.
    records: Sequence[tuple[Any, ...]] = ()
    #: Values kept off the log for those records, as ``VALUE_COLUMNS`` without ``seg``.
    values: Sequence[tuple[Any, ...]] = ()
    #: ``(commitment, subject handle)`` of the values sealed under a subject's key.
    lookups: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a read returns; every field is optional."""

    model: str | None = None
    version: str | None = None
    actions: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    start: int = 0
    stop: int | None = None
    limit: int | None = None
    descending: bool = False
    #: Keep only events whose canonical bytes hold one of these byte strings.
    containing: tuple[bytes, ...] = ()
    #: The actions are rare in the log (keys, signed decisions): read each through
    #: the action index and merge by seq, rather than walk the log in seq order.
    sparse: bool = False

    def __post_init__(self) -> None:
        _check_name("model", self.model)
        _check_name("version", self.version)


def _order(value: object) -> tuple[int, int, str]:
    """Return a sort key for a stored integer column, putting values of another type last."""
    if isinstance(value, int):
        return (0, value, "")
    return (1, 0, repr(value))


def _check_name(what: str, name: str | None) -> None:
    """Refuse a name no store can look up: PostgreSQL text holds no NUL, no store a lone surrogate.

    A lone surrogate is what Python makes of bytes in a command line that are not UTF-8.
    """
    if name is None:
        return
    if "\x00" in name:
        raise InvalidInputError(
            f"the {what} name {name!r} holds a NUL character, which no store keeps in a name: "
            "remove it"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"the {what} name {name!r} is not valid UTF-8 text (it holds a lone surrogate, "
            "as bytes that are not UTF-8 give on a command line): give it in UTF-8"
        ) from None


class Store:
    """A database holding one auditml log."""

    def __init__(self, backend: Backend, pool: Any) -> None:
        self.backend = backend
        #: Where connections come from: sqlite3's own for SQLite (no SQLAlchemy to import),
        #: an SQLAlchemy engine for PostgreSQL.
        self._pool = pool
        self._engine: Engine | None = None
        self.url = backend.url
        #: Seconds a write waits for another writer's lock; None: $AUDITML_LOCK_TIMEOUT or 30.
        self.lock_timeout: float | None = None
        self._privacy_ready = False
        self._salt_ready = False

    @property
    def shareable(self) -> bool:
        """Return whether another process can open this store (not an in-memory database)."""
        return getattr(self.backend, "path", "") is not None

    @property
    def engine(self) -> Engine:
        """Return an SQLAlchemy engine on the store, made on first use (creating the schema)."""
        if self._engine is None:
            self._engine = self.backend.sa_engine(self._pool)
        return self._engine

    @classmethod
    def connect(cls, url: str, *, create: bool = False) -> Store:
        """Connect to the store at ``url``; with ``create``, make the file and schema as needed."""
        backend = backend_for(url)
        pool = backend.engine(create=create)
        store = cls(backend, pool)
        try:
            conn = pool.raw_connection()
            try:
                cur = conn.cursor()
                # SQLite reads the file's header only for a statement that reads the file.
                cur.execute(
                    "SELECT count(*) FROM sqlite_master"
                    if backend.dialect == "sqlite"
                    else "SELECT 1"
                )
                cur.fetchall()
            finally:
                _rollback(conn, None)
                close_quietly(conn)
        except backend.errors as exc:
            pool.dispose()
            if "not a database" in str(getattr(exc, "orig", exc)):
                raise StoreUnavailableError(
                    f"{redact(url)} is not a database, so not an auditml log: point "
                    "--db at an existing log, or create one elsewhere with `auditml init`"
                ) from None
            raise backend.unavailable(exc) from None
        if create:
            store.ensure_schema()
        else:
            store.check_schema()
        return store

    @property
    def dialect(self) -> str:
        """Return ``sqlite`` or ``postgresql``."""
        return self.backend.dialect

    def close(self) -> None:
        """Release every connection."""
        if self._engine is not None and self._engine is not self._pool:
            self._engine.dispose()
        self._pool.dispose()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read and return its rows, on a pooled connection given back at once."""
        conn = self._connection()
        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            return [tuple(row) for row in cur.fetchall()]
        finally:
            _rollback(conn, cur)
            close_quietly(cur)
            close_quietly(conn)

    # -- schema -------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the tables and append-only triggers if they are missing; safe to repeat."""
        from sqlalchemy import select, text
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import SQLModel

        from auditml.store.tables import (
            ACTORS,
            CHECKPOINTS,
            ERASED,
            EVENTS,
            LOGKEYS,
            LOGS,
            META,
            NODES,
            RECORDS,
            REMOVED,
            SUBJECT_VALUES,
            SUBJECTS,
            VALUES,
        )

        tables = [META, LOGS, EVENTS, NODES, CHECKPOINTS, LOGKEYS, RECORDS, VALUES]
        tables += [SUBJECTS, SUBJECT_VALUES, ERASED, REMOVED, ACTORS]
        if self.dialect == "sqlite" and self._has_table("auditml_event"):
            self._drop_sqlite_prev_index()
        try:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
                    # Stores made before issue 20 have it; dropping a constraint is instant,
                    # but ALTER TABLE waits for every reader: only when it is there.
                    old = conn.exec_driver_sql(
                        "SELECT 1 FROM pg_constraint WHERE conname = %(name)s "
                        "AND conrelid = to_regclass('auditml_event')",
                        {"name": PREV_INDEX},
                    ).first()
                    if old is not None:
                        conn.exec_driver_sql(
                            f"ALTER TABLE auditml_event DROP CONSTRAINT {PREV_INDEX}"
                        )
                SQLModel.metadata.create_all(conn, tables=tables)
                # indexes added since a store was created
                for index in [*EVENTS.indexes, *VALUES.indexes]:
                    index.create(conn, checkfirst=True)
                for statement in self.backend.triggers:
                    conn.exec_driver_sql(statement)
                found = conn.execute(
                    select(META.c.value).where(META.c.key == "schema_version")
                ).scalar()
                if found is None:
                    conn.execute(
                        META.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                elif found != str(SCHEMA_VERSION):
                    raise self._version_error(found)
        except SQLAlchemyError as exc:
            raise self.backend.unavailable(exc) from None

    def _drop_sqlite_prev_index(self) -> None:
        """Rebuild the event table of a SQLite store made before issue 20, without (log, prev).

        SQLite keeps that unique constraint in the table's definition, so it goes
        only with a copy of the table: one transaction renames it, creates it
        anew, copies every row, drops the old one, and restores its indexes and
        append-only triggers. Only ``auditml init`` runs it, never an open (see
        :meth:`check_schema`): it rewrites the whole table once.
        """
        from sqlalchemy.schema import CreateIndex, CreateTable

        from auditml.store.tables import EVENTS

        found = self._read_one(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'auditml_event'", ()
        )
        if found is None or PREV_INDEX not in found:
            return
        dialect = self.engine.dialect
        columns = ", ".join(_EVENT_COLUMNS)

        def run(cur: Any) -> None:
            cur.execute("ALTER TABLE auditml_event RENAME TO auditml_event_before_issue20")
            cur.execute(str(CreateTable(EVENTS).compile(dialect=dialect)))
            cur.execute(
                f"INSERT INTO auditml_event ({columns}) SELECT {columns} "
                "FROM auditml_event_before_issue20 ORDER BY log_id, seq"
            )
            cur.execute("DROP TABLE auditml_event_before_issue20")
            for index in EVENTS.indexes:
                cur.execute(str(CreateIndex(index).compile(dialect=dialect)))
            for statement in self.backend.triggers:
                if " ON auditml_event " in statement:  # the others' tables may not exist yet
                    cur.execute(statement)

        self._write_tx(run)

    def check_schema(self) -> None:
        """Raise unless the database holds an auditml store of this schema version.

        It only reads: opening a store never changes it, so a file that is not
        an auditml log is left byte for byte as it was. A store made before
        checkpoints is not upgraded here but by ``auditml init``, the one
        command that creates.
        """
        try:
            rows = self._rows("SELECT value FROM auditml_meta WHERE key = 'schema_version'")
        except StoreUnavailableError:
            raise
        except self.backend.errors as exc:
            message = str(getattr(exc, "orig", exc)).lower()
            if ("no such table" in message or "does not exist" in message) and self._has_table(
                "auditml_event"
            ):
                raise VerificationError(
                    "the store has events but no auditml_meta table, which every auditml store "
                    "holds: it was dropped in the database",
                    kind="head",
                ) from None
            if "no such table" in message or "does not exist" in message:
                raise StoreUnavailableError(
                    f"{redact(self.url)} holds no auditml log: run `auditml init` first"
                ) from None
            raise self.backend.unavailable(exc) from None
        found = rows[0][0] if rows else None
        if found != str(SCHEMA_VERSION):
            raise self._version_error(found)
        if not self._has_table("auditml_checkpoint"):
            raise StoreError(
                f"{redact(self.url)} was made by an earlier auditml, before checkpoints: "
                "run `auditml init` with this --db once to add their tables (no event changes)"
            )
        for table in ("auditml_log", "auditml_event", "auditml_node", "auditml_logkey"):
            if not self._has_table(table):
                raise VerificationError(
                    f"the store has no {table} table, which every auditml store holds: it was "
                    "dropped in the database",
                    kind="head",
                )

    def has_table(self, table: str) -> bool:
        """Return whether the store holds ``table`` (one of its own, named in code)."""
        return self._has_table(table)

    def records_for(self, log_id: int, request_id: str) -> list[tuple[Any, ...]]:
        """Return the stored records of ``request_id`` (every column), oldest segment first."""
        _check_name("request id", request_id)
        p = self.backend.param
        with self.snapshot() as snap:
            snap._cur.execute(
                f"SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record "
                # '+' keeps SQLite off the primary key, which would give the order but walk
                # every record of the log: it finds the few rows by request id, then sorts them.
                f"WHERE log_id = {p} AND request_id = {p} ORDER BY +seg, +i",
                (log_id, request_id),
            )
            rows = [tuple(row) for row in snap._cur.fetchall()]
        # Sorted again here: a column changed to another type must not break the order.
        return sorted(rows, key=lambda row: (_order(row[0]), _order(row[1])))

    def records_of_requests(
        self, log_id: int, request_ids: Sequence[str], chunk: int = 500
    ) -> list[tuple[Any, ...]]:
        """Return the stored records (every column) whose request id column is one of these.

        The column is only an index: callers hold each row's bytes against it.
        At most ``chunk`` ids go in one query, well under every backend's limit.
        """
        p = self.backend.param
        rows: list[tuple[Any, ...]] = []
        with self.snapshot() as snap:
            for at in range(0, len(request_ids), chunk):
                part = list(request_ids[at : at + chunk])
                snap._cur.execute(
                    f"SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record "
                    f"WHERE log_id = {p} AND request_id IN ({', '.join([p] * len(part))})",
                    (log_id, *part),
                )
                rows.extend(tuple(row) for row in snap._cur.fetchall())
        return rows

    def value(self, log_id: int, commitment: str) -> tuple[bytes, bytes] | None:
        """Return ``(salt, value bytes)`` kept off the log for ``commitment``, or None."""
        p = self.backend.param
        with self.snapshot() as snap:
            snap._cur.execute(
                f"SELECT salt, value FROM auditml_value WHERE log_id = {p} AND commitment = {p}",
                (log_id, commitment),
            )
            row = snap._cur.fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def segment_bodies(self, log_id: int, seg: int) -> list[bytes]:
        """Return the stored bytes of the records of segment ``seg``, in index order."""
        p = self.backend.param
        with self.snapshot() as snap:
            snap._cur.execute(
                f"SELECT body FROM auditml_record WHERE log_id = {p} AND seg = {p} ORDER BY i",
                (log_id, seg),
            )
            bodies = [row[0] for row in snap._cur.fetchall()]
        for body in bodies:
            if not isinstance(body, bytes | bytearray | memoryview):
                raise VerificationError(
                    "a runtime record of the segment is stored as text, not the bytes auditml "
                    "wrote: it was changed in the database; run `auditml verify`",
                    kind="record",
                    seq=seg,
                )
        return [bytes(body) for body in bodies]

    def _has_table(self, table: str) -> bool:
        """Return whether the store holds ``table`` (one of its own, named in code)."""
        try:
            self._rows(f"SELECT 1 FROM {table} WHERE 1 = 0")
        except StoreUnavailableError:
            raise
        except self.backend.errors:
            return False
        return True

    def _has_column(self, table: str, column: str) -> bool:
        """Return whether ``table`` has ``column`` (both auditml's own, named in code)."""
        try:
            self._rows(f"SELECT {column} FROM {table} WHERE 1 = 0")
        except StoreUnavailableError:
            raise
        except self.backend.errors:
            return False
        return True

    def _version_error(self, found: object) -> AuditmlError:
        """Return why a store's schema version is refused: newer, or a row that was tampered with.

        Only a later version written as plain digits is a store made by a newer
        auditml; anything else (a missing row, text, bytes, an older number)
        never came from auditml, so it fails verification.
        """
        newer = isinstance(found, str) and found.isascii() and found.isdigit()
        if newer and int(str(found)) > SCHEMA_VERSION and found == str(int(str(found))):
            return StoreError(
                f"{redact(self.url)} has auditml schema version {found}, but this auditml "
                f"reads version {SCHEMA_VERSION}: upgrade auditml"
            )
        return VerificationError(
            f"the store's schema version row is {found!r}, which no auditml writes (this one "
            f"writes {str(SCHEMA_VERSION)!r}): the auditml_meta table was changed in the database",
            kind="head",
        )

    # -- head ---------------------------------------------------------------

    def head(self, origin: str | None = None) -> HeadState | None:
        """Return the head of the store's log (or of ``origin``), or None when there is none."""
        sql = "SELECT id, origin, size, head_hash, head_time, root, frontier FROM auditml_log"
        params: tuple[str, ...] = ()
        if origin is not None:
            sql += f" WHERE origin = {self.backend.param}"
            params = (origin,)
        try:
            rows = self._rows(sql + " ORDER BY id LIMIT 1", params)
        except StoreUnavailableError:
            raise
        except self.backend.errors as exc:
            raise self.backend.unavailable(exc) from None
        return _head(rows[0]) if rows else None

    def holds_events(self) -> bool:
        """Return whether any event row is stored, whatever the head rows say."""
        return self._read_one("SELECT 1 FROM auditml_event LIMIT 1", ()) is not None

    def create_log(
        self,
        origin: str,
        prepare: Callable[[HeadState], Batch],
        created_at: str,
        vkey: str | None = None,
    ) -> bool:
        """Create the log's head row, its first events and its key row in one transaction.

        Returns False, writing nothing, when the store already holds a log.
        """

        def run(cur: Any) -> bool:
            cur.execute("SELECT count(*) FROM auditml_log")
            if cur.fetchone()[0]:
                return False
            p = self.backend.param
            empty = HeadState(1, origin, 0, b"\0" * 32, "", b"", b"")
            batch = prepare(empty)
            cur.execute(
                "INSERT INTO auditml_log (id, origin, created_at, size, head_hash, head_time, "
                f"root, frontier) VALUES ({p}, {p}, {p}, 0, {p}, '', {p}, {p})",
                (1, origin, created_at, b"\0" * 32, b"", b""),
            )
            self._write(cur, batch, empty)
            if vkey is not None:
                cur.execute(
                    f"INSERT INTO auditml_logkey (log_id, vkey, created_at) VALUES ({p}, {p}, {p})",
                    (1, vkey, created_at),
                )
            return True

        return self._transaction(run)

    # -- append -------------------------------------------------------------

    def append(self, log_id: int, prepare: Callable[[HeadState], Batch]) -> Batch:
        """Lock the head, let ``prepare`` build the rows from it, write them, and commit.

        The whole batch is one transaction: it is all on disk when this returns,
        or none of it is written and the error is raised.
        """
        batch = self.append_after(log_id, lambda head, _reader: prepare(head))
        assert batch is not None  # prepare always returns a batch here
        return batch

    def _locked_head(self, cur: Any, log_id: int) -> HeadState:
        """Lock the log's head row for this transaction and return it."""
        cur.execute(self.backend.lock_head_sql(), (log_id,))
        found = cur.fetchone()
        if found is None:
            raise AppendError(f"the log with id {log_id} has no head row in {redact(self.url)}")
        return _head(tuple(found))

    def append_after(
        self, log_id: int, prepare: Callable[[HeadState, TxReader], Batch | None]
    ) -> Batch | None:
        """Append as :meth:`append` does, letting ``prepare`` read the log under the lock.

        What ``prepare`` reads cannot change before the rows it returns are
        committed, so a decision it takes from the log cannot race another writer.
        When ``prepare`` returns None, nothing is written and None is returned.
        """

        def run(cur: Any) -> Batch | None:
            head = self._locked_head(cur, log_id)
            batch = prepare(head, TxReader(cur, self.backend.param, log_id))
            if batch is not None:
                self._write(cur, batch, head)
            return batch

        return self._transaction(run)

    def append_stream(
        self,
        log_id: int,
        prepare: Callable[[HeadState, TxReader], RowStream],
        *,
        overlap: bool = True,
    ) -> Batch:
        """Append as :meth:`append_after` does, writing each chunk of rows as it comes.

        ``prepare`` returns a generator that yields the event rows chunk by chunk
        and returns the whole batch. While one chunk is written (the driver lets
        go of the GIL), the next is prepared here: with ``overlap``, a thread of
        this append's own writes them. The head is claimed before any row is
        written: a stale head raises StaleHeadError and writes nothing; so does
        any failure, and the whole batch is one transaction as in :meth:`append`.
        """

        def run(cur: Any) -> Batch:
            head = self._locked_head(cur, log_id)
            rows = prepare(head, TxReader(cur, self.backend.param, log_id))
            self._claim(cur, head)
            batch: Batch | None = None
            with _Writer(self, cur, head.log_id, overlap) as writer:
                first = True
                while batch is None:
                    try:
                        chunk = next(rows)  # prepared while the chunk before is written
                    except StopIteration as done:
                        batch = done.value
                        break
                    if first and (chunk[0][0] != head.size or chunk[0][1] != head.head_hash):
                        raise AppendError("the batch does not start at the head it was built on")
                    first = False
                    writer.write(chunk)
            if batch is None or first:
                raise AppendError("the append prepared no events; nothing was written")
            self._write(cur, replace(batch, rows=()), head)
            return batch

        return self._transaction(run)

    def _claim(self, cur: Any, read: HeadState) -> None:
        """Lock the head row as read, or raise StaleHeadError if it moved (a compare-and-set)."""
        p = self.backend.param
        cur.execute(
            f"UPDATE auditml_log SET size = size WHERE id = {p} AND size = {p} AND head_hash = {p}",
            (read.log_id, read.size, read.head_hash),
        )
        if cur.rowcount != 1:
            raise self._stale(read)

    def _stale(self, read: HeadState) -> StaleHeadError:
        return StaleHeadError(
            f"the append to {redact(self.url)} was built on a stale head (size {read.size}, "
            f"hash {read.head_hash.hex()[:16]}...): the log's head moved since it was read, "
            "so it wrote nothing rather than fork the chain; append again"
        )

    def _insert_events(self, cur: Any, log_id: int, rows: Sequence[EventRow]) -> None:
        """Insert event rows of one log, with the backend's fastest bulk path."""
        if self.dialect == "sqlite":
            # Multi-row INSERTs: one SQLite step per 512 events, not one per event.
            self.backend.bulk_insert(cur, "auditml_event", _EVENT_COLUMNS, (log_id,), rows)
        else:
            p = self.backend.param
            cur.executemany(
                f"INSERT INTO auditml_event ({', '.join(_EVENT_COLUMNS)}) "
                f"VALUES ({', '.join([p] * len(_EVENT_COLUMNS))})",
                [(log_id, *row) for row in rows],
            )

    def _write(self, cur: Any, batch: Batch, read: HeadState) -> None:
        """Insert a batch's rows and move the head forward, inside the caller's transaction.

        ``read`` is the head the batch was built on. The head row moves only from
        that size and hash (a compare-and-set, checked before any row is
        written), so a writer holding a stale head fails with StaleHeadError
        rather than fork the chain, even where the head lock did not hold.
        """
        p = self.backend.param
        log_id = batch.head.log_id
        if batch.rows and (batch.rows[0][0] != read.size or batch.rows[0][1] != read.head_hash):
            raise AppendError("the batch does not start at the head it was built on")
        h = batch.head
        cur.execute(
            f"UPDATE auditml_log SET size = {p}, head_hash = {p}, head_time = {p}, root = {p}, "
            f"frontier = {p} WHERE id = {p} AND size = {p} AND head_hash = {p}",
            (
                h.size,
                h.head_hash,
                h.head_time,
                h.root,
                h.frontier,
                log_id,
                read.size,
                read.head_hash,
            ),
        )
        if cur.rowcount != 1:
            raise self._stale(read)
        if batch.rows:
            self._insert_events(cur, log_id, batch.rows)
        if batch.nodes:
            cur.executemany(
                f"INSERT INTO auditml_node (log_id, level, idx, hash) VALUES ({p}, {p}, {p}, {p})",
                [(log_id, *node) for node in batch.nodes],
            )
        if batch.checkpoints:
            cur.executemany(
                "INSERT INTO auditml_checkpoint (log_id, size, root, note, created_at) "
                f"VALUES ({p}, {p}, {p}, {p}, {p})",
                [(log_id, *cp, batch.head.head_time) for cp in batch.checkpoints],
            )
        if batch.records or batch.values:
            if len(batch.rows) != 1:
                raise AppendError("runtime records are appended with exactly one segment event")
            seg = batch.rows[0][0]
            for table, columns, rows in (
                ("auditml_record", _RECORD_BULK, batch.records),
                ("auditml_value", _VALUE_BULK, batch.values),
            ):
                if rows:
                    self.backend.bulk_insert(cur, table, columns, (log_id, seg), rows)
        if batch.lookups:
            self.backend.bulk_insert(
                cur,
                "auditml_subject_value",
                ("log_id", "commitment", "sid"),
                (log_id,),
                batch.lookups,
            )

    def _connection(self) -> Any:
        """Return a pooled DBAPI connection, or raise StoreUnavailableError saying why not."""
        try:
            return self._pool.raw_connection()
        except self.backend.errors as exc:
            raise self.backend.unavailable(exc) from None

    def _transaction(self, run: Callable[[Any], T]) -> T:
        """Run ``run`` in one write transaction, retrying lock conflicts with backoff.

        The wait for another writer's lock is bounded in total by
        :attr:`lock_timeout` (``$AUDITML_LOCK_TIMEOUT``, default 30 s); after
        :data:`WAIT_NOTICE_S` a warning says the write is waiting.
        """
        timeout = self.lock_timeout if self.lock_timeout is not None else lock_timeout_from_env()
        start = time.monotonic()
        delay = 0.002
        noticed = False
        stale = 0
        for attempt in range(MAX_RETRIES):
            waited = time.monotonic() - start
            # The first wait stops at the notice, so the user hears of it; later ones run on.
            budget = timeout - waited if noticed else min(WAIT_NOTICE_S, timeout) - waited
            conn = self._connection()
            cur = conn.cursor()
            try:
                self.backend.begin_write(cur, max(budget, 0.001))
                result = run(cur)
                conn.commit()
                return result
            except StaleHeadError:
                _rollback(conn, cur)
                # The head lock makes this rare: the next attempt reads the head afresh.
                stale += 1
                if stale >= STALE_RETRIES:
                    raise
                continue
            except AuditmlError:
                _rollback(conn, cur)
                raise
            except Exception as exc:
                _rollback(conn, cur)
                if PREV_INDEX in str(exc) or "auditml_event.prev" in str(exc):
                    # Only a store made before issue 20 still has the unique (log, prev) index.
                    raise AppendError(
                        f"the append to {redact(self.url)} failed and wrote nothing: another "
                        "stored event already claims the log's head as its prev, which no "
                        "append of auditml writes; a prev column was changed in the database: "
                        "run `auditml verify` to find it"
                    ) from exc
                if not self.backend.is_retryable(exc):
                    raise AppendError(
                        f"the append to {redact(self.url)} failed and wrote nothing: "
                        f"{_first_line(exc)}"
                    ) from exc
                waited = time.monotonic() - start
                if waited < timeout and attempt < MAX_RETRIES - 1:
                    if not noticed and waited >= min(WAIT_NOTICE_S, timeout) * 0.9:
                        noticed = True
                        _log.warning(
                            "waiting for another writer to release the lock on %s "
                            "(%.0f s so far; giving up after %g s, set by %s)",
                            redact(self.url),
                            waited,
                            timeout,
                            LOCK_TIMEOUT_ENV,
                        )
                    time.sleep(min(delay * (1 + random.random()), max(timeout - waited, 0)))
                    delay = min(delay * 2, 0.5)
                    continue
                if waited < timeout:
                    break
                raise AppendError(
                    f"the append to {redact(self.url)} gave up after waiting {waited:.1f} s "
                    "for the write lock, and wrote nothing: another writer holds it (which "
                    "one is unknown: a long transaction in another process, or an open "
                    "database shell). Try again when it is done, or wait longer with "
                    f"{LOCK_TIMEOUT_ENV}=SECONDS (now {timeout:g})"
                ) from None
            finally:
                with suppress(Exception):
                    self.backend.end_write(cur)
                close_quietly(cur)
                close_quietly(conn)
        raise AppendError("the append kept conflicting with other writers; nothing was written")

    # -- checkpoints, the log key, settings -------------------------------------

    def _write_tx(self, run: Callable[[Any], T]) -> T:
        """Run ``run`` in a write transaction; a failure there is a StoreError, not an append's."""
        try:
            return self._transaction(run)
        except AppendError as exc:
            raise StoreError(str(exc).replace("the append to", "writing to")) from None

    def put_log_key(self, log_id: int, vkey: str, created_at: str) -> str:
        """Record the log's verifier key unless one is recorded; return the one recorded."""
        p = self.backend.param

        def run(cur: Any) -> str:
            cur.execute(f"SELECT vkey FROM auditml_logkey WHERE log_id = {p}", (log_id,))
            found = cur.fetchone()
            if found is not None:
                return str(found[0])
            cur.execute(
                f"INSERT INTO auditml_logkey (log_id, vkey, created_at) VALUES ({p}, {p}, {p})",
                (log_id, vkey, created_at),
            )
            return vkey

        return self._write_tx(run)

    def log_key(self, log_id: int) -> str | None:
        """Return the log's recorded verifier key, or None."""
        return self._read_one("SELECT vkey FROM auditml_logkey WHERE log_id = {p}", (log_id,))

    def put_checkpoint(
        self, log_id: int, size: int, root: bytes, note: str, created_at: str
    ) -> tuple[bytes, str]:
        """Keep a signed checkpoint; return the one kept at ``size`` (an earlier one wins).

        The caller compares roots: the log must never sign two roots for one size.
        """
        p = self.backend.param

        def run(cur: Any) -> tuple[bytes, str]:
            cur.execute(self.backend.lock_head_sql(), (log_id,))
            cur.execute(
                f"SELECT root, note FROM auditml_checkpoint WHERE log_id = {p} AND size = {p}",
                (log_id, size),
            )
            found = cur.fetchone()
            if found is not None:
                return bytes(found[0]), str(found[1])
            cur.execute(
                "INSERT INTO auditml_checkpoint (log_id, size, root, note, created_at) "
                f"VALUES ({p}, {p}, {p}, {p}, {p})",
                (log_id, size, root, note, created_at),
            )
            return root, note

        return self._write_tx(run)

    def checkpoints(
        self, log_id: int, *, size: int | None = None, latest: bool = False
    ) -> list[tuple[int, bytes, str, str]]:
        """Return ``(size, root, note, created_at)`` of kept checkpoints, oldest first.

        ``size`` picks the one at that size; ``latest`` the largest.
        """
        p = self.backend.param
        sql = f"SELECT size, root, note, created_at FROM auditml_checkpoint WHERE log_id = {p}"
        params: tuple[int, ...] = (log_id,)
        if size is not None:
            sql += f" AND size = {p}"
            params = (log_id, size)
        sql += " ORDER BY size DESC LIMIT 1" if latest else " ORDER BY size"
        try:
            rows = self._rows(sql, params)
        except StoreUnavailableError:
            raise
        except self.backend.errors as exc:
            raise StoreError(f"reading {redact(self.url)} failed: {_first_line(exc)}") from None
        return [_checkpoint_row(row) for row in rows]

    def setting(self, key: str) -> str | None:
        """Return a store setting (auditml_meta), or None."""
        return self._read_one("SELECT value FROM auditml_meta WHERE key = {p}", (key,))

    def set_setting(self, key: str, value: str) -> None:
        """Set a store setting, replacing any earlier value."""
        p = self.backend.param

        def run(cur: Any) -> None:
            cur.execute(f"DELETE FROM auditml_meta WHERE key = {p}", (key,))
            cur.execute(f"INSERT INTO auditml_meta (key, value) VALUES ({p}, {p})", (key, value))

        self._write_tx(run)

    def _read_one(self, sql: str, params: tuple[Any, ...]) -> str | None:
        try:
            rows = self._rows(sql.format(p=self.backend.param), params)
        except StoreUnavailableError:
            raise
        except self.backend.errors as exc:
            raise StoreError(f"reading {redact(self.url)} failed: {_first_line(exc)}") from None
        return str(rows[0][0]) if rows else None

    # -- personal data: subject keys, erasure, retention (auditml.privacy) --------------

    def ensure_privacy_tables(self) -> None:
        """Create the subject key, lookup and erasure tables a store made before them lacks."""
        if self._privacy_ready:
            return
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import SQLModel

        from auditml.store.tables import ACTORS, ERASED, REMOVED, SUBJECT_VALUES, SUBJECTS

        tables = [SUBJECTS, SUBJECT_VALUES, ERASED, REMOVED, ACTORS]
        if not all(self._has_table(t.name) for t in tables):
            try:
                with self.engine.begin() as conn:
                    if self.dialect == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
                        )
                    SQLModel.metadata.create_all(conn, tables=tables)
                    if self._has_table("auditml_record"):
                        for statement in self.backend.record_delete_triggers:
                            conn.exec_driver_sql(statement)
            except SQLAlchemyError as exc:
                raise self.backend.unavailable(exc) from None
        self._ensure_actor_salt()
        self._privacy_ready = True

    def _ensure_actor_salt(self) -> None:
        """Give an actor directory made before enrollment salts its ``salt`` column."""
        if self._salt_ready or self._has_column("auditml_actor", "salt"):
            self._salt_ready = True
            return
        try:
            self._write_tx(
                lambda cur: cur.execute("ALTER TABLE auditml_actor ADD COLUMN salt TEXT")
            )
        except StoreError:
            if not self._has_column("auditml_actor", "salt"):  # not another process's doing
                raise
        self._salt_ready = True

    def pepper(self) -> bytes:
        """Return the store's secret for subject handles, drawn once on first use."""
        found = self.setting(PEPPER_SETTING)
        if found is None:
            p = self.backend.param
            drawn = secrets.token_hex(32)

            def run(cur: Any) -> None:
                cur.execute(
                    f"INSERT INTO auditml_meta (key, value) VALUES ({p}, {p}) "
                    "ON CONFLICT (key) DO NOTHING",
                    (PEPPER_SETTING, drawn),
                )

            self._write_tx(run)
            found = self.setting(PEPPER_SETTING) or drawn
        return bytes.fromhex(found)

    def subject_keys(
        self, log_id: int, sids: Sequence[str], new_key: Callable[[], bytes]
    ) -> dict[str, bytes]:
        """Return the key of each subject handle, drawing one with ``new_key`` for a new subject."""
        self.ensure_privacy_tables()
        wanted = sorted(set(sids))
        p = self.backend.param

        def run(cur: Any) -> dict[str, bytes]:
            keys: dict[str, bytes] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                cur.execute(
                    f"SELECT sid, key FROM auditml_subject WHERE log_id = {p} "
                    f"AND sid IN ({', '.join([p] * len(chunk))})",
                    (log_id, *chunk),
                )
                keys.update((str(sid), bytes(key)) for sid, key in cur.fetchall())
            missing = [sid for sid in wanted if sid not in keys]
            if missing:
                # Another process may draw a key for the same new subject at once: the
                # first one stored wins, and both read it back.
                cur.executemany(
                    f"INSERT INTO auditml_subject (log_id, sid, key) VALUES ({p}, {p}, {p}) "
                    "ON CONFLICT (log_id, sid) DO NOTHING",
                    [(log_id, sid, new_key()) for sid in missing],
                )
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    cur.execute(
                        f"SELECT sid, key FROM auditml_subject WHERE log_id = {p} "
                        f"AND sid IN ({', '.join([p] * len(chunk))})",
                        (log_id, *chunk),
                    )
                    keys.update((str(sid), bytes(key)) for sid, key in cur.fetchall())
            return keys

        return self._write_tx(run)

    def sealed_value(
        self, log_id: int, commitment: str
    ) -> tuple[bytes, bytes, bytes | None] | None:
        """Return ``(salt, value, key)`` as stored for ``commitment`` (key: None if unsealed)."""
        if not self._has_table("auditml_subject_value"):
            found = self.value(log_id, commitment)
            return None if found is None else (*found, None)
        p = self.backend.param
        with self.snapshot() as snap:
            snap._cur.execute(
                "SELECT v.salt, v.value, k.key FROM auditml_value v "
                "LEFT JOIN auditml_subject_value s ON s.log_id = v.log_id "
                "AND s.commitment = v.commitment "
                "LEFT JOIN auditml_subject k ON k.log_id = s.log_id AND k.sid = s.sid "
                f"WHERE v.log_id = {p} AND v.commitment = {p}",
                (log_id, commitment),
            )
            row = snap._cur.fetchone()
        if row is None:
            return None
        return bytes(row[0]), bytes(row[1]), None if row[2] is None else bytes(row[2])

    def erase_subject(
        self,
        log_id: int,
        sid: str,
        prepare: Callable[[HeadState, list[tuple[str, str, int, int]]], Batch],
    ) -> tuple[Batch, list[tuple[str, str, int, int]]]:
        """Erase a subject's values, salts, lookup and key, and append its event, at once.

        ``prepare`` gets the head and the ``(commitment, name, seg, i)`` of every
        value erased, and returns the batch of the ``privacy.erasure`` event. On
        SQLite, deleted content is overwritten with zeros (``secure_delete``).
        """
        self.ensure_privacy_tables()
        p = self.backend.param
        done: list[tuple[Batch, list[tuple[str, str, int, int]]]] = []

        def run(cur: Any) -> None:
            done.clear()
            if self.dialect == "sqlite":
                cur.execute("PRAGMA secure_delete = ON")
            head = self._locked_head(cur, log_id)
            cur.execute(
                "SELECT v.commitment, v.name, v.seg, v.i FROM auditml_subject_value s "
                "JOIN auditml_value v ON v.log_id = s.log_id AND v.commitment = s.commitment "
                f"WHERE s.log_id = {p} AND s.sid = {p} ORDER BY v.seg, v.i, v.name",
                (log_id, sid),
            )
            erased = [(str(c), str(n), int(seg), int(i)) for c, n, seg, i in cur.fetchall()]
            mine = f"SELECT commitment FROM auditml_subject_value WHERE log_id = {p} AND sid = {p}"
            cur.execute(
                f"DELETE FROM auditml_value WHERE log_id = {p} AND commitment IN ({mine})",
                (log_id, log_id, sid),
            )
            cur.execute(
                f"DELETE FROM auditml_subject_value WHERE log_id = {p} AND sid = {p}", (log_id, sid)
            )
            cur.execute(
                f"DELETE FROM auditml_subject WHERE log_id = {p} AND sid = {p}", (log_id, sid)
            )
            if erased:
                cur.executemany(
                    f"INSERT INTO auditml_erased (log_id, commitment, seq) VALUES ({p}, {p}, {p})",
                    [(log_id, c, head.size) for c, _, _, _ in erased],
                )
            batch = prepare(head, erased)
            self._write(cur, batch, head)
            done.append((batch, erased))

        self._transaction(run)
        return done[0]

    def actor_pseudonym(self, log_id: int, person: str) -> str | None:
        """Return the pseudonym the lookup column gives ``person`` (a hint only), or None."""
        if not self._has_table("auditml_actor"):
            return None
        p = self.backend.param
        with self.snapshot() as snap:
            snap._cur.execute(
                f"SELECT pseudonym FROM auditml_actor WHERE log_id = {p} AND person = {p}",
                (log_id, person),
            )
            row = snap._cur.fetchone()
        return None if row is None else str(row[0])

    def enroll_actor(
        self,
        log_id: int,
        person: str,
        row: tuple[str, str, str | None, str, str],
        prepare: Callable[[HeadState], Batch],
    ) -> str:
        """Put a new person in the directory and append their ``actor.enroll`` event, at once.

        ``row`` is ``(pseudonym, known_as, name, salt, created_at)`` and
        ``prepare`` returns the batch of the enrollment event for that pseudonym.
        When the lookup column already gives ``person`` a pseudonym (another
        process enrolled them first), nothing is written and that one is returned.
        """
        self.ensure_privacy_tables()
        p = self.backend.param
        find = f"SELECT pseudonym FROM auditml_actor WHERE log_id = {p} AND person = {p}"

        def run(cur: Any) -> str:
            head = self._locked_head(cur, log_id)
            cur.execute(find, (log_id, person))
            found = cur.fetchone()
            if found is not None:
                return str(found[0])
            pseudonym, known_as, name, salt, created_at = row
            cur.execute(
                "INSERT INTO auditml_actor "
                "(log_id, pseudonym, person, known_as, name, salt, created_at) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                (log_id, pseudonym, person, known_as, name, salt, created_at),
            )
            self._write(cur, prepare(head), head)
            return pseudonym

        return self._transaction(run)

    def salt_actor(
        self,
        log_id: int,
        pseudonym: str,
        known: tuple[str, str | None, str],
        prepare: Callable[[HeadState], Batch],
    ) -> bool:
        """Give a row made before enrollments its salt and append its ``actor.enroll``, at once.

        ``known`` is ``(known_as, name, salt)``: the row changes only while it
        still holds that id and name, no salt and no erasure. Returns whether it did.
        """
        p = self.backend.param
        known_as, name, salt = known
        done: list[bool] = []

        def run(cur: Any) -> None:
            done.clear()
            head = self._locked_head(cur, log_id)
            cur.execute(
                f"UPDATE auditml_actor SET salt = {p} WHERE log_id = {p} AND pseudonym = {p} "
                f"AND known_as = {p} AND salt IS NULL AND erased IS NULL "
                f"AND (name = {p} OR (name IS NULL AND CAST({p} AS TEXT) IS NULL))",
                (salt, log_id, pseudonym, known_as, name, name),
            )
            if cur.rowcount == 1:
                self._write(cur, prepare(head), head)
            done.append(cur.rowcount == 1)

        self._transaction(run)
        return done[0]

    def name_actor(
        self,
        log_id: int,
        pseudonym: str,
        fill: tuple[str, str, str],
        prepare: Callable[[HeadState], Batch],
    ) -> None:
        """Fill the printed name of ``pseudonym``'s row and append its new enrollment, at once.

        ``fill`` is ``(known_as, name, salt)``: the row changes only while it
        still holds that id, no name and no erasure, and then the batch
        ``prepare`` returns (the ``actor.enroll`` binding the name) is written with it.
        """
        p = self.backend.param
        known_as, name, salt = fill

        def run(cur: Any) -> None:
            head = self._locked_head(cur, log_id)
            cur.execute(
                f"UPDATE auditml_actor SET name = {p}, salt = {p} "
                f"WHERE log_id = {p} AND pseudonym = {p} AND known_as = {p} "
                "AND name IS NULL AND erased IS NULL",
                (name, salt, log_id, pseudonym, known_as),
            )
            if cur.rowcount == 1:
                self._write(cur, prepare(head), head)

        self._transaction(run)

    def actor_directory(
        self, log_id: int
    ) -> list[tuple[str, str | None, str | None, str | None, int | None, str | None]]:
        """Return every row: ``(pseudonym, known_as, name, salt, erased seq, lookup person)``.

        Nothing here is trusted (the log says what was erased, see
        :func:`auditml.core.privacy.bind_directory`): an ``erased`` cell that is not
        an integer, as SQLite lets a hand store, reads as None rather than failing.
        """
        if not self._has_table("auditml_actor"):
            return []
        self._ensure_actor_salt()
        p = self.backend.param
        try:
            with self.snapshot() as snap:
                snap._cur.execute(
                    "SELECT pseudonym, known_as, name, salt, erased, person FROM auditml_actor "
                    f"WHERE log_id = {p} ORDER BY pseudonym",
                    (log_id,),
                )
                rows = snap._cur.fetchall()
        except StoreUnavailableError:
            raise
        except self.backend.errors as exc:  # a column dropped or renamed by hand
            self._salt_ready = False
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise VerificationError(
                f"the actor directory table cannot be read ({first}): it was changed by hand; "
                "decisions that count people are refused until it is restored",
                kind="directory",
            ) from None
        return [
            (
                str(r[0]),
                None if r[1] is None else str(r[1]),
                None if r[2] is None else str(r[2]),
                None if r[3] is None else str(r[3]),
                r[4] if isinstance(r[4], int) else None,  # SQLite keeps any text a hand put
                None if r[5] is None else str(r[5]),
            )
            for r in rows
        ]

    def erase_actor(
        self,
        log_id: int,
        pseudonym: str,
        prepare: Callable[[HeadState, str, str | None], Batch],
    ) -> tuple[Batch, str, str | None]:
        """Leave only ``pseudonym`` in its directory row and append the erasure, at once.

        ``prepare`` gets the head, the pseudonym and the printed name that was
        kept, and returns the batch of the ``privacy.erasure`` event. The row is
        deleted (on SQLite its cells are overwritten with zeros by
        ``secure_delete``) and a row holding only the pseudonym and the event's
        seq takes its place. Raises InvalidInputError when the directory holds no
        identity under ``pseudonym``; then nothing is written.
        """
        self.ensure_privacy_tables()
        p = self.backend.param
        done: list[tuple[Batch, str, str | None]] = []

        def run(cur: Any) -> None:
            done.clear()
            if self.dialect == "sqlite":
                cur.execute("PRAGMA secure_delete = ON")
            head = self._locked_head(cur, log_id)
            cur.execute(
                "SELECT pseudonym, name, created_at FROM auditml_actor "
                f"WHERE log_id = {p} AND pseudonym = {p} AND erased IS NULL",
                (log_id, pseudonym),
            )
            found = cur.fetchone()
            if found is None:
                raise InvalidInputError(
                    "the actor directory holds no one by that id (ids match ignoring case and "
                    "spaces): check it, or see `auditml actors`; nothing was erased"
                )
            name, created = found[1], str(found[2])
            cur.execute(
                f"DELETE FROM auditml_actor WHERE log_id = {p} AND pseudonym = {p}",
                (log_id, pseudonym),
            )
            cur.execute(
                "INSERT INTO auditml_actor (log_id, pseudonym, created_at, erased) "
                f"VALUES ({p}, {p}, {p}, {p})",
                (log_id, pseudonym, created, head.size),
            )
            batch = prepare(head, pseudonym, None if name is None else str(name))
            self._write(cur, batch, head)
            done.append((batch, pseudonym, None if name is None else str(name)))

        self._transaction(run)
        return done[0]

    def remove_expired(
        self,
        log_id: int,
        groups: Sequence[tuple[int, str]],
        segments: Sequence[int],
        prepare: Callable[[HeadState, Removed], Batch],
    ) -> tuple[Batch, Removed]:
        """Remove expired values and records and append the retention event, in one transaction.

        ``groups`` are ``(seg, name)``: the values of that name of the records
        of segment ``seg``; ``segments`` lose their records and any value left.
        Only rows actually removed are counted; ``prepare`` makes the event.
        """
        self.ensure_privacy_tables()
        p = self.backend.param
        done: list[tuple[Batch, Removed]] = []
        lookups = (
            f"DELETE FROM auditml_subject_value WHERE log_id = {p} AND commitment IN "
            f"(SELECT commitment FROM auditml_value WHERE log_id = {p} AND seg = {p}"
        )

        def run(cur: Any) -> None:
            done.clear()
            if self.dialect == "sqlite":
                cur.execute("PRAGMA secure_delete = ON")
            head = self._locked_head(cur, log_id)
            removed = Removed()
            for seg, name in groups:
                cur.execute(f"{lookups} AND name = {p})", (log_id, log_id, seg, name))
                cur.execute(
                    f"DELETE FROM auditml_value WHERE log_id = {p} AND seg = {p} AND name = {p}",
                    (log_id, seg, name),
                )
                removed.add_values(seg, name, max(cur.rowcount, 0))
            for seg in segments:
                cur.execute(
                    f"SELECT name, count(*) FROM auditml_value WHERE log_id = {p} AND seg = {p} "
                    "GROUP BY name",
                    (log_id, seg),
                )
                left = [(str(name), int(n)) for name, n in cur.fetchall()]
                cur.execute(f"{lookups})", (log_id, log_id, seg))
                cur.execute(
                    f"DELETE FROM auditml_value WHERE log_id = {p} AND seg = {p}", (log_id, seg)
                )
                for name, n in left:
                    removed.add_values(seg, name, n)
                cur.execute(
                    f"INSERT INTO auditml_removed (log_id, seg, seq) VALUES ({p}, {p}, {p})",
                    (log_id, seg, head.size),
                )
                cur.execute(
                    f"DELETE FROM auditml_record WHERE log_id = {p} AND seg = {p}", (log_id, seg)
                )
                removed.add_records(seg, max(cur.rowcount, 0))
            batch = prepare(head, removed)
            self._write(cur, batch, head)
            done.append((batch, removed))

        self._transaction(run)
        return done[0]

    def scrub(self) -> str:
        """Make deleted rows unrecoverable from the database files where the store can; say how.

        SQLite: checkpoint the WAL into the main file and truncate it, so old
        page images in the WAL go (deleted cells and free pages are zeroed by
        ``secure_delete``). PostgreSQL: rewrite the small key table (VACUUM FULL),
        so erased keys leave its data files, and the actor directory likewise; other
        tables keep dead rows until VACUUM.
        """
        if self.dialect == "sqlite":
            try:  # a pooled sqlite3 connection is in autocommit mode
                rows = self._rows("PRAGMA wal_checkpoint(TRUNCATE)")
            except (StoreUnavailableError, *self.backend.errors) as exc:  # type: ignore[misc]
                return f"the database could not be scrubbed now ({_first_line(exc)})"
            if rows and rows[0][0]:
                return (
                    "the WAL could not be truncated now (another connection is reading): "
                    "its old pages go at the next checkpoint"
                )
            return "the WAL was checkpointed and truncated; deleted content was zeroed"
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("VACUUM FULL auditml_subject")  # outside any transaction
                if self._has_table("auditml_actor"):  # small too: erased identities go at once
                    conn.exec_driver_sql("VACUUM FULL auditml_actor")
                return (
                    "the key and actor directory tables were rewritten (VACUUM FULL): erased keys "
                    "and identities left their data files; erased values stay as dead rows until "
                    "VACUUM, and in WAL archives and backups"
                )
        except SQLAlchemyError as exc:
            return f"the database could not be scrubbed now ({_first_line(exc)})"

    # -- reads --------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """Yield a reader that sees one consistent state of the log for all its reads."""
        conn = self._connection()
        cur = conn.cursor()
        try:
            self.backend.begin_snapshot(cur)
            yield Snapshot(self, conn, cur)
        finally:
            _rollback(conn, cur)
            close_quietly(cur)
            close_quietly(conn)

    def query(
        self, log_id: int, flt: EventFilter, chunk: int = 1000
    ) -> Generator[tuple[int, bytes, bytes]]:
        """Yield ``(seq, hash, body)`` of the events that match ``flt``, streamed."""
        p = self.backend.param
        conn = self._connection()
        cur: Any = None
        try:
            start, stop = flt.start, flt.stop
            if flt.since is not None or flt.until is not None:
                cur = conn.cursor()
                cur.execute(f"SELECT size FROM auditml_log WHERE id = {p}", (log_id,))
                size = int(cur.fetchone()[0])
                if flt.since is not None:
                    start = max(start, self._first_at(cur, log_id, size, flt.since))
                if flt.until is not None:
                    until = self._first_at(cur, log_id, size, flt.until)
                    stop = until if stop is None else min(stop, until)
                close_quietly(cur)
            conditions = [f"log_id = {p}", f"seq >= {p}"]
            params: list[Any] = [log_id, start]
            if stop is not None:
                conditions.append(f"seq < {p}")
                params.append(stop)
            if flt.model is not None:
                conditions.append(f"model = {p}")
                params.append(flt.model)
            if flt.version is not None:
                conditions.append(f"version = {p}")
                params.append(flt.version)
            if flt.containing:
                contains = self.backend.contains_sql("body")
                conditions.append("(" + " OR ".join([contains] * len(flt.containing)) + ")")
                params.extend(flt.containing)
            sql, params = self._select(conditions, params, flt, p)
            cur = self.backend.scan_cursor(conn)
            cur.execute(sql, tuple(params))
            for rows in iter_chunks(cur, chunk):
                for seq, digest, body in rows:
                    yield _checked(seq, digest, body)
        except self.backend.errors as exc:
            raise StoreError(f"reading {redact(self.url)} failed: {_first_line(exc)}") from None
        finally:
            _rollback(conn, cur)
            if cur is not None:
                close_quietly(cur)
            close_quietly(conn)

    @staticmethod
    def _select(
        conditions: list[str], params: list[Any], flt: EventFilter, p: str
    ) -> tuple[str, list[Any]]:
        """Return the SELECT of ``(seq, hash, body)`` for ``conditions`` and ``flt``'s actions.

        For ``sparse`` actions it is one SELECT per action, merged in seq order:
        each reads the action index in order, where ``action IN (...) ORDER BY
        seq`` makes SQLite walk the whole log. For common actions that walk is
        the cheaper read. With a model, it is one SELECT per action too, each on
        the (model, action, seq) index, so a model's lifecycle events are found
        without reading its many runtime.segment events.
        """
        head = "SELECT seq, hash, body FROM auditml_event WHERE "
        where = " AND ".join(conditions)
        actions = tuple(dict.fromkeys(flt.actions))
        if actions and (flt.model is not None or (flt.sparse and len(actions) > 1)):
            # One SELECT per action on the (model, action, seq) index, merged in seq order:
            # a model's history walked on the model index reads every event of the model,
            # and a model that serves in production has a runtime.segment per thousand
            # requests among them.
            arms = [f"{head}{where} AND action = {p}" for _ in actions]
            sql = arms[0] if len(arms) == 1 else " UNION ALL ".join(arms)
            values = [value for action in actions for value in (*params, action)]
        else:
            sql, values = head + where, list(params)
            if actions:
                sql += f" AND action IN ({', '.join([p] * len(actions))})"
                values.extend(actions)
        sql += " ORDER BY seq DESC" if flt.descending else " ORDER BY seq"
        if flt.limit is not None:
            sql += f" LIMIT {p}"
            values.append(flt.limit)
        return sql, values

    def _first_at(self, cur: Any, log_id: int, size: int, stamp: str) -> int:
        """Return the first seq whose time is at or after ``stamp``: times never decrease."""
        p = self.backend.param
        lo, hi = 0, size
        while lo < hi:
            mid = (lo + hi) // 2
            cur.execute(
                f"SELECT time FROM auditml_event WHERE log_id = {p} AND seq = {p}", (log_id, mid)
            )
            row = cur.fetchone()
            found = None if row is None else row[0]
            if found is None or found >= stamp:
                hi = mid
            else:
                lo = mid + 1
        return lo


class Snapshot:
    """Reads that all see the same committed state of the store."""

    def __init__(self, store: Store, conn: Any, cur: Any) -> None:
        self._store = store
        self._conn = conn
        self._cur = cur
        self._p = store.backend.param

    def reader(self, log_id: int) -> TxReader:
        """Return the reads decisions take, over this snapshot instead of a locked transaction."""
        return TxReader(self._cur, self._p, log_id)

    def head(self, log_id: int) -> HeadState | None:
        """Return the head row as of this snapshot."""
        self._cur.execute(self._store.backend.head_sql(), (log_id,))
        row = self._cur.fetchone()
        return None if row is None else _head(tuple(row))

    def scan_records(
        self,
        log_id: int,
        start_seg: int | None = None,
        stop_seg: int | None = None,
        chunk: int = SCAN_CHUNK,
        *,
        null: bool = False,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield chunks of the log's stored runtime records, in ``(seg, i)`` order, streamed.

        Each row is every column of ``RECORD_COLUMNS``, as stored, so verify can
        hold the copied-out columns against the bytes too. Without bounds it reads
        every record of the log, whatever its ``seg`` holds (verify names records
        of no segment); ``start_seg`` and ``stop_seg`` bound ``seg`` when given
        (in SQLite, text sorts after every number), and ``null`` reads only the
        records whose ``seg`` is NULL. Text that is not UTF-8 arrives with its bad
        bytes as surrogates.
        """
        p = self._p
        sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record WHERE log_id = {p}"
        params: tuple[int, ...] = (log_id,)
        if null:
            sql += " AND seg IS NULL"
        if start_seg is not None:
            sql += f" AND seg >= {p}"
            params += (start_seg,)
        if stop_seg is not None:
            sql += f" AND seg < {p}"
            params += (stop_seg,)
        yield from self._stream(sql + " ORDER BY seg, i", params, chunk)

    def _stream(
        self, sql: str, params: tuple[Any, ...], chunk: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Run a streaming query; text that is not UTF-8 arrives with its bad bytes as surrogates.

        SQLite refuses to hand over such text, so the query is run again with a
        tolerant text factory and goes on after the rows already given.
        """
        cursor = self._store.backend.scan_cursor(self._conn)
        done = 0
        try:
            cursor.execute(sql, params)
            for rows in iter_chunks(cursor, chunk):
                yield rows
                done += len(rows)
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
            close_quietly(cursor)
            for rows in self._scan_tolerant(sql, params, chunk):
                if done >= len(rows):
                    done -= len(rows)
                    continue
                yield rows[done:]
                done = 0
        finally:
            close_quietly(cursor)

    def scan_values(
        self,
        log_id: int,
        start_seg: int | None = None,
        stop_seg: int | None = None,
        *,
        outside: bool = False,
        chunk: int = SCAN_CHUNK,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield chunks of the values kept off the log (``VALUE_COLUMNS``), in their records' order.

        With ``start_seg`` and ``stop_seg``, only the values of those segments, or
        with ``outside`` every other value (NULL or text ``seg`` included). In
        SQLite the order is the order they were written, which is their records'
        order, read without a sort; PostgreSQL sorts them.
        """
        p = self._p
        sqlite = self._store.dialect == "sqlite"
        # In SQLite, '+' keeps the planner off the (log_id, commitment) key, whose order is
        # random: it walks the table in rowid order instead.
        sql = (
            f"SELECT {', '.join(VALUE_COLUMNS)} FROM auditml_value "
            f"WHERE {'+' if sqlite else ''}log_id = {p}"
        )
        params: tuple[Any, ...] = (log_id,)
        if start_seg is not None and stop_seg is not None:
            inside = f"seg >= {p} AND seg < {p}"
            sql += f" AND (seg IS NULL OR NOT ({inside}))" if outside else f" AND {inside}"
            params += (start_seg, stop_seg)
        sql += " ORDER BY rowid" if sqlite else " ORDER BY seg, i, name"
        yield from self._stream(sql, params, chunk)

    def record_body(self, log_id: int, seg: object, i: object) -> Any:
        """Return the stored body of the record at ``(seg, i)``, or None when there is none."""
        p = self._p
        try:
            self._cur.execute(
                f"SELECT body FROM auditml_record WHERE log_id = {p} AND seg = {p} AND i = {p}",
                (log_id, seg, i),
            )
            row = self._cur.fetchone()
        except (  # type: ignore[misc]
            sqlite3.Error,
            *self._store.backend.errors,
            TypeError,
            ValueError,
            OverflowError,
        ):
            return None
        return None if row is None else row[0]

    def segment_records(self, log_id: int, seg: int) -> list[tuple[Any, ...]]:
        """Return the stored rows (``RECORD_COLUMNS``) of segment ``seg``, in ``i`` order.

        It runs beside an open :meth:`scan_records`, so it uses the snapshot's own cursor.
        """
        p = self._p
        sql = (
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record "
            f"WHERE log_id = {p} AND seg = {p} ORDER BY i"
        )
        try:
            self._cur.execute(sql, (log_id, seg))
            return [tuple(row) for row in self._cur.fetchall()]
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
            rows = self._scan_tolerant(sql, (log_id, seg), SCAN_CHUNK)
            return [tuple(row) for chunk in rows for row in chunk]

    def segments(self, log_id: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        """Return ``(seq, hash, body)`` of every ``runtime.segment`` event before ``stop``."""
        self._cur.execute(
            f"SELECT seq, hash, body FROM auditml_event WHERE log_id = {self._p} "
            f"AND action = {self._p} AND seq < {self._p} ORDER BY seq",
            (log_id, "runtime.segment", stop),
        )
        return [tuple(row) for row in self._cur.fetchall()]

    def kept_segments(self, log_id: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        """Return :meth:`segments` but those whose records a retention run removed.

        The runs are read from their ``retention.applied`` events (verified with
        the chain), never from ``auditml_removed``, which only guards the trigger.
        """
        self._cur.execute(
            f"SELECT seq, body FROM auditml_event WHERE log_id = {self._p} "
            f"AND action = {self._p} AND seq < {self._p} ORDER BY seq",
            (log_id, "retention.applied", stop),
        )
        runs = [(int(seq), bytes(body)) for seq, body in self._cur.fetchall()]
        found = self.segments(log_id, stop)
        if not runs:
            return found
        removed = removed_by_retention(runs)
        return [row for row in found if row[0] not in removed]

    def holds_records(self) -> bool:
        """Return whether the store has the runtime record table (stores made before it do not)."""
        return self._store.has_table("auditml_record")

    def scan(
        self,
        log_id: int,
        start: int = 0,
        stop: int | None = None,
        chunk: int = SCAN_CHUNK,
        *,
        columns: bool = False,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield chunks of ``(seq, hash, body)`` rows in ``seq`` order, streamed.

        With ``columns``, each row is verify's full read of the event (see
        ``Backend.scan_columns``): every lookup column too, as stored, so that
        verify can hold each one against the bytes it indexes.
        """
        p = self._p
        cols = self._store.backend.scan_columns if columns else "seq, hash, body"
        sql = f"SELECT {cols} FROM auditml_event WHERE log_id = {p} AND seq >= {p}"
        params: tuple[int, ...] = (log_id, start)
        if stop is not None:
            sql += f" AND seq < {p}"
            params = (*params, stop)
        sql += " ORDER BY seq"
        cursor = self._store.backend.scan_cursor(self._conn)
        last = start - 1
        try:
            cursor.execute(sql, params)
            for rows in iter_chunks(cursor, chunk):
                yield rows
                last = rows[-1][0] if isinstance(rows[-1][0], int) else last
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
            # Text that is not UTF-8 sits in a text column: read on from where the stream
            # stopped, keeping the bad bytes as surrogates, so verify names the event.
            close_quietly(cursor)
            yield from self._scan_tolerant(sql, (*params[:1], last + 1, *params[2:]), chunk)
        finally:
            close_quietly(cursor)

    def _scan_tolerant(self, sql: str, params: tuple[Any, ...], chunk: int) -> Iterator[list[Any]]:
        """Run a SQLite scan whose text columns may hold bytes that are not UTF-8."""
        raw = getattr(self._conn, "driver_connection", self._conn)
        factory = raw.text_factory
        raw.text_factory = _tolerant_text
        cursor = raw.cursor()
        try:
            cursor.execute(sql, params)
            yield from iter_chunks(cursor, chunk)
        finally:
            close_quietly(cursor)
            raw.text_factory = factory

    def scan_hashes(self, log_id: int, stop: int, chunk: int = SCAN_CHUNK) -> Iterator[list[bytes]]:
        """Yield the stored hashes of events ``0`` to ``stop - 1`` in chunks, in ``seq`` order."""
        p = self._p
        cursor = self._store.backend.scan_cursor(self._conn)
        try:
            cursor.execute(
                f"SELECT hash FROM auditml_event WHERE log_id = {p} AND seq < {p} ORDER BY seq",
                (log_id, stop),
            )
            for rows in iter_chunks(cursor, chunk):
                yield [bytes(row[0]) for row in rows]
        finally:
            close_quietly(cursor)

    def count_from(self, log_id: int, seq: int) -> int:
        """Return how many events are stored at ``seq`` or later."""
        p = self._p
        self._cur.execute(
            f"SELECT count(*) FROM auditml_event WHERE log_id = {p} AND seq >= {p}", (log_id, seq)
        )
        return int(self._cur.fetchone()[0])

    def next_seq(self, log_id: int, seq: int) -> int | None:
        """Return the first stored seq at ``seq`` or later, or None when there is none."""
        p = self._p
        self._cur.execute(
            f"SELECT min(seq) FROM auditml_event WHERE log_id = {p} AND seq >= {p}", (log_id, seq)
        )
        found = self._cur.fetchone()[0]
        return None if found is None else int(found)

    def nodes(self, log_id: int, min_level: int = 0) -> dict[tuple[int, int], bytes]:
        """Return every stored tree node at ``min_level`` or above."""
        p = self._p
        self._cur.execute(
            f"SELECT level, idx, hash FROM auditml_node WHERE log_id = {p} AND level >= {p}",
            (log_id, min_level),
        )
        return {_node_key(lv, ix, h): bytes(h) for lv, ix, h in self._cur.fetchall()}

    def nodes_at(
        self, log_id: int, wanted: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Return the stored tree nodes among ``wanted`` ``(level, idx)`` pairs.

        On PostgreSQL that is one query, saving a round trip per node; on
        SQLite, where a query costs no round trip, one primary-key lookup
        each is faster than any single query SQLite can plan for the set.
        """
        if self._store.dialect != "postgresql":
            found = ((pair, self.node(log_id, *pair)) for pair in wanted)
            return {pair: node for pair, node in found if node is not None}
        if not wanted:
            return {}
        values = ", ".join(["(%s::int, %s::bigint)"] * len(wanted))
        self._cur.execute(
            "SELECT n.level, n.idx, n.hash FROM auditml_node n "
            f"JOIN (VALUES {values}) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx "
            "WHERE n.log_id = %s",
            (*(part for pair in wanted for part in pair), log_id),
        )
        return {
            (int(lv), int(ix)): _blob(h, f"Merkle node ({lv}, {ix})")
            for lv, ix, h in self._cur.fetchall()
        }

    def node(self, log_id: int, level: int, idx: int) -> bytes | None:
        """Return one stored tree node, or None when it is not stored."""
        p = self._p
        self._cur.execute(
            f"SELECT hash FROM auditml_node WHERE log_id = {p} AND level = {p} AND idx = {p}",
            (log_id, level, idx),
        )
        row = self._cur.fetchone()
        return None if row is None else _blob(row[0], f"Merkle node ({level}, {idx})")

    def leaf_hashes(self, log_id: int, start: int, stop: int) -> list[bytes]:
        """Return the hashes of events ``start`` to ``stop - 1``, in order."""
        p = self._p
        self._cur.execute(
            f"SELECT hash FROM auditml_event WHERE log_id = {p} AND seq >= {p} AND seq < {p} "
            "ORDER BY seq",
            (log_id, start, stop),
        )
        return [_blob(row[0], "an event's hash") for row in self._cur.fetchall()]

    # -- runtime views (auditml.serving) ---------------------------------------------------

    def bodies_of_segments(
        self, log_id: int, segs: Sequence[int], chunk: int = SCAN_CHUNK, batch: int = 500
    ) -> Iterator[tuple[int, list[Any]]]:
        """Yield ``(seg, bodies)`` for each of ``segs`` with stored records, bodies in ``i`` order.

        Only the segment and index columns locate a record: its bytes say the
        rest. On SQLite, where a query costs no round trip, each segment is one
        primary-key range read whole; on PostgreSQL the segments are read
        ``batch`` at a time through a server-side cursor, ``chunk`` rows at a time.
        """
        p = self._p
        ordered = sorted(set(segs))
        if self._store.dialect != "postgresql":
            sql = f"SELECT body FROM auditml_record WHERE log_id = {p} AND seg = {p} ORDER BY i"
            for seg in ordered:
                self._cur.execute(sql, (log_id, seg))
                rows = self._cur.fetchall()
                if rows:
                    yield seg, list(map(_FIRST, rows))
            return
        current: int | None = None
        bodies: list[Any] = []
        for start in range(0, len(ordered), batch):
            part = ordered[start : start + batch]
            cursor = self._store.backend.scan_cursor(self._conn)
            try:
                cursor.execute(
                    f"SELECT seg, body FROM auditml_record WHERE log_id = {p} "
                    f"AND seg IN ({', '.join([p] * len(part))}) ORDER BY seg, i",
                    (log_id, *part),
                )
                for rows in iter_chunks(cursor, chunk):
                    for seg, body in rows:
                        if seg != current:
                            if current is not None:
                                yield current, bodies
                            current, bodies = seg, []
                        bodies.append(body)
            finally:
                close_quietly(cursor)
        if current is not None:
            yield current, bodies

    def select_records(
        self,
        log_id: int,
        *,
        model: str | None = None,
        env: str | None = None,
        since: str | None = None,
        until: str | None = None,
        chunk: int = SCAN_CHUNK,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield chunks of stored records (``RECORD_COLUMNS``) matching the filters, streamed.

        ``since`` is inclusive and ``until`` exclusive, both compared with the
        records' RFC 3339 UTC times as text; rows come in ``seg, i`` order.
        """
        p = self._p
        sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM auditml_record WHERE log_id = {p}"
        params: list[Any] = [log_id]
        for column, op, value in (
            ("model", "=", model),
            ("env", "=", env),
            ("time", ">=", since),
            ("time", "<", until),
        ):
            if value is not None:
                sql += f" AND {column} {op} {p}"
                params.append(value)
        cursor = self._store.backend.scan_cursor(self._conn)
        try:
            cursor.execute(sql + " ORDER BY seg, i", tuple(params))
            yield from iter_chunks(cursor, chunk)
        finally:
            close_quietly(cursor)

    # -- retention and erasure (auditml.privacy) -------------------------------------------

    def value_counts(self, log_id: int) -> list[tuple[int, str, int]]:
        """Return ``(seg, name, count)`` of the values kept off the log, per segment and name."""
        if not self._store.has_table("auditml_value"):
            return []
        self._cur.execute(
            f"SELECT seg, name, count(*) FROM auditml_value WHERE log_id = {self._p} "
            "GROUP BY seg, name ORDER BY seg, name",
            (log_id,),
        )
        return [(int(seg), str(name), int(n)) for seg, name, n in self._cur.fetchall()]

    def scan_value_keys(
        self, log_id: int, stop_seg: int, chunk: int = SCAN_CHUNK
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Yield chunks of ``(seg, i, name, commitment, salt, value)`` kept off the log."""
        if not self._store.has_table("auditml_value"):
            return
        p = self._p
        if self._store.dialect == "postgresql":  # beside the records' scan: its own cursor
            raw = getattr(self._conn, "driver_connection", self._conn)
            cursor = raw.cursor(name=f"auditml_values_{id(raw)}")
            cursor.itersize = chunk
        else:
            cursor = self._store.backend.scan_cursor(self._conn)
        try:
            cursor.execute(
                "SELECT seg, i, name, commitment, salt, value FROM auditml_value "
                f"WHERE log_id = {p} AND seg < {p} ORDER BY seg, i, name",
                (log_id, stop_seg),
            )
            yield from iter_chunks(cursor, chunk)
        finally:
            close_quietly(cursor)

    def keys_of(self, log_id: int, commitments: Sequence[str]) -> dict[str, bytes]:
        """Return the subject key of each sealed value's commitment that still has one."""
        if not self._store.has_table("auditml_subject_value"):
            return {}
        p = self._p
        found: dict[str, bytes] = {}
        for start in range(0, len(commitments), 500):
            chunk = commitments[start : start + 500]
            self._cur.execute(
                "SELECT s.commitment, k.key FROM auditml_subject_value s "
                "JOIN auditml_subject k ON k.log_id = s.log_id AND k.sid = s.sid "
                f"WHERE s.log_id = {p} AND s.commitment IN ({', '.join([p] * len(chunk))})",
                (log_id, *chunk),
            )
            found.update((str(c), bytes(k)) for c, k in self._cur.fetchall())
        return found

    def erased(self, log_id: int) -> list[tuple[str, int]]:
        """Return ``(commitment, seq)`` of every value an erasure removed."""
        if not self._store.has_table("auditml_erased"):
            return []
        self._cur.execute(
            f"SELECT commitment, seq FROM auditml_erased WHERE log_id = {self._p} ORDER BY seq",
            (log_id,),
        )
        return [(str(c), int(seq)) for c, seq in self._cur.fetchall()]


class TxReader:
    """Reads inside an append's transaction, after the head is locked."""

    def __init__(self, cur: Any, param: str, log_id: int) -> None:
        self._cur = cur
        self._p = param
        self._log_id = log_id

    def bodies(
        self, model: str, actions: Sequence[str], *, after: int = -1
    ) -> list[tuple[int, bytes]]:
        """Return ``(seq, body)`` of the model's events with one of ``actions``, in order.

        Only events with ``seq`` greater than ``after`` are returned.
        """
        _check_name("model", model)
        p = self._p
        marks = ", ".join([p] * len(actions))
        self._cur.execute(
            f"SELECT seq, hash, body FROM auditml_event WHERE log_id = {p} AND model = {p} "
            f"AND seq > {p} AND action IN ({marks}) ORDER BY seq",
            (self._log_id, model, after, *actions),
        )
        return [_checked(*row)[::2] for row in self._cur.fetchall()]

    def by_actions(self, actions: Sequence[str], *, after: int = -1) -> list[tuple[int, bytes]]:
        """Return ``(seq, body)`` of every event with one of ``actions`` after ``after``."""
        p = self._p
        marks = ", ".join([p] * len(actions))
        self._cur.execute(
            f"SELECT seq, hash, body FROM auditml_event WHERE log_id = {p} "
            f"AND action IN ({marks}) AND seq > {p} ORDER BY seq",
            (self._log_id, *actions, after),
        )
        return [_checked(*row)[::2] for row in self._cur.fetchall()]

    def last_seq(self, action: str) -> int | None:
        """Return the seq of the latest event with ``action``, or None."""
        p = self._p
        self._cur.execute(
            f"SELECT MAX(seq) FROM auditml_event WHERE log_id = {p} AND action = {p}",
            (self._log_id, action),
        )
        row = self._cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def last(self, action: str) -> tuple[int, bytes] | None:
        """Return ``(seq, body)`` of the latest event with ``action``, or None."""
        p = self._p
        self._cur.execute(
            f"SELECT seq, hash, body FROM auditml_event WHERE log_id = {p} AND action = {p} "
            "ORDER BY seq DESC LIMIT 1",
            (self._log_id, action),
        )
        row = self._cur.fetchone()
        return None if row is None else _checked(*row)[::2]


@dataclass
class Removed:
    """What a retention run removed: values per name and segment, records per segment."""

    values: dict[str, int] = field(default_factory=dict)
    value_segments: dict[str, list[int]] = field(default_factory=dict)
    records: int = 0
    segments: list[int] = field(default_factory=list)

    def add_values(self, seg: int, name: str, count: int) -> None:
        """Count ``count`` values named ``name`` removed from segment ``seg``."""
        if count:
            self.values[name] = self.values.get(name, 0) + count
            self.value_segments.setdefault(name, []).append(seg)

    def add_records(self, seg: int, count: int) -> None:
        """Count the records removed from segment ``seg`` (the segment, even with none left)."""
        self.records += count
        self.segments.append(seg)


class _Writer:
    """Writes an append's chunks of event rows, on a thread of its own when asked to overlap.

    One chunk is written at a time, in order; :meth:`write` waits for the one
    before and raises its error. Leaving the block waits for the last one, so the
    transaction is never committed or rolled back under a running insert.
    """

    def __init__(self, store: Store, cur: Any, log_id: int, overlap: bool) -> None:
        self._store, self._cur, self._log_id = store, cur, log_id
        self._pool: ThreadPoolExecutor | None = None
        if overlap:  # only a long append overlaps: a decision does not import the thread pool
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, "auditml-append")
        self._pending: Future[None] | None = None

    def write(self, rows: Sequence[EventRow]) -> None:
        """Write ``rows`` after the chunk before them (at once, without overlap)."""
        self._wait()
        if self._pool is None:
            self._store._insert_events(self._cur, self._log_id, rows)
        else:
            self._pending = self._pool.submit(
                self._store._insert_events, self._cur, self._log_id, rows
            )

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # a failed insert's error yields to the first


def _head(row: tuple[Any, ...]) -> HeadState:
    """Return the head row as a HeadState, or raise naming the column that cannot be one."""
    names = ("id", "origin", "size", "head_hash", "head_time", "root", "frontier")
    kinds = (int, str, int, bytes, str, bytes, bytes)
    return HeadState(*_typed(row, names, kinds, "the log's head row", "head"))


def _typed(
    row: Sequence[Any], names: Sequence[str], kinds: Sequence[type], what: str, kind: str
) -> list[Any]:
    """Return a row's values, each of its column's type, or raise naming the one that is not."""
    values = list(row)
    for i, (name, wanted, value) in enumerate(zip(names, kinds, values, strict=True)):
        if wanted is bytes and isinstance(value, memoryview | bytearray):
            values[i] = bytes(value)
        elif not isinstance(value, wanted) or isinstance(value, bool):
            raise VerificationError(
                f"{what} is malformed: its {name} column holds {type(value).__name__} "
                f"{_short(value)}, not {wanted.__name__}: it was changed outside auditml",
                kind=kind,
            )
    return values


def _checked(seq: Any, digest: Any, body: Any) -> tuple[int, bytes, bytes]:
    """Return a stored event's ``(seq, hash, bytes)``, refusing bytes its hash does not match.

    Every read that decisions, state, cards or reports stand on goes through here:
    an event changed in the database (its bytes, or their type) is a failed
    verification naming it, never a decision taken on it, nor a crash.
    """
    if not isinstance(seq, int):
        raise VerificationError(
            f"an event is stored at seq {_short(seq)}, not an integer: run `auditml verify`",
            kind="column",
        )
    if not isinstance(body, bytes | memoryview | bytearray) or not isinstance(
        digest, bytes | memoryview | bytearray
    ):
        raise VerificationError(
            "its bytes or its hash are stored as text, not the bytes auditml wrote: it was "
            "changed outside auditml; run `auditml verify`",
            kind="column",
            seq=seq,
        )
    body, digest = bytes(body), bytes(digest)
    if hashlib.sha256(b"\x00" + body).digest() != digest:
        raise VerificationError(
            "its bytes do not match the hash recorded when it was written: the event was "
            "changed after it was appended; run `auditml verify`",
            kind="hash",
            seq=seq,
        )
    return seq, digest, body


def _tolerant_text(data: bytes) -> str:
    """Decode stored text, keeping bytes that are not UTF-8 as surrogates."""
    return data.decode("utf-8", "surrogateescape")


def _blob(value: Any, what: str) -> bytes:
    """Return a stored hash as bytes, or raise when the database holds something else there."""
    if isinstance(value, bytes | memoryview | bytearray):
        return bytes(value)
    raise VerificationError(
        f"{what} is stored as {type(value).__name__}, not bytes: the row was changed outside "
        "auditml; run `auditml verify`",
        kind="column",
    )


def _node_key(level: Any, idx: Any, digest: Any) -> tuple[int, int]:
    """Return a stored tree node's (level, idx), or raise when the row is malformed."""
    ok = isinstance(level, int) and isinstance(idx, int)
    if not ok or not isinstance(digest, bytes | memoryview | bytearray):
        raise VerificationError(
            f"a stored Merkle node row is malformed (level {_short(level)}, index {_short(idx)}, "
            f"hash of type {type(digest).__name__}): the row was changed outside auditml",
            kind="head",
        )
    return level, idx


def _checkpoint_row(row: tuple[Any, ...]) -> tuple[int, bytes, str, str]:
    """Return a checkpoint row's values, or raise naming the column that is malformed."""
    names = ("size", "root", "note", "created_at")
    size, root, note, created_at = _typed(
        row, names, (int, bytes, str, str), "a kept checkpoint row", "anchor"
    )
    return size, root, note, created_at


def _short(value: object) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 40 else text_[:37] + "..."


def _rollback(conn: Any, cur: Any) -> None:
    """Roll back whatever is open; a broken connection has nothing left to roll back."""
    with suppress(Exception):
        conn.rollback()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip()
    return text_.splitlines()[0] if text_ else type(orig).__name__
