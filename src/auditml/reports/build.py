"""Build the audit report from the log in one streamed pass: decisions, not volume.

:func:`build_report` reads the events once, in ``seq`` order, up to the signed
checkpoint the report is built from, and keeps only what a reader needs:
every decision (train, approve, reject, deploy, rollback, retire, incident,
policy, key, card), and evaluations summarized per version. Memory grows with
the number of versions and decisions, never with the number of evaluations,
so a log of a million events gives a report of a few pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from auditml._version import __version__
from auditml.core.card_sections import SECTION_TITLES
from auditml.core.events import (
    DECISION_ACTIONS,
    IMPORTED_NOTE,
    LIFECYCLE_ACTIONS,
    PRIVACY_ACTIONS,
    Event,
    is_imported,
)
from auditml.core.incidents import IncidentIndex
from auditml.core.keys import SignatureEntry, signature_entry
from auditml.core.policy import DEFAULT_POLICY, Policy, policy_from
from auditml.core.privacy import (
    STORAGE_NOTES,
    PrivacyEntry,
    labelled,
    privacy_entry,
    schedule_rows,
)
from auditml.core.state import ModelState, VersionState, fold, numeric_metrics
from auditml.errors import ConfigurationError, InvalidInputError
from auditml.reports.model import (
    AuditReport,
    CardSummary,
    Checkpointed,
    ComparisonEntry,
    CrossReference,
    DecisionEntry,
    DocumentRef,
    EvaluationSummary,
    IncidentEntry,
    IntegrityAppendix,
    InventoryEntry,
    ModelIdentity,
    PartialCoverage,
    PrivacyLogEntry,
    ProcessingRecord,
    RetentionRule,
    RiskSummary,
    RolloutCheck,
    RolloutEntry,
    RolloutStep,
    RuntimeFinding,
    RuntimeRow,
    ScheduleEntry,
    TimelinePoint,
    TrainingEntry,
)

if TYPE_CHECKING:
    from auditml.core.signing import Checkpoint
    from auditml.log import AuditLog

__all__ = ["MAX_CHANGES", "build_report", "card_summary"]

Progress = Callable[[int, int], None]

#: The change history lists at most this many decisions; the rest travel in the bundle.
MAX_CHANGES = 5000
#: At most this many documents attached by hash are listed.
MAX_DOCUMENTS = 500
#: At most this many metrics per model are charted.
MAX_CHART_METRICS = 6
_EVERY = 20_000  # events between progress callbacks

_FOLDED = frozenset(LIFECYCLE_ACTIONS)  # the events a model's state (and card) is folded from
_DECISIONS = frozenset(DECISION_ACTIONS)
_PRIVACY = frozenset(PRIVACY_ACTIONS)
_WIDENING = ("rollout.promote", "model.deploy")  # a refused promotion is one of these
_DOC_RECORDS = frozenset({"model.train", "model.evaluate", "card.update", "policy.update"})


@dataclass
class _Evals:
    """A running summary of one version's evaluations."""

    count: int = 0
    first: str = ""
    last: str = ""
    evaluators: dict[str, None] = field(default_factory=dict)
    datasets: dict[str, None] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    imported: int = 0


@dataclass
class _Fold:
    """Everything kept while streaming the log once."""

    models: set[str] | None
    since: str | None
    states: dict[str, ModelState] = field(default_factory=dict)
    evals: dict[tuple[str, str], _Evals] = field(default_factory=dict)
    training: list[TrainingEntry] = field(default_factory=list)
    decisions: list[DecisionEntry] = field(default_factory=list)
    omitted: int = 0
    signatures: list[SignatureEntry] = field(default_factory=list)
    incidents: IncidentIndex = field(default_factory=IncidentIndex)
    documents: list[DocumentRef] = field(default_factory=list)
    retire_points: list[TimelinePoint] = field(default_factory=list)
    actors: set[str] = field(default_factory=set)
    privacy: list[PrivacyEntry] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    policy: Policy = DEFAULT_POLICY
    policy_seq: int | None = None
    first_time: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    read: int = 0
    in_window: int = 0
    imported: int = 0
    #: Rollout events (start, promote, and the deploy or rollback that ended one) and checks.
    rollout_events: list[tuple[int, Event]] = field(default_factory=list)

    def wants(self, model: str | None) -> bool:
        """Return whether an event about ``model`` (None: about the log) is in scope."""
        return model is None or self.models is None or model in self.models


def _comparisons(acc: _Fold, model: str, version: str) -> list[ComparisonEntry]:
    """Return the newest comparison with a baseline of each metric of a version."""
    state = acc.states.get(model)
    vs = None if state is None else state.versions.get(version)
    if vs is None:
        return []
    return [ComparisonEntry(**c.model_dump(), seq=seq) for seq, c in vs.comparisons.values()]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _decision(seq: int, event: Event) -> DecisionEntry:
    """Return one decision row from its event."""
    data = event.data
    subject = event.subject
    signature = data.get("signature")
    signed = None
    if isinstance(signature, dict):
        signed = f"{signature.get('name')} ({signature.get('meaning')})"
    planned = None
    tags = data.get("tags")
    if isinstance(tags, dict):
        planned = _text(tags.get("planned_change"))
    reason = _text(data.get("reason"))
    if event.action == "policy.denied":
        attempted, rule = data.get("attempted"), data.get("rule")
        reason = f"refused {attempted} by rule {rule}: {data.get('message')}"
    elif event.action == "incident.open":
        reason = f"{data.get('id')} ({data.get('severity')}): {data.get('summary')}"
    elif event.action == "incident.close":
        reason = f"{data.get('id')}: {data.get('resolution')}"
    elif event.action == "key.register":
        reason = reason or f"key of {data.get('name')} ({data.get('signer')})"
    elif event.action == "card.update":
        names = data.get("sections")
        listed = ", ".join(sorted(names)) if isinstance(names, dict) else ""
        reason = reason or f"card sections: {listed}"
    elif event.action == "model.train" and data.get("status") == "failed":
        reason = "training failed"
    return DecisionEntry(
        seq=seq,
        time=event.time,
        action=event.action,
        model=subject.get("model", ""),
        version=subject.get("version", ""),
        actor=event.actor.id,
        role=_text(data.get("role")),
        environment=_text(data.get("environment")),
        reason=reason,
        signed=signed,
        planned_change=planned,
        imported=is_imported(data),
    )


def _training(seq: int, event: Event) -> TrainingEntry:
    """Return one training row: code, data, environment, outputs."""
    data = event.data
    code = data.get("code")
    code_text = None
    if isinstance(code, dict) and code.get("commit"):
        code_text = str(code["commit"])[:12]
        if code.get("branch"):
            code_text += f" ({code['branch']})"
        if code.get("dirty"):
            code_text += ", uncommitted changes"
    datasets = []
    raw_sets = data.get("datasets")
    if isinstance(raw_sets, dict):
        for name, ref in raw_sets.items():
            if isinstance(ref, dict):
                digest = ref.get("sha256")
                tail = f" sha256 {digest}" if digest else ""  # whole: a reader compares it
                datasets.append(f"{name}: {ref.get('uri')}{tail}")
    env = data.get("environment")
    env_text = None
    if isinstance(env, dict):
        parts = [
            f"Python {env['python']}" if env.get("python") else "",
            str(env.get("platform") or ""),
        ]
        packages = env.get("packages")
        if isinstance(packages, dict) and packages:
            parts.append(f"{len(packages)} packages pinned")
        accelerators = env.get("accelerators")
        if isinstance(accelerators, list) and accelerators:
            parts.append(", ".join(str(a) for a in accelerators))
        env_text = "; ".join(p for p in parts if p) or None
    artifacts = []
    raw_artifacts = data.get("artifacts")
    if isinstance(raw_artifacts, dict):
        for name, ref in raw_artifacts.items():
            if isinstance(ref, dict):
                digest = ref.get("sha256")
                artifacts.append(f"{name}: sha256 {digest}" if digest else str(name))
    params = data.get("params")
    metrics = data.get("metrics")
    return TrainingEntry(
        seq=seq,
        time=event.time,
        model=event.subject.get("model", ""),
        version=event.subject.get("version", ""),
        actor=event.actor.id,
        status=str(data.get("status", "succeeded")),
        code=code_text,
        datasets=datasets,
        environment=env_text,
        base_model=_text(data.get("base_model")),
        parent_version=_text(data.get("parent_version")),
        params=len(params) if isinstance(params, dict) else 0,
        metrics=numeric_metrics(metrics),
        artifacts=artifacts,
        imported=is_imported(data),
    )


def _documents(seq: int, event: Event, acc: _Fold) -> None:
    """Record the documents an event attaches by hash (policy, card source, artifacts)."""
    if len(acc.documents) >= MAX_DOCUMENTS:
        return
    data = event.data
    model = event.subject.get("model")
    version = event.subject.get("version")
    if event.action in ("policy.update", "card.update"):
        kind = "policy" if event.action == "policy.update" else "model card source"
        name = _text(data.get("source")) or f"{kind} recorded at event {seq}"
        acc.documents.append(
            DocumentRef(
                seq=seq,
                time=event.time,
                kind=kind,
                name=name,
                sha256=_text(data.get("sha256")),
                model=model,
                version=version,
            )
        )
        return
    artifacts = data.get("artifacts")
    if not isinstance(artifacts, dict):
        return
    kind = "training output" if event.action == "model.train" else "test report"
    for name, ref in artifacts.items():
        if isinstance(ref, dict) and ref.get("sha256") and len(acc.documents) < MAX_DOCUMENTS:
            acc.documents.append(
                DocumentRef(
                    seq=seq,
                    time=event.time,
                    kind=kind,
                    name=f"{name}: {ref.get('uri')}",
                    sha256=str(ref["sha256"]),
                    model=model,
                    version=version,
                )
            )


def _feed(acc: _Fold, seq: int, event: Event) -> None:
    """Fold one event into the running report."""
    action = event.action
    model = event.subject.get("model")
    if model is not None:
        acc.seen.add(model)
    if not acc.wants(model):
        return
    acc.read += 1
    acc.imported += is_imported(event.data)
    acc.actors.add(event.actor.id)
    classes = ("log", "documentation") if action.startswith(("model.", "card.")) else ("log",)
    for klass in classes:
        acc.first_time.setdefault(klass, event.time)
        acc.counts[klass] = acc.counts.get(klass, 0) + 1
    if action == "policy.update" and not is_imported(event.data):  # imported: never in force
        raw = event.data.get("policy")
        if isinstance(raw, dict):
            # A policy the reader cannot parse leaves the last one in force.
            with suppress(InvalidInputError):
                acc.policy, acc.policy_seq = policy_from(raw), seq
    if model is not None and action in _FOLDED:
        state = acc.states.get(model)
        if state is None:
            state = acc.states[model] = ModelState(model)
        fold(model, ((seq, event),), state)
    if action in ("incident.open", "incident.close"):
        acc.incidents.apply(seq, event)
    if (
        action in ("rollout.start", "rollout.promote", "monitor.check")
        or (action in ("model.deploy", "model.rollback") and event.data.get("rollout") is not None)
        or (action == "policy.denied" and event.data.get("attempted") in _WIDENING)
    ):
        acc.rollout_events.append((seq, event))
    in_window = acc.since is None or event.time >= acc.since
    if not in_window:
        return
    acc.in_window += 1
    if action == "model.evaluate" and model is not None:
        version = event.subject.get("version", "")
        ev = acc.evals.get((model, version))
        if ev is None:
            ev = acc.evals[(model, version)] = _Evals(first=event.time)
        ev.count += 1
        ev.last = event.time
        if len(ev.evaluators) < 20:
            ev.evaluators.setdefault(event.actor.id, None)
        dataset = event.data.get("dataset")
        if isinstance(dataset, dict) and len(ev.datasets) < 10:
            ev.datasets.setdefault(str(dataset.get("uri")), None)
        ev.metrics.update(numeric_metrics(event.data.get("metrics")))
        ev.imported += is_imported(event.data)
        _documents(seq, event, acc)
        return
    if action in _PRIVACY:
        removal = privacy_entry(seq, event)
        if removal is not None:
            acc.privacy.append(removal)
        return
    if action not in _DECISIONS:
        return
    if action in _DOC_RECORDS:
        _documents(seq, event, acc)
    if action == "model.train":
        acc.training.append(_training(seq, event))
    if action == "model.retire" and model is not None:
        acc.retire_points.append(
            TimelinePoint(
                model=model,
                environment="(retired)",
                time=event.time,
                version=event.subject.get("version", ""),
                kind="retire",
                seq=seq,
            )
        )
    entry = signature_entry(seq, event)
    if entry is not None:
        acc.signatures.append(entry)
    if len(acc.decisions) < MAX_CHANGES:
        acc.decisions.append(_decision(seq, event))
    else:
        acc.omitted += 1


def card_summary(state: ModelState, vs: VersionState) -> CardSummary:
    """Return a version's model card in brief: its human sections and its metrics.

    The human sections are those in force for the version exactly as the full
    card (``auditml card``) shows them: ``card.update`` events for the model
    and for the version, in log order, a later one replacing what it names.
    The metrics come from the version's training and evaluations.
    """
    sections = state.card_sections(vs.version)
    return CardSummary(
        model=state.model,
        version=vs.version,
        state=vs.state,
        sections={
            name: sections[name][1] for name in [*SECTION_TITLES, *sections] if name in sections
        },
        metrics=dict(vs.metrics),
        evaluated=dict(vs.evaluated),
    )


def section_text(value: object) -> str:
    """Return a card section as one line of text: items by "; ", a named entry as "name (k: v)"."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(section_text(v) for v in value)
    if isinstance(value, dict):
        rest = ", ".join(
            f"{str(k).replace('_', ' ')}: {section_text(v)}"
            for k, v in value.items()
            if k != "name"
        )
        if "name" in value:
            name = section_text(value["name"])
            return f"{name} ({rest})" if rest else name
        return rest
    return "" if value is None else str(value)


def _checkpoint(log: AuditLog, allow_partial: bool) -> tuple[Checkpoint, PartialCoverage | None]:
    """Return a signed checkpoint at the head, or, when the key is absent, the latest kept one.

    A kept checkpoint older than the head leaves later events out of the report:
    that is refused unless ``allow_partial``, and then said in the report.
    """
    try:
        return log.checkpoint(), None
    except ConfigurationError as exc:
        latest = log.latest_checkpoint()
        if latest is None:
            raise ConfigurationError(
                f"a report is built from a signed checkpoint, and none can be signed: {exc}"
            ) from None
        head = log.head().size
        if latest.size >= head:
            return latest, None
        left_out = head - latest.size
        if not allow_partial:
            raise ConfigurationError(
                f"the log key is unavailable ({exc}), so no checkpoint can be signed at the "
                f"head (size {head:,}): a report now would cover only up to the checkpoint at "
                f"size {latest.size:,} and leave out the {left_out:,} later event(s). Make the "
                f"key available ($AUDITML_LOG_KEY, $AUDITML_KEY_PASSPHRASE), or pass "
                f"--allow-partial (allow_partial=True) to report up to size {latest.size:,} only"
            ) from None
        partial = PartialCoverage(
            checkpoint_size=latest.size,
            head_size=head,
            left_out=left_out,
            reason=f"the log key was unavailable: {exc}",
        )
        return latest, partial


def _incidents(acc: _Fold) -> list[IncidentEntry]:
    """Return the incidents in scope, each with its deadline and any rollback that followed."""
    found = []
    for incident in acc.incidents.incidents.values():
        if not acc.wants(incident.model):
            continue
        rollback = None
        state = acc.states.get(incident.model)
        for move in state.timeline if state else ():
            if move.seq <= incident.seq or move.action != "model.rollback":
                continue
            if incident.environment and move.environment != incident.environment:
                continue
            rollback = move
            break
        due = incident.due
        late = None
        if due is not None and incident.reported_at is not None:
            late = incident.reported_at > due[0]
        found.append(
            IncidentEntry(
                id=incident.id,
                seq=incident.seq,
                model=incident.model,
                version=incident.version,
                summary=incident.summary,
                severity=incident.severity,
                impact=incident.impact,
                environment=incident.environment,
                aware_at=incident.aware_at,
                report_due=None if due is None else due[0],
                report_clause=None if due is None else due[1],
                reported_at=incident.reported_at,
                reported_late=late,
                opened_by=incident.opened_by,
                closed_at=incident.closed_at,
                closed_by=incident.closed_by,
                resolution=incident.resolution,
                rollback_seq=None if rollback is None else rollback.seq,
                rollback_to=None if rollback is None else rollback.version,
            )
        )
    return found


def _series(state: ModelState) -> dict[str, list[tuple[str, float | None]]]:
    """Return each metric's value per version: evaluated values first, else training ones."""
    names: dict[str, None] = {}
    for vs in state.versions.values():
        for name in {**vs.metrics, **vs.evaluated}:
            names.setdefault(name, None)
    chosen = list(names)[:MAX_CHART_METRICS]
    return {
        name: [
            (vs.version, vs.evaluated.get(name, vs.metrics.get(name)))
            for vs in state.versions.values()
        ]
        for name in chosen
    }


def _split_text(split: dict[str, int], shadows: Sequence[str]) -> str:
    if len(split) == 1:
        text = f"v{next(iter(split))} 100%"
    else:
        text = " + ".join(f"v{v} {p}%" for v, p in split.items())
    return text + "".join(f" + v{v} shadow" for v in shadows)


def _rollouts(acc: _Fold, since: str | None) -> list[RolloutEntry]:
    """Return each rollout in scope: its split timeline, its monitor checks and how it ended."""
    splits = {
        (s.model, c.seq): c for s in acc.states.values() for c in s.splits if c.rollout is not None
    }
    found: dict[int, dict[str, Any]] = {}
    running: dict[tuple[str, str], int] = {}  # (model, environment) -> the rollout in progress
    for seq, event in acc.rollout_events:
        data, model = event.data, event.subject.get("model", "")
        env = str(data.get("environment"))
        if event.action == "policy.denied":
            start = running.get((model, env))
            entry = found.get(start) if start is not None else None
            if entry is not None and entry["version"] == event.subject.get("version"):
                entry["steps"].append(
                    RolloutStep(
                        seq=seq,
                        time=event.time,
                        action=f"promotion refused ({data.get('rule')})",
                        actor=event.actor.id,
                        reason=_text(data.get("message")),
                        split="unchanged",
                    )
                )
            continue
        said = seq if event.action == "rollout.start" else data.get("rollout")
        if not isinstance(said, int):
            continue
        start = said
        entry = found.get(start)
        if event.action == "rollout.start":
            entry = found[start] = {
                "model": model,
                "environment": str(data.get("environment")),
                "version": event.subject.get("version", ""),
                "stable": str(data.get("stable")),
                "mode": str(data.get("mode")),
                "seq": seq,
                "started": event.time,
                "started_by": event.actor.id,
                "outcome": "in progress",
                "imported": is_imported(event.data),
                "steps": [],
                "checks": [],
            }
        if entry is None:
            continue  # a rollout that began before the log's first event in scope
        if event.action == "monitor.check":
            counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
            window = data.get("window") if isinstance(data.get("window"), dict) else {}
            figures = data.get("statistics") if isinstance(data.get("statistics"), dict) else {}
            triggers = data.get("triggers") if isinstance(data.get("triggers"), list) else []
            assert isinstance(counts, dict) and isinstance(window, dict)
            assert isinstance(figures, dict) and isinstance(triggers, list)
            entry["checks"].append(
                RolloutCheck(
                    seq=seq,
                    time=event.time,
                    actor=event.actor.id,
                    verdict=str(data.get("verdict")),
                    since=str(window.get("since")),
                    until=str(window.get("until")),
                    canary_requests=int(counts.get("canary") or 0),  # type: ignore[arg-type]
                    stable_requests=int(counts.get("stable") or 0),  # type: ignore[arg-type]
                    min_requests=int(data.get("min_requests") or 0),  # type: ignore[arg-type]
                    statistics={
                        str(k): float(v) if isinstance(v, int | float) else None
                        for k, v in figures.items()
                    },
                    tripped=[
                        str(t.get("trigger"))
                        for t in triggers
                        if isinstance(t, dict) and t.get("tripped") is True
                    ],
                )
            )
            continue
        change = splits.get((model, seq))
        cause = data.get("cause") if isinstance(data.get("cause"), dict) else None
        evidence = data.get("evidence")
        step = RolloutStep(
            seq=seq,
            time=event.time,
            action=event.action,
            actor=event.actor.id,
            reason=_text(data.get("reason")),
            split=_split_text(change.split, change.shadows) if change else "",
            evidence=evidence if isinstance(evidence, dict) else None,
            cause_seq=cause.get("seq") if isinstance(cause, dict) else None,
            cause_hash=cause.get("hash") if isinstance(cause, dict) else None,
            automatic=cause is not None,
        )
        entry["steps"].append(step)
        if event.action == "rollout.start":
            running[(model, env)] = seq
        elif event.action in ("model.deploy", "model.rollback"):
            running.pop((model, env), None)
        if event.action == "model.deploy":
            entry["outcome"] = "promoted to all traffic"
        elif event.action == "model.rollback":
            entry["outcome"] = (
                f"rolled back automatically by {event.actor.id} (monitor check {step.cause_seq})"
                if step.automatic
                else f"rolled back by {event.actor.id}"
            )
            entry["checks"] = [
                c.model_copy(update={"acted_seq": seq}) if c.seq == step.cause_seq else c
                for c in entry["checks"]
            ]
    return [
        RolloutEntry(**entry)
        for entry in found.values()
        if since is None
        or entry["outcome"] == "in progress"
        or max([entry["started"], *(s.time for s in entry["steps"])]) >= since
    ]


def _identity(state: ModelState, acc: _Fold) -> ModelIdentity:
    """Return a model's identification, from its card sections and its first and last events."""
    sections: dict[str, Any] = {}
    for edit in state.card_edits:  # every version's sections, in log order: the latest wins
        sections.update(edit.sections)
    times = [vs.trained_at for vs in state.versions.values() if vs.trained_at]
    moves = [m.time for m in state.timeline]
    decided = [t for vs in state.versions.values() for t in _version_times(vs) if t is not None]
    purpose = sections.get("intended_use")
    owners = sections.get("owners")
    return ModelIdentity(
        model=state.model,
        intended_purpose=None if purpose is None else section_text(purpose),
        owner=None
        if not isinstance(owners, list)
        else ", ".join(str(o.get("name")) for o in owners if isinstance(o, dict)),
        risk_tier=None
        if sections.get("risk_rating") is None
        else section_text(sections["risk_rating"]),
        first_recorded=min(times) if times else None,
        last_change=max([*times, *moves, *decided]) if times or moves or decided else None,
        versions=len(state.versions),
    )


def _version_times(vs: VersionState) -> list[str | None]:
    return [
        *(a.time for a in vs.approvals),
        vs.rejected.time if vs.rejected else None,
        vs.retired.time if vs.retired else None,
    ]


def _inventory(state: ModelState, acc: _Fold) -> list[InventoryEntry]:
    rows = []
    for vs in state.versions.values():
        evals = acc.evals.get((state.model, vs.version))
        dates = [a.time for a in vs.approvals]
        if evals is not None:
            dates.append(evals.last)
        here = state.running_imported()
        rows.append(
            InventoryEntry(
                model=state.model,
                version=vs.version,
                state=vs.state,
                running_in=[_tag(env, env in here) for env in vs.running_in],
                trained_at=vs.trained_at,
                trained_by=[_tag(who, vs.trained_imported) for who in vs.trainers],
                approved_by=list(dict.fromkeys(_tag(a.actor, a.imported) for a in vs.approvals)),
                last_validation=max(dates) if dates else None,
                incidents=vs.incidents,
            )
        )
    return rows


def _tag(text: str, imported: bool) -> str:
    """Return ``text`` marked ``(imported)`` when it comes from imported history."""
    return f"{text} (imported)" if imported else text


CROSSREF: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "EU AI Act",
        "Art. 11",
        "technical documentation (Annex IV)",
        ("identification", "development", "validation", "card"),
    ),
    (
        "EU AI Act",
        "Art. 12",
        "automatic logging over the lifetime (events and runtime records)",
        ("changes", "monitoring", "integrity"),
    ),
    (
        "EU AI Act",
        "Art. 17",
        "quality management system",
        ("risk", "validation", "changes"),
    ),
    (
        "EU AI Act",
        "Art. 18",
        "keep documentation 10 years",
        ("data-protection",),
    ),
    (
        "EU AI Act",
        "Art. 19",
        "keep automatically generated logs",
        ("data-protection", "integrity"),
    ),
    (
        "EU AI Act",
        "Art. 72",
        "post-market monitoring (runtime records and their findings)",
        ("monitoring",),
    ),
    (
        "EU AI Act",
        "Art. 73",
        "serious incident reporting deadlines",
        ("monitoring",),
    ),
    (
        "EU AI Act",
        "Annex IV 1",
        "general description, versions",
        ("identification", "inventory"),
    ),
    (
        "EU AI Act",
        "Annex IV 2",
        "development, data, validation, tests",
        ("development", "validation"),
    ),
    (
        "EU AI Act",
        "Annex IV 3-4",
        "performance, limitations, oversight, risk",
        ("card", "risk"),
    ),
    (
        "Fed/OCC",
        "SR 26-2 (OCC Bulletin 2026-13; replaces SR 11-7)",
        "inventory, independent validation, change control",
        ("inventory", "validation", "changes", "risk"),
    ),
    (
        "21 CFR Part 11",
        "11.10(b),(e)",
        "secure, time-stamped audit trail; readable copies",
        ("changes", "integrity"),
    ),
    (
        "21 CFR Part 11",
        "11.10(f),(g)",
        "enforced sequence; authority checks",
        ("risk", "changes"),
    ),
    (
        "21 CFR Part 11",
        "11.50",
        "signature manifestations: name, time, meaning",
        ("signatures",),
    ),
    (
        "GDPR",
        "Art. 5(1)(e), 17, 30",
        "storage limitation, erasure, records",
        ("data-protection",),
    ),
    (
        "ISO/IEC 42001",
        "A.7.5",
        "data provenance",
        ("development",),
    ),
)


def _runtime(
    log: AuditLog, models: Sequence[str], since: str | None, until: str | None
) -> tuple[list[RuntimeRow], list[RuntimeFinding]]:
    """Return per version and environment what the runtime records say, and check's findings."""
    from auditml.serving import runtime_check, runtime_stats

    rows = [
        RuntimeRow(
            model=s.model,
            version=s.version,
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
        for s in runtime_stats(log, since=since, until=until)
        if s.model in models
    ]
    findings = [
        RuntimeFinding(
            kind=f.kind,
            model=f.model,
            version=f.version,
            environment=f.env,
            message=f.message,
            count=f.count,
            first_time=f.first_time,
            last_time=f.last_time,
            request_ids=f.request_ids,
        )
        for f in runtime_check(log)
        if f.model in models
    ]
    return rows, findings


def _crossref() -> list[CrossReference]:
    return [
        CrossReference(framework=f, clause=c, requirement=r, sections=list(s))
        for f, c, r, s in CROSSREF
    ]


def _retention(acc: _Fold) -> list[RetentionRule]:
    return [
        RetentionRule(
            record="technical documentation (training, evaluations, decisions, cards)",
            period="10 years after the system is placed on the market",
            basis="EU AI Act Art. 18",
            earliest=acc.first_time.get("documentation"),
            count=acc.counts.get("documentation", 0),
        ),
        RetentionRule(
            record="automatically generated logs (every event and its checkpoint)",
            period="at least 6 months",
            basis="EU AI Act Art. 19, 26(6)",
            earliest=acc.first_time.get("log"),
            count=acc.counts.get("log", 0),
        ),
    ]


def _data_protection(acc: _Fold) -> dict[str, Any]:
    """Return section 12's fields: schedule, record of processing, erasure and retention log."""
    policy = acc.policy
    rows = schedule_rows(policy.retention)
    processing = policy.processing
    return {
        "retention_schedule": [
            ScheduleEntry(
                data=r.kind,
                what=r.what,
                period=r.period,
                minimum=r.minimum,
                basis=r.basis,
                shorter_because=r.shorter_because,
            )
            for r in rows
        ],
        "retention_policy_seq": acc.policy_seq,
        "processing": ProcessingRecord(
            **processing.model_dump(),
            retention=[f"{r.kind}: {r.kept}" for r in rows],
            personal_fields=list(policy.personal_data.event_fields),
        ),
        "erasures": [
            PrivacyLogEntry(
                seq=e.seq,
                time=e.time,
                action=e.action,
                what=e.what,
                actor=e.actor,
                summary=e.summary(),
                values=e.values,
                records=e.records,
                kinds=dict(e.kinds),
                request=e.request,
            )
            for e in acc.privacy
        ],
    }


def _report_id(origin: str, cp: Checkpoint, models: Sequence[str], window: str) -> str:
    basis = f"{origin}\n{cp.size}\n{cp.root_hex}\n{','.join(models)}\n{window}"
    digest = hashlib.sha256(basis.encode()).hexdigest().upper()
    return f"AR-{digest[:4]}-{digest[4:8]}-{cp.size}"


def _signatures_checked(log: AuditLog) -> int:
    return log.verify_signatures()


def build_report(
    log: AuditLog,
    models: Sequence[str] = (),
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    progress: Progress | None = None,
    *,
    allow_partial: bool = False,
) -> AuditReport:
    """Build the audit report of ``models`` (default: all) between ``since`` and ``until``.

    The log is verified first and a signed checkpoint taken at its head; the
    report covers the events up to that checkpoint, so its integrity appendix
    and the evidence bundle attached to a PDF agree. When the log key is not at
    hand, only an older kept checkpoint can be used, which would leave later
    events out: that raises ConfigurationError unless ``allow_partial``, and the
    report then says so (``partial``) on its cover and in its JSON. ``since``
    limits the decisions listed; states are folded from the start of the log.
    ``progress(done, total)`` is called while the events stream.
    """
    from auditml.ledger import to_timestamp

    since_ts = None if since is None else to_timestamp(since)
    until_ts = None if until is None else to_timestamp(until)
    if since_ts is not None and until_ts is not None and until_ts <= since_ts:
        raise InvalidInputError(
            f"--until ({until_ts}) must be later than --since ({since_ts}); swap them or "
            "widen the window"
        )
    wanted = list(dict.fromkeys(str(m) for m in models))
    verified = log.verify(progress=progress)
    cp, partial = _checkpoint(log, allow_partial)
    acc = _Fold(models=set(wanted) or None, since=since_ts)
    total = cp.size
    directory = log.actors()  # the report names people while the actor directory knows them
    for record in log.events(until=until_ts, stop=cp.size):
        _feed(acc, record.seq, labelled(record.event, directory) if directory else record.event)
        if progress is not None and record.seq % _EVERY == 0:
            progress(record.seq, total)
    if progress is not None:
        progress(total, total)
    missing = [m for m in wanted if m not in acc.states]
    if missing:
        known = ", ".join(sorted(acc.seen)) or "none"
        raise InvalidInputError(
            f"no model {', '.join(repr(m) for m in missing)} on the log up to the checkpoint "
            f"at size {cp.size} (models recorded: {known})"
        )
    states = [acc.states[m] for m in (wanted or sorted(acc.states))]
    checkpointed = Checkpointed(origin=cp.origin, size=cp.size, root=cp.root_hex, note=cp.note)
    signatures = _signatures_checked(log)
    vkey = str(log.verifier_key())
    timeline = [
        TimelinePoint(
            model=s.model,
            environment=m.environment,
            time=m.time,
            version=m.version,
            kind="deploy" if m.action == "model.deploy" else "rollback",
            seq=m.seq,
        )
        for s in states
        for m in s.timeline
        if since_ts is None or m.time >= since_ts
    ]
    timeline.extend(p for p in acc.retire_points if acc.wants(p.model))
    denials = [d for d in acc.decisions if d.action == "policy.denied"]
    tiers = {
        s.model: ident.risk_tier
        for s in states
        if (ident := _identity(s, acc)).risk_tier is not None
    }
    runtime, findings = _runtime(log, [s.model for s in states], since_ts, until_ts)
    policy = acc.policy
    window = f"{since_ts or 'start'}..{until_ts or 'checkpoint'}"
    scope = ", ".join(wanted) if wanted else "all models"
    integrity = IntegrityAppendix(
        checkpoint=checkpointed,
        vkey=vkey,
        verified=True,
        result=(
            f"intact: {verified.size:,} events verified (hashes, links, Merkle root); "
            f"{signatures} e-signature(s) checked against the registered keys; the signed "
            f"checkpoint at size {cp.size} verifies with the log's key"
        ),
        signatures_checked=signatures,
        commands=[
            "auditml verify report.pdf",
            "auditml verify --bundle evidence-bundle.zip --vkey 'KEY'",
            "auditml verify --db URL",
        ],
    )
    return AuditReport(
        report_id=_report_id(log.origin, cp, wanted, window),
        title=f"Audit report: {scope}",
        generated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        auditml_version=__version__,
        origin=log.origin,
        models=[s.model for s in states],
        since=since_ts,
        until=until_ts,
        events_read=acc.read,
        events_in_window=acc.in_window,
        imported_events=acc.imported,
        imported_note=f"{acc.imported} event(s) in scope are imported: {IMPORTED_NOTE}"
        if acc.imported
        else None,
        checkpoint=checkpointed,
        partial=partial,
        signatures=acc.signatures,
        identities=[_identity(s, acc) for s in states],
        inventory=[row for s in states for row in _inventory(s, acc)],
        training=acc.training,
        evaluations=[
            EvaluationSummary(
                model=model,
                version=version,
                count=ev.count,
                first=ev.first,
                last=ev.last,
                evaluators=list(ev.evaluators),
                datasets=list(ev.datasets),
                metrics=ev.metrics,
                imported=ev.imported,
                comparisons=_comparisons(acc, model, version),
            )
            for (model, version), ev in acc.evals.items()
        ],
        approvals=[d for d in acc.decisions if d.action in ("model.approve", "model.reject")],
        cards=[card_summary(s, vs) for s in states for vs in s.versions.values()],
        risk=RiskSummary(
            policy_seq=acc.policy_seq,
            separation_of_duties=policy.separation_of_duties,
            require_signatures=(
                ("all decisions" if policy.require_signatures else "none")
                if isinstance(policy.require_signatures, bool)
                else ", ".join(policy.require_signatures)
            ),
            approvals=dict(policy.approvals),
            gates={k: list(v) for k, v in policy.gates.items()},
            risk_tiers=tiers,
            denials=denials,
        ),
        changes=acc.decisions,
        changes_omitted=acc.omitted,
        incidents=_incidents(acc),
        rollouts=_rollouts(acc, since_ts),
        runtime=runtime,
        runtime_findings=findings,
        timeline=timeline,
        metric_series={s.model: _series(s) for s in states},
        documents=acc.documents,
        retention=_retention(acc),
        identities_named=len(acc.actors),
        storage_note=STORAGE_NOTES.get(log.store.dialect),
        **_data_protection(acc),
        integrity=integrity,
        crossref=_crossref(),
    )
