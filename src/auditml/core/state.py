"""The state of each model, folded from its lifecycle events alone (pure).

Imported history shows in every state and history, but only live evidence
counts toward a rule a live decision must meet; see :mod:`auditml.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from pydantic import ValidationError

from auditml.core.canonical import loads_strict
from auditml.core.events import (
    Comparison,
    Event,
    is_imported,
)
from auditml.core.policy import (
    DEFAULT_POLICY,
    Policy,
    person_of,
    policy_from,
)
from auditml.errors import (
    InvalidInputError,
    VerificationError,
)

__all__ = [
    "Approval",
    "CardEdit",
    "Decision",
    "ModelState",
    "Move",
    "Rollout",
    "SplitChange",
    "VersionState",
    "fold",
    "numeric_metrics",
    "parse",
    "parse_found",
    "policy_at",
    "policy_in_force",
    "states",
]


@dataclass(frozen=True, slots=True)
class Approval:
    """One approval: who, when, for which environments (empty: any), and if it was imported."""

    seq: int
    time: str
    actor: str
    environments: tuple[str, ...]
    role: str | None
    imported: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """A rejection or retirement: who, when and why."""

    seq: int
    time: str
    actor: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class CardEdit:
    """One ``card.update``: the sections it wrote, for one version or (None) the whole model."""

    seq: int
    version: str | None
    sections: dict[str, Any]
    imported: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    """One deploy or rollback: a version starting to run in an environment (maybe imported)."""

    seq: int
    time: str
    action: str
    environment: str
    version: str
    replaces: str | None
    actor: str
    reason: str | None
    imported: bool = False


@dataclass(frozen=True, slots=True)
class Rollout:
    """A rollout in progress: a version beside the stable one, as a canary or a shadow.

    ``seq`` and ``time`` are its ``rollout.start`` event's; ``traffic`` is the
    canary's share now (0 for a shadow); ``imported`` marks one started by
    imported history, which no live decision or monitor acts on.
    """

    seq: int
    time: str
    environment: str
    version: str
    stable: str
    mode: str
    traffic: int
    actor: str
    imported: bool = False
    #: When it began to answer real traffic as a canary (None while a shadow): the
    #: evidence a promotion needs counts from here, never from its shadow days.
    serving_since: str | None = None

    def split(self) -> dict[str, int]:
        """Return the share of traffic each version serves, in percent."""
        if self.mode == "shadow":
            return {self.stable: 100}
        return {self.stable: 100 - self.traffic, self.version: self.traffic}

    def shadows(self) -> list[str]:
        """Return the versions serving copies of traffic whose answers are not used."""
        return [self.version] if self.mode == "shadow" else []


@dataclass(frozen=True, slots=True)
class SplitChange:
    """One change of what serves an environment, and the split in force after it.

    Every deploy, rollback, rollout start and promotion is one; ``split`` maps
    each serving version to its percent of traffic and ``shadows`` lists the
    versions on copies of traffic. ``rollout`` names the ``rollout.start`` it
    belongs to; ``cause`` the ``monitor.check`` behind an automatic rollback.
    """

    seq: int
    time: str
    action: str
    environment: str
    version: str
    replaces: str | None
    actor: str
    reason: str | None
    split: dict[str, int]
    shadows: list[str]
    rollout: int | None = None
    cause: int | None = None
    imported: bool = False


@dataclass
class VersionState:
    """What the log says about one version of a model.

    ``metrics``, ``evaluated``, ``approvals`` and ``ran_in`` include imported
    history; ``live_metrics``, ``live_evaluated`` and ``ran_live`` hold only
    live evidence, which is what the rules check (see the module docstring).
    """

    version: str
    status: str = "trained"
    trained_at: str | None = None
    trained_seq: int | None = None
    trainers: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    evaluated: dict[str, float] = field(default_factory=dict)
    approvals: list[Approval] = field(default_factory=list)
    rejected: Decision | None = None
    retired: Decision | None = None
    running_in: list[str] = field(default_factory=list)
    ran_in: list[str] = field(default_factory=list)
    incidents: int = 0
    trained_imported: bool = False
    live_metrics: dict[str, float] = field(default_factory=dict)
    live_evaluated: dict[str, float] = field(default_factory=dict)
    ran_live: list[str] = field(default_factory=list)
    #: metric -> (seq, newest comparison of it with a baseline); ``live_``: live evaluations only.
    comparisons: dict[str, tuple[int, Comparison]] = field(default_factory=dict)
    live_comparisons: dict[str, tuple[int, Comparison]] = field(default_factory=dict)
    canary_in: list[str] = field(default_factory=list)
    shadow_in: list[str] = field(default_factory=list)

    @property
    def live_approvals(self) -> list[Approval]:
        """Return the approvals made on this log, not imported: the ones rules count."""
        return [a for a in self.approvals if not a.imported]

    def gate_metrics(self) -> dict[str, float]:
        """Return the live metrics the gates check: live training's, updated by live evaluations."""
        return {**self.live_metrics, **self.live_evaluated}

    @property
    def state(self) -> str:
        """Return the state in one word: retired, deployed, canary, shadow, rejected, ...

        approved, failed or trained. A canary or a shadow serves beside the stable version.
        """
        if self.retired is not None:
            return "retired"
        if self.running_in:
            return "deployed"
        if self.canary_in:
            return "canary"
        if self.shadow_in:
            return "shadow"
        if self.rejected is not None:
            return "rejected"
        if self.status == "failed":
            return "failed"
        if self.approvals:
            return "approved"
        return "trained"

    def approvers_for(
        self,
        environment: str,
        *,
        exclude: Sequence[str] = (),
        people: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Return the distinct live approvers whose approval covers ``environment``.

        Imported approvals are left out: they never count toward a deploy.
        ``people`` says who each pseudonym is, so one person under two ids counts once.
        """
        found: list[str] = []
        seen = {person_of(who, people) for who in exclude}
        for approval in self.live_approvals:
            if approval.environments and environment not in approval.environments:
                continue
            who = person_of(approval.actor, people)
            if who in seen:
                continue
            seen.add(who)
            found.append(approval.actor)
        return found

    def as_dict(self) -> dict[str, Any]:
        """Return the version's state as plain JSON-able values."""
        return {
            "version": self.version,
            "state": self.state,
            "training": self.status,
            "trained_at": self.trained_at,
            "trained_by": self.trainers,
            "approved_by": [a.actor for a in self.approvals],
            "approved_by_imported": [a.actor for a in self.approvals if a.imported],
            "trained_imported": self.trained_imported,
            "rejected_by": self.rejected.actor if self.rejected else None,
            "retired_by": self.retired.actor if self.retired else None,
            "running_in": self.running_in,
            "canary_in": self.canary_in,
            "shadow_in": self.shadow_in,
            "metrics": self.metrics,
            "evaluated_metrics": self.evaluated,
            "incidents": self.incidents,
        }


@dataclass
class ModelState:
    """A model's versions, what runs in each environment, and its deployment timeline."""

    model: str
    versions: dict[str, VersionState] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)
    timeline: list[Move] = field(default_factory=list)
    card_edits: list[CardEdit] = field(default_factory=list)
    rollouts: dict[str, Rollout] = field(default_factory=dict)
    splits: list[SplitChange] = field(default_factory=list)
    #: How many of ``versions`` next_version has read, and the largest integer among them.
    _numbered: list[int] = field(
        default_factory=lambda: [0, 0], init=False, repr=False, compare=False
    )

    def split(self, environment: str) -> dict[str, int]:
        """Return the share of ``environment``'s traffic each version serves now, in percent."""
        rollout = self.rollouts.get(environment)
        if rollout is not None:
            return rollout.split()
        running = self.running.get(environment)
        return {} if running is None else {running: 100}

    def shadows(self, environment: str) -> list[str]:
        """Return the versions serving copies of ``environment``'s traffic now."""
        rollout = self.rollouts.get(environment)
        return rollout.shadows() if rollout is not None else []

    def split_history(self, environment: str | None = None) -> list[SplitChange]:
        """Return every change of the split, optionally of one environment, oldest first."""
        return [c for c in self.splits if environment is None or c.environment == environment]

    def serving_at(self, environment: str, when: str) -> tuple[dict[str, int], list[str]]:
        """Return the split and the shadows in force in ``environment`` at time ``when``."""
        found: tuple[dict[str, int], list[str]] = ({}, [])
        for change in self.splits:
            if change.environment == environment and change.time <= when:
                found = (change.split, change.shadows)
        return found

    def card_sections(self, version: str, *, live: bool = False) -> dict[str, tuple[int, Any]]:
        """Return the human card sections in force for ``version``, each with the seq that set it.

        Updates for the whole model and for this version apply in log order; a
        later update replaces the sections it names. With ``live``, imported
        updates are left out (what a card-completeness rule may count).
        """
        found: dict[str, tuple[int, Any]] = {}
        for edit in self.card_edits:
            if live and edit.imported:
                continue
            if edit.version is None or edit.version == version:
                found.update({name: (edit.seq, value) for name, value in edit.sections.items()})
        return found

    def version(self, version: str) -> VersionState:
        """Return a version's state, or raise InvalidInputError naming the known ones."""
        found = self.versions.get(version)
        if found is None:
            known = ", ".join(self.versions) or "none yet"
            raise InvalidInputError(
                f"model {self.model!r} has no version {version!r} on the log "
                f"(known versions: {known})"
            )
        return found

    def next_version(self) -> str:
        """Return the next free integer version: one more than the largest so far.

        Versions are only ever added (in log order), so only those added since the last
        call are read; a dict that shrank is read again from the start.
        """
        seen, top = self._numbered
        if len(self.versions) < seen:
            seen, top = 0, 0
        for version in islice(self.versions, seen, None):
            if version.isdigit():
                top = max(top, int(version))
        self._numbered[:] = [len(self.versions), top]
        return str(top + 1)

    def history(self, environment: str | None = None) -> list[Move]:
        """Return the deploys and rollbacks, optionally of one environment, oldest first."""
        return [m for m in self.timeline if environment is None or m.environment == environment]

    def running_imported(self) -> list[str]:
        """Return the environments whose current version was put there by imported history."""
        last: dict[str, Move] = {}
        for move in self.timeline:
            last[move.environment] = move
        return sorted(env for env, move in last.items() if move.imported)

    def live_running(self) -> dict[str, str]:
        """Return the version the last live deploy or rollback put in each environment.

        Imported history may show another version there since, but it never
        took a live run out of an environment.
        """
        return {m.environment: m.version for m in self.timeline if not m.imported}

    def as_dict(self) -> dict[str, Any]:
        """Return the model's state as plain JSON-able values."""
        return {
            "model": self.model,
            "running": dict(sorted(self.running.items())),
            "running_imported": self.running_imported(),
            "splits": {env: self.split(env) for env in sorted(self.running)},
            "shadows": {
                env: self.shadows(env) for env in sorted(self.rollouts) if self.shadows(env)
            },
            "versions": [v.as_dict() for v in self.versions.values()],
        }


def fold(
    model: str, events: Iterable[tuple[int, Event]], state: ModelState | None = None
) -> ModelState:
    """Fold a model's lifecycle events, in ``seq`` order, into its state.

    Given ``state``, the events are folded on top of it (they must come after
    the events it was folded from) and it is returned, updated in place.
    """
    state = ModelState(model) if state is None else state
    for seq, event in events:
        version = event.subject.get("version")
        imported = is_imported(event.data)
        if event.action == "card.update":
            sections = event.data.get("sections")
            if isinstance(sections, dict):
                state.card_edits.append(CardEdit(seq, version, sections, imported))
            continue
        if version is None:
            continue
        data = event.data
        actor = event.actor.id
        if event.action == "model.train":
            vs = state.versions.setdefault(version, VersionState(version))
            if imported and vs.trained_seq is not None and not vs.trained_imported:
                # An imported run never replaces a live one; its trainer still may not approve.
                if actor not in vs.trainers:
                    vs.trainers.append(actor)
                continue
            if vs.status == "succeeded" and data.get("status") == "failed":
                continue  # a failed retry does not undo a good run
            vs.status = str(data.get("status", "succeeded"))
            vs.trained_at = event.time
            vs.trained_seq = seq
            vs.trained_imported = imported
            if actor not in vs.trainers:
                vs.trainers.append(actor)
            vs.metrics.update(numeric_metrics(data.get("metrics")))
            if not imported:
                vs.live_metrics.update(numeric_metrics(data.get("metrics")))
            continue
        vs_or_none = state.versions.get(version)
        if vs_or_none is None:
            continue  # a decision about a version never trained here: nothing to fold
        vs = vs_or_none
        reason = data.get("reason")
        reason = reason if isinstance(reason, str) else None
        if event.action == "model.approve":
            envs = data.get("environments") or []
            role = data.get("role")
            vs.approvals.append(
                Approval(
                    seq,
                    event.time,
                    actor,
                    tuple(str(e) for e in envs) if isinstance(envs, list) else (),
                    role if isinstance(role, str) else None,
                    imported,
                )
            )
        elif event.action == "model.reject":
            vs.rejected = Decision(seq, event.time, actor, reason)
        elif event.action == "model.retire":
            vs.retired = Decision(seq, event.time, actor, reason)
        elif event.action == "incident.open":
            vs.incidents += 1
        elif event.action == "model.evaluate":
            vs.evaluated.update(numeric_metrics(data.get("metrics")))
            compared = _comparisons(seq, data.get("comparisons"))
            vs.comparisons.update(compared)
            if not imported:
                vs.live_evaluated.update(numeric_metrics(data.get("metrics")))
                vs.live_comparisons.update(compared)
        elif event.action in ("rollout.start", "rollout.promote"):
            _fold_rollout(state, vs, seq, event, imported)
        elif event.action in ("model.deploy", "model.rollback"):
            env = str(data.get("environment"))
            ended = state.rollouts.get(env)
            if _live_rollout_kept(ended, imported):
                ended = None
            else:
                _end_rollout(state, env)
            running = state.running.get(env)
            if running is not None and running in state.versions:
                old = state.versions[running]
                if env in old.running_in:
                    old.running_in.remove(env)
            replaced = running
            if ended is not None and event.action == "model.rollback":
                replaced = ended.version  # the rollback ended the rollout: the canary left
            state.running[env] = version
            vs.running_in.append(env)
            if env not in vs.ran_in:
                vs.ran_in.append(env)
            if not imported and env not in vs.ran_live:
                vs.ran_live.append(env)
            state.timeline.append(
                Move(seq, event.time, event.action, env, version, replaced, actor, reason, imported)
            )
            cause = data.get("cause")
            rollout = data.get("rollout")
            state.splits.append(
                SplitChange(
                    seq,
                    event.time,
                    event.action,
                    env,
                    version,
                    replaced,
                    actor,
                    reason,
                    {version: 100},
                    [],
                    rollout if isinstance(rollout, int) else None,
                    _cause_seq(cause),
                    imported,
                )
            )
    return state


def _comparisons(seq: int, raw: object) -> dict[str, tuple[int, Comparison]]:
    """Return an evaluation's comparisons by metric; a malformed one is left out."""
    found: dict[str, tuple[int, Comparison]] = {}
    for item in raw if isinstance(raw, list) else []:
        try:
            comparison = Comparison.model_validate(item)
        except ValidationError:
            continue
        found[comparison.metric] = (seq, comparison)
    return found


def _cause_seq(cause: object) -> int | None:
    """Return the seq of the check a rollback names as its cause, if it names one."""
    if isinstance(cause, dict) and isinstance(cause.get("seq"), int):
        return int(cause["seq"])
    return None


def _live_rollout_kept(rollout: Rollout | None, imported: bool) -> bool:
    """Return whether an imported event leaves ``rollout`` alone: a live one stays in force."""
    return imported and rollout is not None and not rollout.imported


def _end_rollout(state: ModelState, environment: str) -> None:
    """End the rollout in ``environment``, if any: its version no longer serves there."""
    rollout = state.rollouts.pop(environment, None)
    if rollout is None:
        return
    vs = state.versions.get(rollout.version)
    if vs is not None:
        for held in (vs.canary_in, vs.shadow_in):
            if environment in held:
                held.remove(environment)


def _fold_rollout(
    state: ModelState, vs: VersionState, seq: int, event: Event, imported: bool
) -> None:
    """Fold a ``rollout.start`` or ``rollout.promote`` into the rollouts and the split timeline."""
    data = event.data
    env = str(data.get("environment"))
    traffic = data.get("traffic")
    share = traffic if isinstance(traffic, int) else 0
    said = data.get("reason")
    reason = said if isinstance(said, str) else None
    # Imported history never changes a live rollout in force: the split timeline
    # still shows what it says, marked imported, but decisions and the monitor
    # keep acting on the rollout auditml recorded.
    kept = _live_rollout_kept(state.rollouts.get(env), imported)
    if event.action == "rollout.start":
        stable = data.get("stable")
        mode = "shadow" if data.get("mode") == "shadow" else "canary"
        rollout = Rollout(
            seq,
            event.time,
            env,
            vs.version,
            str(stable) if stable is not None else state.running.get(env, ""),
            mode,
            share if mode == "canary" else 0,
            event.actor.id,
            imported,
            event.time if mode == "canary" else None,
        )
        if not kept:
            _end_rollout(state, env)
            state.rollouts[env] = rollout
            (vs.canary_in if mode == "canary" else vs.shadow_in).append(env)
    else:
        current = state.rollouts.get(env)
        if current is None or current.version != vs.version:
            return  # a promotion of no rollout in force: nothing to fold
        rollout = Rollout(
            current.seq,
            current.time,
            env,
            current.version,
            current.stable,
            "canary",
            share,
            current.actor,
            current.imported,
            current.serving_since or event.time,
        )
        if not kept:
            state.rollouts[env] = rollout
            if env in vs.shadow_in:
                vs.shadow_in.remove(env)
                vs.canary_in.append(env)
    state.splits.append(
        SplitChange(
            seq,
            event.time,
            event.action,
            env,
            vs.version,
            None,
            event.actor.id,
            reason,
            rollout.split(),
            rollout.shadows(),
            rollout.seq,
            None,
            imported,
        )
    )


def numeric_metrics(value: object) -> dict[str, float]:
    """Return the numeric entries of a recorded metrics object."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def parse(seq: int, body: bytes) -> Event:
    """Parse stored canonical bytes back into an event."""
    return Event.model_validate(loads_strict(body))


def parse_found(seq: int, body: bytes, actions: Sequence[str], model: str | None = None) -> Event:
    """Parse an event that a lookup column found, refusing one whose bytes say otherwise.

    Decisions find events through the ``seq``, ``action`` and ``model`` columns,
    which verify holds against the bytes. An event found under a column that its
    own bytes contradict was relabelled in the database; deciding on it would let
    the column, not the evidence, decide, so the decision stops here instead.
    """
    event = parse(seq, body)
    model_held = event.subject.get("model")
    if (
        event.seq != seq
        or event.action not in actions
        or (model is not None and model_held != model)
    ):
        raise VerificationError(
            f"it was found as {'/'.join(actions)} of model {model!r} at seq {seq}, but its bytes "
            f"say {event.action} of model {model_held!r} at seq {event.seq}: a lookup column "
            "was changed in the database, so no decision is taken; run `auditml verify`",
            kind="column",
            seq=seq,
        )
    return event


def policy_at(found: tuple[int, bytes] | None) -> tuple[Policy, int | None]:
    """Return the policy recorded in a ``policy.update`` body (or the default) and its seq."""
    if found is None:
        return DEFAULT_POLICY, None
    seq, body = found
    return _policy_of(seq, parse_found(seq, body, ("policy.update",)))


def policy_in_force(newest_first: Iterable[tuple[int, bytes]]) -> tuple[Policy, int | None]:
    """Return the policy in force: the newest live ``policy.update`` (imported ones never are).

    ``newest_first`` yields ``(seq, body)`` of ``policy.update`` events, newest
    first; the default policy is in force when none of them is live.
    """
    for seq, body in newest_first:
        event = parse_found(seq, body, ("policy.update",))
        if not is_imported(event.data):
            return _policy_of(seq, event)
    return DEFAULT_POLICY, None


def _policy_of(seq: int, event: Event) -> tuple[Policy, int | None]:
    table = event.data.get("policy")
    if not isinstance(table, dict):
        return DEFAULT_POLICY, seq
    return policy_from(table, where=f"the policy recorded at event {seq}"), seq


def states(events: Iterator[Any]) -> dict[str, ModelState]:
    """Fold records read back from the log (any order of models) into each model's state."""
    by_model: dict[str, list[tuple[int, Event]]] = {}
    for record in events:
        name = record.event.subject.get("model")
        if name is not None:
            by_model.setdefault(name, []).append((record.seq, record.event))
    return {name: fold(name, evs) for name, evs in by_model.items()}
