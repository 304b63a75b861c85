"""Random tampering with every stored row and column: verify fails, or nothing changed at all.

Hypothesis picks a table, a row and a column of a real log (with approvals, a
rejection, a policy, a deploy and automatic checkpoints), and writes another
value there, deletes the row, or adds one, with the append-only triggers gone.
For every mutation that changed what is stored, verify must fail (exit 1 from
the CLI, never a crash); when it passes, what policy decides and what state
shows must be exactly what they were. The seed is fixed, so CI runs the same
examples every time.

Not mutated: ``auditml_meta`` (the store's settings: a schema version no auditml
writes fails verification, a later one asks for an upgrade, exit 2, see
tests/test_redteam.py; a new log reads nothing else there) and the ``created_at``
columns, write times that nothing reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from auditml import AuditLog, Draft, PolicyDeniedError, VerificationError
from auditml.core.policy import Policy
from auditml.store import Store
from tests.conftest import drop_triggers, raw_query, raw_sql

ORIGIN = "bank.example/credit-models"
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # table: (every column but created_at, its primary key); referenced tables first
    "auditml_log": (
        ("id", "origin", "size", "head_hash", "head_time", "root", "frontier"),
        ("id",),
    ),
    "auditml_event": (
        ("log_id", "seq", "prev", "hash", "time", "action", "model", "version", "body"),
        ("log_id", "seq"),
    ),
    "auditml_node": (("log_id", "level", "idx", "hash"), ("log_id", "level", "idx")),
    "auditml_checkpoint": (("log_id", "size", "root", "note"), ("log_id", "size")),
    "auditml_logkey": (("log_id", "vkey"), ("log_id",)),
}
ALL_COLUMNS = {
    "auditml_log": (*TABLES["auditml_log"][0], "created_at"),
    "auditml_event": TABLES["auditml_event"][0],
    "auditml_node": TABLES["auditml_node"][0],
    "auditml_checkpoint": (*TABLES["auditml_checkpoint"][0], "created_at"),
    "auditml_logkey": (*TABLES["auditml_logkey"][0], "created_at"),
}


def _build(url: str) -> None:
    log, _ = AuditLog.init(url, origin=ORIGIN, actor="admin@bank.example", checkpoint_every=64)
    with log:
        # Enough events that stored Merkle nodes (2**8 leaves) exist to be attacked too.
        log.append_many(
            [
                Draft.build(
                    "model.evaluate",
                    actor="ci@b.ex",
                    subject={"model": "churn", "version": str(i % 3)},
                    data={"metrics": {"auc": 0.8, "i": i}},
                )
                for i in range(260)
            ],
            imported=True,
        )
        for _ in range(3):
            log.record_training("credit-risk", data={"metrics": {"auc": 0.9}}, actor="dana@b.ex")
        log.approve("credit-risk", "1", reason="VR-1", actor="victor@b.ex")
        log.approve("credit-risk", "2", reason="VR-2", actor="victor@b.ex")
        log.reject("credit-risk", "3", reason="leaks the label", actor="victor@b.ex")
        log.deploy("credit-risk", "1", "production", actor="rhea@b.ex")
        log.apply_policy(Policy(approvals={"default": 2}), reason="two approvals")
        log.append(
            "model.evaluate",
            subject={"model": "credit-risk", "version": "2"},
            data={"metrics": {"auc": 0.91}},
            imported=True,
        )
        log.verify()


def _decisions(url: str) -> tuple[Any, ...]:
    """Return what state shows and what policy decides for each version, without writing."""
    with AuditLog.open(url) as log:
        state = {name: s.as_dict() for name, s in log.status().items()}
        outcomes = []
        for version in ("1", "2", "3"):
            try:
                log.deploy("credit-risk", version, "staging", actor="rhea@b.ex")
                outcomes.append("deployed")
            except PolicyDeniedError as exc:
                outcomes.append(exc.rule)
    return repr(state), tuple(outcomes)


_PRISTINE: dict[bool, tuple[dict[str, list[tuple[Any, ...]]], tuple[Any, ...]]] = {}


class _Tampering:
    """A log to attack, with its pristine rows kept so each example starts from them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgresql")
        built = _PRISTINE.get(self.postgres)
        if built is None:
            _build(url)
        else:  # the same log, copied in, saves building it again for every target
            Store.connect(url, create=True).close()
        drop_triggers(url)
        if self.postgres:
            raw_sql(
                url,
                [
                    f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"
                    for table, (columns, key) in TABLES.items()
                    for column in ALL_COLUMNS[table]
                    if column not in key
                ],
            )
        if built is None:
            rows = {table: self._read(table) for table in TABLES}
            built = _PRISTINE[self.postgres] = (rows, _decisions(url))
        self.rows, self.baseline = built
        self.restore()  # the baseline's deploys are not part of the log under attack

    def _read(self, table: str) -> list[tuple[Any, ...]]:
        columns = ", ".join(ALL_COLUMNS[table])
        if not self.postgres:
            typed = ", ".join(f"typeof({c})" for c in ALL_COLUMNS[table])
            columns = f"{columns}, {typed}"
        return [tuple(row) for row in raw_query(self.url, f"SELECT {columns} FROM {table}")]

    def restore(self) -> None:
        statements: list[Any] = ["BEGIN"]
        statements += [f"DELETE FROM {table}" for table in reversed(list(TABLES))]
        for table in TABLES:
            names = ALL_COLUMNS[table]
            insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({_marks(len(names))})"
            statements += [(insert, row[: len(names)]) for row in self.rows[table]]
        raw_sql(self.url, [*statements, "COMMIT"])


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


@pytest.fixture
def tampering(db_url: str) -> Iterator[_Tampering]:
    """Return a log of every kind of row, ready to be attacked and restored."""
    yield _Tampering(db_url)


def _value(draw: Any, current: Any, others: list[Any], postgres: bool) -> Any:
    """Draw a replacement for a stored value: near it, from another row, or of another type."""
    choices: list[Any] = [st.sampled_from(others)] if others else []
    if isinstance(current, bytes | memoryview):
        current = bytes(current)
        flips = st.integers(0, max(len(current) - 1, 0)).map(
            lambda i: current[:i] + bytes([(current[i] ^ 1) if current else 1]) + current[i + 1 :]
        )
        choices += [flips, st.binary(max_size=40)]
    elif isinstance(current, str):
        choices += [st.text(max_size=20), st.just(current + "x"), st.just(current[:-1])]
    elif isinstance(current, int):
        choices += [st.integers(-2, 10**6), st.just(current + 1), st.just(current - 1)]
    if not postgres:  # SQLite stores any type in any column
        choices += [st.binary(max_size=8), st.text(max_size=8), st.integers(-5, 5), st.floats()]
    choices.append(st.none())
    return draw(st.one_of(choices))


TARGETS = [(table, column) for table, (columns, _) in TABLES.items() for column in columns]
TARGETS += [(table, None) for table in TABLES]  # None: delete a row


@st.composite
def _mutations(
    draw: Any, rows: dict[str, list[tuple[Any, ...]]], postgres: bool, target: tuple[str, Any]
) -> Any:
    table, column = target
    columns, key = TABLES[table]
    row = draw(st.sampled_from(rows[table]))
    if column is None:
        return table, key, row, None, None
    position = columns.index(column)
    others = [r[position] for r in rows[table] if r[position] != row[position]]
    if column in key and postgres:
        others = [o for o in others if o is not None]
    value = _value(draw, row[position], others, postgres)
    if column in key and value is None:
        value = -1
    return table, key, row, column, value


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t[0]}.{t[1] or 'row-deleted'}")
@seed(20261203)
@settings(
    max_examples=5,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_stored_change_fails_verify_or_changes_nothing(
    tampering: _Tampering, target: tuple[str, Any], data: st.DataObject
) -> None:
    """Every changed column or row of every table fails verify; a no-op decides as before."""
    mutation = _mutations(tampering.rows, tampering.postgres, target)
    table, key, row, column, value = data.draw(mutation)
    names = ALL_COLUMNS[table]
    where = " AND ".join(f"{k} = %s" for k in key)
    params = tuple(row[names.index(k)] for k in key)
    try:
        if column is None:
            raw_sql(tampering.url, [(f"DELETE FROM {table} WHERE {where}", params)])
        else:
            raw_sql(
                tampering.url,
                [(f"UPDATE {table} SET {column} = %s WHERE {where}", (value, *params))],
            )
    except Exception:  # the database itself refused the value (a key clash, a type)
        tampering.restore()
        return
    changed = {t: tampering._read(t) for t in TABLES} != tampering.rows
    try:
        with AuditLog.open(tampering.url) as log:
            log.verify()
        verified = True
    except VerificationError:
        verified = False
    try:
        if changed:
            assert not verified, f"{table}.{column} = {value!r} went unnoticed"
        else:
            assert verified
            assert _decisions(tampering.url) == tampering.baseline
    finally:
        tampering.restore()
