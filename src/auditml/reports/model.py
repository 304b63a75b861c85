"""The audit report as data: frozen pydantic models, one per section (pure, no I/O).

:func:`auditml.reports.build.build_report` fills an :class:`AuditReport` from
the log; :mod:`auditml.reports.render` turns it into HTML, Markdown or JSON,
and :mod:`auditml.reports.pdf` into a PDF/A-3b with its evidence attached.
Every list may be empty: the renderers then print "No evidence recorded".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from auditml.core.events import Comparison
from auditml.core.keys import SignatureEntry

__all__ = [
    "BUNDLE_NAME",
    "NO_EVIDENCE",
    "REPORT_JSON",
    "SEAL_NAME",
    "SECTIONS",
    "AuditReport",
    "CardSummary",
    "Checkpointed",
    "ComparisonEntry",
    "CrossReference",
    "DecisionEntry",
    "DocumentRef",
    "EvaluationSummary",
    "IncidentEntry",
    "IntegrityAppendix",
    "InventoryEntry",
    "ModelIdentity",
    "PrivacyLogEntry",
    "ProcessingRecord",
    "RetentionRule",
    "RiskSummary",
    "RolloutCheck",
    "RolloutEntry",
    "RolloutStep",
    "ScheduleEntry",
    "SignatureEntry",
    "TimelinePoint",
    "TrainingEntry",
]

NO_EVIDENCE = "No evidence recorded"

#: The name of the embedded evidence bundle inside every PDF report.
BUNDLE_NAME = "evidence-bundle.zip"
#: The report's own data, embedded beside the bundle for machines.
REPORT_JSON = "audit-report.json"
#: The seal over the whole file, embedded uncompressed (:mod:`auditml.core.pdfseal`).
SEAL_NAME = "auditml-seal.txt"

#: Section ids and headings, in the order of REGULATORY.md "The auditor's report".
SECTIONS: tuple[tuple[str, str], ...] = (
    ("cover", "Cover and document control"),
    ("signatures", "Signature manifest"),
    ("identification", "System identification and intended purpose"),
    ("inventory", "Inventory record and risk tier"),
    ("development", "Development and data"),
    ("validation", "Validation, testing and approvals"),
    ("card", "Model card summary"),
    ("risk", "Risk management"),
    ("changes", "Change history"),
    ("monitoring", "Monitoring and incidents"),
    ("conformity", "Standards and conformity attachments"),
    ("data-protection", "Data protection and retention"),
    ("integrity", "Integrity appendix"),
    ("crossref", "Cross-reference matrix"),
)


class _Frozen(BaseModel):
    """Base of every report model: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Checkpointed(_Frozen):
    """The signed checkpoint the report was built from."""

    origin: str
    size: int
    root: str
    note: str


class PartialCoverage(_Frozen):
    """Why a report stops before the log's head: the log key was not at hand to sign there."""

    checkpoint_size: int
    head_size: int
    left_out: int
    reason: str


class ModelIdentity(_Frozen):
    """Who and what a model is: its purpose, owner and risk tier as its card states them."""

    model: str
    intended_purpose: str | None = None
    owner: str | None = None
    risk_tier: str | None = None
    first_recorded: str | None = None
    last_change: str | None = None
    versions: int = 0


class InventoryEntry(_Frozen):
    """One version's inventory line (SR 26-2): status, where it runs, validation dates.

    Names and environments that come from imported history end in ``(imported)``.
    """

    model: str
    version: str
    state: str
    running_in: list[str] = Field(default_factory=list)
    trained_at: str | None = None
    trained_by: list[str] = Field(default_factory=list)
    approved_by: list[str] = Field(default_factory=list)
    last_validation: str | None = None
    incidents: int = 0


class TrainingEntry(_Frozen):
    """One training run: code, data, environment and outputs (Annex IV 2)."""

    seq: int
    time: str
    model: str
    version: str
    actor: str
    status: str
    code: str | None = None
    datasets: list[str] = Field(default_factory=list)
    environment: str | None = None
    base_model: str | None = None
    parent_version: str | None = None
    params: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: list[str] = Field(default_factory=list)
    imported: bool = False


class ComparisonEntry(Comparison):
    """The newest comparison of one metric of a version with its baseline, and its event."""

    seq: int


class EvaluationSummary(_Frozen):
    """The evaluations of one version, summarized: how many, when, by whom, latest metrics.

    ``comparisons`` hold the newest comparison with a baseline of each metric.
    """

    model: str
    version: str
    count: int
    first: str
    last: str
    evaluators: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    imported: int = 0
    comparisons: list[ComparisonEntry] = Field(default_factory=list)


class DecisionEntry(_Frozen):
    """One decision on the log: train, approve, reject, deploy, rollback, retire, policy, ..."""

    seq: int
    time: str
    action: str
    model: str
    version: str
    actor: str
    role: str | None = None
    environment: str | None = None
    reason: str | None = None
    signed: str | None = None
    planned_change: str | None = None
    imported: bool = False


class CardSummary(_Frozen):
    """The model card of one version, in brief: its human sections and its metrics."""

    model: str
    version: str
    state: str
    #: Each human section as written: text, or a list or table of them (owners, risks).
    sections: dict[str, JsonValue] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluated: dict[str, float] = Field(default_factory=dict)


class RiskSummary(_Frozen):
    """Risk management as the log shows it: the policy in force and what it refused."""

    policy_seq: int | None
    separation_of_duties: bool
    require_signatures: str
    approvals: dict[str, int] = Field(default_factory=dict)
    gates: dict[str, list[str]] = Field(default_factory=dict)
    risk_tiers: dict[str, str] = Field(default_factory=dict)
    denials: list[DecisionEntry] = Field(default_factory=list)
    #: Changes made in an outside registry (MLflow) that policy would have refused.
    violations: list[DecisionEntry] = Field(default_factory=list)


class IncidentEntry(_Frozen):
    """One incident, its EU AI Act Art. 73 deadline, and whether a rollback followed."""

    id: str
    seq: int
    model: str
    version: str
    summary: str
    severity: str
    impact: str | None = None
    environment: str | None = None
    aware_at: str
    report_due: str | None = None
    report_clause: str | None = None
    reported_at: str | None = None
    reported_late: bool | None = None
    opened_by: str
    closed_at: str | None = None
    closed_by: str | None = None
    resolution: str | None = None
    rollback_seq: int | None = None
    rollback_to: str | None = None


class RolloutStep(_Frozen):
    """One change of a rollout's split: its event, who made it, why, and the split after it.

    ``evidence`` is the canary's verified runtime record counts a promotion
    stood on; ``cause_seq`` and ``cause_hash`` name the monitor check behind
    an automatic rollback.
    """

    seq: int
    time: str
    action: str
    actor: str
    reason: str | None = None
    split: str
    evidence: dict[str, JsonValue] | None = None
    cause_seq: int | None = None
    cause_hash: str | None = None
    automatic: bool = False


class RolloutCheck(_Frozen):
    """One ``monitor.check`` of a rollout: its window, counts, figures and verdict."""

    seq: int
    time: str
    actor: str
    verdict: str
    since: str
    until: str
    canary_requests: int
    stable_requests: int
    min_requests: int
    statistics: dict[str, float | None] = Field(default_factory=dict)
    tripped: list[str] = Field(default_factory=list)
    acted_seq: int | None = None


class RolloutEntry(_Frozen):
    """One rollout of a version beside the stable one: its splits over time, checks and end."""

    model: str
    environment: str
    version: str
    stable: str
    mode: str
    seq: int
    started: str
    started_by: str
    outcome: str
    imported: bool = False
    steps: list[RolloutStep] = Field(default_factory=list)
    checks: list[RolloutCheck] = Field(default_factory=list)


class TimelinePoint(_Frozen):
    """One deploy, rollback or retirement, for the timeline chart."""

    model: str
    environment: str
    time: str
    version: str
    kind: str
    seq: int | None = None


class DocumentRef(_Frozen):
    """A document attached by hash: a policy file, card source, test report or artifact."""

    seq: int
    time: str
    kind: str
    name: str
    sha256: str | None = None
    model: str | None = None
    version: str | None = None


class RetentionRule(_Frozen):
    """One record class, how long it is kept, and the clause that says so."""

    record: str
    period: str
    basis: str
    earliest: str | None = None
    count: int = 0


class ScheduleEntry(_Frozen):
    """One line of the policy's retention schedule, and the legal minimum it meets."""

    data: str
    what: str
    period: str | None = None
    minimum: str | None = None
    basis: str | None = None
    shorter_because: str | None = None


class ProcessingRecord(_Frozen):
    """The record of processing activities (GDPR Art. 30(1)) as the policy in force states it."""

    controller: str | None = None
    contact: str | None = None
    purposes: list[str] = Field(default_factory=list)
    data_subjects: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    recipients: list[str] = Field(default_factory=list)
    transfers: str | None = None
    security: str | None = None
    #: The retention schedule, as Art. 30(1)(f) asks: ``kind: period``.
    retention: list[str] = Field(default_factory=list)
    #: Event fields the policy says hold personal data.
    personal_fields: list[str] = Field(default_factory=list)


class PrivacyLogEntry(_Frozen):
    """One erasure or retention run, as its event records it: counts and kinds, never a subject."""

    seq: int
    time: str
    action: str
    what: str
    actor: str
    summary: str
    values: int = 0
    records: int = 0
    kinds: dict[str, int] = Field(default_factory=dict)
    request: str | None = None


class IntegrityAppendix(_Frozen):
    """What proves the report: checkpoint, verifier key, result, and how to re-check."""

    checkpoint: Checkpointed
    vkey: str
    verified: bool
    result: str
    signatures_checked: int
    commands: list[str] = Field(default_factory=list)


class RuntimeRow(_Frozen):
    """What one version did in one environment, from its runtime records (Art. 12, Art. 72)."""

    model: str
    version: str
    environment: str
    requests: int
    errors: int
    error_rate: float
    first_time: str | None = None
    last_time: str | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None


class RuntimeFinding(_Frozen):
    """A finding of ``auditml runtime check``, with the records behind it."""

    kind: str
    model: str
    version: str
    environment: str
    message: str
    count: int
    first_time: str | None = None
    last_time: str | None = None
    request_ids: list[str] = Field(default_factory=list)


class CrossReference(_Frozen):
    """One clause of a regulation or guidance, and the report sections that answer it."""

    framework: str
    clause: str
    requirement: str
    sections: list[str]


class AuditReport(_Frozen):
    """The whole audit report: every section, in REGULATORY.md order.

    Entries from imported history say ``imported``; ``imported_events`` counts
    them in scope and ``imported_note`` says what that means.
    """

    report_id: str
    title: str
    generated_at: str
    auditml_version: str
    origin: str
    models: list[str]
    since: str | None = None
    until: str | None = None
    events_read: int
    events_in_window: int
    imported_events: int = 0
    imported_note: str | None = None
    checkpoint: Checkpointed
    #: Set when the report covers only up to an older checkpoint (``allow_partial``).
    partial: PartialCoverage | None = None
    signatures: list[SignatureEntry] = Field(default_factory=list)
    identities: list[ModelIdentity] = Field(default_factory=list)
    inventory: list[InventoryEntry] = Field(default_factory=list)
    training: list[TrainingEntry] = Field(default_factory=list)
    evaluations: list[EvaluationSummary] = Field(default_factory=list)
    approvals: list[DecisionEntry] = Field(default_factory=list)
    cards: list[CardSummary] = Field(default_factory=list)
    risk: RiskSummary
    changes: list[DecisionEntry] = Field(default_factory=list)
    changes_omitted: int = 0
    incidents: list[IncidentEntry] = Field(default_factory=list)
    #: Every rollout (canary or shadow) in scope: its split timeline, monitor checks and end.
    rollouts: list[RolloutEntry] = Field(default_factory=list)
    runtime: list[RuntimeRow] = Field(default_factory=list)
    runtime_findings: list[RuntimeFinding] = Field(default_factory=list)
    timeline: list[TimelinePoint] = Field(default_factory=list)
    metric_series: dict[str, dict[str, list[tuple[str, float | None]]]] = Field(
        default_factory=dict
    )
    documents: list[DocumentRef] = Field(default_factory=list)
    retention: list[RetentionRule] = Field(default_factory=list)
    #: The policy's retention schedule (``[retention]``) and the seq that recorded it.
    retention_schedule: list[ScheduleEntry] = Field(default_factory=list)
    retention_policy_seq: int | None = None
    processing: ProcessingRecord = Field(default_factory=ProcessingRecord)
    identities_named: int = 0
    #: Every erasure and retention run in the window, with its event number.
    erasures: list[PrivacyLogEntry] = Field(default_factory=list)
    #: What stays in the database files and backups after an erasure, for this store.
    storage_note: str | None = None
    integrity: IntegrityAppendix
    crossref: list[CrossReference] = Field(default_factory=list)
    extra: dict[str, JsonValue] = Field(default_factory=dict)
