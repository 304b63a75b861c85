"""Startup: a short command imports only what it uses (issue 20), and nothing drifts apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import auditml
from auditml import AuditLog
from auditml.cards.render import FORMATS
from auditml.cli import card
from auditml.store._backends import SQLiteBackend, SQLitePool, backend_for, redact


def _modules_after(code: str) -> set[str]:
    """Return the modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    source = str(Path(auditml.__file__).parents[1])  # this auditml, not another installed one
    env = {**os.environ, "PYTHONPATH": source}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=env,
    )
    return set(done.stdout.split())


def test_the_cli_names_the_card_formats_the_renderer_has() -> None:
    """The card command's formats (kept in the CLI so it loads no cards code) are the renderer's."""
    assert card.FORMATS == FORMATS


def test_importing_auditml_loads_nothing_it_does_not_use() -> None:
    """``import auditml`` loads neither the store, pydantic nor importlib.metadata."""
    loaded = _modules_after("import auditml")
    assert not {"auditml.log", "auditml.store", "pydantic", "importlib.metadata"} & loaded


def test_the_cli_loads_no_cards_reports_or_serving_to_start() -> None:
    """Building the command tree imports no cards, reports, serving or key-file code."""
    loaded = _modules_after("import auditml.cli")
    heavy = {"auditml.cards", "auditml.reports", "auditml.serving", "auditml._internal.keyfiles"}
    assert not heavy & loaded
    assert "auditml.log" not in loaded


def test_a_decision_on_a_sqlite_log_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """Opening a SQLite log, approving, deploying and reading status import no SQLAlchemy."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditLog.init(url, actor="admin@bank.example")[0] as log:
        log.record_training("credit", actor="ds@bank.example")
    loaded = _modules_after(
        "from auditml import AuditLog\n"
        f"log = AuditLog.open({url!r})\n"
        "log.approve('credit', '1', reason='ok', actor='v@bank.example')\n"
        "log.deploy('credit', '1', 'production', reason='go', actor='r@bank.example')\n"
        "assert log.status('credit')['credit'].versions['1'].running_in == ['production']\n"
        "log.close()"
    )
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "sqlmodel")}


def test_the_status_command_on_a_sqlite_log_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """``auditml status`` (the CLI, whole) on a SQLite log imports no SQLAlchemy or SQLModel."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog.init(url, actor="admin@bank.example")[0].close()
    loaded = _modules_after(
        "from auditml.cli import main\n"
        "try:\n"
        f"    main(['status', '--db', {url!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code"
    )
    assert not {m for m in loaded if m.split(".")[0] in ("sqlalchemy", "sqlmodel")}


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///audit.db",
        "sqlite:////tmp/x/audit.db",
        "sqlite:///a%20b.db",
        "sqlite:///./rel/dir/audit.db",
        "sqlite+pysqlite:///x.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///x.db?mode=ro",
        "sqlite:///C:/x.db",
        "sqlite://host/x.db",
    ],
)
def test_sqlite_urls_read_without_sqlalchemy_as_sqlalchemy_reads_them(url: str) -> None:
    """The SQLite path and the redacted URL read here equal what SQLAlchemy's parser gives."""
    from sqlalchemy.engine import make_url

    backend = backend_for(url)
    assert isinstance(backend, SQLiteBackend)
    database = make_url(url).database
    assert backend.path == (None if database in (None, "", ":memory:") else database)
    assert redact(url) == make_url(url).render_as_string(hide_password=True)


def test_the_sqlite_pool_reuses_connections_and_rolls_back_what_is_left_open(
    tmp_path: Path,
) -> None:
    """A connection given back with a transaction open is rolled back, then lent again."""
    pool = SQLitePool(str(tmp_path / "p.db"), create=True)
    conn = pool.raw_connection()
    conn.cursor().execute("CREATE TABLE t (x INTEGER)")
    conn.cursor().execute("BEGIN")
    conn.cursor().execute("INSERT INTO t VALUES (1)")
    raw = conn.driver_connection
    conn.close()
    again = pool.raw_connection()
    assert again.driver_connection is raw  # reused
    assert again.cursor().execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert again.cursor().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    again.close()
    pool.dispose()


def test_an_in_memory_store_is_one_database_for_every_connection() -> None:
    """Every loan of an in-memory pool, and its SQLAlchemy engine, see the same database."""
    pool = SQLitePool(None, create=True)
    first = pool.raw_connection()
    first.cursor().execute("CREATE TABLE t (x INTEGER)")
    first.cursor().execute("INSERT INTO t VALUES (7)")
    first.close()  # closing a loan keeps the database
    engine = backend_for("sqlite://").sa_engine(pool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 7
    engine.dispose()
    assert pool.raw_connection().cursor().execute("SELECT x FROM t").fetchone() == (7,)
    pool.dispose()
