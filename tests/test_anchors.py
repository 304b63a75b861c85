"""Anchors against an attacker who holds the database and the log's key file, on both backends.

The attacker drops the append-only triggers and edits rows with raw SQL. After
each attack the log verifies as a chain, with its kept checkpoints, because the
attacker re-signs them with the key file they can read. Only a checkpoint kept
outside the database (an anchor) shows what happened, and says which attack it
was: a cut tail, a restored backup, or a rewrite.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, VerificationError
from auditml._internal.keyfiles import generate_key_file, load_signer
from auditml.core.signing import sign_checkpoint
from tests.conftest import append_evaluations, drop_triggers, raw_query, raw_sql
from tests.test_cli import run
from tests.test_tamper import _rewrite

ORIGIN = "bank.example/anchored"
TABLES = ("auditml_event", "auditml_node", "auditml_checkpoint")
HEAD = "size, head_hash, head_time, root, frontier"
TRUNCATED = "truncated or restored from an older backup"
REWRITTEN = "were rewritten after the anchor was taken"


def _grow(url: str, count: int, tag: str) -> None:
    with AuditLog.open(url) as log:
        append_evaluations(log, count, tag)


@pytest.fixture
def url(db_url: str) -> str:
    """Return a log of 300 events that keeps a checkpoint every 100."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example", checkpoint_every=100)
    log.close()
    _grow(db_url, 299, "evaluation")
    return db_url


def _anchor(url: str, size: int | None = None) -> str:
    with AuditLog.open(url) as log:
        return log.checkpoint(size).note


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Read every row of the log's tables, as a backup would."""
    rows = {table: raw_query(url, f"SELECT * FROM {table}") for table in TABLES}
    rows["auditml_log"] = raw_query(url, f"SELECT {HEAD} FROM auditml_log")
    return rows


def _restore(url: str, backup: dict[str, list[tuple[Any, ...]]]) -> None:
    """Put the backup's rows back in place of the current ones."""
    drop_triggers(url)
    statements: list[Any] = [f"DELETE FROM {table}" for table in TABLES]
    for table in TABLES:
        for row in backup[table]:
            marks = ", ".join(["%s"] * len(row))
            statements.append((f"INSERT INTO {table} VALUES ({marks})", tuple(row)))
    sets = ", ".join(f"{column} = %s" for column in HEAD.split(", "))
    statements.append((f"UPDATE auditml_log SET {sets}", tuple(backup["auditml_log"][0])))
    raw_sql(url, statements)


def _resign_checkpoints(url: str) -> None:
    """Replace every kept checkpoint with one signed by the log key over the current roots."""
    with AuditLog.open(url) as log:
        sizes = [cp.size for cp in log.checkpoints()]
        roots = {size: bytes.fromhex(log.root(size)) for size in sizes}
        signer = load_signer(log.key_path())
    statements: list[Any] = ["DELETE FROM auditml_checkpoint"]
    for size in sizes:
        cp = sign_checkpoint(ORIGIN, size, roots[size], signer)
        statements.append(
            (
                "INSERT INTO auditml_checkpoint (log_id, size, root, note, created_at) "
                "VALUES (1, %s, %s, %s, %s)",
                (size, roots[size], cp.note, "2026-01-01T00:00:00.000000Z"),
            )
        )
    raw_sql(url, statements)


def _refused(url: str, anchor: str) -> VerificationError:
    """Verify without the anchor (must pass), then with it (must fail); return the failure."""
    with AuditLog.open(url) as log:
        log.verify()
        with pytest.raises(VerificationError) as info:
            log.verify(checkpoints=[anchor])
    assert info.value.kind == "anchor"
    return info.value


def _refused_by_cli(
    url: str, anchor: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run ``auditml verify --checkpoint`` on the anchor; require exit 1 and return stderr."""
    path = tmp_path / "anchor.cp"
    path.write_text(anchor)
    code, _, err = run(["verify", "--checkpoint", str(path), "--db", url], capsys)
    assert code == 1, err
    assert "Traceback" not in err
    return err


def test_an_untouched_log_extends_every_earlier_anchor(url: str) -> None:
    """Anchors taken at several sizes all verify while the log only grows."""
    anchors = [_anchor(url, size) for size in (1, 100, 257, 300)]
    _grow(url, 50, "later")
    with AuditLog.open(url) as log:
        report = log.verify(checkpoints=anchors)
    assert report.size == 350 and len(report.anchors) == 4


def test_a_cut_tail_is_named_as_truncation(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cutting events off the end, with the head and kept checkpoints moved back, is named."""
    anchor = _anchor(url)
    _truncate(url, 200)
    error = _refused(url, anchor)
    assert TRUNCATED in str(error) and "holds 200 events" in str(error)
    assert TRUNCATED in _refused_by_cli(url, anchor, tmp_path, capsys)


def _truncate(url: str, size: int) -> None:
    """Cut the log to its first ``size`` events and recompute the head and tree to match."""
    drop_triggers(url)
    raw_sql(
        url,
        [
            ("DELETE FROM auditml_event WHERE seq >= %s", (size,)),
            ("DELETE FROM auditml_checkpoint WHERE size > %s", (size,)),
            ("UPDATE auditml_log SET size = %s", (size,)),
        ],
    )
    _rewrite(url, 0, lambda event: None)


def test_a_restored_backup_is_named(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Putting back a backup taken before the anchor leaves a log that no longer reaches it."""
    backup = _rows(url)
    _grow(url, 60, "after the backup")
    anchor = _anchor(url)
    _restore(url, backup)
    error = _refused(url, anchor)
    assert TRUNCATED in str(error) and "commits to 360" in str(error)
    assert TRUNCATED in _refused_by_cli(url, anchor, tmp_path, capsys)


def test_a_restored_backup_that_grew_again_is_named(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup restored and then appended to past the anchor's size forks from the anchor."""
    backup = _rows(url)
    _grow(url, 60, "after the backup")
    anchor = _anchor(url)
    _restore(url, backup)
    _grow(url, 100, "a different history")
    error = _refused(url, anchor)
    assert "restored from an older backup and has grown differently" in str(error)
    assert "size 360" in _refused_by_cli(url, anchor, tmp_path, capsys)


def test_a_backup_file_copied_back_is_named(tmp_path: Path) -> None:
    """On SQLite, copying an older database file back over the log is caught by the anchor."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditLog.init(url, origin=ORIGIN, actor="admin@bank.example")[0].close()
    _grow(url, 99, "evaluation")
    saved = tmp_path / "backup.db"
    shutil.copy(tmp_path / "audit.db", saved)
    _grow(url, 20, "after the backup")
    anchor = _anchor(url)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'audit.db'}{suffix}").unlink(missing_ok=True)
    shutil.copy(saved, tmp_path / "audit.db")
    error = _refused(url, anchor)
    assert TRUNCATED in str(error) and "holds 100 events" in str(error)


@pytest.mark.parametrize("seq", [1, 150, 299])
def test_a_consistent_rewrite_with_resigned_checkpoints_is_named(
    url: str, seq: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Editing one event, re-hashing everything after it and re-signing the kept checkpoints."""
    anchor = _anchor(url)
    drop_triggers(url)

    def edit(event: dict[str, Any]) -> None:
        event["data"]["notes"] = "nothing to see here"

    _rewrite(url, seq, edit)
    _resign_checkpoints(url)
    error = _refused(url, anchor)
    assert REWRITTEN in str(error) and "size 300" in str(error)
    assert REWRITTEN in _refused_by_cli(url, anchor, tmp_path, capsys)


def test_a_rewrite_before_an_earlier_anchor_is_caught_by_it(url: str) -> None:
    """An edit below an early anchor's size fails that anchor, not just the latest one."""
    early = _anchor(url, 50)
    drop_triggers(url)
    _rewrite(url, 10, lambda event: event["data"].update(notes="edited"))
    _resign_checkpoints(url)
    error = _refused(url, early)
    assert "size 50" in str(error)


def test_a_rewrite_after_the_anchor_is_not_the_anchors_business(url: str) -> None:
    """Events after the anchored size may differ; the anchor speaks only for its prefix."""
    anchor = _anchor(url, 100)
    drop_triggers(url)
    _rewrite(url, 250, lambda event: event["data"].update(notes="edited"))
    _resign_checkpoints(url)
    with AuditLog.open(url) as log:
        log.verify(checkpoints=[anchor])


def test_an_anchor_signed_by_another_key_is_refused(url: str, tmp_path: Path) -> None:
    """A checkpoint over the right origin, size and root, but signed by another key, is refused."""
    with AuditLog.open(url) as log:
        root = bytes.fromhex(log.root())
    stranger = generate_key_file(tmp_path / "stranger.key", None)
    forged = sign_checkpoint(ORIGIN, 300, root, stranger).note
    with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
        log.verify(checkpoints=[forged])
    assert info.value.kind == "signature"


def test_an_anchor_with_a_changed_signature_is_refused(url: str) -> None:
    """Flipping one character of the signature line makes the anchor unusable."""
    note = _anchor(url)
    text, sig = note.split("\n\n", 1)
    head, _, b64 = sig.rstrip("\n").rpartition(" ")
    flipped = b64[:10] + ("A" if b64[10] != "A" else "B") + b64[11:]
    with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
        log.verify(checkpoints=[f"{text}\n\n{head} {flipped}\n"])
    assert info.value.kind == "signature"


def test_an_anchor_for_another_origin_is_refused(url: str, tmp_path: Path) -> None:
    """A checkpoint signed by this log's key but naming another origin is refused."""
    with AuditLog.open(url) as log:
        root = bytes.fromhex(log.root())
        signer = load_signer(log.key_path())
    other = sign_checkpoint("bank.example/other", 300, root, signer).note
    with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
        log.verify(checkpoints=[other])
    assert "bank.example/other" in str(info.value)
