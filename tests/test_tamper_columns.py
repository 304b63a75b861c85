"""Tampering with what is stored beside the event bytes: lookup columns, row types, other tables.

Decisions find events through the ``model``, ``version``, ``action`` and
``seq`` columns. Each attack here leaves every event's bytes and hash intact
and edits only what lies beside them; verify must name the event and what
lies, exit 1 from the CLI, and no decision may change while verify says OK.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditml import AppendError, AuditLog, PolicyDeniedError, VerificationError
from auditml.cli import main
from auditml.core.policy import Policy
from tests.conftest import drop_triggers, raw_query, raw_sql

ORIGIN = "bank.example/credit-models"
TRAINER = "dana@bank.example"
VALIDATOR = "victor@bank.example"


@pytest.fixture
def url(db_url: str) -> Iterator[str]:
    """Return a log where credit-risk v1 is approved and v2 rejected, ready for attack."""
    yield _attackable(db_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """Return the same log in a SQLite file, for attacks only SQLite's loose typing allows."""
    yield _attackable(f"sqlite:///{tmp_path / 'loose.db'}")


def _attackable(db_url: str) -> str:
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        for _ in range(2):
            log.record_training("credit-risk", data={"metrics": {"auc": 0.9}}, actor=TRAINER)
        log.record_training("churn", data={"metrics": {"auc": 0.7}}, actor=TRAINER)
        log.approve("credit-risk", "1", reason="VR-1", actor=VALIDATOR)
        log.reject("credit-risk", "2", reason="leaks the label", actor=VALIDATOR)
        log.verify()
    drop_triggers(db_url)
    return db_url


def _seq_of(url: str, action: str) -> int:
    return int(raw_query(url, "SELECT seq FROM auditml_event WHERE action = %s", (action,))[0][0])


def _fails(url: str) -> VerificationError:
    with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
        log.verify()
    return info.value


def _cli_verify(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(["verify", "--db", url])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


COLUMN_EDITS = {
    "model": ("model", "churn"),
    "version": ("version", "1"),
    "action": ("action", "model.evaluate"),
    "time": ("time", "2099-01-01T00:00:00.000000Z"),
}


@pytest.mark.parametrize("column", sorted(COLUMN_EDITS))
def test_a_lookup_column_that_lies_is_named(
    url: str, column: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Editing one lookup column of the reject, bytes untouched, fails verify at that event."""
    seq = _seq_of(url, "model.reject")
    name, value = COLUMN_EDITS[column]
    raw_sql(url, [(f"UPDATE auditml_event SET {name} = %s WHERE seq = %s", (value, seq))])
    error = _fails(url)
    assert (error.kind, error.seq) == ("column", seq)
    assert f"its {name} column says" in str(error)
    code, text = _cli_verify(url, capsys)
    assert code == 1
    assert f"FAILED: verification failed (column): event {seq}:" in text


def test_a_prev_column_that_lies_is_named(url: str) -> None:
    """A prev column changed to another hash, link bytes intact, is named as the prev column."""
    seq = _seq_of(url, "model.reject")
    raw_sql(url, [("UPDATE auditml_event SET prev = %s WHERE seq = %s", (b"\7" * 32, seq))])
    error = _fails(url)
    assert (error.kind, error.seq) == ("column", seq)
    assert "its prev column says" in str(error)


def test_a_relabelled_reject_cannot_clear_the_way_to_production(url: str) -> None:
    """The reject relabelled to another model: the approval is refused, or verify fails."""
    seq = _seq_of(url, "model.reject")
    raw_sql(url, [("UPDATE auditml_event SET model = 'churn' WHERE seq = %s", (seq,))])
    with AuditLog.open(url) as log:
        with pytest.raises(VerificationError) as info:
            log.verify()
        assert (info.value.kind, info.value.seq) == ("column", seq)
        # The relabelled row now shows up under churn: deciding on churn refuses to read it.
        with pytest.raises(VerificationError) as decided:
            log.approve("churn", "1", reason="VR-2", actor=VALIDATOR)
        assert (decided.value.kind, decided.value.seq) == ("column", seq)
        with pytest.raises(VerificationError):
            list(log.events(model="churn"))


def test_a_relabelled_policy_fails_verify(url: str) -> None:
    """A policy.update relabelled to look like something else is named by verify."""
    with AuditLog.open(url) as log:
        log.apply_policy(Policy(approvals={"default": 2}), reason="two approvals")
        with pytest.raises(PolicyDeniedError):
            log.deploy("credit-risk", "1", "production", actor="rhea@bank.example")
    seq = _seq_of(url, "policy.update")
    raw_sql(url, [("UPDATE auditml_event SET action = 'model.evaluate' WHERE seq = %s", (seq,))])
    error = _fails(url)
    assert (error.kind, error.seq) == ("column", seq)


def test_a_row_relabelled_into_a_lookup_stops_the_decision(url: str) -> None:
    """A row relabelled as a policy.update is refused by the decision that reads it."""
    seq = _seq_of(url, "model.reject")
    raw_sql(url, [("UPDATE auditml_event SET action = 'policy.update' WHERE seq = %s", (seq,))])
    before = _stored(url)
    with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
        log.approve("credit-risk", "1", reason="again", actor="other@bank.example")
    assert (info.value.kind, info.value.seq) == ("column", seq)
    assert _stored(url) == before


def _stored(url: str) -> int:
    return int(raw_query(url, "SELECT count(*) FROM auditml_event")[0][0])


def test_the_readme_tamper_example_fails_cleanly(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite's replace() stores TEXT in the body: verify names a hash failure, never crashes."""
    raw_sql(
        sqlite_url, ["UPDATE auditml_event SET body = replace(body, '0.9', '0.97') WHERE seq = 1"]
    )
    code, text = _cli_verify(sqlite_url, capsys)
    assert code == 1
    assert "FAILED: verification failed (hash): event 1:" in text


def test_a_body_stored_as_text_with_the_same_bytes_is_named(sqlite_url: str) -> None:
    """The same bytes stored as TEXT instead of a BLOB are named as a column failure."""
    raw_sql(sqlite_url, ["UPDATE auditml_event SET body = CAST(body AS TEXT) WHERE seq = 2"])
    error = _fails(sqlite_url)
    assert (error.kind, error.seq) == ("column", 2)
    assert "holds text where auditml wrote bytes" in str(error)


@pytest.mark.parametrize(
    ("statement", "kind", "seq"),
    [
        # On SQLite the NULL becomes text, whose bytes then fail the hash.
        ("UPDATE auditml_event SET hash = NULL WHERE seq = 3", "column|hash", 3),
        ("UPDATE auditml_event SET body = NULL WHERE seq = 3", "column|hash", 3),
        ("UPDATE auditml_event SET hash = %s WHERE seq = 3", "hash", 3),
        ("UPDATE auditml_log SET head_hash = NULL", "head", None),
        ("UPDATE auditml_log SET root = NULL", "head", None),
        ("UPDATE auditml_checkpoint SET root = NULL", "anchor", None),
        ("UPDATE auditml_checkpoint SET note = 'not a note'", "format", None),
        ("UPDATE auditml_logkey SET vkey = 'garbage'", "signature", 0),
    ],
)
def test_whatever_is_stored_verify_fails_cleanly(
    url: str, statement: str, kind: str, seq: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """NULLs, short hashes and garbage in any auditml table end in FAILED and exit 1.

    SQLite keeps its NOT NULL constraints whatever triggers are dropped, so there
    the NULL becomes text of the wrong type; PostgreSQL's constraint is dropped first.
    """
    _store_null(url, statement)
    code, text = _cli_verify(url, capsys)
    assert code == 1, text
    assert any(f"verification failed ({k})" in text for k in kind.split("|")), text
    if seq is not None:
        assert f"event {seq}:" in text


def test_a_malformed_tree_node_fails_cleanly(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stored Merkle node that holds NULL or text is a named head failure, not a crash."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        for i in range(300):
            _evaluate(log, i)
    drop_triggers(db_url)
    _store_null(db_url, "UPDATE auditml_node SET hash = NULL")
    code, text = _cli_verify(db_url, capsys)
    assert code == 1, text
    assert "verification failed (head)" in text


def _store_null(url: str, statement: str) -> None:
    """Run ``statement``; a NULL is text on SQLite, and needs NOT NULL dropped on PostgreSQL."""
    if "NULL" in statement:
        if url.startswith("sqlite"):
            statement = statement.replace("NULL", "'not bytes'")
        else:
            table = statement.split()[1]
            column = statement.split("SET ")[1].split(" =")[0]
            raw_sql(url, [f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"])
    params = (b"\1" * 5,) if "%s" in statement else ()
    raw_sql(url, [(statement, params)])


def test_text_in_a_head_column_fails_cleanly(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A head hash stored as text on SQLite is a named head failure, not a crash."""
    raw_sql(sqlite_url, ["UPDATE auditml_log SET head_hash = 'abc', size = 'many'"])
    code, text = _cli_verify(sqlite_url, capsys)
    assert code == 1
    assert "verification failed (head)" in text


def test_invalid_utf8_in_a_text_column_fails_cleanly(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes that are not UTF-8 in a text column are named, not a decode crash."""
    raw_sql(
        sqlite_url,
        [("UPDATE auditml_event SET model = CAST(%s AS TEXT) WHERE seq = 2", (b"\xff",))],
    )
    code, text = _cli_verify(sqlite_url, capsys)
    assert code == 1
    assert "verification failed (column): event 2:" in text


def test_deleted_checkpoints_are_named(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting every kept checkpoint fails verify: the log knows it signed one at size 1."""
    raw_sql(url, ["DELETE FROM auditml_checkpoint"])
    error = _fails(url)
    assert error.kind == "anchor"
    assert "the checkpoint the log signed at size 1 is missing" in str(error)
    code, _ = _cli_verify(url, capsys)
    assert code == 1


def test_a_deleted_automatic_checkpoint_is_named(db_url: str) -> None:
    """A log that promised a checkpoint every 5 events names the one deleted."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example", checkpoint_every=5)
    with log:
        for i in range(12):
            _evaluate(log, i)
        assert log.verify().checkpoint == 10
    drop_triggers(db_url)
    raw_sql(db_url, ["DELETE FROM auditml_checkpoint WHERE size = 5"])
    error = _fails(db_url)
    assert (error.kind, error.seq) == ("anchor", 4)
    assert "at size 5 is missing" in str(error)


def _evaluate(log: AuditLog, i: int) -> None:
    log.append(
        "model.evaluate",
        subject={"model": "m", "version": "1"},
        data={"metrics": {"i": i}},
        imported=True,
    )


def test_a_checkpoint_row_that_disagrees_with_its_note_is_named(url: str) -> None:
    """A checkpoint's root column changed, note untouched, is caught."""
    raw_sql(url, [("UPDATE auditml_checkpoint SET root = %s", (b"\5" * 32,))])
    error = _fails(url)
    assert error.kind == "anchor"
    assert "its signed note commits to" in str(error)


def test_a_replaced_log_key_is_named(url: str, tmp_path: Path) -> None:
    """A key row replaced with another key (its own checkpoints re-signed) fails verify."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from auditml.core.signing import FileSigner, VerifierKey, sign_checkpoint

    forger = FileSigner(Ed25519PrivateKey.generate())
    rows = raw_query(url, "SELECT size, root FROM auditml_checkpoint")
    statements: list[str | tuple[str, tuple[object, ...]]] = [
        ("UPDATE auditml_logkey SET vkey = %s", (str(VerifierKey.of(ORIGIN, forger)),))
    ]
    for size, root in rows:
        note = sign_checkpoint(ORIGIN, int(size), bytes(root), forger).note
        statements.append(("UPDATE auditml_checkpoint SET note = %s WHERE size = %s", (note, size)))
    raw_sql(url, statements)
    error = _fails(url)
    assert (error.kind, error.seq) == ("signature", 0)
    assert "the key row was replaced" in str(error)


def test_a_changed_prev_column_neither_blocks_nor_forks_an_append(url: str) -> None:
    """A prev column set to the head's hash: the next append lands after the head, verify names it.

    The prev column is a copy for lookups, not the link: the append builds on the
    head row, so the lie cannot fork the chain, and verify still names the column.
    """
    size, head = raw_query(url, "SELECT size, head_hash FROM auditml_log")[0]
    raw_sql(url, [("UPDATE auditml_event SET prev = %s WHERE seq = 2", (bytes(head),))])
    with AuditLog.open(url) as log:
        receipt = log.append(
            "model.evaluate",
            subject={"model": "m", "version": "1"},
            data={"metrics": {"i": 1}},
            imported=True,
        )
    assert receipt.seq == size
    stored = raw_query(url, "SELECT prev FROM auditml_event WHERE seq = %s", (size,))[0][0]
    assert bytes(stored) == bytes(head)
    error = _fails(url)
    assert (error.kind, error.seq) == ("column", 2)


def test_a_changed_prev_column_in_a_store_made_before_issue_20_blocks_no_append_silently(
    url: str,
) -> None:
    """With the old unique (log, prev) index, that lie makes the next append fail clearly."""
    raw_sql(url, ["CREATE UNIQUE INDEX auditml_event_log_prev ON auditml_event (log_id, prev)"])
    head = raw_query(url, "SELECT head_hash FROM auditml_log")[0][0]
    raw_sql(url, [("UPDATE auditml_event SET prev = %s WHERE seq = 2", (bytes(head),))])
    with AuditLog.open(url) as log:
        with pytest.raises(AppendError) as info:
            _evaluate(log, 1)
        assert "already claims" in str(info.value)
        assert "auditml verify" in str(info.value)
    error = _fails(url)
    assert (error.kind, error.seq) == ("column", 2)
