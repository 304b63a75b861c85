"""The event's byte layout (docs/format.md section 1), written once.

An event's canonical bytes are its keys in JCS order: ``action``, ``actor``,
``data``, ``log``, ``prev``, ``seq``, ``subject``, ``time``, ``v``. The parts a
caller supplies (action, actor, data, subject) are canonicalized before the
append transaction starts (:func:`draft_part`); the parts the ledger adds under
the lock (log, prev, seq, time) are laid around them by :func:`event_body`.
The chain verifier reads events back with the same pieces (``MID``, ``TAIL_*``,
:func:`action_prefix`), so the layout has one source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from auditml.core.canonical import canonical_bytes, canonical_text, plain_canonical_bytes
from auditml.errors import InvalidInputError

if TYPE_CHECKING:  # the chain verifier reads this module without loading the event models
    from auditml.core.events import Actor, Draft

__all__ = [
    "FIRST",
    "MID",
    "TAIL_END",
    "TAIL_KEY",
    "Part",
    "PartCache",
    "action_prefix",
    "draft_part",
    "event_body",
    "header_bytes",
    "marked",
]

#: What follows ``prev``'s value: the seq, then the subject's bytes.
MID = b'%s%s","seq":%d,"subject":'
#: The key before the time's value, and what ends every event.
TAIL_KEY = b',"time":"'
TAIL_END = b'","v":1}'
#: How the first event of every log starts.
FIRST = b'{"action":"log.init",'
_BODY = b'%s%s%s","seq":%d,"subject":%s,"time":"%s","v":1}'


def marked(draft: Draft, mark: dict[str, Any] | None) -> dict[str, Any]:
    """Return a draft's data with the imported ``mark`` unless it has its own (or mark is None)."""
    if mark is None or draft.imported:
        return draft.data
    return {**draft.data, "imported": mark}


def action_prefix(action: str) -> bytes:
    """Return the bytes every event of ``action`` starts with, up to its actor."""
    return b'{"action":' + canonical_text(action).encode() + b',"actor":'


def header_bytes(origin: str) -> bytes:
    """Return the canonical bytes that precede ``prev``'s value in every event of ``origin``."""
    return b',"log":' + canonical_text(origin).encode() + b',"prev":"'


class Part(NamedTuple):
    """One draft's canonical pieces, computed before the append transaction starts.

    A named tuple: a batch makes one per event, and a frozen dataclass costs
    about a microsecond each to build.
    """

    action: str
    prefix: bytes
    subject: bytes
    model: str | None
    version: str | None


class PartCache:
    """Canonical bytes of the actors, actions and subjects that the drafts of one batch share.

    ``by_object`` is keyed by ``id(actor)`` and keeps the actor itself, so no id is
    reused by another object while the batch lasts.
    """

    def __init__(self) -> None:
        self.by_object: dict[int, tuple[Actor, bytes]] = {}
        self.by_value: dict[tuple[str, str | None, str | None], bytes] = {}
        self.starts: dict[tuple[str, int], bytes] = {}
        self.subjects: dict[tuple[tuple[str, str], ...], bytes] = {}


def _actor_bytes(who: Actor, cache: PartCache) -> bytes:
    """Return the canonical bytes of an actor the batch has not seen as this object."""
    key = None if who.model_extra else (who.id, who.name, who.source)
    actor = None if key is None else cache.by_value.get(key)
    if actor is None:
        actor = canonical_bytes(who.model_dump(mode="json", exclude_none=True))
        if key is not None:
            cache.by_value[key] = actor
    return actor


def draft_part(draft: Draft, cache: PartCache, mark: dict[str, Any] | None = None) -> Part:
    """Canonicalize a draft's parts outside the transaction; refuse what JCS cannot hold.

    ``mark`` is the batch's imported mark, added to a draft that has none of its own.
    """
    who = draft.actor
    if who is None:
        raise InvalidInputError(
            f"the {draft.action} draft has no actor: append it through AuditLog, which "
            "resolves the acting identity, or build it with actor="
        )
    action = draft.action
    start = cache.starts.get((action, id(who)))
    if start is None:
        seen = cache.by_object.get(id(who))
        if seen is None:
            seen = cache.by_object[id(who)] = (who, _actor_bytes(who, cache))
        start = action_prefix(action) + seen[1] + b',"data":'
        cache.starts[(action, id(who))] = start
    subject = draft.subject
    items = tuple(subject.items())
    subject_bytes = cache.subjects.get(items)
    if subject_bytes is None:
        subject_bytes = canonical_bytes(subject)
        cache.subjects[items] = subject_bytes
    return Part(
        action,
        start + plain_canonical_bytes(marked(draft, mark)),  # a JSON-mode dump: see Draft
        subject_bytes,
        subject.get("model"),
        subject.get("version"),
    )


def event_body(part: Part, header: bytes, prev_hex: bytes, seq: int, stamp: bytes) -> bytes:
    """Return an event's canonical bytes: the draft's part laid around the ledger's fields."""
    return _BODY % (part.prefix, header, prev_hex, seq, part.subject, stamp)
