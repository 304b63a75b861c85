"""Building a model card from the log: one read of the model's events, folded into a ModelCard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from auditml.core.card import (
    SECTION_TITLES,
    Binding,
    BoundEvent,
    CardArtifact,
    CardComparison,
    CardDataset,
    CardDecision,
    CardEvaluation,
    CardGate,
    CardIncident,
    CardMetric,
    CardMove,
    CardServing,
    CardSignature,
    CheckpointRef,
    Completeness,
    HumanSections,
    ModelCard,
    Training,
    filled_sections,
)
from auditml.core.events import (
    IMPORTED_NOTE,
    INCIDENT_ACTIONS,
    LIFECYCLE_ACTIONS,
    Comparison,
    DatasetRef,
    EvaluateData,
    TrainData,
    is_imported,
)
from auditml.core.incidents import IncidentIndex
from auditml.core.policy import Policy, parse_gate
from auditml.core.privacy import labelled
from auditml.core.state import ModelState, fold
from auditml.errors import InvalidInputError

if TYPE_CHECKING:
    from auditml.core.signing import Checkpoint
    from auditml.ledger import Head, Record
    from auditml.log import AuditLog

__all__ = ["CARD_ACTIONS", "build_card", "card_from_records"]

#: The actions a card is built from.
CARD_ACTIONS = tuple(dict.fromkeys((*LIFECYCLE_ACTIONS, *INCIDENT_ACTIONS)))
_DECISIONS = {"model.approve": "approve", "model.reject": "reject", "model.retire": "retire"}


def build_card(
    log: AuditLog, model: str, version: str, *, now: datetime | None = None
) -> ModelCard:
    """Return the card of ``model`` ``version`` as the log tells it now."""
    records = list(log.events(model=model, action=CARD_ACTIONS))
    directory = log.actors()
    if directory:  # the card names people, not pseudonyms, while the directory knows them
        records = [replace(r, event=labelled(r.event, directory)) for r in records]
    policy, _ = log.policy()
    return card_from_records(
        records,
        model=model,
        version=str(version),
        policy=policy,
        head=log.head(),
        checkpoint=log.latest_checkpoint(),
        now=now,
        production=_production(log, model, str(version)),
    )


def _production(log: AuditLog, model: str, version: str) -> list[CardServing]:
    """Return where ``version`` served, per environment, from its runtime records."""
    from auditml.serving import runtime_stats

    return [
        CardServing(
            environment=s.env,
            requests=s.requests,
            errors=s.errors,
            error_rate=s.error_rate,
            first_time=s.first_time,
            last_time=s.last_time,
            latency_p50_ms=s.latency_ms["p50"],
            latency_p95_ms=s.latency_ms["p95"],
            latency_p99_ms=s.latency_ms["p99"],
        )
        for s in runtime_stats(log, model=model)
        if s.version == version
    ]


def card_from_records(
    records: Sequence[Record],
    *,
    model: str,
    version: str,
    policy: Policy,
    head: Head,
    checkpoint: Checkpoint | None,
    now: datetime | None = None,
    production: Sequence[CardServing] = (),
) -> ModelCard:
    """Fold a model's records (seq order) into the card of one version: pure, no I/O.

    ``production`` says where the version served, from its runtime records.
    """
    state = fold(model, ((r.seq, r.event) for r in records))
    if not state.versions:
        raise InvalidInputError(
            f"no model {model!r} on the log: record a training run for it first"
        )
    vs = state.version(version)
    bound: list[Record] = []
    training: Training | None = None
    datasets: list[CardDataset] = []
    artifacts: list[CardArtifact] = []
    metrics: dict[tuple[str, str | None], CardMetric] = {}
    evaluations: list[CardEvaluation] = []
    comparisons: list[CardComparison] = []
    decisions: list[CardDecision] = []
    moves: list[CardMove] = []
    incidents = IncidentIndex()
    sections = state.card_sections(version)
    section_seqs = {seq for seq, _ in sections.values()}
    for record in records:
        event = record.event
        data = event.data
        mine = event.subject.get("version") == version
        if event.action == "card.update":
            if record.seq in section_seqs:
                bound.append(record)
        elif event.action in ("model.deploy", "model.rollback"):
            if mine or data.get("replaces") == version:
                bound.append(record)
                moves.append(_move(record))
        elif not mine:
            continue
        elif event.action == "model.train" and record.seq == vs.trained_seq:
            bound.append(record)
            run = TrainData.model_validate(data)
            training = _training(record, run)
            datasets += [
                CardDataset(name=name, use="training", ref=ref, seq=record.seq)
                for name, ref in run.datasets.items()
            ]
            artifacts = [CardArtifact(name=name, ref=ref) for name, ref in run.artifacts.items()]
            for name, value in run.metrics.items():
                metrics[(name, None)] = CardMetric(
                    name=name,
                    value=float(value),
                    source="training",
                    seq=record.seq,
                    imported=is_imported(data),
                )
        elif event.action == "model.evaluate":
            bound.append(record)
            evaluation = EvaluateData.model_validate(data)
            evaluations.append(_evaluation(record, evaluation))
            marked = evaluation.imported is not None
            comparisons += [
                CardComparison(
                    **c.model_dump(),
                    seq=record.seq,
                    time=event.time,
                    actor=event.actor.id,
                    examples=evaluation.examples,
                    imported=marked,
                )
                for c in evaluation.comparisons
            ]
            ds = evaluation.dataset
            if ds is not None:
                name = f"evaluation {len(evaluations)}"
                datasets.append(CardDataset(name=name, use="evaluation", ref=ds, seq=record.seq))
            for metric, value in evaluation.metrics.items():
                metrics[(metric, None)] = _metric(record.seq, metric, value, ds, imported=marked)
            for slice_name, values in evaluation.slices.items():
                for metric, value in values.items():
                    metrics[(metric, slice_name)] = _metric(
                        record.seq, metric, value, ds, slice_name, imported=marked
                    )
        elif event.action in _DECISIONS:
            bound.append(record)
            decisions.append(_decision(record))
        elif event.action in INCIDENT_ACTIONS:
            bound.append(record)
            incidents.apply(record.seq, event)
    human = HumanSections.model_validate({name: value for name, (_, value) in sections.items()})
    live = state.card_sections(version, live=True)
    imported_seqs = {edit.seq for edit in state.card_edits if edit.imported}
    values = {**vs.metrics, **vs.evaluated}
    imported = sum(is_imported(r.event.data) for r in bound)
    return ModelCard(
        model=model,
        version=version,
        status=vs.state,
        generated_at=(now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        sections=human,
        section_events={name: seq for name, (seq, _) in sections.items()},
        imported_sections=[name for name, (seq, _) in sections.items() if seq in imported_seqs],
        training=training,
        datasets=datasets,
        artifacts=artifacts,
        metrics=list(metrics.values()),
        evaluations=evaluations,
        comparisons=comparisons,
        decisions=decisions,
        gates=_gates(policy, vs.gate_metrics(), vs.live_comparisons),
        deployments=moves,
        running_in=[
            *vs.running_in,
            *(f"{env} (canary)" for env in vs.canary_in),
            *(f"{env} (shadow)" for env in vs.shadow_in),
        ],
        incidents=[_incident(i) for i in incidents.incidents.values()],
        production=list(production),
        metric_history=_history(state, values),
        completeness=_completeness(
            human, policy, HumanSections.model_validate({n: v for n, (_, v) in live.items()})
        ),
        binding=Binding(
            origin=head.origin,
            size=head.size,
            root=head.root,
            events=[
                BoundEvent(
                    seq=r.seq,
                    action=r.event.action,
                    hash=r.hash,
                    imported=is_imported(r.event.data),
                )
                for r in bound
            ],
            checkpoint=None
            if checkpoint is None
            else CheckpointRef(
                size=checkpoint.size, root=checkpoint.root_hex, note=checkpoint.note
            ),
        ),
        imported_note=f"{imported} of these events are imported: {IMPORTED_NOTE}"
        if imported
        else None,
    )


def _training(record: Record, run: TrainData) -> Training:
    env = run.environment
    return Training(
        seq=record.seq,
        status=run.status,
        time=record.event.time,
        trained_by=record.event.actor.id,
        started_at=run.started_at,
        ended_at=run.ended_at,
        duration_s=run.duration_s,
        code=run.code,
        python=env.python if env else None,
        platform=env.platform if env else None,
        packages=dict(env.packages) if env else {},
        accelerators=list(env.accelerators) if env else [],
        params=dict(run.params),
        tags=dict(run.tags),
        parent_version=run.parent_version,
        base_model=run.base_model,
        error=None if run.error is None else f"{run.error.type}: {run.error.message}",
        imported=run.imported is not None,
    )


def _metric(
    seq: int,
    name: str,
    value: float,
    ds: DatasetRef | None,
    slice_name: str | None = None,
    *,
    imported: bool = False,
) -> CardMetric:
    return CardMetric(
        name=name,
        value=float(value),
        source="evaluation",
        seq=seq,
        dataset=None if ds is None else ds.uri,
        split=None if ds is None else ds.split,
        slice=slice_name,
        imported=imported,
    )


def _evaluation(record: Record, evaluation: EvaluateData) -> CardEvaluation:
    return CardEvaluation(
        seq=record.seq,
        time=record.event.time,
        actor=record.event.actor.id,
        dataset=evaluation.dataset,
        metrics={k: float(v) for k, v in evaluation.metrics.items()},
        slices={s: {k: float(v) for k, v in m.items()} for s, m in evaluation.slices.items()},
        notes=evaluation.notes,
        imported=evaluation.imported is not None,
    )


def _decision(record: Record) -> CardDecision:
    data: dict[str, Any] = record.event.data
    sig = data.get("signature")
    return CardDecision(
        seq=record.seq,
        time=record.event.time,
        action=_DECISIONS[record.event.action],
        actor=record.event.actor.id,
        role=data.get("role"),
        reason=data.get("reason"),
        environments=list(data.get("environments") or []),
        imported=is_imported(data),
        signature=None
        if not isinstance(sig, dict)
        else CardSignature(
            name=sig["name"],
            signer=sig["signer"],
            meaning=sig["meaning"],
            signed_at=sig["time"],
            key=sig["key"],
        ),
    )


def _move(record: Record) -> CardMove:
    data: dict[str, Any] = record.event.data
    return CardMove(
        seq=record.seq,
        time=record.event.time,
        action="deploy" if record.event.action == "model.deploy" else "rollback",
        environment=str(data["environment"]),
        version=str(record.event.subject.get("version")),
        replaces=data.get("replaces"),
        actor=record.event.actor.id,
        reason=data.get("reason"),
        imported=is_imported(data),
    )


def _incident(incident: Any) -> CardIncident:
    due = incident.due
    return CardIncident(
        id=incident.id,
        seq=incident.seq,
        severity=incident.severity,
        summary=incident.summary,
        aware_at=incident.aware_at,
        environment=incident.environment,
        report_due=None if due is None else due[0],
        closed_at=incident.closed_at,
        resolution=incident.resolution,
    )


def _gates(
    policy: Policy, values: dict[str, float], comparisons: dict[str, tuple[int, Comparison]]
) -> list[CardGate]:
    """Check every gate of the policy in force against the live metrics and comparisons."""
    found = []
    for environment, texts in policy.gates.items():
        for gate in map(parse_gate, texts):
            recorded = comparisons.get(gate.compared) if gate.level is not None else None
            interval = None if recorded is None else recorded[1].interval(gate.level or 0)
            found.append(
                CardGate(
                    environment=environment,
                    gate=str(gate),
                    value=values.get(gate.metric)
                    if gate.level is None
                    else (None if recorded is None else gate.bound(recorded[1])),
                    passed=gate.passes(values, comparisons),
                    interval=None if interval is None else (interval.low, interval.high),
                    baseline=None if recorded is None else recorded[1].baseline,
                    seq=None if recorded is None else recorded[0],
                )
            )
    return found


def _history(
    state: ModelState, current: dict[str, float]
) -> dict[str, list[tuple[str, float | None]]]:
    """Return each of this version's metrics across every version, in training order."""
    per_version = {v: {**vs.metrics, **vs.evaluated} for v, vs in state.versions.items()}
    return {name: [(v, values.get(name)) for v, values in per_version.items()] for name in current}


def _completeness(sections: HumanSections, policy: Policy, live: HumanSections) -> Completeness:
    """Count the sections written; a required one is missing until it is written live.

    Imported sections are shown, but complete nothing, as they do not for a deploy.
    """
    filled = filled_sections(sections)
    required = list(policy.cards.required)
    written_live = filled_sections(live)
    missing = [name for name in required if name not in written_live]
    score = 1.0 if not required else (len(required) - len(missing)) / len(required)
    return Completeness(
        score=round(score, 4),
        filled=len(filled),
        total=len(SECTION_TITLES),
        required=required,
        missing=missing,
    )
