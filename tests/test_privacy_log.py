"""Retention on a live log: the schedule in force, what falls due, and section 12 of the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auditml import AuditLog, Draft
from auditml.core.decide import Outcome
from auditml.reports.build import build_report
from auditml.reports.render import render_report
from tests.conftest import run_cli

DS = "ds@bank.example"
POLICY = """
[retention]
runtime_values = "30d"
runtime_records = "400d"

[processing]
controller = "Bank Example SA"
purposes = ["credit decisions", "post-market monitoring"]
data_subjects = ["loan applicants"]
categories = ["applicant id", "income"]
recipients = ["model risk management"]

[personal_data]
event_fields = ["actor.id", "data.reason"]
"""


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """Yield a log with a retention policy and three runtime records of 'credit' in production."""
    opened, _ = AuditLog.init(db_url, origin="bank.example/credit", actor="admin")
    opened.record_training("credit", actor=DS)
    policy = tmp_path / "auditml.toml"
    policy.write_text(POLICY, encoding="utf-8")
    opened.apply_policy(policy, actor="admin")
    with opened.runtime("credit", env="production", background=False) as rec:
        for n in range(3):
            rec.record(
                f"req-{n}",
                version="1",
                output={"label": "refer"},
                latency_ms=2,
                subject=f"customer-{n}",
                features={"income": 50_000 + n},
                time=datetime(2027, 1, 1, tzinfo=UTC),
            )
    try:
        yield opened
    finally:
        opened.close()


def _erasure(log: AuditLog) -> int:
    """Record an erasure event the way the erasure service does, and return its seq."""
    draft = Draft.build(
        "privacy.erasure",
        actor="dpo@bank.example",
        data={
            "request": "DSR-2027-14",
            "reason": "the applicant asked (GDPR Art. 17)",
            "values": 2,
            "kinds": {"subject": 1, "features": 1},
            "records": 1,
        },
    )
    return log._ledger.decided(lambda view: Outcome(draft)).seq


def test_the_schedule_in_force_says_what_falls_due_and_when(log: AuditLog) -> None:
    """Values fall due 30 days after their segment, records 400 days after, both shown."""
    (segment,) = [r.seq for r in log.events(action="runtime.segment")]
    soon = log.retention(datetime(2027, 1, 15, tzinfo=UTC))
    assert soon.plan.values == [] and soon.plan.segments == []
    upcoming = {(d.kind, d.name): d.due_at for d in soon.plan.upcoming}
    assert upcoming[("runtime_values", "subject")] == "2027-01-31T00:00:00.000000Z"
    assert upcoming[("runtime_records", None)] == "2028-02-05T00:00:00.000000Z"
    later = log.retention(datetime(2027, 3, 1, tzinfo=UTC))
    assert {(d.seg, d.name, d.count) for d in later.plan.values} == {
        (segment, "subject", 3),
        (segment, "features", 3),
    }
    assert later.plan.segments == []
    last = log.retention(datetime(2029, 1, 1, tzinfo=UTC))
    assert [(d.seg, d.count) for d in last.plan.segments] == [(segment, 3)]


def test_an_open_incident_holds_what_falls_due(log: AuditLog) -> None:
    """While an incident on the model is open, its due runtime data is held, not planned."""
    log.open_incident("credit", "1", "wrong refusals", environment="production", actor=DS)
    status = log.retention(datetime(2029, 1, 1, tzinfo=UTC))
    assert status.plan.values == [] and status.plan.segments == []
    assert status.plan.held and all("Art. 73(6)" in (d.held or "") for d in status.plan.held)


def test_retention_show_prints_the_schedule_and_what_was_removed(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """`retention show` lists the periods, their legal minimum, the next due and the erasures."""
    seq = _erasure(log)
    url = log.store.url
    code, out, _ = run_cli(["retention", "show", "--db", url, "--at", "2027-01-15"], capsys)
    assert code == 0
    assert "runtime_records" in out and "400d" in out and "Art. 19(1)" in out
    assert "2027-01-31" in out
    assert str(seq) in out and "DSR-2027-14" in out
    assert "customer-" not in out
    code, out, _ = run_cli(["retention", "show", "--db", url, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["removed"][0]["seq"] == seq
    assert data["removed"][0]["kinds"] == {"subject": 1, "features": 1}
    assert data["processing"]["controller"] == "Bank Example SA"


def test_retention_show_refuses_a_bad_time(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --at is one sentence on stderr and exit status 2."""
    code, _, err = run_cli(["retention", "show", "--db", log.store.url, "--at", "soon"], capsys)
    assert code == 2 and "soon" in err


def test_a_too_short_schedule_is_refused_and_nothing_is_recorded(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`policy apply` of runtime_records = "30d" exits 2 naming key and minimum; no event."""
    short = tmp_path / "short.toml"
    short.write_text('[retention]\nruntime_records = "30d"\n', encoding="utf-8")
    size = log.head().size
    code, _, err = run_cli(
        ["policy", "apply", str(short), "--db", log.store.url, "--actor", "admin"], capsys
    )
    assert code == 2
    assert 'retention.runtime_records = "30d"' in err and "6mo" in err
    assert "shorter_because" in err
    assert log.head().size == size


def test_section_12_shows_schedule_processing_and_the_erasure_log(log: AuditLog) -> None:
    """The report's data-protection section lists the schedule, Art. 30 record and erasures."""
    seq = _erasure(log)
    report = build_report(log)
    assert [e.seq for e in report.erasures] == [seq]
    assert report.processing.purposes == ["credit decisions", "post-market monitoring"]
    assert "runtime_values: 30d" in report.processing.retention
    markdown = render_report(report, "md").decode()
    section = markdown[markdown.index("Data protection") : markdown.index("Integrity appendix")]
    assert "| 400d |" in section and "Bank Example SA" in section
    assert f"| {seq} |" in section and "DSR-2027-14" in section
    assert "No erasure" not in section and "No evidence recorded" not in section
    assert "data.reason" in section
    html = render_report(report, "html").decode()
    assert "Record of processing (GDPR Art. 30)" in html and "DSR-2027-14" in html
    if log.store.dialect == "postgresql":
        assert "VACUUM" in section and "backup" in section
