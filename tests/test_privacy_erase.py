"""Erasure that is real: sealed values, one transaction, nothing left in the database files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError, PolicyDeniedError, VerificationError
from auditml.serving import prove_record
from tests.conftest import raw_query, raw_sql, run_cli

DS = "ds@bank.example"
SUBJECT = "customer-4711-zq"
FEATURE = 987654.321
OTHER = "customer-0815-zq"


def _record(log: AuditLog, n: int, subject: str, when: datetime | None = None) -> None:
    with log.runtime("credit", env="production", background=False) as rec:
        rec.record(
            f"req-{n}",
            version="1",
            output={"label": "refer"},
            latency_ms=2,
            subject=subject,
            features={"income": FEATURE if subject == SUBJECT else 1000 + n},
            payload={"note": f"payload of {subject}"},
            time=when,
        )


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log with two requests of SUBJECT and one of OTHER, in two segments."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    opened.record_training("credit", actor=DS)
    _record(opened, 1, SUBJECT)
    _record(opened, 2, OTHER)
    _record(opened, 3, SUBJECT)
    try:
        yield opened
    finally:
        opened.close()


def _files(url: str) -> dict[str, bytes]:
    """Return the raw bytes of a SQLite log's main file and its WAL (free pages included)."""
    path = Path(url.removeprefix("sqlite:///"))
    found = {}
    for suffix in ("", "-wal", "-journal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            found[file.name] = file.read_bytes()
    return found


def _secrets(log: AuditLog) -> dict[str, bytes]:
    """Return what must not survive erasure: id, feature, salts, the key and a ciphertext."""
    opened = log.open_commitment("req-1", "subject")
    features = log.open_commitment("req-1", "features")
    url = log.store.url
    keys = [bytes(r[0]) for r in raw_query(url, "SELECT key FROM auditml_subject")]
    commitment = opened.commitment
    (sealed,) = [
        bytes(r[0])
        for r in raw_query(
            url, "SELECT value FROM auditml_value WHERE commitment = %s", (commitment,)
        )
    ]
    return {
        "subject id": SUBJECT.encode(),
        "feature": str(FEATURE).encode(),
        "subject salt": bytes.fromhex(opened.salt),
        "subject salt (hex)": opened.salt.encode(),
        "feature salt": bytes.fromhex(features.salt),
        "sealed value": sealed,
        **{f"key {n}": k for n, k in enumerate(keys)},
    }


def test_erasure_removes_values_lookup_and_key_and_records_one_event(log: AuditLog) -> None:
    """One privacy.erasure event with counts and kinds; the values go, verify and proofs hold."""
    size = log.head().size
    done = log.erase(SUBJECT, request="DSR-2027-14", reason="GDPR Art. 17 request", actor="dpo")
    assert (done.values, done.records) == (6, 2)
    assert done.kinds == {"features": 2, "payload": 2, "subject": 2}
    assert done.seq == size and log.head().size == size + 1
    (event,) = [r for r in log.events(action="privacy.erasure")]
    assert event.event.data["request"] == "DSR-2027-14"
    assert event.event.data["kinds"] == {"features": 2, "payload": 2, "subject": 2}
    for record in log.events():
        assert SUBJECT.encode() not in record.body
    with pytest.raises(InvalidInputError, match=r"no longer kept|erased"):
        log.open_commitment("req-1", "subject")
    assert log.open_commitment("req-2", "subject").value == OTHER
    log.verify()
    proof = prove_record(log, "req-1")
    assert proof["record"]["request_id"] == "req-1"
    url = log.store.url
    assert raw_query(url, "SELECT count(*) FROM auditml_subject")[0][0] == 1
    assert raw_query(url, "SELECT count(*) FROM auditml_subject_value")[0][0] == 3
    assert raw_query(url, "SELECT count(*) FROM auditml_value")[0][0] == 3


def test_values_are_sealed_so_the_store_never_holds_them_in_clear(log: AuditLog) -> None:
    """Subject ids, features and salts are stored only as AES-GCM ciphertext under a key."""
    url = log.store.url
    stored = b"".join(
        bytes(r[0]) + bytes(r[1]) for r in raw_query(url, "SELECT salt, value FROM auditml_value")
    )
    secrets = _secrets(log)
    for what in ("subject id", "feature", "subject salt", "feature salt"):
        assert secrets[what] not in stored, what
    assert log.open_commitment("req-1", "features").value == {"income": FEATURE}


def test_after_erasure_no_database_file_holds_the_subject(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite: main file, WAL and free pages hold no id, feature, salt, key or ciphertext of it.

    PostgreSQL: the rows are gone, and the key table is rewritten without the
    erased key, unless a transaction older than the erasure still holds it back.
    """
    secrets = _secrets(log)
    keys = {k: v for k, v in secrets.items() if k.startswith("key ")}
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        before = b"".join(_files(db_url).values())
        assert any(v in before for v in keys.values()), "the scan must see the keys before"
        assert secrets["sealed value"] in before
    code, out, _ = run_cli(
        [
            *("erase", "--subject", SUBJECT, "--request", "DSR-2027-14"),
            *("--reason", "asked to be forgotten", "--by", "dpo@bank.example"),
            *("--db", db_url),
        ],
        capsys,
    )
    assert code == 0 and "Erased 6 value(s)" in out and SUBJECT not in out
    url = log.store.url
    left = {bytes(r[0]) for r in raw_query(url, "SELECT key FROM auditml_subject")}
    erased = {what: secret for what, secret in secrets.items() if secret not in left}
    assert len(left) == 1 and len(erased) == len(secrets) - 1
    if sqlite:
        files = _files(db_url)
        assert "audit.db" in files
        for name, data in files.items():
            for what, secret in erased.items():
                assert secret not in data, f"{what} found in {name} after erasure"
        return
    assert "VACUUM" in out
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()"
    )
    before = raw_query(url, others)[0][0]
    raw_sql(url, ["VACUUM FULL auditml_subject", "CHECKPOINT"])
    path = raw_query(url, "SELECT pg_relation_filepath('auditml_subject')")[0][0]
    data = bytes(raw_query(url, "SELECT pg_read_binary_file(%s)", (path,))[0][0])
    after = raw_query(url, others)[0][0]
    assert all(k in data for k in left)
    if before == after == 0:  # no other transaction could still see the row: it is gone
        assert not any(k in data for what, k in erased.items() if what.startswith("key "))


def test_a_request_that_names_the_subject_is_refused_and_nothing_is_erased(
    log: AuditLog,
) -> None:
    """The subject's id never enters the log: a request or reason holding it is refused."""
    size = log.head().size
    with pytest.raises(InvalidInputError, match="names the subject"):
        log.erase(SUBJECT, request="DSR-1", reason=f"{SUBJECT} asked", actor="dpo")
    assert log.head().size == size
    assert log.open_commitment("req-1", "subject").value == SUBJECT


def test_an_unknown_subject_records_the_request_as_handled(log: AuditLog) -> None:
    """Erasing a subject with no values records the request with zero values."""
    done = log.erase("nobody-known", request="DSR-9", reason="asked", actor="dpo")
    assert done.values == 0 and done.kinds == {}
    log.verify()


def test_the_cli_says_nothing_was_erased_for_an_unknown_subject(
    log: AuditLog, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo'd subject is recorded as handled, and the output says nothing was erased, no more."""
    code, out, _ = run_cli(
        [
            *("erase", "--subject", "nobody-known", "--request", "DSR-9"),
            *("--reason", "asked", "--by", "dpo@bank.example", "--db", db_url),
        ],
        capsys,
    )
    assert code == 0 and out.startswith("Nothing was erased: no value is kept for that subject")
    assert "check the identifier" in out and "nobody-known" not in out
    assert "can no longer be opened" not in out and "Store:" not in out
    assert log.open_commitment("req-1", "subject").value == SUBJECT


def test_policy_may_limit_who_erases(log: AuditLog, tmp_path: Path) -> None:
    """With [permissions] privacy, only that role erases; others get a recorded denial."""
    policy = tmp_path / "auditml.toml"
    policy.write_text(
        '[roles]\n"dpo@bank.example" = ["dpo"]\n"admin" = ["officer"]\n'
        '[permissions]\nprivacy = ["dpo"]\npolicy = ["officer"]\n',
        encoding="utf-8",
    )
    log.apply_policy(policy, actor="admin")
    says = r"may not erase personal data or apply retention: .* \[permissions\] privacy needs"
    with pytest.raises(PolicyDeniedError, match=says):
        log.erase(SUBJECT, request="DSR-1", reason="asked", actor="intern@bank.example")
    assert log.open_commitment("req-1", "subject").value == SUBJECT
    assert log.erase(SUBJECT, request="DSR-1", reason="asked", actor="dpo@bank.example").values


def test_verify_deep_names_a_value_deleted_by_hand(log: AuditLog) -> None:
    """A value deleted by raw SQL is named by the deep check; erased ones are not."""
    log.erase(SUBJECT, request="DSR-1", reason="asked", actor="dpo")
    log.verify(deep=True)
    url = log.store.url
    commitment = log.open_commitment("req-2", "payload").commitment
    raw_sql(url, [("DELETE FROM auditml_value WHERE commitment = %s", (commitment,))])
    log.verify()  # the chain and records still verify: only the deep check looks at values
    with pytest.raises(VerificationError, match=r"'payload' of request 'req-2'.*deleted outside"):
        log.verify(deep=True)


def test_verify_deep_catches_a_forged_erasure_record(log: AuditLog) -> None:
    """Deleting a value and claiming it in auditml_erased breaks the erasure's digest."""
    seq = log.erase(SUBJECT, request="DSR-1", reason="asked", actor="dpo").seq
    url = log.store.url
    commitment = log.open_commitment("req-2", "payload").commitment
    raw_sql(
        url,
        [
            ("DELETE FROM auditml_value WHERE commitment = %s", (commitment,)),
            (
                "INSERT INTO auditml_erased (log_id, commitment, seq) VALUES (1, %s, %s)",
                (commitment, seq),
            ),
        ],
    )
    with pytest.raises(VerificationError, match="digest"):
        log.verify(deep=True)


def test_cli_verify_deep_fails_with_the_value_named(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """`verify --deep` exits 1 naming the value that vanished without an event."""
    url = log.store.url
    commitment = log.open_commitment("req-3", "features").commitment
    raw_sql(url, [("DELETE FROM auditml_value WHERE commitment = %s", (commitment,))])
    code, out, err = run_cli(["verify", "--db", url, "--deep"], capsys)
    assert code == 1 and "req-3" in out + err and "features" in out + err


def _retention_log(db_url: str, tmp_path: Path, schedule: str) -> AuditLog:
    opened, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    opened.record_training("credit", actor=DS)
    policy = tmp_path / "auditml.toml"
    policy.write_text(schedule, encoding="utf-8")
    opened.apply_policy(policy, actor="admin")
    _record(opened, 1, SUBJECT, datetime(2027, 1, 1, tzinfo=UTC))
    _record(opened, 2, OTHER, datetime(2027, 6, 1, tzinfo=UTC))
    return opened


SCHEDULE = '[retention]\nruntime_values = "30d"\nruntime_records = "184d"\n'


def test_retention_removes_expired_segments_and_the_chain_still_verifies(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values go after 30 days, records after 184; segment events stay and verify passes."""
    with _retention_log(db_url, tmp_path, SCHEDULE) as log:
        first, second = [r.seq for r in log.events(action="runtime.segment")]
        run = log.apply_retention(now=datetime(2027, 3, 1, tzinfo=UTC), actor="ops")
        assert (run.values, run.records) == (3, 0)
        assert log.open_commitment("req-2", "subject").value == OTHER  # not yet due
        run = log.apply_retention(now=datetime(2027, 8, 1, tzinfo=UTC), actor="ops")
        assert (run.values, run.records, run.segments) == (3, 1, [first])
        report = log.verify(deep=True)
        assert report.size == log.head().size and report.removed_segments == 1
        url = log.store.url
        assert raw_query(url, "SELECT DISTINCT seg FROM auditml_record")[0][0] == second
        (event,) = [r for r in log.events(action="retention.applied")][-1:]
        assert event.event.data["segments"] == [first]
        entries = log.retention().entries
        assert [e.action for e in entries] == ["retention.applied", "retention.applied"]
    code, out, _ = run_cli(["verify", "--db", url], capsys)
    assert code == 0 and "1 segment(s) of runtime records were removed under retention" in out


def test_retention_never_removes_what_another_rule_covers(db_url: str, tmp_path: Path) -> None:
    """Payloads kept two years keep their records past the records' own period."""
    schedule = SCHEDULE + '[retention.values]\npayload = "2y"\n'
    with _retention_log(db_url, tmp_path, schedule) as log:
        run = log.apply_retention(now=datetime(2028, 1, 1, tzinfo=UTC), actor="ops")
        assert run.records == 0 and run.kinds == {"features": 2, "subject": 2}
        assert log.open_commitment("req-1", "payload").value == {"note": f"payload of {SUBJECT}"}
        log.verify(deep=True)


def test_a_dry_run_writes_nothing_and_every_run_is_recorded(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run lists what is due and writes nothing; a run with nothing due is still recorded."""
    with _retention_log(db_url, tmp_path, SCHEDULE) as log:
        size = log.head().size
        url = log.store.url
    code, out, _ = run_cli(
        ["retention", "apply", "--dry-run", "--at", "2027-08-01", "--db", url], capsys
    )
    assert code == 0 and "dry run" in out and "records of segment" in out
    code, out, _ = run_cli(
        ["retention", "apply", "--dry-run", "--at", "2027-01-05", "--db", url], capsys
    )
    assert code == 0 and "Nothing is due" in out
    with AuditLog.open(url) as log:
        assert log.head().size == size
    code, out, _ = run_cli(["retention", "apply", "--at", "2027-01-05", "--db", url], capsys)
    assert code == 0 and "Nothing is due" in out and f"event {size}" in out
    code, out, _ = run_cli(
        ["retention", "apply", "--at", "2027-08-01", "--db", url, "--json", "--actor", "ops"],
        capsys,
    )
    data: dict[str, Any] = json.loads(out)
    assert code == 0 and data["seq"] == size + 1 and data["records"] == 1
    with AuditLog.open(url) as log:
        assert log.head().size == size + 2


def test_a_record_cannot_be_deleted_outside_a_retention_run(log: AuditLog) -> None:
    """The append-only trigger still refuses a DELETE of a record no retention run listed."""
    with pytest.raises(Exception, match="refused"):
        raw_sql(log.store.url, ["DELETE FROM auditml_record"])


def test_verify_deep_opens_sealed_values_with_their_keys(log: AuditLog) -> None:
    """A sealed value whose ciphertext was changed passes the quick check, not the deep one."""
    url = log.store.url
    commitment = log.open_commitment("req-2", "features").commitment
    (sealed,) = [
        bytes(r[0])
        for r in raw_query(
            url, "SELECT value FROM auditml_value WHERE commitment = %s", (commitment,)
        )
    ]
    changed = sealed[:-1] + bytes([sealed[-1] ^ 1])
    raw_sql(
        url, [("UPDATE auditml_value SET value = %s WHERE commitment = %s", (changed, commitment))]
    )
    log.verify()
    with pytest.raises(VerificationError, match=r"'features' of request 'req-2'.*decrypt"):
        log.verify(deep=True)
