"""Lifecycle decisions against policy, on both backends: allowed, refused, and the state after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError

DS = "ds@bank.example"  # trains
VAL = "val@bank.example"  # validates
VAL2 = "val2@bank.example"
REL = "rel@bank.example"  # releases
OFF = "off@bank.example"  # changes policy


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a fresh log holding only its init event."""
    created, _ = AuditLog.init(db_url, origin="test.example/lifecycle", actor=OFF)
    with created:
        yield created


def trained(log: AuditLog, *versions: str, metrics: dict[str, float] | None = None) -> None:
    """Record successful training runs of model ``m``."""
    for version in versions:
        log.record_training("m", version=version, data={"metrics": metrics or {}}, actor=DS)


def approved_and_running(log: AuditLog, *versions: str, env: str = "prod") -> None:
    """Approve and deploy each version in turn."""
    for version in versions:
        log.approve("m", version, actor=VAL)
        log.deploy("m", version, env, actor=REL)


def denials(log: AuditLog) -> list[dict[str, object]]:
    """Return the data of every policy.denied event."""
    return [r.event.data for r in log.events(action="policy.denied")]


def size(log: AuditLog) -> int:
    """Return the log's size."""
    return log.head().size


# -- training and versions -----------------------------------------------------


def test_next_version_read_incrementally_equals_a_scan_of_every_version() -> None:
    """next_version, reading only versions added since its last call, equals a full scan.

    Numbered and named versions arrive in any order; a versions dict that shrank is read
    again from the start.
    """
    from auditml.core.state import ModelState

    def scanned(state: ModelState) -> str:
        return str(max((int(v) for v in state.versions if v.isdigit()), default=0) + 1)

    state = ModelState("m")
    assert state.next_version() == scanned(state) == "1"
    for version in ["3", "rc-1", "10", "2", "007", "beta", "11", "9"]:
        state.versions[version] = None  # type: ignore[assignment]
        assert state.next_version() == scanned(state), version
    assert state.next_version() == "12"
    del state.versions["11"], state.versions["10"], state.versions["beta"]
    assert state.next_version() == scanned(state) == "10"


def test_versions_are_assigned_per_model_and_returned(log: AuditLog) -> None:
    """Without a version each run gets the next number of its own model, named in the receipt."""
    assert log.record_training("m", actor=DS).version == "1"
    assert log.record_training("m", actor=DS).version == "2"
    assert log.record_training("other", actor=DS).version == "1"
    assert log.record_training("m", version="7", actor=DS).version == "7"
    assert log.record_training("m", actor=DS).version == "8"


def test_training_an_existing_version_is_refused_and_writes_nothing(log: AuditLog) -> None:
    """A second run of a version that trained fine is bad input: nothing is written."""
    trained(log, "1")
    before = size(log)
    with pytest.raises(InvalidInputError, match="already trained"):
        log.record_training("m", version="1", actor=DS)
    assert size(log) == before


def test_a_failed_version_may_be_trained_again(log: AuditLog) -> None:
    """A version whose run failed can be retrained, and the good run decides its state."""
    log.record_training(
        "m",
        version="1",
        data={"status": "failed", "error": {"type": "E", "message": "x"}},
        actor=DS,
    )
    assert log.status("m")["m"].versions["1"].state == "failed"
    trained(log, "1")
    assert log.status("m")["m"].versions["1"].state == "trained"


# -- approvals ---------------------------------------------------------------------


def test_self_approval_is_refused_and_recorded_as_a_denial(log: AuditLog) -> None:
    """The trainer may not approve its own version; the attempt is a policy.denied event only."""
    trained(log, "1")
    before = size(log)
    with pytest.raises(PolicyDeniedError) as caught:
        log.approve("m", "1", actor=DS)
    assert caught.value.rule == "separation-of-duties"
    assert caught.value.seq == before
    assert size(log) == before + 1
    assert [d["rule"] for d in denials(log)] == ["separation-of-duties"]
    assert denials(log)[0]["attempted"] == "model.approve"
    assert log.status("m")["m"].versions["1"].approvals == []


def test_self_approval_is_allowed_when_separation_of_duties_is_off(log: AuditLog) -> None:
    """With separation_of_duties = false, the trainer's approval counts."""
    log.apply_policy(Policy(separation_of_duties=False), actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=DS)
    log.deploy("m", "1", "prod", actor=REL)
    assert log.status("m")["m"].running == {"prod": "1"}


def test_approving_unknown_model_or_version_writes_nothing(log: AuditLog) -> None:
    """Unknown models and versions are bad input, named in the error, and write nothing."""
    trained(log, "1")
    before = size(log)
    with pytest.raises(InvalidInputError, match="no model 'nope'"):
        log.approve("nope", "1", actor=VAL)
    with pytest.raises(InvalidInputError, match=r"no version '9'.*known versions: 1"):
        log.approve("m", "9", actor=VAL)
    with pytest.raises(InvalidInputError):
        log.deploy("m", "9", "prod", actor=REL)
    with pytest.raises(InvalidInputError):
        log.rollback("nope", "prod", actor=REL)
    assert size(log) == before


def test_a_failed_run_cannot_be_approved(log: AuditLog) -> None:
    """A version whose training failed is refused approval by the failed-training rule."""
    log.record_training(
        "m", data={"status": "failed", "error": {"type": "E", "message": "x"}}, actor=DS
    )
    with pytest.raises(PolicyDeniedError) as caught:
        log.approve("m", "1", actor=VAL)
    assert caught.value.rule == "failed-training"


# -- deploys -------------------------------------------------------------------


def test_deploying_an_unapproved_version_is_refused(log: AuditLog) -> None:
    """No deploy without approval: the refusal changes no state and is recorded."""
    trained(log, "1")
    before = size(log)
    with pytest.raises(PolicyDeniedError) as caught:
        log.deploy("m", "1", "prod", actor=REL)
    assert caught.value.rule == "approval-required"
    assert "auditml approve" in caught.value.remedy
    assert log.status("m")["m"].running == {}
    assert size(log) == before + 1
    assert denials(log)[0]["environment"] == "prod"


def test_deploy_records_what_it_replaced(log: AuditLog) -> None:
    """Each deploy says which version it replaced in that environment."""
    trained(log, "1", "2")
    approved_and_running(log, "1", "2")
    deploys = [r.event.data for r in log.events(action="model.deploy")]
    assert [d.get("replaces") for d in deploys] == [None, "1"]
    state = log.status("m")["m"]
    assert state.running == {"prod": "2"}
    assert state.versions["1"].running_in == []


def test_deploying_what_already_runs_is_bad_input(log: AuditLog) -> None:
    """Deploying the version that already runs there writes nothing."""
    trained(log, "1")
    approved_and_running(log, "1")
    before = size(log)
    with pytest.raises(InvalidInputError, match="already runs in prod"):
        log.deploy("m", "1", "prod", actor=REL)
    assert size(log) == before


def test_rejected_and_retired_versions_cannot_be_deployed(log: AuditLog) -> None:
    """A rejection or a retirement blocks deploys, by the rules rejected and retired."""
    trained(log, "1", "2")
    log.approve("m", "1", actor=VAL)
    log.reject("m", "1", reason="leaks the label", actor=VAL)
    log.approve("m", "2", actor=VAL)
    log.retire("m", "2", actor=VAL)
    for version, rule in (("1", "rejected"), ("2", "retired")):
        with pytest.raises(PolicyDeniedError) as caught:
            log.deploy("m", version, "prod", actor=REL)
        assert caught.value.rule == rule
    assert log.status("m")["m"].running == {}


def test_approval_for_one_environment_does_not_cover_another(log: AuditLog) -> None:
    """An approval scoped to staging does not allow a production deploy."""
    trained(log, "1")
    log.approve("m", "1", environments=["staging"], actor=VAL)
    log.deploy("m", "1", "staging", actor=REL)
    with pytest.raises(PolicyDeniedError, match="no approval for prod"):
        log.deploy("m", "1", "prod", actor=REL)


def test_distinct_approvals_per_environment(log: AuditLog) -> None:
    """Two approvals for prod must come from two people; staging needs one."""
    log.apply_policy(Policy(approvals={"default": 1, "prod": 2}), actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=VAL)
    log.approve("m", "1", actor=VAL)  # the same person twice still counts once
    log.deploy("m", "1", "staging", actor=REL)
    with pytest.raises(PolicyDeniedError) as caught:
        log.deploy("m", "1", "prod", actor=REL)
    assert "1 distinct approval(s) for prod, and 2 are needed" in str(caught.value)
    log.approve("m", "1", actor=VAL2)
    log.deploy("m", "1", "prod", actor=REL)


def test_metric_gates_are_checked_against_recorded_metrics(log: AuditLog) -> None:
    """A production gate refuses a version below it; an evaluation that meets it lets it pass."""
    log.apply_policy(Policy(gates={"prod": ["auc >= 0.8"]}), actor=OFF)
    trained(log, "1", metrics={"auc": 0.75})
    log.approve("m", "1", actor=VAL)
    log.deploy("m", "1", "staging", actor=REL)  # no gate there
    with pytest.raises(PolicyDeniedError) as caught:
        log.deploy("m", "1", "prod", actor=REL)
    assert caught.value.rule == "metric-gate"
    assert "auc is 0.75" in str(caught.value)
    log.evaluate("m", "1", metrics={"auc": 0.83}, actor=VAL)
    log.deploy("m", "1", "prod", actor=REL)


def test_a_missing_gated_metric_is_refused(log: AuditLog) -> None:
    """A gate on a metric the version never recorded refuses, saying it has no value."""
    log.apply_policy(Policy(gates={"default": ["recall > 0.5"]}), actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=VAL)
    with pytest.raises(PolicyDeniedError, match="recall has no recorded value"):
        log.deploy("m", "1", "anywhere", actor=REL)


def test_undeclared_environment_is_bad_input(log: AuditLog) -> None:
    """When the policy declares environments, another name is refused and writes nothing."""
    log.apply_policy(Policy(environments=["staging", "production"]), actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=VAL)
    before = size(log)
    with pytest.raises(InvalidInputError, match="unknown environment 'prod'"):
        log.deploy("m", "1", "prod", actor=REL)
    assert size(log) == before


# -- rollbacks ---------------------------------------------------------------------


def test_rollback_goes_to_the_previous_version_and_history_shows_it(log: AuditLog) -> None:
    """By default a rollback returns to the version that ran before; status and history agree."""
    trained(log, "1", "2")
    approved_and_running(log, "1", "2")
    receipt = log.rollback("m", "prod", reason="incident", actor=REL)
    assert receipt.version == "1"
    state = log.status("m")["m"]
    assert state.running == {"prod": "1"}
    assert state.versions["1"].state == "deployed"
    assert state.versions["2"].state == "approved"
    moves = log.history("m", "prod")
    assert [(m.action, m.version, m.replaces) for m in moves] == [
        ("model.deploy", "1", None),
        ("model.deploy", "2", "1"),
        ("model.rollback", "1", "2"),
    ]
    assert log.history("m", "staging") == []


def test_rollback_to_a_never_deployed_version_is_refused(log: AuditLog) -> None:
    """A rollback target must have run in that environment: refused and recorded otherwise."""
    trained(log, "1", "2", "3")
    approved_and_running(log, "1", "2")
    log.approve("m", "3", actor=VAL)
    with pytest.raises(PolicyDeniedError) as caught:
        log.rollback("m", "prod", to="3", actor=REL)
    assert caught.value.rule == "rollback-target"
    assert "never ran in prod" in str(caught.value)
    assert log.status("m")["m"].running == {"prod": "2"}
    assert denials(log)[-1]["attempted"] == "model.rollback"


def test_rollback_to_a_version_no_longer_approved_is_refused(log: AuditLog) -> None:
    """A version rejected since it ran is not a rollback target."""
    trained(log, "1", "2")
    approved_and_running(log, "1", "2")
    log.reject("m", "1", reason="bias found", actor=VAL)
    with pytest.raises(PolicyDeniedError, match="no earlier version"):
        log.rollback("m", "prod", actor=REL)
    with pytest.raises(PolicyDeniedError, match="is rejected now"):
        log.rollback("m", "prod", to="1", actor=REL)


def test_rollback_with_nothing_running_is_bad_input(log: AuditLog) -> None:
    """Rolling back an environment where nothing runs writes nothing."""
    trained(log, "1")
    before = size(log)
    with pytest.raises(InvalidInputError, match="nothing to roll back"):
        log.rollback("m", "prod", actor=REL)
    assert size(log) == before


def test_a_running_version_cannot_be_retired(log: AuditLog) -> None:
    """Retiring a version that still runs is refused by the still-running rule."""
    trained(log, "1")
    approved_and_running(log, "1")
    with pytest.raises(PolicyDeniedError) as caught:
        log.retire("m", "1", actor=VAL)
    assert caught.value.rule == "still-running"


# -- roles, reasons and the policy itself ------------------------------------------


ROLES = Policy(
    roles={DS: ["dev"], VAL: ["validator"], REL: ["release"], OFF: ["officer"]},
    permissions={
        "train": ["dev"],
        "evaluate": ["dev", "validator"],
        "approve": ["validator"],
        "reject": ["validator"],
        "deploy": ["release"],
        "rollback": ["release"],
        "retire": ["validator"],
        "policy": ["officer"],
    },
)


@pytest.mark.parametrize(
    ("attempt", "permission"),
    [
        (lambda log: log.record_training("m", actor=VAL), "train"),
        (lambda log: log.evaluate("m", "1", metrics={"auc": 1.0}, actor=REL), "evaluate"),
        (lambda log: log.approve("m", "1", actor=REL), "approve"),
        (lambda log: log.reject("m", "1", actor=DS), "reject"),
        (lambda log: log.deploy("m", "2", "prod", actor=VAL), "deploy"),
        (lambda log: log.rollback("m", "prod", actor=VAL), "rollback"),
        (lambda log: log.retire("m", "2", actor=REL), "retire"),
        (lambda log: log.apply_policy(Policy(), actor=VAL), "change the policy"),
    ],
)
def test_roles_restrict_each_action(log: AuditLog, attempt, permission: str) -> None:  # type: ignore[no-untyped-def]
    """Each permission refuses an actor without the role, recording the denial."""
    log.apply_policy(ROLES, actor=OFF)
    trained(log, "1", "2")
    log.approve("m", "1", actor=VAL)
    log.approve("m", "2", actor=VAL)
    log.deploy("m", "2", "prod", actor=REL)
    log.deploy("m", "1", "prod", actor=REL)
    before = log.status("m")["m"].as_dict()
    with pytest.raises(PolicyDeniedError) as caught:
        attempt(log)
    assert caught.value.rule == "role"
    assert f"may not {permission}" in str(caught.value)
    assert log.status("m")["m"].as_dict() == before
    assert denials(log)[-1]["rule"] == "role"


@pytest.mark.parametrize(
    "spelling", ["Val@Bank.Example", " val@bank.example", "val\u200b@bank.example"]
)
def test_a_role_holds_under_any_spelling_of_the_id(log: AuditLog, spelling: str) -> None:
    """[roles] ids match as people are counted: case, spaces and invisibles aside."""
    log.apply_policy(ROLES, actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=spelling)  # the validator's role, typed another way
    with pytest.raises(PolicyDeniedError, match="may not approve"):
        log.approve("m", "1", actor="vel@bank.example")  # a different person still has none


def test_roles_are_recorded_on_decisions(log: AuditLog) -> None:
    """An approval records the role it was made in and the policy event in force."""
    receipt = log.apply_policy(ROLES, actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=VAL)
    data = next(log.events(action="model.approve")).event.data
    assert data["role"] == "validator"
    assert data["policy_seq"] == receipt.seq


def test_required_reasons(log: AuditLog) -> None:
    """require_reason refuses a listed decision without a reason, and allows it with one."""
    log.apply_policy(Policy(require_reason=["deploy"]), actor=OFF)
    trained(log, "1")
    log.approve("m", "1", actor=VAL)  # approve is not listed
    with pytest.raises(PolicyDeniedError) as caught:
        log.deploy("m", "1", "prod", actor=REL)
    assert caught.value.rule == "reason-required"
    log.deploy("m", "1", "prod", reason="go-live", actor=REL)


def test_require_reason_true_covers_every_decision(log: AuditLog) -> None:
    """require_reason = true refuses even an approval without a reason."""
    log.apply_policy(Policy(require_reason=True), actor=OFF)
    trained(log, "1")
    with pytest.raises(PolicyDeniedError, match="must give a reason"):
        log.approve("m", "1", actor=VAL)


def test_policy_file_takes_effect_only_when_applied(log: AuditLog, tmp_path: Path) -> None:
    """Editing auditml.toml changes nothing until `policy apply` records it on the log."""
    file = tmp_path / "auditml.toml"
    file.write_text("separation_of_duties = false\n", encoding="utf-8")
    trained(log, "1")
    with pytest.raises(PolicyDeniedError):
        log.approve("m", "1", actor=DS)
    receipt = log.apply_policy(file, reason="pilot", actor=OFF)
    policy, seq = log.policy()
    assert seq == receipt.seq and policy.separation_of_duties is False
    recorded = next(log.events(action="policy.update")).event.data
    assert recorded["source"] == "auditml.toml" and len(str(recorded["sha256"])) == 64
    log.approve("m", "1", actor=DS)


def test_reapplying_the_policy_in_force_writes_nothing(log: AuditLog) -> None:
    """Recording the same policy twice is refused as bad input."""
    log.apply_policy(Policy(separation_of_duties=False), actor=OFF)
    before = size(log)
    with pytest.raises(InvalidInputError, match="already in force"):
        log.apply_policy(Policy(separation_of_duties=False), actor=OFF)
    assert size(log) == before


def test_bad_policy_files_name_the_problem(log: AuditLog, tmp_path: Path) -> None:
    """A typo, a bad gate or bad TOML is refused with the file and key named; nothing written."""
    before = size(log)
    cases = {
        "separation_of_dutie = true\n": "unknown setting",
        '[gates]\nprod = ["auc >> 0.8"]\n': "is not of the form",
        "[permissions]\ndeploi = ['x']\n": "unknown permission 'deploi'",
        "separation_of_duties = \n": "not valid TOML",
        "[approvals]\nprod = -1\n": "approvals.prod",
    }
    for text, message in cases.items():
        file = tmp_path / "bad.toml"
        file.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInputError, match=message):
            log.apply_policy(file, actor=OFF)
    with pytest.raises(InvalidInputError, match="no policy file"):
        log.apply_policy(tmp_path / "missing.toml", actor=OFF)
    assert size(log) == before


def test_malformed_metric_writes_nothing(log: AuditLog) -> None:
    """An evaluation with a non-numeric or infinite metric is refused before anything is written."""
    trained(log, "1")
    before = size(log)
    with pytest.raises(InvalidInputError, match="metrics"):
        log.evaluate("m", "1", metrics={"auc": "high"}, actor=VAL)  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError):
        log.evaluate("m", "1", metrics={"auc": float("inf")}, actor=VAL)
    assert size(log) == before


def test_incidents_are_recorded_against_known_versions(log: AuditLog) -> None:
    """An incident names a known version; an unknown one writes nothing."""
    trained(log, "1")
    log.open_incident("m", "1", "drift", severity="high", environment="prod", actor=REL)
    assert log.status("m")["m"].versions["1"].incidents == 1
    before = size(log)
    with pytest.raises(InvalidInputError):
        log.open_incident("m", "5", "drift", actor=REL)
    with pytest.raises(InvalidInputError, match="severity"):
        log.open_incident("m", "1", "drift", severity="apocalyptic", actor=REL)
    assert size(log) == before


def test_status_of_all_models_derives_from_the_log_alone(log: AuditLog, db_url: str) -> None:
    """A second, fresh handle derives the same status from the stored events."""
    trained(log, "1", "2")
    approved_and_running(log, "1", "2")
    log.rollback("m", "prod", actor=REL)
    log.record_training("other", actor=DS)
    with AuditLog.open(db_url) as again:
        states = again.status()
    assert sorted(states) == ["m", "other"]
    assert states["m"].as_dict() == log.status("m")["m"].as_dict()
    assert states["m"].running == {"prod": "1"}
    assert states["other"].versions["1"].state == "trained"


@pytest.mark.parametrize(
    "action",
    [
        "model.train",
        "model.approve",
        "model.reject",
        "model.deploy",
        "model.rollback",
        "model.retire",
        "policy.update",
        "policy.denied",
        "log.init",
    ],
)
def test_plain_append_cannot_bypass_policy(log: AuditLog, action: str) -> None:
    """Append refuses governed actions, naming the checked method; nothing is written."""
    before = size(log)
    with pytest.raises(InvalidInputError, match="checked against policy"):
        log.append(
            action,
            subject={"model": "m", "version": "1"},
            data={
                "environment": "prod",
                "policy": {},
                "attempted": "model.deploy",
                "rule": "r",
                "message": "m",
            },
            actor=REL,
        )
    assert size(log) == before


# -- decisions see every writer ------------------------------------------------


def test_decisions_see_what_other_writers_recorded_since(db_url: str) -> None:
    """A log that decided before still sees approvals, rejections and policy made by another."""
    first, _ = AuditLog.init(db_url, origin="test.example/lifecycle", actor=OFF)
    with first, AuditLog.open(db_url) as second:
        first.record_training("m", version="1", actor=DS)
        with pytest.raises(PolicyDeniedError, match="no approval"):
            first.deploy("m", "1", "prod", actor=REL)  # folds and caches v1's state
        second.approve("m", "1", actor=VAL)
        assert first.deploy("m", "1", "prod", actor=REL).version == "1"
        second.record_training("m", version="2", actor=DS)
        second.reject("m", "2", actor=VAL)
        with pytest.raises(PolicyDeniedError, match="rejected"):
            first.deploy("m", "2", "prod", actor=REL)
        second.apply_policy(
            Policy(roles={REL: ["release"], OFF: ["ops"]}, permissions={"deploy": ["ops"]})
        )
        first.record_training("m", version="3", actor=DS)
        first.approve("m", "3", actor=VAL)
        with pytest.raises(PolicyDeniedError) as refused:
            first.deploy("m", "3", "prod", actor=REL)
        assert refused.value.rule == "role"


def test_gates_count_evaluations_recorded_after_training(log: AuditLog) -> None:
    """A gate passes on an evaluation recorded after the run, and the latest value counts."""
    log.apply_policy(Policy(gates={"prod": ["auc >= 0.8"]}), actor=OFF)
    trained(log, "1", metrics={"auc": 0.7})
    log.approve("m", "1", actor=VAL)
    with pytest.raises(PolicyDeniedError, match=r"auc is 0\.7"):
        log.deploy("m", "1", "prod", actor=REL)
    log.evaluate("m", "1", metrics={"auc": 0.85}, actor=VAL)
    log.deploy("m", "1", "prod", actor=REL)
    log.evaluate("m", "1", metrics={"auc": 0.6}, actor=VAL)
    log.deploy("m", "1", "staging", actor=REL)  # no gate for staging
    with pytest.raises(InvalidInputError, match="already runs"):
        log.deploy("m", "1", "prod", actor=REL)
    state = log.status("m")["m"].versions["1"]
    assert state.evaluated == {"auc": 0.6} and state.metrics == {"auc": 0.7}
