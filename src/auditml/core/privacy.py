"""Personal data: retention schedules, legal minimums, the record of processing, the plan (pure).

The policy (``auditml.toml``) says how long each kind of data is kept, which
legal minimums a schedule must meet, what the processing is (GDPR Art. 30),
and which event fields hold personal data::

    [retention]                     # how long each kind of data is kept (none: for ever)
    runtime_values = "30d"          # values kept off the log: subjects, features, payloads
    runtime_records = "400d"        # runtime records (their segment events stay on the log)
    events = "10y"                  # the log itself: events are never removed one by one

    [retention.values]              # optional: per value name, instead of runtime_values
    features = "7d"

    [retention.minimum]             # legal minimums, beside the defaults (see MINIMUMS)
    runtime_records = { period = "1y", basis = "sector rule 12.3" }

    [retention.shorter_because]     # a schedule below a minimum needs a stated reason
    events = "not a high-risk system (Annex III); Art. 18 does not apply: DPIA-2026-04"

    [processing]                    # GDPR Art. 30(1): the record of processing
    controller = "Bank Example SA"
    purposes = ["credit decisions", "post-market monitoring (EU AI Act Art. 72)"]
    data_subjects = ["loan applicants"]
    categories = ["applicant id", "income", "credit history"]
    recipients = ["model risk management"]

    [personal_data]                 # event fields that hold personal data
    event_fields = ["actor.id", "actor.name", "data.reason"]
    pseudonymous_actors = true      # new events name actors by pseudonym (see below)

With ``pseudonymous_actors``, an event's ``actor.id`` is a stable pseudonym
(``actor:`` and 16 random hex digits, one per person) and the person's id and
printed name are kept off the log, in the store's actor directory, until
``auditml erase --actor`` replaces them with the pseudonym alone.

Durations are a whole number and a unit: ``d`` (days), ``w`` (weeks), ``mo``
(calendar months) or ``y`` (calendar years), e.g. ``"30d"``, ``"6mo"``, ``"10y"``.

:func:`plan_retention` says what falls due at a moment, from summaries of what
the store holds; it never marks anything another rule still covers: a
segment's records are due only once every value they commit to is due too,
and nothing of a model under an open incident (EU AI Act Art. 73(6)) is due.
"""

# Annotations here are objects, not strings (no ``from __future__ import annotations``):
# pydantic would compile and evaluate each model field's annotation text as the model is
# made, a cost every command pays at import (issue 20).

import calendar
import hashlib
import itertools
import json
import operator
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from auditml.core.events import Event
from auditml.core.sealing import (
    SEALED,
    cipher_for,
    erased_digest,
    is_sealed,
    new_subject_key,
    open_sealed,
    removed_by_retention,
    seal,
    subject_handle,
    unseal,
)
from auditml.errors import InvalidInputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ACTOR_PREFIX",
    "KINDS",
    "KIND_LABELS",
    "MINIMUMS",
    "SALT_BYTES",
    "SEALED",
    "STORAGE_NOTES",
    "Binding",
    "DirectoryEntry",
    "DirectoryRow",
    "Due",
    "Duration",
    "Enrollments",
    "Hold",
    "LegalMinimum",
    "PersonalData",
    "Plan",
    "PrivacyEntry",
    "Processing",
    "Retention",
    "RetentionStatus",
    "ScheduleRow",
    "SegmentSummary",
    "ValueCount",
    "actor_commitment",
    "actor_label",
    "bind_directory",
    "check_retention",
    "erased_digest",
    "is_pseudonym",
    "is_sealed",
    "labelled",
    "new_pseudonym",
    "new_subject_key",
    "open_sealed",
    "parse_duration",
    "plan_retention",
    "privacy_entry",
    "removed_by_retention",
    "schedule_rows",
    "seal",
    "seal_rows",
    "subject_handle",
    "subject_handles",
    "unseal",
]

#: The kinds of data a retention schedule names.
KINDS = ("runtime_values", "runtime_records", "events")
Kind = Literal["runtime_values", "runtime_records", "events"]

_DURATION = re.compile(
    r"^\s*(?P<n>\d{1,5})\s*(?P<unit>d|days?|w|weeks?|mo|months?|y|years?)\s*$", re.IGNORECASE
)
_UNITS = {"d": (0, 1), "w": (0, 7), "mo": (1, 0), "y": (12, 0)}
_MAX_DAYS = 366 * 1000
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _when(text: str) -> datetime:
    return datetime.strptime(text, _TIME).replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME)


_CYCLE = 4800  # months in 400 Gregorian years: every pattern of month lengths and leap years
_CYCLE_DAYS = 146_097  # days in those 400 years
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_DAYS_LEAP = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@cache
def _cycle_starts() -> tuple[int, ...]:
    """Return the day each month of two 400-year cycles begins on, counted from January 2000."""
    lengths: list[int] = []
    for year in range(2000, 2400):
        lengths += _MONTH_DAYS_LEAP if calendar.isleap(year) else _MONTH_DAYS
    starts = list(itertools.accumulate(lengths[:-1], initial=0))
    return (*starts, *(start + _CYCLE_DAYS for start in starts))


@cache
def _month_span(months: int) -> tuple[int, int]:
    """Return the fewest and most days ``months`` calendar months can span (Gregorian cycle)."""
    whole, rest = divmod(months, _CYCLE)  # each whole cycle spans the same days from any start
    starts = _cycle_starts()
    spans = list(map(operator.sub, starts[rest : rest + _CYCLE], starts[:_CYCLE]))
    return whole * _CYCLE_DAYS + min(spans), whole * _CYCLE_DAYS + max(spans)


@dataclass(frozen=True, slots=True)
class Duration:
    """A retention period in calendar months and days, as written (``"30d"``, ``"10y"``)."""

    text: str
    months: int
    days: int

    def after(self, moment: datetime) -> datetime:
        """Return ``moment`` plus this period (a month from Jan 31 ends on the last of February)."""
        total = moment.month - 1 + self.months
        year, month = moment.year + total // 12, total % 12 + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        return moment.replace(year=year, month=month, day=day) + timedelta(days=self.days)

    def span(self) -> tuple[int, int]:
        """Return the fewest and most days this period can last, whatever its start."""
        low, high = _month_span(self.months) if self.months else (0, 0)
        return low + self.days, high + self.days

    def shorter_than(self, other: "Duration") -> bool:
        """Return whether this period can end before ``other`` does, for some start."""
        if not self.days and not other.days:
            return self.months < other.months
        if not self.months and not other.months:
            return self.days < other.days
        return self.span()[0] < other.span()[1]

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str, *, where: str = "retention period") -> Duration:
    """Parse ``"30d"``, ``"2w"``, ``"6mo"`` or ``"10y"``, or raise an error naming ``where``."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInputError(
            f"{where} = {text!r} is not a period: write a whole number and a unit, d (days), "
            'w (weeks), mo (calendar months) or y (calendar years), e.g. "30d", "6mo", "10y"'
        )
    n, unit = int(match["n"]), match["unit"].lower()
    key = "mo" if unit.startswith("mo") else unit[0]
    months, days = _UNITS[key]
    found = Duration(text.strip(), n * months, n * days)
    if found.span()[1] > _MAX_DAYS or n == 0:
        raise InvalidInputError(
            f"{where} = {text!r} is out of range: give a period from 1 day to 1000 years"
        )
    return found


def _period(value: str | None, where: str) -> str | None:
    if value is not None:
        try:
            parse_duration(value, where=where)
        except InvalidInputError as exc:
            raise ValueError(str(exc).removeprefix(f"{where} = ")) from None
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)


class LegalMinimum(_Frozen):
    """A legal minimum a retention period must meet: how long, and the clause that says so."""

    period: str
    basis: Annotated[str, StringConstraints(min_length=1)]

    @field_validator("period")
    @classmethod
    def _parses(cls, value: str) -> str:
        return _period(value, "minimum period") or value

    def duration(self) -> Duration:
        """Return the minimum as a :class:`Duration`."""
        return parse_duration(self.period)


#: The legal minimums every schedule meets unless the policy states why not. Built
#: without validating (a validator built at import costs every command; a test
#: validates them), as constants written here.
MINIMUMS: dict[str, LegalMinimum] = {
    "runtime_records": LegalMinimum.model_construct(
        period="6mo", basis="EU AI Act Art. 19(1) and 26(6): automatically generated logs"
    ),
    "events": LegalMinimum.model_construct(
        period="10y", basis="EU AI Act Art. 18(1): technical documentation and its trail"
    ),
}

ValueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
Reason = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class Retention(_Frozen):
    """How long each kind of data is kept; None keeps it for ever (the default)."""

    runtime_values: str | None = None
    runtime_records: str | None = None
    events: str | None = None
    #: Per value name (``subject``, ``features``, ``payload``, ...), instead of runtime_values.
    values: dict[ValueName, str] = Field(default_factory=dict)
    #: Minimums the policy names, beside :data:`MINIMUMS`.
    minimum: dict[Kind, LegalMinimum] = Field(default_factory=dict)
    #: Why a period may be shorter than a minimum, per kind.
    shorter_because: dict[Kind, Reason] = Field(default_factory=dict)

    @field_validator("runtime_values", "runtime_records", "events")
    @classmethod
    def _parses(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _period(value, f"retention.{info.field_name}")

    @field_validator("values")
    @classmethod
    def _values_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            _period(text, f"retention.values.{name}")
        return value

    def period(self, kind: str) -> Duration | None:
        """Return the period of ``kind`` (one of :data:`KINDS`), or None to keep it for ever."""
        text = getattr(self, kind) if kind in KINDS else None
        return None if text is None else parse_duration(text)

    def value_period(self, name: str) -> Duration | None:
        """Return the period of the off-log values named ``name``, or None to keep them for ever."""
        text = self.values.get(name, self.runtime_values)
        return None if text is None else parse_duration(text)

    def reason_for(self, kind: str) -> str | None:
        """Return why ``kind`` may be kept less than its minimum, or None when none is given."""
        return {str(k): v for k, v in self.shorter_because.items()}.get(kind)

    def minimums(self) -> dict[str, list[LegalMinimum]]:
        """Return every minimum in force per kind: the defaults and those the policy names."""
        found: dict[str, list[LegalMinimum]] = {}
        for kind, minimum in [*MINIMUMS.items(), *self.minimum.items()]:
            found.setdefault(kind, []).append(minimum)
        return found

    def schedule(self) -> dict[str, str]:
        """Return the periods set, by kind, then ``runtime_values.NAME`` for each value name."""
        found = {kind: text for kind in KINDS if (text := getattr(self, kind)) is not None}
        found.update({f"runtime_values.{n}": t for n, t in sorted(self.values.items())})
        return found


def check_retention(retention: Retention) -> None:
    """Refuse a schedule shorter than a legal minimum that the policy does not explain.

    The message names the setting, the minimum, its legal basis, and the two
    ways out: a longer period, or a reason in ``[retention.shorter_because]``.
    """
    for kind, minimums in retention.minimums().items():
        periods = [(f"retention.{kind}", getattr(retention, kind))]
        if kind == "runtime_values":
            periods += [(f"retention.values.{n}", t) for n, t in sorted(retention.values.items())]
        for key, text in periods:
            if text is None or retention.reason_for(kind) is not None:
                continue
            period = parse_duration(text, where=key)
            for minimum in minimums:
                low = minimum.duration()
                if period.shorter_than(low):
                    days = "" if low.months == 0 else f", which can last {low.span()[1]} days"
                    raise InvalidInputError(
                        f'{key} = "{text}" is shorter than the legal minimum of {low}{days} '
                        f"({minimum.basis}). Keep it at least {low}, or, if that minimum does "
                        f"not apply, say why under [retention.shorter_because], e.g. "
                        f'{kind} = "not a high-risk AI system, so the minimum does not apply"'
                    )


class Processing(_Frozen):
    """The record of processing activities (GDPR Art. 30(1)); retention comes from the schedule."""

    controller: str | None = None
    contact: str | None = None
    purposes: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    data_subjects: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list
    )
    categories: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    recipients: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    transfers: str | None = None
    security: str | None = None

    def is_empty(self) -> bool:
        """Return whether the policy describes no processing at all."""
        return self == Processing()


_FIELD_PATH = re.compile(r"^(actor|subject|data)(\.[A-Za-z_][A-Za-z0-9_-]*)+$")


class PersonalData(_Frozen):
    """Which event fields hold personal data, and whether actors are named by pseudonym.

    ``event_fields`` are dotted paths (``actor.id``, ``data.reason``).
    ``pseudonymous_actors`` keeps people's ids out of the hashed bytes of new
    events: each person acts under a pseudonym, resolved through an off-log
    directory that erasure can empty.
    """

    event_fields: list[str] = Field(default_factory=lambda: ["actor.id", "actor.name"])
    pseudonymous_actors: bool = False

    @field_validator("event_fields")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not _FIELD_PATH.match(path):
                raise ValueError(
                    f"{path!r} is not an event field: write a dotted path under actor, subject "
                    'or data, e.g. "actor.id" or "data.reason"'
                )
        return value


# -- pseudonymous actors ----------------------------------------------------------------

#: How a pseudonymous actor id starts: ``actor:`` and 16 random lowercase hex digits.
ACTOR_PREFIX = "actor:"
_PSEUDONYM = re.compile(r"^actor:[0-9a-f]{16}$")


def new_pseudonym() -> str:
    """Return a fresh pseudonym: random, so nothing about the person can be computed from it."""
    return ACTOR_PREFIX + secrets.token_hex(8)


def is_pseudonym(actor_id: str) -> bool:
    """Return whether an actor id is a pseudonym auditml drew (``actor:`` + 16 hex digits)."""
    return bool(_PSEUDONYM.match(actor_id))


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """What the off-log actor directory holds for one pseudonym.

    ``known_as`` is the id the person acted under (e.g. an e-mail) and ``name``
    the printed name; both are None once the identity was erased, by the
    ``privacy.erasure`` event ``erased``.
    """

    pseudonym: str
    known_as: str | None
    name: str | None
    erased: int | None = None


#: What an ``actor.enroll`` commitment hashes before the salt and the id.
_ENROLL_TAG = b"auditml actor v1\x00"
#: Bytes of random salt behind each enrollment commitment.
SALT_BYTES = 32


def actor_commitment(salt: bytes, known_as: str, name: str | None = None) -> str:
    """Return the hex SHA-256 commitment binding a pseudonym to ``known_as`` and ``name``.

    It hashes the tag, the salt, and the JSON array ``[known_as, name]`` written
    compactly with every non-ASCII character escaped, so no two pairs hash alike.
    """
    pair = json.dumps([known_as, name], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(_ENROLL_TAG + salt + pair.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class DirectoryRow:
    """One row of the off-log actor directory as stored: nothing in it is trusted until bound."""

    pseudonym: str
    known_as: str | None
    name: str | None
    salt: str | None
    erased: int | None = None
    #: The lookup column: the folded id, which finds a person's row (a hint, never trusted).
    person: str | None = None


@dataclass(frozen=True, slots=True)
class Enrollments:
    """What the verified log says of pseudonyms: each one's enrollment, and actor erasures.

    ``enrolled`` maps a pseudonym to the seq and commitment of its newest
    ``actor.enroll`` event (a printed name filled later enrolls it again);
    ``erased`` maps a pseudonym to the seq of the ``privacy.erasure`` event
    (scope ``actor``) that removed its identity. Imported events are never here.
    """

    enrolled: dict[str, tuple[int, str]] = field(default_factory=dict)
    erased: dict[str, int] = field(default_factory=dict)
    #: The seq of each pseudonym's first enrollment: when its person first acted under it.
    first: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Binding:
    """Who the pseudonyms on the log are, as far as the bound directory and the log say.

    ``people`` maps a live pseudonym to its person's folded id; ``enrolled`` the
    seq of each pseudonym's first enrollment; ``erased`` the seq of the erasure
    of each pseudonym whose identity was erased.
    """

    people: Mapping[str, str] = field(default_factory=dict)
    enrolled: Mapping[str, int] = field(default_factory=dict)
    erased: Mapping[str, int] = field(default_factory=dict)


def bind_directory(
    rows: Iterable[DirectoryRow],
    log: Enrollments,
    fold: Callable[[str], str] | None = None,
) -> tuple[dict[str, DirectoryEntry], list[str]]:
    """Hold the off-log directory to the log; return the entries that bind and what does not.

    A pseudonym's identity counts only when its row's id and salt open the
    commitment its ``actor.enroll`` event holds; an identity erased on the log is
    erased whatever its row says. The problems name, in words, every row that
    was rewritten, added or removed by hand (a row without an enrollment, an
    enrollment without its row, a row that does not open its commitment). With
    ``fold`` (how ids are folded to people), a bound row whose lookup column is
    not its id folded is named too: that column finds rows when a person acts or
    is erased, so a hint moved by hand would misfile a newcomer's acts.
    """
    entries: dict[str, DirectoryEntry] = {}
    problems: list[str] = []
    seen: set[str] = set()
    for row in rows:
        seen.add(row.pseudonym)
        erased = log.erased.get(row.pseudonym)
        if erased is not None:
            entries[row.pseudonym] = DirectoryEntry(row.pseudonym, None, None, erased)
            continue
        enrolled = log.enrolled.get(row.pseudonym)
        if enrolled is None:
            problems.append(
                f"the actor directory's row for {row.pseudonym} matches no actor.enroll event "
                "on the log: it was added by hand"
                + (
                    ", or made before auditml enrolled pseudonyms (then run `auditml actors "
                    "--enroll-existing` once)"
                    if row.salt is None
                    else ""
                )
            )
            continue
        seq, commitment = enrolled
        salt = _salt(row.salt)
        if (
            row.known_as is None
            or salt is None
            or actor_commitment(salt, row.known_as, row.name) != commitment
        ):
            problems.append(
                f"the actor directory's row for {row.pseudonym} does not open the commitment of "
                f"its enrollment (event {seq}): the row was changed by hand"
            )
            continue
        if fold is not None and row.person != fold(row.known_as):
            problems.append(
                f"the actor directory's row for {row.pseudonym} has a lookup column (person) "
                "that is not its id folded: the row was changed by hand"
            )
            continue
        entries[row.pseudonym] = DirectoryEntry(row.pseudonym, row.known_as, row.name)
    for pseudonym, (seq, _) in sorted(log.enrolled.items(), key=lambda kv: kv[1][0]):
        if pseudonym not in seen and pseudonym not in log.erased:
            problems.append(
                f"{pseudonym}, enrolled by event {seq}, has no row in the actor directory and no "
                "erasure on the log: its row was deleted by hand"
            )
    for pseudonym, seq in log.erased.items():
        if pseudonym not in entries:
            entries[pseudonym] = DirectoryEntry(pseudonym, None, None, seq)
    return entries, problems


def _salt(text: str | None) -> bytes | None:
    """Return a stored salt's bytes, or None when it is missing or not 32 bytes of hex."""
    if text is None or len(text) != 2 * SALT_BYTES:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def actor_label(actor_id: str, directory: Mapping[str, DirectoryEntry]) -> str:
    """Return how displays show an actor: a pseudonym's name and id while the directory holds them.

    ``Alice Martin <alice@bank.example> (actor:…)`` while known; the bare
    pseudonym once erased or unknown; any other id as it is.
    """
    entry = directory.get(actor_id)
    if entry is None or entry.known_as is None:
        return actor_id
    if entry.name and entry.name != entry.known_as:
        return f"{entry.name} <{entry.known_as}> ({actor_id})"
    return f"{entry.known_as} ({actor_id})"


def labelled(event: Event, directory: Mapping[str, DirectoryEntry]) -> Event:
    """Return ``event`` with its actor shown as :func:`actor_label` says: for displays only.

    The copy is never hashed, stored or decided on; the event read back is unchanged.
    """
    shown = actor_label(event.actor.id, directory)
    if shown == event.actor.id:
        return event
    return event.model_copy(update={"actor": event.actor.model_copy(update={"id": shown})})


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    """A ``runtime.segment`` event whose records are still stored: where, when, how many."""

    seq: int
    stream: str
    last_time: str
    count: int

    @property
    def model(self) -> str:
        """Return the model of the segment's stream (``model/env``)."""
        return self.stream.rsplit("/", 1)[0]

    @property
    def env(self) -> str:
        """Return the environment of the segment's stream."""
        return self.stream.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class ValueCount:
    """How many values named ``name`` the store still holds for the records of segment ``seg``."""

    seg: int
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Something that keeps a model's runtime data (all environments when ``env`` is None)."""

    model: str
    env: str | None
    reason: str

    def covers(self, segment: SegmentSummary) -> bool:
        """Return whether the hold keeps ``segment`` and its values."""
        return segment.model == self.model and self.env in (None, segment.env)


@dataclass(frozen=True, slots=True)
class Due:
    """One thing a retention rule covers: a segment's records, or its values of one name.

    ``due_at`` is when it may be removed: for records, the later of their own
    period and their values' periods. ``held`` says what keeps it past then.
    """

    kind: str
    seg: int
    stream: str
    count: int
    due_at: str
    rule: str
    name: str | None = None
    held: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the item as plain JSON values."""
        return {
            "kind": self.kind,
            "segment": self.seg,
            "stream": self.stream,
            "name": self.name,
            "count": self.count,
            "due_at": self.due_at,
            "rule": self.rule,
            "held": self.held,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """What falls due at ``as_of``: values and segments to remove, what is held, what comes next."""

    as_of: str
    values: list[Due] = field(default_factory=list)
    segments: list[Due] = field(default_factory=list)
    held: list[Due] = field(default_factory=list)
    #: The earliest item not yet due, per kind and value name.
    upcoming: list[Due] = field(default_factory=list)
    #: When the oldest event passes the events period (events are never removed one by one).
    events_due_at: str | None = None

    @property
    def value_count(self) -> int:
        """Return how many values are due."""
        return sum(d.count for d in self.values)

    @property
    def record_count(self) -> int:
        """Return how many records are due."""
        return sum(d.count for d in self.segments)

    def as_dict(self) -> dict[str, Any]:
        """Return the plan as plain JSON values."""
        return {
            "as_of": self.as_of,
            "values_due": self.value_count,
            "records_due": self.record_count,
            "values": [d.as_dict() for d in self.values],
            "segments": [d.as_dict() for d in self.segments],
            "held": [d.as_dict() for d in self.held],
            "upcoming": [d.as_dict() for d in self.upcoming],
            "events_due_at": self.events_due_at,
        }


def plan_retention(
    retention: Retention,
    now: datetime,
    segments: Iterable[SegmentSummary],
    values: Iterable[ValueCount],
    *,
    holds: Sequence[Hold] = (),
    first_event_time: str | None = None,
) -> Plan:
    """Say what falls due at ``now``, never anything another rule still covers.

    Values fall due one period after their segment's last record; a segment's
    records fall due once their own period has passed *and* every value they
    commit to is due (a value with no period keeps its segment for ever). A
    hold keeps everything of its model. Segments not listed (their records
    already removed) and values not counted (already gone) are not planned.
    """
    as_of = _stamp(now)
    by_seg: dict[int, list[ValueCount]] = {}
    for count in values:
        if count.count > 0:
            by_seg.setdefault(count.seg, []).append(count)
    due_values: list[Due] = []
    due_segments: list[Due] = []
    held: list[Due] = []
    upcoming: dict[tuple[str, str | None], Due] = {}
    records_period = retention.period("runtime_records")

    def place(item: Due, hold: Hold | None) -> list[Due] | None:
        if item.due_at > as_of:
            key = (item.kind, item.name)
            if key not in upcoming or item.due_at < upcoming[key].due_at:
                upcoming[key] = item
            return None
        if hold is not None:
            held.append(replace(item, held=hold.reason))
            return None
        return due_values if item.kind == "runtime_values" else due_segments

    for segment in sorted(segments, key=lambda s: s.seq):
        last = _when(segment.last_time)
        hold = next((h for h in holds if h.covers(segment)), None)
        value_due: list[str | None] = []
        for count in sorted(by_seg.get(segment.seq, []), key=lambda c: c.name):
            period = retention.value_period(count.name)
            if period is None:
                value_due.append(None)
                continue
            rule = "runtime_values" if count.name not in retention.values else "values"
            item = Due(
                kind="runtime_values",
                seg=segment.seq,
                stream=segment.stream,
                count=count.count,
                due_at=_stamp(period.after(last)),
                rule=f"retention.{rule}" + (f".{count.name}" if rule == "values" else ""),
                name=count.name,
            )
            value_due.append(item.due_at)
            target = place(item, hold)
            if target is not None:
                target.append(item)
        if records_period is None or None in value_due:
            continue  # kept for ever, by their own rule or their values'
        due_at = max([_stamp(records_period.after(last)), *(t for t in value_due if t)])
        item = Due(
            kind="runtime_records",
            seg=segment.seq,
            stream=segment.stream,
            count=segment.count,
            due_at=due_at,
            rule="retention.runtime_records",
        )
        target = place(item, hold)
        if target is not None:
            target.append(item)
    events_period = retention.period("events")
    events_due = (
        _stamp(events_period.after(_when(first_event_time)))
        if events_period is not None and first_event_time is not None
        else None
    )
    return Plan(
        as_of=as_of,
        values=due_values,
        segments=due_segments,
        held=held,
        upcoming=sorted(upcoming.values(), key=lambda d: (d.due_at, d.kind, d.name or "")),
        events_due_at=events_due,
    )


# -- the log of erasures and retention runs --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrivacyEntry:
    """One erasure or retention run, as its event records it: counts and kinds, never a subject."""

    seq: int
    time: str
    action: str
    actor: str
    values: int
    kinds: dict[str, int]
    records: int = 0
    segments: int = 0
    request: str | None = None
    reason: str | None = None
    basis: str | None = None
    #: ``subject`` (a data subject's values) or ``actor`` (an actor's off-log identity).
    scope: str = "subject"
    #: The pseudonym whose identity an actor erasure removed from the directory.
    pseudonym: str | None = None

    @property
    def what(self) -> str:
        """Return what happened, in words: ``erasure`` or ``retention``."""
        return "erasure" if self.action == "privacy.erasure" else "retention"

    def summary(self) -> str:
        """Return one sentence: what was removed, and under which request or rule."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "none"
        removed = f"{self.values} value(s) ({kinds})"
        if self.action == "privacy.erasure" and self.scope == "actor":
            return (
                f"replaced the identity of {self.pseudonym or 'an actor'} with its pseudonym "
                f"under request {self.request}: {self.reason or ''}"
            ).rstrip(": ")
        if self.action == "privacy.erasure":
            return f"erased {removed} under request {self.request}: {self.reason or ''}".rstrip(
                ": "
            )
        if not (self.values or self.records):
            return "nothing was due, nothing removed"
        return f"removed {removed} and {self.records} record(s) of {self.segments} segment(s)"

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as plain JSON values."""
        return {
            "seq": self.seq,
            "time": self.time,
            "action": self.action,
            "actor": self.actor,
            "values": self.values,
            "kinds": dict(self.kinds),
            "records": self.records,
            "segments": self.segments,
            "request": self.request,
            "reason": self.reason,
            "basis": self.basis,
            "scope": self.scope,
            "pseudonym": self.pseudonym,
        }


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _counts(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _count(v) for k, v in value.items()}


def privacy_entry(seq: int, event: Event) -> PrivacyEntry | None:
    """Return the erasure or retention run an event records, or None for any other event."""
    data = event.data
    if event.action == "privacy.erasure":
        return PrivacyEntry(
            seq=seq,
            time=event.time,
            action=event.action,
            actor=event.actor.id,
            values=_count(data.get("values")),
            kinds=_counts(data.get("kinds")),
            records=_count(data.get("records")),
            request=_text(data.get("request")),
            reason=_text(data.get("reason")),
            basis=_text(data.get("basis")),
            scope=_text(data.get("scope")) or "subject",
            pseudonym=_text(event.subject.get("actor")),
        )
    if event.action == "retention.applied":
        segments = data.get("segments")
        return PrivacyEntry(
            seq=seq,
            time=event.time,
            action=event.action,
            actor=event.actor.id,
            values=_count(data.get("values")),
            kinds=_counts(data.get("kinds")),
            records=_count(data.get("records")),
            segments=len(segments) if isinstance(segments, list) else 0,
        )
    return None


# -- the schedule, as people read it -------------------------------------------------------

#: What each kind of data is, for tables and reports.
KIND_LABELS = {
    "runtime_values": "runtime values kept off the log (subjects, features, payloads)",
    "runtime_records": "runtime records (their segment events stay on the log)",
    "events": "the log's events (never removed one by one: the chain needs every one)",
}


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One line of the retention schedule: what, how long, and the legal minimum it meets."""

    kind: str
    what: str
    period: str | None
    minimum: str | None = None
    basis: str | None = None
    shorter_because: str | None = None

    @property
    def kept(self) -> str:
        """Return the period in words: ``30d``, or ``for ever`` when none is set."""
        return self.period or "for ever (no period set)"

    def as_dict(self) -> dict[str, Any]:
        """Return the row as plain JSON values."""
        return {
            "kind": self.kind,
            "what": self.what,
            "period": self.period,
            "minimum": self.minimum,
            "basis": self.basis,
            "shorter_because": self.shorter_because,
        }


def schedule_rows(retention: Retention) -> list[ScheduleRow]:
    """Return the schedule: one row per kind, then one per value name with its own period."""
    minimums = retention.minimums()
    rows: list[ScheduleRow] = []
    for kind in KINDS:
        found = minimums.get(kind, [])
        strictest = max(found, key=lambda m: m.duration().span()[1], default=None)
        rows.append(
            ScheduleRow(
                kind=kind,
                what=KIND_LABELS[kind],
                period=getattr(retention, kind),
                minimum=None if strictest is None else strictest.period,
                basis=None if strictest is None else strictest.basis,
                shorter_because=retention.reason_for(kind),
            )
        )
        if kind == "runtime_values":
            rows.extend(
                ScheduleRow(
                    kind=f"runtime_values.{name}",
                    what=f"runtime values named {name!r}",
                    period=text,
                    shorter_because=retention.reason_for(kind),
                )
                for name, text in sorted(retention.values.items())
            )
    return rows


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    """What ``auditml retention show`` prints: the schedule, what falls due, what was removed."""

    policy_seq: int | None
    schedule: list[ScheduleRow]
    plan: Plan
    entries: list[PrivacyEntry]
    processing: Processing
    personal_fields: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Return the status as plain JSON values."""
        return {
            "policy_seq": self.policy_seq,
            "schedule": [row.as_dict() for row in self.schedule],
            "plan": self.plan.as_dict(),
            "removed": [entry.as_dict() for entry in self.entries],
            "processing": self.processing.model_dump(mode="json"),
            "personal_fields": list(self.personal_fields),
        }


#: What a deletion leaves behind, per store dialect, for the report and the README.
STORAGE_NOTES = {
    "sqlite": (
        "On SQLite, erasures and retention runs delete with secure_delete on, so freed cells "
        "and pages are overwritten with zeros, then checkpoint the write-ahead log into the "
        "main file and truncate it: afterwards neither the file, its WAL nor its free pages "
        "hold what was removed. Copies of the file taken before (backups, snapshots) keep it "
        "until they are rotated out: keep them no longer than the erasure deadline (GDPR Art. "
        "12(3): one month)."
    ),
    "postgresql": (
        "On PostgreSQL a deleted row is not overwritten at once: it stays in the table's data "
        "files as a dead tuple until VACUUM (or autovacuum) reclaims its space, and in the "
        "write-ahead log, WAL archives, replicas' history and every backup taken before the "
        "deletion until those are rotated out. An erasure or retention run is complete only "
        "once they are: run VACUUM on auditml_value after it, and keep backups no longer than "
        "the erasure deadline (GDPR Art. 12(3): one month)."
    ),
}


#: A value row as the write path hands it to the store: ``(commitment, i, name, salt, value)``.
ValueRow = tuple[str, int, str, bytes, bytes]


def subject_handles(values: Iterable[ValueRow], pepper: bytes) -> dict[int, str]:
    """Map each record (by index) that names a subject to the subject's handle."""
    return {row[1]: subject_handle(pepper, row[4]) for row in values if row[2] == "subject"}


def seal_rows(
    values: Sequence[ValueRow], handles: Mapping[int, str], keys: Mapping[str, bytes]
) -> tuple[list[ValueRow], list[tuple[str, str]]]:
    """Seal every value of a record that names a subject under that subject's key.

    Returns the rows to store (salts and values sealed; a record with no subject
    keeps its values as they are) and the lookup rows ``(commitment, handle)``.
    """
    sealed: list[ValueRow] = []
    lookups: list[tuple[str, str]] = []
    ciphers: dict[str, AESGCM] = {}
    for commitment, i, name, salt, value in values:
        sid = handles.get(i)
        if sid is None:
            sealed.append((commitment, i, name, salt, value))
            continue
        key = ciphers.get(sid)
        if key is None:
            key = ciphers[sid] = cipher_for(keys[sid])
        sealed.append(
            (
                commitment,
                i,
                name,
                seal(key, commitment, "salt", salt),
                seal(key, commitment, "value", value),
            )
        )
        lookups.append((commitment, sid))
    return sealed, lookups
