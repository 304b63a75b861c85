"""The decision rules: each reads the log as of the locked head and returns what to append.

A decision runs inside the append transaction over a :class:`View` of the log
(through the :class:`~auditml.core.reader.Reader` protocol), so two writers
cannot both slip past a rule. A refusal returns an outcome holding a
``policy.denied`` draft and the denial, which the caller raises after the
denial is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from auditml.core import merkle
from auditml.core.events import (
    INCIDENT_ACTIONS,
    KEY_ACTIONS,
    LIFECYCLE_ACTIONS,
    Draft,
    ESignature,
    Event,
    is_imported,
    validate_data,
)
from auditml.core.incidents import IncidentIndex
from auditml.core.keys import KeyRegistry
from auditml.core.policy import (
    DEFAULT_POLICY,
    Denial,
    Policy,
    PolicyReview,
    check_approvals,
    check_gates,
    check_reason,
    check_role,
    check_self_approval,
    person,
    policy_changes,
    role_for,
    stranded_environments,
    unknown_gate_metrics,
)
from auditml.core.privacy import Binding
from auditml.core.reader import Reader
from auditml.core.signing import verify_esignature
from auditml.core.state import (
    ModelState,
    VersionState,
    fold,
    numeric_metrics,
    parse,
    parse_found,
    policy_in_force,
)
from auditml.errors import (
    InvalidInputError,
    VerificationError,
)

if TYPE_CHECKING:  # a decision that follows no registry never loads its rules (issue 20)
    from auditml.core.registry import KnownRegistries

__all__ = [
    "Decide",
    "Outcome",
    "RegistryFold",
    "StateCache",
    "View",
    "denied",
    "first",
]


@dataclass
class Outcome:
    """What a decision appends: the event asked for, a denial (then raised), or nothing.

    ``draft`` is None only for a check that passed (a training run may start):
    nothing is appended then.
    """

    draft: Draft | None
    denial: Denial | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Applies(Protocol):
    def apply(self, seq: int, event: Event) -> None: ...


_Folded = TypeVar("_Folded", bound=_Applies)


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
        self.registries: RegistryFold | None = None


@dataclass(frozen=True)
class RegistryFold:
    """``registry.change`` events folded up to ``after``, and what the fold stands on.

    ``context`` is what the fold's URI identities depend on (the working
    folder, for relative paths); ``anchor`` is the seq and SHA-256 of the last
    event folded, read back before the fold is used again: its bytes commit,
    through the chain, to every event before it, so a log changed below the
    fold is folded again from its verified bytes, never trusted.
    """

    after: int
    context: str
    anchor: tuple[int, bytes] | None
    folded: KnownRegistries


class View:
    """The log as of the locked head: policy in force, models' states, evaluations."""

    def __init__(
        self,
        reader: Reader,
        size: int,
        cache: StateCache | None = None,
        binding: Binding | None = None,
    ) -> None:
        self._reader = reader
        self._size = size
        #: Who the pseudonyms are, as the actor directory binds them to the log.
        self.binding = binding if binding is not None else Binding()
        #: Who each pseudonym names (its person's folded id).
        self.people: Mapping[str, str] = self.binding.people
        self._cache = cache if cache is not None else StateCache()
        self._models: dict[str, ModelState] = {}
        self.policy, self.policy_seq = self._policy()

    @property
    def reader(self) -> Reader:
        """Return the reader of the log's verified bytes as of the locked head."""
        return self._reader

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
        self._cache.keys = self._fold_on(self._cache.keys, KeyRegistry, KEY_ACTIONS)
        return self._cache.keys[1]

    def incidents(self) -> IncidentIndex:
        """Return every incident opened on the log, folded incrementally."""
        self._cache.incidents = self._fold_on(
            self._cache.incidents, IncidentIndex, INCIDENT_ACTIONS
        )
        return self._cache.incidents[1]

    def _fold_on(
        self,
        cached: tuple[int, _Folded] | None,
        fresh: Callable[[], _Folded],
        actions: Sequence[str],
    ) -> tuple[int, _Folded]:
        """Fold the events of ``actions`` committed since ``cached`` into it (or a fresh one)."""
        if cached is None or cached[0] >= self._size:  # none yet, or the log shrank
            cached = (-1, fresh())
        after, folded = cached
        for seq, body in self._reader.by_actions(actions, after=after):
            folded.apply(seq, parse_found(seq, body, actions))
        return self._size - 1, folded

    def registries(
        self, identity: Callable[[str | None], str | None], context: str
    ) -> KnownRegistries:
        """Return what the log says each outside registry showed, folded incrementally.

        Only the ``registry.change`` and ``registry.sync`` events committed since the last fold are
        read (hash-checked, as every read here is), so a watch's poll does not
        slow down as the log grows. The fold is used again only when its
        context is the same and the last event it folded reads back with the
        same bytes; otherwise every event is read and folded afresh.
        """
        from auditml.core.registry import KnownRegistries

        actions = ("registry.change", "registry.sync")  # a sync: auditml moved an alias
        cached = self._cache.registries
        self._cache.registries = None  # until this fold is complete and true
        rows: list[tuple[int, bytes]] | None = None
        if cached is not None and cached.context == context and cached.after < self._size:
            if cached.anchor is None:
                rows = self._reader.by_actions(actions, after=cached.after)
            else:
                seq, digest = cached.anchor
                found = self._reader.by_actions(actions, after=seq - 1)
                same = bool(found) and found[0][0] == seq
                if same and hashlib.sha256(found[0][1]).digest() == digest:
                    rows = found[1:]
                    if rows and rows[0][0] <= cached.after:  # an event the fold never saw
                        rows = None
        if rows is None or cached is None:
            folded, anchor = KnownRegistries(identity), None
            rows = self._reader.by_actions(actions)
        else:
            folded, anchor = cached.folded, cached.anchor
        for seq, body in rows:
            folded.apply(seq, parse_found(seq, body, actions))
            anchor = (seq, hashlib.sha256(body).digest())
        self._cache.registries = RegistryFold(self._size - 1, context, anchor, folded)
        return folded

    def metrics(self, name: str, version: str) -> dict[str, float]:
        """Return the live metrics gates check: live training's, updated by live evaluations."""
        return self.model(name).version(version).gate_metrics()

    def running_everywhere(self) -> dict[str, list[str]]:
        """Return each environment where a version runs (or a rollout is under way), and what.

        Folded from the verified lifecycle events of every model ever deployed
        or rolled out, as ``credit v2`` (``credit v3 (canary)`` for a rollout).
        """
        rows = self._reader.by_actions(("model.deploy", "model.rollback", "rollout.start"))
        names = dict.fromkeys(str(parse(seq, body).subject.get("model", "")) for seq, body in rows)
        found: dict[str, list[str]] = {}
        for name in filter(None, names):
            state = self.model(name)
            for env, version in sorted(state.running.items()):
                found.setdefault(env, []).append(f"{name} v{version}")
            for env, rollout in sorted(state.rollouts.items()):
                found.setdefault(env, []).append(f"{name} v{rollout.version} ({rollout.mode})")
        return found

    def recorded_metrics(self) -> set[str]:
        """Return the name of every metric a training run or an evaluation recorded."""
        known: set[str] = set()
        for seq, body in self._reader.by_actions(("model.train", "model.evaluate")):
            known.update(numeric_metrics(parse(seq, body).data.get("metrics")))
        return known

    def check_environment(self, environment: str) -> None:
        """Refuse an environment name the policy does not declare (when it declares any)."""
        declared = self.policy.environments
        if declared and environment not in declared:
            from difflib import get_close_matches

            close = [e for e in declared if e.casefold() == environment.casefold()]
            close = close or get_close_matches(environment, list(declared), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidInputError(
                f"unknown environment {environment!r}: the policy declares "
                f"{', '.join(declared)}{hint}"
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


def _release_checks(
    view: View,
    state: ModelState,
    vs: VersionState,
    model: str,
    version: str,
    environment: str,
    exclude: Sequence[str],
) -> tuple[Callable[[], Denial | None], ...]:
    """Return what a version must meet to take all of ``environment``'s traffic.

    A deploy and a promotion to 100% are both releases and check the same:
    approvals (separation of duties applied), metric and comparison gates, and
    the card sections policy requires, all from live events only.
    """
    pol = view.policy
    return (
        lambda: check_approvals(
            pol,
            environment,
            vs.approvers_for(environment, exclude=exclude, people=view.people),
            model,
            version,
            view.people,
        ),
        lambda: check_gates(
            pol, environment, view.metrics(model, version), version, vs.live_comparisons
        ),
        lambda: check_card(
            pol, environment, state.card_sections(version, live=True), model, version
        ),
    )


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
    signature_pending: bool = False,
) -> Outcome:
    """Approve a version unless a rule refuses: role, reason, state, duties, e-signature.

    ``signature_pending`` checks every rule but the e-signature, which is made
    once the others pass (a key behind a passphrase is unlocked only then).
    """
    vs = view.known_model(model).version(version)
    for env in environments:
        view.check_environment(env)
    subject = {"model": model, "version": version}
    pol = view.policy
    denial = first(
        lambda: check_role(pol, actor.ids(), "approve"),
        lambda: check_reason(pol, "approve", reason),
        lambda: _check_usable(vs, "approve"),
        lambda: check_self_approval(pol, actor.ids(), vs.trainers, version, view.binding),
        lambda: (
            _check_signature(
                view, "model.approve", subject, actor.id, signature, artifact_sha256, origin
            )
            if not signature_pending
            else None
        ),
    )
    if denial is not None:
        return denied(view, denial, attempted="model.approve", actor=actor, subject=subject)
    data = {
        "reason": reason,
        "environments": list(environments),
        "artifact_sha256": artifact_sha256,
        "role": role_for(pol, actor.ids(), "approve"),
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
        try:
            verify_esignature(
                signature,
                origin=origin,
                action=action,
                model=subject["model"],
                version=subject["version"],
                artifact_sha256=artifact_sha256,
                public_key=record.public_key,
            )
        except VerificationError:
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
    own = action == "key.register" and signer in actor.ids()
    permission = "keys" if own or "keys" in pol.permissions else "policy"
    denial = check_role(pol, actor.ids(), permission)
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
    signature_pending: bool = False,
) -> Outcome:
    """Reject a version unless a rule refuses: role, reason or e-signature (as approve does)."""
    vs = view.known_model(model).version(version)
    subject = {"model": model, "version": version}
    pol = view.policy
    denial = first(
        lambda: check_role(pol, actor.ids(), "reject"),
        lambda: check_reason(pol, "reject", reason),
        lambda: (
            _check_signature(
                view, "model.reject", subject, actor.id, signature, artifact_sha256, origin
            )
            if not signature_pending
            else None
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
        "role": role_for(pol, actor.ids(), "reject"),
        "policy_seq": view.policy_seq,
        "artifact_sha256": artifact_sha256,
        "signature": signature,
    }
    return Outcome(Draft.build("model.reject", actor=actor, subject=subject, data=data))


def decide_deploy(
    view: View,
    *,
    model: str,
    version: str,
    environment: str,
    actor: Any,
    reason: str | None,
    traffic: int | None = None,
    shadow: bool = False,
) -> Outcome:
    """Deploy unless a rule refuses: role, reason, state, approvals, metric gates, rollouts.

    With ``traffic`` (percent, below 100) the version starts as a canary beside
    the stable one; with ``shadow`` it serves copies of traffic. Both record a
    ``rollout.start`` and need what runs there now; a plain deploy replaces it.
    """
    state = view.known_model(model)
    vs = state.version(version)
    view.check_environment(environment)
    current = state.running.get(environment)
    rollout = state.rollouts.get(environment)
    starting = traffic is not None or shadow
    if traffic is not None and shadow:
        raise InvalidInputError(
            "a version either serves a share of traffic (--traffic) or copies of it (--shadow), "
            "not both"
        )
    if traffic is not None and not 1 <= traffic <= 99:
        raise InvalidInputError(
            f"a canary serves 1% to 99% of traffic, not {traffic}%: leave out --traffic to "
            "deploy a version to all of it"
        )
    if rollout is not None:
        how = (
            f"`auditml promote {model} {rollout.version} --env {environment}`"
            if rollout.version == version
            else f"promote v{rollout.version} or roll it back first"
        )
        raise InvalidInputError(
            f"a {rollout.mode} of version {rollout.version} is in progress in {environment} "
            f"(event {rollout.seq}): {how}"
        )
    if current == version and environment not in state.running_imported():
        # Deploying over an imported run is allowed: it records the live decision, checked.
        raise InvalidInputError(f"version {version} of {model!r} already runs in {environment}")
    if starting and current is None:
        what = "shadow" if shadow else "canary"
        raise InvalidInputError(
            f"nothing of {model!r} runs in {environment} yet, and a {what} runs beside the "
            f"version there: deploy version {version} to all of {environment} instead"
        )
    subject = {"model": model, "version": version}
    pol = view.policy
    exclude = vs.trainers if pol.separation_of_duties else ()
    rule = pol.rollout.get(environment)

    def check_rollout() -> Denial | None:
        if rule is None:
            return None
        if not starting and current is not None and current != version:
            return Denial(
                "rollout-required",
                f"policy requires a version to reach {environment} through a canary of at most "
                f"{rule.canary}, watched for {rule.min_requests} requests and {rule.min_duration}",
                f"start one: `auditml deploy {model} {version} --env {environment} --traffic "
                f"{rule.canary}`, then `auditml promote` it",
            )
        if traffic is not None and traffic > rule.canary_percent:
            return Denial(
                "rollout-canary",
                f"a canary in {environment} may start with at most {rule.canary} of traffic, "
                f"not {traffic}%",
                f"start with --traffic {rule.canary} and widen it with `auditml promote`",
            )
        return None

    denial = first(
        lambda: check_not_monitor(pol, actor.ids(), "deploy"),
        lambda: check_role(pol, actor.ids(), "deploy"),
        lambda: check_reason(pol, "deploy", reason),
        lambda: _check_usable(vs, "deploy"),
        *_release_checks(view, state, vs, model, version, environment, exclude),
        check_rollout,
    )
    if denial is not None:
        return denied(
            view,
            denial,
            attempted="rollout.start" if starting else "model.deploy",
            actor=actor,
            subject=subject,
            environment=environment,
        )
    common = {
        "reason": reason,
        "role": role_for(pol, actor.ids(), "deploy"),
        "policy_seq": view.policy_seq,
    }
    if starting:
        data = {
            "environment": environment,
            "mode": "shadow" if shadow else "canary",
            "traffic": traffic,
            "stable": current,
            **common,
        }
        return Outcome(Draft.build("rollout.start", actor=actor, subject=subject, data=data))
    data = {"environment": environment, "replaces": current, **common}
    return Outcome(Draft.build("model.deploy", actor=actor, subject=subject, data=data))


def check_not_monitor(pol: Policy, actor: Sequence[str], what: str) -> Denial | None:
    """Refuse a deploy or promotion by a monitor's identity: only people widen a rollout.

    ``actor`` is every id the actor answers to (its id on the log, and the one given).
    """
    if not {person(who) for who in actor} & pol.monitor_actors():
        return None
    return Denial(
        "monitor-may-not-promote",
        f"{actor[0]} is a monitor's identity ([monitor] actor): a monitor may roll back, but never "
        f"{what}",
        f"have a person {what} it",
    )


def decide_promote(
    view: View,
    *,
    model: str,
    version: str,
    environment: str,
    traffic: int | None,
    actor: Any,
    reason: str | None,
    evidence: tuple[int, dict[str, Any]] | None,
) -> Outcome:
    """Widen a rollout's share unless a rule refuses; 100% (None) makes it the stable version.

    ``evidence`` is ``(rollout seq, figures)``: the canary's verified runtime
    records since that rollout started, read before the lock (records only
    grow, so they are a floor of what the log holds now). Promotion to all
    traffic checks them against the environment's ``[rollout]`` rule.
    """
    state = view.known_model(model)
    vs = state.version(version)
    view.check_environment(environment)
    rollout = state.rollouts.get(environment)
    if rollout is None or rollout.version != version:
        running = f"a rollout of version {rollout.version}" if rollout else "no rollout"
        raise InvalidInputError(
            f"version {version} of {model!r} is in no rollout in {environment} ({running} is): "
            f"start one with `auditml deploy {model} {version} --env {environment} --traffic 10%`"
        )
    share = 100 if traffic is None else traffic
    if not 1 <= share <= 100:
        raise InvalidInputError(f"a share of traffic is 1% to 100%, not {share}%")
    if share <= rollout.traffic:
        raise InvalidInputError(
            f"version {version} already serves {rollout.traffic}% of {environment}: a promotion "
            "widens its share; give more, or leave out --traffic for all of it"
        )
    if evidence is not None and evidence[0] != rollout.seq:
        raise InvalidInputError(
            "the rollout changed while its evidence was read; run the promotion again"
        )
    figures = evidence[1] if evidence is not None else None
    subject = {"model": model, "version": version}
    pol = view.policy
    exclude = vs.trainers if pol.separation_of_duties else ()
    rule = pol.rollout.get(environment)

    def check_imported() -> Denial | None:
        if not rollout.imported:
            return None
        return Denial(
            "rollout-imported",
            f"the rollout of version {version} in {environment} (event {rollout.seq}) is imported "
            "history, not a canary auditml watched",
            f"start a live canary: roll {environment} back, then `auditml deploy {model} "
            f"{version} --env {environment} --traffic 10%`",
        )

    def check_canary() -> Denial | None:
        if rule is None or share < 100 or rollout.mode != "shadow":
            return None
        return Denial(
            "rollout-required",
            f"version {version} runs in {environment} as a shadow, which answers no one: policy "
            f"requires a canary of at most {rule.canary} before it takes all traffic",
            f"make it a canary first: `auditml promote {model} {version} --env {environment} "
            f"--traffic {rule.canary}`",
        )

    def check_evidence() -> Denial | None:
        if rule is None or share < 100:
            return None
        requests = int(figures["requests"]) if figures else 0
        ran = float(figures["duration_s"]) if figures else 0.0
        short = []
        if requests < rule.min_requests:
            short.append(f"{requests} of the {rule.min_requests} requests")
        if ran < rule.min_duration_s:
            short.append(f"{ran / 60:.1f} min of the {rule.min_duration}")
        if not short:
            return None
        return Denial(
            "rollout-evidence",
            f"the canary of version {version} in {environment} has served only "
            f"{' and '.join(short)} policy requires before it takes all traffic "
            "(verified runtime records since it started)",
            "let it serve longer and record its runtime records, or widen it short of 100% "
            "with --traffic",
        )

    denial = first(
        lambda: check_not_monitor(pol, actor.ids(), "promote"),
        lambda: check_role(pol, actor.ids(), "deploy"),
        lambda: check_reason(pol, "deploy", reason),
        check_imported,
        lambda: _check_usable(vs, "deploy"),
        *_release_checks(view, state, vs, model, version, environment, exclude),
        check_canary,
        check_evidence,
    )
    if denial is not None:
        return denied(
            view,
            denial,
            attempted="model.deploy" if share == 100 else "rollout.promote",
            actor=actor,
            subject=subject,
            environment=environment,
        )
    common = {
        "reason": reason,
        "role": role_for(pol, actor.ids(), "deploy"),
        "policy_seq": view.policy_seq,
        "rollout": rollout.seq,
        "evidence": figures,
    }
    if share == 100:
        data = {"environment": environment, "replaces": rollout.stable, **common}
        return Outcome(Draft.build("model.deploy", actor=actor, subject=subject, data=data))
    data = {"environment": environment, "traffic": share, "previous": rollout.traffic, **common}
    return Outcome(Draft.build("rollout.promote", actor=actor, subject=subject, data=data))


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
    view: View,
    *,
    model: str,
    environment: str,
    to: str | None,
    actor: Any,
    reason: str | None,
    cause: tuple[int, str] | None = None,
    rollout_seq: int | None = None,
) -> Outcome:
    """Roll back unless a rule refuses: role, reason, a target that ran there and is approved.

    During a rollout, a rollback ends it: the canary or shadow stops and the
    stable version serves all traffic again. ``cause`` (seq, hash) names the
    ``monitor.check`` behind an automatic rollback, which must be on the log,
    tripped, and about the rollout in force (``rollout_seq``).
    """
    state = view.known_model(model)
    view.check_environment(environment)
    current = state.running.get(environment)
    if current is None:
        raise InvalidInputError(
            f"nothing of {model!r} runs in {environment}, so there is nothing to roll back"
        )
    rollout = state.rollouts.get(environment)
    if rollout_seq is not None and (rollout is None or rollout.seq != rollout_seq):
        raise InvalidInputError(
            f"the rollout the monitor checked (event {rollout_seq}) is no longer in progress "
            f"in {environment}: nothing was rolled back"
        )
    if cause is not None:
        _check_cause(view, model, environment, cause, rollout_seq)
    pol = view.policy
    target = to
    if rollout is not None:
        if target is not None and target != rollout.stable:
            raise InvalidInputError(
                f"a {rollout.mode} of version {rollout.version} is in progress in {environment}: "
                f"a rollback ends it and leaves version {rollout.stable} alone there; leave out "
                "--to, then roll back again if need be"
            )
        target = rollout.stable
    elif target is not None:
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
        if rollout is not None:
            return None  # the stable version still runs there: ending the rollout keeps it
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
        lambda: check_role(pol, actor.ids(), "rollback"),
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
        "replaces": rollout.version if rollout is not None else current,
        "reason": reason,
        "role": role_for(pol, actor.ids(), "rollback"),
        "policy_seq": view.policy_seq,
        "rollout": rollout.seq if rollout is not None else None,
        "cause": {"seq": cause[0], "hash": cause[1]} if cause is not None else None,
    }
    extra: dict[str, Any] = {}
    if rollout is None and target is not None:
        short = _short_of_release(view, state, model, target, environment)
        if short is not None:
            extra["short_of_policy"] = short
    return Outcome(
        Draft.build("model.rollback", actor=actor, subject=subject, data=data),
        version=target,
        extra=extra,
    )


def _short_of_release(
    view: View, state: ModelState, model: str, version: str, environment: str
) -> str | None:
    """Return what a version put back by a rollback lacks to be deployed there now, or None.

    A rollback to a version that ran there before is allowed in an emergency
    even when today's policy would refuse to deploy it (more approvals, a new
    gate); it must not be silent, so the caller warns with this sentence. The
    event needs no field for it: it binds ``policy_seq``, and the approvals
    and metrics it falls short of are on the log.
    """
    vs = state.versions[version]
    exclude = vs.trainers if view.policy.separation_of_duties else ()
    denial = first(*_release_checks(view, state, vs, model, version, environment, exclude))
    if denial is None:
        return None
    return (
        f"version {version} does not meet what the policy in force (event {view.policy_seq}) "
        f"requires to deploy it to {environment} now: {denial.message}. It was rolled back "
        f"anyway, as a version that ran there before may be in an emergency; to make it "
        f"compliant, {denial.remedy}"
    )


def _check_cause(
    view: View, model: str, environment: str, cause: tuple[int, str], rollout_seq: int | None
) -> None:
    """Refuse an automatic rollback unless its check is on the log, live, tripped and this one's."""
    seq, digest = cause
    found = [
        (at, body)
        for at, body in view.reader.bodies(model, ("monitor.check",), after=seq - 1)
        if at == seq
    ]
    event = parse_found(seq, found[0][1], ("monitor.check",), model) if found else None
    problem = None
    if event is None or found[0][1] is None:
        problem = f"there is no monitor check of {model!r} at event {seq}"
    elif merkle.leaf_hash(found[0][1]).hex() != digest:
        problem = f"the event at {seq} does not have the hash {digest[:16]}…"
    elif is_imported(event.data):
        problem = f"the monitor check at event {seq} is imported history"
    elif event.data.get("verdict") != "tripped":
        problem = f"the monitor check at event {seq} did not trip ({event.data.get('verdict')})"
    elif event.data.get("environment") != environment or (
        rollout_seq is not None and event.data.get("rollout") != rollout_seq
    ):
        problem = f"the monitor check at event {seq} is about another rollout"
    if problem is not None:
        raise InvalidInputError(f"no automatic rollback: {problem}")


def decide_monitor_check(
    view: View,
    *,
    model: str,
    environment: str,
    actor: Any,
    rollout_seq: int,
    data: dict[str, Any],
) -> Outcome:
    """Record a monitor check of the rollout in force; refuse one about a rollout that ended."""
    state = view.known_model(model)
    view.check_environment(environment)
    rollout = state.rollouts.get(environment)
    if rollout is None or rollout.seq != rollout_seq:
        raise InvalidInputError(
            f"the rollout in {environment} changed while the monitor read its records "
            "(it was promoted or rolled back): run the monitor again"
        )
    subject = {"model": model, "version": rollout.version}
    return Outcome(Draft.build("monitor.check", actor=actor, subject=subject, data=data))


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
        lambda: check_role(pol, actor.ids(), "retire"),
        lambda: check_reason(pol, "retire", reason),
        check_running,
    )
    if denial is not None:
        return denied(view, denial, attempted="model.retire", actor=actor, subject=subject)
    data = {
        "reason": reason,
        "role": role_for(pol, actor.ids(), "retire"),
        "policy_seq": view.policy_seq,
    }
    return Outcome(Draft.build("model.retire", actor=actor, subject=subject, data=data))


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

    With ``data`` None this only checks: it returns an outcome with no draft and
    the version the run would get, or the denial to record.
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
    denial = check_role(view.policy, actor.ids(), "train")
    if denial is not None:
        out = denied(view, denial, attempted="model.train", actor=actor, subject=subject)
        out.version = version
        return out
    if data is None:
        return Outcome(None, version=version)
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
    denial = check_role(view.policy, actor.ids(), "card")
    if denial is not None:
        return denied(view, denial, attempted="card.update", actor=actor, subject=subject)
    return Outcome(Draft.build("card.update", actor=actor, subject=subject, data=data))


def decide_evaluate(
    view: View,
    *,
    model: str,
    version: str,
    actor: Any,
    data: dict[str, Any],
    baseline: str | None = None,
) -> Outcome:
    """Record an evaluation of a known version unless the actor may not evaluate.

    A comparison's ``baseline`` must be another trained version of the model on the log.
    """
    state = view.known_model(model)
    state.version(version)
    if baseline is not None:
        if baseline not in state.versions:
            raise InvalidInputError(
                f"baseline version {baseline!r} of {model!r} is not on the log (known versions: "
                f"{', '.join(state.versions)}): compare with a version recorded there"
            )
        base = state.version(baseline)
        if base.status == "failed":
            raise InvalidInputError(
                f"baseline version {baseline} of {model!r} is a failed training run: "
                "compare with a version that was trained"
            )
    subject = {"model": model, "version": version}
    denial = check_role(view.policy, actor.ids(), "evaluate")
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
    denial = check_role(view.policy, actor.ids(), "incident")
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
    denial = check_role(view.policy, actor.ids(), "incident")
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
    allow_stranded: bool = False,
    review: bool = False,
) -> Outcome:
    """Record a new policy unless the policy in force forbids this actor to change it.

    A policy that leaves undeclared an environment where a version runs is
    refused unless ``allow_stranded``, and then the event names what it
    strands. ``extra["review"]`` holds the :class:`PolicyReview`; ``review``
    (a dry run, never appended) adds its warnings and accepts the policy in force.
    """
    denial = check_role(view.policy, actor.ids(), "policy")
    if denial is not None:
        return denied(view, denial, attempted="policy.update", actor=actor, subject={})
    if not review and view.policy_seq is not None and policy == view.policy:
        raise InvalidInputError(
            f"this policy is already in force (recorded at event {view.policy_seq}); "
            "nothing was recorded"
        )
    stranded = stranded_environments(policy, view.running_everywhere())
    if stranded and not allow_stranded:
        what = "; ".join(f"{env} runs {', '.join(runs)}" for env, runs in stranded.items())
        envs = ", ".join(repr(env) for env in stranded)
        raise InvalidInputError(
            f"this policy's environments ({', '.join(policy.environments)}) leave out "
            f"{envs}, where a version runs ({what}): once it is in force no rollback, deploy "
            f"or retirement could name {envs}. Add {envs} to environments, or, to strand "
            "it on purpose, apply with --allow-stranded (allow_stranded=True), which the "
            "policy event records; nothing was recorded"
        )
    found = PolicyReview(
        view.policy_seq,
        policy_changes(view.policy, policy),
        unknown_gate_metrics(policy, view.recorded_metrics()) if review else (),
        stranded,
    )
    data = {
        "policy": policy.as_data(),
        "source": source,
        "sha256": sha256,
        "reason": reason,
        "stranded": list(stranded),
    }
    draft = Draft.build("policy.update", actor=actor, subject={}, data=data)
    return Outcome(draft, extra={"review": found})
