"""The model card: a pydantic model that is a superset of the card formats auditml exports to.

Everything here is data. :mod:`auditml.cards.build` fills a card from the log,
and :mod:`auditml.cards.export` maps it onto Model Card Toolkit, Hugging Face
and CycloneDX. The human-written sections are :class:`HumanSections`; a
``card.update`` event records them as a person wrote them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError

from auditml.core.card_sections import SECTION_TITLES, check_section_name
from auditml.core.events import ArtifactRef, CodeVersion, Comparison, DatasetRef
from auditml.errors import InvalidInputError

__all__ = [
    "SECTION_TITLES",
    "Binding",
    "BoundEvent",
    "CardArtifact",
    "CardComparison",
    "CardDataset",
    "CardDecision",
    "CardEvaluation",
    "CardGate",
    "CardIncident",
    "CardMetric",
    "CardMove",
    "CardServing",
    "CardSignature",
    "CheckpointRef",
    "Completeness",
    "HumanSections",
    "ModelCard",
    "Owner",
    "Risk",
    "Training",
    "filled_sections",
    "validate_sections",
]


Text = Annotated[str, StringConstraints(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)


class Owner(_Frozen):
    """A person or team answerable for the model."""

    name: Text
    contact: str | None = None


class Risk(_Frozen):
    """An ethical risk and how it is mitigated."""

    name: Text
    mitigation: str | None = None


class HumanSections(_Frozen):
    """The sections people write: what the log cannot know. Every field is optional."""

    overview: Text | None = None
    documentation: Text | None = None
    owners: list[Owner] | None = None
    license: Text | None = None
    references: list[Text] | None = None
    citation: Text | None = None
    task: Text | None = None
    architecture: Text | None = None
    input_format: Text | None = None
    output_format: Text | None = None
    intended_use: Text | None = None
    users: list[Text] | None = None
    out_of_scope_use: Text | None = None
    limitations: Text | None = None
    tradeoffs: Text | None = None
    ethical_considerations: list[Risk] | None = None
    fairness: Text | None = None
    human_oversight: Text | None = None
    risk_rating: Literal["low", "medium", "high", "unacceptable"] | None = None
    environmental_impact: Text | None = None


# The vocabulary lives in core (the policy names sections too); one field per section.
assert set(SECTION_TITLES) == set(HumanSections.model_fields)


def validate_sections(raw: object, *, where: str = "the card sections") -> dict[str, Any]:
    """Check human sections as written and return them as plain JSON, only those given.

    Raises InvalidInputError naming the section that is wrong, and the closest
    known name for a misspelt one.
    """
    if raw is None or raw == {}:
        raise InvalidInputError(
            f"{where} holds no section (in a file from `auditml card template`, every line "
            "is a comment until you remove the '# ' before a section's lines): write at least "
            "one, e.g. 'intended_use: Scoring retail credit applications'"
        )
    if not isinstance(raw, dict):
        raise InvalidInputError(
            f"{where} must be a mapping of section names to text, e.g. "
            "'intended_use: Scoring retail credit applications'"
        )
    for name in raw:
        check_section_name(name, where=where)
    try:
        sections = HumanSections.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(f"{where}: section {place}: {first['msg']}") from None
    return sections.model_dump(mode="json", exclude_unset=True)


def filled_sections(sections: HumanSections) -> list[str]:
    """Return the names of the sections that hold something."""
    return [name for name in SECTION_TITLES if getattr(sections, name) not in (None, [], "")]


class Training(_Frozen):
    """The training run that made the version, as ``model.train`` recorded it."""

    seq: int
    status: str
    time: str
    trained_by: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    code: CodeVersion | None = None
    python: str | None = None
    platform: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    accelerators: list[str] = Field(default_factory=list)
    params: dict[str, JsonValue] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    parent_version: str | None = None
    base_model: str | None = None
    error: str | None = None
    imported: bool = False


class CardDataset(_Frozen):
    """A dataset the version was trained or evaluated on."""

    name: str
    use: Literal["training", "evaluation"]
    ref: DatasetRef
    seq: int


class CardArtifact(_Frozen):
    """An output of the training run, with its digest."""

    name: str
    ref: ArtifactRef


class CardMetric(_Frozen):
    """One metric value and where it was recorded."""

    name: str
    value: float
    source: Literal["training", "evaluation"]
    seq: int
    dataset: str | None = None
    split: str | None = None
    slice: str | None = None
    imported: bool = False


class CardEvaluation(_Frozen):
    """One ``model.evaluate`` event."""

    seq: int
    time: str
    actor: str
    dataset: DatasetRef | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    slices: dict[str, dict[str, float]] = Field(default_factory=dict)
    notes: str | None = None
    imported: bool = False


class CardComparison(Comparison):
    """A comparison with a baseline recorded by one ``model.evaluate`` event, and its file."""

    seq: int
    time: str
    actor: str
    examples: ArtifactRef | None = None
    imported: bool = False


class CardSignature(_Frozen):
    """A Part 11 e-signature as printed: name, meaning, time, key."""

    name: str
    signer: str
    meaning: str
    signed_at: str
    key: str


class CardDecision(_Frozen):
    """An approval, rejection or retirement of the version."""

    seq: int
    time: str
    action: Literal["approve", "reject", "retire"]
    actor: str
    role: str | None = None
    reason: str | None = None
    environments: list[str] = Field(default_factory=list)
    signature: CardSignature | None = None
    imported: bool = False


class CardGate(_Frozen):
    """An acceptance threshold of the policy in force, checked against the version's metrics.

    For a gate on a comparison (``auc_delta >= 0 at 95%``), ``value`` is the
    interval bound checked, ``interval`` the interval at the gate's level,
    ``baseline`` the version compared with and ``seq`` the evaluation event.
    """

    environment: str
    gate: str
    value: float | None
    passed: bool
    interval: tuple[float, float] | None = None
    baseline: str | None = None
    seq: int | None = None


class CardMove(_Frozen):
    """A deploy or rollback that started or stopped this version running somewhere."""

    seq: int
    time: str
    action: Literal["deploy", "rollback"]
    environment: str
    version: str
    replaces: str | None = None
    actor: str
    reason: str | None = None
    imported: bool = False


class CardIncident(_Frozen):
    """An incident raised against the version."""

    id: str
    seq: int
    severity: str
    summary: str
    aware_at: str
    environment: str | None = None
    report_due: str | None = None
    closed_at: str | None = None
    resolution: str | None = None


class CardServing(_Frozen):
    """Where the version served, from its runtime records: for how long, how much, how well."""

    environment: str
    requests: int
    errors: int
    error_rate: float
    first_time: str | None = None
    last_time: str | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None


class Completeness(_Frozen):
    """How much of the card is written: the sections policy requires, and which are missing."""

    score: float = Field(ge=0, le=1)
    filled: int
    total: int
    required: list[str]
    missing: list[str]

    @property
    def complete(self) -> bool:
        """Return whether every required section is written."""
        return not self.missing


class BoundEvent(_Frozen):
    """An event the card was built from; ``imported`` when it is imported history."""

    seq: int
    action: str
    hash: str
    imported: bool = False


class CheckpointRef(_Frozen):
    """A signed checkpoint of the log."""

    size: int
    root: str
    note: str


class Binding(_Frozen):
    """What ties a printed card to the evidence: the log, its events, and a checkpoint."""

    origin: str
    size: int
    root: str
    events: list[BoundEvent]
    checkpoint: CheckpointRef | None = None

    @property
    def covered(self) -> bool:
        """Return whether the signed checkpoint covers every event the card was built from."""
        last = max((e.seq for e in self.events), default=-1)
        return self.checkpoint is not None and self.checkpoint.size > last


class ModelCard(_Frozen):
    """A model card for one version, built from the log plus the sections people wrote.

    Every item that comes from imported history says ``imported``, and
    ``imported_note`` then says what that means; ``gates`` are checked against
    live metrics only, as a deploy checks them, and a required section written
    only by imported history (``imported_sections``) is still missing.
    """

    card_schema: Literal["auditml-card/1"] = "auditml-card/1"
    model: str
    version: str
    status: str
    generated_at: str
    sections: HumanSections = Field(default_factory=HumanSections)
    section_events: dict[str, int] = Field(default_factory=dict)
    imported_sections: list[str] = Field(default_factory=list)
    training: Training | None = None
    datasets: list[CardDataset] = Field(default_factory=list)
    artifacts: list[CardArtifact] = Field(default_factory=list)
    metrics: list[CardMetric] = Field(default_factory=list)
    evaluations: list[CardEvaluation] = Field(default_factory=list)
    comparisons: list[CardComparison] = Field(default_factory=list)
    decisions: list[CardDecision] = Field(default_factory=list)
    gates: list[CardGate] = Field(default_factory=list)
    deployments: list[CardMove] = Field(default_factory=list)
    #: Where the version runs now, as the log's state says (a canary or shadow is marked so).
    running_in: list[str] = Field(default_factory=list)
    incidents: list[CardIncident] = Field(default_factory=list)
    production: list[CardServing] = Field(default_factory=list)
    metric_history: dict[str, list[tuple[str, float | None]]] = Field(default_factory=dict)
    completeness: Completeness
    binding: Binding
    imported_note: str | None = None

    def metric_values(self) -> dict[str, float]:
        """Return each metric's current value: training's, updated by later evaluations."""
        values: dict[str, float] = {}
        for metric in self.metrics:
            if metric.slice is None:
                values[metric.name] = metric.value
        return values

    def as_json(self) -> dict[str, Any]:
        """Return the card as plain JSON values (our own schema)."""
        return self.model_dump(mode="json")
