"""Tampering by someone who holds the database, on both backends.

Two kinds of attack need two kinds of detection. An edit made without
re-hashing breaks the chain, and verify names the first event that fails. A
consistent rewrite, where every hash after the edit is recomputed and the head
moved to match, verifies as a chain: only an anchored checkpoint catches it.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from auditml import AuditLog, Draft, VerificationError
from auditml.core.canonical import canonical_bytes
from auditml.core.chain import NODE_LEVEL
from auditml.core.merkle import CompactRange
from tests.conftest import drop_triggers, raw_query, raw_sql

ORIGIN = "bank.example/credit-models"
SIZE = 300  # more than 2**NODE_LEVEL, so stored tree nodes are involved


@pytest.fixture
def url(db_url: str) -> str:
    """Return a log of SIZE events with the append-only triggers dropped, ready for attack."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        log.append_many(
            [
                Draft.build(
                    "model.evaluate",
                    actor="ci@bank.example",
                    subject={"model": "credit-risk", "version": str(i % 4)},
                    data={"metrics": {"auc": 0.8, "i": i}, "notes": f"evaluation {i}"},
                )
                for i in range(SIZE - 1)
            ],
            imported=True,
        )
        assert log.verify().size == SIZE
    drop_triggers(db_url)
    return db_url


def _fails(url: str) -> VerificationError:
    with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
        log.verify()
    return info.value


def _body(url: str, seq: int) -> bytes:
    return bytes(raw_query(url, "SELECT body FROM auditml_event WHERE seq = %s", (seq,))[0][0])


def _leaf(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def test_a_changed_byte_is_named_as_a_changed_body(url: str) -> None:
    """Editing one byte of an event's stored bytes is caught at that event, as a hash failure."""
    body = _body(url, 5).replace(b"evaluation 4", b"evaluation X")
    raw_sql(url, [("UPDATE auditml_event SET body = %s WHERE seq = 5", (body,))])
    error = _fails(url)
    assert (error.kind, error.seq) == ("hash", 5)
    assert "changed after it was appended" in str(error)


def test_a_changed_event_with_its_hash_column_updated_breaks_the_next_link(url: str) -> None:
    """Re-hashing one edited event without rewriting the rest breaks the link of the next event."""
    body = _body(url, 5).replace(b"evaluation 4", b"evaluation X")
    raw_sql(
        url, [("UPDATE auditml_event SET body = %s, hash = %s WHERE seq = 5", (body, _leaf(body)))]
    )
    error = _fails(url)
    assert (error.kind, error.seq) == ("link", 6)
    assert "broken link" in str(error)


def test_a_changed_hash_column_alone_is_caught(url: str) -> None:
    """A stored hash that no longer matches its bytes is named at its event."""
    raw_sql(url, [("UPDATE auditml_event SET hash = %s WHERE seq = 9", (b"\0" * 32,))])
    error = _fails(url)
    assert (error.kind, error.seq) == ("hash", 9)


def test_a_deleted_event_is_named_as_a_gap(url: str) -> None:
    """Deleting an event leaves a gap in seq, reported at the missing position."""
    raw_sql(url, ["DELETE FROM auditml_event WHERE seq = 7"])
    error = _fails(url)
    assert (error.kind, error.seq) == ("seq", 7)
    assert "found seq 8 where 7 was expected" in str(error)


def test_an_inserted_event_is_caught(url: str) -> None:
    """An event slipped into the middle, with the later events shifted along, is caught."""
    raw_sql(
        url,
        [
            "UPDATE auditml_event SET seq = seq + 1000000 WHERE seq >= 5",
            "UPDATE auditml_event SET seq = seq - 1000000 + 1 WHERE seq >= 1000000",
        ],
    )
    forged = json.loads(_body(url, 6))
    forged["data"]["notes"] = "forged"
    forged["prev"] = _leaf(_body(url, 4)).hex()
    body = canonical_bytes(forged)
    # The displaced event's link is moved too, so only the seq betrays the insertion.
    raw_sql(
        url,
        [
            ("UPDATE auditml_event SET prev = %s WHERE seq = 6", (_leaf(body),)),
            (
                "INSERT INTO auditml_event "
                "(log_id, seq, prev, hash, time, action, model, version, body) "
                "VALUES (1, 5, %s, %s, %s, 'model.evaluate', %s, %s, %s)",
                (
                    bytes.fromhex(forged["prev"]),
                    _leaf(body),
                    forged["time"],
                    forged["subject"].get("model"),
                    forged["subject"].get("version"),
                    body,
                ),
            ),
        ],
    )
    error = _fails(url)
    assert (error.kind, error.seq) == ("seq", 6)
    assert "found seq 5 again where 6 was expected" in str(error)


def test_swapped_events_are_caught(url: str) -> None:
    """Two events exchanging places are caught at the first of them."""
    raw_sql(
        url,
        [
            "UPDATE auditml_event SET seq = 1000010 WHERE seq = 10",
            "UPDATE auditml_event SET seq = 10 WHERE seq = 11",
            "UPDATE auditml_event SET seq = 11 WHERE seq = 1000010",
        ],
    )
    error = _fails(url)
    assert (error.kind, error.seq) == ("seq", 10)
    assert "found seq 11 where 10 was expected" in str(error)


def test_a_truncated_tail_is_caught_by_the_head(url: str) -> None:
    """Deleting the last events leaves a head that records more events than are stored."""
    raw_sql(url, [f"DELETE FROM auditml_event WHERE seq >= {SIZE - 3}"])
    error = _fails(url)
    assert (error.kind, error.seq) == ("head", SIZE - 3)
    assert "tail was truncated" in str(error)


def test_a_head_that_disagrees_with_the_events_is_caught(url: str) -> None:
    """A head root that does not match the events is reported as a head failure."""
    raw_sql(url, [("UPDATE auditml_log SET root = %s", (b"\1" * 32,))])
    error = _fails(url)
    assert error.kind == "head"
    assert "Merkle root" in str(error)


def test_a_changed_tree_node_is_caught(url: str) -> None:
    """A stored Merkle node that proofs would use, if changed, fails verification."""
    raw_sql(url, [("UPDATE auditml_node SET hash = %s", (b"\2" * 32,))])
    error = _fails(url)
    assert error.kind == "head"
    assert f"level {NODE_LEVEL}, index 0 is wrong" in str(error)


def _rewrite(url: str, seq: int, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit one event, then recompute every later hash, link, tree node and the head."""
    rows = raw_query(url, "SELECT seq, body FROM auditml_event ORDER BY seq")
    events = [json.loads(bytes(body)) for _, body in rows]
    edit(events[seq])
    frontier = CompactRange()
    prev = bytes(32)
    new_rows, nodes = [], []
    for event in events:
        event["prev"] = prev.hex()
        body = canonical_bytes(event)
        digest = _leaf(body)
        subject = event.get("subject") or {}
        new_rows.append(
            (
                event["seq"],
                prev,
                digest,
                event["time"],
                event["action"],
                subject.get("model"),
                subject.get("version"),
                body,
            )
        )
        nodes += frontier.append(digest)
        prev = digest
    statements: list[Any] = ["DELETE FROM auditml_event", "DELETE FROM auditml_node"]
    statements += [
        (
            "INSERT INTO auditml_event "
            "(log_id, seq, prev, hash, time, action, model, version, body) "
            "VALUES (1, %s, %s, %s, %s, %s, %s, %s, %s)",
            row,
        )
        for row in new_rows
    ]
    statements += [
        ("INSERT INTO auditml_node (log_id, level, idx, hash) VALUES (1, %s, %s, %s)", node)
        for node in nodes
        if node[0] >= NODE_LEVEL
    ]
    statements.append(
        (
            "UPDATE auditml_log SET head_hash = %s, head_time = %s, root = %s, frontier = %s",
            (prev, events[-1]["time"], frontier.root(), frontier.to_bytes()),
        )
    )
    raw_sql(url, statements)


def test_a_consistent_rewrite_passes_the_chain_but_changes_the_root(url: str) -> None:
    """A full re-hash after an edit verifies as a chain; only a remembered root (anchor) differs."""
    with AuditLog.open(url) as log:
        anchored_root = log.head().root

    def edit(event: dict[str, Any]) -> None:
        event["data"]["metrics"]["auc"] = 0.99

    _rewrite(url, 5, edit)
    with AuditLog.open(url) as log:
        report = log.verify()
        assert report.size == SIZE
        assert report.root != anchored_root


def test_a_rewrite_with_a_wrong_origin_is_named(url: str) -> None:
    """Even re-hashed consistently, an event naming another log fails as a wrong origin."""

    def edit(event: dict[str, Any]) -> None:
        event["log"] = "evil.example/log"

    _rewrite(url, 12, edit)
    error = _fails(url)
    assert (error.kind, error.seq) == ("origin", 12)
    assert "evil.example/log" in str(error)


def test_a_rewrite_with_time_going_backwards_is_named(url: str) -> None:
    """Even re-hashed consistently, an event dated before the one before it fails on time."""

    def edit(event: dict[str, Any]) -> None:
        event["time"] = "2000-01-01T00:00:00.000000Z"

    _rewrite(url, 20, edit)
    error = _fails(url)
    assert (error.kind, error.seq) == ("time", 20)
    assert "time goes backwards" in str(error)


def test_a_rewrite_with_a_malformed_event_is_named(url: str) -> None:
    """An event whose data no longer fits its action fails deep verification as a format error."""

    def edit(event: dict[str, Any]) -> None:
        event["data"]["unexpected"] = True

    _rewrite(url, 30, edit)
    with AuditLog.open(url) as log:
        assert log.verify().size == SIZE
        with pytest.raises(VerificationError) as info:
            log.verify(deep=True)
    assert (info.value.kind, info.value.seq) == ("format", 30)


@pytest.mark.parametrize("parallel", [False, True])
def test_verify_with_a_tree_helper_process_catches_the_same(url: str, parallel: bool) -> None:
    """With or without the helper process that rebuilds the tree, a bad node is named."""
    with AuditLog.open(url) as log:
        assert log.verify(parallel=parallel).size == SIZE
    raw_sql(url, [("UPDATE auditml_node SET hash = %s", (b"\2" * 32,))])
    with AuditLog.open(url) as log, pytest.raises(VerificationError, match="index 0 is wrong"):
        log.verify(parallel=parallel)


def _changed_body(seq: int) -> Callable[[str], None]:
    def attack(url: str) -> None:
        body = _body(url, seq).replace(b'"notes":"evaluation', b'"notes":"EVALUATION')
        raw_sql(url, [("UPDATE auditml_event SET body = %s WHERE seq = %s", (body, seq))])

    return attack


def _rehashed_body(seq: int) -> Callable[[str], None]:
    def attack(url: str) -> None:
        body = _body(url, seq).replace(b'"notes":"evaluation', b'"notes":"EVALUATION')
        raw_sql(
            url,
            [
                (
                    "UPDATE auditml_event SET body = %s, hash = %s WHERE seq = %s",
                    (body, _leaf(body), seq),
                )
            ],
        )

    return attack


def _deleted(*seqs: int) -> Callable[[str], None]:
    def attack(url: str) -> None:
        raw_sql(url, [f"DELETE FROM auditml_event WHERE seq IN ({', '.join(map(str, seqs))})"])

    return attack


def _rewritten_time(seq: int) -> Callable[[str], None]:
    def attack(url: str) -> None:
        def edit(event: dict[str, Any]) -> None:
            event["time"] = "2000-01-01T00:00:00.000000Z"

        _rewrite(url, seq, edit)

    return attack


ATTACKS = {
    "body-5": _changed_body(5),
    "body-149": _changed_body(149),
    "body-150": _changed_body(150),
    "body-200": _changed_body(200),
    "rehash-149": _rehashed_body(149),
    "rehash-150": _rehashed_body(150),
    "delete-149": _deleted(149),
    "delete-150": _deleted(150),
    "delete-148-149": _deleted(148, 149),
    "delete-tail": _deleted(*range(290, SIZE)),
    "delete-across-split": _deleted(*range(140, SIZE)),
    "time-150": _rewritten_time(150),
    "time-151": _rewritten_time(151),
    "model-column-149": lambda url: raw_sql(
        url, ["UPDATE auditml_event SET model = 'churn' WHERE seq = 149"]
    ),
    "model-column-150": lambda url: raw_sql(
        url, ["UPDATE auditml_event SET model = 'churn' WHERE seq = 150"]
    ),
    "time-column-220": lambda url: raw_sql(
        url, ["UPDATE auditml_event SET time = '2099-01-01T00:00:00.000000Z' WHERE seq = 220"]
    ),
    "node": lambda url: raw_sql(url, [("UPDATE auditml_node SET hash = %s", (b"\2" * 32,))]),
    "root": lambda url: raw_sql(url, [("UPDATE auditml_log SET root = %s", (b"\1" * 32,))]),
    "extra-row": lambda url: raw_sql(
        url,
        [
            (
                "INSERT INTO auditml_event (log_id, seq, prev, hash, time, action, body) "
                "VALUES (1, %s, %s, %s, 'x', 'model.retire', %s)",
                (SIZE + 5, b"\1" * 32, b"\2" * 32, b"{}"),
            )
        ],
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_parallel_verify_names_the_same_failure_as_serial(
    url: str, attack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split with the helper at event 150, verify names exactly the failure serial verify names."""
    monkeypatch.setattr("auditml.ledger._split_point", lambda size: 150)
    with AuditLog.open(url) as log:
        assert log.verify(parallel=True).root == log.verify(parallel=False).root
    ATTACKS[attack](url)
    failures = []
    for parallel in (False, True):
        with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
            log.verify(parallel=parallel)
        failures.append((info.value.kind, info.value.seq, str(info.value)))
    assert failures[0] == failures[1]


#: Where the helper's half may start: at the first events, around a stored tree node (256
#: leaves) and at the last event, so the two halves' trees meet at every kind of boundary.
SPLITS = [1, 2, 128, 149, 255, 256, 257, 299]


def _checkpointed(url: str) -> None:
    """Keep checkpoints on both sides of every split, so roots come from both halves."""
    with AuditLog.open(url) as log:
        for size in (2, 100, 128, 150, 200, 255, 256, 257, 258, 299, SIZE):
            log.checkpoint(size)


@pytest.mark.parametrize("split", SPLITS)
def test_parallel_verify_agrees_with_serial_at_any_split(
    url: str, split: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split anywhere, the merged tree gives serial's root and every checkpoint's root."""
    _checkpointed(url)
    monkeypatch.setattr("auditml.ledger._split_point", lambda size: split)
    with AuditLog.open(url) as log:
        serial, parallel = log.verify(parallel=False), log.verify(parallel=True)
        assert parallel.root == serial.root == log.root()
        assert parallel.size == serial.size == SIZE
        chains = [log._ledger.verify_chain(parallel=p) for p in (False, True)]
        assert chains[0].roots == chains[1].roots
        assert set(chains[0].roots) >= {1, 2, 100, 128, 150, 200, 255, 256, 257, 258, 299, SIZE}


def _split_attacks(split: int) -> dict[str, Callable[[str], None]]:
    """Attacks on the last event before the split and the first after it, and across it."""
    last, first = split - 1, split
    node = ("UPDATE auditml_node SET hash = %s WHERE level = %s AND idx = 0", (b"\2" * 32, 8))
    return {
        "body-last": _changed_body(last),
        "body-first": _changed_body(first),
        "rehash-last": _rehashed_body(last),
        "rehash-first": _rehashed_body(first),
        "delete-last": _deleted(last),
        "delete-first": _deleted(first),
        "delete-both": _deleted(last, first),
        "time-last": _rewritten_time(last),
        "time-first": _rewritten_time(first),
        "time-after-first": _rewritten_time(min(first + 1, SIZE - 1)),
        "version-column-last": lambda url: raw_sql(
            url, [("UPDATE auditml_event SET version = '9' WHERE seq = %s", (last,))]
        ),
        "prev-column-first": lambda url: raw_sql(
            url, [("UPDATE auditml_event SET prev = %s WHERE seq = %s", (b"\3" * 32, first))]
        ),
        "node-across": lambda url: raw_sql(url, [node]),
        "checkpoint-before": lambda url: raw_sql(
            url,
            [("UPDATE auditml_checkpoint SET root = %s WHERE size = %s", (b"\4" * 32, split))],
        ),
        "checkpoint-after": lambda url: raw_sql(
            url,
            [("UPDATE auditml_checkpoint SET root = %s WHERE size = %s", (b"\4" * 32, 299))],
        ),
    }


@pytest.mark.parametrize("split", [2, 149, 256, 257, 299])
@pytest.mark.parametrize("attack", sorted(_split_attacks(150)))
def test_parallel_verify_names_serials_failure_at_the_split(
    url: str, split: int, attack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tamper just before, at or across the split is named as serial verify names it."""
    with AuditLog.open(url) as log:
        for size in (split, 299):
            log.checkpoint(size)
    monkeypatch.setattr("auditml.ledger._split_point", lambda size: split)
    _split_attacks(split)[attack](url)
    failures = []
    for parallel in (False, True):
        with AuditLog.open(url) as log, pytest.raises(VerificationError) as info:
            log.verify(parallel=parallel)
        failures.append((info.value.kind, info.value.seq, str(info.value)))
    assert failures[0] == failures[1]


def test_verify_leaves_the_garbage_collector_as_it_found_it(url: str) -> None:
    """Verify pauses the collector for its scan only: on, off, and after a failure, as before."""
    import gc

    assert gc.isenabled()
    with AuditLog.open(url) as log:
        log.verify(parallel=False)
        assert gc.isenabled()
        gc.disable()
        try:
            log.verify(parallel=False)
            assert not gc.isenabled()
        finally:
            gc.enable()
    _changed_body(5)(url)
    with AuditLog.open(url) as log, pytest.raises(VerificationError):
        log.verify(parallel=False)
    assert gc.isenabled()
