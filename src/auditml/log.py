"""AuditLog: opens a store and composes the ledger with its services.

The :class:`~auditml.ledger.Ledger` appends, reads and checks the chain; the
:class:`~auditml.trust.Trust` service keeps the log key, checkpoints, proofs
and people's keys; the :class:`~auditml.lifecycle.Lifecycle` service takes
decisions against policy. AuditLog wires them together (the ledger signs the
automatic checkpoints through trust inside each append) and keeps every public
method as a one-line delegate, so a caller needs to know only this class.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from importlib import import_module
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from auditml._internal.identity import resolve_actor
from auditml._internal.keyfiles import PublicKeyFile, new_log_signer
from auditml.core.events import Actor, ArtifactRef, DatasetRef, Draft, LogInitData, TrainData
from auditml.core.incidents import Incident
from auditml.core.keys import SignatureEntry
from auditml.core.policy import Policy, PolicyReview
from auditml.core.privacy import DirectoryEntry, RetentionStatus
from auditml.core.signing import Checkpoint, Signer, VerifierKey, sign_checkpoint
from auditml.core.state import ModelState, Move, SplitChange
from auditml.errors import (
    ConfigurationError,
    InvalidInputError,
    LogNotFoundError,
    VerificationError,
)
from auditml.ledger import (
    Head,
    Imported,
    Ledger,
    ProgressFn,
    Receipt,
    Record,
    VerifyReport,
    check_origin,
    create_log,
    default_origin,
    resolve_url,
)
from auditml.lifecycle import Lifecycle, MonitorResult
from auditml.store import HeadState, Store, redact
from auditml.trust import DEFAULT_CHECKPOINT_EVERY, Trust

# Retention, erasure and the registry are services a decision never calls: each is imported
# and made the first time the log needs it (issue 20).
if TYPE_CHECKING:
    from auditml.core.registry import Snapshot
    from auditml.privacy import ActorErasure, Erasure, Privacy, RetentionRun
    from auditml.registry import ImportedRun, Recorded, RegistryService, ViolationEntry
    from auditml.runtime import Ingested, IngestSource, Opened, Recorder
    from auditml.training import Sources, TrainingRun

__all__ = ["AuditLog"]


#: What verifying uses and a decision does not: imported on first use (issue 20).
_VERIFYING = (
    "auditml._internal.tree_worker",
    "auditml.core.records",
    "auditml.privacy",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
)


def _load_verifying() -> None:
    """Import what verify uses before its clock starts: its time counts checks, not imports."""
    for name in _VERIFYING:
        import_module(name)


class AuditLog:
    """One append-only, hash-chained log in a SQLite or PostgreSQL store.

    Open it with :meth:`open` (or create it with :meth:`init`) and use it as a
    context manager. Appends are serialized by the store, so many processes
    may append to the same log at once.
    """

    def __init__(
        self,
        store: Store,
        head: HeadState,
        *,
        signer: Signer | None = None,
        key: str | os.PathLike[str] | None = None,
    ) -> None:
        self._ledger = Ledger(store, head)
        self._trust = Trust(self._ledger, signer, key)
        self._lifecycle = Lifecycle(self._ledger)
        hook = self._ledger.after_append
        hook.every, hook.sign = self._trust.checkpoint_every, self._trust._auto_sign

    @functools.cached_property
    def _privacy(self) -> Privacy:
        """The retention and erasure service, made on first use."""
        from auditml.privacy import Privacy

        return Privacy(self._ledger)

    @functools.cached_property
    def _registry(self) -> RegistryService:
        """The model-registry service, made on first use."""
        from auditml.registry import RegistryService

        return RegistryService(self._ledger)

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        origin: str | None = None,
        signer: Signer | None = None,
        key: str | os.PathLike[str] | None = None,
    ) -> AuditLog:
        """Open the existing log at ``url`` (default: ./.auditml/audit.db).

        ``signer`` or ``key`` (a PEM file) give the log key that signs
        checkpoints; by default it is found as :meth:`key_path` says.
        """
        store = Store.connect(resolve_url(url))
        try:
            head = store.head()
            if head is None:
                if store.holds_events():
                    raise VerificationError(
                        f"{redact(store.url)} holds events but no log head row: the head row "
                        "was deleted outside auditml",
                        kind="head",
                    )
                raise LogNotFoundError(
                    f"{redact(store.url)} holds no log yet: run `auditml init` first"
                )
            if origin is not None and head.origin != origin:
                raise LogNotFoundError(
                    f"{redact(store.url)} holds the log {head.origin!r}, not {origin!r}"
                )
        except BaseException:
            store.close()
            raise
        return cls(store, head, signer=signer, key=key)

    @classmethod
    def init(
        cls,
        url: str | None = None,
        *,
        origin: str | None = None,
        actor: Actor | str | None = None,
        description: str | None = None,
        signer: Signer | None = None,
        key: str | os.PathLike[str] | None = None,
        passphrase: bytes | None = None,
        checkpoint_every: int | None = None,
    ) -> tuple[AuditLog, bool]:
        """Create the log if the store has none; return it and whether it was created.

        Calling it again is safe: an existing log is opened, never changed. An
        existing log with a different origin than ``origin`` is an error.
        A new log gets its Ed25519 key (``signer``, or a new PEM file at ``key``
        or :meth:`key_path`, encrypted with ``passphrase`` or
        ``AUDITML_KEY_PASSPHRASE``) and signs its first checkpoint.
        ``checkpoint_every`` sets how often checkpoints are signed by themselves.
        """
        if checkpoint_every is not None and checkpoint_every < 0:
            raise InvalidInputError(
                f"checkpoint interval must be 0 or more, not {checkpoint_every}"
            )
        if origin is not None:
            check_origin(origin)
        store = Store.connect(resolve_url(url), create=True)
        try:
            head = store.head()
            if head is None:
                chosen = origin or check_origin(default_origin())
                who = resolve_actor(actor)
                # The key comes first, so the first event binds the log to it.
                fresh = signer
                if fresh is None:
                    given = Path(key) if key is not None else None
                    fresh, _ = new_log_signer(store, chosen, given, passphrase)
                vkey = str(VerifierKey.of(chosen, fresh))
                data = LogInitData(
                    description=description,
                    created_by=who.id,
                    vkey=vkey,
                    checkpoint_every=(
                        DEFAULT_CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
                    ),
                )
                draft = Draft.build("log.init", actor=who, data=data)
                # The first event, its checkpoint and the key row commit together.
                signer_ = fresh

                def first_checkpoint(size: int, root: bytes) -> str:
                    return sign_checkpoint(chosen, size, root, signer_).note

                created = create_log(store, chosen, draft, first_checkpoint, vkey)
                if created:
                    signer = fresh
                head = store.head()
                assert head is not None
            else:
                created = False
            if origin is not None and head.origin != origin:
                raise ConfigurationError(
                    f"{redact(store.url)} already holds the log {head.origin!r}; a store holds "
                    "one log: use another --db for a log with another origin"
                )
            log = cls(store, head, signer=signer, key=key)
            log._trust._ensure_log_key(passphrase)
            if checkpoint_every is not None:
                log.set_checkpoint_every(checkpoint_every)
            if created:
                log.checkpoint(passphrase=passphrase)
        except BaseException:
            store.close()
            raise
        return log, created

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def verify(
        self,
        *,
        deep: bool = False,
        progress: ProgressFn | None = None,
        parallel: bool | None = None,
        checkpoints: Sequence[str] = (),
        vkey: VerifierKey | str | None = None,
        runtime: bool = True,
    ) -> VerifyReport:
        """Recompute every hash, link, seq, origin, time and the root; raise at the first failure.

        ``runtime`` (the default) also checks every stored runtime record against
        the root of the segment that commits it, streaming, and names the first
        record that fails.

        Then check every e-signature against the key registered for its signer
        at that time, the latest checkpoint the log kept, and each anchored
        checkpoint in ``checkpoints`` (signed notes kept outside the database):
        the log must still extend them. ``vkey`` pins the log's verifier key:
        the store's key must be it, and anchors must be signed with it
        (default: the key recorded in the store).

        Reads one snapshot of the store as a stream, so memory stays flat.
        ``deep`` also re-canonicalizes and schema-checks every event, and holds
        each row of the off-log actor directory to its ``actor.enroll``
        commitment (a row edited by hand fails as ``directory``). With
        ``parallel`` (the default for long logs on a machine with two cores or
        more) a helper process checks the later part of the chain and rebuilds
        the Merkle tree from the stored hashes, while this process checks the
        earlier part; the link where the two parts meet is checked here.
        """
        _load_verifying()
        started = time.perf_counter()
        chain = self._ledger.verify_chain(deep=deep, progress=progress, parallel=parallel)
        records = self._ledger.verify_records(chain.size) if runtime else None
        if runtime and deep:
            self._privacy.verify_values(chain.size)
        if deep:  # every directory row must open its enrollment, and every enrollment have one
            problems = self._ledger.directory_problems()
            if problems:
                raise VerificationError(problems[0], kind="directory")
        signatures = self._trust.verify_signatures()
        kept = self._trust.verify_checkpoints(chain.roots)
        anchors = self._trust.check_anchors(checkpoints, vkey)
        return VerifyReport(
            origin=self.origin,
            size=chain.size,
            root=chain.root.hex(),
            last_time=chain.last_time,
            seconds=time.perf_counter() - started,
            deep=deep,
            signatures=signatures,
            checkpoint=kept,
            anchors=anchors,
            vkey=self.store.log_key(self._ledger.log_id),
            records=records,
            removed_segments=len(self._privacy.removed_segments()) if runtime else 0,
        )

    # -- runtime records ------------------------------------------------------------------

    def runtime(
        self,
        model: str,
        *,
        env: str,
        actor: Actor | str | None = None,
        max_records: int = 1000,
        max_age: float = 1.0,
        spool: str | os.PathLike[str] | None = None,
        max_pending: int = 100_000,
        background: bool = True,
    ) -> Recorder:
        """Return a thread-safe recorder of ``model``'s runtime records in ``env``.

        Records are committed in segments of up to ``max_records``, at least every
        ``max_age`` seconds, and on ``flush()`` and ``close()``; close it (or use it
        as a context manager) so the last ones are committed. When the store
        cannot be reached, records wait in ``spool`` (default: a file beside a
        SQLite log, else under ./.auditml/spool) until the next flush. At most
        ``max_pending`` records wait in memory: when that many are queued,
        ``record()`` waits briefly for the flusher, then moves the oldest to the spool.
        """
        from auditml.runtime import Recorder

        self._lifecycle.check_stream(model, env)
        chosen = Path(spool) if spool is not None else self._spool_path(f"{model}/{env}")
        return Recorder(
            self._ledger,
            self._ledger.identify(actor),
            model,
            env,
            max_records=max_records,
            max_age=max_age,
            spool=chosen,
            max_pending=max_pending,
            background=background,
        )

    def ingest_runtime(
        self,
        model: str,
        lines: IngestSource,
        *,
        env: str,
        actor: Actor | str | None = None,
        max_records: int = 1000,
    ) -> Ingested:
        """Commit runtime records given as JSON Lines (from a server not written in Python).

        ``lines`` is an iterable of lines, a path (``pathlib.Path``) or a file
        object open to read; it is read once, line by line, in memory that does
        not grow with its size (the checked records wait in a private temporary
        file, about the input's size). Each line holds the arguments of
        ``Recorder.record`` as a JSON object (``request_id``, ``version``,
        ``latency_ms``; optionally ``output``, ``error``, ``time``, ``subject``,
        ``features``, ``payload``, ``personal``) and is checked exactly as
        ``record()`` checks them. Every line is checked before anything is
        written: a bad one, a line over ``LINE_MAX``, or one request given twice
        for one version raises InvalidInputError naming its line number, and
        nothing of ``lines`` is committed.

        A record whose request and version the log holds already for this model
        and env is skipped and counted in ``Ingested.skipped``, so ingesting a
        file again, or after an ingest was stopped part-way, records each line
        once. It is skipped only when its stored bytes are that record, in a
        segment whose event is in the log's tree and whose root its records
        give (else VerificationError), and when the line says the same (the
        same output, latency, error, names of the values kept off the log, and
        time when the line gives one; else InvalidInputError). The records are
        committed in segments of ``max_records`` (fewer when lines are large),
        each its own transaction: if the process dies part-way, the segments
        already committed stay, and the next ingest of the input skips them.
        """
        from auditml.runtime import ingest

        self._lifecycle.check_stream(model, env)
        return ingest(
            self._ledger, self._ledger.identify(actor), model, env, lines, max_records=max_records
        )

    # -- personal data ----------------------------------------------------------------------

    def retention(self, now: datetime | None = None) -> RetentionStatus:
        """Return the retention schedule in force, what falls due at ``now``, what was removed.

        The schedule is the policy's ``[retention]``; the removals are the log's
        ``privacy.erasure`` and ``retention.applied`` events.
        """
        return self._privacy.status(now)

    def erase(
        self,
        subject: object,
        *,
        request: str,
        reason: str,
        basis: str | None = None,
        actor: Actor | str | None = None,
    ) -> Erasure:
        """Erase every value kept off the log for one data subject (GDPR Art. 17), at once.

        The subject's values, salts and key, and the lookup from it to its
        records, are deleted in one transaction with one ``privacy.erasure``
        event that says how many values of which kinds went under ``request``,
        never who. Every hash and proof still verifies; the erased values can no
        longer be opened. Policy may limit who erases (``[permissions] privacy``).
        """
        return self._privacy.erase(
            subject, request=request, reason=reason, basis=basis, actor=self._ledger.identify(actor)
        )

    def erase_actor(
        self,
        who: str,
        *,
        request: str,
        reason: str,
        basis: str | None = None,
        actor: Actor | str | None = None,
    ) -> ActorErasure:
        """Replace a person's identity with their pseudonym wherever auditml keeps it off the log.

        ``who`` is the id the person acted under (e.g. an e-mail). Under
        ``[personal_data] pseudonymous_actors``, events carry a pseudonym and
        the actor directory (off the log) holds the id and printed name; this
        leaves only the pseudonym there, with one ``privacy.erasure`` event
        (scope ``actor``) that names the pseudonym, never the id. The result
        says what stays on the log because it is hashed into the chain: events
        recorded before pseudonymous actors, and e-signatures, which show the
        signer's printed name (21 CFR 11.50). Needs the ``privacy`` permission.
        """
        return self._privacy.erase_actor(
            who, request=request, reason=reason, basis=basis, actor=resolve_actor(actor)
        )

    def actors(self) -> dict[str, DirectoryEntry]:
        """Return the off-log actor directory: who each pseudonym names, unless erased.

        Only rows that open their ``actor.enroll`` commitment are given; see
        :meth:`actor_problems` for the others.
        """
        return self._ledger.actor_directory()

    def enroll_existing_actors(self) -> list[str]:
        """Bind the directory rows of a log made before auditml enrolled pseudonyms (once).

        Each row whose pseudonym acted on the log, and that has no salt yet, gets
        an ``actor.enroll`` event binding the id and printed name it holds now;
        returns the pseudonyms enrolled. Refused on a log that already enrolls.
        """
        return self._ledger.enroll_existing()

    def actor_problems(self) -> list[str]:
        """Return each actor directory row edited by hand, in words (empty: the directory binds)."""
        return self._ledger.directory_problems()

    def apply_retention(
        self,
        *,
        now: datetime | None = None,
        dry_run: bool = False,
        actor: Actor | str | None = None,
    ) -> RetentionRun:
        """Remove the off-log values and runtime records whose retention has expired.

        One ``retention.applied`` event records what went (even nothing: the
        run itself is evidence); nothing another rule (or an open incident)
        still covers is removed, segment events stay, and the chain still
        verifies. ``dry_run`` only returns the plan.
        """
        return self._privacy.apply_retention(
            actor=self._ledger.identify(actor), now=now, dry_run=dry_run
        )

    def _spool_path(self, stream: str) -> Path:
        """Return this process's spool file for ``stream``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stream).strip("-") or "stream"
        held = getattr(self.store.backend, "path", None)
        folder = (
            Path(held).resolve().with_suffix(".spool")
            if isinstance(held, str) and held
            else Path(".auditml") / "spool"
        )
        return folder / f"{slug}.{os.getpid()}.jsonl"

    def open_commitment(self, request_id: str, name: str) -> Opened:
        """Open a record's commitment for an auditor: its value and salt, checked against it.

        The record is the latest one stored under ``request_id`` whose bytes say
        so, and its proof must hold against the log's current root: a value is
        never opened against a record the log does not commit to.
        """
        from auditml.core.records import verify_record_proof
        from auditml.runtime import open_value

        seg, body, record = self._stored_records(request_id)[-1]
        size = self.head().size
        proof = self._prove_stored(seg, body, size)
        verify_record_proof(proof, self.root(size), origin=self.origin, tree_size=size)
        commitments = record.get("commitments")
        committed = commitments.get(name) if isinstance(commitments, dict) else None
        if committed is None:
            raise InvalidInputError(f"request {request_id!r} commits no value named {name!r}")
        kept = self._privacy.kept_value(committed)
        if kept is None:
            raise InvalidInputError(
                f"the {name} of request {request_id!r} is no longer kept (erased or expired): "
                "its commitment stays on the log, but nobody can open it"
            )
        try:
            return open_value(request_id, name, body, *kept)
        except InvalidInputError as exc:  # a kept value that is not JSON: changed in the database
            raise VerificationError(
                f"the {name} kept for request {request_id!r} cannot be read ({exc}): it was "
                "changed in the database",
                kind="record",
                seq=seg,
            ) from None

    def _stored_records(self, request_id: str) -> list[tuple[int, bytes, dict[str, Any]]]:
        """Return ``(seg, bytes, record)`` of each record stored under ``request_id``.

        The request id column is only an index: a row whose bytes name another
        request, or are no record at all, fails as a column changed in the database.
        """
        if not isinstance(request_id, str) or not request_id.strip():
            raise InvalidInputError("give the request id of a runtime record")
        rows = self.store.records_for(self._ledger.log_id, request_id)
        if not rows:
            raise InvalidInputError(
                f"no runtime record of request {request_id!r} on the log {self.origin!r}; "
                "if it should be there, run `auditml verify`"
            )
        from auditml.runtime import stored_request

        found = []
        for row in rows:
            seg, body = row[0], row[-1]
            record = stored_request(seg, body, request_id)
            found.append((int(seg), bytes(body), record))
        return found

    def _prove_stored(self, seg: int, body: bytes, size: int) -> dict[str, Any]:
        """Return the record proof of stored record ``body`` of segment event ``seg``, at ``size``.

        Raise VerificationError when the log commits no such record: its segment
        event is beyond the log's head or is no ``runtime.segment``, or the
        segment's stored records do not hold these bytes at the record's index.
        """
        from auditml.core.records import SEGMENT_ACTION, record_proof_of_stored

        head = self.head().size
        if not 0 <= seg < head:
            raise VerificationError(
                f"a stored runtime record claims segment event {seg}, but the log has "
                f"{head} events: the record was added outside auditml; run `auditml verify`",
                kind="record",
            )
        if not 0 <= seg < size:
            raise InvalidInputError(
                f"the record's segment event {seg} is not in the tree of size {size}; "
                f"give a size from {seg + 1} to {head}"
            )
        (event,) = list(self.events(start=seg, stop=seg + 1))
        if event.event.action != SEGMENT_ACTION:
            raise VerificationError(
                f"a stored runtime record claims segment event {seg}, which is a "
                f"{event.event.action}, not a runtime.segment: the record was added outside "
                "auditml; run `auditml verify`",
                kind="record",
                seq=seg,
            )
        from auditml.runtime import stored_record

        bodies = self.store.segment_bodies(self._ledger.log_id, seg)
        record = stored_record(seg, body)
        index = record.get("i")
        if not (isinstance(index, int) and _is_index(index) and index < len(bodies)) or (
            bodies[index] != body
        ):
            raise VerificationError(
                f"runtime record {index!r}: its bytes are not the record stored at that index "
                "of its segment: the segment's records were changed in the database; run "
                "`auditml verify`",
                kind="record",
                seq=seg,
            )
        return record_proof_of_stored(  # hashes the stored bytes: nothing parsed again
            log=self.origin,
            bodies=bodies,
            index=index,
            segment_event=event.body,
            segment_seq=seg,
            event_inclusion=self.prove_inclusion(seg, size),
        )

    # -- what the services lend each other and the tools above ---------------------------

    def _own_files(self) -> list[Path]:
        """Return the files this log lives in (database, sidecars, key): no output replaces them."""
        return self._trust._own_files()

    def _log_signer(self) -> Signer:
        """Return the log key's signer (to seal a report); raise ConfigurationError if absent."""
        return self._trust._log_signer()

    def _begin_training(self, model: str, version: str | None, actor: Actor) -> str:
        """Check that ``actor`` may train ``model`` and return the version the run gets."""
        return self._lifecycle._begin_training(model, version, actor)

    def _finish_training(
        self, model: str, version: str | None, *, auto: bool, actor: Actor, data: dict[str, Any]
    ) -> Receipt:
        """Record a finished run's ``model.train`` event."""
        return self._lifecycle._finish_training(model, version, auto=auto, actor=actor, data=data)

    # -- one-line delegates --------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections."""
        return self._ledger.close()

    @property
    def origin(self) -> str:
        """Return the log's origin name, which every event and checkpoint carries."""
        return self._ledger.origin

    @property
    def url(self) -> str:
        """Return the store's URL, with any password hidden."""
        return self._ledger.url

    @property
    def store(self) -> Store:
        """Return the underlying store (for tools and tests)."""
        return self._ledger.store

    def append(
        self,
        action: str,
        *,
        subject: dict[str, str] | None = None,
        data: object = None,
        actor: Actor | str | None = None,
        imported: Imported = False,
    ) -> Receipt:
        """Validate and append one event; it is on disk when this returns.

        Actions that policy governs (train, evaluate, approve, reject, deploy,
        rollback, retire, incidents, policy changes) are refused here: use the method of the same
        name, which checks the policy. ``imported`` records history that
        happened elsewhere (a migration): ``True``, or its provenance as a
        mapping such as ``{"source": "mlflow", "id": run_id, "time": ...}`` (see
        :class:`~auditml.core.events.ImportedFrom`). The event then carries that
        mark as ``data.imported`` in its own bytes, policy does not check it,
        and it never counts toward a rule a live decision must meet (see
        :mod:`auditml.lifecycle`). An imported e-signature must still verify.
        ``data`` may not hold ``imported`` itself.
        """
        return self._ledger.append(
            action, subject=subject, data=data, actor=actor, imported=imported
        )

    def append_many(self, drafts: Iterable[Draft], *, imported: Imported = False) -> list[Receipt]:
        """Append events in one transaction: all of them are written, or none.

        Governed actions are refused unless ``imported`` (see :meth:`append`),
        which marks every draft that is not marked already (a draft built with
        ``Draft.build(..., imported=...)`` keeps its own provenance). A marked
        draft is refused without ``imported``. Imported e-signatures and key
        revocations are checked against the log under the append's lock
        (:func:`~auditml.core.keys.check_import`).
        """
        return self._ledger.append_many(drafts, imported=imported)

    def head(self) -> Head:
        """Return the log's current size, root and last event."""
        return self._ledger.head()

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
        """Yield the events that match every filter given, in ``seq`` order, streamed.

        ``since`` is inclusive and ``until`` exclusive; plain dates mean midnight UTC.
        """
        return self._ledger.events(
            model=model,
            version=version,
            action=action,
            since=since,
            until=until,
            start=start,
            stop=stop,
            limit=limit,
            newest_first=newest_first,
        )

    def root(self, size: int | None = None) -> str:
        """Return the Merkle root (hex) of the first ``size`` events (default: all of them)."""
        return self._ledger.root(size)

    def key_path(self) -> Path:
        """Return where the log's private key is kept (see :func:`key_path_for`)."""
        return self._trust.key_path()

    def verifier_key(self) -> VerifierKey:
        """Return the log's verifier key, as recorded in the store."""
        return self._trust.verifier_key()

    def checkpoint(self, size: int | None = None, *, passphrase: bytes | None = None) -> Checkpoint:
        """Sign and keep a checkpoint of the log at ``size`` (default: now); return it.

        A checkpoint already kept at that size is returned as it is: the log
        never signs two roots for one size, and refuses to when its root at that
        size has changed since.
        """
        return self._trust.checkpoint(size, passphrase=passphrase)

    def checkpoints(self) -> list[Checkpoint]:
        """Return every checkpoint the log has signed, oldest first."""
        return self._trust.checkpoints()

    def latest_checkpoint(self) -> Checkpoint | None:
        """Return the largest checkpoint the log has signed, or None."""
        return self._trust.latest_checkpoint()

    def checkpoint_every(self) -> int:
        """Return N: a checkpoint is signed whenever the log reaches a multiple of N (0: never).

        A log records N in its first event; logs made before that keep it as a setting.
        """
        return self._trust.checkpoint_every()

    def set_checkpoint_every(self, every: int) -> None:
        """Sign a checkpoint automatically every ``every`` events (0 turns it off).

        A log whose first event records its interval keeps that one: verify checks
        that every checkpoint it promises exists, so the promise cannot change.
        """
        return self._trust.set_checkpoint_every(every)

    def verify_checkpoints(self, roots: Mapping[int, bytes] | None = None) -> int | None:
        """Check every checkpoint the log kept, and that none it made is missing.

        The store's log key must be the one the first event binds; each kept
        checkpoint must be signed by it, agree with its own row, and commit to
        the log's root at its size; and every checkpoint the log promises (at
        size 1, signed when it was created, and at each multiple of its
        interval) must be kept. Call it after the events, tree and head verified.
        ``roots`` gives the log's root at some sizes, as verify's one pass over the
        log recorded them; any other size's root is computed from the stored tree.
        Returns the size of the latest kept checkpoint, or None when there is none.
        """
        return self._trust.verify_checkpoints(roots)

    def prove_inclusion(self, seq: int, size: int | None = None) -> dict[str, Any]:
        """Return the docs/format.md inclusion proof of event ``seq`` in the tree of ``size``."""
        return self._trust.prove_inclusion(seq, size)

    def prove_consistency(self, size1: int, size2: int | None = None) -> dict[str, Any]:
        """Return the docs/format.md consistency proof from the tree of ``size1`` to ``size2``."""
        return self._trust.prove_consistency(size1, size2)

    def check_anchor(self, note: str, key: VerifierKey | None = None) -> dict[str, Any]:
        """Prove the log still extends the anchored checkpoint ``note``; raise naming how not.

        Call it after :meth:`verify` has checked the events, the stored tree and
        the head: the proof is built from them. ``key`` pins the verifier key
        (default: the log's recorded key).
        """
        return self._trust.check_anchor(note, key)

    def export(
        self,
        out: str | os.PathLike[str],
        *,
        size: int | None = None,
        prove: Sequence[int] = (),
        passphrase: bytes | None = None,
        force: bool = False,
    ) -> Path:
        """Write an evidence bundle of the first ``size`` events (default: all) to ``out``.

        ``out`` must be new (or an empty folder; ``force`` replaces an existing
        ``.zip`` file), not a link, and not one of the log's own files.
        """
        return self._trust.export(out, size=size, prove=prove, passphrase=passphrase, force=force)

    def register_key(
        self,
        public_key: PublicKeyFile | str | os.PathLike[str],
        *,
        signer: str | None = None,
        name: str | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Register a person's signing key (a ``.pub`` file), if policy lets ``actor`` do it."""
        return self._trust.register_key(
            public_key, signer=signer, name=name, reason=reason, actor=actor
        )

    def revoke_key(
        self,
        key: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Revoke a registered key (by fingerprint or ``.pub`` file), if policy allows."""
        return self._trust.revoke_key(key, reason=reason, actor=actor)

    def signatures(self, model: str | None = None) -> list[SignatureEntry]:
        """Return the signature manifest: every signed decision (of ``model``), oldest first."""
        return self._trust.signatures(model)

    def verify_signatures(self) -> int:
        """Check every e-signature against the key registered for its signer at that time.

        Returns how many signed decisions were checked; raises VerificationError
        naming the first event whose signature fails.
        """
        return self._trust.verify_signatures()

    def approve(
        self,
        model: str,
        version: str,
        *,
        reason: str | None = None,
        environments: Sequence[str] = (),
        artifact_sha256: str | None = None,
        actor: Actor | str | None = None,
        signer: Signer | None = None,
        meaning: str = "approval",
        name: str | None = None,
    ) -> Receipt:
        """Approve a version (for ``environments``, or any when empty), if policy allows.

        With ``signer`` (a person's registered key) the approval carries their
        electronic signature over its statement, with ``meaning`` and the
        printed ``name`` (default: the name registered with the key).
        """
        return self._lifecycle.approve(
            model,
            version,
            reason=reason,
            environments=environments,
            artifact_sha256=artifact_sha256,
            actor=actor,
            signer=signer,
            meaning=meaning,
            name=name,
        )

    def reject(
        self,
        model: str,
        version: str,
        *,
        reason: str | None = None,
        artifact_sha256: str | None = None,
        actor: Actor | str | None = None,
        signer: Signer | None = None,
        meaning: str = "review",
        name: str | None = None,
    ) -> Receipt:
        """Reject a version, if policy allows; it can then never be deployed.

        ``signer``, ``meaning`` and ``name`` sign it as :meth:`approve` does.
        """
        return self._lifecycle.reject(
            model,
            version,
            reason=reason,
            artifact_sha256=artifact_sha256,
            actor=actor,
            signer=signer,
            meaning=meaning,
            name=name,
        )

    def deploy(
        self,
        model: str,
        version: str,
        environment: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
        traffic: str | int | None = None,
        shadow: bool = False,
    ) -> Receipt:
        """Deploy a version to an environment, if policy allows; records what it replaced.

        ``traffic`` (e.g. ``"10%"``) starts it as a canary beside the version that
        runs there; ``shadow=True`` has it serve copies of traffic whose answers
        are not used. :meth:`promote` widens a rollout, :meth:`rollback` ends it.
        """
        return self._lifecycle.deploy(
            model, version, environment, reason=reason, actor=actor, traffic=traffic, shadow=shadow
        )

    def promote(
        self,
        model: str,
        version: str,
        environment: str,
        *,
        traffic: str | int | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Widen a rollout's share of traffic; without ``traffic`` the version takes it all.

        Taking all the traffic makes it the stable version there; policy
        ``[rollout]`` may require a number of verified canary requests and a
        time first. A refusal records a ``policy.denied`` event and raises.
        """
        return self._lifecycle.promote(
            model, version, environment, traffic=traffic, reason=reason, actor=actor
        )

    def monitor(
        self,
        model: str,
        environment: str,
        *,
        window: str | None = None,
        act: bool = False,
        now: datetime | None = None,
    ) -> MonitorResult:
        """Check the rollout in ``environment`` against policy ``[monitor.ENV]`` triggers.

        Records a ``monitor.check`` (window, counts, statistics, verdict); with
        ``act``, a tripped check rolls back as the monitor's identity, the
        rollback naming the check. Too few records: ``undecided``, never acted on.
        """
        return self._lifecycle.monitor(model, environment, window=window, act=act, now=now)

    def splits(self, model: str, environment: str | None = None) -> list[SplitChange]:
        """Return every change of the model's traffic split, oldest first, with the split after."""
        return self._lifecycle.splits(model, environment)

    def rollback(
        self,
        model: str,
        environment: str,
        *,
        to: str | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Roll an environment back to ``to``, or to the previous version that ran there."""
        return self._lifecycle.rollback(model, environment, to=to, reason=reason, actor=actor)

    def retire(
        self,
        model: str,
        version: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Retire a version for good, if policy allows and it runs nowhere."""
        return self._lifecycle.retire(model, version, reason=reason, actor=actor)

    def evaluate(
        self,
        model: str,
        version: str,
        *,
        metrics: dict[str, float] | None = None,
        dataset: DatasetRef | str | os.PathLike[str] | None = None,
        slices: dict[str, dict[str, float]] | None = None,
        artifacts: Mapping[str, ArtifactRef | str | os.PathLike[str]] | None = None,
        notes: str | None = None,
        actor: Actor | str | None = None,
        examples: str | os.PathLike[str] | None = None,
        baseline: str | None = None,
        compare: Sequence[str] | None = None,
        confidence: float | str | Sequence[float | str] = 95,
        seed: int = 0,
        resamples: int = 2000,
    ) -> Receipt:
        """Record an evaluation of a trained version; files named are hashed first.

        To compare the version with the one it would replace, give ``examples``,
        a CSV or JSON Lines file with each example's ``id``, ``label`` and both
        versions' outputs (``score``/``baseline_score`` for AUC,
        ``prediction``/``baseline_prediction`` for accuracy), and ``baseline``,
        that version. Each metric of ``compare`` (default: all the file holds)
        is then compared by a paired test (a bootstrap interval of the
        difference at each ``confidence`` level, in percent, drawn with
        ``resamples`` and ``seed``; McNemar's exact test for accuracy) and the
        result, with the file's SHA-256, is recorded in the event, where gates
        such as ``"auc_delta >= 0 at 95%"`` read it. Needs ``auditml[stats]``.
        """
        return self._lifecycle.evaluate(
            model,
            version,
            metrics=metrics,
            dataset=dataset,
            slices=slices,
            artifacts=artifacts,
            notes=notes,
            actor=actor,
            examples=examples,
            baseline=baseline,
            compare=compare,
            confidence=confidence,
            seed=seed,
            resamples=resamples,
        )

    def open_incident(
        self,
        model: str,
        version: str,
        summary: str,
        *,
        severity: str = "medium",
        impact: str | None = None,
        environment: str | None = None,
        aware_at: str | datetime | None = None,
        reference: str | None = None,
        id: str | None = None,
        actor: Actor | str | None = None,
    ) -> Incident:
        """Open an incident against a version and return it, with its id and any deadline.

        ``aware_at`` is when you became aware of it (default: now): EU AI Act
        Art. 73 deadlines for a ``serious`` incident count from then.
        """
        return self._lifecycle.open_incident(
            model,
            version,
            summary,
            severity=severity,
            impact=impact,
            environment=environment,
            aware_at=aware_at,
            reference=reference,
            id=id,
            actor=actor,
        )

    def close_incident(
        self,
        id: str,
        resolution: str,
        *,
        reported_at: str | datetime | None = None,
        reference: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Close an open incident: how it was resolved, and when authorities were told."""
        return self._lifecycle.close_incident(
            id, resolution, reported_at=reported_at, reference=reference, actor=actor
        )

    def update_card(
        self,
        model: str,
        sections: Mapping[str, Any] | str | os.PathLike[str],
        *,
        version: str | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Record the human-written sections of a model card (a mapping, or a YAML/JSON file).

        With ``version`` they apply to that version's card; without, to every
        version of the model. A later update replaces the sections it names.
        """
        return self._lifecycle.update_card(
            model, sections, version=version, reason=reason, actor=actor
        )

    def incidents(self, model: str | None = None) -> list[Incident]:
        """Return every incident (of ``model``), oldest first, with its Art. 73 deadline."""
        return self._lifecycle.incidents(model)

    def record_training(
        self,
        model: str,
        *,
        version: str | None = None,
        data: TrainData | dict[str, Any] | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Record a training run done elsewhere; the receipt names the version it got."""
        return self._lifecycle.record_training(model, version=version, data=data, actor=actor)

    def training_run(
        self,
        model: str,
        *,
        version: str | None = None,
        actor: Actor | str | None = None,
        params: Mapping[str, Any] | None = None,
        datasets: Sources | None = None,
        artifacts: Sources | None = None,
        tags: Mapping[str, str] | None = None,
        parent_version: str | None = None,
        base_model: str | None = None,
    ) -> AbstractContextManager[TrainingRun]:
        """Record the code inside ``with log.training_run(model=...) as run:`` as one run."""
        from auditml._internal.fingerprint import start_capture
        from auditml.training import TrainingRun, run_context

        run = TrainingRun(
            self,
            model,
            version=version,
            actor=actor,
            params=params,
            datasets=datasets,
            artifacts=artifacts,
            tags=tags,
            parent_version=parent_version,
            base_model=base_model,
            provenance=start_capture(None),
        )
        return run_context(run)

    def apply_policy(
        self,
        policy: Policy | str | Path,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
        allow_stranded: bool = False,
    ) -> Receipt:
        """Record a policy (a Policy or a TOML file); it is in force from this event on.

        A policy whose ``environments`` leave out one where a version runs is
        refused (nothing could roll it back there) unless ``allow_stranded``;
        the event then lists the environments it strands.
        """
        return self._lifecycle.apply_policy(
            policy, reason=reason, actor=actor, allow_stranded=allow_stranded
        )

    def review_policy(
        self,
        policy: Policy | str | Path,
        *,
        actor: Actor | str | None = None,
        allow_stranded: bool = False,
    ) -> PolicyReview:
        """Return what applying ``policy`` would change and warn of, recording nothing.

        The review lists each setting added, removed or changed against the
        policy in force, and warns of gates on metrics the log never recorded.
        It raises what :meth:`apply_policy` would raise (a denial with ``seq`` None).
        """
        return self._lifecycle.review_policy(policy, actor=actor, allow_stranded=allow_stranded)

    def policy(self) -> tuple[Policy, int | None]:
        """Return the policy in force and the seq of the event that recorded it (None: default).

        The policy in force is the newest live ``policy.update``; imported ones never are.
        """
        return self._lifecycle.policy()

    def status(self, model: str | None = None) -> dict[str, ModelState]:
        """Return each model's state (or only ``model``'s), derived from the log alone."""
        return self._lifecycle.status(model)

    def history(self, model: str, environment: str | None = None) -> list[Move]:
        """Return the model's deploys and rollbacks, oldest first, optionally of one environment."""
        return self._lifecycle.history(model, environment)

    # -- an outside registry (MLflow) ------------------------------------------

    def registry_known(self, uri: str | None = None) -> Snapshot:
        """Return what the log says an outside registry showed (its ``registry.change`` events).

        ``uri`` may be any spelling of the registry's URI (see
        :func:`auditml.core.uri.registry_identity`); None: every registry together.
        """
        return self._registry.known(uri)

    def record_registry(
        self,
        now: Snapshot,
        *,
        via: str,
        uri: str,
        actor: Actor | str | None = None,
        models: Sequence[str] | None = None,
        runs: Mapping[tuple[str, str], ImportedRun] | None = None,
    ) -> Recorded:
        """Record what changed in an outside registry since the log last saw it (see registry).

        ``via`` ``import`` records it as imported history; ``poll`` or ``webhook``
        records each change live, with the policy rules it broke. ``uri`` is
        recorded as the registry's identity, one for every spelling of it. A
        version numbered like an auditml training that does not name the run
        it came from is refused (InvalidInputError), and nothing is recorded.
        """
        return self._registry.record(
            now, via=via, uri=uri, actor=resolve_actor(actor), models=models, runs=runs
        )

    def record_registry_sync(
        self,
        *,
        model: str,
        version: str,
        environment: str,
        alias: str,
        decision_seq: int,
        uri: str,
        previous: str | None = None,
        error: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Record that auditml moved (or, with ``error``, failed to move) an outside alias."""
        return self._registry.record_sync(
            model=model,
            version=version,
            environment=environment,
            alias=alias,
            decision_seq=decision_seq,
            uri=uri,
            previous=previous,
            error=error,
            actor=resolve_actor(actor),
        )

    def registry_violations(self, model: str | None = None) -> list[ViolationEntry]:
        """Return the changes made in an outside registry that policy would have refused."""
        return self._registry.violations(model)


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
