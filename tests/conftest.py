"""Shared fixtures: every store test runs on SQLite, and on PostgreSQL when it is configured.

Set ``AUDITML_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``)
to run the store tests against PostgreSQL too. Each test gets its own schema,
named at random and dropped afterwards, so test runs never see each other.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import pytest

PG_ENV = "AUDITML_TEST_POSTGRES_URL"


def postgres_base_url() -> str | None:
    """Return the PostgreSQL URL for tests, or None when PostgreSQL tests are off."""
    return os.environ.get(PG_ENV) or None


BACKENDS = ["sqlite", "postgres"] if postgres_base_url() else ["sqlite"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once when PostgreSQL tests are asked for but the server does not answer."""
    base = postgres_base_url()
    if base is None:
        if os.environ.get("CI") == "true":
            pytest.exit(f"CI=true but {PG_ENV} is not set: PostgreSQL tests must run", returncode=1)
        return
    try:
        _pg_connect(base).close()
    except Exception as exc:
        pytest.exit(
            f"PostgreSQL at {base} is unreachable ({exc}); unset {PG_ENV} to skip it", returncode=1
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a CI run in which any test skipped: a skip there is a check that did not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and os.environ.get("CI") == "true" and exitstatus == 0:
        reporter.write_line(f"CI=true: {skipped} test(s) skipped, and CI runs every test: failing")
        session.exitstatus = 1


def _pg_connect(url: str) -> Any:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(plain, autocommit=True, connect_timeout=10)


def with_schema(base: str, schema: str) -> str:
    """Return ``base`` with a search_path option that puts ``schema`` first."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Keep the user's own auditml settings out of every test, and run it in its own folder.

    The folder matters for PostgreSQL logs, whose key files default to ./.auditml/.
    """
    for name in (
        "AUDITML_DATABASE_URL",
        "AUDITML_ACTOR",
        "AUDITML_LOG_KEY",
        "AUDITML_KEY_PASSPHRASE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """Yield a fresh, empty store URL: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
        return
    base = postgres_base_url()
    assert base is not None
    schema = f"auditml_t_{uuid.uuid4().hex[:16]}"
    with _pg_connect(base) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(base, schema)
    finally:
        with _pg_connect(base) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def raw_sql(url: str, statements: Sequence[str | tuple[str, tuple[Any, ...]]]) -> None:
    """Run SQL straight on the database, outside auditml, as an attacker with access would."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            for item in statements:
                sql, params = (item, ()) if isinstance(item, str) else item
                conn.execute(sql.replace("%s", "?"), params)
        finally:
            conn.close()
        return
    with _pg_connect(url) as conn:
        for item in statements:
            sql, params = (item, ()) if isinstance(item, str) else item
            conn.execute(sql, params)


def raw_query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run a query straight on the database and return its rows."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return list(conn.execute(sql.replace("%s", "?"), params))
        finally:
            conn.close()
    with _pg_connect(url) as conn:
        return list(conn.execute(sql, params))


def drop_triggers(url: str) -> None:
    """Remove the append-only triggers, as an attacker holding the database could."""
    if url.startswith("sqlite:///"):
        names = [
            r[0] for r in raw_query(url, "SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        raw_sql(url, [f"DROP TRIGGER {name}" for name in names])
        return
    raw_sql(
        url,
        [
            f"ALTER TABLE {table} DISABLE TRIGGER USER"
            for table in (
                "auditml_event",
                "auditml_node",
                "auditml_log",
                "auditml_checkpoint",
                "auditml_logkey",
                "auditml_record",
                "auditml_value",
            )
        ],
    )


def loosen_records(url: str) -> None:
    """Drop the keys and NOT NULL rules of the record and value tables, as an attacker could.

    Then a position can be stored twice and any column can hold NULL. Triggers go too.
    """
    if url.startswith("sqlite:///"):
        drop_triggers(url)
        statements: list[str] = []
        for table in ("auditml_record", "auditml_value"):
            statements += [
                f"ALTER TABLE {table} RENAME TO {table}_old",
                f"CREATE TABLE {table} AS SELECT * FROM {table}_old",
                f"DROP TABLE {table}_old",
            ]
        raw_sql(url, statements)
        return
    drop_triggers(url)
    raw_sql(
        url,
        [
            "ALTER TABLE auditml_record DROP CONSTRAINT auditml_record_pkey",
            "ALTER TABLE auditml_value DROP CONSTRAINT auditml_value_pkey",
            *(
                f"ALTER TABLE auditml_record ALTER COLUMN {column} DROP NOT NULL"
                for column in ("seg", "i", "request_id", "time", "model", "version", "env")
            ),
            "ALTER TABLE auditml_record ALTER COLUMN latency_ms DROP NOT NULL",
            "ALTER TABLE auditml_record ALTER COLUMN body DROP NOT NULL",
            *(
                f"ALTER TABLE auditml_value ALTER COLUMN {column} DROP NOT NULL"
                for column in ("seg", "i", "name", "salt", "value")
            ),
        ],
    )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr), asserting no traceback."""
    from auditml.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def append_evaluations(log: Any, count: int, tag: str) -> None:
    """Append ``count`` imported evaluations of credit-risk v1 in one batch, as filler."""
    from auditml import Draft

    log.append_many(
        [
            Draft.build(
                "model.evaluate",
                actor="ci@bank.example",
                subject={"model": "credit-risk", "version": "1"},
                data={"metrics": {"auc": 0.8, "i": i}, "notes": f"{tag} {i}"},
            )
            for i in range(count)
        ],
        imported=True,
    )
