"""Event models: the envelope of docs/format.md section 1 and one data model per action.

An event is built in two halves. The caller supplies a :class:`Draft` (action,
actor, subject, data), validated here before anything touches a database. The
ledger adds ``v``, ``log``, ``seq``, ``prev`` and ``time`` inside the append
transaction. :class:`Event` is the complete envelope, as read back.
"""

from __future__ import annotations

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
    "SIGNED_ACTIONS",
    "ActionRule",
    "Actor",
    "ApproveData",
    "ArtifactRef",
    "CardUpdateData",
    "CodeVersion",
    "DataModel",
    "DatasetRef",
    "DeniedData",
    "DeployData",
    "Draft",
    "DroppedData",
    "DroppedMetric",
    "ESignature",
    "Environment",
    "ErasureData",
    "EvaluateData",
    "Event",
    "FailureInfo",
    "ImportedFrom",
    "IncidentCloseData",
    "IncidentOpenData",
    "KeyRegisterData",
    "KeyRevokeData",
    "LogInitData",
    "PolicyUpdateData",
    "RejectData",
    "RetentionData",
    "RetireData",
    "RollbackData",
    "SegmentData",
    "TrainData",
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


class EvaluateData(DataModel):
    """``model.evaluate``: an evaluation of one version on one dataset."""

    action: ClassVar[str] = "model.evaluate"

    dataset: DatasetRef | None = None
    metrics: Metrics = Field(default_factory=dict)
    slices: dict[Name, Metrics] = Field(default_factory=dict)
    artifacts: dict[Name, ArtifactRef] = Field(default_factory=dict)
    notes: str | None = None


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


class DeployData(_Decision):
    """``model.deploy``: a version goes to an environment, replacing what ran there."""

    action: ClassVar[str] = "model.deploy"

    environment: Name
    replaces: str | None = None


class RollbackData(_Decision):
    """``model.rollback``: an environment goes back to a version that ran there before."""

    action: ClassVar[str] = "model.rollback"

    environment: Name
    replaces: str | None = None


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
        RetentionData,
        DroppedData,
        LogInitData,
    )
}


@dataclass(frozen=True, slots=True)
class ActionRule:
    """What auditml does with one action: how it may be appended and what reads it back."""

    #: The method that checks policy before appending it (plain append refuses it live).
    use: str
    #: "model", "incident", "key", "policy", "card", "runtime", "privacy" or "log".
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
    "retention.applied": ActionRule(
        "log.apply_retention(...) or `auditml retention apply`", "privacy"
    ),
    "runtime.dropped": ActionRule(
        "a runtime recorder, on close, for drops no segment counted", "runtime"
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


def data_model(action: str) -> type[DataModel]:
    """Return the data model of ``action``, or raise :class:`UnknownActionError`."""
    try:
        return ACTIONS[action]
    except KeyError:
        known = ", ".join(sorted(ACTIONS))
        raise UnknownActionError(
            f"unknown action {action!r}: auditml records only these actions: {known}"
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
    ) -> Draft:
        """Validate one event's parts and return the draft, or raise InvalidInputError.

        Without ``actor``, the actor is resolved when the draft is appended, as
        ``AuditLog.append`` does it (``AUDITML_ACTOR``, git, the OS user).
        ``imported`` (True, or a mapping of provenance: see :class:`ImportedFrom`)
        marks the draft as imported history; ``data`` may not hold the mark itself.
        """
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
