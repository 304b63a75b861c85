"""Incidents: opened and closed on the log, with EU AI Act Art. 73 reporting deadlines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError
from auditml.core.incidents import art73_due
from tests.test_cli import run

DS, VAL, REL, OPS = "ds@b.example", "val@b.example", "rel@b.example", "ops@b.example"


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log with version 1 of model m trained, approved and deployed to prod."""
    created, _ = AuditLog.init(db_url, origin="test.example/incidents", actor="admin")
    with created:
        created.record_training("m", version="1", actor=DS)
        created.approve("m", "1", actor=VAL)
        created.deploy("m", "1", "prod", actor=REL)
        yield created


@pytest.mark.parametrize(
    ("severity", "impact", "due"),
    [
        ("serious", None, ("2026-11-16T09:00:00.000000Z", "Art. 73(2)")),
        ("serious", "health", ("2026-11-16T09:00:00.000000Z", "Art. 73(2)")),
        ("serious", "death", ("2026-11-11T09:00:00.000000Z", "Art. 73(4)")),
        ("serious", "critical-infrastructure", ("2026-11-03T09:00:00.000000Z", "Art. 73(3)")),
        ("serious", "widespread-infringement", ("2026-11-03T09:00:00.000000Z", "Art. 73(3)")),
        ("high", "death", None),
    ],
)
def test_art73_deadlines_count_from_awareness(
    severity: str, impact: str | None, due: tuple[str, str] | None
) -> None:
    """15 days, 10 for a death, 2 for widespread or critical harm; only serious ones count."""
    assert art73_due("2026-11-01T09:00:00.000000Z", severity, impact) == due


def test_open_and_close_an_incident(log: AuditLog) -> None:
    """An incident gets the next id, its deadline, and closes with a resolution."""
    first = log.open_incident(
        "m",
        "1",
        "approvals for under-30s fell by a third",
        severity="serious",
        impact="fundamental-rights",
        environment="prod",
        aware_at="2026-11-20T08:30:00Z",
        actor=OPS,
    )
    assert first.id == "INC-1" and first.is_open
    assert first.due == ("2026-12-05T08:30:00.000000Z", "Art. 73(2)")
    second = log.open_incident("m", "1", "latency", id="OPS-77", actor=OPS)
    assert second.id == "OPS-77" and second.due is None
    log.close_incident(
        "INC-1", "rolled back and retrained", reported_at="2026-11-21T10:00:00Z", actor=OPS
    )
    found = {i.id: i for i in log.incidents("m")}
    assert not found["INC-1"].is_open and found["INC-1"].reported_at is not None
    assert found["OPS-77"].is_open
    assert log.status("m")["m"].versions["1"].incidents == 2


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda log: log.open_incident("m", "9", "x", actor=OPS), "no version '9'"),
        (lambda log: log.open_incident("zz", "1", "x", actor=OPS), "no model 'zz'"),
        (lambda log: log.open_incident("m", "1", "x", severity="dire", actor=OPS), "severity"),
        (lambda log: log.open_incident("m", "1", "x", impact="mood", actor=OPS), "impact"),
        (lambda log: log.open_incident("m", "1", "", actor=OPS), "summary"),
        (lambda log: log.open_incident("m", "1", "x", aware_at="soon", actor=OPS), "not a date"),
        (
            lambda log: log.open_incident("m", "1", "x", aware_at="2999-01-01", actor=OPS),
            r"aware_at \(--aware-at\) 2999-01-01T00:00:00.000000Z is in the future",
        ),
        (lambda log: log.close_incident("INC-404", "fixed", actor=OPS), "no incident INC-404"),
    ],
)
def test_bad_incident_input_writes_nothing(log: AuditLog, call, match: str) -> None:  # type: ignore[no-untyped-def]
    """Unknown models, versions or incidents and malformed fields are refused, log unchanged."""
    before = log.head().size
    with pytest.raises(InvalidInputError, match=match):
        call(log)
    assert log.head().size == before


def test_closing_twice_and_reusing_an_id_are_refused(log: AuditLog) -> None:
    """An id names one incident; a closed incident cannot be closed again."""
    log.open_incident("m", "1", "drift", id="A-1", actor=OPS)
    with pytest.raises(InvalidInputError, match="already exists"):
        log.open_incident("m", "1", "drift again", id="A-1", actor=OPS)
    log.close_incident("A-1", "fixed", actor=OPS)
    with pytest.raises(InvalidInputError, match="already closed"):
        log.close_incident("A-1", "fixed", actor=OPS)


def test_policy_can_restrict_who_records_incidents(log: AuditLog) -> None:
    """With incident restricted to a role, others are refused and the attempt recorded."""
    log.apply_policy(Policy(roles={OPS: ["ops"]}, permissions={"incident": ["ops"]}))
    with pytest.raises(PolicyDeniedError):
        log.open_incident("m", "1", "drift", actor=DS)
    log.open_incident("m", "1", "drift", actor=OPS)
    assert [r.event.data["attempted"] for r in log.events(action="policy.denied")] == [
        "incident.open"
    ]


def test_incident_commands(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The incident open, list and close commands work as a user would run them."""
    with AuditLog.init(db_url, origin="test.example/incidents", actor="admin")[0] as log:
        log.record_training("m", version="1", actor=DS)
    code, out, err = run(
        [
            "incident",
            "open",
            "m",
            "1",
            "--summary",
            "bias in approvals",
            "--severity",
            "serious",
            "--impact",
            "death",
            "--aware-at",
            "2026-11-20T08:00:00Z",
            "--db",
            db_url,
        ],
        capsys,
    )
    assert code == 0, err
    assert "INC-1" in out and "2026-11-30T08:00" in out and "Art. 73(4)" in out
    code, out, _ = run(["incident", "list", "--json", "--db", db_url], capsys)
    (listed,) = json.loads(out)
    assert listed["report_due"].startswith("2026-11-30") and listed["open"]
    code, out, _ = run(["incident", "list", "--db", db_url], capsys)
    assert "aware (UTC)" in out and "2026-11-20 08:00:00" in out  # the deadline counts from it
    code, out, err = run(
        ["incident", "close", "INC-1", "--resolution", "retrained", "--db", db_url], capsys
    )
    assert code == 0, err
    code, _, err = run(["incident", "close", "INC-1", "--resolution", "x", "--db", db_url], capsys)
    assert code == 2 and "already closed" in err
    code, _, err = run(["incident", "close", "INC-1", "--reason", "x", "--db", db_url], capsys)
    assert code == 2 and "already closed" in err  # --reason names the same option
