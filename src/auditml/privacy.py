"""Personal data on a log: the retention schedule in force, what falls due, what was removed.

A service over the ledger, beside trust, lifecycle and runtime: it reads the
policy in force, the ``runtime.segment`` events, the counts of values kept off
the log, open incidents (which hold their model's runtime data, EU AI Act
Art. 73(6)) and the ``privacy.erasure`` and ``retention.applied`` events, and
hands them to the pure planner of :mod:`auditml.core.privacy`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from auditml.core.canonical import canonical_bytes
from auditml.core.decide import Outcome, View, denied
from auditml.core.events import INCIDENT_ACTIONS, PRIVACY_ACTIONS, Actor, Draft
from auditml.core.incidents import IncidentIndex
from auditml.core.policy import Policy, check_role
from auditml.core.privacy import (
    Hold,
    Plan,
    PrivacyEntry,
    RetentionStatus,
    SegmentSummary,
    ValueCount,
    erased_digest,
    plan_retention,
    privacy_entry,
    schedule_rows,
    subject_handle,
)
from auditml.core.state import policy_in_force
from auditml.errors import InvalidInputError

if TYPE_CHECKING:
    from auditml.ledger import Ledger

__all__ = ["Erasure", "Privacy"]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one erasure did: its event, how many values of which kinds, and what remains."""

    seq: int
    request: str
    values: int
    records: int
    kinds: dict[str, int]
    #: What the store did so the erased bytes leave its files, and what it could not.
    scrubbed: str

    def as_dict(self) -> dict[str, Any]:
        """Return the erasure as plain JSON values (never the subject)."""
        return {
            "seq": self.seq,
            "request": self.request,
            "values": self.values,
            "records": self.records,
            "kinds": dict(self.kinds),
            "scrubbed": self.scrubbed,
        }


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

    def _may(self, actor: Actor, attempted: str) -> None:
        """Record a denial and raise unless the policy lets ``actor`` erase or apply retention."""

        def decide(view: View) -> Outcome:
            denial = check_role(view.policy, actor.id, "privacy")
            if denial is None:
                return Outcome(None)
            return denied(view, denial, attempted=attempted, actor=actor, subject={})

        self._ledger.check(decide)

    def erase(
        self,
        subject: object,
        *,
        request: str,
        reason: str,
        actor: Actor,
        basis: str | None = None,
    ) -> Erasure:
        """Erase every value kept off the log for ``subject`` and record one event, at once.

        The event records how many values of which kinds were erased, from how
        many records, under ``request``: never the subject. The subject's key,
        its values and salts, and the lookup from it to its records go in the
        same transaction; then the store scrubs its files (:meth:`Store.scrub`).
        """
        if subject is None or subject == "":
            raise InvalidInputError("say whose values to erase: give the subject's identifier")
        for name, text in (("request", request), ("reason", reason)):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(
                    f"an erasure needs a {name}: the request's reference (e.g. DSR-2027-14) "
                    "and why (e.g. 'GDPR Art. 17 request')"
                )
        canonical = canonical_bytes(subject)
        named = str(subject) if isinstance(subject, str | int) else canonical.decode()
        for name, text in (("request", request), ("reason", reason), ("basis", basis or "")):
            if len(named) >= 4 and named in text:
                raise InvalidInputError(
                    f"the {name} names the subject itself, and it would stay on the log for "
                    "ever: refer to the request by its reference only, and nothing was erased"
                )
        self._may(actor, "privacy.erasure")
        store = self._ledger.store
        sid = subject_handle(store.pepper(), canonical)

        def draft_for(erased: list[tuple[str, str, int, int]]) -> Draft:
            data = {
                "request": request,
                "reason": reason,
                "basis": basis,
                "values": len(erased),
                "kinds": dict(sorted(Counter(name for _, name, _, _ in erased).items())),
                "records": len({(seg, i) for _, _, seg, i in erased}),
                "erased": erased_digest(c for c, _, _, _ in erased) if erased else None,
            }
            return Draft.build("privacy.erasure", actor=actor, subject={}, data=data)

        receipt, erased = self._ledger.erase_subject(sid, draft_for)
        scrubbed = store.scrub()
        return Erasure(
            seq=receipt.seq,
            request=request,
            values=len(erased),
            records=len({(seg, i) for _, _, seg, i in erased}),
            kinds=dict(sorted(Counter(name for _, name, _, _ in erased).items())),
            scrubbed=scrubbed,
        )

    @property
    def _log_id(self) -> int:
        return self._ledger.log_id
