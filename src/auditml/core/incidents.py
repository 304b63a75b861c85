"""Incidents: opened and closed on the log, and the EU AI Act Art. 73 reporting deadlines (pure).

A serious incident must be reported to the market surveillance authority
immediately once a causal link is established, and at the latest:

- 2 days after awareness, for a widespread infringement or a serious and
  irreversible disruption of critical infrastructure (Art. 73(3));
- 10 days after awareness, in the event of a person's death (Art. 73(4));
- 15 days after awareness otherwise (Art. 73(2)).

:func:`art73_due` computes that deadline from what the ``incident.open``
event records; :class:`IncidentIndex` folds opens and closes in ``seq`` order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditml.core.events import IMPACTS, Event, is_imported

__all__ = ["IMPACTS", "Incident", "IncidentIndex", "art73_due"]


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def art73_due(aware_at: str, severity: str, impact: str | None) -> tuple[str, str] | None:
    """Return the Art. 73 reporting deadline and the paragraph it comes from, or None.

    Only a ``serious`` incident has to be reported.
    """
    if severity != "serious":
        return None
    if impact in ("critical-infrastructure", "widespread-infringement"):
        days, clause = 2, "Art. 73(3)"
    elif impact == "death":
        days, clause = 10, "Art. 73(4)"
    else:
        days, clause = 15, "Art. 73(2)"
    return _stamp(_parse(aware_at) + timedelta(days=days)), clause


@dataclass
class Incident:
    """One incident as the log tells it: opened, perhaps closed."""

    id: str
    seq: int
    time: str
    model: str
    version: str
    summary: str
    severity: str
    aware_at: str
    opened_by: str
    impact: str | None = None
    environment: str | None = None
    reference: str | None = None
    closed_seq: int | None = None
    closed_at: str | None = None
    closed_by: str | None = None
    resolution: str | None = None
    reported_at: str | None = None
    #: Opened by imported history: only then may an imported ``incident.close`` close it.
    imported: bool = False

    @property
    def due(self) -> tuple[str, str] | None:
        """Return the Art. 73 deadline and its clause, for a serious incident."""
        return art73_due(self.aware_at, self.severity, self.impact)

    @property
    def is_open(self) -> bool:
        """Return whether the incident is still open."""
        return self.closed_seq is None

    def as_dict(self) -> dict[str, Any]:
        """Return the incident as plain JSON values."""
        due = self.due
        return {
            "id": self.id,
            "seq": self.seq,
            "time": self.time,
            "model": self.model,
            "version": self.version,
            "summary": self.summary,
            "severity": self.severity,
            "impact": self.impact,
            "environment": self.environment,
            "reference": self.reference,
            "aware_at": self.aware_at,
            "report_due": None if due is None else due[0],
            "report_clause": None if due is None else due[1],
            "opened_by": self.opened_by,
            "open": self.is_open,
            "closed_seq": self.closed_seq,
            "closed_at": self.closed_at,
            "closed_by": self.closed_by,
            "resolution": self.resolution,
            "reported_at": self.reported_at,
        }


@dataclass
class IncidentIndex:
    """Every incident of a log by id, folded from its ``incident.*`` events in order."""

    incidents: dict[str, Incident] = field(default_factory=dict)

    def apply(self, seq: int, event: Event) -> None:
        """Fold one ``incident.open`` or ``incident.close`` event."""
        data = event.data
        ident = str(data.get("id"))
        if event.action == "incident.open" and ident not in self.incidents:
            self.incidents[ident] = Incident(
                id=ident,
                seq=seq,
                time=event.time,
                model=event.subject.get("model", ""),
                version=event.subject.get("version", ""),
                summary=str(data.get("summary", "")),
                severity=str(data.get("severity", "medium")),
                aware_at=str(data.get("aware_at", event.time)),
                opened_by=event.actor.id,
                impact=_text(data.get("impact")),
                environment=_text(data.get("environment")),
                reference=_text(data.get("reference")),
                imported=is_imported(data),
            )
        elif event.action == "incident.close":
            found = self.incidents.get(ident)
            # Imported history never closes a live incident: that needs the incident permission.
            live_only = found is not None and not found.imported and is_imported(data)
            if found is not None and found.closed_seq is None and not live_only:
                found.closed_seq = seq
                found.closed_at = event.time
                found.closed_by = event.actor.id
                found.resolution = _text(data.get("resolution"))
                found.reported_at = _text(data.get("reported_at"))

    def next_id(self) -> str:
        """Return the next free ``INC-n`` id."""
        n = len(self.incidents) + 1
        while f"INC-{n}" in self.incidents:
            n += 1
        return f"INC-{n}"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
