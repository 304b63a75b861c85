"""Event models: the envelope of docs/format.md section 1 and one data model per action.

An event is built in two halves. The caller supplies a :class:`Draft` (action,
actor, subject, data), validated here before anything touches a database. The
ledger adds ``v``, ``log``, ``seq``, ``prev`` and ``time`` inside the append
transaction. :class:`Event` is the complete envelope, as read back.
"""

# Annotations here are objects, not strings (no ``from __future__ import annotations``):
# pydantic would compile and evaluate each model field's annotation text as the model is
# made, a cost every command pays at import (issue 20).

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from auditml.errors import InvalidInputError, UnknownActionError

__all__ = [
    "ACTIONS",
    "DECISION_ACTIONS",
    "FORMAT_VERSION",
    "GOVERNED",
    "IMPACTS",
    "IMPORTED_NOTE",
    "INCIDENT_ACTIONS",
    "KEY_ACTIONS",
    "LIFECYCLE_ACTIONS",
    "PRIVACY_ACTIONS",
    "REGISTRY",
    "REGISTRY_ACTIONS",
    "SIGNED_ACTIONS",
    "ActionRule",
    "Actor",
    "ApproveData",
    "ArtifactRef",
    "CanaryEvidence",
    "CardUpdateData",
    "CodeVersion",
    "Comparison",
    "ComparisonInterval",
    "DataModel",
    "DatasetRef",
    "DeniedData",
    "DeployData",
    "DiscordantPairs",
    "Draft",
    "DroppedData",
    "DroppedMetric",
    "ESignature",
    "EnrollData",
    "Environment",
    "ErasureData",
    "EvaluateData",
    "Event",
    "EventRef",
    "FailureInfo",
    "ImportedFrom",
    "IncidentCloseData",
    "IncidentOpenData",
    "KeyRegisterData",
    "KeyRevokeData",
    "LogInitData",
    "MonitorCheckData",
    "MonitorWindow",
    "PolicyUpdateData",
    "PromoteData",
    "RegistryChangeData",
    "RegistrySyncData",
    "RegistryViolation",
    "RejectData",
    "RetentionData",
    "RetireData",
    "RollbackData",
    "RolloutStartData",
    "SegmentData",
    "TrainData",
    "TriggerResult",
    "actions_where",
    "data_model",
    "imported_mark",
    "imported_source",
    "is_imported",
    "validate_data",
]

FORMAT_VERSION = 1
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Rfc3339 = Annotated[str, StringConstraints(pattern=TIME_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Number = int | float
Metrics = dict[Name, Number]


class _Frozen(BaseModel):
    """Base of every value object: immutable, strict about unknown keys, no NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)


class Actor(_Frozen):
    """Who did it: an id, and optionally a printed name and where the identity came from."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False, defer_build=True)

    id: Name
    name: str | None = None
    source: Literal["api", "flag", "env", "git", "os"] | None = None
    #: The id the person gave (e.g. an e-mail) when ``id`` is the pseudonym auditml chose
    #: for them. Never written to the log: role and separation-of-duties checks read it
    #: beside ``id``, and the off-log actor directory keeps it.
    known_as: SkipJsonSchema[str | None] = Field(default=None, exclude=True)

    def ids(self) -> tuple[str, ...]:
        """Return every id this actor answers to: the id on the log, then the one given."""
        return (self.id,) if self.known_as is None else (self.id, self.known_as)


class ImportedFrom(_Frozen):
    """Where an imported event came from: the mark ``data.imported`` of history recorded elsewhere.

    An event that carries it was appended with ``imported=...`` (a migration from
    another registry): it is the source's word, not a decision auditml checked.
    It is shown as imported everywhere, and it never satisfies a rule a live
    decision must meet (see :mod:`auditml.lifecycle`). ``time`` is when the
    source says it happened (the log's own ``time`` is when it was imported);
    ``id`` and ``uri`` name the record in the source (e.g. an MLflow run id and
    its ``runs:/`` URI); ``details`` holds anything else the importer keeps,
    such as the source's own timestamps.
    """

    source: Name
    id: str | None = None
    uri: str | None = None
    time: Rfc3339 | None = None
    details: dict[str, JsonValue] | None = None


def imported_mark(imported: ImportedFrom | Mapping[str, Any] | bool) -> dict[str, Any]:
    """Return the JSON of ``data.imported`` for ``imported=``: True, a mapping or an ImportedFrom.

    ``True`` says only that the event was imported (source ``unspecified``);
    a mapping gives its provenance, e.g. ``{"source": "mlflow", "id": run_id}``.
    """
    if imported is True:
        imported = {"source": "unspecified"}
    elif imported is False:
        raise InvalidInputError("imported=False marks nothing: leave the mark out")
    if not isinstance(imported, ImportedFrom | Mapping):
        raise InvalidInputError(
            "imported must be True or a mapping of provenance such as "
            f"{{'source': 'mlflow', 'id': '…'}}, not {type(imported).__name__}"
        )
    try:
        mark = ImportedFrom.model_validate(
            imported.model_dump() if isinstance(imported, ImportedFrom) else dict(imported)
        )
    except ValidationError as exc:
        raise InvalidInputError(f"invalid imported provenance: {_first_error(exc)}") from None
    return mark.model_dump(mode="json", exclude_none=True)


def is_imported(data: Mapping[str, Any]) -> bool:
    """Return whether an event's ``data`` carries the imported mark."""
    return data.get("imported") is not None


def imported_source(data: Mapping[str, Any]) -> str | None:
    """Return what outputs print for an imported event (``imported from SOURCE``), else None."""
    if not is_imported(data):
        return None
    mark = data["imported"]
    source = mark.get("source") if isinstance(mark, Mapping) else None
    if isinstance(source, str) and source != "unspecified":
        return f"imported from {source}"
    return "imported"


#: The note every output prints beside imported history.
IMPORTED_NOTE = (
    "imported history was recorded elsewhere and is shown as its source gave it: it is the "
    "source's word, not evidence auditml checked, and no live decision counts it"
)


class DataModel(_Frozen):
    """Base of every action's ``data`` model.

    Every action's data may carry ``imported`` (:class:`ImportedFrom`), which
    only ``AuditLog.append(..., imported=...)`` and ``append_many`` set.
    """

    action: ClassVar[str] = ""

    imported: ImportedFrom | None = None


class CodeVersion(_Frozen):
    """The code a run used: git commit, branch, dirty flag and a hash of uncommitted changes."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff_sha256: Hex64 | None = None
    repository: str | None = None


class Environment(_Frozen):
    """The software and hardware a run used."""

    python: str | None = None
    platform: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    accelerators: list[str] = Field(default_factory=list)


def _without_credentials(values: Any, what: str) -> Any:
    """Strip credentials from a reference's ``uri``, warn, and list what went in ``redacted``."""
    if not isinstance(values, dict) or not isinstance(values.get("uri"), str):
        return values
    from auditml.core.uri import scrub_uri

    clean, removed = scrub_uri(values["uri"])
    if not removed:
        return values
    warnings.warn(
        f"auditml removed credentials ({', '.join(removed)}) from the {what} URI {clean!r} "
        "before recording it: the log is append-only, so a secret written there stays "
        "for ever; pass credentials through the environment instead",
        stacklevel=2,
    )
    before = values.get("redacted")
    kept = [str(item) for item in before] if isinstance(before, list) else []
    return {**values, "uri": clean, "redacted": kept + [r for r in removed if r not in kept]}


class DatasetRef(_Frozen):
    """A dataset: a hashed file or folder, or a URI recorded as given (without credentials).

    ``redacted`` says which credentials were stripped from the URI before it
    was recorded (``userinfo``, ``query:token``), never their values.
    """

    uri: str
    kind: Literal["file", "folder", "uri"] = "uri"
    sha256: Hex64 | None = None
    size: int | None = Field(default=None, ge=0)
    files: int | None = Field(default=None, ge=0)
    split: str | None = None
    redacted: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scrub(cls, values: Any) -> Any:
        return _without_credentials(values, "dataset")


class ArtifactRef(_Frozen):
    """An output file or URI (without credentials, as for datasets) and its SHA-256."""

    uri: str
    sha256: Hex64 | None = None
    size: int | None = Field(default=None, ge=0)
    redacted: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _scrub(cls, values: Any) -> Any:
        return _without_credentials(values, "artifact")


class FailureInfo(_Frozen):
    """Why a run failed: the exception type and message."""

    type: str
    message: str


class DroppedMetric(_Frozen):
    """A metric the log could not hold as a number: its name, why, and its type and hash."""

    name: Name
    reason: str
    type: str
    sha256: Hex64 | None = None


class TrainData(DataModel):
    """``model.train``: what was trained, on which data, code and environment, and what came out.

    ``dropped_metrics`` names the metrics given that are not finite numbers JSON
    holds exactly (NaN, text, integers beyond 2**53 - 1), so that none is lost silently.
    """

    action: ClassVar[str] = "model.train"

    status: Literal["succeeded", "failed"] = "succeeded"
    started_at: Rfc3339 | None = None
    ended_at: Rfc3339 | None = None
    duration_s: float | None = Field(default=None, ge=0)
    code: CodeVersion | None = None
    environment: Environment | None = None
    params: dict[str, JsonValue] = Field(default_factory=dict)
    datasets: dict[Name, DatasetRef] = Field(default_factory=dict)
    artifacts: dict[Name, ArtifactRef] = Field(default_factory=dict)
    metrics: Metrics = Field(default_factory=dict)
    dropped_metrics: list[DroppedMetric] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    parent_version: str | None = None
    base_model: str | None = None
    error: FailureInfo | None = None


class ComparisonInterval(_Frozen):
    """A confidence interval of a comparison's delta, at a level given in percent (e.g. 95)."""

    level: float = Field(gt=0, lt=100)
    low: float
    high: float


class DiscordantPairs(_Frozen):
    """McNemar's counts: examples only the baseline got right, and only the version got right."""

    baseline_only: int = Field(ge=0)
    version_only: int = Field(ge=0)


class Comparison(_Frozen):
    """A paired comparison of the evaluated version with a baseline version on the same examples.

    ``delta`` is the version's metric minus the baseline's, both computed on the
    ``n`` examples of the evaluation's ``examples`` file. ``intervals`` hold the
    delta's confidence intervals by ``interval_method`` (with ``resamples`` and
    ``seed``, so re-running gives the same bounds with the same ``library``);
    ``p_value`` is two-sided, for no difference, by ``test``.
    """

    metric: Name
    baseline: Name
    n: int = Field(ge=1)
    value: float
    baseline_value: float
    delta: float
    intervals: list[ComparisonInterval] = Field(min_length=1)
    interval_method: Name
    resamples: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0, le=2**53 - 1)
    p_value: float = Field(ge=0, le=1)
    test: Name
    discordant: DiscordantPairs | None = None
    library: str | None = None

    def interval(self, level: float) -> ComparisonInterval | None:
        """Return the interval recorded at ``level`` percent, or None when none was."""
        for found in self.intervals:
            if abs(found.level - level) < 1e-9:
                return found
        return None


class EvaluateData(DataModel):
    """``model.evaluate``: an evaluation of one version on one dataset.

    ``examples`` is the per-example file (labels and both versions' predictions)
    that ``comparisons`` were computed from, with its SHA-256.
    """

    action: ClassVar[str] = "model.evaluate"

    dataset: DatasetRef | None = None
    metrics: Metrics = Field(default_factory=dict)
    slices: dict[Name, Metrics] = Field(default_factory=dict)
    artifacts: dict[Name, ArtifactRef] = Field(default_factory=dict)
    notes: str | None = None
    examples: ArtifactRef | None = None
    comparisons: list[Comparison] = Field(default_factory=list)


class _Decision(DataModel):
    """Fields every decision records: why, in which role, under which recorded policy."""

    reason: str | None = None
    role: str | None = None
    policy_seq: int | None = Field(default=None, ge=0)


Meaning = Literal["review", "approval", "responsibility", "authorship"]


class ESignature(_Frozen):
    """A person's electronic signature (21 CFR Part 11) over the statement of a decision.

    ``sig`` is the base64 Ed25519 signature over the JCS bytes of the
    statement that auditml builds (``esig_statement``) from the log
    origin, the action, the subject, the artifact digest and these fields, so
    it cannot be moved to any other record. ``key`` is the SHA-256 (hex) of the
    signer's raw public key, as registered with ``key.register``.
    """

    meaning: Meaning
    signer: Name
    name: Name
    key: Hex64
    time: Rfc3339
    nonce: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    sig: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]


class ApproveData(_Decision):
    """``model.approve``: a validator approves a version, optionally for named environments."""

    action: ClassVar[str] = "model.approve"

    environments: list[Name] = Field(default_factory=list)
    artifact_sha256: Hex64 | None = None
    signature: ESignature | None = None


class RejectData(_Decision):
    """``model.reject``: a validator rejects a version."""

    action: ClassVar[str] = "model.reject"

    artifact_sha256: Hex64 | None = None
    signature: ESignature | None = None


class CanaryEvidence(_Frozen):
    """What a canary did before a promotion: its verified runtime records since it started.

    ``requests`` and ``errors`` count the canary version's records in the
    environment from ``since`` (the rollout's start) to ``until`` (the decision),
    read from records that hash to their segments' roots on the log;
    ``duration_s`` is how long the rollout had run.
    """

    requests: int = Field(ge=0, le=2**53 - 1)
    errors: int = Field(ge=0, le=2**53 - 1)
    since: Rfc3339
    until: Rfc3339
    duration_s: float = Field(ge=0)
    stable_requests: int | None = Field(default=None, ge=0, le=2**53 - 1)
    stable_errors: int | None = Field(default=None, ge=0, le=2**53 - 1)


class DeployData(_Decision):
    """``model.deploy``: a version goes to an environment, replacing what ran there.

    A deploy that ends a rollout (the canary promoted to all traffic) names the
    ``rollout.start`` event in ``rollout`` and the canary's ``evidence``.
    """

    action: ClassVar[str] = "model.deploy"

    environment: Name
    replaces: str | None = None
    rollout: int | None = Field(default=None, ge=0)
    evidence: CanaryEvidence | None = None


class EventRef(_Frozen):
    """An event named by its position and its hash (format section 2), e.g. a monitor check."""

    seq: int = Field(ge=0, le=2**53 - 1)
    hash: Hex64


class RollbackData(_Decision):
    """``model.rollback``: an environment goes back to a version that ran there before.

    A rollback that ends a rollout names its ``rollout.start`` event in
    ``rollout`` (the split goes back to the stable version alone); one a monitor
    made names the ``monitor.check`` that caused it in ``cause``.
    """

    action: ClassVar[str] = "model.rollback"

    environment: Name
    replaces: str | None = None
    rollout: int | None = Field(default=None, ge=0)
    cause: EventRef | None = None


Percent = Annotated[int, Field(ge=1, le=99)]


class RolloutStartData(_Decision):
    """``rollout.start``: a version starts beside the stable one, as a canary or a shadow.

    A ``canary`` serves ``traffic`` percent of requests; a ``shadow`` serves
    copies of requests whose answers are not used (no ``traffic``). ``stable``
    is the version that runs the environment and keeps the rest.
    """

    action: ClassVar[str] = "rollout.start"

    environment: Name
    mode: Literal["canary", "shadow"]
    traffic: Percent | None = None
    stable: Name

    @model_validator(mode="after")
    def _traffic_fits_mode(self) -> "RolloutStartData":
        if self.mode == "canary" and self.traffic is None:
            raise ValueError("a canary needs its share of traffic, 1 to 99 percent")
        if self.mode == "shadow" and self.traffic is not None:
            raise ValueError("a shadow serves copies of traffic: give it no share")
        return self


class PromoteData(_Decision):
    """``rollout.promote``: a rollout's version gets a wider share of traffic, short of all.

    ``previous`` is its share before (0: it was a shadow), ``rollout`` the
    ``rollout.start`` event; promotion to all traffic is a ``model.deploy``.
    """

    action: ClassVar[str] = "rollout.promote"

    environment: Name
    traffic: Percent
    previous: int = Field(ge=0, le=99)
    rollout: int = Field(ge=0)
    evidence: CanaryEvidence | None = None


class TriggerResult(_Frozen):
    """One trigger of a monitor check: its text, the statistic's value, and whether it tripped.

    ``tripped`` is None when the value could not be computed (too few records).
    """

    trigger: Name
    statistic: Name
    value: float | None = None
    tripped: bool | None = None


class MonitorWindow(_Frozen):
    """The window of runtime records a monitor check read: ``since`` inclusive, ``until`` not."""

    since: Rfc3339
    until: Rfc3339
    seconds: float = Field(gt=0)


class MonitorCheckData(DataModel):
    """``monitor.check``: a rollout's canary compared with the stable version over a window.

    ``counts`` holds the verified runtime records of each in the window,
    ``statistics`` the figures the triggers read (canary ``error_rate``, its
    ``latency_p95_ms``, ``score_psi`` of an output field against the stable
    version, and the stable version's own), and ``verdict`` says ``tripped``
    (a trigger fired), ``ok`` or ``undecided`` (too few records to judge:
    a monitor never acts on it).
    """

    action: ClassVar[str] = "monitor.check"

    environment: Name
    canary: Name
    stable: Name
    mode: Literal["canary", "shadow"] = "canary"
    rollout: int = Field(ge=0)
    window: MonitorWindow
    min_requests: int = Field(ge=0, le=2**53 - 1)
    counts: dict[Name, Annotated[int, Field(ge=0, le=2**53 - 1)]]
    statistics: dict[Name, float | None] = Field(default_factory=dict)
    triggers: list[TriggerResult] = Field(default_factory=list)
    verdict: Literal["tripped", "ok", "undecided"]
    policy_seq: int | None = Field(default=None, ge=0)


class RetireData(_Decision):
    """``model.retire``: a version is withdrawn for good."""

    action: ClassVar[str] = "model.retire"


IncidentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]


#: The kinds of harm Art. 3(49) names; the first two shorten the Art. 73 deadline.
Impact = Literal[
    "death",
    "critical-infrastructure",
    "widespread-infringement",
    "health",
    "fundamental-rights",
    "property-or-environment",
]
IMPACTS: tuple[str, ...] = get_args(Impact)


class IncidentOpenData(DataModel):
    """``incident.open``: something went wrong with a version, e.g. in production.

    ``severity`` ``serious`` marks a serious incident in the sense of EU AI
    Act Art. 3(49), which must be reported under Art. 73 counting from
    ``aware_at``; ``impact`` says which harm it caused (death and widespread or
    critical-infrastructure harm shorten the deadline).
    """

    action: ClassVar[str] = "incident.open"

    id: IncidentId
    summary: Annotated[str, StringConstraints(min_length=1)]
    severity: Literal["low", "medium", "high", "serious"] = "medium"
    impact: Impact | None = None
    aware_at: Rfc3339
    environment: Name | None = None
    reference: str | None = None


class IncidentCloseData(DataModel):
    """``incident.close``: an incident is resolved; says how, and when authorities were told."""

    action: ClassVar[str] = "incident.close"

    id: IncidentId
    resolution: Annotated[str, StringConstraints(min_length=1)]
    reported_at: Rfc3339 | None = None
    reference: str | None = None


class DeniedData(DataModel):
    """``policy.denied``: policy refused an attempted action; nothing else changed."""

    action: ClassVar[str] = "policy.denied"

    attempted: Annotated[str, StringConstraints(pattern=ACTION_PATTERN)]
    rule: Name
    message: str
    remedy: str | None = None
    environment: Name | None = None
    policy_seq: int | None = Field(default=None, ge=0)


class KeyRegisterData(DataModel):
    """``key.register``: a person's public key for electronic signatures, from now on."""

    action: ClassVar[str] = "key.register"

    signer: Name
    name: Name
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
    key: Hex64
    reason: str | None = None


class KeyRevokeData(DataModel):
    """``key.revoke``: a registered signing key is no longer valid from this event on."""

    action: ClassVar[str] = "key.revoke"

    signer: Name
    key: Hex64
    reason: str | None = None


class CardUpdateData(DataModel):
    """``card.update``: the human-written sections of a model card, as a person wrote them.

    ``sections`` maps a section name (e.g. ``intended_use``, ``limitations``)
    to its content; a later update replaces the sections it names.
    """

    action: ClassVar[str] = "card.update"

    sections: dict[Name, JsonValue]
    source: str | None = None
    sha256: Hex64 | None = None
    reason: str | None = None


class PolicyUpdateData(DataModel):
    """``policy.update``: the policy in force from this event on."""

    action: ClassVar[str] = "policy.update"

    policy: dict[str, JsonValue]
    source: str | None = None
    sha256: Hex64 | None = None
    reason: str | None = None
    #: Environments where a version ran that this policy leaves undeclared, on purpose
    #: (``allow_stranded``): no decision may name them while it is in force.
    stranded: list[Name] = Field(default_factory=list)


class SegmentData(DataModel):
    """``runtime.segment``: the Merkle root of a segment of runtime records (format section 6).

    The records themselves are stored beside the event, in the same transaction;
    ``dropped`` counts records a recorder had to drop before this segment (a
    full spool), so that nothing is lost silently.
    """

    action: ClassVar[str] = "runtime.segment"

    stream: Name
    count: int = Field(ge=1, le=2**53 - 1)
    root: Hex64
    first_time: Rfc3339
    last_time: Rfc3339
    model: Name
    env: Name
    versions: list[Name] = Field(default_factory=list)
    dropped: int = Field(default=0, ge=0, le=2**53 - 1)


class ErasureData(DataModel):
    """``privacy.erasure``: one data subject's values were erased (GDPR Art. 17) at once.

    It says how many values of which kinds were erased, from how many records,
    under which request, and never who the subject was: neither the subject's
    identifier nor anything derived from it enters the log. ``erased`` is the
    SHA-256 over the sorted commitments erased, each followed by a newline; the
    list itself stays off the log, so ``verify --deep`` can tell an erased
    value from one deleted by hand without the log linking one person's records.

    With ``scope`` ``actor`` it records that an actor's identity (id and printed
    name) left the off-log actor directory: the event's subject is
    ``{"actor": pseudonym}``, ``values`` is 0, and the id erased is never in it.
    """

    action: ClassVar[str] = "privacy.erasure"

    request: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    reason: Annotated[str, StringConstraints(min_length=1)]
    basis: str | None = None
    values: int = Field(ge=0, le=2**53 - 1)
    kinds: dict[Name, Annotated[int, Field(ge=0, le=2**53 - 1)]] = Field(default_factory=dict)
    records: int = Field(default=0, ge=0, le=2**53 - 1)
    erased: Hex64 | None = None
    #: ``subject``: one data subject's off-log values; ``actor``: an actor's off-log identity.
    scope: Literal["subject", "actor"] = "subject"


class EnrollData(DataModel):
    """``actor.enroll``: a pseudonym was drawn for a person, bound to them by a salted commitment.

    The event's subject and actor are ``{"actor": pseudonym}``; ``commitment``
    is SHA-256 over ``auditml actor v1``, a NUL, 32 random bytes (the salt, kept
    off the log beside the person's id) and the JSON array ``[id, printed name]``
    (compact, non-ASCII escaped); a name filled in later enrolls the pseudonym
    again, and the newest enrollment binds. While the salt is
    kept, the off-log directory's row can be held to the log: a row rewritten,
    added or removed by hand no longer opens a commitment. An actor erasure
    deletes the salt, and the commitment then says nothing about anyone.
    """

    action: ClassVar[str] = "actor.enroll"

    commitment: Hex64


class RetentionData(DataModel):
    """``retention.applied``: one retention run removed what the schedule says has expired.

    ``segments`` lists the ``runtime.segment`` events whose records were
    removed (the events stay, so the chain still verifies); ``value_segments``
    lists, per value name, the segments whose values of that name were removed.
    ``schedule`` is the retention schedule applied, ``as_of`` the moment it was
    applied for, and ``held`` counts what was due but kept by a hold.
    """

    action: ClassVar[str] = "retention.applied"

    as_of: Rfc3339
    schedule: dict[Name, Name] = Field(default_factory=dict)
    policy_seq: int | None = Field(default=None, ge=0)
    values: int = Field(default=0, ge=0, le=2**53 - 1)
    kinds: dict[Name, Annotated[int, Field(ge=0, le=2**53 - 1)]] = Field(default_factory=dict)
    value_segments: dict[Name, list[Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)
    records: int = Field(default=0, ge=0, le=2**53 - 1)
    segments: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    held: int = Field(default=0, ge=0, le=2**53 - 1)


class DroppedData(DataModel):
    """``runtime.dropped``: records a recorder had to drop, counted when no segment followed them.

    A segment event counts the drops before it (``SegmentData.dropped``); this
    event counts those a recorder still held when it closed.
    """

    action: ClassVar[str] = "runtime.dropped"

    stream: Name
    model: Name
    env: Name
    dropped: int = Field(ge=1, le=2**53 - 1)


#: What changed in an outside model registry (MLflow), as ``registry.change`` records it.
ChangeKind = Literal[
    "version.created",
    "version.deleted",
    "alias.set",
    "alias.removed",
    "stage.set",
    "tag.set",
    "tag.deleted",
    "description.set",
]


class RegistryViolation(_Frozen):
    """A change made in an outside registry that auditml's policy would have refused."""

    rule: Name
    message: str
    environment: Name | None = None


class RegistryChangeData(DataModel):
    """``registry.change``: a change auditml saw in an outside model registry (MLflow).

    It is what the registry said, read with its own client: ``version.created``
    (``value`` the version's source URI), ``alias.set`` and ``alias.removed``
    (``alias``), ``stage.set`` (``stage``), ``tag.set`` and ``tag.deleted``
    (``key``; on the version when the subject has one, else on the model) and
    ``description.set``. ``previous`` is the value auditml knew before.
    ``source_time`` is the registry's own timestamp, when it kept one (it keeps
    none for aliases, nor who moved them). ``via`` says how auditml learned
    of it: ``import``, ``poll`` or ``webhook``. ``violations`` name the rules of
    the policy in force that the change broke (only a live change is checked).
    """

    action: ClassVar[str] = "registry.change"

    system: Literal["mlflow"] = "mlflow"
    kind: ChangeKind
    uri: str | None = None
    alias: Name | None = None
    stage: Name | None = None
    key: Name | None = None
    value: str | None = None
    previous: str | None = None
    source_time: Rfc3339 | None = None
    via: Literal["import", "poll", "webhook"] = "poll"
    violations: list[RegistryViolation] = Field(default_factory=list)


class RegistrySyncData(DataModel):
    """``registry.sync``: auditml moved (or failed to move) an outside registry's alias.

    Recorded after the decision ``decision_seq`` (a deploy or rollback), which
    stands whatever happened here: ``status`` ``failed`` says MLflow was not
    updated, and ``error`` says why.
    """

    action: ClassVar[str] = "registry.sync"

    system: Literal["mlflow"] = "mlflow"
    uri: str | None = None
    alias: Name
    environment: Name
    decision_seq: int = Field(ge=0, le=2**53 - 1)
    status: Literal["done", "failed"]
    previous: str | None = None
    error: str | None = None


class LogInitData(DataModel):
    """``log.init``: the first event of every log."""

    action: ClassVar[str] = "log.init"

    format: Literal["auditml/1"] = "auditml/1"
    created_by: str | None = None
    description: str | None = None
    #: The log's checkpoint verifier key (C2SP form), bound into the log's first bytes, so
    #: a key row replaced in the database is caught by verify.
    vkey: str | None = None
    #: A checkpoint is signed at every multiple of this size (0: never), so verify knows
    #: which checkpoints the log made and names one that was deleted.
    checkpoint_every: int | None = Field(default=None, ge=0)


ACTIONS: dict[str, type[DataModel]] = {
    model.action: model
    for model in (
        TrainData,
        EvaluateData,
        ApproveData,
        RejectData,
        DeployData,
        RollbackData,
        RolloutStartData,
        PromoteData,
        MonitorCheckData,
        RetireData,
        IncidentOpenData,
        IncidentCloseData,
        PolicyUpdateData,
        DeniedData,
        KeyRegisterData,
        KeyRevokeData,
        CardUpdateData,
        SegmentData,
        ErasureData,
        EnrollData,
        RetentionData,
        DroppedData,
        RegistryChangeData,
        RegistrySyncData,
        LogInitData,
    )
}


@dataclass(frozen=True, slots=True)
class ActionRule:
    """What auditml does with one action: how it may be appended and what reads it back."""

    #: The method that checks policy before appending it (plain append refuses it live).
    use: str
    #: "model", "incident", "key", "policy", "card", "runtime", "privacy", "actor", "monitor"
    #: or "log".
    group: str
    #: It may carry a Part 11 e-signature, checked against the signer's registered key.
    signed: bool = False
    #: A model's state (status, history, card) is folded from it.
    folded: bool = False
    #: The audit report lists it in the change history.
    decision: bool = False


#: The one registry of actions: every list of actions auditml uses is derived from it.
REGISTRY: dict[str, ActionRule] = {
    "model.train": ActionRule(
        "log.record_training(...) or @track_training", "model", folded=True, decision=True
    ),
    "model.evaluate": ActionRule("log.evaluate(...)", "model", folded=True),
    "model.approve": ActionRule(
        "log.approve(...)", "model", signed=True, folded=True, decision=True
    ),
    "model.reject": ActionRule("log.reject(...)", "model", signed=True, folded=True, decision=True),
    "model.deploy": ActionRule("log.deploy(...)", "model", folded=True, decision=True),
    "model.rollback": ActionRule("log.rollback(...)", "model", folded=True, decision=True),
    "rollout.start": ActionRule(
        "log.deploy(..., traffic=...) or log.deploy(..., shadow=True)",
        "model",
        folded=True,
        decision=True,
    ),
    "rollout.promote": ActionRule("log.promote(...)", "model", folded=True, decision=True),
    "monitor.check": ActionRule("log.monitor(...) or `auditml monitor`", "monitor"),
    "model.retire": ActionRule("log.retire(...)", "model", folded=True, decision=True),
    "incident.open": ActionRule("log.open_incident(...)", "incident", folded=True, decision=True),
    "incident.close": ActionRule("log.close_incident(...)", "incident", decision=True),
    "policy.update": ActionRule("log.apply_policy(...)", "policy", decision=True),
    "policy.denied": ActionRule(
        "the decision methods, which record denials themselves", "policy", decision=True
    ),
    "key.register": ActionRule("log.register_key(...)", "key", decision=True),
    "key.revoke": ActionRule("log.revoke_key(...)", "key", decision=True),
    "card.update": ActionRule(
        "log.update_card(...) or `auditml card update`", "card", folded=True, decision=True
    ),
    "runtime.segment": ActionRule(
        "log.runtime(...) or `auditml runtime ingest`, which store its records with it",
        "runtime",
    ),
    "privacy.erasure": ActionRule("log.erase(...) or `auditml erase`", "privacy"),
    "actor.enroll": ActionRule(
        "any action under [personal_data] pseudonymous_actors, the first time a person acts",
        "actor",
    ),
    "retention.applied": ActionRule(
        "log.apply_retention(...) or `auditml retention apply`", "privacy"
    ),
    "runtime.dropped": ActionRule(
        "a runtime recorder, on close, for drops no segment counted", "runtime"
    ),
    "registry.change": ActionRule(
        "`auditml import mlflow` or `auditml mlflow watch` (log.record_registry(...))",
        "registry",
        decision=True,
    ),
    "registry.sync": ActionRule(
        "`auditml deploy` and `rollback` with [mlflow] aliases in the policy",
        "registry",
        decision=True,
    ),
    "log.init": ActionRule("AuditLog.init(...)", "log"),
}


def actions_where(**wanted: object) -> tuple[str, ...]:
    """Return the registered actions whose rule has every attribute given, in registry order."""
    return tuple(
        action
        for action, rule in REGISTRY.items()
        if all(getattr(rule, name) == value for name, value in wanted.items())
    )


#: Actions only the policy-checking methods append; the value names the method to use.
GOVERNED: dict[str, str] = {action: rule.use for action, rule in REGISTRY.items()}
#: The actions a model's state is folded from.
LIFECYCLE_ACTIONS = actions_where(folded=True)
INCIDENT_ACTIONS = actions_where(group="incident")
#: Erasures and retention runs: what left the off-log store, and why.
PRIVACY_ACTIONS = actions_where(group="privacy")
KEY_ACTIONS = actions_where(group="key")
SIGNED_ACTIONS = actions_where(signed=True)
DECISION_ACTIONS = actions_where(decision=True)
#: What auditml saw change in an outside registry, and the aliases it moved there.
REGISTRY_ACTIONS = actions_where(group="registry")


def data_model(action: str) -> type[DataModel]:
    """Return the data model of ``action``, or raise :class:`UnknownActionError`."""
    try:
        return ACTIONS[action]
    except KeyError:
        from difflib import get_close_matches

        wanted = action.casefold() if isinstance(action, str) else ""
        close = [a for a in ACTIONS if wanted in (a, a.rpartition(".")[2])] or (
            get_close_matches(wanted, list(ACTIONS), n=1) if wanted else []
        )
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = ", ".join(sorted(ACTIONS))
        raise UnknownActionError(
            f"unknown action {action!r}: {hint}auditml records only these actions: {known}"
        ) from None


_FORGED_MARK = (
    "data.imported is the mark of imported history and is set only by "
    "append(..., imported=...) or append_many(..., imported=...); leave it out of data"
)


def _first_error(exc: ValidationError) -> str:
    """Return the first pydantic error as ``location: message``."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "value"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg']}{extra}"


def validate_data(action: str, data: object) -> dict[str, Any]:
    """Validate ``data`` against ``action``'s model; return its JSON form without empty fields."""
    model = data_model(action)
    if isinstance(data, model):
        instance = data
    elif isinstance(data, DataModel):
        raise InvalidInputError(
            f"data for {action!r} must be {model.__name__}, not {type(data).__name__}"
        )
    else:
        try:
            instance = model.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise InvalidInputError(f"invalid data for {action!r}: {_first_error(exc)}") from None
    dumped = instance.model_dump(mode="json", exclude_none=True)
    # Empty collections say nothing; leaving them out keeps every event short.
    return {key: value for key, value in dumped.items() if value != {} and value != []}


# -- the fast path of Draft.build --------------------------------------------------------
#
# Pydantic validation and dumping cost about 15 us for a typical evaluation; the
# common shapes are checked here by hand in about a fifth of that. A fast check
# either returns exactly what ``validate_data`` returns (same keys, order, values,
# types) or None, and then the pydantic path runs and gives its usual answer or
# error: the fast path only accepts what the slow one accepts, unchanged. Anything
# unusual (a str or dict subclass, a bool or NaN metric, a URI that may hold a
# credential, an unknown key) takes the slow path. tests/test_events.py holds the
# two paths to the same drafts and bytes over generated events.

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DATASET_KINDS = frozenset({"file", "folder", "uri"})
_NO_MARK: dict[str, Any] = {}
_STR = {str}
_NUMBERS = frozenset({int, float})
_EVALUATE_KEYS = frozenset({"dataset", "metrics", "slices", "artifacts", "notes"})
_DATASET_KEYS = frozenset({"uri", "kind", "sha256", "size", "files", "split"})
_ARTIFACT_KEYS = frozenset({"uri", "sha256", "size"})


def _fast_name(key: object) -> bool:
    return type(key) is str and 0 < len(key) <= 512


def _fast_uri(value: object) -> bool:
    """Return whether ``value`` is a str URI that cannot hold a credential scrub_uri strips."""
    return type(value) is str and "@" not in value and "?" not in value and "#" not in value


def _fast_count(value: object) -> bool:
    return value is None or (type(value) is int and value >= 0)


def _fast_dataset(value: object) -> dict[str, Any] | None:
    """Return DatasetRef's dump of a plainly valid dataset mapping, else None."""
    if type(value) is not dict or not value.keys() <= _DATASET_KEYS:
        return None  # 'redacted' and unknown keys: the slow path
    uri = value.get("uri")
    if type(uri) is not str or "@" in uri or "?" in uri or "#" in uri:
        return None  # what _fast_uri checks, inline: this runs for every evaluation
    kind = value.get("kind", "uri")
    if type(kind) is not str or kind not in _DATASET_KINDS:
        return None
    out: dict[str, Any] = {"uri": uri, "kind": kind}
    if len(value) == 2 and "kind" in value:
        return out  # the usual shape: a URI and its kind, nothing else to check
    sha, split = value.get("sha256"), value.get("split")
    if sha is not None and (type(sha) is not str or _HEX64.fullmatch(sha) is None):
        return None
    if not (_fast_count(value.get("size")) and _fast_count(value.get("files"))):
        return None
    if split is not None and type(split) is not str:
        return None
    for key in ("sha256", "size", "files", "split"):
        held = value.get(key)
        if held is not None:
            out[key] = held
    return out


def _fast_artifact(value: object) -> dict[str, Any] | None:
    """Return ArtifactRef's dump of a plainly valid artifact mapping, else None."""
    if type(value) is not dict or not _fast_uri(value.get("uri")):
        return None
    if not value.keys() <= _ARTIFACT_KEYS:
        return None
    sha = value.get("sha256")
    if sha is not None and (type(sha) is not str or _HEX64.fullmatch(sha) is None):
        return None
    if not _fast_count(value.get("size")):
        return None
    out: dict[str, Any] = {"uri": value["uri"]}
    for key in ("sha256", "size"):
        held = value.get(key)
        if held is not None:
            out[key] = held
    return out


def _fast_evaluate(data: dict[Any, Any]) -> dict[str, Any] | None:
    """Return ``validate_data("model.evaluate", data)`` for the common shapes, else None.

    The names (of metrics, slices and slices' metrics) and the numbers are each
    checked in one pass of C-level calls over all of them together: a name or a
    number is valid or not on its own, so one pass says what a pass per mapping says.
    """
    if not data.keys() <= _EVALUATE_KEYS:
        return None
    out: dict[str, Any] = {}
    dataset = data.get("dataset")
    if dataset is not None:
        found = _fast_dataset(dataset)
        if found is None:
            return None
        out["dataset"] = found
    metrics = data.get("metrics", _NO_MARK)
    slices = data.get("slices", _NO_MARK)
    artifacts = data.get("artifacts", _NO_MARK)
    if type(metrics) is not dict or type(slices) is not dict or type(artifacts) is not dict:
        return None
    names: list[Any] = [*slices, *metrics]
    numbers: list[Any] = [*metrics.values()]
    inner: list[Any] = [*slices.values()]
    for held in inner:
        if type(held) is not dict:
            return None
        names += held
        numbers += held.values()
    if names:
        # Every name a str Name (1 to 512 characters), every number an int or finite float.
        if "" in names or {*map(type, names)} != _STR:
            return None
        if len("".join(names)) > 512 and max(map(len, names)) > 512:
            return None
        kinds = {*map(type, numbers)}
        if not kinds <= _NUMBERS:
            return None  # bools, text, str subclasses: the slow path says what is wrong
        if float in kinds:
            try:
                total = sum(numbers)
            except OverflowError:
                return None
            if total - total != 0.0:  # a NaN or an infinity (or a sum too large: declined)
                return None
    if metrics:
        out["metrics"] = metrics.copy()
    if inner:
        out["slices"] = {name: held.copy() for name, held in slices.items()}
    if artifacts:
        made: dict[str, Any] = {}
        for name, held in artifacts.items():
            ref = _fast_artifact(held)
            if ref is None or not _fast_name(name):
                return None
            made[name] = ref
        out["artifacts"] = made
    notes = data.get("notes")
    if notes is not None:
        if type(notes) is not str:
            return None
        out["notes"] = notes
    return out


#: The actions whose common data shapes have a fast check.
_FAST_DATA = {"model.evaluate": _fast_evaluate}
_NEW = object.__new__
_SET = object.__setattr__
#: Actors given as an id string, made once each (an Actor is immutable, so one is shared).
_ACTORS: dict[str, Actor] = {}


def _fast_parts(
    action: str, actor: object, subject: object, data: object, imported: object
) -> "Draft | None":
    """Return the draft ``Draft.build`` makes of these parts, when all are plainly valid."""
    check = _FAST_DATA.get(action)
    if check is None or type(data) is not dict or (imported is not False and imported is not True):
        return None
    payload = check(data)
    if payload is None:
        return None
    if imported is True:
        payload["imported"] = {"source": "unspecified"}
    if type(actor) is str:
        who = _ACTORS.get(actor)
        if who is None:
            if not 0 < len(actor) <= 512:
                return None
            who = Actor(id=actor, source="api")
            if len(_ACTORS) < 4096:
                _ACTORS[actor] = who
        actor = who
    elif actor is not None and type(actor) is not Actor:
        return None
    if subject is None:
        named: dict[str, str] = {}
    elif type(subject) is dict:
        for key, held in subject.items():
            if type(key) is not str or type(held) is not str or "\x00" in held:
                return None
        named = dict(subject)
    else:
        return None
    # What model_construct does, without its per-field loop: every field is given. Draft's
    # own __new__ would be looked up through pydantic's metaclass, which costs more.
    draft = _NEW(Draft)
    _SET(draft, "__dict__", {"action": action, "actor": actor, "subject": named, "data": payload})
    _SET(draft, "__pydantic_fields_set__", {"action", "actor", "subject", "data"})
    _SET(draft, "__pydantic_extra__", None)
    _SET(draft, "__pydantic_private__", None)
    return draft


class Draft(_Frozen):
    """What a caller supplies for one event; the ledger adds the rest when it appends.

    Building a draft validates ``data`` against the action's model and keeps
    its JSON form, so a draft that exists is one the log will accept. Only a
    draft built with ``imported=`` carries the imported mark: ``data`` that
    holds ``imported`` itself is refused, so a live event cannot claim to be
    imported history, and imported history cannot pass for live.
    """

    action: str
    #: None: the acting identity is resolved when the draft is appended.
    actor: Actor | None = None
    subject: dict[str, str] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _validate_parts(cls, values: Any, info: ValidationInfo) -> Any:
        if not isinstance(values, dict):
            return values
        action = values.get("action")
        if not isinstance(action, str):
            raise ValueError("an event needs an action name, e.g. 'model.train'")
        values = dict(values)
        context = info.context or {}
        if not context.get("data_validated"):
            values["data"] = validate_data(action, values.get("data"))
        if not context.get("imported") and "imported" in (values.get("data") or {}):
            raise ValueError(_FORGED_MARK)
        actor = values.get("actor")
        if isinstance(actor, str):
            values["actor"] = Actor(id=actor, source="api")
        if values.get("subject") is None:
            values["subject"] = {}
        elif isinstance(values["subject"], dict):
            for name in ("model", "version"):
                # The model and version are columns too, and PostgreSQL text holds no NUL.
                held = values["subject"].get(name)
                if isinstance(held, str) and "\x00" in held:
                    raise ValueError(
                        f"the {name} name {held!r} holds a NUL character, which no store "
                        "keeps in a name: remove it"
                    )
        return values

    @classmethod
    def build(
        cls,
        action: str,
        *,
        actor: Actor | str | dict[str, Any] | None = None,
        subject: dict[str, str] | None = None,
        data: object = None,
        imported: ImportedFrom | Mapping[str, Any] | bool = False,
    ) -> "Draft":
        """Validate one event's parts and return the draft, or raise InvalidInputError.

        Without ``actor``, the actor is resolved when the draft is appended, as
        ``AuditLog.append`` does it (``AUDITML_ACTOR``, git, the OS user).
        ``imported`` (True, or a mapping of provenance: see :class:`ImportedFrom`)
        marks the draft as imported history; ``data`` may not hold the mark itself.
        """
        fast = _fast_parts(action, actor, subject, data, imported)
        if fast is not None:
            return fast
        return cls._build_validated(
            action, actor=actor, subject=subject, data=data, imported=imported
        )

    @classmethod
    def _build_validated(
        cls,
        action: str,
        *,
        actor: Actor | str | dict[str, Any] | None = None,
        subject: dict[str, str] | None = None,
        data: object = None,
        imported: ImportedFrom | Mapping[str, Any] | bool = False,
    ) -> "Draft":
        """Build a draft through the pydantic models alone: what the fast path must equal."""
        payload = validate_data(action, data)
        if "imported" in payload:
            raise InvalidInputError(_FORGED_MARK)
        if imported is not False:
            payload["imported"] = imported_mark(imported)
        parts = {"action": action, "actor": actor, "subject": subject, "data": payload}
        try:
            return cls.model_validate(
                parts, context={"data_validated": True, "imported": imported is not False}
            )
        except ValidationError as exc:
            raise InvalidInputError(f"invalid {action!r} event: {_first_error(exc)}") from None

    @property
    def imported(self) -> bool:
        """Return whether the draft is marked as imported history."""
        return is_imported(self.data)


class Event(_Frozen):
    """The full event envelope of docs/format.md section 1.

    ``data.imported``, when present, marks history imported from elsewhere.
    """

    v: Literal[1]
    log: Name
    seq: int = Field(ge=0, le=2**53 - 1)
    prev: Hex64
    time: Rfc3339
    actor: Actor
    action: Annotated[str, StringConstraints(pattern=ACTION_PATTERN)]
    subject: dict[str, str]
    data: dict[str, JsonValue]
