"""Rollouts: canary and shadow splits, promotion rules, monitor checks and automatic rollbacks."""

from __future__ import annotations

import json
import math
import time
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditml import AuditLog, InvalidInputError, PolicyDeniedError, VerificationError
from auditml.core.merkle import leaf_hash
from auditml.core.policy import Policy, policy_from_toml
from auditml.core.rollout import parse_trigger, psi, quantiles, sorted_quantile
from auditml.serving import runtime_check, runtime_stats
from tests.conftest import drop_triggers, raw_query, raw_sql, run_cli

ORIGIN = "bank.example/credit"
DS, VAL, OPS, MON = "ds@bank.example", "val@bank.example", "ops@bank.example", "monitor@bank"

POLICY = b"""
[rollout]
production = { canary = "10%", min_requests = 20, min_duration = "1s" }

[monitor.production]
triggers = ["error_rate > 0.1", "score_psi(score) > 0.2"]
min_requests = 10
window = "1h"
actor = "monitor@bank"
"""


def _policy(text: bytes = POLICY) -> Policy:
    return policy_from_toml(text, where="auditml.toml")


def _serve(log: AuditLog, plan: dict[str, int], *, errors: int = 0, shift: float = 0.0) -> None:
    """Record ``plan[version]`` requests per version in production, the canary's errors first."""
    with log.runtime("credit", env="production", background=False) as rec:
        for version, count in plan.items():
            for n in range(count):
                bad = version != "1" and n < errors
                rec.record(
                    f"{version}-{n}-{uuid.uuid4().hex[:8]}",
                    version=version,
                    output={"score": (n % 10) / 10 + (shift if version != "1" else 0.0)},
                    latency_ms=10.0 + n % 5,
                    error="timeout" if bad else None,
                )


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log where v1 runs production, v2 and v3 are approved, under the rollout policy."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made:
        for _ in range(3):
            made.record_training("credit", actor=DS)
        for version in ("1", "2", "3"):
            made.approve("credit", version, actor=VAL, reason="VR")
        made.deploy("credit", "1", "production", actor=OPS)
        made.apply_policy(_policy(), actor="admin")
        yield made


def _split(log: AuditLog) -> tuple[dict[str, int], list[str]]:
    state = log.status("credit")["credit"]
    return state.split("production"), state.shadows("production")


def test_canary_promote_and_full_promotion_derive_the_split(log: AuditLog) -> None:
    """Deploy --traffic starts a canary, promote widens it, 100% makes it stable and v1 leaves."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    assert _split(log) == ({"1": 90, "2": 10}, [])
    assert log.status("credit")["credit"].versions["2"].state == "canary"
    log.promote("credit", "2", "production", traffic="50%", actor=OPS)
    assert _split(log) == ({"1": 50, "2": 50}, [])
    _serve(log, {"2": 20, "1": 5})
    time.sleep(1.05)  # min_duration is 1s
    receipt = log.promote("credit", "2", "production", actor=OPS, reason="canary clean")
    state = log.status("credit")["credit"]
    assert _split(log) == ({"2": 100}, [])
    assert state.running["production"] == "2"
    assert state.versions["1"].running_in == [] and state.versions["2"].state == "deployed"
    deploy = next(log.events(start=receipt.seq, stop=receipt.seq + 1)).event
    assert deploy.action == "model.deploy" and deploy.data["replaces"] == "1"
    assert deploy.data["evidence"]["requests"] == 20
    assert [(c.action, c.split) for c in log.splits("credit", "production")] == [
        ("model.deploy", {"1": 100}),
        ("rollout.start", {"1": 90, "2": 10}),
        ("rollout.promote", {"1": 50, "2": 50}),
        ("model.deploy", {"2": 100}),
    ]


def test_shadow_then_canary_then_rollback_restores_the_stable_split(log: AuditLog) -> None:
    """A shadow serves copies; promoted to 10% it is a canary; a rollback ends the rollout."""
    log.deploy("credit", "2", "production", shadow=True, actor=OPS)
    assert _split(log) == ({"1": 100}, ["2"])
    log.promote("credit", "2", "production", traffic="10%", actor=OPS)
    assert _split(log) == ({"1": 90, "2": 10}, [])
    receipt = log.rollback("credit", "production", actor=OPS, reason="latency")
    assert receipt.version == "1"
    assert _split(log) == ({"1": 100}, [])
    state = log.status("credit")["credit"]
    assert state.rollouts == {} and state.versions["2"].state == "approved"
    changes = log.splits("credit")
    assert [c.action for c in changes][1:] == ["rollout.start", "rollout.promote", "model.rollback"]
    last = changes[-1]
    assert (last.replaces, last.rollout) == ("2", changes[1].seq)


def test_rollback_during_a_rollout_refuses_another_target(log: AuditLog) -> None:
    """During a canary, rollback --to a version other than the stable one is refused."""
    log.deploy("credit", "2", "production", traffic="5%", actor=OPS)
    size = log.head().size
    with pytest.raises(InvalidInputError, match=r"leave out --to"):
        log.rollback("credit", "production", to="3", actor=OPS)
    assert log.head().size == size


def test_premature_promotion_is_refused_recorded_and_changes_nothing(log: AuditLog) -> None:
    """Promoting to 100% before min_requests and min_duration records a denial; split unchanged."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"2": 5})
    size = log.head().size
    with pytest.raises(PolicyDeniedError, match="only 5 of the 20 requests") as caught:
        log.promote("credit", "2", "production", actor=OPS)
    assert caught.value.rule == "rollout-evidence"
    assert log.head().size == size + 1
    denial = next(log.events(start=size)).event
    assert denial.action == "policy.denied" and denial.data["attempted"] == "model.deploy"
    assert _split(log) == ({"1": 90, "2": 10}, [])


def test_policy_requires_a_canary_and_caps_its_start(log: AuditLog) -> None:
    """A full deploy where v1 runs is refused, as is a canary above the policy's share."""
    with pytest.raises(PolicyDeniedError) as full:
        log.deploy("credit", "2", "production", actor=OPS)
    assert full.value.rule == "rollout-required"
    with pytest.raises(PolicyDeniedError) as wide:
        log.deploy("credit", "2", "production", traffic="30%", actor=OPS)
    assert wide.value.rule == "rollout-canary"
    assert _split(log) == ({"1": 100}, [])


def test_bad_rollout_requests_are_clear_errors(log: AuditLog) -> None:
    """Bad shares, a second rollout, a canary with nothing running, a narrowing promotion."""
    with pytest.raises(InvalidInputError, match="share of traffic"):
        log.deploy("credit", "2", "production", traffic="ten", actor=OPS)
    with pytest.raises(InvalidInputError, match="not both"):
        log.deploy("credit", "2", "production", traffic="5%", shadow=True, actor=OPS)
    with pytest.raises(InvalidInputError, match="nothing of 'credit' runs in staging"):
        log.deploy("credit", "2", "staging", traffic="5%", actor=OPS)
    with pytest.raises(InvalidInputError, match="in no rollout"):
        log.promote("credit", "2", "production", actor=OPS)
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    with pytest.raises(InvalidInputError, match="in progress"):
        log.deploy("credit", "3", "production", traffic="5%", actor=OPS)
    with pytest.raises(InvalidInputError, match="widens"):
        log.promote("credit", "2", "production", traffic="5%", actor=OPS)


def test_monitor_trips_and_rolls_back_with_its_evidence_linked(log: AuditLog) -> None:
    """A raised error rate trips; --act rolls back as the monitor, naming the check's seq, hash."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 40, "2": 20}, errors=6)
    result = log.monitor("credit", "production", act=True)
    assert result.verdict == "tripped" and result.rollback is not None
    assert result.data["counts"] == {
        "canary": 20,
        "stable": 40,
        "canary_latency": 20,
        "stable_latency": 40,
        "canary_scored(score)": 20,
        "stable_scored(score)": 40,
    }
    check = next(log.events(start=result.check.seq, stop=result.check.seq + 1))
    assert check.event.action == "monitor.check" and check.event.actor.id == MON
    assert check.event.data["statistics"]["error_rate"] == pytest.approx(0.3)
    rollback = next(log.events(start=result.rollback.seq, stop=result.rollback.seq + 1)).event
    assert rollback.action == "model.rollback" and rollback.actor.id == MON
    assert rollback.data["cause"] == {"seq": check.seq, "hash": check.hash}
    assert check.hash == leaf_hash(check.body).hex()
    assert _split(log) == ({"1": 100}, [])


def test_too_few_requests_leave_the_check_undecided_and_never_act(log: AuditLog) -> None:
    """A canary with fewer than min_requests records is undecided, even at 100% errors."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 40, "2": 5}, errors=5)
    size = log.head().size
    result = log.monitor("credit", "production", act=True)
    assert result.verdict == "undecided" and result.rollback is None
    assert all(t.get("tripped") is None for t in result.data["triggers"])
    assert log.head().size == size + 1  # only the check
    assert _split(log) == ({"1": 90, "2": 10}, [])


def test_a_tripped_check_without_act_and_a_clean_one_change_nothing(log: AuditLog) -> None:
    """Without --act a tripped check only records; a clean canary (enough scores for PSI) is ok."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 400, "2": 400})  # 1/(1/400 + 1/400) = 200 scores: PSI is decided
    assert log.monitor("credit", "production").verdict == "ok"
    _serve(log, {"2": 100}, errors=100)
    assert log.monitor("credit", "production").verdict == "tripped"
    assert _split(log) == ({"1": 90, "2": 10}, [])


def test_score_psi_trips_on_a_shifted_output(log: AuditLog) -> None:
    """A canary whose scores moved trips score_psi(score) on enough scores; its figure is kept."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 400, "2": 400}, shift=0.5)
    result = log.monitor("credit", "production")
    assert result.verdict == "tripped"
    assert result.data["statistics"]["score_psi(score)"] > 0.2


def test_a_monitor_may_roll_back_but_never_promote(log: AuditLog) -> None:
    """The monitor's identity is refused promotion and deployment, each recorded as a denial."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    for attempt in (
        lambda: log.promote("credit", "2", "production", traffic="50%", actor=MON),
        lambda: log.deploy("credit", "3", "staging", actor=MON),
    ):
        with pytest.raises(PolicyDeniedError) as caught:
            attempt()
        assert caught.value.rule == "monitor-may-not-promote"
    assert _split(log) == ({"1": 90, "2": 10}, [])


def test_monitor_bad_inputs_are_clear_errors(log: AuditLog) -> None:
    """No rollout, a bad window, and an environment with no monitor are refused clearly."""
    with pytest.raises(InvalidInputError, match="no rollout"):
        log.monitor("credit", "production")
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    with pytest.raises(InvalidInputError, match="not a duration"):
        log.monitor("credit", "production", window="soon")
    with pytest.raises(InvalidInputError, match="declares no monitor for staging"):
        log.monitor("credit", "staging")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b'[monitor.production]\ntriggers = ["errors > 1"]', "unknown statistic 'errors'"),
        (b'[monitor.production]\ntriggers = ["error_rate >> 1"]', "STATISTIC OP NUMBER"),
        (b'[monitor.production]\ntriggers = ["error_rate(x) > 1"]', "only score_psi"),
        (b'[monitor.production]\nwindow = "an hour"', "not a duration"),
        (b'[rollout]\nproduction = { canary = "100%" }', "below 100%"),
        (b'[rollout]\nproduction = { min_duration = "-1h" }', "not a duration"),
        (b"[monitor.production]\nfoo = 1", "known settings: actor, min_requests"),
    ],
)
def test_bad_triggers_and_windows_fail_at_policy_load(text: bytes, problem: str) -> None:
    """A policy with a bad trigger, window or canary share is refused when it is read."""
    with pytest.raises(InvalidInputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        _policy(text)


def test_psi_is_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    """PSI of a sample against itself is 0; against a half-shifted one it is large."""
    base = [n / 100 for n in range(100)]
    assert psi(base, base) == pytest.approx(0.0)
    assert psi(base, [v + 0.5 for v in base]) > 1.0
    assert psi([], base) is None
    assert parse_trigger("score_psi > 0.2", score_field="p").key == "score_psi(p)"


def _sorted_quantile(ordered: list[float], q: float) -> float | None:
    """Return the textbook quantile: interpolate between the neighbours of q * (n - 1)."""
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    found = ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
    if math.isfinite(found) or not all(map(math.isfinite, (ordered[low], ordered[high]))):
        return found
    return ordered[low] * (1 - (pos - low)) + ordered[high] * (pos - low)  # no overflow


def _sorted_psi(stable: list[float], canary: list[float], bins: int = 10) -> float | None:
    """PSI by sorting both samples and bisecting at the stable deciles."""
    if not stable or not canary:
        return None
    base, seen = sorted(stable), sorted(canary)
    found = (_sorted_quantile(base, k / bins) for k in range(1, bins))
    cuts = sorted({q for q in found if q is not None})

    def shares(ordered: list[float]) -> list[float]:
        edges = [0, *(bisect_left(ordered, cut) for cut in cuts), len(ordered)]
        return [max((hi - lo) / len(ordered), 1e-4) for lo, hi in pairwise(edges)]

    return sum((c - s) * math.log(c / s) for c, s in zip(shares(seen), shares(base), strict=True))


_finite = st.floats(-1e12, 1e12)  # no overflow to inf in v[hi] - v[lo]
_samples = st.lists(_finite | st.sampled_from([0.0, 1.0, 2.5]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_samples, st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_quantiles_by_partition_equal_a_full_sort_exactly(
    values: list[float], qs: list[float]
) -> None:
    """Quantiles from NumPy's partition are bit for bit those of sorting every value."""
    expected = [_sorted_quantile(sorted(values), q) for q in qs]
    assert quantiles(values, qs) == expected
    assert quantiles(array("d", values), qs) == expected


@settings(max_examples=200, deadline=None)
@given(_samples, st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_a_quantile_of_sorted_values_is_the_partition_quantile(
    values: list[float], qs: list[float]
) -> None:
    """sorted_quantile (runtime stats) gives bit for bit what quantiles (the monitor) gives."""
    ordered = sorted(values)
    assert [sorted_quantile(ordered, q) for q in qs] == quantiles(values, qs)


def test_a_quantile_between_huge_values_of_both_signs_is_finite() -> None:
    """Scores near ±1e308 give finite quantiles and PSI cuts, not NaN or infinity."""
    values = [-1e308] * 5 + [1e308] * 6
    low, middle = quantiles(values, [0.4, 0.45])
    assert low == -1e308 and middle == 0.0
    assert sorted_quantile(sorted(values), 0.45) == 0.0
    found = psi(values, values)
    assert found is not None and math.isfinite(found) and found == 0.0


@settings(max_examples=300, deadline=None)
@given(_samples, _samples)
def test_psi_by_counting_equals_psi_by_sorting_exactly(
    stable: list[float], canary: list[float]
) -> None:
    """PSI counted with NumPy (ties, repeated cuts, one value) equals the sort-and-bisect PSI."""
    assert psi(array("d", stable), array("d", canary)) == _sorted_psi(stable, canary)


def test_forged_runtime_records_do_not_count_toward_min_requests(
    log: AuditLog, db_url: str
) -> None:
    """Rows written straight into the record table, under no segment, never count."""
    start = log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"2": 5})
    (row,) = raw_query(
        db_url, "SELECT log_id, time, body FROM auditml_record WHERE version = %s LIMIT 1", ("2",)
    )
    drop_triggers(db_url)
    raw_sql(
        db_url,
        [
            (
                "INSERT INTO auditml_record (log_id, seg, i, request_id, time, model, version, "
                "env, latency_ms, error, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row[0],
                    start.seq,
                    n,
                    f"forged-{n}",
                    row[1],
                    "credit",
                    "2",
                    "production",
                    1.0,
                    None,
                    row[2],
                ),
            )
            for n in range(50)
        ],
    )
    with pytest.raises(PolicyDeniedError, match="only 5 of the 20"):
        log.promote("credit", "2", "production", actor=OPS)
    assert _split(log) == ({"1": 90, "2": 10}, [])


def test_records_added_under_a_real_segment_stop_the_promotion(log: AuditLog, db_url: str) -> None:
    """Rows slipped into a segment's records break its root: no count, a verification error."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"2": 5})
    (row,) = raw_query(
        db_url,
        "SELECT log_id, seg, time, body FROM auditml_record WHERE version = %s AND i = 0",
        ("2",),
    )
    drop_triggers(db_url)
    raw_sql(
        db_url,
        [
            (
                "INSERT INTO auditml_record (log_id, seg, i, request_id, time, model, version, "
                "env, latency_ms, error, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row[0],
                    row[1],
                    100 + n,
                    f"forged-{n}",
                    row[2],
                    "credit",
                    "2",
                    "production",
                    1.0,
                    None,
                    row[3],
                ),
            )
            for n in range(50)
        ],
    )
    size = log.head().size
    with pytest.raises(VerificationError):
        log.promote("credit", "2", "production", actor=OPS)
    assert log.head().size == size


def test_an_imported_rollout_is_never_promoted_or_monitored(log: AuditLog) -> None:
    """An imported rollout.start shows in the split but counts as no rollout for decisions."""
    log.append(
        "rollout.start",
        actor="ops@elsewhere",
        subject={"model": "credit", "version": "2"},
        data={"environment": "production", "mode": "canary", "traffic": 10, "stable": "1"},
        imported={"source": "argo"},
    )
    assert _split(log) == ({"1": 90, "2": 10}, [])
    with pytest.raises(PolicyDeniedError) as caught:
        log.promote("credit", "2", "production", traffic="50%", actor=OPS)
    assert caught.value.rule == "rollout-imported"
    with pytest.raises(InvalidInputError, match="imported history"):
        log.monitor("credit", "production")


def test_shadow_records_are_kept_apart_and_canary_records_are_no_findings(log: AuditLog) -> None:
    """Runtime stats count a shadow's records apart; runtime check accepts a canary's records."""
    log.deploy("credit", "2", "production", shadow=True, actor=OPS)
    _serve(log, {"1": 4, "2": 3})
    stats = {(s.version, s.shadow): s.requests for s in runtime_stats(log, "credit")}
    assert stats == {("1", False): 4, ("2", True): 3}
    log.promote("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"2": 2})
    assert [f.kind for f in runtime_check(log) if f.kind != "silent"] == []


def test_cli_rollout_commands_and_bad_paths(log: AuditLog, capsys: Any) -> None:
    """Deploy --traffic, promote, monitor --json, status and history work; bad input exits 1."""
    db = ["--db", log.url]
    code, out, _ = run_cli(
        ["deploy", "credit", "2", "--env", "production", "--traffic", "10%", "--actor", OPS, *db],
        capsys,
    )
    assert code == 0 and "canary on 10%" in out
    code, out, _ = run_cli(["status", "credit", *db], capsys)
    assert "production: v1 90% + v2 10%" in out
    code, out, _ = run_cli(["history", "credit", *db], capsys)
    assert code == 0 and "v1 90% + v2 10%" in out and "rollout.start" in out
    _serve(log, {"1": 40, "2": 20}, errors=6)
    code, out, _ = run_cli(["monitor", "credit", "--env", "production", "--json", *db], capsys)
    assert code == 4 and json.loads(out)["verdict"] == "tripped"
    code, out, _ = run_cli(["monitor", "credit", "--env", "production", "--act", *db], capsys)
    assert code == 4 and "Rolled production back" in out
    for bad in (
        ["monitor", "credit", "--env", "production", *db],
        ["deploy", "credit", "3", "--env", "production", "--traffic", "lots", *db],
        ["promote", "credit", "3", "--env", "production", *db],
        ["monitor", "credit", "--env", "production", "--window", "1y", *db],
    ):
        code, _, err = run_cli(bad, capsys)
        assert code != 0 and "Traceback" not in err and "error" in err, bad


def test_report_tells_each_rollout_with_its_evidence(log: AuditLog) -> None:
    """The report's rollouts section holds the splits, a refused promotion, checks and causes."""
    from auditml.reports.build import build_report
    from auditml.reports.render import render_report

    log.deploy("credit", "2", "production", traffic="10%", actor=OPS, reason="canary")
    _serve(log, {"1": 40, "2": 5})
    with pytest.raises(PolicyDeniedError):
        log.promote("credit", "2", "production", actor=OPS)
    undecided = log.monitor("credit", "production")
    _serve(log, {"2": 20}, errors=10)
    tripped = log.monitor("credit", "production", act=True)
    assert tripped.rollback is not None
    log.deploy("credit", "3", "production", traffic="10%", actor=OPS)
    log.promote("credit", "3", "production", traffic="20%", actor=OPS)
    log.checkpoint()
    report = build_report(log)
    first, second = report.rollouts
    assert (first.version, first.stable, first.mode) == ("2", "1", "canary")
    assert first.outcome.startswith("rolled back automatically by monitor@bank")
    assert [s.action for s in first.steps] == [
        "rollout.start",
        "promotion refused (rollout-evidence)",
        "model.rollback",
    ]
    rollback = first.steps[-1]
    assert (rollback.cause_seq, rollback.cause_hash) == (tripped.check.seq, tripped.check.hash)
    assert [(c.seq, c.verdict) for c in first.checks] == [
        (undecided.check.seq, "undecided"),
        (tripped.check.seq, "tripped"),
    ]
    assert first.checks[1].acted_seq == tripped.rollback.seq
    assert (second.outcome, [s.split for s in second.steps]) == (
        "in progress",
        ["v1 90% + v3 10%", "v1 80% + v3 20%"],
    )
    markdown = render_report(report, "md").decode()
    html = render_report(report, "html").decode()
    for text in (markdown, html):
        assert "Rollouts and monitor checks" in text and tripped.check.hash in text


def test_a_window_read_in_two_processes_matches_one(log: AuditLog) -> None:
    """A helper process reading half the segments gives the same samples as one process."""
    from auditml.evidence import window_samples

    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    for _ in range(4):
        _serve(log, {"1": 9, "2": 3}, errors=1, shift=0.1)
    window = {"model": "credit", "env": "production", "versions": ["1", "2"], "fields": ["score"]}
    bounds = {"since": "2000-01-01T00:00:00.000000Z", "until": "2100-01-01T00:00:00.000000Z"}
    one = window_samples(log._ledger, **window, **bounds, parallel=False)  # type: ignore[arg-type]
    two = window_samples(log._ledger, **window, **bounds, parallel=True)  # type: ignore[arg-type]
    for version in ("1", "2"):
        a, b = one[version], two[version]
        assert (
            (a.requests, a.errors)
            == (b.requests, b.errors)
            == ((36, 0) if version == "1" else (12, 4))
        )
        assert sorted(a.latency or ()) == sorted(b.latency or ())
        assert sorted((a.scores or {})["score"]) == sorted((b.scores or {})["score"])


def test_a_broken_helper_leaves_the_read_to_this_process(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the helper answers nonsense, this process reads its half and counts every record."""
    import subprocess
    import sys

    from auditml import evidence

    def broken(*_: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "print('nonsense')"], stdout=subprocess.PIPE)

    monkeypatch.setattr(evidence, "_spawn", broken)
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    for _ in range(3):
        _serve(log, {"1": 5, "2": 2})
    found = evidence.window_samples(
        log._ledger,
        model="credit",
        env="production",
        since="2000-01-01T00:00:00.000000Z",
        until="2100-01-01T00:00:00.000000Z",
        versions=["1", "2"],
        parallel=True,
    )
    assert (found["1"].requests, found["2"].requests) == (15, 6)


def test_relabelled_record_columns_do_not_count_for_the_canary(log: AuditLog, db_url: str) -> None:
    """Stable records relabelled as the canary's in the version column still count as v1's."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 30, "2": 5})
    drop_triggers(db_url)
    raw_sql(db_url, ["UPDATE auditml_record SET version = '2'"])
    with pytest.raises(PolicyDeniedError, match="only 5 of the 20"):
        log.promote("credit", "2", "production", actor=OPS)
    counts = log.monitor("credit", "production").data["counts"]
    assert (counts["canary"], counts["stable"], counts["canary_scored(score)"]) == (5, 30, 5)


# ------------------------------------------------------------ never a rollback on thin evidence


def _serve_uniform(
    log: AuditLog, plan: dict[str, int], *, seed: int, unscored_errors: int = 0
) -> None:
    """Record ``plan[version]`` requests whose scores all come from one uniform distribution.

    The canary's first ``unscored_errors`` requests are errors with no output at all.
    """
    import random

    rng = random.Random(seed)
    with log.runtime("credit", env="production", background=False) as rec:
        for version, count in plan.items():
            for n in range(count):
                bare = version != "1" and n < unscored_errors
                rec.record(
                    f"{version}-{n}-{uuid.uuid4().hex[:8]}",
                    version=version,
                    output=None if bare else {"score": rng.random()},
                    latency_ms=10.0,
                    error="timeout" if bare else None,
                )


def test_psi_is_decided_only_on_an_effective_size_of_200_scored_values() -> None:
    """psi_decided: each side needs min_requests, and 1/(1/c + 1/s) >= 200, exactly at the edge."""
    from auditml.core.rollout import PSI_MIN_EFFECTIVE, psi_decided

    assert PSI_MIN_EFFECTIVE == 200
    assert psi_decided(400, 400, 10) and not psi_decided(399, 400, 10)
    assert psi_decided(209, 5000, 10) and not psi_decided(208, 5000, 10)
    assert not psi_decided(20, 5000, 10) and not psi_decided(100, 100, 10)
    assert not psi_decided(500, 500, 501) and psi_decided(501, 501, 501)
    assert not psi_decided(0, 0, 0) and not psi_decided(10**9, 199, 0)


def test_identical_distributions_never_trip_psi_at_small_or_floor_sizes() -> None:
    """Same-distribution windows: PSI undecided below the floor, under 0.2 at it (200 seeds)."""
    import numpy as np

    from auditml.core.rollout import Sample, statistics

    trigger = parse_trigger("score_psi(score) > 0.2")
    rng = np.random.default_rng(20261204)
    tripped = []
    for canary_n in (20, 50, 100, 208, 209):
        for _ in range(40):
            stable = Sample(5000, 0, None, {"score": array("d", rng.random(5000))})
            canary = Sample(canary_n, 0, None, {"score": array("d", rng.random(canary_n))})
            value = statistics(canary, stable, [trigger], min_values=10)["score_psi(score)"]
            assert (value is None) == (canary_n < 209), canary_n
            if value is not None and trigger.trips(value):
                tripped.append((canary_n, value))
    assert tripped == []


def test_identical_small_canary_is_undecided_and_never_rolls_back(log: AuditLog) -> None:
    """The tester's run: 20 canary scores of the stable distribution: no PSI, no rollback."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve_uniform(log, {"1": 1000, "2": 20}, seed=3)
    result = log.monitor("credit", "production", act=True)
    psi_result = next(t for t in result.data["triggers"] if t["statistic"] == "score_psi(score)")
    assert (psi_result.get("value"), psi_result.get("tripped")) == (None, None)
    assert result.verdict == "undecided" and result.rollback is None
    assert result.data["statistics"].get("score_psi(score)") is None
    counts = result.data["counts"]
    assert (counts["canary_scored(score)"], counts["stable_scored(score)"]) == (20, 1000)
    assert _split(log) == ({"1": 90, "2": 10}, [])


def test_errors_without_output_do_not_count_as_scored_values(log: AuditLog) -> None:
    """370 canary requests, 100 of them bare errors: PSI reads 270 scores, too few beside 600."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve_uniform(log, {"1": 600, "2": 300}, seed=5, unscored_errors=30)
    _serve_uniform(log, {"2": 70}, seed=6, unscored_errors=70)
    result = log.monitor("credit", "production")
    counts = result.data["counts"]
    assert (counts["canary"], counts["canary_scored(score)"]) == (370, 270)
    assert (counts["stable"], counts["stable_scored(score)"]) == (600, 600)
    by_stat = {t["statistic"]: t for t in result.data["triggers"]}
    assert by_stat["error_rate"]["tripped"] is True  # errors still count as requests
    assert by_stat["score_psi(score)"].get("tripped") is None  # 1/(1/270 + 1/600) = 186 < 200
    check = next(log.events(start=result.check.seq, stop=result.check.seq + 1)).event
    assert check.data["counts"] == counts  # the counts behind each statistic are on the log


def test_cli_monitor_says_why_a_trigger_is_undecided(log: AuditLog, capsys: Any) -> None:
    """`auditml monitor` names the counts behind an undecided PSI and the rule it falls short of."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve_uniform(log, {"1": 1000, "2": 20}, seed=3)
    code, out, _ = run_cli(["monitor", "credit", "--env", "production", "--db", log.url], capsys)
    flat = " ".join(out.split())
    assert code == 0 and ": undecided (event" in flat
    assert "undecided: 20 canary and 1000 stable score values" in flat
    assert "1/(1/canary + 1/stable) >= 200" in flat
    assert "error_rate > 0.1 0 ok" in flat


def test_undecided_because_names_the_shortfall_of_each_statistic() -> None:
    """Requests, latencies and scores each explain their shortfall; unknown counts say nothing."""
    from auditml.core.rollout import undecided_because

    full = {"canary": 500, "stable": 5000, "canary_latency": 500, "stable_latency": 5000}
    psi_counts = {**full, "canary_scored(p)": 150, "stable_scored(p)": 5000}
    assert undecided_because("error_rate", {**full, "canary": 5}, 10) == (
        "5 canary and 5000 stable requests; at least 10 of each needed"
    )
    assert undecided_because("error_rate", {**full, "stable": 0}, 10, shadow=True) is None
    assert undecided_because("error_rate", full, 10) is None
    short_latency = {**full, "canary_latency": 9}
    assert "9 canary and 5000 stable latencies" in str(
        undecided_because("latency_p95_ms", short_latency, 10)
    )
    assert undecided_because("latency_p95_ms", {**full, "stable_latency": 3}, 10) is None
    assert undecided_because("latency_p95_delta_ms", {**full, "stable_latency": 3}, 10)
    assert "150 canary and 5000 stable p values" in str(
        undecided_because("score_psi(p)", psi_counts, 10)
    )
    assert undecided_because("score_psi(p)", {**psi_counts, "canary_scored(p)": 209}, 10) is None
    assert undecided_because("score_psi(p)", full, 10) is None  # a check from before the counts
    assert undecided_because("score_psi(p)", {**psi_counts, "canary_scored(p)": True}, 10) is None


@pytest.mark.parametrize("given", ["10", " 10 ", "10%"])
def test_cli_deploy_and_promote_print_the_share_as_a_percent(
    log: AuditLog, capsys: Any, given: str
) -> None:
    """`--traffic 10` prints "canary on 10% of production", promote "to 50% of"; never "10 of"."""
    db = ["--db", log.url]
    args = ["deploy", "credit", "2", "--env", "production", "--traffic", given, "--actor", OPS]
    code, out, _ = run_cli([*args, *db], capsys)
    assert code == 0 and "as a canary on 10% of production" in out, out
    args = ["promote", "credit", "2", "--env", "production", "--traffic", given.replace("1", "5")]
    code, out, _ = run_cli([*args, "--actor", OPS, *db], capsys)
    assert code == 0 and "Promoted credit v2 to 50% of production" in out, out


def test_cli_history_names_the_monitor_check_once(log: AuditLog, capsys: Any) -> None:
    """An automatic rollback says "monitor check N" in its reason: history adds no "(check N)"."""
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 40, "2": 20}, errors=6)
    result = log.monitor("credit", "production", act=True)
    seq = result.check.seq
    code, out, _ = run_cli(["history", "credit", "--env", "production", "--db", log.url], capsys)
    flat = " ".join(out.split())
    assert code == 0 and f"monitor check {seq} tripped: error_rate = 0.3 tripped" in flat
    assert flat.count(f"check {seq}") == 1, out


def test_cli_history_adds_the_check_to_a_reason_that_does_not_name_it(
    log: AuditLog, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback caused by check N whose reason names another number still shows "(check N)"."""
    from dataclasses import replace

    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    _serve(log, {"1": 40, "2": 20}, errors=6)
    seq = log.monitor("credit", "production", act=True).check.seq
    real = AuditLog.splits

    def renamed(self: AuditLog, *args: Any, **kw: Any) -> Any:
        found = real(self, *args, **kw)
        return [c if c.cause is None else replace(c, reason=f"see check {seq}0") for c in found]

    monkeypatch.setattr(AuditLog, "splits", renamed)
    code, out, _ = run_cli(["history", "credit", "--db", log.url], capsys)
    assert code == 0 and f"see check {seq}0 (check {seq})" in " ".join(out.split()), out


# ------------------------------------------------- a rollback to a version short of today's policy


def _v2_short_of_approvals_in_staging(log: AuditLog) -> None:
    """Run v2 then v3 in staging, then require 2 approvals there: v2 (1 approval) may not deploy."""
    log.deploy("credit", "2", "staging", actor=OPS)
    log.deploy("credit", "3", "staging", actor=OPS)
    log.apply_policy(_policy(POLICY + b"\n[approvals]\nstaging = 2\n"), actor="admin")
    with pytest.raises(PolicyDeniedError, match="2 are needed"):
        log.deploy("credit", "2", "staging", actor=OPS)


def test_rollback_to_a_version_short_of_todays_approvals_warns(log: AuditLog) -> None:
    """Rolling back to v2, which the policy now refuses to deploy, succeeds with a clear warning."""
    _v2_short_of_approvals_in_staging(log)
    with pytest.warns(UserWarning) as caught:
        receipt = log.rollback("credit", "staging", actor=OPS, reason="v3 broke")
    assert receipt.version == "2"
    assert log.status("credit")["credit"].running["staging"] == "2"
    (warning,) = [w for w in caught if "rolled back" in str(w.message)]
    text = str(warning.message)
    assert "version 2 has 1 distinct approval(s) for staging, and 2 are needed" in text
    assert f"policy in force (event {log.policy()[1]})" in text
    assert "`auditml approve credit 2`" in text
    rollback = next(log.events(start=receipt.seq, stop=receipt.seq + 1)).event
    assert rollback.data["policy_seq"] == log.policy()[1]  # the event binds the policy it broke


def test_cli_rollback_short_of_todays_approvals_prints_a_warning(
    log: AuditLog, capsys: Any
) -> None:
    """`auditml rollback` prints the approval shortfall on stderr, each time it happens."""
    _v2_short_of_approvals_in_staging(log)
    args = ["rollback", "credit", "--env", "staging", "--actor", OPS, "--db", log.url]
    code, out, err = run_cli(args, capsys)
    flat = " ".join(err.split())
    assert code == 0 and "Rolled staging back to credit v2" in out
    assert "warning: version 2 does not meet what the policy in force" in flat, err
    assert "has 1 distinct approval(s) for staging, and 2 are needed" in flat
    code, out, err = run_cli([*args[:4], "--to", "3", *args[4:]], capsys)
    assert code == 0 and "warning: version 3 does not meet" in " ".join(err.split()), err
    code, out, err = run_cli(args, capsys)
    assert code == 0 and "warning: version 2 does not meet" in " ".join(err.split()), err


def test_rollbacks_that_meet_the_policy_or_end_a_rollout_do_not_warn(log: AuditLog) -> None:
    """A target with its approvals, and the stable version a rollout leaves, raise no warning."""
    import warnings

    log.deploy("credit", "2", "staging", actor=OPS)
    log.deploy("credit", "3", "staging", actor=OPS)
    log.deploy("credit", "2", "production", traffic="10%", actor=OPS)
    log.apply_policy(_policy(POLICY + b"\n[approvals]\nproduction = 2\n"), actor="admin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert log.rollback("credit", "staging", actor=OPS).version == "2"
        assert log.rollback("credit", "production", actor=OPS).version == "1"
