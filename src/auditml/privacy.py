"""Personal data on a log: the retention schedule in force, what falls due, what was removed.

A service over the ledger, beside trust, lifecycle and runtime: it reads the
policy in force, the ``runtime.segment`` events, the counts of values kept off
the log, open incidents (which hold their model's runtime data, EU AI Act
Art. 73(6)) and the ``privacy.erasure`` and ``retention.applied`` events, and
hands them to the pure planner of :mod:`auditml.core.privacy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from auditml.core.events import INCIDENT_ACTIONS, PRIVACY_ACTIONS
from auditml.core.incidents import IncidentIndex
from auditml.core.policy import Policy
from auditml.core.privacy import (
    Hold,
    Plan,
    PrivacyEntry,
    RetentionStatus,
    SegmentSummary,
    ValueCount,
    plan_retention,
    privacy_entry,
    schedule_rows,
)
from auditml.core.state import policy_in_force

if TYPE_CHECKING:
    from auditml.ledger import Ledger

__all__ = ["Privacy"]


class Privacy:
    """Retention and erasure over one log."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def policy(self) -> tuple[Policy, int | None]:
        """Return the policy in force and the seq that recorded it."""
        records = self._ledger.records(None, ("policy.update",), newest_first=True)
        return policy_in_force((r.seq, r.body) for r in records)

    def entries(self) -> list[PrivacyEntry]:
        """Return every erasure and retention run on the log, oldest first."""
        found = []
        for record in self._ledger.records(None, PRIVACY_ACTIONS):
            entry = privacy_entry(record.seq, record.event)
            if entry is not None:
                found.append(entry)
        return found

    def removed_segments(self) -> set[int]:
        """Return the segments whose records a retention run removed."""
        removed: set[int] = set()
        for record in self._ledger.records(None, ("retention.applied",)):
            segments = record.event.data.get("segments")
            if isinstance(segments, list):
                removed.update(s for s in segments if isinstance(s, int))
        return removed

    def holds(self) -> list[Hold]:
        """Return a hold per open incident: its model's runtime data is kept (Art. 73(6))."""
        index = IncidentIndex()
        for record in self._ledger.records(None, INCIDENT_ACTIONS):
            index.apply(record.seq, record.event)
        return [
            Hold(
                model=incident.model,
                env=incident.environment,
                reason=f"incident {incident.id} is open (event {incident.seq}): EU AI Act "
                "Art. 73(6) keeps the evidence until it is closed",
            )
            for incident in index.incidents.values()
            if incident.is_open
        ]

    def _segments(self) -> Iterator[SegmentSummary]:
        removed = self.removed_segments()
        for record in self._ledger.records(None, ("runtime.segment",)):
            if record.seq in removed:
                continue
            data = record.event.data
            count = data.get("count")
            yield SegmentSummary(
                seq=record.seq,
                stream=str(data.get("stream", "")),
                last_time=str(data.get("last_time", record.event.time)),
                count=count if isinstance(count, int) else 0,
            )

    def plan(self, now: datetime | None = None) -> Plan:
        """Return what falls due at ``now`` (default: now) under the policy in force."""
        policy, _ = self.policy()
        when = now or datetime.now(UTC)
        with self._ledger.store.snapshot() as snap:
            counts = [ValueCount(seg, name, n) for seg, name, n in snap.value_counts(self._log_id)]
        first = next(iter(self._ledger.events(limit=1)), None)
        return plan_retention(
            policy.retention,
            when,
            list(self._segments()),
            counts,
            holds=self.holds(),
            first_event_time=None if first is None else first.event.time,
        )

    def status(self, now: datetime | None = None) -> RetentionStatus:
        """Return the schedule in force, what falls due next, and what has been removed."""
        policy, seq = self.policy()
        return RetentionStatus(
            policy_seq=seq,
            schedule=schedule_rows(policy.retention),
            plan=self.plan(now),
            entries=self.entries(),
            processing=policy.processing,
            personal_fields=list(policy.personal_data.event_fields),
        )

    @property
    def _log_id(self) -> int:
        return self._ledger.log_id
