"""People's keys and signatures, folded from the log's events (pure).

:class:`KeyRegistry` checks every e-signature against the key registered for
that person at that time; :func:`check_import` holds imported key events and
signatures to the same check before any of a batch is written.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditml.core.canonical import loads_strict
from auditml.core.envelope import marked
from auditml.core.events import (
    KEY_ACTIONS,
    SIGNED_ACTIONS,
    Draft,
    ESignature,
    Event,
    is_imported,
)
from auditml.core.reader import Reader
from auditml.core.signing import verify_esignature
from auditml.errors import InvalidInputError, VerificationError

__all__ = [
    "KeyRecord",
    "KeyRegistry",
    "SignatureEntry",
    "check_import",
    "signature_entry",
]

#: How far a signature's own time may run ahead of the event that carries it (clock skew).
SIGNATURE_SKEW = timedelta(minutes=5)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass
class KeyRecord:
    """A person's registered key: who, their printed name, when registered and revoked."""

    signer: str
    name: str
    public_key: bytes
    key: str
    registered: int
    revoked: int | None = None
    revoke_reason: str | None = None
    imported: bool = False


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """One line of the signature manifest: who signed what, when, meaning what."""

    seq: int
    time: str
    action: str
    model: str
    version: str
    signer: str
    name: str
    meaning: str
    signed_at: str
    key: str
    reason: str | None
    imported: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the entry as plain JSON values."""
        return {
            "seq": self.seq,
            "time": self.time,
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "signer": self.signer,
            "name": self.name,
            "meaning": self.meaning,
            "signed_at": self.signed_at,
            "key": self.key,
            "reason": self.reason,
            "imported": self.imported,
        }


def signature_entry(seq: int, event: Event) -> SignatureEntry | None:
    """Return the manifest line of a signed decision, or None for an event with no signature."""
    raw = event.data.get("signature")
    if not isinstance(raw, dict):
        return None
    sig = ESignature.model_validate(raw)
    reason = event.data.get("reason")
    return SignatureEntry(
        seq=seq,
        time=event.time,
        action=event.action,
        model=event.subject.get("model", ""),
        version=event.subject.get("version", ""),
        signer=sig.signer,
        name=sig.name,
        meaning=sig.meaning,
        signed_at=sig.time,
        key=sig.key,
        reason=reason if isinstance(reason, str) else None,
        imported=is_imported(event.data),
    )


@dataclass
class KeyRegistry:
    """The keys people registered on the log, folded from its events in ``seq`` order (pure).

    A key registered only by imported history (``data.imported``) is the
    source's word: it verifies imported signatures, but no live decision may be
    signed with it until it is registered live (``log.register_key``), which
    makes it a live key from that event on.
    """

    keys: dict[str, KeyRecord] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def apply(self, seq: int, event: Event) -> None:
        """Fold one ``key.register`` or ``key.revoke`` event."""
        data = event.data
        if event.action == "key.register":
            key = str(data.get("key"))
            imported = is_imported(data)
            found = self.keys.get(key)
            if found is None or (found.imported and not imported):
                self.keys[key] = KeyRecord(
                    signer=str(data.get("signer")),
                    name=str(data.get("name")),
                    public_key=base64.b64decode(str(data.get("public_key"))),
                    key=key,
                    registered=seq,
                    imported=imported,
                )
        elif event.action == "key.revoke":
            record = self.keys.get(str(data.get("key")))
            if record is not None and record.revoked is None:
                record.revoked = seq
                reason = data.get("reason")
                record.revoke_reason = reason if isinstance(reason, str) else None

    def active(self, signer: str) -> list[KeyRecord]:
        """Return ``signer``'s keys that are registered and not revoked."""
        return [k for k in self.keys.values() if k.signer == signer and k.revoked is None]

    def problem(self, signature: ESignature, actor: str) -> str | None:
        """Return why ``signature`` by ``actor`` cannot be accepted now, or None."""
        if signature.signer != actor:
            return (
                f"the signature is by {signature.signer}, but the decision is made by {actor}: "
                "people sign only their own decisions"
            )
        record = self.keys.get(signature.key)
        if record is None:
            return f"the key {signature.key[:16]}… is not registered on the log"
        if record.signer != actor:
            return f"the key {signature.key[:16]}… is registered to {record.signer}, not {actor}"
        if record.revoked is not None:
            return f"the key {signature.key[:16]}… of {actor} was revoked at event {record.revoked}"
        if record.imported:
            return (
                f"the key {signature.key[:16]}… was registered only by imported history (event "
                f"{record.registered}), which cannot authorize a live signature; register it "
                "on this log with `auditml key register`"
            )
        return None

    def note(self, seq: int, event: Event) -> None:
        """Remember the e-signature of an already checked decision, so a copy of it is refused."""
        raw = event.data.get("signature")
        sig = raw.get("sig") if isinstance(raw, dict) else None
        if isinstance(sig, str):
            self.seen.setdefault(sig, seq)

    def check(self, seq: int, event: Event, origin: str) -> None:
        """Raise VerificationError unless the event's e-signature (if any) is valid at ``seq``."""
        raw = event.data.get("signature")
        if raw is None:
            return
        try:
            signature = ESignature.model_validate(raw)
        except ValueError:
            raise VerificationError(
                "its e-signature is malformed", kind="signature", seq=seq
            ) from None
        record = self.keys.get(signature.key)
        if record is None:
            raise VerificationError(
                f"its e-signature by {signature.signer} uses a key that was not registered "
                "before it",
                kind="signature",
                seq=seq,
            )
        if record.signer != event.actor.id or signature.signer != event.actor.id:
            raise VerificationError(
                f"its e-signature names {signature.signer} with a key registered to "
                f"{record.signer}, but the decision was made by {event.actor.id}",
                kind="signature",
                seq=seq,
            )
        if record.revoked is not None and record.revoked < seq:
            raise VerificationError(
                f"its e-signature uses the key of {record.signer} revoked at event "
                f"{record.revoked}",
                kind="signature",
                seq=seq,
            )
        if record.imported and not is_imported(event.data):
            raise VerificationError(
                f"it is a live decision signed with a key registered only by imported history "
                f"(event {record.registered})",
                kind="signature",
                seq=seq,
            )
        digest = event.data.get("artifact_sha256")
        try:
            verify_esignature(
                signature,
                origin=origin,
                action=event.action,
                model=event.subject.get("model", ""),
                version=event.subject.get("version", ""),
                artifact_sha256=digest if isinstance(digest, str) else None,
                public_key=record.public_key,
            )
        except VerificationError:
            raise VerificationError(
                f"the e-signature of {signature.signer} does not verify for this record: it "
                "was made for another record, or the record was changed",
                kind="signature",
                seq=seq,
            ) from None
        if _parse_time(signature.time) > _parse_time(event.time) + SIGNATURE_SKEW:
            raise VerificationError(
                f"its e-signature is dated {signature.time}, after the event was recorded "
                f"({event.time})",
                kind="signature",
                seq=seq,
            )
        earlier = self.seen.get(signature.sig)
        if earlier is not None:
            raise VerificationError(
                f"its e-signature is a copy of the one on event {earlier}: a signature is "
                "used once",
                kind="signature",
                seq=seq,
            )
        self.seen[signature.sig] = seq

    def feed(self, records: Iterable[tuple[int, Event]], origin: str) -> int:
        """Fold key events and check signed decisions in order; return how many were signed."""
        signed = 0
        for seq, event in records:
            if event.action in KEY_ACTIONS:
                self.apply(seq, event)
            elif "signature" in event.data:
                self.check(seq, event, origin)
                signed += 1
        return signed


def check_import(
    reader: Reader,
    size: int,
    drafts: Sequence[Draft],
    mark: dict[str, Any],
    origin: str,
    stamp: str,
) -> None:
    """Refuse imported drafts the log would not accept from a live writer, before any is written.

    Runs inside the append transaction, against the log as of the locked head
    (``size`` events, the batch to be stamped no earlier than ``stamp``; drafts
    without a mark of their own carry ``mark``):

    - an e-signature must pass exactly the check ``verify`` makes
      (:meth:`KeyRegistry.check`): a key registered to the signer before it and
      not revoked, a signature over this record, not dated after it, not a copy
      of one already on the log or earlier in the batch;
    - a ``key.revoke`` may revoke only a key that imported history registered:
      revoking a live key is a live decision (``log.revoke_key``, which checks
      the ``keys`` permission).

    Raises InvalidInputError naming the draft; nothing of the batch is written.
    """
    if not any(d.action in KEY_ACTIONS or "signature" in d.data for d in drafts):
        return
    registry = KeyRegistry()
    for seq, body in reader.by_actions((*KEY_ACTIONS, *SIGNED_ACTIONS)):
        event = Event.model_validate(loads_strict(body))
        if event.action in KEY_ACTIONS:
            registry.apply(seq, event)
        else:
            registry.note(seq, event)
    for offset, draft in enumerate(drafts):
        seq = size + offset
        event = Event(
            v=1,
            log=origin,
            seq=seq,
            prev="0" * 64,
            time=stamp,
            actor=draft.actor,
            action=draft.action,
            subject=draft.subject,
            data=marked(draft, mark),
        )
        where = f"imported {draft.action} (draft {offset + 1} of {len(drafts)})"
        if draft.action == "key.revoke":
            found = registry.keys.get(str(draft.data.get("key")))
            if found is not None and not found.imported:
                raise InvalidInputError(
                    f"{where}: the key {found.key[:16]}… of {found.signer} was registered live "
                    f"(event {found.registered}); revoke it with log.revoke_key(...) or "
                    "`auditml key revoke`, which check the policy; nothing was written"
                )
        if draft.action in KEY_ACTIONS:
            registry.apply(seq, event)
        elif "signature" in draft.data:
            try:
                registry.check(seq, event, origin)
            except VerificationError as exc:
                raise InvalidInputError(
                    f"{where}: its e-signature cannot be accepted: {exc}; an imported signature "
                    "must verify on this log as a live one does; nothing was written"
                ) from None
