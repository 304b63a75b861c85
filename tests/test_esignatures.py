"""Electronic signatures by people (21 CFR Part 11), on both backends.

A signed decision is refused at the time it is made when the signature cannot
be accepted, and ``verify`` later refuses any signed record that slipped in
another way (a rewrite of the database), naming the event. Imported signatures
are refused at append time: see tests/test_imported.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, Policy, PolicyDeniedError, VerificationError
from auditml._internal.keyfiles import PublicKeyFile, generate_key_file, load_signer
from auditml.core.signing import FileSigner, make_esignature
from tests.conftest import drop_triggers, raw_query
from tests.test_tamper import _rewrite

ORIGIN = "bank.example/esign"
ADMIN = "admin@bank.example"
DS = "ds@bank.example"
VAL = "val@bank.example"
EVE = "eve@bank.example"


def _key(tmp_path: Path, name: str) -> FileSigner:
    return generate_key_file(tmp_path / f"{name}.key", b"a passphrase of some length")


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Any:
    """Yield a log with versions 1 and 2 of ``credit`` trained, and VAL's key registered."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with made:
        made.record_training("credit", actor=DS)
        made.record_training("credit", actor=DS)
        made.register_key(
            PublicKeyFile(VAL, "Vera Validator", _key(tmp_path, "val").public_key), actor=ADMIN
        )
        yield made


def _val(tmp_path: Path) -> FileSigner:
    return load_signer(tmp_path / "val.key", b"a passphrase of some length")


def _signature(signer: FileSigner, version: str, actor: str = VAL, **over: Any) -> dict[str, Any]:
    """Return a signature record as make_esignature writes it into an approval's data."""
    fields: dict[str, Any] = {
        "origin": ORIGIN,
        "action": "model.approve",
        "model": "credit",
        "version": version,
        "artifact_sha256": None,
        "meaning": "approval",
        "actor": actor,
        "name": "Vera Validator",
        "at": datetime.now(UTC),
    }
    fields.update(over)
    return make_esignature(signer, **fields).model_dump(mode="json", exclude_none=True)


def _refused(log: AuditLog, seq: int, words: str) -> None:
    with pytest.raises(VerificationError) as info:
        log.verify()
    assert info.value.kind == "signature" and info.value.seq == seq
    assert words in str(info.value)


def test_a_signed_approval_verifies_and_is_in_the_manifest(log: AuditLog, tmp_path: Path) -> None:
    """The approval carries the statement's signature; verify checks it; the manifest lists it."""
    receipt = log.approve("credit", "1", actor=VAL, signer=_val(tmp_path), reason="VR-1")
    report = log.verify()
    assert report.signatures == 1
    (entry,) = log.signatures("credit")
    assert (entry.seq, entry.name, entry.meaning, entry.version) == (
        receipt.seq,
        "Vera Validator",
        "approval",
        "1",
    )


def test_a_signature_by_a_stranger_key_is_refused_and_nothing_changes(
    log: AuditLog, tmp_path: Path
) -> None:
    """Signing with a key nobody registered is denied; only the denial is recorded."""
    before = log.head().size
    with pytest.raises(PolicyDeniedError) as info:
        log.approve("credit", "1", actor=VAL, signer=_key(tmp_path, "stranger"))
    assert info.value.rule == "signature-invalid" and "not registered" in str(info.value)
    assert log.head().size == before + 1
    assert [r.event.action for r in log.events(start=before)] == ["policy.denied"]
    assert log.status("credit")["credit"].version("1").approvals == []


def test_someone_elses_key_is_refused(log: AuditLog, tmp_path: Path) -> None:
    """Eve cannot sign her approval with Vera's key: people sign only their own decisions."""
    with pytest.raises(PolicyDeniedError, match=f"is registered to {VAL}, not {EVE}"):
        log.approve("credit", "1", actor=EVE, signer=_val(tmp_path), name="Vera Validator")


def test_a_revoked_key_is_refused_for_new_decisions(log: AuditLog, tmp_path: Path) -> None:
    """After key.revoke, the key signs nothing more, but what it signed before still verifies."""
    log.approve("credit", "1", actor=VAL, signer=_val(tmp_path))
    log.revoke_key(_fingerprint(tmp_path), actor=ADMIN)
    with pytest.raises(PolicyDeniedError, match="revoked"):
        log.approve("credit", "2", actor=VAL, signer=_val(tmp_path))
    assert log.verify().signatures == 1


def _fingerprint(tmp_path: Path) -> str:
    return PublicKeyFile(VAL, "Vera Validator", _val(tmp_path).public_key).key


def test_policy_can_require_signatures(log: AuditLog, tmp_path: Path) -> None:
    """With require_signatures, an unsigned approval is a denial; a signed one passes."""
    log.apply_policy(Policy(require_signatures=["approve"]), actor=ADMIN)
    with pytest.raises(PolicyDeniedError) as info:
        log.approve("credit", "1", actor=VAL)
    assert info.value.rule == "signature-required"
    assert log.status("credit")["credit"].version("1").approvals == []
    log.approve("credit", "1", actor=VAL, signer=_val(tmp_path))
    assert len(log.status("credit")["credit"].version("1").approvals) == 1


def _rewrite_signed_approval(
    log: AuditLog, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> int:
    """Approve version 1 with Vera's signature, rewrite it by raw SQL, and return its seq."""
    seq = log.approve("credit", "1", actor=VAL, signer=_val(tmp_path)).seq
    drop_triggers(log.url)
    _rewrite(log.url, seq, edit)
    assert raw_query(log.url, "SELECT count(*) FROM auditml_event")[0][0] == log.head().size
    return seq


def test_a_signature_moved_by_a_database_rewrite_is_named(log: AuditLog, tmp_path: Path) -> None:
    """A rewrite moving version 1's signed approval onto version 2 is named by verify."""
    seq = _rewrite_signed_approval(
        log, tmp_path, lambda event: event["subject"].update(version="2")
    )
    with AuditLog.open(log.url) as reopened:
        _refused(reopened, seq, "does not verify for this record")


def test_a_signature_that_is_not_a_record_is_named(log: AuditLog, tmp_path: Path) -> None:
    """A rewrite that turns an approval's signature into a bare string fails verify as malformed."""
    seq = _rewrite_signed_approval(
        log, tmp_path, lambda event: event["data"].update(signature="signed by Vera")
    )
    with AuditLog.open(log.url) as reopened:
        _refused(reopened, seq, "malformed")


def test_only_those_who_may_manage_keys_register_another_persons_key(
    log: AuditLog, tmp_path: Path
) -> None:
    """Under a policy, a developer cannot register a key in a validator's name, nor sign with it."""
    log.apply_policy(
        Policy(
            roles={ADMIN: ["admin"], DS: ["developer"], VAL: ["validator"]},
            permissions={"policy": ["admin"], "approve": ["validator"]},
        ),
        actor=ADMIN,
    )
    forged = _key(tmp_path, "forged-val")
    before = log.head().size
    with pytest.raises(PolicyDeniedError) as info:
        log.register_key(PublicKeyFile(VAL, "Vera Validator", forged.public_key), actor=DS)
    assert info.value.rule == "role" and "key of val@bank.example" in str(info.value)
    assert log.head().size == before + 1  # only the denial
    own = _key(tmp_path, "ds-own")
    log.register_key(PublicKeyFile(DS, "Dana Scientist", own.public_key), actor=DS)
    log.register_key(PublicKeyFile(EVE, "Eve", _key(tmp_path, "eve").public_key), actor=ADMIN)
