"""SQLModel tables of the store.

``auditml_event`` holds the exact canonical bytes of each event (``body``) and
a few columns copied out of them for filtering. ``auditml_log`` is the head:
one row per log that every append locks and moves forward. ``auditml_node``
keeps the hashes of perfect Merkle subtrees of 2**8 leaves and more, so that a
root or proof at any size reads O(log n) rows, never every leaf.
``auditml_checkpoint`` keeps every signed checkpoint (one per size, so the log
never signs two roots for one size) and ``auditml_logkey`` the log's verifier
key. All but the head are append-only.

``auditml_record`` holds runtime records (docs/format.md section 6): the exact
canonical bytes of each, stored with the ``runtime.segment`` event whose Merkle
root covers them, and columns copied out for tracing and statistics.
``auditml_value`` keeps the values records commit to without holding them
(subjects, features, payloads) with their salts, off the log: the one table
rows may leave, when a value is erased. A subject's values and salts are
sealed (AES-GCM) under the subject's own key in ``auditml_subject``;
``auditml_subject_value`` finds a subject's values, and ``auditml_erased``
keeps which commitments each erasure removed. Erasure deletes the key, the
values and the lookup in one transaction. ``auditml_actor`` is the actor
directory: the person behind each pseudonymous actor id, off the log, until
``auditml erase --actor`` leaves only the pseudonym.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Column, Index, LargeBinary, Table, Text
from sqlmodel import BigInteger, Field, SQLModel

from auditml.store._backends import SCHEMA_VERSION  # defined there: reads need no SQLModel

__all__ = [
    "ACTORS",
    "CHECKPOINTS",
    "ERASED",
    "EVENTS",
    "LOGKEYS",
    "LOGS",
    "META",
    "NODES",
    "RECORDS",
    "REMOVED",
    "SCHEMA_VERSION",
    "SUBJECTS",
    "SUBJECT_VALUES",
    "VALUES",
    "ActorRow",
    "CheckpointRow",
    "ErasedRow",
    "EventRow",
    "LogKeyRow",
    "LogRow",
    "MetaRow",
    "NodeRow",
    "RecordRow",
    "RemovedRow",
    "SubjectKeyRow",
    "SubjectValueRow",
    "ValueRow",
]


class MetaRow(SQLModel, table=True):
    """Key-value facts about the store itself, e.g. its schema version."""

    __tablename__ = "auditml_meta"

    key: str = Field(primary_key=True)
    value: str


class LogRow(SQLModel, table=True):
    """The head of a log: its origin and the state after its last event."""

    __tablename__ = "auditml_log"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    origin: str = Field(unique=True)
    created_at: str
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    head_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    head_time: str
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    frontier: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class EventRow(SQLModel, table=True):
    """One event: its canonical bytes, its hash, and columns copied out for queries."""

    __tablename__ = "auditml_event"
    __table_args__ = (
        # No unique (log, prev) index: every row would land at a random place in it,
        # which made batched appends 4x slower on a large log (issue 20). The primary
        # key (log, seq) and the compare-and-set on the head row in every append keep
        # the chain from forking; verify catches a fork written by hand.
        # Times grow with seq, so a time window is found by bisecting the primary
        # key. The model index serves a model's history; the action index finds
        # the policy in force without a scan. Both grow at their ends, so appends
        # stay cheap.
        Index("auditml_event_model", "log_id", "model", "seq"),
        Index("auditml_event_action", "log_id", "action", "seq"),
        # A model's events of some actions (its lifecycle, its incidents) without
        # reading its runtime.segment events, one per thousand requests it served.
        Index("auditml_event_model_action", "log_id", "model", "action", "seq"),
    )

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    seq: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    prev: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    time: str
    action: str
    model: str | None = None
    version: str | None = None
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class NodeRow(SQLModel, table=True):
    """The hash of the perfect Merkle subtree at (level, index) of a log."""

    __tablename__ = "auditml_node"

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint: the log's size, its root at that size, and the signed note."""

    __tablename__ = "auditml_checkpoint"

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    size: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str


class LogKeyRow(SQLModel, table=True):
    """The verifier key of a log's checkpoint key, in C2SP form."""

    __tablename__ = "auditml_logkey"

    log_id: int = Field(
        primary_key=True, foreign_key="auditml_log.id", sa_column_kwargs={"autoincrement": False}
    )
    vkey: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str


class RecordRow(SQLModel, table=True):
    """One runtime record: its canonical bytes, its place in its segment, columns copied out."""

    __tablename__ = "auditml_record"
    __table_args__ = (
        Index("auditml_record_request", "log_id", "request_id"),
        Index("auditml_record_version", "log_id", "version", "time"),
    )

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    #: The seq of the ``runtime.segment`` event whose root covers this record.
    seg: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    i: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    request_id: str
    time: str
    model: str
    version: str
    env: str
    latency_ms: float
    error: str | None = None
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ValueRow(SQLModel, table=True):
    """A value kept off the log: what a record's commitment opens to, with its salt."""

    __tablename__ = "auditml_value"
    __table_args__ = (
        # The retention plan counts values per (segment, name), retention deletes them
        # so, and verify --deep reads them in segment order: without it each is a full
        # scan of the table's sealed rows (11.5 s for `retention show` at 1M records).
        Index("auditml_value_seg", "log_id", "seg", "name"),
    )

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    commitment: str = Field(primary_key=True)
    seg: int = Field(sa_column=Column(BigInteger, nullable=False))
    i: int = Field(sa_column=Column(BigInteger, nullable=False))
    name: str
    salt: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    value: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SubjectKeyRow(SQLModel, table=True):
    """A data subject's key: the values of its records are sealed under it (issue 18).

    ``sid`` is the subject's handle (an HMAC of its identifier under the store's
    pepper), never the identifier. Erasure deletes the row, and with it every
    way to read the subject's values, wherever a copy of them survives.
    """

    __tablename__ = "auditml_subject"

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    sid: str = Field(primary_key=True)
    key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SubjectValueRow(SQLModel, table=True):
    """The lookup from a subject to its values (off the log), erased with them."""

    __tablename__ = "auditml_subject_value"
    __table_args__ = (Index("auditml_subject_value_sid", "log_id", "sid"),)

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    commitment: str = Field(primary_key=True)
    sid: str


class ErasedRow(SQLModel, table=True):
    """A commitment whose value an erasure removed, and the ``privacy.erasure`` event that did.

    ``verify --deep`` holds these rows against the digest each erasure event
    records, so a value deleted by hand cannot pass for an erased one.
    """

    __tablename__ = "auditml_erased"

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    commitment: str = Field(primary_key=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


class ActorRow(SQLModel, table=True):
    """The actor directory: who acts under a pseudonym (``[personal_data] pseudonymous_actors``).

    ``person`` is the folded id used to find a person's pseudonym (case and
    spaces ignored, as separation of duties counts people), ``known_as`` the id
    as given and ``name`` the printed name; ``salt`` (hex) opens the commitment of
    the pseudonym's ``actor.enroll`` event with ``known_as``. An actor erasure
    leaves the row with only its pseudonym and the seq of its ``privacy.erasure``
    event.
    """

    __tablename__ = "auditml_actor"
    __table_args__ = (Index("auditml_actor_person", "log_id", "person", unique=True),)

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    pseudonym: str = Field(primary_key=True)
    person: str | None = None
    known_as: str | None = None
    name: str | None = None
    salt: str | None = None
    created_at: str
    erased: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class RemovedRow(SQLModel, table=True):
    """A segment whose records a retention run removed, and the ``retention.applied`` event.

    The append-only trigger of ``auditml_record`` lets a record be deleted only
    when its segment is listed here, which only a retention run does, in the
    transaction that appends its event; ``verify`` reads the events, not this table.
    """

    __tablename__ = "auditml_removed"

    log_id: int = Field(primary_key=True, foreign_key="auditml_log.id")
    seg: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))


META = cast(Table, MetaRow.__table__)  # type: ignore[attr-defined]
LOGS = cast(Table, LogRow.__table__)  # type: ignore[attr-defined]
EVENTS = cast(Table, EventRow.__table__)  # type: ignore[attr-defined]
NODES = cast(Table, NodeRow.__table__)  # type: ignore[attr-defined]
CHECKPOINTS = cast(Table, CheckpointRow.__table__)  # type: ignore[attr-defined]
LOGKEYS = cast(Table, LogKeyRow.__table__)  # type: ignore[attr-defined]
RECORDS = cast(Table, RecordRow.__table__)  # type: ignore[attr-defined]
VALUES = cast(Table, ValueRow.__table__)  # type: ignore[attr-defined]
SUBJECTS = cast(Table, SubjectKeyRow.__table__)  # type: ignore[attr-defined]
SUBJECT_VALUES = cast(Table, SubjectValueRow.__table__)  # type: ignore[attr-defined]
ERASED = cast(Table, ErasedRow.__table__)  # type: ignore[attr-defined]
REMOVED = cast(Table, RemovedRow.__table__)  # type: ignore[attr-defined]
ACTORS = cast(Table, ActorRow.__table__)  # type: ignore[attr-defined]
