"""What differs between SQLite and PostgreSQL: URLs, connections, locking, triggers, errors."""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import suppress
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from auditml._internal.infile import check_regular
from auditml.errors import ConfigurationError, StoreUnavailableError

# SQLAlchemy (about 0.2 s to import) is loaded only where it is used: PostgreSQL's engine,
# URLs that are not a plain SQLite path, and creating the schema from the SQLModel tables.
# A command on a SQLite log reads and appends through sqlite3 alone (issue 20).
if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "PostgresBackend",
    "SQLiteBackend",
    "backend_for",
    "lock_timeout_from_env",
    "redact",
    "redact_text",
]

#: The version of the store's tables (auditml.store.tables re-exports it).
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
#: How long a write waits for another writer's lock before giving up: seconds in
#: this variable, else the default.
LOCK_TIMEOUT_ENV = "AUDITML_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 30.0
WRITE_CACHE_KIB = -65536  # negative: KiB, as SQLite's PRAGMA cache_size takes it
READ_CACHE_KIB = -8192
APPEND_ONLY = "the audit log is append-only"


#: Query parameters of a database URL that hold a secret, or a file or option that does.
_SECRET_PARAMS = frozenset({"password", "sslpassword", "passfile", "sslkey", "passphrase"})
_MASK = "***"
_PLACEHOLDER = "AUDITMLREDACTED"
# The user:password@ part and key=value secrets of a URL that does not even parse.
_RAW_SECRETS = re.compile(
    r"(?P<head>://[^/:@?#]*:)[^@/?#]*(?=@)|(?P<key>(?:ssl)?pass(?:word|file|phrase)=)[^&#\s]*",
    re.IGNORECASE,
)


def _secret_param(name: str, value: str) -> bool:
    """Return whether a URL query parameter holds (or points at) a secret."""
    lowered = name.lower()
    if lowered in _SECRET_PARAMS or "password" in lowered or "secret" in lowered:
        return True
    # options=-c password=… or any other option that embeds a password
    return lowered == "options" and "pass" in value.lower()


#: A SQLite URL that is a plain path (or none): it holds no secret, and SQLAlchemy renders it
#: back unchanged, so it needs no parsing to be shown.
_PLAIN_SQLITE = re.compile(r"sqlite(?:\+pysqlite)?://(?:/[\w./ ~-]*)?")
#: A SQLite URL whose database is the path after ``:///`` (percent-escapes decoded).
_SQLITE_PATH = re.compile(r"sqlite(?:\+pysqlite)?://(?:/(?P<path>[^?#]*))?")


def _make_url(url: str) -> URL:
    """Parse a database URL with SQLAlchemy (imported here, when first needed)."""
    from sqlalchemy.engine import make_url

    return make_url(url)


def _unparsable() -> tuple[type[Exception], ...]:
    from sqlalchemy.exc import ArgumentError

    return (ArgumentError, ValueError)


def redact(url: str) -> str:
    """Return ``url`` with every password hidden, for messages.

    Hides ``user:password@``, and query parameters that hold a secret
    (``?password=``, ``sslpassword``, ``passfile``, an ``options`` that embeds a
    password), as ``***``.
    """
    if _PLAIN_SQLITE.fullmatch(url):
        return url
    try:
        parsed = _make_url(url)
    except _unparsable():
        return _RAW_SECRETS.sub(
            lambda m: f"{m['head']}{_MASK}" if m["head"] else f"{m['key']}{_MASK}", url
        )
    secret = {
        name: _PLACEHOLDER
        for name, value in parsed.query.items()
        if _secret_param(name, value if isinstance(value, str) else " ".join(value))
    }
    if secret:
        parsed = parsed.update_query_dict(secret)
    return parsed.render_as_string(hide_password=True).replace(_PLACEHOLDER, _MASK)


def _secrets_of(url: str) -> list[str]:
    """Return the secret values in ``url``, to hide wherever a driver message repeats them."""
    if _PLAIN_SQLITE.fullmatch(url):
        return []
    try:
        parsed = _make_url(url)
    except _unparsable():
        return []
    found = [parsed.password] if parsed.password else []
    for name, value in parsed.query.items():
        values = [value] if isinstance(value, str) else list(value)
        found.extend(v for v in values if v and _secret_param(name, v))
    return [str(v) for v in found if len(str(v)) >= 3]


def redact_text(text: str, url: str) -> str:
    """Return ``text`` (e.g. a driver's error) with the secrets of ``url`` hidden."""
    for value in sorted(_secrets_of(url), key=len, reverse=True):
        text = text.replace(value, _MASK)
    return text


def lock_timeout_from_env() -> float:
    """Return the seconds a write may wait for the lock: $AUDITML_LOCK_TIMEOUT, else 30."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86400:
        raise ConfigurationError(
            f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds: give one between 0 and "
            f"86400, e.g. {LOCK_TIMEOUT_ENV}=120 (default {DEFAULT_LOCK_TIMEOUT_S:g})"
        )
    return value


class Backend(ABC):
    """The SQL and driver behaviour of one database kind (SQLite and PostgreSQL implement it)."""

    name = ""
    param = "?"
    triggers: tuple[str, ...] = ()
    #: The statements that let a retention run, and only it, delete runtime records.
    record_delete_triggers: tuple[str, ...] = ()
    #: What verify reads of each event: every column as stored, so it can hold each one,
    #: and its type, against the bytes the event is.
    scan_columns = "seq, hash, body, prev, time, action, model, version"

    #: The SQLAlchemy dialect's name.
    dialect = ""

    def __init__(self, url: str) -> None:
        self.url = url

    @abstractmethod
    def engine(self, *, create: bool) -> Any:
        """Return the source of connections (``raw_connection()``, ``dispose()``).

        ``create`` makes the database file when it is missing.
        """

    @abstractmethod
    def sa_engine(self, pool: Any) -> Engine:
        """Return a SQLAlchemy engine on the same database as ``pool`` (for the schema)."""

    @property
    @abstractmethod
    def errors(self) -> tuple[type[Exception], ...]:
        """Return the exceptions the driver (or SQLAlchemy, where it is used) raises."""

    def contains_sql(self, column: str) -> str:
        """Return the condition that the blob ``column`` holds the bytes of one parameter."""
        return f"instr({column}, {self.param}) > 0"

    def begin_write(self, cursor: Any, wait_s: float) -> None:
        """Start the append transaction, waiting at most ``wait_s`` for another writer's lock."""
        return None  # by default the driver's own transaction is enough

    def end_write(self, cursor: Any) -> None:
        """Undo what :meth:`begin_write` set on the connection beyond the transaction."""
        return None  # by default the driver's own transaction is enough

    def begin_snapshot(self, cursor: Any) -> None:
        """Start a read transaction that sees one consistent state of the log."""
        return None  # by default the driver's own transaction is enough

    def head_sql(self) -> str:
        """Return the SELECT that reads a log's head row."""
        return (
            "SELECT id, origin, size, head_hash, head_time, root, frontier "
            f"FROM auditml_log WHERE id = {self.param}"
        )

    def lock_head_sql(self) -> str:
        """Return the SELECT that reads a log's head row and, where supported, locks it."""
        return self.head_sql()

    def is_retryable(self, exc: BaseException) -> bool:
        """Return whether ``exc`` is a lock or serialization conflict worth retrying."""
        return False

    def scan_cursor(self, dbapi_conn: Any) -> Any:
        """Return a cursor that streams a large result without holding it all in memory."""
        return dbapi_conn.cursor()

    def bulk_insert(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        shared: Sequence[Any],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Insert ``rows`` into ``table``, each prefixed with the ``shared`` values.

        ``columns`` names the shared columns first. Backends override this with
        their fastest bulk path; this one is plain ``executemany``.
        """
        p = self.param
        cursor.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))})",
            [(*shared, *row) for row in rows],
        )

    def unavailable(self, exc: BaseException) -> StoreUnavailableError:
        """Translate a driver error on connect into one clear sentence."""
        orig = getattr(exc, "orig", None) or exc
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return StoreUnavailableError(
            f"cannot use the {self.name} store at {redact(self.url)}: "
            f"{redact_text(first, self.url)}"
        )


def _sqlite_path(database: str | None) -> str | None:
    """Return the file path of a SQLite URL's database, or None for an in-memory database."""
    if not database or database == ":memory:":
        return None
    return database


class _Shared:
    """The one connection of an in-memory database, lent out: closing a loan keeps it open."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        object.__setattr__(self, "_conn", conn)

    @property
    def driver_connection(self) -> sqlite3.Connection:
        """Return the sqlite3 connection itself (as SQLAlchemy's pooled connections do)."""
        return self._conn  # type: ignore[no-any-return]

    def close(self) -> None:
        """Keep the connection: the database lives only as long as it does."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._conn, name, value)


class _Loan:
    """A pooled sqlite3 connection; ``close()`` rolls back what is open and returns it."""

    def __init__(self, pool: SQLitePool, conn: sqlite3.Connection) -> None:
        self._pool = pool
        self._conn: sqlite3.Connection | None = conn

    @property
    def driver_connection(self) -> sqlite3.Connection:
        """Return the sqlite3 connection itself (as SQLAlchemy's pooled connections do)."""
        assert self._conn is not None, "the connection was returned to its pool"
        return self._conn

    def cursor(self) -> sqlite3.Cursor:
        assert self._conn is not None, "the connection was returned to its pool"
        return self._conn.cursor()

    def commit(self) -> None:
        assert self._conn is not None, "the connection was returned to its pool"
        self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None:
            self._conn.rollback()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class SQLitePool:
    """Connections to one SQLite database, set up as auditml needs and kept for reuse.

    It stands where an SQLAlchemy engine's pool stood: a connection is opened
    in autocommit mode (auditml says BEGIN itself), usable from any thread,
    with the busy timeout, ``synchronous = FULL`` and foreign keys on. An
    in-memory database is one connection that every loan shares.
    """

    #: Idle connections kept for reuse; more are closed when given back.
    KEEP = 5

    def __init__(self, path: str | None, *, create: bool) -> None:
        self.path = path
        self.create = create
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._shared: sqlite3.Connection | None = None

    def open(self) -> sqlite3.Connection:
        """Open and set up a new connection (for the in-memory database, the shared one)."""
        if self.path is None:
            with self._lock:
                if self._shared is None:
                    self._shared = self._open(":memory:")
                return self._shared
        return self._open(self.path)

    def _open(self, target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            cur = conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if self.path is not None and self.create:
                # Only `init` switches a file to WAL (the mode stays with the file):
                # the pragma writes, and opening a log to read must change nothing.
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()
        except BaseException:
            conn.close()
            raise
        return conn

    def raw_connection(self) -> Any:
        """Lend a connection; ``close()`` on it gives it back."""
        if self.path is None:
            return _Shared(self.open())
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        return _Loan(self, conn if conn is not None else self.open())

    def give_back(self, conn: sqlite3.Connection) -> None:
        """Take a lent connection back, with nothing left open on it."""
        try:
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error:
            close_quietly(conn)
            return
        with self._lock:
            if len(self._idle) < self.KEEP:
                self._idle.append(conn)
                return
        close_quietly(conn)

    def dispose(self) -> None:
        """Close every idle connection (and the in-memory database)."""
        with self._lock:
            idle, self._idle = self._idle, []
            shared, self._shared = self._shared, None
        for conn in idle:
            close_quietly(conn)
        if shared is not None:
            close_quietly(shared)


#: A runtime record may be deleted only by a retention run, which lists its segment in
#: auditml_removed in the transaction that appends its event (a store made before that
#: had an unconditional trigger, which these replace).
_SQLITE_RECORD_DELETE = (
    "DROP TRIGGER IF EXISTS auditml_record_no_delete",
    "CREATE TRIGGER auditml_record_no_delete BEFORE DELETE ON auditml_record "
    "WHEN NOT EXISTS (SELECT 1 FROM auditml_removed r WHERE r.log_id = OLD.log_id "
    "AND r.seg = OLD.seg) BEGIN SELECT RAISE(ABORT, 'auditml: DELETE of a runtime record is "
    f"refused: only a retention run removes records ({APPEND_ONLY})'); END",
)
_POSTGRES_RECORD_DELETE = (
    "CREATE OR REPLACE FUNCTION auditml_refuse_record_delete() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM auditml_removed r WHERE "
    "r.log_id = OLD.log_id AND r.seg = OLD.seg) THEN RETURN OLD; END IF; RAISE EXCEPTION "
    "'auditml: DELETE of a runtime record is refused: only a retention run removes records'; "
    "END $$",
    "DROP TRIGGER IF EXISTS auditml_record_append_only ON auditml_record",
    "CREATE TRIGGER auditml_record_append_only BEFORE UPDATE ON auditml_record "
    "FOR EACH ROW EXECUTE FUNCTION auditml_refuse_change()",
    "DROP TRIGGER IF EXISTS auditml_record_no_delete ON auditml_record",
    "CREATE TRIGGER auditml_record_no_delete BEFORE DELETE ON auditml_record "
    "FOR EACH ROW EXECUTE FUNCTION auditml_refuse_record_delete()",
)


class SQLiteBackend(Backend):
    """The embedded default: a SQLite file in WAL mode with synchronous FULL."""

    name = "SQLite"
    param = "?"
    record_delete_triggers = _SQLITE_RECORD_DELETE
    triggers = (
        "CREATE TRIGGER IF NOT EXISTS auditml_event_no_update BEFORE UPDATE ON auditml_event "
        f"BEGIN SELECT RAISE(ABORT, 'auditml: UPDATE of an event is refused: {APPEND_ONLY}'); END",
        "CREATE TRIGGER IF NOT EXISTS auditml_event_no_delete BEFORE DELETE ON auditml_event "
        f"BEGIN SELECT RAISE(ABORT, 'auditml: DELETE of an event is refused: {APPEND_ONLY}'); END",
        "CREATE TRIGGER IF NOT EXISTS auditml_node_no_update BEFORE UPDATE ON auditml_node "
        f"BEGIN SELECT RAISE(ABORT, 'auditml: UPDATE of a tree node is refused: {APPEND_ONLY}');"
        " END",
        "CREATE TRIGGER IF NOT EXISTS auditml_node_no_delete BEFORE DELETE ON auditml_node "
        f"BEGIN SELECT RAISE(ABORT, 'auditml: DELETE of a tree node is refused: {APPEND_ONLY}');"
        " END",
        *(
            f"CREATE TRIGGER IF NOT EXISTS auditml_{table}_no_{op.lower()} BEFORE {op} ON "
            f"auditml_{table} BEGIN SELECT RAISE(ABORT, 'auditml: {op} of a {what} is refused: "
            f"{APPEND_ONLY}'); END"
            for table, what, ops in (
                ("checkpoint", "checkpoint", ("UPDATE", "DELETE")),
                ("logkey", "log key", ("UPDATE", "DELETE")),
                ("record", "runtime record", ("UPDATE",)),
            )
            for op in ops
        ),
        *_SQLITE_RECORD_DELETE,
        "CREATE TRIGGER IF NOT EXISTS auditml_log_no_delete BEFORE DELETE ON auditml_log "
        f"BEGIN SELECT RAISE(ABORT, 'auditml: DELETE of a log head is refused: {APPEND_ONLY}');"
        " END",
        "CREATE TRIGGER IF NOT EXISTS auditml_log_no_shrink BEFORE UPDATE ON auditml_log "
        "WHEN NEW.size < OLD.size OR NEW.origin <> OLD.origin OR NEW.id <> OLD.id "
        f"BEGIN SELECT RAISE(ABORT, 'auditml: a log head may only move forward: {APPEND_ONLY}');"
        " END",
    )

    dialect = "sqlite"

    def __init__(self, url: str, database: str | None) -> None:
        super().__init__(url)
        self.path = _sqlite_path(database)

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """SQLite's errors; SQLAlchemy's only once it was imported (for the schema)."""
        exc = _loaded_sqlalchemy_errors()
        return (sqlite3.Error, *exc)

    def engine(self, *, create: bool) -> SQLitePool:
        """Return the pool of sqlite3 connections in autocommit mode (auditml says BEGIN)."""
        if self.path is not None:
            path = Path(self.path)
            if create:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreUnavailableError(
                        f"cannot create the folder {path.parent} for the audit log: {exc.strerror}"
                    ) from None
            elif not path.exists():
                raise StoreUnavailableError(
                    f"no audit log at {path}: run `auditml init` there first, "
                    "or point --db / AUDITML_DATABASE_URL at an existing log"
                )
            elif path.is_dir():
                raise StoreUnavailableError(f"{path} is a folder, not an auditml SQLite file")
            # SQLite opens the file by its path: a pipe or a device there gave "disk I/O
            # error", or for /dev/null an empty database that takes no write.
            check_regular(path, "auditml SQLite file", StoreUnavailableError)
        return SQLitePool(self.path, create=create)

    def sa_engine(self, pool: Any) -> Engine:
        """Return an SQLAlchemy engine whose connections the pool opens and sets up.

        The in-memory database's one connection is lent to it, never closed by it.
        """
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool, StaticPool

        assert isinstance(pool, SQLitePool)
        if pool.path is None:
            return create_engine(
                "sqlite://", creator=lambda: _Shared(pool.open()), poolclass=StaticPool
            )
        return create_engine("sqlite://", creator=pool.open, poolclass=NullPool)

    def begin_write(self, cursor: Any, wait_s: float) -> None:
        """Take SQLite's write lock at once, so the head read inside is the latest.

        The busy timeout bounds the wait for another writer to ``wait_s``.
        Appends get a 64 MiB page cache, so the right edges of the event table
        and its indexes, where every append lands, stay in memory.
        """
        cursor.execute(f"PRAGMA busy_timeout = {max(1, int(wait_s * 1000))}")
        cursor.execute(f"PRAGMA cache_size = {WRITE_CACHE_KIB}")
        cursor.execute("BEGIN IMMEDIATE")

    def end_write(self, cursor: Any) -> None:
        """Give the pooled connection back with the usual busy timeout, for reads."""
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def begin_snapshot(self, cursor: Any) -> None:
        """Start a deferred transaction: in WAL mode its first read fixes a snapshot.

        A streaming read touches each page once, so it keeps the cache small.
        """
        cursor.execute(f"PRAGMA cache_size = {READ_CACHE_KIB}")
        cursor.execute("BEGIN")

    def bulk_insert(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        shared: Sequence[Any],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Insert ``rows`` with multi-row INSERTs of fixed sizes (so each statement is cached).

        The shared values are bound once per statement (``?1``, ``?2``, ...), the
        rows' values flattened in C: no Python work per row, and one SQLite step
        (and one release of the GIL) per up to 512 rows, not per row.
        """
        width = len(columns) - len(shared)
        # An older SQLite binds at most 999 parameters to a statement: stay under its limit.
        limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        most = min(_BULK_ROWS, 1 << (max((limit - len(shared)) // width, 1).bit_length() - 1))
        flat = list(chain.from_iterable(rows))
        count, at = len(rows), 0
        while at < count:
            left = count - at
            size = most if left >= most else 1 << (left.bit_length() - 1)
            cursor.execute(
                _multi_row_sql(table, tuple(columns), len(shared), size),
                (*shared, *flat[at * width : (at + size) * width]),
            )
            at += size

    def is_retryable(self, exc: BaseException) -> bool:
        """SQLite reports a writer it waited for too long as 'database is locked'."""
        orig = getattr(exc, "orig", None) or exc
        text = str(orig).lower()
        return isinstance(orig, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


class PostgresBackend(Backend):
    """PostgreSQL via psycopg 3: the store for many writers on many machines."""

    name = "PostgreSQL"
    param = "%s"
    record_delete_triggers = _POSTGRES_RECORD_DELETE
    triggers = (
        "CREATE OR REPLACE FUNCTION auditml_refuse_change() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
        f"'auditml: %% of %% is refused: {APPEND_ONLY}', TG_OP, TG_TABLE_NAME; END $$",
        "CREATE OR REPLACE FUNCTION auditml_refuse_shrink() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.size < OLD.size OR NEW.origin <> OLD.origin OR NEW.id <> OLD.id THEN "
        f"RAISE EXCEPTION 'auditml: a log head may only move forward: {APPEND_ONLY}'; "
        "END IF; RETURN NEW; END $$",
        "DROP TRIGGER IF EXISTS auditml_event_append_only ON auditml_event",
        "CREATE TRIGGER auditml_event_append_only BEFORE UPDATE OR DELETE ON auditml_event "
        "FOR EACH ROW EXECUTE FUNCTION auditml_refuse_change()",
        "DROP TRIGGER IF EXISTS auditml_event_no_truncate ON auditml_event",
        "CREATE TRIGGER auditml_event_no_truncate BEFORE TRUNCATE ON auditml_event "
        "FOR EACH STATEMENT EXECUTE FUNCTION auditml_refuse_change()",
        "DROP TRIGGER IF EXISTS auditml_node_append_only ON auditml_node",
        "CREATE TRIGGER auditml_node_append_only BEFORE UPDATE OR DELETE ON auditml_node "
        "FOR EACH ROW EXECUTE FUNCTION auditml_refuse_change()",
        "DROP TRIGGER IF EXISTS auditml_node_no_truncate ON auditml_node",
        "CREATE TRIGGER auditml_node_no_truncate BEFORE TRUNCATE ON auditml_node "
        "FOR EACH STATEMENT EXECUTE FUNCTION auditml_refuse_change()",
        *(
            statement
            for table in ("checkpoint", "logkey", "record")
            for statement in (
                f"DROP TRIGGER IF EXISTS auditml_{table}_append_only ON auditml_{table}",
                f"CREATE TRIGGER auditml_{table}_append_only BEFORE UPDATE OR DELETE ON "
                f"auditml_{table} FOR EACH ROW EXECUTE FUNCTION auditml_refuse_change()",
                f"DROP TRIGGER IF EXISTS auditml_{table}_no_truncate ON auditml_{table}",
                f"CREATE TRIGGER auditml_{table}_no_truncate BEFORE TRUNCATE ON auditml_{table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION auditml_refuse_change()",
            )
        ),
        *_POSTGRES_RECORD_DELETE,
        "DROP TRIGGER IF EXISTS auditml_log_no_delete ON auditml_log",
        "CREATE TRIGGER auditml_log_no_delete BEFORE DELETE ON auditml_log "
        "FOR EACH ROW EXECUTE FUNCTION auditml_refuse_change()",
        "DROP TRIGGER IF EXISTS auditml_log_no_truncate ON auditml_log",
        "CREATE TRIGGER auditml_log_no_truncate BEFORE TRUNCATE ON auditml_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION auditml_refuse_change()",
        "DROP TRIGGER IF EXISTS auditml_log_forward_only ON auditml_log",
        "CREATE TRIGGER auditml_log_forward_only BEFORE UPDATE ON auditml_log "
        "FOR EACH ROW EXECUTE FUNCTION auditml_refuse_shrink()",
    )

    dialect = "postgresql"

    def __init__(self, url: str, parsed: URL) -> None:
        super().__init__(url)
        self.parsed = parsed.set(drivername="postgresql+psycopg")
        self._types: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """The errors of psycopg, and of SQLAlchemy (its pool opens the connections)."""
        import psycopg
        from sqlalchemy.exc import SQLAlchemyError

        return (psycopg.Error, SQLAlchemyError)

    def sa_engine(self, pool: Any) -> Engine:
        """PostgreSQL's pool is an SQLAlchemy engine already."""
        return pool  # type: ignore[no-any-return]

    def contains_sql(self, column: str) -> str:
        """Return the condition that the bytea ``column`` holds the bytes of one parameter."""
        return f"position({self.param}::bytea IN {column}) > 0"

    def engine(self, *, create: bool) -> Engine:
        """Return a psycopg engine; connections check they are alive before use."""
        try:
            import psycopg  # noqa: F401  (imported to give a clear error when missing)
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL needs the psycopg driver: pip install 'auditml[postgres]'"
            ) from None
        from sqlalchemy import create_engine

        connect_args: dict[str, Any] = {"connect_timeout": 10}
        if "application_name" not in self.parsed.query:
            connect_args["application_name"] = "auditml"
        return create_engine(self.parsed, pool_pre_ping=True, connect_args=connect_args)

    def begin_write(self, cursor: Any, wait_s: float) -> None:
        """Bound the wait for another writer's row lock to ``wait_s``, for this transaction only."""
        cursor.execute(f"SET LOCAL lock_timeout = '{max(1, int(wait_s * 1000))}ms'")

    def lock_head_sql(self) -> str:
        """Lock the head row: every writer queues here, so the chain never forks."""
        return self.head_sql() + " FOR UPDATE"

    def begin_snapshot(self, cursor: Any) -> None:
        """Read the head and every event from one REPEATABLE READ snapshot."""
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def is_retryable(self, exc: BaseException) -> bool:
        """Retry serialization failures, deadlocks and lock timeouts."""
        orig = getattr(exc, "orig", None) or exc
        return getattr(orig, "sqlstate", None) in {"40001", "40P01", "55P03"}

    def bulk_insert(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        shared: Sequence[Any],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Insert ``rows`` with one binary ``COPY`` (psycopg), column types read once."""
        types = self._column_types(cursor, table, tuple(columns))
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            write = copy.write_row
            for row in rows:
                write((*shared, *row))

    def _column_types(self, cursor: Any, table: str, columns: tuple[str, ...]) -> list[str]:
        """Return the PostgreSQL type of each column, as binary COPY needs them (cached)."""
        key = (table, columns)
        found = self._types.get(key)
        if found is None:
            cursor.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            kinds = {str(name): str(kind) for name, kind in cursor.fetchall()}
            found = [kinds[column] for column in columns]
            self._types[key] = found
        return found

    def scan_cursor(self, dbapi_conn: Any) -> Any:
        """Use a server-side cursor, so a million-event scan streams in chunks."""
        raw = getattr(dbapi_conn, "driver_connection", dbapi_conn)
        # Named afresh each time: a scan left open (its reader raised) never blocks the next.
        cursor = raw.cursor(name=f"auditml_scan_{os.getpid()}_{id(raw)}_{next(_CURSORS)}")
        cursor.itersize = 5000
        return cursor


#: Rows per multi-row INSERT on SQLite; smaller remainders go in power-of-two statements.
_BULK_ROWS = 512


@lru_cache(maxsize=64)
def _multi_row_sql(table: str, columns: tuple[str, ...], shared: int, size: int) -> str:
    """Return ``INSERT INTO table (columns) VALUES (...), ...`` for ``size`` rows.

    The first ``shared`` columns take the parameters ``?1`` … in every row; the
    others take the next numbered parameters, row by row.
    """
    width = len(columns) - shared
    head = [f"?{n}" for n in range(1, shared + 1)]
    tuples = []
    for row in range(size):
        first = shared + row * width + 1
        tuples.append("(" + ", ".join(head + [f"?{n}" for n in range(first, first + width)]) + ")")
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(tuples)}"


_CURSORS = itertools.count()


def _loaded_sqlalchemy_errors() -> tuple[type[Exception], ...]:
    """Return SQLAlchemy's base error if something imported it, else nothing to catch."""
    import sys

    module = sys.modules.get("sqlalchemy.exc")
    return () if module is None else (module.SQLAlchemyError,)


def backend_for(url: str) -> Backend:
    """Return the backend of a database URL, or raise ConfigurationError naming the fix.

    A SQLite URL is read here; any other is parsed by SQLAlchemy.
    """
    plain = _SQLITE_PATH.fullmatch(url)
    if plain is not None:
        path = plain["path"]
        return SQLiteBackend(url, None if path is None else unquote(path))
    try:
        parsed = _make_url(url)
    except _unparsable():
        raise ConfigurationError(
            f"not a database URL: {redact(url)!r}; use sqlite:///path/to/audit.db or "
            "postgresql://user@host:5432/dbname"
        ) from None
    scheme = parsed.drivername.split("+", 1)[0]
    if scheme == "sqlite":
        return SQLiteBackend(url, parsed.database)
    if scheme in {"postgresql", "postgres"}:
        return PostgresBackend(url, parsed)
    raise ConfigurationError(
        f"unsupported database {scheme!r} in {redact(url)}: auditml stores logs in "
        "SQLite (sqlite:///path) or PostgreSQL (postgresql://…)"
    )


def iter_chunks(cursor: Any, size: int) -> Iterator[list[Any]]:
    """Yield the rows of an executed cursor in lists of at most ``size``."""
    while True:
        rows = cursor.fetchmany(size)
        if not rows:
            return
        yield rows


def close_quietly(obj: Any) -> None:
    """Close a cursor or connection, ignoring errors from one already broken."""
    with suppress(Exception):
        obj.close()
