"""Retention schedules, legal minimums, the record of processing and the retention plan (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from auditml.core.events import PRIVACY_ACTIONS, REGISTRY, Draft, Event
from auditml.core.policy import Policy, check_recordable, policy_from_toml
from auditml.core.privacy import (
    Hold,
    LegalMinimum,
    Retention,
    SegmentSummary,
    ValueCount,
    check_retention,
    parse_duration,
    plan_retention,
    privacy_entry,
    schedule_rows,
)
from auditml.errors import InvalidInputError


def _policy(text: str) -> Policy:
    policy = policy_from_toml(text.encode(), where="auditml.toml")
    check_recordable(policy)
    return policy


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


# -- durations -------------------------------------------------------------------------------


def test_durations_parse_in_days_weeks_months_and_years() -> None:
    """Periods in days, weeks, months and years parse into calendar months and days."""
    assert (parse_duration("30d").months, parse_duration("30d").days) == (0, 30)
    assert parse_duration("2w").days == 14
    assert parse_duration("6mo").months == 6
    assert parse_duration("10y").months == 120
    assert parse_duration(" 3 years ").months == 36


@pytest.mark.parametrize("text", ["30", "3x", "-1d", "1.5y", "0d", "", "99999y"])
def test_a_bad_duration_is_refused_with_an_example(text: str) -> None:
    """A period without a unit, of an unknown unit, zero or absurd is refused, with an example."""
    with pytest.raises(InvalidInputError, match="runtime_values"):
        parse_duration(text, where="retention.runtime_values")


def test_a_month_from_the_end_of_january_ends_on_the_last_of_february() -> None:
    """Calendar months clamp to the month's last day, and years keep the date."""
    assert parse_duration("1mo").after(_at("2027-01-31")) == _at("2027-02-28")
    assert parse_duration("1y").after(_at("2028-02-29")) == _at("2029-02-28")
    assert parse_duration("30d").after(_at("2027-01-31")) == _at("2027-03-02")


def test_a_period_in_days_meets_a_month_minimum_only_if_it_always_does() -> None:
    """183 days can end before six months do (184 days at most); 184 days never can."""
    six = parse_duration("6mo")
    assert parse_duration("183d").shorter_than(six)
    assert not parse_duration("184d").shorter_than(six)
    assert parse_duration("26w").shorter_than(six)
    assert not parse_duration("1y").shorter_than(six)
    assert parse_duration("5mo").shorter_than(six)


# -- the policy ------------------------------------------------------------------------------


def test_retention_processing_and_personal_fields_parse_from_the_policy_file() -> None:
    """[retention], [processing] and [personal_data] are read from auditml.toml."""
    policy = policy_from_toml(
        b"""
[retention]
runtime_values = "30d"
runtime_records = "400d"
events = "10y"
[retention.values]
features = "7d"
[processing]
controller = "Bank Example SA"
purposes = ["credit decisions"]
data_subjects = ["loan applicants"]
categories = ["applicant id", "income"]
recipients = ["model risk management"]
[personal_data]
event_fields = ["actor.id", "data.reason"]
""",
        where="auditml.toml",
    )
    check_recordable(policy)
    assert policy.retention.value_period("features") == parse_duration("7d")
    assert policy.retention.value_period("subject") == parse_duration("30d")
    assert policy.processing.purposes == ["credit decisions"]
    assert policy.personal_data.event_fields == ["actor.id", "data.reason"]
    kinds = [row.kind for row in schedule_rows(policy.retention)]
    assert kinds == ["runtime_values", "runtime_values.features", "runtime_records", "events"]


def test_a_schedule_shorter_than_the_legal_minimum_is_refused_naming_key_minimum_and_override() -> (
    None
):
    """runtime_records = "30d" breaks Art. 19's six months: the error says which key and how out."""
    with pytest.raises(InvalidInputError) as caught:
        _policy('[retention]\nruntime_records = "30d"\n')
    message = str(caught.value)
    assert 'retention.runtime_records = "30d"' in message
    assert "6mo" in message and "Art. 19" in message
    assert "[retention.shorter_because]" in message


def test_a_shorter_schedule_is_accepted_when_the_policy_says_why() -> None:
    """A stated reason under [retention.shorter_because] lets a period go below its minimum."""
    policy = _policy(
        '[retention]\nruntime_records = "30d"\n'
        '[retention.shorter_because]\nruntime_records = "not a high-risk system (DPIA-7)"\n'
    )
    row = next(r for r in schedule_rows(policy.retention) if r.kind == "runtime_records")
    assert row.shorter_because == "not a high-risk system (DPIA-7)"
    assert row.minimum == "6mo"


def test_a_minimum_the_policy_names_binds_per_value_periods_too() -> None:
    """A minimum on runtime_values is checked against every per-name period as well."""
    retention = Retention(
        runtime_values="60d",
        values={"features": "7d"},
        minimum={"runtime_values": LegalMinimum(period="30d", basis="sector rule 4")},
    )
    with pytest.raises(InvalidInputError, match=r"retention\.values\.features.*sector rule 4"):
        check_retention(retention)


def test_the_events_minimum_is_ten_years_by_default() -> None:
    """A five-year events period is refused under Art. 18 unless the policy says why."""
    with pytest.raises(InvalidInputError, match=r"Art\. 18"):
        _policy('[retention]\nevents = "5y"\n')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[retention]\nruntime_records = "3x"\n', "retention.runtime_records: '3x' is not"),
        ('[retention]\nlogs = "3d"\n', "known settings: events, minimum, runtime_records"),
        ("[retention]\nruntime_records = 30\n", "expected a string, got the number 30"),
        ('[processing]\npurposes = "x"\n', "processing.purposes: expected a list"),
        ('[personal_data]\nevent_fields = ["email"]\n', "'email' is not an event field"),
        ('[retention.shorter_because]\nlogs = "x"\n', "retention.shorter_because.logs"),
    ],
)
def test_a_wrong_privacy_setting_is_named(text: str, expected: str) -> None:
    """Each wrong setting is refused with its key and what it should be."""
    with pytest.raises(InvalidInputError) as caught:
        _policy(text)
    assert expected in str(caught.value)


# -- the plan --------------------------------------------------------------------------------


def _segment(
    seq: int, last: str, stream: str = "credit/production", count: int = 10
) -> SegmentSummary:
    return SegmentSummary(seq=seq, stream=stream, last_time=f"{last}T00:00:00.000000Z", count=count)


def test_values_fall_due_one_period_after_their_segment() -> None:
    """Values of a segment older than the value period are due; newer ones come next."""
    retention = Retention(runtime_values="30d", runtime_records="400d")
    plan = plan_retention(
        retention,
        _at("2027-03-01"),
        [_segment(5, "2027-01-01"), _segment(9, "2027-02-20")],
        [ValueCount(5, "subject", 10), ValueCount(9, "subject", 10)],
    )
    assert [(d.seg, d.name, d.count) for d in plan.values] == [(5, "subject", 10)]
    assert plan.segments == []
    upcoming = {(d.kind, d.name): d.due_at for d in plan.upcoming}
    assert upcoming[("runtime_values", "subject")] == "2027-03-22T00:00:00.000000Z"
    assert upcoming[("runtime_records", None)] == "2028-02-05T00:00:00.000000Z"


def test_a_segment_waits_for_values_another_rule_still_covers() -> None:
    """Records past their period stay while a longer value rule still covers their values."""
    retention = Retention(
        runtime_values="30d",
        runtime_records="184d",
        values={"payload": "2y"},
        shorter_because={"runtime_records": "test"},
    )
    now = _at("2028-01-01")
    plan = plan_retention(
        retention,
        now,
        [_segment(3, "2027-01-01")],
        [ValueCount(3, "subject", 10), ValueCount(3, "payload", 10)],
    )
    assert [(d.seg, d.name) for d in plan.values] == [(3, "subject")]
    assert plan.segments == []
    waiting = next(d for d in plan.upcoming if d.kind == "runtime_records")
    assert waiting.due_at == "2029-01-01T00:00:00.000000Z"  # when the payload falls due


def test_a_segment_whose_values_have_no_period_is_never_due() -> None:
    """Values kept for ever keep their records: nothing is removed that they commit to."""
    retention = Retention(runtime_records="1y")
    plan = plan_retention(
        retention,
        _at("2030-01-01"),
        [_segment(3, "2027-01-01")],
        [ValueCount(3, "subject", 10)],
    )
    assert plan.values == [] and plan.segments == []


def test_a_segment_and_its_values_fall_due_together_when_both_expired() -> None:
    """Once records and values are both past their periods, both are due."""
    retention = Retention(runtime_values="30d", runtime_records="1y")
    plan = plan_retention(
        retention,
        _at("2029-01-01"),
        [_segment(3, "2027-01-01", count=7), _segment(4, "2027-01-02", count=3)],
        [ValueCount(3, "subject", 7)],
    )
    assert [d.seg for d in plan.segments] == [3, 4]
    assert plan.record_count == 10 and plan.value_count == 7


def test_an_open_incident_holds_its_models_runtime_data() -> None:
    """A hold on a model keeps its due values and records, and says why."""
    retention = Retention(runtime_values="30d", runtime_records="1y")
    hold = Hold(model="credit", env=None, reason="incident INC-1 is open")
    plan = plan_retention(
        retention,
        _at("2029-01-01"),
        [_segment(3, "2027-01-01"), _segment(4, "2027-01-01", stream="fraud/production")],
        [ValueCount(3, "subject", 10), ValueCount(4, "subject", 10)],
        holds=[hold],
    )
    assert [d.seg for d in plan.values] == [4] and [d.seg for d in plan.segments] == [4]
    assert {(d.kind, d.seg, d.held) for d in plan.held} == {
        ("runtime_values", 3, "incident INC-1 is open"),
        ("runtime_records", 3, "incident INC-1 is open"),
    }


def test_no_schedule_plans_nothing() -> None:
    """With no periods set (the default), everything is kept for ever."""
    plan = plan_retention(
        Retention(),
        _at("2099-01-01"),
        [_segment(3, "2027-01-01")],
        [ValueCount(3, "subject", 10)],
        first_event_time="2027-01-01T00:00:00.000000Z",
    )
    assert plan.values == [] and plan.segments == [] and plan.upcoming == []
    assert plan.events_due_at is None


def test_the_events_period_counts_from_the_first_event() -> None:
    """The oldest event passes the events period at its time plus the period."""
    plan = plan_retention(
        Retention(events="10y"),
        _at("2027-06-01"),
        [],
        [],
        first_event_time="2027-01-01T00:00:00.000000Z",
    )
    assert plan.events_due_at == "2037-01-01T00:00:00.000000Z"


# -- events ----------------------------------------------------------------------------------


def test_erasure_and_retention_actions_are_registered_as_privacy_actions() -> None:
    """privacy.erasure and retention.applied are governed, unsigned and not folded."""
    assert PRIVACY_ACTIONS == ("privacy.erasure", "retention.applied")
    for action in PRIVACY_ACTIONS:
        rule = REGISTRY[action]
        assert not rule.signed and not rule.folded and rule.group == "privacy"


def test_an_erasure_event_records_counts_kinds_and_request_never_a_subject() -> None:
    """The erasure data has counts, kinds and the request reference; no field holds a subject."""
    draft = Draft.build(
        "privacy.erasure",
        actor="dpo@bank.example",
        data={
            "request": "DSR-2027-14",
            "reason": "GDPR Art. 17 request",
            "values": 6,
            "kinds": {"subject": 2, "features": 2, "payload": 2},
            "records": 2,
        },
    )
    assert set(draft.data) == {"request", "reason", "values", "kinds", "records", "scope"}
    with pytest.raises(InvalidInputError, match="request"):
        Draft.build("privacy.erasure", actor="a", data={"reason": "x", "values": 1})
    with pytest.raises(InvalidInputError, match="subject_id"):
        Draft.build(
            "privacy.erasure",
            actor="a",
            data={"request": "r", "reason": "x", "values": 1, "subject_id": "cust-1"},
        )


def test_privacy_entries_read_erasures_and_retention_runs_from_events() -> None:
    """An erasure and a retention run read back as entries with their counts."""
    base = {"v": 1, "log": "l", "prev": "0" * 64, "time": "2027-01-01T00:00:00.000000Z"}
    erasure = Event.model_validate(
        {
            **base,
            "seq": 4,
            "actor": {"id": "dpo"},
            "action": "privacy.erasure",
            "subject": {},
            "data": {"request": "DSR-1", "reason": "asked", "values": 3, "kinds": {"subject": 3}},
        }
    )
    run = Event.model_validate(
        {
            **base,
            "seq": 7,
            "actor": {"id": "ops"},
            "action": "retention.applied",
            "subject": {},
            "data": {"as_of": base["time"], "values": 20, "records": 10, "segments": [3, 4]},
        }
    )
    first, second = privacy_entry(4, erasure), privacy_entry(7, run)
    assert first is not None and second is not None
    assert first.summary() == "erased 3 value(s) (3 subject) under request DSR-1: asked"
    assert (second.values, second.records, second.segments) == (20, 10, 2)
    assert privacy_entry(1, run.model_copy(update={"action": "model.train"})) is None


@pytest.mark.parametrize("months", [*range(1, 150), 4799, 4800, 4801, 9599, 9601, 12_000])
def test_month_spans_are_those_of_every_start_in_the_gregorian_cycle(months: int) -> None:
    """The fewest and most days of ``months`` months equal a count over every start month."""
    import calendar
    import itertools

    from auditml.core.privacy import _month_span

    cycle = 4800  # 400 years, every start month of which is tried
    lengths = [
        calendar.monthrange(2000 + (i % cycle) // 12, (i % cycle) % 12 + 1)[1]
        for i in range(cycle + months)
    ]
    prefix = list(itertools.accumulate(lengths, initial=0))
    spans = [prefix[s + months] - prefix[s] for s in range(cycle)]
    assert _month_span(months) == (min(spans), max(spans))


def test_the_legal_minimums_built_without_validation_are_valid() -> None:
    """MINIMUMS, constructed without a validator at import, validate as they stand."""
    from auditml.core.privacy import MINIMUMS, LegalMinimum

    for minimum in MINIMUMS.values():
        assert LegalMinimum.model_validate(minimum.model_dump()) == minimum
        assert minimum.duration().span()[1] > 0
