"""AuditLog: append to, read from and verify one hash-chained, Merkle-tree log."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import subprocess
import sys
from binascii import hexlify
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from itertools import chain as chained
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from pydantic import ValidationError

from auditml._internal.identity import resolve_actor
from auditml.core import merkle
from auditml.core.canonical import (
    loads_strict,
)
from auditml.core.chain import NODE_LEVEL, gap_error
from auditml.core.decide import Decide, Outcome, StateCache, View
from auditml.core.envelope import Part, PartCache, draft_part, event_body, header_bytes
from auditml.core.events import (
    GOVERNED,
    Actor,
    Draft,
    Event,
    ImportedFrom,
    data_model,
    imported_mark,
    is_imported,
)
from auditml.core.keys import check_import
from auditml.core.policy import person
from auditml.core.privacy import (
    SALT_BYTES,
    Binding,
    DirectoryEntry,
    DirectoryRow,
    Enrollments,
    ValueRow,
    actor_commitment,
    bind_directory,
    is_pseudonym,
    new_pseudonym,
    new_subject_key,
    seal_rows,
    subject_handles,
)
from auditml.core.state import policy_in_force
from auditml.errors import (
    AppendError,
    AuditmlError,
    InvalidInputError,
    LogNotFoundError,
    PolicyDeniedError,
    StoreError,
    VerificationError,
)
from auditml.store import (
    Batch,
    EventFilter,
    EventRow,
    HeadState,
    Removed,
    RowStream,
    Snapshot,
    Store,
    TxReader,
    redact,
)

# Verification's machinery (the tree helper, record segments) is imported when a verify runs:
# a decision from the command line does not pay for it (issue 20).
if TYPE_CHECKING:
    from auditml._internal.tree_worker import TreeAnswer, TreeRequest

__all__ = [
    "DEFAULT_PATH",
    "Head",
    "Ledger",
    "Receipt",
    "Record",
    "VerifyReport",
    "default_origin",
    "resolve_url",
]

DEFAULT_PATH = Path(".auditml") / "audit.db"
_ORIGIN_RE = re.compile(r"^[\x21-\x2a\x2c-\x7e]{1,255}$")  # printable ASCII, no space, no '+'
ProgressFn = Callable[[int, int], None]
#: What ``imported=`` takes: False (live), True, or the provenance of imported history.
Imported = bool | Mapping[str, Any] | ImportedFrom
PARALLEL_MIN = 250_000  # below this, starting a helper process costs more than it saves
RECORDS_PARALLEL_MIN = 200_000  # the same for runtime records, which cost more each
RECORDS_SHARE = 0.52  # of the records, checked here: the helper first has to start


def resolve_url(url: str | None = None) -> str:
    """Return the database URL: ``url``, then ``AUDITML_DATABASE_URL``, then ./.auditml/audit.db."""
    chosen = url or os.environ.get("AUDITML_DATABASE_URL", "").strip()
    if chosen:
        return chosen
    return f"sqlite:///{(Path.cwd() / DEFAULT_PATH).as_posix()}"


def default_origin() -> str:
    """Return an origin for a log created without one: ``<host>/<folder>``."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
    folder = re.sub(r"[^A-Za-z0-9._-]", "-", Path.cwd().name) or "log"
    return f"{host}/{folder}"


def check_origin(origin: str) -> str:
    if not _ORIGIN_RE.fullmatch(origin):
        raise InvalidInputError(
            f"invalid origin {origin!r}: use 1 to 255 printable ASCII characters without "
            "spaces or '+', e.g. bank.example/credit-models"
        )
    return origin


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_timestamp(value: str | datetime | date, *, what: str | None = None) -> str:
    """Normalize a date or time to the log's RFC 3339 form, for filters (naive means UTC).

    With ``what`` (the field's name, for a time to be recorded), a time without
    a zone is refused instead: the instant it names is unknown.
    """
    named = f"{what} " if what else ""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(
                f"{named}{text!r} is not a date or time; use ISO 8601, e.g. 2026-11-21 or "
                "2026-11-21T20:56:41Z"
            ) from None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        if what is not None:
            raise InvalidInputError(
                f"{named}{value.isoformat()!r} has no time zone, so the instant it names is "
                "unknown: add one, e.g. Z for UTC (2026-12-04T20:00:00Z) or +01:00"
            )
        value = value.replace(tzinfo=UTC)
    from auditml.core.records import log_time  # not loaded by a decision otherwise

    found = log_time(value)
    if found is None:
        raise InvalidInputError(
            f"{named}{value.isoformat()!r} is out of range: give a time between the years "
            "1000 and 9999"
        )
    return found


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of an append: where the event landed, its hash, its time, and the version it names."""

    seq: int
    hash: str
    time: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """An event read back, with its hash and exact canonical bytes."""

    seq: int
    hash: str
    event: Event
    body: bytes


@dataclass(frozen=True, slots=True)
class Head:
    """The log's current size, Merkle root, and last event."""

    origin: str
    size: int
    root: str
    last_hash: str
    last_time: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful verification checked.

    ``signatures`` counts the e-signatures checked, ``checkpoint`` is the size
    of the latest checkpoint the log kept (checked too, None when it kept
    none), and ``anchors`` the sizes of the anchored checkpoints it extends.
    """

    origin: str
    size: int
    root: str
    last_time: str
    seconds: float
    deep: bool
    signatures: int = 0
    checkpoint: int | None = None
    anchors: tuple[int, ...] = ()
    #: The log's verifier key every checkpoint was checked against (None: the log has none).
    vkey: str | None = None
    #: Segments whose records a retention run removed (their events stay and verify).
    removed_segments: int = 0
    #: Runtime records checked against their segments (None: not checked, ``runtime=False``).
    records: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able values."""
        return {
            "ok": True,
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "last_time": self.last_time,
            "seconds": round(self.seconds, 3),
            "deep": self.deep,
            "signatures": self.signatures,
            "checkpoint": self.checkpoint,
            "anchors": list(self.anchors),
            "vkey": self.vkey,
            "removed_segments": self.removed_segments,
            "records": self.records,
        }


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What a chain check recomputed: the size, root and last time, and the checkpoint roots."""

    size: int
    root: bytes
    last_time: str
    roots: Mapping[int, bytes]


def _no_checkpoints() -> int:
    return 0


@dataclass(slots=True)
class AfterAppend:
    """What runs inside each append transaction: the automatic checkpoints it reaches.

    ``every`` returns the interval (0: none) and ``sign`` signs the root at a
    size, returning the note or None when the log key is unavailable.
    """

    every: Callable[[], int] = _no_checkpoints
    sign: AutoSign | None = None


class Ledger:
    """One append-only, hash-chained log in a store: append, read, head, root and the chain check.

    Appends are serialized by the store, so many processes may append to the
    same log at once. What must happen inside an append transaction besides
    the events (the automatic checkpoints) comes in through :class:`AfterAppend`.
    """

    def __init__(self, store: Store, head: HeadState) -> None:
        self._store = store
        self._log_id = head.log_id
        self._origin = head.origin
        self._states = StateCache()
        self._pepper: bytes | None = None
        self.after_append = AfterAppend()
        self._has_records = False  # whether the store holds the runtime record tables
        #: ``(seq of the newest policy.update, pseudonymous_actors)`` as last read.
        self._pseudonymous: tuple[int, bool] | None = None
        #: ``(seq to read enrollments from, enrollments and actor erasures found so far)``.
        self._enrolled: tuple[int, Enrollments] = (0, Enrollments())

    def close(self) -> None:
        """Release the database connections."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def origin(self) -> str:
        """Return the log's origin name, which every event and checkpoint carries."""
        return self._origin

    @property
    def url(self) -> str:
        """Return the store's URL, with any password hidden."""
        return redact(self._store.url)

    @property
    def store(self) -> Store:
        """Return the underlying store (for tools and tests)."""
        return self._store

    @property
    def log_id(self) -> int:
        """Return the log's row id in the store."""
        return self._log_id

    # -- actors -------------------------------------------------------------

    def pseudonymous_actors(self) -> bool:
        """Return whether the policy in force names actors by pseudonym on the log."""
        newest = list(
            self._store.query(
                self._log_id, EventFilter(actions=("policy.update",), descending=True, limit=1)
            )
        )
        if not newest:
            return False
        seq = int(newest[0][0])
        if self._pseudonymous is None or self._pseudonymous[0] != seq:
            records = self.records(None, ("policy.update",), newest_first=True)
            policy, _ = policy_in_force((r.seq, r.body) for r in records)
            self._pseudonymous = (seq, policy.personal_data.pseudonymous_actors)
        return self._pseudonymous[1]

    def identify(self, actor: Actor | str | None = None) -> Actor:
        """Return the acting identity as it goes on the log (see :meth:`pseudonymize`)."""
        return self.pseudonymize(resolve_actor(actor))

    def pseudonymize(self, who: Actor) -> Actor:
        """Return ``who`` under its pseudonym when the policy in force asks for pseudonymous actors.

        The person's id and printed name go to the off-log actor directory (the
        pseudonym is drawn, and enrolled on the log, the first time they act);
        the actor returned carries the pseudonym as its id, no printed name, and
        the id given as ``known_as``, which checks read and the log never holds.
        A pseudonym given as the id must be one the directory holds (see
        :meth:`_drawn`); when the policy does not ask, the id stays as given (see
        :meth:`_linked`). A ``known_as`` the caller set is ignored and derived
        again, and the directory counts only where it binds to the log (see
        :meth:`bound_directory`).
        """
        who = _unclaimed(who)  # derived again: a caller's known_as is never taken on trust
        if is_pseudonym(who.id):
            return self._drawn(_plain(who))
        if not self.pseudonymous_actors():
            return self._linked(who)
        who = _plain(who)
        wanted = person(who.id)
        found = self._store.actor_pseudonym(self._log_id, wanted)
        directory = self.bound_directory()
        entry = directory.get(found) if found is not None else None
        if entry is None or entry.known_as is None or person(entry.known_as) != wanted:
            entry = _entry_of(directory, wanted)  # the lookup column is only a hint
        if entry is None:
            pseudonym = self._enroll(who)
        else:
            pseudonym = entry.pseudonym
            if who.name is not None and entry.name is None and entry.known_as is not None:
                self._name(pseudonym, entry.known_as, who.name)
        return Actor(id=pseudonym, source=who.source, known_as=who.id)

    def _enroll(self, who: Actor) -> str:
        """Draw a pseudonym for ``who``, keep them in the directory and enroll it on the log."""
        pseudonym, salt = new_pseudonym(), secrets.token_bytes(SALT_BYTES)
        prepare = self._enrollment(pseudonym, actor_commitment(salt, who.id, who.name))
        row = (pseudonym, who.id, who.name, salt.hex(), _now())
        found = self._store.enroll_actor(self._log_id, person(who.id), row, prepare)
        if found != pseudonym:  # the lookup column gave one already: hold it to its enrollment
            entry = self.bound_directory().get(found)
            if entry is None or entry.known_as is None or person(entry.known_as) != person(who.id):
                raise VerificationError(
                    f"the actor directory's lookup column gives this id the row of {found}, "
                    "whose enrollment binds someone else: the row was changed by hand (or made "
                    "before auditml enrolled pseudonyms: then run `auditml actors "
                    "--enroll-existing` once); decisions are refused until it is restored "
                    "(see `auditml verify --deep`)",
                    kind="directory",
                )
        return found

    def enroll_existing(self) -> list[str]:
        """Enroll the directory rows made before enrollments existed; return their pseudonyms.

        Only rows without a salt whose pseudonym acted on the log before its first
        ``actor.enroll`` (or on a log with none) are enrolled: each gets a salt and
        an enrollment binding the id and printed name it holds now, trusted as they
        stand. Rows added later by hand are not among them.
        """
        log = self._enrollments()
        since = min((seq for seq in log.first.values()), default=None)
        done = []
        for row in self._store.actor_directory(self._log_id):
            entry = DirectoryRow(*row[:5])
            if entry.known_as is None or entry.salt is not None or entry.erased is not None:
                continue
            if entry.pseudonym in log.enrolled:
                continue
            acted = self.seqs_containing([b'"id":"' + entry.pseudonym.encode() + b'"'])
            if not acted or (since is not None and min(acted) > since):
                continue  # only a pseudonym that acted before enrollments began is one of then
            salt = secrets.token_bytes(SALT_BYTES)
            commitment = actor_commitment(salt, entry.known_as, entry.name)
            prepare = self._enrollment(entry.pseudonym, commitment)
            known = (entry.known_as, entry.name, salt.hex())
            if self._store.salt_actor(self._log_id, entry.pseudonym, known, prepare):
                done.append(entry.pseudonym)
        return done

    def _enrollment(self, pseudonym: str, commitment: str) -> Callable[[HeadState], Batch]:
        """Return the preparer of the ``actor.enroll`` event that binds ``pseudonym``."""
        draft = Draft.build(
            "actor.enroll",
            actor=Actor(id=pseudonym),
            subject={"actor": pseudonym},
            data={"commitment": commitment},
        )
        hook = self.after_append
        return _preparer(self._origin, [draft_part(draft, PartCache())], hook.every(), hook.sign)

    def _name(self, pseudonym: str, known_as: str, name: str) -> None:
        """Fill a printed name the directory lacks, enrolling the pseudonym again to bind it."""
        salt = secrets.token_bytes(SALT_BYTES)
        prepare = self._enrollment(pseudonym, actor_commitment(salt, known_as, name))
        self._store.name_actor(self._log_id, pseudonym, (known_as, name, salt.hex()), prepare)

    def _drawn(self, who: Actor) -> Actor:
        """Return ``who``, given by a pseudonym, with the person the directory knows behind it.

        A pseudonym auditml never drew (an invented ``actor:<hex>``) would be a new
        person to separation of duties and to distinct approvals, and an erased
        identity acts no more: both are refused.
        """
        entry = self.bound_directory().get(who.id)
        if entry is None or entry.known_as is None:
            why = "auditml never drew it for this log" if entry is None else "it was erased"
            raise InvalidInputError(
                f"the actor {who.id!r} has the form of an auditml pseudonym, but {why}: act under "
                "your own id (e.g. your e-mail) and auditml gives you your pseudonym"
            )
        return Actor(id=who.id, source=who.source, known_as=entry.known_as)

    def _linked(self, who: Actor) -> Actor:
        """Return ``who`` answering also to the pseudonym it acted under while the policy asked.

        With pseudonymous actors switched off, a person's id no longer matches the
        pseudonym their earlier events carry; ``known_as`` then holds that
        pseudonym so separation of duties still sees who trained a version.
        """
        entry = _entry_of(self.bound_directory(), person(who.id))
        return who if entry is None else who.model_copy(update={"known_as": entry.pseudonym})

    def actor_directory(self) -> dict[str, DirectoryEntry]:
        """Return the actor directory as far as it binds to the log, for displays.

        A row rewritten, added or removed by hand is left out (its pseudonym shows
        bare); decisions use :meth:`bound_directory`, which refuses such a directory.
        """
        return self._bind(strict=False)

    def bound_directory(self) -> dict[str, DirectoryEntry]:
        """Return the actor directory, each identity held to its ``actor.enroll`` commitment.

        Raises VerificationError (``directory``) when a row was rewritten, added
        or removed by hand: a decision that counted people by it could be fooled.
        """
        return self._bind(strict=True)

    def directory_problems(self) -> list[str]:
        """Return, in words, each directory row that does not bind to the log (empty: none)."""
        rows = [DirectoryRow(*row) for row in self._store.actor_directory(self._log_id)]
        return bind_directory(rows, self._enrollments(), person)[1]

    def people(self) -> dict[str, str]:
        """Return who each pseudonym names (its folded id), from the bound directory."""
        return dict(self.binding().people)

    def binding(self) -> Binding:
        """Return who the pseudonyms are, when each was first enrolled, and which were erased."""
        entries = self.bound_directory()
        log = self._enrolled[1]  # read by bound_directory just now
        people = {p: person(e.known_as) for p, e in entries.items() if e.known_as is not None}
        return Binding(people, dict(log.first), dict(log.erased))

    def _bind(self, *, strict: bool) -> dict[str, DirectoryEntry]:
        """Return the directory entries that bind to the log; raise on the first that does not."""
        log = self._enrollments()
        if not log.enrolled and not log.erased:
            # No one was ever enrolled: no row can bind, so none is read; a row added by
            # hand is nobody to a decision (and `verify --deep` names it).
            return {}
        rows = [DirectoryRow(*row) for row in self._store.actor_directory(self._log_id)]
        entries, problems = bind_directory(rows, log, person)
        if strict and problems:
            raise VerificationError(
                f"{problems[0]}; decisions that count people are refused until it is restored "
                "(see `auditml verify --deep`)",
                kind="directory",
            )
        return entries

    def _enrollments(self) -> Enrollments:
        """Return the pseudonyms enrolled and erased on the log, read from verified events."""
        after, known = self._enrolled
        flt = EventFilter(actions=_ACTOR_BINDING, start=after, sparse=True)
        rows = list(self._store.query(self._log_id, flt))  # each body checked against its hash
        if not rows:
            return known
        found = Enrollments(dict(known.enrolled), dict(known.erased), dict(known.first))
        for seq, _, body in rows:
            event = _parsed(seq, body, flt)
            pseudonym = event.subject.get("actor")
            if is_imported(event.data) or not isinstance(pseudonym, str):
                continue  # an escape hatch binds no one
            if event.action == "actor.enroll":
                commitment = event.data.get("commitment")
                if isinstance(commitment, str) and event.actor.id == pseudonym:
                    found.enrolled[pseudonym] = (seq, commitment)  # the newest binds
                    found.first.setdefault(pseudonym, seq)
            elif event.data.get("scope") == "actor":
                found.erased.setdefault(pseudonym, seq)
        self._enrolled = (int(rows[-1][0]) + 1, found)
        return found

    def seqs_containing(self, needles: Sequence[bytes]) -> list[int]:
        """Return the seqs of the events whose canonical bytes hold one of ``needles``."""
        if not needles:
            return []
        flt = EventFilter(containing=tuple(needles))
        return [int(row[0]) for row in self._store.query(self._log_id, flt)]

    def erase_actor(
        self, pseudonym: str, draft_for: Callable[[str], Draft]
    ) -> tuple[Receipt, str, str | None]:
        """Leave only ``pseudonym`` in its actor directory row and append the erasure.

        The row is found by its pseudonym (the one the bound directory gives the
        person), never by the lookup column, which is only a hint: a hint moved
        by hand must not make the erasure forget someone else. ``draft_for`` gets
        the pseudonym and returns the ``privacy.erasure`` draft; both commit
        together. Returns the receipt, the pseudonym and the printed name the
        directory held.
        """
        hook = self.after_append
        every = hook.every()

        def prepare(head: HeadState, pseudonym: str, name: str | None) -> Batch:
            part = draft_part(draft_for(pseudonym), PartCache())
            return _preparer(self._origin, [part], every, hook.sign)(head)

        batch, pseudonym, name = self._store.erase_actor(self._log_id, pseudonym, prepare)
        row = batch.rows[0]
        return Receipt(row[0], row[2].hex(), row[3], row[6]), pseudonym, name

    def _pseudonymized(self, drafts: list[Draft]) -> list[Draft]:
        """Give each draft's actor its pseudonym, when the policy in force asks for them."""
        if all(d.actor is None or d.actor.known_as is not None for d in drafts):
            return drafts
        if not self.pseudonymous_actors():
            return drafts
        chosen: dict[int, Actor] = {}
        out = []
        for d in drafts:
            if d.actor is None:
                out.append(d)
                continue
            who = chosen.get(id(d.actor))
            if who is None:
                who = chosen[id(d.actor)] = self.pseudonymize(d.actor)
            out.append(d if who is d.actor else d.model_copy(update={"actor": who}))
        return out

    # -- appending ----------------------------------------------------------

    def append(
        self,
        action: str,
        *,
        subject: dict[str, str] | None = None,
        data: object = None,
        actor: Actor | str | None = None,
        imported: Imported = False,
    ) -> Receipt:
        """Validate and append one event; it is on disk when this returns."""
        if imported is False:
            _refuse_governed(action)
        draft = Draft.build(
            action, actor=self.identify(actor), subject=subject, data=data, imported=imported
        )
        return self.append_many([draft], imported=imported)[0]

    def append_many(self, drafts: Iterable[Draft], *, imported: Imported = False) -> list[Receipt]:
        """Append events in one transaction: all of them are written, or none."""
        cache = PartCache()
        mark = None if imported is False else imported_mark(imported)  # validated once
        given = [
            d
            if d.actor is None or d.actor.known_as is None
            else d.model_copy(update={"actor": _unclaimed(d.actor)})
            for d in _as_drafts(drafts, mark is not None)
        ]
        chosen = self._pseudonymized(_with_actors(given))
        if not chosen:
            return []
        if len(chosen) <= STREAM_CHUNK:
            # One chunk: canonicalized before the lock is taken, as a single event is.
            part_chunks: list[list[Part]] | None = [[draft_part(d, cache, mark) for d in chosen]]
        else:
            part_chunks = None  # canonicalized chunk by chunk, while the store writes
        hook = self.after_append
        every, sign, origin = hook.every(), hook.sign, self._origin
        receipts: list[Receipt] = []

        def stream(head: HeadState, reader: TxReader) -> RowStream:
            if mark is not None:
                stamp = max(_now(), head.head_time)
                check_import(reader, head.size, chosen, mark, origin, stamp)
            receipts.clear()  # a retry after a stale head starts again
            chunks = part_chunks or _part_chunks(chosen, cache, mark)
            rows = _chain_rows(origin, head, chunks, every, sign)
            return _with_receipts(rows, receipts)

        self._store.append_stream(self._log_id, stream, overlap=part_chunks is None)
        return receipts

    def append_segment(
        self,
        draft: Draft,
        records: Sequence[tuple[Any, ...]],
        values: Sequence[tuple[Any, ...]] = (),
    ) -> Receipt:
        """Append a ``runtime.segment`` event with its records and values, in one transaction.

        ``records`` are the record rows without their segment (``RECORD_COLUMNS``
        from ``i``), ``values`` the off-log value rows without it (``VALUE_COLUMNS``
        but ``seg``). The segment's seq is known only under the lock: the store
        fills it in as it bulk-inserts the rows, with no work per row under the lock.
        """
        dropped = draft.action == "runtime.dropped" and not records and not values
        if not (dropped or draft.action == "runtime.segment") or draft.actor is None:
            raise InvalidInputError(
                "append_segment takes a runtime.segment draft with its actor (or a "
                "runtime.dropped one with no records)"
            )
        if not self._has_records and not self._store.has_table("auditml_record"):
            raise StoreError(
                f"{self.url} was made by an earlier auditml, before runtime records: run "
                "`auditml init` with this --db once to add their tables (no event changes)"
            )
        self._has_records = True  # tables are never dropped: ask the store once
        hook = self.after_append
        base = _preparer(self._origin, [draft_part(draft, PartCache())], hook.every(), hook.sign)

        values, lookups = self._seal(values)

        def prepare(head: HeadState) -> Batch:
            return replace(base(head), records=records, values=values, lookups=lookups)

        batch = self._store.append(self._log_id, prepare)
        row = batch.rows[0]
        return Receipt(row[0], row[2].hex(), row[3], row[6])

    def _seal(
        self, values: Sequence[tuple[Any, ...]]
    ) -> tuple[Sequence[tuple[Any, ...]], list[tuple[str, str]]]:
        """Seal the values of records that name a subject under the subject's own key.

        The key is drawn the first time a subject is seen and kept off the log;
        erasure destroys it. Returns the rows to store and their lookup rows.
        """
        rows = cast("list[ValueRow]", list(values))
        if not any(row[2] == "subject" for row in rows):
            return values, []
        if self._pepper is None:
            self._pepper = self._store.pepper()
        handles = subject_handles(rows, self._pepper)
        keys = self._store.subject_keys(self._log_id, list(handles.values()), new_subject_key)
        return seal_rows(rows, handles, keys)

    def verify_records(
        self,
        size: int,
        progress: ProgressFn | None = None,
        parallel: bool | None = None,
        *,
        values: bool = True,
    ) -> int:
        """Check every stored runtime record against its segment, streaming; return the count.

        ``size`` is the size of the chain just verified. Every record of the log
        is read, in ``(seg, i)`` order: records of segments appended since the
        chain check are held against their events too, and records claiming a
        segment that is no ``runtime.segment`` event, or one beyond the head, are
        named. The first record that fails raises VerificationError (kind
        ``record``). With ``parallel`` (the default for many records on a machine
        with two cores or more) a helper process checks the later segments while
        this process checks the earlier ones; the first failure in order is raised.
        ``values`` (the default) also checks every value kept off the log against
        its salt and its record.
        """
        if not self._store.has_table("auditml_record"):
            return 0
        from auditml._internal.tree_worker import check_records
        from auditml.core.records import SegmentVerifier

        with self._store.snapshot() as snap:
            head = snap.head(self._log_id)
            stop = max(size, head.size if head is not None else 0)
            # A segment whose records a retention run removed keeps its event: not checked.
            segments = [
                (seq, bytes(body)) for seq, _, body in snap.kept_segments(self._log_id, stop)
            ]
            whole = SegmentVerifier(segments, stop=stop)
            if parallel is None:
                parallel = whole.committed >= RECORDS_PARALLEL_MIN and (os.cpu_count() or 1) > 1
            split = whole.split(RECORDS_SHARE) if parallel else stop
            helper = self._start_records_helper(split, stop, values) if split < stop else None
            if helper is None:
                return self._check_records(snap, segments, 0, stop, stop, progress, values)
            try:
                mine = self._check_records(
                    snap, segments, 0, split, stop, progress, values, null=True
                )
                result = self._finish_records_helper(helper, split, stop, values)
                helper = None
            finally:
                if helper is not None:
                    helper.kill()
                    helper.wait()
            if not result.ok:
                result.raise_failure()
            beyond = snap.scan_records(self._log_id, stop)
            check_records(snap, self._log_id, [], stop, stop, stop, beyond)
            return mine + result.records

    def _check_records(
        self,
        snap: Snapshot,
        segments: list[tuple[int, bytes]],
        start: int,
        stop: int,
        head: int,
        progress: ProgressFn | None,
        values: bool,
        *,
        null: bool = False,
    ) -> int:
        """Check the records of segments ``start`` to ``stop - 1`` here; return the count.

        From 0 to the head it reads every record; for a part, ``null`` first
        reads the records whose segment is NULL (they sort first).
        """
        from auditml._internal.tree_worker import check_records

        log_id = self._log_id
        kept: Iterable[list[tuple[Any, ...]]] | None = None
        if stop == head and start == 0:
            chunks: Iterable[list[tuple[Any, ...]]] = snap.scan_records(log_id)
            kept = snap.scan_values(log_id) if values else None
        else:
            part = snap.scan_records(log_id, start, stop)
            chunks = chained(snap.scan_records(log_id, null=True), part) if null else part
            # The helper checks the values of its segments; every other value is checked here.
            kept = snap.scan_values(log_id, stop, head, outside=True) if values else None
        if progress is not None:
            chunks = _reporting(chunks, progress)
        return check_records(snap, log_id, segments, start, stop, head, chunks, kept).records

    def _start_records_helper(
        self, start: int, stop: int, values: bool
    ) -> subprocess.Popen[str] | None:
        """Start a helper process checking the records of segments ``start`` to ``stop - 1``."""
        return self._spawn(self._records_request(start, stop, values))

    def _records_request(self, start: int, stop: int, values: bool) -> TreeRequest:
        request = replace(self._tree_request(stop, None, []), records=[start, stop])
        return replace(request, values=values)

    def _finish_records_helper(
        self, proc: subprocess.Popen[str], start: int, stop: int, values: bool
    ) -> TreeAnswer:
        """Collect the records helper's answer; if the helper itself broke, do its part here."""
        from auditml._internal.tree_worker import check_record_range

        return _helper_answer(
            proc, lambda: check_record_range(self._records_request(start, stop, values))
        )

    def records_of_requests(self, request_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """Return the stored record rows (``RECORD_COLUMNS``) under any of ``request_ids``.

        Only a lookup: the rows are what the database holds, not yet held against the log.
        """
        if not request_ids:
            return []
        if not self._has_records:
            if not self._store.has_table("auditml_record"):
                return []
            self._has_records = True  # tables are never dropped: ask the store once
        return self._store.records_of_requests(self._log_id, request_ids)

    def segment_on_log(self, seg: int, stream: str) -> list[bytes]:
        """Return the stored record bodies of segment event ``seg``, checked to be on the log.

        Checked: ``seg`` is below the head; the event's bytes match their stored
        hash and are included, by an RFC 9162 proof from the stored tree, in the
        tree whose root the head holds; it is a ``runtime.segment`` of ``stream``
        of this log; and the Merkle root and count of the bodies are its data's.
        What stays trusted is the stored tree and head (a consistent rewrite of
        the whole database); only ``verify`` against an anchored checkpoint finds
        that. Raise VerificationError naming what fails.
        """
        with self._store.snapshot() as snap:
            head = snap.head(self._log_id)
            size = head.size if head is not None else 0
            if not (isinstance(seg, int) and 0 <= seg < size):
                raise VerificationError(
                    f"a stored runtime record claims segment event {seg!r}, but the log "
                    f"has {size} events: the record was added outside auditml; run "
                    "`auditml verify`",
                    kind="record",
                )
            found = [row for chunk in snap.scan(self._log_id, seg, seg + 1) for row in chunk]
            if len(found) != 1:
                raise VerificationError(
                    "the segment event is missing from the store: run `auditml verify`",
                    kind="seq",
                    seq=seg,
                )
            _, stored, raw = found[0]
            body = bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else b""
            digest = merkle.leaf_hash(body)
            if (
                not body
                or not isinstance(stored, bytes | bytearray | memoryview)
                or (bytes(stored) != digest)
            ):
                raise VerificationError(
                    "the segment event's bytes do not match the hash recorded when it was "
                    "written: it was changed after it was appended; run `auditml verify`",
                    kind="hash",
                    seq=seg,
                )
            assert head is not None and head.root is not None
            get = self.node_getter(snap, merkle.inclusion_nodes(seg, size))
            try:
                path = merkle.inclusion_proof(seg, size, get)
                merkle.verify_inclusion(digest, seg, size, path, head.root)
            except (StoreError, VerificationError) as exc:
                raise VerificationError(
                    f"the segment event is not in the log's tree of size {size} ({exc}): the "
                    "store was changed outside auditml; run `auditml verify`",
                    kind="record",
                    seq=seg,
                ) from None
        try:
            event = loads_strict(body)
            data = event["data"]
            ok = (
                event.get("action") == "runtime.segment"
                and event.get("seq") == seg
                and event.get("log") == self._origin
                and data.get("stream") == stream
            )
            count, root = data.get("count"), data.get("root")
        except (AuditmlError, KeyError, TypeError, AttributeError, RecursionError):
            ok = False
        if not ok:
            raise VerificationError(
                f"a stored runtime record of {stream!r} claims segment event {seg}, which is no "
                f"runtime.segment of {stream!r}: the record was added outside auditml; run "
                "`auditml verify`",
                kind="record",
                seq=seg,
            )
        bodies = self._store.segment_bodies(self._log_id, seg)
        if count != len(bodies) or root != merkle.root_of(merkle.leaf_hashes(bodies)).hex():
            raise VerificationError(
                f"the {len(bodies)} records stored for segment event {seg} do not give its "
                "record count and root: records were changed, added or removed in the "
                "database; run `auditml verify`",
                kind="record",
                seq=seg,
            )
        return bodies

    def erase_subject(
        self, sid: str, draft_for: Callable[[list[tuple[str, str, int, int]]], Draft]
    ) -> tuple[Receipt, list[tuple[str, str, int, int]]]:
        """Erase a subject's off-log values and append the event ``draft_for`` makes, at once.

        ``draft_for`` gets the ``(commitment, name, seg, i)`` of every value erased
        and returns the ``privacy.erasure`` draft saying so; both commit together.
        """
        hook = self.after_append
        every = hook.every()

        def prepare(head: HeadState, erased: list[tuple[str, str, int, int]]) -> Batch:
            part = draft_part(draft_for(erased), PartCache())
            return _preparer(self._origin, [part], every, hook.sign)(head)

        batch, erased = self._store.erase_subject(self._log_id, sid, prepare)
        row = batch.rows[0]
        return Receipt(row[0], row[2].hex(), row[3], row[6]), erased

    def remove_expired(
        self,
        groups: Sequence[tuple[int, str]],
        segments: Sequence[int],
        draft_for: Callable[[Removed], Draft],
    ) -> tuple[Receipt, Removed]:
        """Remove expired off-log values and records, and append the retention event, at once."""
        hook = self.after_append
        every = hook.every()

        def prepare(head: HeadState, removed: Removed) -> Batch:
            part = draft_part(draft_for(removed), PartCache())
            return _preparer(self._origin, [part], every, hook.sign)(head)

        batch, removed = self._store.remove_expired(self._log_id, groups, segments, prepare)
        row = batch.rows[0]
        return Receipt(row[0], row[2].hex(), row[3], row[6]), removed

    def peek(self, decide: Decide) -> Outcome:
        """Return what ``decide`` makes of the committed log, without the lock or any write."""
        people = self.binding()
        with self._store.snapshot() as snap:
            head = snap.head(self._log_id)
            if head is None:
                raise LogNotFoundError(f"the log {self._origin!r} is gone from {self.url}")
            return decide(View(snap.reader(self._log_id), head.size, self._states, people))

    def decide(self, decide: Decide) -> tuple[Receipt | None, Outcome]:
        """Append what ``decide`` makes of the log as of the locked head, in one transaction."""
        decided: list[Outcome] = []

        people = self.binding()

        def prepare(head: HeadState, reader: TxReader) -> Batch | None:
            decided.clear()  # a retried transaction decides again, from the new head
            view = View(reader, head.size, self._states, people)
            outcome = decide(view)
            decided.append(outcome)
            if outcome.draft is None:
                return None  # a check that passed: nothing to record
            _check_pseudonymous(view, outcome.draft)
            part = draft_part(outcome.draft, PartCache())
            return _preparer(self._origin, [part], every, hook.sign)(head)

        hook = self.after_append
        every = hook.every()
        batch = self._store.append_after(self._log_id, prepare)
        if batch is None:
            return None, decided[0]
        row = batch.rows[0]
        return Receipt(row[0], row[2].hex(), row[3], row[6]), decided[0]

    def decide_batch(self, decide: Callable[[View], list[Draft]]) -> list[Receipt]:
        """Append the drafts ``decide`` makes of the log as of the locked head, in one transaction.

        ``decide`` reads verified bytes under the head lock, so what it finds
        already recorded cannot be recorded twice by two writers; it returns
        the drafts to append (each with its actor, given its pseudonym before
        the append when the policy asks for them, and its own imported mark
        when it is imported history), or none.
        """
        people = self.binding()

        def prepare(head: HeadState, reader: TxReader) -> Batch | None:
            view = View(reader, head.size, self._states, people)
            drafts = decide(view)
            if not drafts:
                return None
            for draft in drafts:
                _check_pseudonymous(view, draft)
            cache = PartCache()
            parts = [draft_part(d, cache) for d in _with_actors(drafts)]
            return _preparer(self._origin, parts, every, hook.sign)(head)

        hook = self.after_append
        every = hook.every()
        batch = self._store.append_after(self._log_id, prepare)
        if batch is None:
            return []
        return [Receipt(row[0], row[2].hex(), row[3], row[6]) for row in batch.rows]

    def check(self, decide: Decide) -> Outcome:
        """Run a check that appends nothing when it passes; record its denial when it fails.

        The check first reads the committed log without the head lock, so a check
        that passes (the common case) costs no write transaction. A denial is
        decided again under the lock, from the head as it is then, and recorded.
        """
        outcome = self.peek(decide)
        if outcome.denial is None:
            return outcome
        receipt, outcome = self.decide(decide)
        _raise_denial(receipt, outcome)
        return outcome

    def decided(self, decide: Decide) -> Receipt:
        """Append a decision, or its denial and then raise PolicyDeniedError."""
        return self.decided_outcome(decide)[0]

    def decided_outcome(self, decide: Decide) -> tuple[Receipt, Outcome]:
        """Append a decision and return what was appended, or raise PolicyDeniedError."""
        receipt, outcome = self.decide(decide)
        _raise_denial(receipt, outcome)
        if receipt is None:
            raise AppendError("the decision appended nothing: it was a check, use Ledger.check")
        return receipt, outcome

    def records(
        self,
        model: str | None,
        actions: Sequence[str],
        *,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Record]:
        """Stream the events of ``actions`` (of ``model``, when given), as decisions read them."""
        return self.events(model=model, action=actions, newest_first=newest_first, limit=limit)

    # -- reading ------------------------------------------------------------

    def head(self) -> Head:
        """Return the log's current size, root and last event."""
        head = self._store.head(self._origin)
        if head is None:
            raise LogNotFoundError(f"the log {self._origin!r} is gone from {self.url}")
        return Head(
            origin=head.origin,
            size=head.size,
            root=(head.root or merkle.EMPTY_ROOT).hex(),
            last_hash=head.head_hash.hex(),
            last_time=head.head_time,
        )

    def events(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        action: str | Sequence[str] | None = None,
        since: str | datetime | date | None = None,
        until: str | datetime | date | None = None,
        start: int = 0,
        stop: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> Iterator[Record]:
        """Yield the events that match every filter given, in ``seq`` order, streamed."""
        actions = (action,) if isinstance(action, str) else tuple(action or ())
        for name in actions:
            data_model(name)  # a misspelt action is an error, not an empty answer
        if limit is not None and limit < 0:
            raise InvalidInputError(f"limit must be zero or more, not {limit}")
        flt = EventFilter(
            model=model,
            version=version,
            actions=actions,
            since=to_timestamp(since) if since is not None else None,
            until=to_timestamp(until) if until is not None else None,
            start=start,
            stop=stop,
            limit=limit,
            descending=newest_first,
        )
        for seq, digest, body in self._store.query(self._log_id, flt):
            yield Record(seq, digest.hex(), _parsed(seq, body, flt), body)

    def root(self, size: int | None = None) -> str:
        """Return the Merkle root (hex) of the first ``size`` events (default: all of them)."""
        with self._store.snapshot() as snap:
            head = snap.head(self._log_id)
            assert head is not None
            if size is None or size == head.size:
                return (head.root or merkle.EMPTY_ROOT).hex()
            if not 0 <= size <= head.size:
                raise InvalidInputError(
                    f"size {size} is out of range: the log has {head.size} events"
                )
            return merkle.root_at(size, self.node_getter(snap)).hex()

    def node_getter(
        self, snap: Any, prefetch: Sequence[tuple[int, int]] = ()
    ) -> Callable[[int, int], bytes]:
        """Return get_node for merkle: stored nodes high up, leaf hashes below NODE_LEVEL.

        ``prefetch`` names the nodes a proof will ask for (see
        ``merkle.inclusion_nodes``); they are read up front in one query for
        the stored nodes and one per run of adjacent leaves, so a proof costs
        a few round trips to the database however deep the tree is.
        """
        log_id = self._log_id
        known: dict[tuple[int, int], bytes] = {}
        if prefetch:
            wanted = sorted(set(prefetch))
            known.update(snap.nodes_at(log_id, [n for n in wanted if n[0] >= NODE_LEVEL]))
            for start, stop in _leaf_runs([n for n in wanted if n[0] < NODE_LEVEL]):
                leaves = snap.leaf_hashes(log_id, start, stop)
                if len(leaves) == stop - start:
                    for level, index in wanted:
                        first = index << level
                        if level < NODE_LEVEL and start <= first < stop:
                            width = 1 << level
                            known[level, index] = merkle.perfect_root(
                                leaves[first - start : first - start + width]
                            )

        def get_node(level: int, index: int) -> bytes:
            found = known.get((level, index))
            if found is not None:
                return found
            if level >= NODE_LEVEL:
                stored = snap.node(log_id, level, index)
                if stored is None:
                    raise StoreError(f"the store lacks Merkle node ({level}, {index})")
                return bytes(stored)
            width = 1 << level
            leaves = snap.leaf_hashes(log_id, index * width, (index + 1) * width)
            if len(leaves) != width:
                raise StoreError(f"the store lacks events for Merkle node ({level}, {index})")
            return merkle.perfect_root(leaves)

        return get_node

    # -- verifying ----------------------------------------------------------

    def verify_chain(
        self,
        *,
        deep: bool = False,
        progress: ProgressFn | None = None,
        parallel: bool | None = None,
    ) -> ChainCheck:
        """Recompute every hash, link, seq, origin, time, column and the root; raise at the first.

        Reads one snapshot of the store as a stream, so memory stays flat.
        ``deep`` also re-canonicalizes and schema-checks every event. With
        ``parallel`` (the default for long logs on a machine with two cores or
        more, unless ``deep``) a helper process checks the later half of the
        chain and hashes its part of the Merkle tree, while this process does the
        same for the earlier half; the link where the two halves meet is checked
        here, and the two parts of the tree are merged (perfect subtrees
        compose). The roots at the kept checkpoints' sizes come out of the same
        pass. Both ways name the same first failure.
        """
        from auditml._internal.tree_worker import gc_paused, read_nodes
        from auditml.core.chain import ChainVerifier, check_nodes

        # The roots at the kept checkpoints' sizes come out of the one pass over the log.
        checkpoint_sizes = [size for size, *_ in self._store.checkpoints(self._log_id)]
        with self._store.snapshot() as snap:
            head = snap.head(self._log_id)
            if head is None:
                raise LogNotFoundError(f"the log {self._origin!r} is gone from {self.url}")
            if parallel is None:
                parallel = head.size >= PARALLEL_MIN and (os.cpu_count() or 1) > 1
            split = _split_point(head.size) if parallel and not deep else None
            helper = (
                None if split is None else self._start_helper(head.size, split, checkpoint_sizes)
            )
            if helper is None:
                split = None
            serial = helper is None
            try:
                verifier = ChainVerifier(self._origin, deep=deep, roots_at=checkpoint_sizes)
                # A deep verify builds models of every event: its garbage is left to the collector.
                with nullcontext() if deep else gc_paused():
                    for chunk in snap.scan(
                        self._log_id, stop=head.size if split is None else split, columns=True
                    ):
                        verifier.feed(chunk)
                        if progress is not None:
                            progress(verifier.size, head.size)
                state = verifier.state()
                roots = verifier.roots
                if serial:
                    _check_size(head, state.size)
                    last_hash, last_time = state.last_hash, state.last_time
                else:
                    assert helper is not None
                    if split is not None and state.size < split:
                        _missing(head, state.size, snap.next_seq(self._log_id, state.size))
                    result = self._finish_helper(helper, head.size, split, checkpoint_sizes)
                    helper = None
                    _check_helper(result, state.last_hash, state.last_time, split)
                    if split is not None and result.chain_size:
                        assert result.last_hash is not None and result.last_time is not None
                        last_hash = bytes.fromhex(result.last_hash)
                        last_time = result.last_time
                        _check_size(head, split + result.chain_size)
                    else:
                        last_hash, last_time = state.last_hash, state.last_time
                        _check_size(head, state.size)
                _check_size(head, head.size + snap.count_from(self._log_id, head.size))
                tree, nodes = state.frontier, list(state.nodes)
                if not serial:
                    # The two halves' trees compose: the helper's perfect subtrees join
                    # this half's compact range, completing the nodes across the split.
                    for size, part in result.parts.items():
                        at = tree.copy()
                        at.merge_range(read_nodes(part))
                        roots[int(size)] = at.root()
                    nodes += [(int(lv), int(i), bytes.fromhex(h)) for lv, i, h in result.nodes]
                    nodes += tree.merge_range(read_nodes(result.tail), min_level=NODE_LEVEL)
                check_nodes(snap.nodes(self._log_id, NODE_LEVEL), nodes)
                root, frontier = tree.root(), tree.to_bytes()
                if progress is not None:
                    progress(head.size, head.size)
            finally:
                if helper is not None:
                    helper.kill()
                    helper.wait()
            _check_head(head, last_hash, last_time, root, frontier)
        return ChainCheck(head.size, root, last_time, roots)

    def _start_helper(
        self, size: int, split: int | None, roots_at: list[int]
    ) -> subprocess.Popen[str] | None:
        """Start the helper process of a parallel verify, or return None if it can't start."""
        return self._spawn(self._tree_request(size, split, roots_at))

    def _spawn(self, tree_request: TreeRequest) -> subprocess.Popen[str] | None:
        """Start a helper process on ``tree_request``, or return None if it can't start."""
        if not self._store.shareable:
            return None
        request = tree_request.to_json()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "auditml._internal.tree_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(request)
            proc.stdin.close()
        except OSError:
            return None
        return proc

    def _tree_request(self, size: int, split: int | None, roots_at: list[int]) -> TreeRequest:
        from auditml._internal.tree_worker import TreeRequest

        return TreeRequest(self._store.url, self._log_id, size, split, self._origin, roots_at)

    def _finish_helper(
        self, proc: subprocess.Popen[str], size: int, split: int | None, roots_at: list[int]
    ) -> TreeAnswer:
        """Collect the helper's answer; if the helper itself broke, do its part here instead."""
        from auditml._internal.tree_worker import fold_stored_tree

        return _helper_answer(
            proc, lambda: fold_stored_tree(self._tree_request(size, split, roots_at))
        )


def _helper_answer(proc: subprocess.Popen[str], fallback: Callable[[], TreeAnswer]) -> TreeAnswer:
    """Read a helper process's answer; when the helper itself broke, return ``fallback()``."""
    from auditml._internal.tree_worker import TreeAnswer

    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    proc.wait()
    result = TreeAnswer.from_json(out)
    return fallback() if result.error is not None else result


def _reporting(
    chunks: Iterable[list[tuple[Any, ...]]], progress: ProgressFn
) -> Iterator[list[tuple[Any, ...]]]:
    """Pass ``chunks`` on, reporting how many rows went by."""
    seen = 0
    for chunk in chunks:
        yield chunk
        seen += len(chunk)
        progress(seen, 0)


def _with_actors(drafts: list[Draft]) -> list[Draft]:
    """Give each draft built without an actor the acting identity, resolved once per batch."""
    if all(d.actor is not None for d in drafts):
        return drafts
    who = resolve_actor()
    return [d if d.actor is not None else d.model_copy(update={"actor": who}) for d in drafts]


#: The events that bind pseudonyms to people, or unbind them.
_ACTOR_BINDING = ("actor.enroll", "privacy.erasure")


def _entry_of(directory: Mapping[str, DirectoryEntry], wanted: str) -> DirectoryEntry | None:
    """Return the live entry whose id is the person ``wanted`` (folded), if any."""
    for entry in directory.values():
        if entry.known_as is not None and person(entry.known_as) == wanted:
            return entry
    return None


def _plain(who: Actor) -> Actor:
    """Return ``who`` unless it carries fields beyond id, name and source: those are refused.

    Under pseudonymous actors the actor on the log is the pseudonym alone; an
    extra field (an ``email``, a ``team``) would put what it holds into the
    hashed bytes for ever, past any erasure.
    """
    if who.model_extra:
        names = ", ".join(sorted(who.model_extra))
        raise InvalidInputError(
            f"the actor carries extra field(s) ({names}), which would go onto the log beside "
            "the pseudonym, and the policy asks for pseudonymous actors: give only the id "
            "(and a printed name, which stays off the log); nothing was written"
        )
    return who


def _unclaimed(who: Actor) -> Actor:
    """Return ``who`` without a ``known_as`` its caller set: only the directory says who it is.

    ``known_as`` is what checks read beside the id; taken from a caller, an
    e-mail with a made-up ``known_as`` would skip its pseudonym (and land on the
    log), and a made-up pseudonym could claim any person. It is derived again.
    """
    return who if who.known_as is None else who.model_copy(update={"known_as": None})


def _check_pseudonymous(view: View, draft: Draft) -> None:
    """Refuse to write a person's id into a decision when the policy asks for pseudonyms.

    Every service gives its actor a pseudonym before deciding; a path that did
    not would put personal data into hashed bytes for ever, so it fails instead.
    """
    who = draft.actor
    if (
        who is not None
        and who.known_as is None
        and not is_pseudonym(who.id)
        and view.policy.personal_data.pseudonymous_actors
    ):
        raise AppendError(
            f"the {draft.action} decision names its actor by the id given, and the policy in "
            "force asks for pseudonymous actors (it changed while this was decided?): nothing "
            "was written; try again"
        )


def _raise_denial(receipt: Receipt | None, outcome: Outcome) -> None:
    """Raise PolicyDeniedError for a recorded denial, naming the event that records it."""
    if outcome.denial is not None:
        d = outcome.denial
        seq = None if receipt is None else receipt.seq
        raise PolicyDeniedError(d.message, rule=d.rule, remedy=d.remedy, seq=seq)


def _parsed(seq: int, body: bytes, flt: EventFilter) -> Event:
    """Return the event a found body holds, checked against the filter that found it."""
    try:
        event = Event.model_validate(loads_strict(body))
    except (AuditmlError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise VerificationError(
            f"its stored bytes are not a valid event ({first}); run `auditml verify`",
            kind="format",
            seq=seq,
        ) from None
    _check_found(seq, event, flt)
    return event


def _check_found(seq: int, event: Event, flt: EventFilter) -> None:
    """Raise unless an event found through the lookup columns is what its bytes say it is."""
    subject = event.subject
    if (
        event.seq != seq
        or (flt.actions and event.action not in flt.actions)
        or (flt.model is not None and subject.get("model") != flt.model)
        or (flt.version is not None and subject.get("version") != flt.version)
    ):
        raise VerificationError(
            f"it was found through its lookup columns, but its bytes say {event.action} of "
            f"{subject.get('model')!r} version {subject.get('version')!r} at seq {event.seq}: "
            "a column was changed in the database; run `auditml verify`",
            kind="column",
            seq=seq,
        )


def _leaf_runs(nodes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge the leaf ranges of low perfect nodes into runs worth one query each."""
    runs: list[tuple[int, int]] = []
    for start, stop in sorted((i << lv, (i + 1) << lv) for lv, i in nodes):
        if runs and start <= runs[-1][1] + (1 << NODE_LEVEL):
            runs[-1] = (runs[-1][0], max(runs[-1][1], stop))
        else:
            runs.append((start, stop))
    return runs


def _split_point(size: int) -> int:
    """Return where the helper's half of the chain starts.

    Both processes do the same work per event; the helper starts later (a new
    interpreter), so this process takes a little more than half.
    """
    return min(size, size // 2 + 5_000)


def _missing(head: HeadState, size: int, found: int | None) -> None:
    """Raise for events missing at ``size``: a gap if later ones exist, else a cut tail."""
    if found is None:
        _check_size(head, size)
    raise gap_error(size, found if found is not None else head.size)


def _check_helper(result: TreeAnswer, last_hash: bytes, last_time: str, split: int | None) -> None:
    """Raise the helper's chain failure or a bad link where the two ranges meet, first one first.

    The order matches a serial verify's: at the meeting event, a changed body,
    bad format, seq or origin comes before its link and time.
    """
    chain_failed = not result.ok and result.stage == "chain"
    if chain_failed and result.seq == split and result.kind not in {"link", "time"}:
        result.raise_failure()
    if split is not None and result.first_prev is not None:
        if result.first_prev != last_hash.hex():
            raise VerificationError(
                f"broken link: its prev is not the hash of event {split - 1} (an event before "
                "it was changed, removed, inserted or reordered)",
                kind="link",
                seq=split,
            )
        if result.first_time is not None and result.first_time < last_time:
            raise VerificationError(
                f"time goes backwards: {result.first_time} is earlier than the event before "
                f"it ({last_time})",
                kind="time",
                seq=split,
            )
    if chain_failed:
        result.raise_failure()


def _as_drafts(drafts: Iterable[Draft], importing: bool) -> Iterator[Draft]:
    """Check each draft: a live batch may hold no governed action and no imported mark."""
    for draft in drafts:
        if not isinstance(draft, Draft):
            raise InvalidInputError(
                f"append_many takes Draft objects (Draft.build(...)), not {type(draft).__name__}"
            )
        if importing:
            yield draft
            continue
        if draft.imported:
            raise InvalidInputError(
                f"a {draft.action} draft marked as imported history must be appended with "
                "imported=True (or its provenance); nothing was written"
            )
        _refuse_governed(draft.action)
        yield draft


def _refuse_governed(action: str) -> None:
    """Raise when ``action`` may only be appended by a method that checks the policy."""
    if action in GOVERNED:
        raise InvalidInputError(
            f"{action} is checked against policy, so plain append refuses it: use "
            f"{GOVERNED[action]}; to import history recorded elsewhere, pass imported=True"
        )


#: Signs the log's root at a size, for the automatic checkpoints an append reaches; returns
#: the signed note, or None when the log key is unavailable.
AutoSign = Callable[[int, bytes], str | None]


def _preparer(
    origin: str, parts: list[Part], every: int = 0, sign: AutoSign | None = None
) -> Callable[[HeadState], Batch]:
    """Return the function that turns the locked head into this append's rows.

    It is pure but for ``sign``: at each multiple of ``every`` the batch reaches,
    it signs the root at that size, so the checkpoint commits with the events and
    a crash can never leave an event the promised checkpoint does not cover.
    """

    def prepare(head: HeadState) -> Batch:
        stream = _chain_rows(origin, head, [parts], every, sign)
        while True:
            try:
                next(stream)
            except StopIteration as done:
                batch: Batch = done.value
                return batch

    return prepare


#: Events canonicalized, chained and handed to the store at a time by a long append_many:
#: the store writes one chunk while the next is prepared (see Store.append_stream).
STREAM_CHUNK = 512


def _part_chunks(
    drafts: Sequence[Draft], cache: PartCache, mark: dict[str, Any] | None
) -> Iterator[list[Part]]:
    """Canonicalize ``drafts`` chunk by chunk, as the store asks for rows."""
    for at in range(0, len(drafts), STREAM_CHUNK):
        yield [draft_part(d, cache, mark) for d in drafts[at : at + STREAM_CHUNK]]


def _chain_rows(
    origin: str,
    head: HeadState,
    part_chunks: Iterable[list[Part]],
    every: int = 0,
    sign: AutoSign | None = None,
) -> RowStream:
    """Chain the parts onto ``head``: yield each chunk's event rows, return the whole batch.

    The rows are the same whatever the chunks: each event's prev is the hash of
    the one before it, all share one time, and the tree grows leaf by leaf.
    """
    if head.origin != origin:
        raise StoreError(f"the store's log is {head.origin!r}, not {origin!r}")
    header = header_bytes(origin)
    frontier = merkle.CompactRange.from_bytes(head.size, head.frontier)
    stamp = max(_now(), head.head_time)
    stamp_b = stamp.encode()
    sha256 = hashlib.sha256
    seq = head.size
    prev = head.head_hash
    every = every if sign is not None else 0
    everything: list[EventRow] = []
    nodes: list[tuple[int, int, bytes]] = []
    checkpoints: list[tuple[int, bytes, str]] = []
    for parts in part_chunks:
        rows: list[EventRow] = []
        leaves: list[bytes] = []
        for part in parts:
            body = event_body(part, header, hexlify(prev), seq, stamp_b)
            digest = sha256(b"\x00" + body).digest()
            rows.append((seq, prev, digest, stamp, part.action, part.model, part.version, body))
            leaves.append(digest)
            prev = digest
            seq += 1
            if every and seq % every == 0:
                assert sign is not None
                nodes += frontier.extend(leaves, min_level=NODE_LEVEL)
                leaves = []
                root = frontier.root()
                note = sign(seq, root)
                if note is not None:
                    checkpoints.append((seq, root, note))
        nodes += frontier.extend(leaves, min_level=NODE_LEVEL)
        everything += rows
        yield rows
    new_head = HeadState(
        head.log_id, origin, seq, prev, stamp, frontier.root(), frontier.to_bytes()
    )
    return Batch(everything, nodes, new_head, checkpoints)


def _with_receipts(rows: RowStream, receipts: list[Receipt]) -> RowStream:
    """Pass ``rows`` on, making each chunk's receipts while the store writes the chunk."""
    while True:
        try:
            chunk = next(rows)
        except StopIteration as done:
            batch: Batch = done.value
            return batch
        yield chunk
        receipts += map(_receipt, chunk)


def _receipt(row: EventRow) -> Receipt:
    return Receipt(row[0], row[2].hex(), row[3], row[6])


def create_log(store: Store, origin: str, draft: Draft, sign: AutoSign, vkey: str) -> bool:
    """Write a new log's first event, its size-1 checkpoint and its key in one transaction.

    Returns False when another process created the log first (nothing is written then).
    """
    prepare = _preparer(origin, [draft_part(draft, PartCache())], 1, sign)
    return store.create_log(origin, prepare, _now(), vkey)


def _check_size(head: HeadState, size: int) -> None:
    """Raise unless as many events are stored as the head records."""
    if size < head.size:
        missing = f"event {size}" if head.size - size == 1 else f"events {size} to {head.size - 1}"
        raise VerificationError(
            f"the head records {head.size} events but only {size} are stored: "
            f"the tail was truncated ({missing} missing)",
            kind="head",
            seq=size,
        )
    if size > head.size:
        raise VerificationError(
            f"{size} events are stored but the head records only {head.size}: "
            "events were added without moving the head",
            kind="head",
            seq=head.size,
        )


def _check_head(
    head: HeadState, last_hash: bytes, last_time: str, root: bytes, frontier: bytes
) -> None:
    """Raise unless the stored head agrees with what the events recompute to."""
    last = head.size - 1
    if head.size and last_hash != head.head_hash:
        raise VerificationError(
            "the head's last hash does not match the last event", kind="head", seq=last
        )
    if head.size and last_time != head.head_time:
        raise VerificationError(
            "the head's last time does not match the last event", kind="head", seq=last
        )
    if root != (head.root or merkle.EMPTY_ROOT) or frontier != head.frontier:
        raise VerificationError(
            f"the head's Merkle root does not match the root of the {head.size} events",
            kind="head",
        )
