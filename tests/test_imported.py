"""Imported history, on both backends: marked in its own bytes, shown as such, never a gate.

``append(..., imported=...)`` records history that happened elsewhere. The
event carries ``data.imported`` in its hashed bytes; a live append cannot fake
the mark; an imported e-signature must verify as a live one does; and no
imported approval, signature, metric, card section, deploy or policy satisfies
a rule a live decision must meet.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditml import (
    AuditLog,
    InvalidInputError,
    Policy,
    PolicyDeniedError,
    build_card,
    build_report,
    render_card,
    render_report,
)
from auditml._internal.keyfiles import PublicKeyFile, generate_key_file, load_signer
from auditml.core.canonical import loads_strict
from auditml.core.events import Draft
from auditml.core.policy import CardRules
from auditml.core.signing import FileSigner, make_esignature
from tests.conftest import raw_query
from tests.test_cli import run

ORIGIN = "bank.example/imported"
ADMIN = "admin@bank.example"
DS = "ds@bank.example"
VAL = "val@bank.example"
VAL2 = "val2@bank.example"
REL = "rel@bank.example"
EVE = "eve@bank.example"
PASS = b"a passphrase of some length"
SUBJECT = {"model": "credit", "version": "1"}
MLFLOW = {
    "source": "mlflow",
    "id": "run-8f2c",
    "uri": "runs:/run-8f2c/model",
    "time": "2025-03-04T05:06:07.000000Z",
    "details": {"model_version": "3", "start_time": 1741064767000},
}


def _key(tmp_path: Path, name: str) -> FileSigner:
    return generate_key_file(tmp_path / f"{name}.key", PASS)


def _val(tmp_path: Path) -> FileSigner:
    return load_signer(tmp_path / "val.key", PASS)


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """Yield a log with version 1 and 2 of ``credit`` trained live, and VAL's key registered."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with made:
        made.record_training("credit", data={"metrics": {"auc": 0.6}}, actor=DS)
        made.record_training("credit", actor=DS)
        made.register_key(
            PublicKeyFile(VAL, "Vera Validator", _key(tmp_path, "val").public_key), actor=ADMIN
        )
        yield made


def _signature(signer: FileSigner, version: str = "1", actor: str = VAL) -> dict[str, Any]:
    """Return an e-signature made for an approval of ``credit`` ``version`` on this log."""
    return make_esignature(
        signer,
        origin=ORIGIN,
        action="model.approve",
        model="credit",
        version=version,
        artifact_sha256=None,
        meaning="approval",
        actor=actor,
        name="Vera Validator",
        at=datetime.now(UTC),
    ).model_dump(mode="json", exclude_none=True)


def _import(
    log: AuditLog,
    action: str,
    data: Any = None,
    actor: str = VAL,
    *,
    subject: dict[str, str] = SUBJECT,
    imported: Any = True,
) -> int:
    """Append one imported event about ``credit`` v1 (or ``subject``) and return its seq."""
    return log.append(action, subject=subject, data=data, actor=actor, imported=imported).seq


def _stored(url: str, seq: int) -> dict[str, Any]:
    """Return event ``seq`` parsed from the ``body`` column read by raw SQL."""
    rows = raw_query(url, f"SELECT body FROM auditml_event WHERE seq = {int(seq)}")
    parsed: dict[str, Any] = loads_strict(bytes(rows[0][0]))
    return parsed


def _refused(log: AuditLog, words: str, call: Callable[[], object]) -> None:
    """Assert ``call`` is refused as bad input naming ``words``, and nothing is written."""
    before = log.head()
    with pytest.raises(InvalidInputError) as info:
        call()
    assert words in str(info.value)
    assert log.head() == before


# -- the mark, in the event's own bytes ------------------------------------------------


def test_imported_true_marks_the_stored_bytes(log: AuditLog, db_url: str) -> None:
    """imported=True writes data.imported = {"source": "unspecified"} into the hashed body."""
    seq = _import(log, "model.retire", {"reason": "old registry"})
    stored = _stored(db_url, seq)
    assert stored["data"] == {"reason": "old registry", "imported": {"source": "unspecified"}}
    assert b'"imported":{"source":"unspecified"}' in next(log.events(start=seq)).body
    assert log.verify(deep=True).size == seq + 1


def test_provenance_is_recorded_apart_from_the_logs_own_time(log: AuditLog, db_url: str) -> None:
    """A provenance mapping is kept whole in data.imported; the envelope time is the import's."""
    seq = _import(log, "model.retire", imported=MLFLOW)
    stored = _stored(db_url, seq)
    assert stored["data"]["imported"] == MLFLOW
    assert stored["time"] != MLFLOW["time"] and stored["time"] >= "2026"


def test_append_many_marks_each_draft_and_keeps_a_drafts_own_mark(
    log: AuditLog, db_url: str
) -> None:
    """Unmarked drafts get the batch's mark; a draft built with its own provenance keeps it."""
    plain = Draft.build("model.retire", actor=VAL, subject=SUBJECT)
    own = Draft.build("model.retire", actor=VAL, subject=SUBJECT, imported=MLFLOW)
    first, second = log.append_many([plain, own], imported={"source": "registry-x"})
    assert _stored(db_url, first.seq)["data"]["imported"] == {"source": "registry-x"}
    assert _stored(db_url, second.seq)["data"]["imported"] == MLFLOW


def test_a_plain_append_cannot_forge_the_mark(log: AuditLog) -> None:
    """A live append is refused, data holding 'imported' too; a marked draft needs imported=True."""
    forged = {"metrics": {"auc": 0.9}, "imported": {"source": "mlflow"}}
    _refused(
        log,
        "model.evaluate is checked against policy",
        lambda: log.append("model.evaluate", subject=SUBJECT, data=forged, actor=VAL),
    )
    marked = Draft.build("model.evaluate", actor=VAL, subject=SUBJECT, imported=True)
    _refused(log, "must be appended with imported=True", lambda: log.append_many([marked]))
    with pytest.raises(InvalidInputError, match=r"data\.imported is the mark"):
        Draft.build("model.evaluate", actor=VAL, subject=SUBJECT, data=forged)


def test_imported_data_cannot_also_carry_its_own_mark(log: AuditLog) -> None:
    """Even with imported=True, data may not hold the mark: provenance goes in imported=."""
    _refused(
        log,
        "data.imported is the mark",
        lambda: log.append(
            "model.retire", subject=SUBJECT, data={"imported": {"source": "x"}}, imported=True
        ),
    )


def test_a_live_decision_cannot_carry_the_mark(log: AuditLog) -> None:
    """A live training run whose data claims to be imported is refused; nothing is written."""
    forged = {"metrics": {"auc": 0.9}, "imported": {"source": "mlflow"}}
    _refused(
        log,
        "data.imported is the mark",
        lambda: log.record_training("credit", version="9", data=forged, actor=DS),
    )
    assert "9" not in log.status("credit")["credit"].versions


def test_bad_provenance_is_refused_and_writes_nothing(log: AuditLog) -> None:
    """Provenance without a source, or of the wrong type, is bad input naming what is wrong."""
    _refused(log, "source", lambda: _import(log, "model.retire", imported={"id": "run-1"}))
    _refused(
        log, "imported must be True or a mapping", lambda: _import(log, "model.retire", imported=3)
    )


# -- approvals and e-signatures ----------------------------------------------------------


def _deploy_refused(log: AuditLog, rule: str, words: str, env: str = "production") -> None:
    """Assert a deploy of credit v1 is denied by ``rule``, and v1 runs nowhere after it."""
    with pytest.raises(PolicyDeniedError) as info:
        log.deploy("credit", "1", env, actor=REL)
    assert info.value.rule == rule and words in str(info.value)
    assert log.status("credit")["credit"].version("1").running_in == []


def test_an_unsigned_imported_approval_shows_but_does_not_count(log: AuditLog) -> None:
    """The approval is in the state (marked imported), yet a deploy needs a live one."""
    _import(log, "model.approve", {"reason": "approved in the old registry"})
    vs = log.status("credit")["credit"].version("1")
    assert vs.as_dict()["approved_by_imported"] == [VAL] and vs.state == "approved"
    assert vs.live_approvals == []
    _deploy_refused(log, "approval-required", "has no approval for production")
    log.approve("credit", "1", actor=VAL)
    assert log.deploy("credit", "1", "production", actor=REL).seq > 0


def test_imported_approvals_do_not_make_up_the_count(log: AuditLog) -> None:
    """With two approvals needed, one live and one imported approval (another person) fall short."""
    log.apply_policy(Policy(approvals={"default": 1, "production": 2}), actor=ADMIN)
    log.approve("credit", "1", actor=VAL)
    _import(log, "model.approve", actor=VAL2)
    _deploy_refused(log, "approval-required", "has 1 distinct approval(s) for production")
    log.approve("credit", "1", actor=VAL2)
    assert log.deploy("credit", "1", "production", actor=REL).seq > 0


def test_a_valid_imported_signature_is_kept_but_does_not_satisfy_require_signatures(
    log: AuditLog, tmp_path: Path
) -> None:
    """Under require_signatures a signed imported approval verifies, is listed, never counts."""
    log.apply_policy(Policy(require_signatures=["approve"]), actor=ADMIN)
    seq = _import(log, "model.approve", {"signature": _signature(_val(tmp_path))})
    assert log.verify().signatures == 1
    assert [e.seq for e in log.signatures("credit")] == [seq]
    _deploy_refused(log, "approval-required", "has no approval for production")
    with pytest.raises(PolicyDeniedError) as info:
        log.approve("credit", "1", actor=VAL)
    assert info.value.rule == "signature-required"
    log.approve("credit", "1", actor=VAL, signer=_val(tmp_path))
    assert log.deploy("credit", "1", "production", actor=REL).seq > 0


def test_an_unsigned_imported_approval_under_require_signatures_does_not_count(
    log: AuditLog,
) -> None:
    """No signature at all under require_signatures: accepted as history, never counted."""
    log.apply_policy(Policy(require_signatures=True), actor=ADMIN)
    _import(log, "model.approve", {"reason": "no signature"})
    _deploy_refused(log, "approval-required", "has no approval for production")


def test_a_forged_imported_signature_is_refused_at_append(log: AuditLog, tmp_path: Path) -> None:
    """A stranger's signature claiming Vera's registered key is refused; nothing is written."""
    forged = _signature(_key(tmp_path, "mallory"))
    forged["key"] = PublicKeyFile(VAL, "Vera", _val(tmp_path).public_key).key
    _refused(
        log,
        "does not verify for this record",
        lambda: _import(log, "model.approve", {"signature": forged}),
    )


def test_a_replayed_signature_is_refused_at_append(log: AuditLog, tmp_path: Path) -> None:
    """Vera's live signature on version 1, imported onto version 2, is refused."""
    log.approve("credit", "1", actor=VAL, signer=_val(tmp_path))
    original = next(log.events(action="model.approve")).event.data["signature"]
    subject = {"model": "credit", "version": "2"}
    _refused(
        log,
        "does not verify for this record",
        lambda: _import(log, "model.approve", {"signature": original}, subject=subject),
    )


def test_a_copied_signature_is_refused_at_append(log: AuditLog, tmp_path: Path) -> None:
    """A signature copied onto another approval (after a live one, or in one batch) is refused."""
    log.approve("credit", "1", actor=VAL, signer=_val(tmp_path))
    original = next(log.events(action="model.approve")).event.data["signature"]
    _refused(
        log,
        "is a copy of the one on event",
        lambda: _import(log, "model.approve", {"signature": original}),
    )
    fresh = _signature(_val(tmp_path), "2")
    twice = [
        Draft.build(
            "model.approve",
            actor=VAL,
            subject={"model": "credit", "version": "2"},
            data={"signature": fresh},
        )
    ] * 2
    _refused(log, "is a copy of the one on event", lambda: log.append_many(twice, imported=True))


def test_an_unregistered_key_is_refused_at_append(log: AuditLog, tmp_path: Path) -> None:
    """A well-formed signature by a key never registered on the log is refused."""
    signature = _signature(_key(tmp_path, "unknown"))
    _refused(log, "not registered", lambda: _import(log, "model.approve", {"signature": signature}))


def test_a_revoked_key_is_refused_at_append(log: AuditLog, tmp_path: Path) -> None:
    """Once Vera's key is revoked, an imported approval signed with it is refused."""
    log.revoke_key(PublicKeyFile(VAL, "Vera", _val(tmp_path).public_key).key, actor=ADMIN)
    signature = _signature(_val(tmp_path))
    _refused(
        log, "revoked at event", lambda: _import(log, "model.approve", {"signature": signature})
    )


def test_an_imported_key_cannot_sign_a_live_decision(log: AuditLog, tmp_path: Path) -> None:
    """A key registered by imported history verifies imported signatures, not live ones."""
    mallory = _key(tmp_path, "mallory")
    record = PublicKeyFile(VAL, "Vera", mallory.public_key)
    _import(log, "key.register", json.loads(record.to_json()), actor=EVE, subject={"signer": VAL})
    _import(log, "model.approve", {"signature": _signature(mallory)})
    with pytest.raises(PolicyDeniedError) as info:
        log.approve("credit", "2", actor=VAL, signer=mallory, name="Vera")
    assert info.value.rule == "signature-invalid" and "imported history" in str(info.value)
    log.register_key(record, actor=ADMIN)  # registered live, it signs from now on
    log.approve("credit", "2", actor=VAL, signer=mallory, name="Vera")
    assert log.verify().signatures == 2


def test_an_imported_revocation_of_a_live_key_is_refused(log: AuditLog, tmp_path: Path) -> None:
    """Revoking a live key is a live decision: an imported key.revoke of one writes nothing."""
    key = PublicKeyFile(VAL, "Vera", _val(tmp_path).public_key).key
    _refused(
        log,
        "was registered live",
        lambda: _import(log, "key.revoke", {"signer": VAL, "key": key}, subject={"signer": VAL}),
    )
    log.approve("credit", "1", actor=VAL, signer=_val(tmp_path))


# -- policy ------------------------------------------------------------------------------

LOCKED = Policy(
    roles={ADMIN: ["admin"], VAL: ["validator"], VAL2: ["validator"]},
    permissions={"policy": ["admin"], "approve": ["validator"]},
    approvals={"default": 1, "production": 2},
)


def test_an_imported_policy_update_cannot_undo_a_locked_policy(log: AuditLog) -> None:
    """A locked policy stays in force after an imported default policy: a deploy still needs 2."""
    locked_seq = log.apply_policy(LOCKED, actor=ADMIN).seq
    imported_seq = _import(
        log, "policy.update", {"policy": Policy().as_data()}, actor=EVE, subject={}
    )
    assert log.policy() == (LOCKED, locked_seq)
    log.approve("credit", "1", actor=VAL)
    _deploy_refused(log, "approval-required", "has 1 distinct approval(s) for production")
    with pytest.raises(PolicyDeniedError) as info:
        log.apply_policy(Policy(), actor=EVE)
    assert info.value.rule == "role"
    denial = next(log.events(action="policy.denied", newest_first=True)).event.data
    assert denial["policy_seq"] == locked_seq != imported_seq


def test_an_imported_policy_is_never_in_force(log: AuditLog) -> None:
    """With no live policy, an imported one that drops all approvals leaves the default in force."""
    _import(
        log,
        "policy.update",
        {"policy": Policy(approvals={"default": 0}).as_data()},
        actor=EVE,
        subject={},
    )
    assert log.policy()[1] is None
    _deploy_refused(log, "approval-required", "has no approval for production")
    log.apply_policy(Policy(approvals={"default": 0}), actor=ADMIN)
    assert log.deploy("credit", "1", "production", actor=REL).seq > 0


# -- gates, cards and rollback -----------------------------------------------------------


def test_imported_metrics_do_not_pass_a_gate(log: AuditLog) -> None:
    """An imported evaluation of auc 0.99 shows in state but the gate sees only live 0.6."""
    log.apply_policy(Policy(gates={"production": ["auc >= 0.8"]}), actor=ADMIN)
    log.approve("credit", "1", actor=VAL)
    _import(log, "model.evaluate", {"metrics": {"auc": 0.99}})
    assert log.status("credit")["credit"].version("1").evaluated == {"auc": 0.99}
    _deploy_refused(log, "metric-gate", "auc is 0.6")
    log.evaluate("credit", "1", metrics={"auc": 0.85}, actor=VAL)
    assert log.deploy("credit", "1", "production", actor=REL).seq > 0


def test_an_imported_training_run_passes_no_gate(log: AuditLog) -> None:
    """A version trained only by import has no live metric, so the gate refuses it."""
    log.apply_policy(Policy(gates={"production": ["auc >= 0.8"]}), actor=ADMIN)
    subject = {"model": "credit", "version": "7"}
    _import(log, "model.train", {"metrics": {"auc": 0.95}}, actor=DS, subject=subject)
    log.approve("credit", "7", actor=VAL)
    with pytest.raises(PolicyDeniedError) as info:
        log.deploy("credit", "7", "production", actor=REL)
    assert info.value.rule == "metric-gate" and "has no recorded value" in str(info.value)


def test_imported_card_sections_do_not_complete_a_card(log: AuditLog) -> None:
    """A card filled in only by an imported card.update does not meet complete_for."""
    rules = CardRules(required=["intended_use"], complete_for=["production"])
    log.apply_policy(Policy(cards=rules), actor=ADMIN)
    log.approve("credit", "1", actor=VAL)
    _import(log, "card.update", {"sections": {"intended_use": "x"}}, subject={"model": "credit"})
    _deploy_refused(log, "card-incomplete", "missing intended_use")
    log.update_card("credit", {"intended_use": "Rank applications."}, actor=VAL)
    assert log.deploy("credit", "1", "production", actor=REL).seq > 0


def test_an_imported_deploy_shows_where_it_ran_but_is_no_rollback_target(log: AuditLog) -> None:
    """Status and history show the imported deploy; a rollback may not go back to it."""
    _import(log, "model.approve", actor=VAL)
    _import(log, "model.deploy", {"environment": "production"}, actor=REL)
    state = log.status("credit")["credit"]
    assert state.running == {"production": "1"} and state.running_imported() == ["production"]
    assert [(m.version, m.imported) for m in log.history("credit")] == [("1", True)]
    log.approve("credit", "2", actor=VAL)
    log.deploy("credit", "2", "production", actor=REL)
    with pytest.raises(PolicyDeniedError) as info:
        log.rollback("credit", "production", actor=REL)
    assert info.value.rule == "rollback-target"
    with pytest.raises(PolicyDeniedError) as info:
        log.rollback("credit", "production", to="1", actor=REL)
    assert "never ran in production except in imported history" in str(info.value)
    assert log.status("credit")["credit"].running == {"production": "2"}


def test_imported_restrictions_still_hold(log: AuditLog) -> None:
    """An imported rejection still makes the version undeployable: it only restricts."""
    log.approve("credit", "1", actor=VAL)
    _import(log, "model.reject", {"reason": "failed validation in the old registry"})
    _deploy_refused(log, "rejected", "was rejected by")


# -- every output shows it ---------------------------------------------------------------


@pytest.fixture
def history(log: AuditLog, tmp_path: Path) -> AuditLog:
    """Add imported history to the log: an evaluation, a signed approval, a deploy, a policy."""
    _import(log, "model.evaluate", {"metrics": {"auc": 0.99}}, actor=VAL)
    _import(log, "model.approve", {"signature": _signature(_val(tmp_path))}, imported=MLFLOW)
    _import(log, "model.deploy", {"environment": "production"}, actor=REL)
    _import(log, "policy.update", {"policy": Policy().as_data()}, actor=EVE, subject={})
    log.approve("credit", "2", actor=VAL2, reason="live")
    return log


def test_log_marks_imported_events_in_table_and_json(
    history: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log table has an imported column and a note; --json says imported per event."""
    code, out, _ = run(["log", "--db", history.url, "--action", "model.approve"], capsys)
    assert code == 0
    assert "imported from mlflow" in out and "1 event(s) marked imported" in out
    assert "not evidence auditml checked" in out
    code, out, _ = run(["log", "--db", history.url, "--action", "model.approve", "--json"], capsys)
    items = json.loads(out)
    assert [i["imported"] for i in items] == [True, False]
    assert items[0]["event"]["data"]["imported"] == MLFLOW


def test_status_and_history_mark_imported_history(
    history: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """Status tags the imported approval and run; history has an imported column; JSON says so."""
    code, out, _ = run(["status", "credit", "--db", history.url], capsys)
    assert code == 0
    assert "production: v1 (imported)" in out and f"{VAL} (imported)" in out
    assert "(imported): imported history was recorded elsewhere" in out
    code, out, _ = run(["status", "credit", "--json", "--db", history.url], capsys)
    (state,) = json.loads(out)
    assert state["running_imported"] == ["production"]
    assert [v["approved_by_imported"] for v in state["versions"]] == [[VAL], []]
    code, out, _ = run(["history", "credit", "--json", "--db", history.url], capsys)
    assert [m["imported"] for m in json.loads(out)] == [True]
    code, out, _ = run(["history", "credit", "--db", history.url], capsys)
    assert code == 0 and "imported: imported history was recorded elsewhere" in out


def test_policy_show_names_imported_updates_as_history_only(
    history: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """`policy show` prints the default in force and lists the imported update as not in force."""
    seq = next(history.events(action="policy.update")).seq
    code, out, _ = run(["policy", "show", "--json", "--db", history.url], capsys)
    assert code == 0 and json.loads(out)["seq"] is None
    assert json.loads(out)["imported"] == [seq]
    code, out, _ = run(["policy", "show", "--db", history.url], capsys)
    assert f"Imported policy updates (events {seq}) are history only and never in force" in out


def test_the_model_card_marks_imported_items_and_gates_on_live_metrics(
    history: AuditLog,
) -> None:
    """Card JSON flags imported decisions, moves, metrics and bound events; md says so too."""
    history.apply_policy(Policy(gates={"production": ["auc >= 0.8"]}), actor=ADMIN)
    card = build_card(history, "credit", "1")
    assert [d.imported for d in card.decisions] == [True]
    assert [m.imported for m in card.deployments] == [True]
    assert {m.name: m.imported for m in card.metrics if m.source == "evaluation"} == {"auc": True}
    assert sum(e.imported for e in card.binding.events) == 3
    assert card.imported_note is not None and card.imported_note.startswith("3 of these events")
    (gate,) = card.gates
    assert (gate.value, gate.passed) == (0.6, False)
    md = render_card(card, "md").decode()
    assert "**Imported history:** 3 of these events are imported" in md
    assert "| approve (imported) |" in md and "| deploy (imported) |" in md
    html = render_card(card, "html").decode()
    assert "1 imported</span>" in html and "Imported history: 3 of these events" in html
    bom = json.loads(render_card(card, "cyclonedx"))
    props = {p["name"]: p["value"] for p in bom["components"][0]["properties"]}
    assert props["auditml:imported"].startswith("3 of these events")


def test_the_audit_report_marks_imported_history(history: AuditLog) -> None:
    """The report counts imported events on its cover, flags each entry, and keeps live policy."""
    report = build_report(history)
    assert report.imported_events == 4 and report.imported_note is not None
    assert report.risk.policy_seq is None
    assert [(d.actor, d.imported) for d in report.approvals] == [(VAL, True), (VAL2, False)]
    assert [s.imported for s in report.signatures] == [True]
    assert [e.imported for e in report.evaluations] == [1]
    (v1,) = [v for v in report.inventory if v.version == "1"]
    assert v1.approved_by == [f"{VAL} (imported)"] and v1.running_in == ["production (imported)"]
    md = render_report(report, "md").decode()
    assert "| Imported history | 4 event\\(s\\) in scope are imported" in md  # md-escaped
    assert "model.approve \\(imported\\)" in md and "model.deploy \\(imported\\)" in md
    html = render_report(report, "html").decode()
    assert "<th>Imported history</th>" in html


def test_an_imported_run_does_not_replace_a_live_failed_training(log: AuditLog) -> None:
    """A version whose live training failed stays failed after an imported successful run."""
    log.record_training(
        "credit",
        version="5",
        data={"status": "failed", "error": {"type": "E", "message": "OOM"}},
        actor=DS,
    )
    subject = {"model": "credit", "version": "5"}
    _import(log, "model.train", {"metrics": {"auc": 0.9}}, actor=EVE, subject=subject)
    vs = log.status("credit")["credit"].version("5")
    assert (vs.state, vs.trained_imported, vs.trainers) == ("failed", False, [DS, EVE])
    with pytest.raises(PolicyDeniedError) as info:
        log.approve("credit", "5", actor=VAL)
    assert info.value.rule == "failed-training"


def test_a_live_deploy_may_replace_an_imported_run_of_the_same_version(log: AuditLog) -> None:
    """Once approved live, the version imported as running can be deployed there live."""
    _import(log, "model.deploy", {"environment": "production"}, actor=REL)
    log.approve("credit", "1", actor=VAL)
    log.deploy("credit", "1", "production", actor=REL)
    state = log.status("credit")["credit"]
    assert state.running == {"production": "1"} and state.running_imported() == []
    assert [m.imported for m in state.history()] == [True, False]


def test_signatures_and_key_list_mark_imported_entries(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signature manifest and the key list tag imported entries, and JSON says so."""
    _import(log, "model.approve", {"signature": _signature(_val(tmp_path))})
    code, out, _ = run(["signatures", "--db", log.url], capsys)
    assert code == 0 and "approve (imported)" in out and "(imported): imported history" in out
    code, out, _ = run(["signatures", "--json", "--db", log.url], capsys)
    assert [e["imported"] for e in json.loads(out)] == [True]
    stranger = PublicKeyFile(VAL2, "Val Two", _key(tmp_path, "val2").public_key)
    _import(
        log, "key.register", json.loads(stranger.to_json()), actor=EVE, subject={"signer": VAL2}
    )
    code, out, _ = run(["key", "list", "--json", "--db", log.url], capsys)
    assert [k["imported"] for k in json.loads(out)] == [False, True]
    code, out, _ = run(["key", "list", "--db", log.url], capsys)
    assert "(imported)" in out and "such a key signs no live decision" in out


def test_imported_card_sections_are_shown_but_complete_nothing(log: AuditLog) -> None:
    """A required section written only by import shows, marked, and is still missing."""
    rules = CardRules(required=["intended_use"], complete_for=["production"])
    log.apply_policy(Policy(cards=rules), actor=ADMIN)
    _import(log, "card.update", {"sections": {"intended_use": "x"}}, subject={"model": "credit"})
    card = build_card(log, "credit", "1")
    assert card.sections.intended_use == "x" and card.imported_sections == ["intended_use"]
    assert card.completeness.missing == ["intended_use"] and card.completeness.score == 0
    assert "### Intended use (required by policy) (imported)" in render_card(card, "md").decode()
