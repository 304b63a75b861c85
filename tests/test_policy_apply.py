"""Recording a policy safely: no stranded environment, typo'd gates flagged, changes shown first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError
from tests.test_cli import run

DS = "ds@bank.example"  # trains
VAL = "val@bank.example"  # validates
REL = "rel@bank.example"  # releases
OFF = "off@bank.example"  # changes policy


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a fresh log holding only its init event."""
    created, _ = AuditLog.init(db_url, origin="test.example/policy", actor=OFF)
    with created:
        yield created


def running_in_production(log: AuditLog) -> None:
    """Train credit v1 and v2 (auc recorded) and run v2 in production, v1 in staging."""
    for version in ("1", "2"):
        log.record_training("credit", version=version, data={"metrics": {"auc": 0.9}}, actor=DS)
        log.approve("credit", version, actor=VAL)
    log.deploy("credit", "1", "staging", actor=REL)
    log.deploy("credit", "2", "production", actor=REL)


def size(log: AuditLog) -> int:
    """Return the log's size."""
    return log.head().size


# -- 1. a policy may not strand an environment where a version runs ---------------------------


def test_a_policy_that_strands_a_running_environment_is_refused(log: AuditLog) -> None:
    """Dropping production from environments while v2 runs there is refused, naming both."""
    running_in_production(log)
    before = size(log)
    with pytest.raises(InvalidInputError) as raised:
        log.apply_policy(Policy(environments=["staging"]), actor=OFF)
    message = str(raised.value)
    assert "production" in message and "credit v2" in message
    assert "allow_stranded" in message
    assert size(log) == before


def test_a_stranding_policy_allowed_on_purpose_is_recorded_as_such(log: AuditLog) -> None:
    """With allow_stranded the policy is recorded, and the event names the stranded environment."""
    running_in_production(log)
    receipt = log.apply_policy(Policy(environments=["staging"]), actor=OFF, allow_stranded=True)
    recorded = next(log.events(action="policy.update")).event.data
    assert recorded["stranded"] == ["production"]
    assert log.policy()[1] == receipt.seq


def test_allow_stranded_with_nothing_stranded_records_nothing_more(log: AuditLog) -> None:
    """The flag alone adds nothing to the event when every running environment stays declared."""
    running_in_production(log)
    log.apply_policy(Policy(environments=["staging", "production"]), actor=OFF, allow_stranded=True)
    recorded = next(log.events(action="policy.update")).event.data
    assert "stranded" not in recorded


def test_an_empty_environments_list_strands_nothing(log: AuditLog) -> None:
    """An empty environments list allows any name, so nothing running is stranded by it."""
    running_in_production(log)
    log.apply_policy(Policy(environments=["staging", "production"]), actor=OFF)
    log.apply_policy(
        Policy(environments=[], separation_of_duties=True, approvals={"default": 2}), actor=OFF
    )
    assert log.policy()[0].environments == []


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ("[approvals]\ndefault = 1\nproduction = 2\n", "approvals.production"),
        ('[gates]\nproduction = ["auc >= 0.8"]\n', "gates.production"),
        ('[rollout]\nproduction = { canary = "10%" }\n', "rollout.production"),
        ('[monitor.production]\ntriggers = ["error_rate > 0.02"]\n', "monitor.production"),
        ('[cards]\ncomplete_for = ["production"]\n', "cards.complete_for"),
        ('[mlflow]\naliases = { production = "champion" }\n', "mlflow.aliases.production"),
        ('[mlflow]\nstages = { production = "Production" }\n', "mlflow.stages.production"),
    ],
)
def test_an_undeclared_environment_named_elsewhere_is_refused(
    log: AuditLog, tmp_path: Path, table: str, where: str
) -> None:
    """A rule for an environment the environments list leaves out is refused, naming its key."""
    file = tmp_path / "auditml.toml"
    file.write_text('environments = ["staging"]\n' + table, encoding="utf-8")
    before = size(log)
    with pytest.raises(InvalidInputError) as raised:
        log.apply_policy(file, actor=OFF)
    message = str(raised.value)
    assert where in message and "environments" in message and "'production'" in message
    assert size(log) == before


def test_default_keys_are_not_environments(log: AuditLog) -> None:
    """approvals.default and gates.default apply everywhere and need no declared environment."""
    log.apply_policy(
        Policy(
            environments=["staging"],
            approvals={"default": 1, "staging": 1},
            gates={"default": ["auc >= 0.5"]},
        ),
        actor=OFF,
    )
    assert log.policy()[1] is not None


# -- 2. a gate on a metric never recorded is flagged ---------------------------------------


def test_a_gate_on_an_unrecorded_metric_warns_with_the_closest_name(log: AuditLog) -> None:
    """'aucc >= 0.8' is recorded (a metric may come later) but the review says did you mean auc."""
    running_in_production(log)
    policy = Policy(gates={"production": ["aucc >= 0.8", "auc >= 0.8"]})
    review = log.review_policy(policy, actor=OFF)
    assert len(review.warnings) == 1
    assert "gates.production" in review.warnings[0] and "'aucc'" in review.warnings[0]
    assert "did you mean 'auc'?" in review.warnings[0]
    log.apply_policy(policy, actor=OFF)
    assert log.policy()[0].gates == {"production": ["aucc >= 0.8", "auc >= 0.8"]}


def test_gates_on_recorded_metrics_warn_nothing(log: AuditLog) -> None:
    """A gate on a metric an evaluation recorded, or on its comparison, gives no warning."""
    running_in_production(log)
    log.evaluate("credit", "2", metrics={"ks": 0.4}, actor=VAL)
    policy = Policy(gates={"default": ["ks >= 0.3"], "production": ["auc_delta >= 0 at 95%"]})
    assert log.review_policy(policy, actor=OFF).warnings == ()


def test_a_gate_on_a_fresh_log_warns_that_nothing_is_recorded(log: AuditLog) -> None:
    """With no metric on the log at all, the warning says so instead of suggesting a name."""
    review = log.review_policy(Policy(gates={"default": ["auc >= 0.8"]}), actor=OFF)
    assert len(review.warnings) == 1 and "no metric is recorded" in review.warnings[0]


# -- 3. what a new policy changes, shown before and after it is recorded ---------------------


def test_review_lists_removed_roles_and_permissions_and_writes_nothing(log: AuditLog) -> None:
    """Replacing a full policy by a one-liner shows each role and permission it drops."""
    log.apply_policy(
        Policy(
            roles={OFF: ["officer"], REL: ["release"]},
            permissions={"policy": ["officer"], "deploy": ["release"]},
        ),
        actor=OFF,
    )
    before = size(log)
    review = log.review_policy(Policy(separation_of_duties=False), actor=OFF)
    assert size(log) == before
    kinds = {(c.kind, c.setting) for c in review.changes}
    assert ("removed", f"roles.{OFF}") in kinds and ("removed", f"roles.{REL}") in kinds
    assert ("removed", "permissions.deploy") in kinds
    assert ("removed", "permissions.policy") in kinds
    assert ("changed", "separation_of_duties") in kinds
    assert review.in_force_seq == before - 1


def test_review_of_the_policy_in_force_shows_no_change(log: AuditLog) -> None:
    """Reviewing what is already in force lists nothing, rather than failing."""
    log.apply_policy(Policy(separation_of_duties=False), actor=OFF)
    assert log.review_policy(Policy(separation_of_duties=False), actor=OFF).changes == ()


def test_review_by_someone_who_may_not_change_policy_is_denied_and_records_nothing(
    log: AuditLog,
) -> None:
    """A dry run tells the actor they may not apply it, and records no denial."""
    log.apply_policy(
        Policy(roles={OFF: ["officer"]}, permissions={"policy": ["officer"]}), actor=OFF
    )
    before = size(log)
    with pytest.raises(PolicyDeniedError) as raised:
        log.review_policy(Policy(separation_of_duties=False), actor=DS)
    assert raised.value.seq is None and size(log) == before


def test_review_refuses_what_apply_refuses(log: AuditLog) -> None:
    """A stranding policy fails the review as it would fail the apply."""
    running_in_production(log)
    with pytest.raises(InvalidInputError, match="production"):
        log.review_policy(Policy(environments=["staging"]), actor=OFF)
    review = log.review_policy(Policy(environments=["staging"]), actor=OFF, allow_stranded=True)
    assert review.stranded == {"production": ["credit v2"]}


# -- the commands ----------------------------------------------------------------------------


@pytest.fixture
def url(log: AuditLog) -> str:
    """Return the URL of a log where credit v2 runs in production under a full policy."""
    running_in_production(log)
    log.apply_policy(
        Policy(
            environments=["staging", "production"],
            roles={OFF: ["officer"], REL: ["release"]},
            permissions={"policy": ["officer"], "deploy": ["release"]},
            approvals={"default": 1, "production": 1},
        ),
        actor=OFF,
    )
    return log.store.url


def write(tmp_path: Path, text: str) -> Path:
    """Write a policy file and return its path."""
    file = tmp_path / "auditml.toml"
    file.write_text(text, encoding="utf-8")
    return file


def count(url: str) -> int:
    """Return the size of the log at ``url``."""
    with AuditLog.open(url) as opened:
        return opened.head().size


def test_cli_dry_run_shows_removals_and_writes_nothing(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run of a one-line policy lists each role and permission it would drop; exit 0."""
    file = write(
        tmp_path,
        'roles = { "off@bank.example" = ["officer"] }\npermissions = { policy = ["officer"] }\n',
    )
    before = count(url)
    code, out, err = run(
        ["policy", "apply", str(file), "--dry-run", "--actor", OFF, "--db", url], capsys
    )
    assert code == 0, err
    assert count(url) == before
    assert "removed" in out and "permissions.deploy" in out and f"roles.{REL}" in out
    assert "environments" in out and "approvals.production" in out
    assert "nothing was recorded" in out.lower()


def test_cli_dry_run_json_is_valid_and_lists_changes(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run --json prints one JSON object with the changes and warnings; writes nothing."""
    file = write(
        tmp_path,
        'environments = ["staging", "production"]\n'
        'roles = { "off@bank.example" = ["officer"] }\n'
        'permissions = { policy = ["officer"] }\n'
        '[gates]\nproduction = ["aucc >= 0.8"]\n',
    )
    before = count(url)
    code, out, err = run(
        ["policy", "apply", str(file), "--dry-run", "--json", "--actor", OFF, "--db", url], capsys
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["dry_run"] is True and shown["recorded"] is False
    assert {
        "kind": "removed",
        "setting": "permissions.deploy",
        "old": ["release"],
        "new": None,
    } in (shown["changes"])
    assert any("did you mean 'auc'?" in w for w in shown["warnings"])
    assert count(url) == before


def test_cli_apply_prints_what_changed(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A normal apply records the policy and prints its changes, removals included."""
    file = write(
        tmp_path,
        'environments = ["staging", "production"]\n'
        'roles = { "off@bank.example" = ["officer"] }\n'
        'permissions = { policy = ["officer"] }\n',
    )
    before = count(url)
    code, out, err = run(["policy", "apply", str(file), "--actor", OFF, "--db", url], capsys)
    assert code == 0, err
    assert count(url) == before + 1
    assert "removed" in out and "permissions.deploy" in out and f"roles.{REL}" in out


def test_cli_apply_json_keeps_the_receipt_and_adds_the_changes(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`policy apply --json` is one JSON object: receipt fields, changes and warnings."""
    file = write(
        tmp_path,
        'environments = ["staging", "production"]\n'
        'roles = { "off@bank.example" = ["officer"] }\n'
        'permissions = { policy = ["officer"] }\n'
        '[gates]\nproduction = ["aucc >= 0.8"]\n',
    )
    code, out, err = run(
        ["policy", "apply", str(file), "--json", "--actor", OFF, "--db", url], capsys
    )
    assert code == 0, err
    shown = json.loads(out)
    assert shown["seq"] == count(url) - 1 and shown["recorded"] is True
    assert any(c["setting"] == "permissions.deploy" for c in shown["changes"])
    assert "did you mean 'auc'?" in err


def test_cli_apply_warns_on_a_misspelled_gate_metric(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate is recorded, and stderr says the metric is unknown and suggests auc."""
    file = write(
        tmp_path,
        'environments = ["staging", "production"]\n'
        'roles = { "off@bank.example" = ["officer"], "rel@bank.example" = ["release"] }\n'
        'permissions = { policy = ["officer"], deploy = ["release"] }\n'
        '[gates]\nproduction = ["aucc >= 0.8"]\n',
    )
    code, _, err = run(["policy", "apply", str(file), "--actor", OFF, "--db", url], capsys)
    assert code == 0, err
    assert "aucc" in err and "did you mean 'auc'?" in err


def test_cli_refuses_to_strand_production_then_allows_it_on_purpose(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tester's lock-out: refused naming production and credit v2, unless --allow-stranded."""
    file = write(
        tmp_path,
        'environments = ["staging"]\n'
        'roles = { "off@bank.example" = ["officer"] }\n'
        'permissions = { policy = ["officer"] }\n',
    )
    before = count(url)
    code, _, err = run(["policy", "apply", str(file), "--actor", OFF, "--db", url], capsys)
    assert code != 0 and "Traceback" not in err
    assert "production" in err and "credit v2" in err and "--allow-stranded" in err
    assert count(url) == before
    code, _, err = run(
        ["policy", "apply", str(file), "--dry-run", "--actor", OFF, "--db", url], capsys
    )
    assert code != 0 and "credit v2" in err and count(url) == before
    code, _, err = run(
        ["policy", "apply", str(file), "--allow-stranded", "--actor", OFF, "--db", url], capsys
    )
    assert code == 0, err
    assert "production" in err  # still said, though allowed
    assert count(url) == before + 1


def test_cli_show_never_prints_python_none_and_names_its_column(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unset values show as 'not set', and the default column says what it compares with."""
    file = write(
        tmp_path,
        'environments = ["staging", "production"]\n'
        'roles = { "off@bank.example" = ["officer"] }\n'
        'permissions = { policy = ["officer"] }\n'
        '[monitor.production]\ntriggers = ["error_rate > 0.02"]\n',
    )
    code, _, err = run(["policy", "apply", str(file), "--actor", OFF, "--db", url], capsys)
    assert code == 0, err
    code, out, err = run(["policy", "show", "--db", url], capsys)
    assert code == 0, err
    assert "None" not in out and "not set" in out
    assert "is the default" not in out and "same as default" in out
    code, out, _ = run(["policy", "show", "--json", "--db", url], capsys)
    json.loads(out)


def test_a_canary_under_way_is_named_among_what_runs(log: AuditLog) -> None:
    """A rollout in progress counts as running: the refusal names the canary beside the stable."""
    running_in_production(log)
    log.record_training("credit", version="3", data={"metrics": {"auc": 0.9}}, actor=DS)
    log.approve("credit", "3", actor=VAL)
    log.apply_policy(
        Policy.model_validate({"rollout": {"production": {"canary": "10%"}}}), actor=OFF
    )
    log.deploy("credit", "3", "production", traffic="10%", actor=REL)
    before = size(log)
    with pytest.raises(InvalidInputError) as raised:
        log.apply_policy(Policy(environments=["staging"]), actor=OFF)
    assert "credit v2, credit v3 (canary)" in str(raised.value)
    assert size(log) == before


def test_cli_dry_run_of_the_policy_in_force_is_refused_as_the_apply_is(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run predicts the apply: the policy already in force is refused (exit 2) by both."""
    file = tmp_path / "auditml.toml"
    file.write_text("separation_of_duties = false\n", encoding="utf-8")
    base = ["policy", "apply", str(file), "--actor", OFF, "--db", url]
    assert run(base, capsys)[0] == 0
    for extra in (["--dry-run"], []):
        code, _, err = run([*base, *extra], capsys)
        assert code == 2 and "already in force" in err
