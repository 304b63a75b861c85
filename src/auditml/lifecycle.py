"""Lifecycle: a model's state derived from the log, and decisions checked against policy.

The state of every version (trained, approved, rejected, deployed where,
retired) and what runs in each environment are folded from the log's events
alone, by the pure :func:`fold`. A decision (approve, reject, deploy, rollback,
retire) is checked inside the append transaction against the state and the
policy as of the locked head, so two writers cannot both slip past a rule. A
refusal appends only a ``policy.denied`` event and raises
:class:`~auditml.errors.PolicyDeniedError`.

Imported history (events whose ``data`` carries the ``imported`` mark, appended
with ``AuditLog.append(..., imported=...)``) is the source's word, not evidence
auditml checked. It shows in every state and history (an imported deploy says
where a version ran), but a live decision stands only on live evidence:

- approvals: only live approvals count toward the approvals a deploy needs
  (policy ``[approvals]``) and make a version a rollback target ("still
  approved"), so an imported approval, signed or not, satisfies neither the
  count nor ``require_signatures``;
- metric gates: only metrics from live training runs and live evaluations are
  checked against policy ``[gates]``;
- card completeness: only live ``card.update`` sections complete a card that
  policy ``[cards] complete_for`` demands;
- rollback: the target must have run in the environment through a live
  deploy or rollback, which passed the gates of its day;
- training: an imported run never replaces a live run of the same version
  (its status, time and metrics stay the live run's);
- policy: the policy in force is the latest *live* ``policy.update`` (recorded
  by ``apply_policy``, which checks the ``policy`` permission of the policy in
  force), or the default when there is none. An imported ``policy.update`` is
  history only: it is never in force, so it can neither undo a locked policy
  nor loosen any other rule.

Imported evidence that only restricts still counts, because honouring it can
never let a decision through that live evidence would refuse: an imported
rejection or retirement makes a version unusable, an imported trainer may not
approve their version under separation of duties, an imported version
number is taken, and an imported run in an environment keeps a version from
being retired while it runs there. A live deploy may replace an imported run
of the same version, so the version then runs there on live evidence.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from auditml._internal.identity import resolve_actor
from auditml.core.canonical import loads_strict
from auditml.core.events import (
    Actor,
    ArtifactRef,
    DatasetRef,
    Draft,
    ESignature,
    Event,
    TrainData,
    is_imported,
    validate_data,
)
from auditml.core.incidents import Incident, IncidentIndex
from auditml.core.policy import (
    DEFAULT_POLICY,
    Denial,
    Policy,
    check_approvals,
    check_gates,
    check_reason,
    check_recordable,
    check_role,
    check_self_approval,
    load_policy,
    person,
    policy_digest,
    policy_from,
    role_for,
)
from auditml.core.signing import Signer, fingerprint, make_esignature, verify_esignature
from auditml.errors import (
    AuditmlError,
    InvalidInputError,
    PolicyDeniedError,
    VerificationError,
)
from auditml.trust import KEY_ACTIONS, KeyRegistry

if TYPE_CHECKING:
    from auditml.capture import Sources, TrainingRun
    from auditml.ledger import AuditLog, Receipt, Record
    from auditml.store import TxReader

__all__ = [
    "LIFECYCLE_ACTIONS",
    "Approval",
    "CardEdit",
    "Decision",
    "LifecycleMixin",
    "ModelState",
    "Move",
    "Outcome",
    "VersionState",
    "fold",
    "policy_at",
    "policy_in_force",
]

#: The actions a model's state is folded from.
INCIDENT_ACTIONS = ("incident.open", "incident.close")
LIFECYCLE_ACTIONS = (
    "model.train",
    "model.evaluate",
    "model.approve",
    "model.reject",
    "model.deploy",
    "model.rollback",
    "model.retire",
    "incident.open",
    "card.update",
)


class Approval(NamedTuple):
    """One approval: who, when, for which environments (empty: any), and if it was imported."""

    seq: int
    time: str
    actor: str
    environments: tuple[str, ...]
    role: str | None
    imported: bool = False


class Decision(NamedTuple):
    """A rejection or retirement: who, when and why."""

    seq: int
    time: str
    actor: str
    reason: str | None


class CardEdit(NamedTuple):
    """One ``card.update``: the sections it wrote, for one version or (None) the whole model."""

    seq: int
    version: str | None
    sections: dict[str, Any]
    imported: bool = False


class Move(NamedTuple):
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

    @property
    def live_approvals(self) -> list[Approval]:
        """Return the approvals made on this log, not imported: the ones rules count."""
        return [a for a in self.approvals if not a.imported]

    def gate_metrics(self) -> dict[str, float]:
        """Return the live metrics the gates check: live training's, updated by live evaluations."""
        return {**self.live_metrics, **self.live_evaluated}

    @property
    def state(self) -> str:
        """Return one word: retired, deployed, rejected, approved, failed or trained."""
        if self.retired is not None:
            return "retired"
        if self.running_in:
            return "deployed"
        if self.rejected is not None:
            return "rejected"
        if self.status == "failed":
            return "failed"
        if self.approvals:
            return "approved"
        return "trained"

    def approvers_for(self, environment: str, *, exclude: Sequence[str] = ()) -> list[str]:
        """Return the distinct live approvers whose approval covers ``environment``.

        Imported approvals are left out: they never count toward a deploy.
        """
        found: list[str] = []
        seen = {person(who) for who in exclude}
        for approval in self.live_approvals:
            if approval.environments and environment not in approval.environments:
                continue
            if person(approval.actor) in seen:
                continue
            seen.add(person(approval.actor))
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
        """Return the next free integer version: one more than the largest so far."""
        numbers = [int(v) for v in self.versions if v.isdigit()]
        return str(max(numbers, default=0) + 1)

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
            if not imported:
                vs.live_evaluated.update(numeric_metrics(data.get("metrics")))
        elif event.action in ("model.deploy", "model.rollback"):
            env = str(data.get("environment"))
            replaced = state.running.get(env)
            if replaced is not None and replaced in state.versions:
                old = state.versions[replaced]
                if env in old.running_in:
                    old.running_in.remove(env)
            state.running[env] = version
            vs.running_in.append(env)
            if env not in vs.ran_in:
                vs.ran_in.append(env)
            if not imported and env not in vs.ran_live:
                vs.ran_live.append(env)
            state.timeline.append(
                Move(seq, event.time, event.action, env, version, replaced, actor, reason, imported)
            )
    return state


def numeric_metrics(value: object) -> dict[str, float]:
    """Return the numeric entries of a recorded metrics object."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _rfc3339(value: str | datetime | None) -> str:
    """Return a time as the log writes it (RFC 3339 UTC, microseconds, Z); None means now."""
    from auditml.ledger import to_timestamp

    return to_timestamp(datetime.now(UTC) if value is None else value)


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


# -- deciding inside the append transaction -----------------------------------


@dataclass
class Outcome:
    """What a decision appends: the event asked for, or a denial (then raised)."""

    draft: Draft
    denial: Denial | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StateCache:
    """States folded from committed events, kept by one AuditLog so decisions stay cheap.

    A decision reads, under the head lock, only the model's events appended
    since the state was last folded, so its cost does not grow with the log.
    Only committed events are ever folded in, so a decision that is refused or
    rolled back leaves the cache true.
    """

    def __init__(self) -> None:
        self.models: dict[str, tuple[int, ModelState]] = {}
        self.policy: tuple[int, Policy, int | None] | None = None
        self.keys: tuple[int, KeyRegistry] | None = None
        self.incidents: tuple[int, IncidentIndex] | None = None


class View:
    """The log as of the locked head: policy in force, models' states, evaluations."""

    def __init__(self, reader: TxReader, size: int, cache: StateCache | None = None) -> None:
        self._reader = reader
        self._size = size
        self._cache = cache if cache is not None else StateCache()
        self._models: dict[str, ModelState] = {}
        self.policy, self.policy_seq = self._policy()

    def _policy(self) -> tuple[Policy, int | None]:
        """Return the policy in force (the newest live ``policy.update``) and its seq."""
        seq = self._reader.last_seq("policy.update")
        if seq is None:
            return DEFAULT_POLICY, None
        cached = self._cache.policy
        if cached is not None and cached[0] == seq:
            return cached[1], cached[2]
        last = self._reader.last("policy.update")
        rows: Iterable[tuple[int, bytes]] = [] if last is None else [last]
        if last is not None and is_imported(parse(*last).data):
            rows = reversed(self._reader.by_actions(("policy.update",)))
        policy, in_force = policy_in_force(rows)
        self._cache.policy = (seq, policy, in_force)
        return policy, in_force

    def model(self, name: str) -> ModelState:
        """Return ``name``'s state folded from its lifecycle events."""
        found = self._models.get(name)
        if found is None:
            cached = self._cache.models.get(name)
            if cached is None or cached[0] >= self._size:  # none yet, or the log shrank
                cached = (-1, ModelState(name))
            after, state = cached
            rows = self._reader.bodies(name, LIFECYCLE_ACTIONS, after=after)
            events = ((seq, parse_found(seq, body, LIFECYCLE_ACTIONS, name)) for seq, body in rows)
            found = fold(name, events, state)
            self._cache.models[name] = (self._size - 1, found)
            self._models[name] = found
        return found

    def known_model(self, name: str) -> ModelState:
        """Return ``name``'s state, or raise InvalidInputError when it was never trained."""
        state = self.model(name)
        if not state.versions:
            raise InvalidInputError(
                f"no model {name!r} on the log: record a training run for it first "
                "(@track_training or `auditml train`)"
            )
        return state

    def keys(self) -> KeyRegistry:
        """Return the people's keys registered on the log, folded incrementally."""
        cached = self._cache.keys
        if cached is None or cached[0] >= self._size:
            cached = (-1, KeyRegistry())
        after, registry = cached
        for seq, body in self._reader.by_actions(KEY_ACTIONS, after=after):
            registry.apply(seq, parse_found(seq, body, KEY_ACTIONS))
        self._cache.keys = (self._size - 1, registry)
        return registry

    def incidents(self) -> IncidentIndex:
        """Return every incident opened on the log, folded incrementally."""
        cached = self._cache.incidents
        if cached is None or cached[0] >= self._size:
            cached = (-1, IncidentIndex())
        after, index = cached
        for seq, body in self._reader.by_actions(INCIDENT_ACTIONS, after=after):
            index.apply(seq, parse_found(seq, body, INCIDENT_ACTIONS))
        self._cache.incidents = (self._size - 1, index)
        return index

    def metrics(self, name: str, version: str) -> dict[str, float]:
        """Return the live metrics gates check: live training's, updated by live evaluations."""
        return self.model(name).version(version).gate_metrics()

    def check_environment(self, environment: str) -> None:
        """Refuse an environment name the policy does not declare (when it declares any)."""
        declared = self.policy.environments
        if declared and environment not in declared:
            raise InvalidInputError(
                f"unknown environment {environment!r}: the policy declares {', '.join(declared)}"
            )


Decide = Callable[[View], Outcome]


def denied(
    view: View,
    denial: Denial,
    *,
    attempted: str,
    actor: Any,
    subject: dict[str, str],
    environment: str | None = None,
) -> Outcome:
    """Return the outcome that records ``denial`` as a ``policy.denied`` event."""
    draft = Draft.build(
        "policy.denied",
        actor=actor,
        subject=subject,
        data={
            "attempted": attempted,
            "rule": denial.rule,
            "message": denial.message,
            "remedy": denial.remedy,
            "environment": environment,
            "policy_seq": view.policy_seq,
        },
    )
    return Outcome(draft, denial)


def first(*checks: Callable[[], Denial | None]) -> Denial | None:
    """Run rule checks in order and return the first denial, if any."""
    for check in checks:
        found = check()
        if found is not None:
            return found
    return None


def decide_approve(
    view: View,
    *,
    model: str,
    version: str,
    actor: Any,
    reason: str | None,
    environments: Sequence[str],
    artifact_sha256: str | None,
    signature: ESignature | None = None,
    origin: str = "",
) -> Outcome:
    """Approve a version unless a rule refuses: role, reason, state, duties, e-signature."""
    vs = view.known_model(model).version(version)
    for env in environments:
        view.check_environment(env)
    subject = {"model": model, "version": version}
    pol = view.policy
    denial = first(
        lambda: check_role(pol, actor.id, "approve"),
        lambda: check_reason(pol, "approve", reason),
        lambda: _check_usable(vs, "approve"),
        lambda: check_self_approval(pol, actor.id, vs.trainers, version),
        lambda: _check_signature(
            view, "model.approve", subject, actor.id, signature, artifact_sha256, origin
        ),
    )
    if denial is not None:
        return denied(view, denial, attempted="model.approve", actor=actor, subject=subject)
    data = {
        "reason": reason,
        "environments": list(environments),
        "artifact_sha256": artifact_sha256,
        "role": role_for(pol, actor.id, "approve"),
        "policy_seq": view.policy_seq,
        "signature": signature,
    }
    return Outcome(Draft.build("model.approve", actor=actor, subject=subject, data=data))


def _check_signature(
    view: View,
    action: str,
    subject: dict[str, str],
    actor: str,
    signature: ESignature | None,
    artifact_sha256: str | None,
    origin: str,
) -> Denial | None:
    """Refuse a missing e-signature the policy requires, or one that is not valid here."""
    decision = action.removeprefix("model.")
    if signature is None:
        if view.policy.signature_required(decision):
            return Denial(
                "signature-required",
                f"a {decision} must carry the electronic signature of the person making it",
                "sign it with your registered key: --sign-with KEY (or signer=)",
            )
        return None
    registry = view.keys()
    problem = registry.problem(signature, actor)
    if problem is None:
        record = registry.keys[signature.key]
        if not verify_esignature(
            signature,
            origin=origin,
            action=action,
            model=subject["model"],
            version=subject["version"],
            artifact_sha256=artifact_sha256,
            public_key=record.public_key,
        ):
            problem = "the signature does not verify for this record"
    if problem is None:
        return None
    return Denial(
        "signature-invalid",
        f"the electronic signature cannot be accepted: {problem}",
        "sign with your own key, registered on this log and not revoked (`auditml key register`)",
    )


def decide_key(view: View, *, action: str, actor: Any, data: dict[str, Any]) -> Outcome:
    """Register or revoke a person's signing key unless the actor may not manage keys."""
    registry = view.keys()
    key = str(data["key"])
    found = registry.keys.get(key)
    if action == "key.register":
        if found is not None and not found.imported:  # an imported key may be registered live
            raise InvalidInputError(
                f"the key {key[:16]}… is already registered to {found.signer} (event "
                f"{found.registered})"
            )
        signer = str(data["signer"])
    else:
        if found is None:
            raise InvalidInputError(f"no registered key {key[:16]}… on the log")
        if found.revoked is not None:
            raise InvalidInputError(
                f"the key {key[:16]}… of {found.signer} is already revoked (event {found.revoked})"
            )
        signer = found.signer
        data = validate_data("key.revoke", {**data, "signer": signer})
    subject = {"signer": signer}
    pol = view.policy
    # A key ties every signature made with it to a person, so registering or revoking
    # someone else's key is for those who may manage keys: the `keys` permission, or,
    # when the policy names none, those who may change the policy. One's own key needs
    # only `keys`, when the policy restricts it.
    own = action == "key.register" and signer == actor.id
    permission = "keys" if own or "keys" in pol.permissions else "policy"
    denial = check_role(pol, actor.id, permission)
    if denial is not None and permission == "policy":
        denial = Denial(
            "role",
            f"{actor.id} may not register or revoke the key of {signer}: managing another "
            f"person's key needs the keys permission, and without one the policy permission "
            f"({', '.join(pol.allowed_roles('policy') or [])})",
            denial.remedy,
        )
    if denial is not None:
        return denied(view, denial, attempted=action, actor=actor, subject=subject)
    return Outcome(Draft.build(action, actor=actor, subject=subject, data=data))


def _check_usable(vs: VersionState, what: str) -> Denial | None:
    """Refuse to approve or deploy a failed, rejected or retired version."""
    if vs.status == "failed":
        return Denial(
            "failed-training",
            f"version {vs.version} failed training and cannot be {what}d",
            "train a new version that succeeds",
        )
    if vs.retired is not None:
        return Denial(
            "retired",
            f"version {vs.version} was retired by {vs.retired.actor} (event {vs.retired.seq})",
            "use a version that is not retired",
        )
    if vs.rejected is not None:
        return Denial(
            "rejected",
            f"version {vs.version} was rejected by {vs.rejected.actor} (event {vs.rejected.seq})",
            "train and approve a new version",
        )
    return None


def decide_reject(
    view: View,
    *,
    model: str,
    version: str,
    actor: Any,
    reason: str | None,
    artifact_sha256: str | None = None,
    signature: ESignature | None = None,
    origin: str = "",
) -> Outcome:
    """Reject a version unless a rule refuses: role, reason or e-signature."""
    vs = view.known_model(model).version(version)
    subject = {"model": model, "version": version}
    pol = view.policy
    denial = first(
        lambda: check_role(pol, actor.id, "reject"),
        lambda: check_reason(pol, "reject", reason),
        lambda: _check_signature(
            view, "model.reject", subject, actor.id, signature, artifact_sha256, origin
        ),
    )
    if denial is not None:
        return denied(view, denial, attempted="model.reject", actor=actor, subject=subject)
    if vs.rejected is not None:
        raise InvalidInputError(
            f"version {version} of {model!r} is already rejected (event {vs.rejected.seq})"
        )
    data = {
        "reason": reason,
        "role": role_for(pol, actor.id, "reject"),
        "policy_seq": view.policy_seq,
        "artifact_sha256": artifact_sha256,
        "signature": signature,
    }
    return Outcome(Draft.build("model.reject", actor=actor, subject=subject, data=data))


def decide_deploy(
    view: View, *, model: str, version: str, environment: str, actor: Any, reason: str | None
) -> Outcome:
    """Deploy unless a rule refuses: role, reason, state, approvals, metric gates."""
    state = view.known_model(model)
    vs = state.version(version)
    view.check_environment(environment)
    current = state.running.get(environment)
    if current == version and environment not in state.running_imported():
        # Deploying over an imported run is allowed: it records the live decision, checked.
        raise InvalidInputError(f"version {version} of {model!r} already runs in {environment}")
    subject = {"model": model, "version": version}
    pol = view.policy
    exclude = vs.trainers if pol.separation_of_duties else ()
    denial = first(
        lambda: check_role(pol, actor.id, "deploy"),
        lambda: check_reason(pol, "deploy", reason),
        lambda: _check_usable(vs, "deploy"),
        lambda: check_approvals(
            pol, environment, vs.approvers_for(environment, exclude=exclude), model, version
        ),
        lambda: check_gates(pol, environment, view.metrics(model, version), version),
        lambda: check_card(
            pol, environment, state.card_sections(version, live=True), model, version
        ),
    )
    if denial is not None:
        return denied(
            view,
            denial,
            attempted="model.deploy",
            actor=actor,
            subject=subject,
            environment=environment,
        )
    data = {
        "environment": environment,
        "replaces": current,
        "reason": reason,
        "role": role_for(pol, actor.id, "deploy"),
        "policy_seq": view.policy_seq,
    }
    return Outcome(Draft.build("model.deploy", actor=actor, subject=subject, data=data))


def rollback_target(state: ModelState, environment: str) -> str | None:
    """Return the version that ran in ``environment`` before the current one and may again.

    Only live moves and live approvals count: imported history never makes a target.
    """
    current = state.running.get(environment)
    for move in reversed(state.history(environment)):
        vs = state.versions.get(move.version)
        if move.version == current or vs is None or move.imported:
            continue
        if vs.rejected is None and vs.retired is None and vs.live_approvals:
            return move.version
    return None


def decide_rollback(
    view: View, *, model: str, environment: str, to: str | None, actor: Any, reason: str | None
) -> Outcome:
    """Roll back unless a rule refuses: role, reason, a target that ran there and is approved."""
    state = view.known_model(model)
    view.check_environment(environment)
    current = state.running.get(environment)
    if current is None:
        raise InvalidInputError(
            f"nothing of {model!r} runs in {environment}, so there is nothing to roll back"
        )
    pol = view.policy
    target = to
    if target is not None:
        state.version(target)
        if target == current:
            raise InvalidInputError(f"version {target} of {model!r} already runs in {environment}")
    else:
        target = rollback_target(state, environment)
    subject = {"model": model, "version": target or current}

    def check_target() -> Denial | None:
        if target is None:
            return Denial(
                "rollback-target",
                f"no earlier version of {model!r} ran in {environment} and is still approved",
                "deploy an approved version instead",
            )
        vs = state.versions[target]
        if environment not in vs.ran_live:
            only = " except in imported history" if environment in vs.ran_in else ""
            return Denial(
                "rollback-target",
                f"version {target} never ran in {environment}{only}",
                f"roll back to a version that ran there before, or deploy {target} instead",
            )
        if vs.retired is not None or vs.rejected is not None or not vs.live_approvals:
            why = "retired" if vs.retired else "rejected" if vs.rejected else "not approved"
            return Denial(
                "rollback-target",
                f"version {target} ran in {environment} before but is {why} now",
                "roll back to a version that is still approved",
            )
        return None

    denial = first(
        lambda: check_role(pol, actor.id, "rollback"),
        lambda: check_reason(pol, "rollback", reason),
        check_target,
    )
    if denial is not None:
        return denied(
            view,
            denial,
            attempted="model.rollback",
            actor=actor,
            subject=subject,
            environment=environment,
        )
    data = {
        "environment": environment,
        "replaces": current,
        "reason": reason,
        "role": role_for(pol, actor.id, "rollback"),
        "policy_seq": view.policy_seq,
    }
    return Outcome(
        Draft.build("model.rollback", actor=actor, subject=subject, data=data), version=target
    )


def decide_retire(
    view: View, *, model: str, version: str, actor: Any, reason: str | None
) -> Outcome:
    """Retire a version unless a rule refuses: role, reason, or it still runs somewhere."""
    state = view.known_model(model)
    vs = state.version(version)
    if vs.retired is not None:
        raise InvalidInputError(
            f"version {version} of {model!r} is already retired (event {vs.retired.seq})"
        )
    subject = {"model": model, "version": version}
    pol = view.policy
    # A live run counts even when imported history shows another version there since.
    live = {env for env, running in state.live_running().items() if running == version}
    where = sorted({*vs.running_in, *live})

    def check_running() -> Denial | None:
        if not where:
            return None
        return Denial(
            "still-running",
            f"version {version} still runs in {', '.join(where)}",
            "deploy or roll back to another version there first",
        )

    denial = first(
        lambda: check_role(pol, actor.id, "retire"),
        lambda: check_reason(pol, "retire", reason),
        check_running,
    )
    if denial is not None:
        return denied(view, denial, attempted="model.retire", actor=actor, subject=subject)
    data = {
        "reason": reason,
        "role": role_for(pol, actor.id, "retire"),
        "policy_seq": view.policy_seq,
    }
    return Outcome(Draft.build("model.retire", actor=actor, subject=subject, data=data))


class CheckPassedError(AuditmlError):
    """Raised inside a check-only transaction to roll it back: the action may proceed."""

    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.version = version


def decide_train(
    view: View,
    *,
    model: str,
    version: str | None,
    actor: Any,
    data: dict[str, Any] | None,
    auto: bool = False,
) -> Outcome:
    """Record a training run unless the actor may not train; assign the next version if none.

    With ``data`` None this only checks: it raises :class:`CheckPassedError` with the
    version the run would get, or returns the denial to record.
    """
    if not model.strip():
        raise InvalidInputError("a training run needs a model name, e.g. model='credit-risk'")
    state = view.model(model)
    existing = state.versions.get(version) if version is not None else None
    if existing is not None and existing.status != "failed":
        if not auto:
            raise InvalidInputError(
                f"version {version} of {model!r} was already trained (event "
                f"{existing.trained_seq}); give a new version, or leave it out to get the next"
            )
        version = None  # another run took the version this one was told; take the next
    if version is None:
        version = state.next_version()
    subject = {"model": model, "version": version}
    denial = check_role(view.policy, actor.id, "train")
    if denial is not None:
        out = denied(view, denial, attempted="model.train", actor=actor, subject=subject)
        out.version = version
        return out
    if data is None:
        raise CheckPassedError(version)
    return Outcome(
        Draft.build("model.train", actor=actor, subject=subject, data=data), version=version
    )


def check_card(
    pol: Policy, environment: str, sections: Mapping[str, Any], model: str, version: str
) -> Denial | None:
    """Refuse a deploy to an environment that needs a complete card when sections are missing."""
    if environment not in pol.cards.complete_for:
        return None
    missing = [
        name for name in pol.cards.required if sections.get(name, (0, None))[1] in (None, "", [])
    ]
    if not missing:
        return None
    return Denial(
        "card-incomplete",
        f"the model card of {model} version {version} is missing {', '.join(missing)}, "
        f"which policy requires before a deploy to {environment}",
        f"write them in a YAML file and run `auditml card update {model} {version} FILE` "
        "(or leave out the version to write them for every version)",
    )


def decide_card_update(
    view: View, *, model: str, version: str | None, actor: Any, data: dict[str, Any]
) -> Outcome:
    """Record human card sections for a known model (or one version) unless policy refuses."""
    state = view.known_model(model)
    subject = {"model": model}
    if version is not None:
        state.version(version)
        subject["version"] = version
    current = state.card_sections(version) if version is not None else {}
    if version is not None and all(
        current.get(name, (0, None))[1] == value for name, value in data["sections"].items()
    ):
        raise InvalidInputError(
            f"the card of {model} version {version} already reads exactly so for "
            f"{', '.join(data['sections'])}; nothing was recorded"
        )
    denial = check_role(view.policy, actor.id, "card")
    if denial is not None:
        return denied(view, denial, attempted="card.update", actor=actor, subject=subject)
    return Outcome(Draft.build("card.update", actor=actor, subject=subject, data=data))


def decide_evaluate(
    view: View, *, model: str, version: str, actor: Any, data: dict[str, Any]
) -> Outcome:
    """Record an evaluation of a known version unless the actor may not evaluate."""
    view.known_model(model).version(version)
    subject = {"model": model, "version": version}
    denial = check_role(view.policy, actor.id, "evaluate")
    if denial is not None:
        return denied(view, denial, attempted="model.evaluate", actor=actor, subject=subject)
    return Outcome(Draft.build("model.evaluate", actor=actor, subject=subject, data=data))


def decide_open_incident(
    view: View, *, model: str, version: str, actor: Any, data: dict[str, Any]
) -> Outcome:
    """Open an incident against a known version; give it the next id when it has none."""
    view.known_model(model).version(version)
    if data.get("environment"):
        view.check_environment(str(data["environment"]))
    index = view.incidents()
    ident = data.get("id") or index.next_id()
    if ident in index.incidents:
        raise InvalidInputError(
            f"incident {ident} already exists (event {index.incidents[ident].seq}); "
            "give another id, or leave it out to get the next"
        )
    data = validate_data("incident.open", {**data, "id": ident})
    subject = {"model": model, "version": version}
    denial = check_role(view.policy, actor.id, "incident")
    if denial is not None:
        return denied(view, denial, attempted="incident.open", actor=actor, subject=subject)
    return Outcome(Draft.build("incident.open", actor=actor, subject=subject, data=data))


def decide_close_incident(view: View, *, actor: Any, data: dict[str, Any]) -> Outcome:
    """Close an open incident, naming how it was resolved."""
    ident = str(data["id"])
    found = view.incidents().incidents.get(ident)
    if found is None:
        raise InvalidInputError(f"no incident {ident} on the log")
    if not found.is_open:
        raise InvalidInputError(f"incident {ident} is already closed (event {found.closed_seq})")
    subject = {"model": found.model, "version": found.version}
    denial = check_role(view.policy, actor.id, "incident")
    if denial is not None:
        return denied(view, denial, attempted="incident.close", actor=actor, subject=subject)
    return Outcome(Draft.build("incident.close", actor=actor, subject=subject, data=data))


def decide_policy(
    view: View,
    *,
    policy: Policy,
    actor: Any,
    source: str | None,
    sha256: str | None,
    reason: str | None,
) -> Outcome:
    """Record a new policy unless the policy in force forbids this actor to change it."""
    denial = check_role(view.policy, actor.id, "policy")
    if denial is not None:
        return denied(view, denial, attempted="policy.update", actor=actor, subject={})
    if view.policy_seq is not None and policy == view.policy:
        raise InvalidInputError(
            f"this policy is already in force (recorded at event {view.policy_seq}); "
            "nothing was recorded"
        )
    data = {"policy": policy.as_data(), "source": source, "sha256": sha256, "reason": reason}
    return Outcome(Draft.build("policy.update", actor=actor, subject={}, data=data))


def states(events: Iterator[Any]) -> dict[str, ModelState]:
    """Fold records read back from the log (any order of models) into each model's state."""
    by_model: dict[str, list[tuple[int, Event]]] = {}
    for record in events:
        name = record.event.subject.get("model")
        if name is not None:
            by_model.setdefault(name, []).append((record.seq, record.event))
    return {name: fold(name, evs) for name, evs in by_model.items()}


class LifecycleMixin:
    """The lifecycle half of :class:`~auditml.AuditLog`: decisions, status and history."""

    @property
    def origin(self) -> str:  # noqa: D102 - documented on AuditLog
        raise NotImplementedError  # pragma: no cover - AuditLog provides it

    def _decide(self, decide: Decide) -> tuple[Receipt, Outcome]:
        raise NotImplementedError  # pragma: no cover - AuditLog provides it

    def _records(
        self,
        model: str | None,
        actions: Sequence[str],
        *,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Record]:
        raise NotImplementedError  # pragma: no cover - AuditLog provides it

    def _decided(self, decide: Decide) -> Receipt:
        """Append a decision, or its denial and then raise PolicyDeniedError."""
        return self._decided_outcome(decide)[0]

    def _decided_outcome(self, decide: Decide) -> tuple[Receipt, Outcome]:
        """Append a decision and return what was appended, or raise PolicyDeniedError."""
        receipt, outcome = self._decide(decide)
        if outcome.denial is not None:
            d = outcome.denial
            raise PolicyDeniedError(d.message, rule=d.rule, remedy=d.remedy, seq=receipt.seq)
        return receipt, outcome

    def _esign(
        self,
        signer: Signer | None,
        *,
        action: str,
        model: str,
        version: str,
        artifact_sha256: str | None,
        meaning: str,
        actor: Actor,
        name: str | None,
    ) -> ESignature | None:
        """Sign a decision's statement with a person's key, before the append starts."""
        if signer is None:
            return None
        if name is None:
            for record in self._records(None, ("key.register",)):
                if record.event.data.get("key") == fingerprint(signer.public_key):
                    name = str(record.event.data.get("name"))
        try:
            return make_esignature(
                signer,
                origin=self.origin,
                action=action,
                model=model,
                version=version,
                artifact_sha256=artifact_sha256,
                meaning=meaning,
                actor=actor.id,
                name=name or actor.name or actor.id,
            )
        except ValueError as exc:
            raise InvalidInputError(f"cannot sign the {action}: {exc}") from None

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
        who = resolve_actor(actor)
        version = str(version)
        signature = self._esign(
            signer,
            action="model.approve",
            model=model,
            version=version,
            artifact_sha256=artifact_sha256,
            meaning=meaning,
            actor=who,
            name=name,
        )
        return self._decided(
            lambda view: decide_approve(
                view,
                model=model,
                version=version,
                actor=who,
                reason=reason,
                environments=list(environments),
                artifact_sha256=artifact_sha256,
                signature=signature,
                origin=self.origin,
            )
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
        who = resolve_actor(actor)
        version = str(version)
        signature = self._esign(
            signer,
            action="model.reject",
            model=model,
            version=version,
            artifact_sha256=artifact_sha256,
            meaning=meaning,
            actor=who,
            name=name,
        )
        return self._decided(
            lambda view: decide_reject(
                view,
                model=model,
                version=version,
                actor=who,
                reason=reason,
                artifact_sha256=artifact_sha256,
                signature=signature,
                origin=self.origin,
            )
        )

    def deploy(
        self,
        model: str,
        version: str,
        environment: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Deploy a version to an environment, if policy allows; records what it replaced."""
        who = resolve_actor(actor)
        return self._decided(
            lambda view: decide_deploy(
                view,
                model=model,
                version=str(version),
                environment=environment,
                actor=who,
                reason=reason,
            )
        )

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
        who = resolve_actor(actor)
        target = None if to is None else str(to)
        return self._decided(
            lambda view: decide_rollback(
                view, model=model, environment=environment, to=target, actor=who, reason=reason
            )
        )

    def retire(
        self,
        model: str,
        version: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Retire a version for good, if policy allows and it runs nowhere."""
        who = resolve_actor(actor)
        return self._decided(
            lambda view: decide_retire(
                view, model=model, version=str(version), actor=who, reason=reason
            )
        )

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
    ) -> Receipt:
        """Record an evaluation of a trained version; files named are hashed first."""
        from auditml._internal.fingerprint import artifact_ref, dataset_ref

        who = resolve_actor(actor)
        data = validate_data(
            "model.evaluate",
            {
                "dataset": dataset
                if isinstance(dataset, DatasetRef | None)
                else dataset_ref(dataset),
                "metrics": metrics or {},
                "slices": slices or {},
                "artifacts": {
                    name: ref if isinstance(ref, ArtifactRef) else artifact_ref(ref)
                    for name, ref in (artifacts or {}).items()
                },
                "notes": notes,
            },
        )
        return self._decided(
            lambda view: decide_evaluate(
                view, model=model, version=str(version), actor=who, data=data
            )
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
        who = resolve_actor(actor)
        data = validate_data(
            "incident.open",
            {
                "id": id or "INC-0",  # a placeholder for validation; the next id is assigned
                "summary": summary,
                "severity": severity,
                "impact": impact,
                "aware_at": _rfc3339(aware_at),
                "environment": environment,
                "reference": reference,
            },
        )
        if id is None:
            del data["id"]
        receipt, outcome = self._decided_outcome(
            lambda view: decide_open_incident(
                view, model=model, version=str(version), actor=who, data=data
            )
        )
        index = IncidentIndex()
        draft = outcome.draft
        index.apply(
            receipt.seq,
            Event(
                v=1,
                log=self.origin,
                seq=receipt.seq,
                prev="0" * 64,
                time=receipt.time,
                actor=draft.actor,
                action=draft.action,
                subject=draft.subject,
                data=draft.data,
            ),
        )
        return next(iter(index.incidents.values()))

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
        who = resolve_actor(actor)
        data = validate_data(
            "incident.close",
            {
                "id": id,
                "resolution": resolution,
                "reported_at": None if reported_at is None else _rfc3339(reported_at),
                "reference": reference,
            },
        )
        return self._decided(lambda view: decide_close_incident(view, actor=who, data=data))

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
        from auditml.cards.model import validate_sections
        from auditml.cards.sections import read_sections

        who = resolve_actor(actor)
        source = sha = None
        if isinstance(sections, Mapping):
            checked = validate_sections(dict(sections))
        else:
            checked, source, sha = read_sections(Path(sections))
        data = validate_data(
            "card.update",
            {"sections": checked, "source": source, "sha256": sha, "reason": reason},
        )
        return self._decided(
            lambda view: decide_card_update(
                view,
                model=model,
                version=None if version is None else str(version),
                actor=who,
                data=data,
            )
        )

    def incidents(self, model: str | None = None) -> list[Incident]:
        """Return every incident (of ``model``), oldest first, with its Art. 73 deadline."""
        index = IncidentIndex()
        for record in self._records(model, INCIDENT_ACTIONS):
            index.apply(record.seq, record.event)
        return list(index.incidents.values())

    def record_training(
        self,
        model: str,
        *,
        version: str | None = None,
        data: TrainData | dict[str, Any] | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Record a training run done elsewhere; the receipt names the version it got."""
        who = resolve_actor(actor)
        payload = validate_data("model.train", data)
        return self._decided(
            lambda view: decide_train(
                view,
                model=model,
                version=None if version is None else str(version),
                actor=who,
                data=payload,
            )
        )

    def _begin_training(self, model: str, version: str | None, actor: Actor) -> str:
        """Check that ``actor`` may train ``model`` and return the version the run gets."""
        try:
            self._decided(
                lambda view: decide_train(
                    view, model=model, version=version, actor=actor, data=None
                )
            )
        except CheckPassedError as go:
            return go.version
        raise AssertionError(
            "a training check neither proceeded nor was denied"
        )  # pragma: no cover

    def _finish_training(
        self, model: str, version: str | None, *, auto: bool, actor: Actor, data: dict[str, Any]
    ) -> Receipt:
        """Record a finished run's ``model.train`` event."""
        payload = validate_data("model.train", data)
        return self._decided(
            lambda view: decide_train(
                view, model=model, version=version, actor=actor, data=payload, auto=auto
            )
        )

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
        from auditml.capture import TrainingRun, run_context

        run = TrainingRun(
            cast("AuditLog", self),
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
    ) -> Receipt:
        """Record a policy (a Policy or a TOML file); it is in force from this event on."""
        who = resolve_actor(actor)
        source = sha = None
        if isinstance(policy, Policy):
            chosen = policy
        else:
            chosen, raw = load_policy(policy)
            source, sha = Path(policy).name, policy_digest(raw)
        check_recordable(chosen)
        return self._decided(
            lambda view: decide_policy(
                view, policy=chosen, actor=who, source=source, sha256=sha, reason=reason
            )
        )

    def policy(self) -> tuple[Policy, int | None]:
        """Return the policy in force and the seq of the event that recorded it (None: default).

        The policy in force is the newest live ``policy.update``; imported ones never are.
        """
        records = list(self._records(None, ("policy.update",), newest_first=True))  # a few
        return policy_in_force((record.seq, record.body) for record in records)

    def status(self, model: str | None = None) -> dict[str, ModelState]:
        """Return each model's state (or only ``model``'s), derived from the log alone."""
        if model is None:
            return states(self._records(None, LIFECYCLE_ACTIONS))
        state = fold(
            model,
            ((r.seq, r.event) for r in self._records(model, LIFECYCLE_ACTIONS)),
        )
        if not state.versions:
            raise InvalidInputError(f"no model {model!r} on the log{self._known_models(model)}")
        return {model: state}

    def _known_models(self, wanted: str) -> str:
        """Return ": did you mean …" or the models the log knows, for a name it does not."""
        known = sorted(
            {r.event.subject.get("model", "") for r in self._records(None, ("model.train",))}
        )
        known = [name for name in known if name]
        if not known:
            return " (it has no trained model yet)"
        close = difflib.get_close_matches(wanted, known, n=1)
        if close:
            return f": did you mean {close[0]!r}?"
        return f" (its models: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''})"

    def history(self, model: str, environment: str | None = None) -> list[Move]:
        """Return the model's deploys and rollbacks, oldest first, optionally of one environment."""
        declared = self.policy()[0].environments
        if environment is not None and declared and environment not in declared:
            raise InvalidInputError(
                f"unknown environment {environment!r}: the policy declares {', '.join(declared)}"
            )
        return self.status(model)[model].history(environment)
