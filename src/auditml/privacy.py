"""Personal data on a log: the retention schedule in force, what falls due, what was removed.

A service over the ledger, beside trust, lifecycle and runtime: it reads the
policy in force, the ``runtime.segment`` events, the counts of values kept off
the log, open incidents (which hold their model's runtime data, EU AI Act
Art. 73(6)) and the ``privacy.erasure`` and ``retention.applied`` events, and
hands them to the pure planner of :mod:`auditml.core.privacy`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from auditml.core.canonical import canonical_bytes, canonical_text
from auditml.core.decide import Outcome, View, denied
from auditml.core.events import (
    INCIDENT_ACTIONS,
    PRIVACY_ACTIONS,
    SIGNED_ACTIONS,
    Actor,
    Draft,
)
from auditml.core.incidents import IncidentIndex
from auditml.core.policy import Policy, check_role, person
from auditml.core.privacy import (
    Hold,
    Plan,
    PrivacyEntry,
    RetentionStatus,
    SegmentSummary,
    ValueCount,
    erased_digest,
    is_pseudonym,
    is_sealed,
    open_sealed,
    plan_retention,
    privacy_entry,
    schedule_rows,
    subject_handle,
)
from auditml.core.state import policy_in_force
from auditml.errors import InvalidInputError, VerificationError

if TYPE_CHECKING:
    from auditml.ledger import Ledger
    from auditml.store import Removed, Snapshot

__all__ = ["ActorErasure", "Erasure", "Privacy", "RetentionRun", "ValueCheck"]


@dataclass(frozen=True, slots=True)
class ValueCheck:
    """What ``verify --deep`` found of the values kept off the log."""

    #: Values the stored records commit to.
    checked: int
    #: Of those, the values an erasure or a retention run removed, as its event says.
    removed: int


#: Sealed values opened per batch of key lookups by the deep check.
_OPEN_BATCH = 2000


class _ValueCursor:
    """Walks the stored values in ``(seg, i)`` order beside the records."""

    def __init__(self, chunks: Iterator[list[tuple[Any, ...]]]) -> None:
        self._rows = (row for chunk in chunks for row in chunk)
        self._next = next(self._rows, None)

    def at(self, seg: int, i: int) -> dict[str, tuple[str, bytes, bytes]]:
        """Return ``name -> (commitment, salt, value)`` stored for record ``i`` of ``seg``."""
        found: dict[str, tuple[str, bytes, bytes]] = {}
        while self._next is not None and (int(self._next[0]), int(self._next[1])) < (seg, i):
            self._next = next(self._rows, None)
        while self._next is not None and (int(self._next[0]), int(self._next[1])) == (seg, i):
            row = self._next
            found[str(row[2])] = (str(row[3]), bytes(row[4]), bytes(row[5]))
            self._next = next(self._rows, None)
        return found


def _commitments(body: bytes) -> dict[str, str]:
    """Return the commitments a record's bytes hold (verify has checked the bytes)."""
    try:
        record = orjson.loads(body)  # bytes the records pass has verified already
    except orjson.JSONDecodeError:
        return {}
    held = record.get("commitments") if isinstance(record, dict) else None
    if not isinstance(held, dict):
        return {}
    return {str(k): str(v) for k, v in held.items()}


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """One retention run: the plan, and (unless a dry run) its event and what it removed."""

    plan: Plan
    seq: int | None = None
    values: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    records: int = 0
    segments: list[int] = field(default_factory=list)
    scrubbed: str | None = None

    @property
    def dry_run(self) -> bool:
        """Return whether nothing was removed because only the plan was asked for."""
        return self.seq is None

    def as_dict(self) -> dict[str, Any]:
        """Return the run as plain JSON values."""
        return {
            "seq": self.seq,
            "values": self.values,
            "kinds": dict(self.kinds),
            "records": self.records,
            "segments": list(self.segments),
            "scrubbed": self.scrubbed,
            "plan": self.plan.as_dict(),
        }


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


@dataclass(frozen=True, slots=True)
class ActorErasure:
    """What one actor erasure did off the log, and what stays on it because it is hashed."""

    seq: int
    request: str
    #: The pseudonym that now names the person, resolving to nobody.
    pseudonym: str
    #: Events whose hashed bytes hold the id erased (recorded before pseudonymous actors
    #: was enabled, or naming it in their data): they cannot change without breaking the chain.
    id_events: list[int]
    #: E-signed decisions by the person: each shows their printed name (21 CFR 11.50).
    signatures: list[int]
    #: Key registrations of the person's signing keys: each shows their printed name.
    keys: list[int]
    #: Events that carry the pseudonym (they stay, and now name no one).
    pseudonym_events: int
    #: Whether the directory held a printed name (shown only in these counts, never logged).
    had_name: bool
    scrubbed: str

    def stays(self) -> list[str]:
        """Return, in plain sentences, what stays on the log because it is hashed into the chain."""
        lines = [
            f"{self.pseudonym_events:,} event(s) carry the pseudonym {self.pseudonym}; it now "
            "resolves to no one."
        ]
        if self.id_events:
            lines.append(
                f"{len(self.id_events):,} event(s) hold the erased id in their hashed bytes "
                f"(events {_seqs(self.id_events)}): recorded before pseudonymous actors was "
                "enabled, or naming it in their data, they cannot be changed without breaking "
                "the chain."
            )
        else:
            lines.append("No event holds the erased id in its hashed bytes.")
        if self.signatures or self.keys:
            lines.append(
                f"{len(self.signatures):,} e-signature(s) (events {_seqs(self.signatures)}) and "
                f"{len(self.keys):,} key registration(s) (events {_seqs(self.keys)}) show the "
                "signer's printed name: 21 CFR 11.50 requires it on every signed record and "
                "11.70 binds it into the signature, so it stays (GDPR Art. 17(3)(b): a legal "
                "obligation to keep the record)."
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        """Return the erasure as plain JSON values (never the id erased)."""
        return {
            "seq": self.seq,
            "request": self.request,
            "scope": "actor",
            "pseudonym": self.pseudonym,
            "stays_on_log": {
                "pseudonym_events": self.pseudonym_events,
                "id_events": list(self.id_events),
                "signatures": list(self.signatures),
                "key_registrations": list(self.keys),
            },
            "stays": self.stays(),
            "scrubbed": self.scrubbed,
        }


def _seqs(seqs: list[int]) -> str:
    shown = ", ".join(str(s) for s in seqs[:10])
    return shown + (f" and {len(seqs) - 10:,} more" if len(seqs) > 10 else "") if seqs else "none"


def _needle(text: str) -> bytes:
    """Return how ``text`` appears inside a JSON string in canonical bytes."""
    return canonical_text(text)[1:-1].encode()


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
            denial = check_role(view.policy, actor.ids(), "privacy")
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

    def erase_actor(
        self,
        who: str,
        *,
        request: str,
        reason: str,
        actor: Actor,
        basis: str | None = None,
    ) -> ActorErasure:
        """Replace an actor's identity with its pseudonym wherever auditml keeps it off the log.

        The actor directory row of ``who`` (an id as given, e.g. an e-mail; case
        and spaces ignored) keeps only its pseudonym, and one ``privacy.erasure``
        event (scope ``actor``, subject ``{"actor": pseudonym}``) records it, in
        one transaction. What stays on the log because it is hashed into the
        chain is counted in the result. Raises InvalidInputError, writing
        nothing, for an id the directory does not hold.
        """
        if not isinstance(who, str) or not who.strip():
            raise InvalidInputError("say whose identity to erase: give the actor's id (--actor)")
        for name, text in (("request", request), ("reason", reason)):
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(
                    f"an erasure needs a {name}: the request's reference (e.g. DSR-2027-14) "
                    "and why (e.g. 'GDPR Art. 17 request')"
                )
        for name, text in (("request", request), ("reason", reason), ("basis", basis or "")):
            if len(who.strip()) >= 4 and person(who) in person(text):
                raise InvalidInputError(
                    f"the {name} names the actor itself, and it would stay on the log for "
                    "ever: refer to the request by its reference only, and nothing was erased"
                )
        # Held to the log: a row moved by hand must neither hide the person nor stand for them
        # (the eraser's own pseudonym needs a bound directory anyway).
        directory = self._ledger.bound_directory()
        wanted = person(who)
        found = directory.get(who.strip()) or next(  # by pseudonym, or by the id given
            (
                e
                for e in directory.values()
                if e.known_as is not None and person(e.known_as) == wanted
            ),
            None,
        )
        if found is not None and found.known_as is None:
            raise InvalidInputError(
                f"the identity behind {found.pseudonym} was already erased (event "
                f"{found.erased}): the directory holds only the pseudonym; nothing was erased"
            )
        if found is None or found.known_as is None:
            named = self._ledger.seqs_containing([_needle(who)])
            held = (
                f"; the log names it in {len(named):,} event(s) recorded without pseudonymous "
                "actors, which cannot change without breaking the chain"
                if named
                else ""
            )
            raise InvalidInputError(
                f"the actor directory holds no one known as {who!r}{held}: check the id (case "
                "and spaces are ignored), or see `auditml actors`; nothing was erased"
            )
        # Only now is the eraser given a pseudonym: a refused request writes nothing.
        actor = self._ledger.pseudonymize(actor)
        self._may(actor, "privacy.erasure")
        known = found.known_as
        for name, text in (("request", request), ("reason", reason), ("basis", basis or "")):
            if len(known) >= 4 and person(known) in person(text):
                raise InvalidInputError(
                    f"the {name} names the actor itself, and it would stay on the log for "
                    "ever: refer to the request by its reference only, and nothing was erased"
                )
        spellings = {known, known.lower(), known.strip()}
        if not is_pseudonym(who.strip()):
            spellings |= {who, who.strip()}
        ids: set[str] = {*spellings, found.pseudonym}
        id_needles = sorted({_needle(i) for i in spellings if i})
        id_events = self._ledger.seqs_containing(id_needles)
        pseudonym_events = len(self._ledger.seqs_containing([_needle(found.pseudonym)]))
        signatures = []
        for record in self._ledger.records(None, SIGNED_ACTIONS):
            sig = record.event.data.get("signature")
            if isinstance(sig, dict) and sig.get("signer") in ids:
                signatures.append(record.seq)
        keys = [
            record.seq
            for record in self._ledger.records(None, ("key.register",))
            if record.event.data.get("signer") in ids
        ]

        def draft_for(pseudonym: str) -> Draft:
            data = {
                "request": request,
                "reason": reason,
                "basis": basis,
                "values": 0,
                "scope": "actor",
            }
            return Draft.build(
                "privacy.erasure", actor=actor, subject={"actor": pseudonym}, data=data
            )

        receipt, pseudonym, printed = self._ledger.erase_actor(found.pseudonym, draft_for)
        return ActorErasure(
            seq=receipt.seq,
            request=request,
            pseudonym=pseudonym,
            id_events=id_events,
            signatures=signatures,
            keys=keys,
            pseudonym_events=pseudonym_events + 1,  # and the erasure event, about it
            had_name=printed is not None,
            scrubbed=self._ledger.store.scrub(),
        )

    def apply_retention(
        self, *, actor: Actor, now: datetime | None = None, dry_run: bool = False
    ) -> RetentionRun:
        """Remove what the schedule says has expired, and record one event saying what went.

        Nothing another rule still covers is removed (see :func:`plan_retention`);
        a segment's ``runtime.segment`` event stays, so the chain still verifies
        and ``verify`` reports its records as removed under retention. A run
        with nothing due still records its event (evidence that retention is
        applied); with ``dry_run`` nothing is written.
        """
        plan = self.plan(now)
        if dry_run:
            return RetentionRun(plan=plan)
        self._may(actor, "retention.applied")
        policy, policy_seq = self.policy()
        groups = [(d.seg, d.name) for d in plan.values if d.name is not None]
        segments = [d.seg for d in plan.segments]

        def draft_for(removed: Removed) -> Draft:
            data = {
                "as_of": plan.as_of,
                "schedule": policy.retention.schedule(),
                "policy_seq": policy_seq,
                "values": sum(removed.values.values()),
                "kinds": dict(sorted(removed.values.items())),
                "value_segments": {k: sorted(v) for k, v in sorted(removed.value_segments.items())},
                "records": removed.records,
                "segments": sorted(removed.segments),
                "held": sum(d.count for d in plan.held),
            }
            return Draft.build("retention.applied", actor=actor, subject={}, data=data)

        receipt, removed = self._ledger.remove_expired(groups, segments, draft_for)
        return RetentionRun(
            plan=plan,
            seq=receipt.seq,
            values=sum(removed.values.values()),
            kinds=dict(sorted(removed.values.items())),
            records=removed.records,
            segments=sorted(removed.segments),
            scrubbed=self._ledger.store.scrub(),
        )

    def _open_sealed(
        self, snap: Snapshot, sealed: list[tuple[str, str, str, bytes, bytes]]
    ) -> list[str]:
        """Open sealed values with their subjects' keys; name each that fails to open."""
        if not sealed:
            return []
        keys = snap.keys_of(self._log_id, [c for _, _, c, _, _ in sealed])
        problems = []
        for request_id, name, commitment, salt, value in sealed:
            what = f"value {name!r} of request {request_id!r}"
            key = keys.get(commitment)
            if key is None:
                problems.append(
                    f"{what} is sealed, and its subject's key is gone while the value stays: "
                    "the key or the lookup was deleted outside an erasure"
                )
                continue
            try:
                plain_salt, plain = open_sealed(commitment, salt, value, key)
            except VerificationError as exc:
                problems.append(f"{what}: {exc}")
                continue
            if hashlib.sha256(plain_salt + plain).hexdigest() != commitment:
                problems.append(f"{what} does not open its commitment: it was changed")
        return problems

    def kept_value(self, commitment: str) -> tuple[bytes, bytes] | None:
        """Return the salt and value bytes kept for ``commitment``, unsealed, or None if gone.

        A value whose subject was erased (its key destroyed) raises InvalidInputError.
        """
        found = self._ledger.store.sealed_value(self._log_id, commitment)
        if found is None:
            return None
        return open_sealed(commitment, *found)

    def verify_values(self, size: int) -> ValueCheck:
        """Check that every value missing from the off-log store went under an erasure or retention.

        A value a record commits to but the store no longer holds must be named
        by an erasure (its commitment kept in ``auditml_erased``, whose digest the
        ``privacy.erasure`` event records) or a retention run (its segment and
        name in a ``retention.applied`` event). Raises VerificationError naming
        every value that vanished without one (deleted by hand), and every
        erasure whose kept commitments no longer match its event.
        """
        erasures: dict[int, Mapping[str, Any]] = {}
        removed_segments: set[int] = set()
        removed_values: set[tuple[int, str]] = set()
        for record in self._ledger.events(action=PRIVACY_ACTIONS, stop=size):
            data = record.event.data
            if record.event.action == "privacy.erasure":
                erasures[record.seq] = data
                continue
            segments = data.get("segments")
            if isinstance(segments, list):
                removed_segments.update(s for s in segments if isinstance(s, int))
            groups = data.get("value_segments")
            if isinstance(groups, dict):
                for name, segs in groups.items():
                    if isinstance(segs, list):
                        removed_values.update((s, name) for s in segs if isinstance(s, int))
        problems: list[str] = []
        with self._ledger.store.snapshot() as snap:
            erased = {c: seq for c, seq in snap.erased(self._log_id) if seq < size}
            by_event: dict[int, list[str]] = {}
            for commitment, seq in erased.items():
                by_event.setdefault(seq, []).append(commitment)
            for seq, erasure in erasures.items():
                kept = by_event.pop(seq, [])
                if len(kept) != erasure.get("values") or (
                    kept and erased_digest(kept) != erasure.get("erased")
                ):
                    problems.append(
                        f"the erasure of event {seq} recorded {erasure.get('values')} value(s), "
                        f"and the store keeps {len(kept)} erased commitment(s) for it that do "
                        "not match its digest: auditml_erased was changed"
                    )
            for seq in sorted(by_event):
                problems.append(
                    f"auditml_erased names event {seq} for {len(by_event[seq])} value(s), and "
                    "that event is no erasure: rows were added to it by hand"
                )
            values = _ValueCursor(snap.scan_value_keys(self._log_id, size))
            checked = covered = 0
            sealed: list[tuple[str, str, str, bytes, bytes]] = []
            for chunk in snap.scan_records(self._log_id, 0, size):
                for row in chunk:
                    seg, i, request_id, body = int(row[0]), int(row[1]), row[2], bytes(row[-1])
                    committed = _commitments(body)
                    present = values.at(seg, i)
                    for name, commitment in sorted(committed.items()):
                        checked += 1
                        held = present.get(name)
                        if held is not None and held[0] == commitment:
                            if is_sealed(held[1], "salt"):
                                sealed.append((request_id, name, *held))
                                if len(sealed) >= _OPEN_BATCH:
                                    problems += self._open_sealed(snap, sealed)
                                    sealed = []
                            continue
                        if name in present:
                            problems.append(
                                f"value {name!r} of request {request_id!r} (record {i} of "
                                f"segment {seg}) is stored under another commitment"
                            )
                        elif (
                            commitment in erased
                            or (seg, name) in removed_values
                            or seg in removed_segments
                        ):
                            covered += 1
                        else:
                            problems.append(
                                f"value {name!r} of request {request_id!r} (record {i} of segment "
                                f"{seg}) is missing from the off-log store, and no erasure or "
                                "retention event covers it: it was deleted outside auditml"
                            )
            problems += self._open_sealed(snap, sealed)
        if problems:
            shown = "; ".join(problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise VerificationError(f"{shown}{more}", kind="value")
        return ValueCheck(checked=checked, removed=covered)

    @property
    def _log_id(self) -> int:
        return self._ledger.log_id
