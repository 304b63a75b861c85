"""Red-team attacks on a hardened store: each test is one way in, shown to be closed.

An attacker here either calls the public API in ways it did not mean to
allow, or holds the database (raw SQL, triggers dropped) but not the log's
private key. Either way a decision must not change while ``auditml verify``
still passes, and a tampered store must make the CLI exit 1, never 2 or 70.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError, PolicyDeniedError, VerificationError
from auditml.core.events import Draft
from auditml.core.policy import Policy
from tests.conftest import drop_triggers, raw_query, raw_sql, run_cli

ORIGIN = "bank.example/redteam"
ADMIN = "admin@bank.example"
TRAINER = "dana@bank.example"
VALIDATOR = "victor@bank.example"
OUTSIDER = "mallory@bank.example"


def _gated(db_url: str) -> AuditLog:
    """Return a log whose production gate needs auc >= 0.9 and whose evaluations need a role."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    log.apply_policy(
        Policy(
            roles={ADMIN: ["admin"], VALIDATOR: ["validator"]},
            permissions={
                "policy": ["admin"],
                "evaluate": ["validator"],
                "incident": ["validator"],
            },
            approvals={"default": 1},
            gates={"production": ["auc >= 0.9"]},
        ),
        reason="gates",
        actor=ADMIN,
    )
    log.record_training("credit-risk", data={"metrics": {"auc": 0.5}}, actor=TRAINER)
    log.approve("credit-risk", "1", reason="VR-1", actor=VALIDATOR)
    return log


@pytest.mark.parametrize(
    "attack",
    [
        lambda log: log.append(
            "model.evaluate",
            subject={"model": "credit-risk", "version": "1"},
            data={"metrics": {"auc": 0.99}},
            actor=OUTSIDER,
        ),
        lambda log: log.append_many(
            [
                Draft.build(
                    "model.evaluate",
                    actor=OUTSIDER,
                    subject={"model": "credit-risk", "version": "1"},
                    data={"metrics": {"auc": 0.99}},
                )
            ]
        ),
        lambda log: log.append(
            "incident.close",
            subject={"model": "credit-risk", "version": "1"},
            data={"id": "INC-1", "resolution": "nothing to see"},
            actor=OUTSIDER,
        ),
    ],
    ids=["append", "append_many", "incident"],
)
def test_plain_append_cannot_feed_a_gate_or_close_an_incident(
    db_url: str, attack: Callable[[AuditLog], object]
) -> None:
    """Plain append of model.evaluate or incident.* is refused, so it cannot pass a metric gate."""
    with _gated(db_url) as log:
        size = log.head().size
        with pytest.raises(InvalidInputError, match="checked against policy"):
            attack(log)
        assert log.head().size == size
        with pytest.raises(PolicyDeniedError):
            log.evaluate("credit-risk", "1", metrics={"auc": 0.99}, actor=OUTSIDER)
        with pytest.raises(PolicyDeniedError, match="auc"):
            log.deploy("credit-risk", "1", "production", actor=ADMIN)


def test_imported_evaluations_never_pass_a_live_gate(db_url: str) -> None:
    """The escape hatch imported=True records the metric but the live gate still refuses."""
    with _gated(db_url) as log:
        log.append(
            "model.evaluate",
            subject={"model": "credit-risk", "version": "1"},
            data={"metrics": {"auc": 0.99}},
            actor=OUTSIDER,
            imported=True,
        )
        with pytest.raises(PolicyDeniedError, match="auc"):
            log.deploy("credit-risk", "1", "production", actor=ADMIN)


TABLES = ("auditml_event", "auditml_node", "auditml_checkpoint", "auditml_logkey", "auditml_log")


def _history(db_url: str, tmp_path: Path, *, approve_v2: bool) -> str:
    """Make a log where v1 is approved and v2 rejected (or approved); return its verifier key."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN, checkpoint_every=4)
    with log:
        for _ in range(2):
            log.record_training("credit-risk", data={"metrics": {"auc": 0.9}}, actor=TRAINER)
        log.approve("credit-risk", "1", reason="VR-1", actor=VALIDATOR)
        if approve_v2:
            log.approve("credit-risk", "2", reason="VR-2", actor=VALIDATOR)
        else:
            log.reject("credit-risk", "2", reason="leaks the label", actor=VALIDATOR)
        log.checkpoint()
        return str(log.verifier_key())


def _rewrite(victim: str, forged: str) -> None:
    """Replace every row of ``victim`` with those of ``forged``, as a database holder could."""
    drop_triggers(victim)
    raw_sql(victim, [f"DELETE FROM {table}" for table in TABLES])
    for table in reversed(TABLES):
        rows = raw_query(forged, f"SELECT * FROM {table}")
        for row in rows:
            marks = ", ".join(["%s"] * len(row))
            raw_sql(victim, [(f"INSERT INTO {table} VALUES ({marks})", tuple(row))])


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_cli(args, capsys)
    return code, out + err


def test_a_consistent_rewrite_fails_against_the_pinned_key(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A whole log re-made and re-signed with another key fails verify --vkey with the real key."""
    real = _history(db_url, tmp_path, approve_v2=False)
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    forged_url = f"sqlite:///{attacker / 'forged.db'}"
    fake = _history(forged_url, attacker, approve_v2=True)
    assert fake != real
    _rewrite(db_url, forged_url)
    with AuditLog.open(db_url) as log:
        assert log.status("credit-risk")["credit-risk"].versions["2"].approvals  # it changed
        with pytest.raises(VerificationError) as info:
            log.verify(vkey=real)
    assert info.value.kind == "signature"
    code, text = _cli(["verify", "--db", db_url, "--vkey", real], capsys)
    assert code == 1
    assert "not the pinned key" in text
    assert _cli(["verify", "--db", db_url, "--vkey", fake], capsys)[0] == 0


@pytest.mark.parametrize("value", [None, "banana", "01", "0", "1 "])
def test_a_schema_version_row_that_lies_fails_verify(
    db_url: str, tmp_path: Path, value: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schema version row deleted or rewritten to what no auditml writes fails verify with 1."""
    _history(db_url, tmp_path, approve_v2=False)
    drop_triggers(db_url)
    if value is None:
        raw_sql(db_url, ["DELETE FROM auditml_meta WHERE key = 'schema_version'"])
    else:
        raw_sql(
            db_url,
            [("UPDATE auditml_meta SET value = %s WHERE key = 'schema_version'", (value,))],
        )
    code, text = _cli(["verify", "--db", db_url], capsys)
    assert code == 1
    assert "the auditml_meta table was changed" in text


def test_a_newer_schema_version_still_asks_for_an_upgrade(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain later version number is a store from a newer auditml: exit 2, upgrade."""
    _history(db_url, tmp_path, approve_v2=False)
    raw_sql(db_url, ["UPDATE auditml_meta SET value = '2' WHERE key = 'schema_version'"])
    code, text = _cli(["verify", "--db", db_url], capsys)
    assert code == 2
    assert "upgrade auditml" in text


DEEP = "[" * 40_000 + "]" * 40_000


@pytest.mark.parametrize(
    ("name", "text", "command"),
    [
        ("run.json", '{"params": {"x": ' + DEEP + "}}", ["train", "credit-risk", "--from-json"]),
        (
            "run.json",
            '{"metrics": {"auc": 0.1, "auc": 0.99}}',
            ["train", "credit-risk", "--from-json"],
        ),
        ("card.json", '{"intended_use": ' + DEEP + "}", ["card", "update", "credit-risk", "1"]),
        ("card.yaml", "intended_use: " + DEEP + "\n", ["card", "update", "credit-risk", "1"]),
        ("key.pub", DEEP, ["key", "register"]),
    ],
    ids=["deep-run", "duplicate-key-run", "deep-card-json", "deep-card-yaml", "deep-pub"],
)
def test_deep_or_ambiguous_input_files_exit_2_and_write_nothing(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    command: list[str],
) -> None:
    """A file nested 40,000 deep or with a key twice is bad input (exit 2), not a crash (70)."""
    _history(db_url, tmp_path, approve_v2=False)
    size = raw_query(db_url, "SELECT size FROM auditml_log")[0][0]
    path = tmp_path / name
    path.write_text(text)
    code, out = _cli([*command, str(path), "--db", db_url, "--actor", ADMIN], capsys)
    assert code == 2, out
    assert name in out
    assert raw_query(db_url, "SELECT size FROM auditml_log")[0][0] == size


def test_a_deep_param_value_is_kept_as_text(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--param x=<JSON too deep to parse> records the text as given instead of crashing."""
    _history(db_url, tmp_path, approve_v2=False)
    code, out = _cli(
        ["train", "credit-risk", "--param", f"x={DEEP}", "--db", db_url, "--actor", TRAINER],
        capsys,
    )
    assert code == 0, out
    with AuditLog.open(db_url) as log:
        last = list(log.events(model="credit-risk", action="model.train"))[-1]
    assert last.event.data["params"]["x"] == DEEP


def test_a_deep_proof_in_a_bundle_fails_verification(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile bundle whose proof line is nested 40,000 deep fails verify (1), not 70."""
    real = _history(db_url, tmp_path, approve_v2=False)
    bundle = tmp_path / "bundle"
    assert _cli(["export", str(bundle), "--prove", "1", "--db", db_url], capsys)[0] == 0
    (bundle / "proofs.jsonl").write_text(DEEP + "\n")
    code, out = _cli(["verify", str(bundle), "--vkey", real], capsys)
    assert code == 1, out
    assert "proofs.jsonl line 1 is not an inclusion proof" in out


def test_an_integer_too_long_to_print_is_bad_input(db_url: str, tmp_path: Path) -> None:
    """An int of 5,000 digits is refused as bad input naming its place; nothing is written."""
    _history(db_url, tmp_path, approve_v2=False)
    with AuditLog.open(db_url) as log:
        size = log.head().size
        with pytest.raises(InvalidInputError, match=r"params\.n is a 16610-bit integer"):
            log.record_training("credit-risk", data={"params": {"n": 10**5000}}, actor=TRAINER)
        assert log.head().size == size


def test_imported_history_cannot_close_a_live_incident(db_url: str) -> None:
    """An imported incident.close, by someone without the incident permission, leaves it open."""
    with _gated(db_url) as log:
        opened = log.open_incident("credit-risk", "1", "drift", actor=VALIDATOR)
        log.append(
            "incident.close",
            subject={"model": "credit-risk", "version": "1"},
            data={"id": opened.id, "resolution": "nothing to see"},
            actor=OUTSIDER,
            imported=True,
        )
        (still,) = log.incidents()
        assert still.is_open
        log.close_incident(opened.id, "retrained", actor=VALIDATOR)
        (closed,) = log.incidents()
        assert closed.closed_by == VALIDATOR


@pytest.mark.parametrize(
    "alias", ["Victor@bank.example", "victor@bank.example ", "victor\u200b@bank.example"]
)
def test_one_person_under_two_spellings_is_one_approval(db_url: str, alias: str) -> None:
    """An approver id in another case, with a space or a zero-width char, is no second person."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with log:
        log.apply_policy(Policy(approvals={"default": 2}), reason="two", actor=ADMIN)
        log.record_training("credit-risk", actor=TRAINER)
        log.approve("credit-risk", "1", reason="VR-1", actor=VALIDATOR)
        log.approve("credit-risk", "1", reason="VR-1 again", actor=alias)
        with pytest.raises(PolicyDeniedError, match="1 distinct approval"):
            log.deploy("credit-risk", "1", "production", actor=ADMIN)


@pytest.mark.parametrize(
    "alias", ["DANA@bank.example", " dana@bank.example", "dana@bank.exam\u00adple"]
)
def test_a_trainer_under_another_spelling_may_not_approve(db_url: str, alias: str) -> None:
    """Separation of duties sees through case, spaces and invisible characters in the actor id."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with log:
        log.record_training("credit-risk", actor=TRAINER)
        with pytest.raises(PolicyDeniedError, match="may not approve"):
            log.approve("credit-risk", "1", reason="VR-1", actor=alias)


def test_an_imported_deploy_cannot_take_a_live_run_out_of_service(db_url: str) -> None:
    """An imported deploy over a live run does not let that live version be retired."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with log:
        for _ in range(2):
            log.record_training("credit-risk", actor=TRAINER)
        log.approve("credit-risk", "1", reason="VR-1", actor=VALIDATOR)
        log.deploy("credit-risk", "1", "production", actor=ADMIN)
        log.append(
            "model.deploy",
            subject={"model": "credit-risk", "version": "2"},
            data={"environment": "production"},
            actor=OUTSIDER,
            imported=True,
        )
        size = log.head().size
        with pytest.raises(PolicyDeniedError, match="version 1 still runs in production"):
            log.retire("credit-risk", "1", reason="gone", actor=OUTSIDER)
        assert log.head().size == size + 1  # only the denial is recorded


@pytest.mark.parametrize("subject", [("credit\x00risk", "1"), ("credit-risk", "1\x00")])
def test_a_nul_in_a_model_or_version_name_is_bad_input_on_every_backend(
    db_url: str, subject: tuple[str, str]
) -> None:
    """A NUL in a model or version name is refused as bad input, not a store failure."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with log:
        size = log.head().size
        with pytest.raises(InvalidInputError, match="NUL character"):
            log.record_training(subject[0], version=subject[1], actor=TRAINER)
        assert log.head().size == size


@pytest.mark.parametrize("gate", ["auc <= 1e999", "auc >= -1e400"])
def test_a_gate_with_an_infinite_threshold_is_refused(
    db_url: str, tmp_path: Path, gate: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gate whose number overflows to infinity (one that always passes) is bad input."""
    AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)[0].close()
    size = raw_query(db_url, "SELECT size FROM auditml_log")[0][0]
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[gates]\nproduction = ["{gate}"]\n')
    args = ["policy", "apply", str(policy), "--reason", "x", "--db", db_url, "--actor", ADMIN]
    code, out = _cli(args, capsys)
    assert code == 2, out
    assert "too large for a number" in out
    assert raw_query(db_url, "SELECT size FROM auditml_log")[0][0] == size


@pytest.mark.parametrize("table", ["auditml_node", "auditml_logkey", "auditml_meta"])
def test_a_dropped_table_fails_verify(
    db_url: str, tmp_path: Path, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dropping one of the store's tables fails verify with exit 1, not 70 or 2."""
    _history(db_url, tmp_path, approve_v2=False)
    raw_sql(db_url, [f"DROP TABLE {table}"])
    code, out = _cli(["verify", "--db", db_url], capsys)
    assert code == 1, out
    assert f"no {table} table" in out


def _forked_row(db_url: str, seq: int, parent: int) -> tuple[bytes, bytes, str]:
    """Return ``(hash, body, time)`` of a forged event at ``seq`` naming event ``parent`` as prev.

    It is a sibling of the event after ``parent``: the two claim the same prev,
    which the unique (log, prev) index made impossible to store before issue 20.
    """
    import json

    from auditml.core.canonical import canonical_bytes

    (body, prev) = raw_query(
        db_url, "SELECT body, prev FROM auditml_event WHERE seq = %s", (parent + 1,)
    )[0]
    event = json.loads(bytes(body))
    event["seq"] = seq
    event["data"] = {**event["data"], "reason": "forked"}
    assert bytes.fromhex(event["prev"]) == bytes(prev)
    forged = canonical_bytes(event)
    return hashlib.sha256(b"\x00" + forged).digest(), forged, event["time"]


def _insert(db_url: str, seq: int, digest: bytes, body: bytes, stamp: str, prev: bytes) -> None:
    raw_sql(
        db_url,
        [
            (
                "INSERT INTO auditml_event "
                "(log_id, seq, prev, hash, time, action, model, version, body) "
                "VALUES (1, %s, %s, %s, %s, 'model.approve', 'credit-risk', '1', %s)",
                (seq, prev, digest, stamp, body),
            )
        ],
    )


@pytest.mark.parametrize("head", ["moved", "left"])
def test_a_forked_row_written_with_triggers_dropped_fails_verify(
    db_url: str, head: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second child of one event, stored by hand past the head (triggers off), fails verify.

    Without the unique (log, prev) index the database stores the fork; the chain
    check must name it, whether the attacker moved the head onto it or not.
    """
    log = _gated(db_url)
    log.close()
    size = int(raw_query(db_url, "SELECT size FROM auditml_log")[0][0])
    last = size - 1
    (parent_prev,) = raw_query(db_url, "SELECT prev FROM auditml_event WHERE seq = %s", (last,))[0]
    digest, body, stamp = _forked_row(db_url, size, last - 1)
    drop_triggers(db_url)
    _insert(db_url, size, digest, body, stamp, bytes(parent_prev))
    if head == "moved":
        raw_sql(
            db_url,
            [("UPDATE auditml_log SET size = %s, head_hash = %s", (size + 1, digest))],
        )
    with AuditLog.open(db_url) as opened, pytest.raises(VerificationError) as info:
        opened.verify()
    if head == "moved":
        assert (info.value.kind, info.value.seq) == ("link", size)
    else:
        assert (info.value.kind, info.value.seq) == ("head", size)
    code, out = _cli(["verify", "--db", db_url], capsys)
    assert code == 1, out


def test_a_fork_replacing_the_last_event_fails_verify(db_url: str) -> None:
    """The last event swapped for a sibling with the same prev, head moved onto it, fails verify.

    The attacker recomputes the head (hash, root, frontier) but cannot sign a
    checkpoint: the signed size-N checkpoint still commits to the original.
    """
    log = _gated(db_url)
    log.checkpoint()
    log.close()
    size = int(raw_query(db_url, "SELECT size FROM auditml_log")[0][0])
    last = size - 1
    (prev,) = raw_query(db_url, "SELECT prev FROM auditml_event WHERE seq = %s", (last,))[0]
    digest, body, stamp = _forked_row(db_url, last, last - 1)
    drop_triggers(db_url)
    raw_sql(db_url, [("DELETE FROM auditml_event WHERE seq = %s", (last,))])
    _insert(db_url, last, digest, body, stamp, bytes(prev))
    from auditml.core.merkle import CompactRange

    hashes = [bytes(h) for (h,) in raw_query(db_url, "SELECT hash FROM auditml_event ORDER BY seq")]
    tree = CompactRange()
    tree.extend(hashes)
    raw_sql(
        db_url,
        [
            (
                "UPDATE auditml_log SET head_hash = %s, root = %s, frontier = %s",
                (digest, tree.root(), tree.to_bytes()),
            )
        ],
    )
    with AuditLog.open(db_url) as opened, pytest.raises(VerificationError) as info:
        opened.verify()
    assert info.value.kind == "anchor", info.value
    assert "checkpoint" in str(info.value)
