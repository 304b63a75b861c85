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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditml._internal.policyfile import load_policy
from auditml.core.compare import DEFAULT_LEVEL, DEFAULT_RESAMPLES, parse_level
from auditml.core.decide import (
    Outcome,
    View,
    decide_approve,
    decide_card_update,
    decide_close_incident,
    decide_deploy,
    decide_evaluate,
    decide_monitor_check,
    decide_open_incident,
    decide_policy,
    decide_promote,
    decide_reject,
    decide_retire,
    decide_rollback,
    decide_train,
)
from auditml.core.events import (
    INCIDENT_ACTIONS,
    LIFECYCLE_ACTIONS,
    Actor,
    ArtifactRef,
    DatasetRef,
    ESignature,
    Event,
    TrainData,
    validate_data,
)
from auditml.core.incidents import Incident, IncidentIndex
from auditml.core.policy import (
    Policy,
    PolicyReview,
    check_recordable,
    policy_digest,
)
from auditml.core.rollout import (
    evidence_counts,
    judge,
    parse_duration_s,
    parse_percent,
    prepare_statistics,
    statistics,
)
from auditml.core.signing import Signer, fingerprint, make_esignature
from auditml.core.state import (
    ModelState,
    Move,
    Rollout,
    SplitChange,
    fold,
    policy_in_force,
    states,
)
from auditml.errors import (
    InvalidInputError,
    PolicyDeniedError,
)

if TYPE_CHECKING:
    from auditml.ledger import Ledger, Receipt

__all__ = ["Lifecycle", "MonitorResult"]


@dataclass(frozen=True)
class MonitorResult:
    """A monitor check recorded: its receipt, its verdict and data, and any rollback it caused."""

    check: Receipt
    verdict: str
    data: dict[str, Any]
    rollback: Receipt | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the check as plain JSON values."""
        return {
            "seq": self.check.seq,
            "hash": self.check.hash,
            "verdict": self.verdict,
            **{k: v for k, v in self.data.items() if k != "verdict"},
            "rollback": None
            if self.rollback is None
            else {"seq": self.rollback.seq, "hash": self.rollback.hash},
        }


def _when(text: str) -> datetime:
    """Return an RFC 3339 UTC time as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _rfc3339(value: str | datetime | None) -> str:
    """Return a time as the log writes it (RFC 3339 UTC, microseconds, Z); None means now."""
    from auditml.ledger import to_timestamp

    return to_timestamp(datetime.now(UTC) if value is None else value)


def _run_times(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` with its run times in the log's UTC form; refuse zoneless or reversed."""
    from auditml.ledger import to_timestamp

    found = dict(data)
    for key in ("started_at", "ended_at"):
        text = found.get(key)
        if isinstance(text, str):
            found[key] = to_timestamp(text, what=key)
    start, end = found.get("started_at"), found.get("ended_at")
    if isinstance(start, str) and isinstance(end, str) and end < start:
        raise InvalidInputError(
            f"the run ended ({data['ended_at']}) before it started ({data['started_at']}): "
            "check started_at and ended_at"
        )
    return found


class Lifecycle:
    """The lifecycle service over a ledger: decisions checked against policy, status and history."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._decide = ledger.decide
        self._decided = ledger.decided
        self._decided_outcome = ledger.decided_outcome
        self._records = ledger.records

    @property
    def origin(self) -> str:
        """Return the log's origin name."""
        return self._ledger.origin

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
                at=datetime.now(UTC),
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
        """Approve a version (for ``environments``, or any when empty), if policy allows."""
        return self._signed_decision(
            partial(decide_approve, environments=list(environments)),
            "model.approve",
            model,
            str(version),
            reason=reason,
            artifact_sha256=artifact_sha256,
            actor=actor,
            signer=signer,
            meaning=meaning,
            name=name,
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
        """Reject a version, if policy allows; it can then never be deployed."""
        return self._signed_decision(
            decide_reject,
            "model.reject",
            model,
            str(version),
            reason=reason,
            artifact_sha256=artifact_sha256,
            actor=actor,
            signer=signer,
            meaning=meaning,
            name=name,
        )

    def _signed_decision(
        self,
        decide: Callable[..., Outcome],
        action: str,
        model: str,
        version: str,
        *,
        reason: str | None,
        artifact_sha256: str | None,
        actor: Actor | str | None,
        signer: Signer | None,
        meaning: str,
        name: str | None,
    ) -> Receipt:
        """Sign a decision's statement (before the lock), then decide and record it.

        With a signer, every other rule is checked first, on the committed log: a
        decision they refuse is denied (and recorded) before the key is used, so a
        key behind a passphrase is not unlocked, nor its passphrase asked, in vain.
        """
        who = self._ledger.identify(actor)
        judge = partial(
            decide,
            model=model,
            version=version,
            actor=who,
            reason=reason,
            artifact_sha256=artifact_sha256,
            origin=self.origin,
        )
        if signer is not None:

            def other_rules(view: View) -> Outcome:
                found = judge(view, signature=None, signature_pending=True)
                return found if found.denial is not None else Outcome(None)

            self._ledger.check(other_rules)  # records and raises a denial; appends nothing else
        signature = self._esign(
            signer,
            action=action,
            model=model,
            version=version,
            artifact_sha256=artifact_sha256,
            meaning=meaning,
            actor=who,
            name=name,
        )
        return self._decided(lambda view: judge(view, signature=signature))

    def deploy(
        self,
        model: str,
        version: str,
        environment: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
        traffic: str | int | None = None,
        shadow: bool = False,
    ) -> Receipt:
        """Deploy a version to an environment, if policy allows; records what it replaced.

        ``traffic`` (e.g. ``"10%"``) starts it as a canary beside the version
        running there; ``shadow`` has it serve copies of traffic. Both start a
        rollout, which :meth:`promote` widens and :meth:`rollback` ends.
        """
        who = self._ledger.identify(actor)
        share = None if traffic is None else parse_percent(traffic, where="traffic")
        if share == 100:
            share = None  # all of the traffic: a plain deploy
        return self._decided(
            lambda view: decide_deploy(
                view,
                model=model,
                version=str(version),
                environment=environment,
                actor=who,
                reason=reason,
                traffic=share,
                shadow=bool(shadow),
            )
        )

    def _rollout(self, model: str, environment: str) -> tuple[Rollout | None, Policy]:
        """Return the rollout in progress in ``environment`` (or None) and the policy in force."""

        def look(view: View) -> Outcome:
            view.check_environment(environment)
            state = view.known_model(model)
            return Outcome(
                None, extra={"rollout": state.rollouts.get(environment), "policy": view.policy}
            )

        extra = self._ledger.peek(look).extra
        return extra["rollout"], extra["policy"]

    def canary_evidence(
        self, model: str, environment: str, now: datetime | None = None
    ) -> tuple[int, dict[str, Any]] | None:
        """Return the rollout in ``environment`` and its canary's verified records since it began.

        The figures count runtime records of the canary and the stable version
        from the rollout's start to ``now``, read from bytes that hash to their
        segments' roots (never from the record table's columns).
        """
        from auditml.evidence import window_samples  # reads runtime records: not for a decision

        rollout, _ = self._rollout(model, environment)
        if rollout is None:
            return None
        until = _rfc3339(now)
        since = rollout.serving_since or rollout.time  # a shadow's records answered no one
        samples = window_samples(
            self._ledger,
            model=model,
            env=environment,
            since=since,
            until=until,
            versions=[rollout.version, rollout.stable],
        )
        canary, stable = samples[rollout.version], samples[rollout.stable]
        ran = max(0.0, (_when(until) - _when(since)).total_seconds())
        figures = {
            "requests": canary.requests,
            "errors": canary.errors,
            "since": since,
            "until": until,
            "duration_s": round(ran, 3),
            "stable_requests": stable.requests,
            "stable_errors": stable.errors,
        }
        return rollout.seq, figures

    def promote(
        self,
        model: str,
        version: str,
        environment: str,
        *,
        traffic: str | int | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Widen a rollout's share of traffic; without ``traffic`` (or 100%) it takes it all.

        Promotion to all traffic makes the version the stable one there (a
        ``model.deploy`` naming the rollout and the canary's evidence), checked
        against the environment's ``[rollout]`` rule; a shorter step records a
        ``rollout.promote``. A monitor's identity may never promote.
        """
        who = self._ledger.identify(actor)
        share = None if traffic is None else parse_percent(traffic, where="traffic")
        evidence = self.canary_evidence(model, environment)
        return self._decided(
            lambda view: decide_promote(
                view,
                model=model,
                version=str(version),
                environment=environment,
                traffic=share,
                actor=who,
                reason=reason,
                evidence=evidence,
            )
        )

    def monitor(
        self,
        model: str,
        environment: str,
        *,
        window: str | None = None,
        act: bool = False,
        now: datetime | None = None,
    ) -> MonitorResult:
        """Check the rollout in ``environment`` against its triggers; record a ``monitor.check``.

        The canary's verified runtime records over the window (default: the
        policy's ``[monitor.ENV] window``, never before the rollout began) are
        compared with the stable version's. With too few records of either,
        the check is ``undecided`` and nothing more happens. With ``act``, a
        tripped check rolls the environment back as the monitor's own identity,
        the rollback naming the check (its seq and hash).
        """
        from auditml.evidence import window_samples  # reads runtime records: not for a decision

        rollout, policy = self._rollout(model, environment)
        rule = policy.monitor.get(environment)
        if rule is None:
            raise InvalidInputError(
                f"the policy in force declares no monitor for {environment}: add "
                f'[monitor.{environment}] with triggers = ["error_rate > 0.02"] to the policy '
                "file and record it with `auditml policy apply`"
            )
        if not rule.triggers:
            raise InvalidInputError(
                f"[monitor.{environment}] declares no triggers: a check would have nothing to judge"
            )
        if rollout is None:
            raise InvalidInputError(
                f"no rollout of {model!r} is in progress in {environment}: a monitor compares "
                f"a canary with the stable version (start one with `auditml deploy {model} "
                f"VERSION --env {environment} --traffic 10%`)"
            )
        if rollout.imported:
            raise InvalidInputError(
                f"the rollout in {environment} (event {rollout.seq}) is imported history: "
                "auditml monitors only rollouts it recorded"
            )
        seconds = rule.window_s if window is None else parse_duration_s(window, where="window")
        triggers = rule.parsed()
        until_dt = (now or datetime.now(UTC)).astimezone(UTC)
        until = _rfc3339(until_dt)
        try:
            start = until_dt - timedelta(seconds=seconds)
        except OverflowError:  # a window longer than the calendar reaches back: all of it
            start = datetime(1970, 1, 1, tzinfo=UTC)
        since = max(_rfc3339(start), rollout.time)
        if since >= until:
            raise InvalidInputError(
                f"the window ends ({until}) before the rollout began ({rollout.time})"
            )
        fields = sorted({t.field for t in triggers if t.field})
        samples = window_samples(
            self._ledger,
            model=model,
            env=environment,
            since=since,
            until=until,
            versions=[rollout.version, rollout.stable],
            fields=fields,
            meanwhile=prepare_statistics,
        )
        canary, stable = samples[rollout.version], samples[rollout.stable]
        figures = statistics(canary, stable, triggers, min_values=rule.min_requests)
        enough = canary.requests >= rule.min_requests and (
            rollout.mode == "shadow" or stable.requests >= rule.min_requests
        )
        verdict, results = judge(figures, triggers, enough=enough)
        data = validate_data(
            "monitor.check",
            {
                "environment": environment,
                "canary": rollout.version,
                "stable": rollout.stable,
                "mode": rollout.mode,
                "rollout": rollout.seq,
                "window": {
                    "since": since,
                    "until": until,
                    "seconds": round((_when(until) - _when(since)).total_seconds(), 6),
                },
                "min_requests": rule.min_requests,
                "counts": evidence_counts(canary, stable, triggers),
                "statistics": figures,
                "triggers": results,
                "verdict": verdict,
                "policy_seq": None,
            },
        )
        monitor = self._ledger.identify(rule.actor)

        def check(view: View) -> Outcome:
            data["policy_seq"] = view.policy_seq
            return decide_monitor_check(
                view,
                model=model,
                environment=environment,
                actor=monitor,
                rollout_seq=rollout.seq,
                data={k: v for k, v in data.items() if v is not None},
            )

        receipt = self._decided(check)
        rolled = None
        if act and verdict == "tripped":
            fired = "; ".join(
                f"{r['statistic']} = {r['value']:.4g} tripped {r['trigger']!r}"
                for r in results
                if r["tripped"]
            )
            rolled = self._decided(
                lambda view: decide_rollback(
                    view,
                    model=model,
                    environment=environment,
                    to=None,
                    actor=monitor,
                    reason=f"monitor check {receipt.seq} tripped: {fired}",
                    cause=(receipt.seq, receipt.hash),
                    rollout_seq=rollout.seq,
                )
            )
        return MonitorResult(receipt, verdict, data, rolled)

    def rollback(
        self,
        model: str,
        environment: str,
        *,
        to: str | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Roll an environment back to ``to``, or to the previous version that ran there.

        During a rollout it ends the rollout: the stable version serves alone again.
        A version put back that today's policy would not let deploy there (too
        few approvals, a gate it fails) is rolled back all the same, as an
        emergency may need, with a :class:`UserWarning` that says what it lacks.
        """
        who = self._ledger.identify(actor)
        target = None if to is None else str(to)
        receipt, outcome = self._decided_outcome(
            lambda view: decide_rollback(
                view, model=model, environment=environment, to=target, actor=who, reason=reason
            )
        )
        short = outcome.extra.get("short_of_policy")
        if short:
            warnings.warn(str(short), UserWarning, stacklevel=3)  # the caller of AuditLog.rollback
        return receipt

    def retire(
        self,
        model: str,
        version: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Retire a version for good, if policy allows and it runs nowhere."""
        who = self._ledger.identify(actor)
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
        examples: str | os.PathLike[str] | None = None,
        baseline: str | None = None,
        compare: Sequence[str] | None = None,
        confidence: float | str | Sequence[float | str] = DEFAULT_LEVEL,
        seed: int = 0,
        resamples: int = DEFAULT_RESAMPLES,
    ) -> Receipt:
        """Record an evaluation of a trained version; files named are hashed first.

        With ``examples`` (a per-example file, see :mod:`auditml.core.compare`)
        and ``baseline`` (another version of the model), the version is compared
        with the baseline on those examples for each metric of ``compare``
        (default: every one the file can answer) and the comparisons are
        recorded with the file's digest.
        """
        from auditml._internal.fingerprint import artifact_ref, dataset_ref

        who = self._ledger.identify(actor)
        compared = _comparisons(
            str(version), examples, baseline, compare, confidence, seed, resamples
        )
        data = validate_data(
            "model.evaluate",
            {
                **compared,
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
                view,
                model=model,
                version=str(version),
                actor=who,
                data=data,
                baseline=None if baseline is None else str(baseline),
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

        ``aware_at`` may not be later than now (five minutes allowed for clocks):
        it sets the EU AI Act Art. 73 deadline, which a future time would push back.
        """
        who = self._ledger.identify(actor)
        if aware_at is not None:
            aware = _rfc3339(aware_at)
            latest = _rfc3339(datetime.now(UTC) + timedelta(minutes=5))
            if aware > latest:
                raise InvalidInputError(
                    f"aware_at (--aware-at) {aware} is in the future (now is {_rfc3339(None)}): "
                    "give when "
                    "you became aware of the incident, which sets its reporting deadline"
                )
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
        assert draft is not None  # decided_outcome returns only what it appended
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
        who = self._ledger.identify(actor)
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

    def check_stream(self, model: str, env: str) -> None:
        """Refuse runtime records for a model never trained here or an undeclared environment."""

        def check(view: View) -> Outcome:
            view.known_model(model)
            view.check_environment(env)
            return Outcome(None)

        self._ledger.peek(check)

    def update_card(
        self,
        model: str,
        sections: Mapping[str, Any] | str | os.PathLike[str],
        *,
        version: str | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Receipt:
        """Record the human-written sections of a model card (a mapping, or a YAML/JSON file)."""
        from auditml._internal.sectionfile import read_sections
        from auditml.core.card import validate_sections

        who = self._ledger.identify(actor)
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
        """Record a training run done elsewhere; the receipt names the version it got.

        ``started_at`` and ``ended_at`` may be any ISO 8601 time with a zone
        (``2026-12-04T20:00:00Z``, ``…+01:00``); they are recorded in UTC, in the
        log's form, and the run may not end before it started.
        """
        who = self._ledger.identify(actor)
        if isinstance(data, Mapping):
            data = _run_times(data)
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
        actor = self._ledger.pseudonymize(actor)
        outcome = self._ledger.check(
            lambda view: decide_train(view, model=model, version=version, actor=actor, data=None)
        )
        assert outcome.version is not None  # decide_train always names the version
        return outcome.version

    def _finish_training(
        self, model: str, version: str | None, *, auto: bool, actor: Actor, data: dict[str, Any]
    ) -> Receipt:
        """Record a finished run's ``model.train`` event."""
        actor = self._ledger.pseudonymize(actor)
        payload = validate_data("model.train", data)
        return self._decided(
            lambda view: decide_train(
                view, model=model, version=version, actor=actor, data=payload, auto=auto
            )
        )

    def apply_policy(
        self,
        policy: Policy | str | Path,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
        allow_stranded: bool = False,
    ) -> Receipt:
        """Record a policy (a Policy or a TOML file); it is in force from this event on."""
        who = self._ledger.identify(actor)
        chosen, source, sha = _policy_to_record(policy)
        return self._decided(
            lambda view: decide_policy(
                view,
                policy=chosen,
                actor=who,
                source=source,
                sha256=sha,
                reason=reason,
                allow_stranded=allow_stranded,
            )
        )

    def review_policy(
        self,
        policy: Policy | str | Path,
        *,
        actor: Actor | str | None = None,
        allow_stranded: bool = False,
    ) -> PolicyReview:
        """Return what recording ``policy`` would change and warn of, writing nothing at all.

        It refuses what :meth:`apply_policy` would refuse, with the same errors;
        a denial is raised with ``seq`` None, as none is recorded.
        """
        who = self._ledger.identify(actor)
        chosen, source, sha = _policy_to_record(policy)
        outcome = self._ledger.peek(
            lambda view: decide_policy(
                view,
                policy=chosen,
                actor=who,
                source=source,
                sha256=sha,
                reason=None,
                allow_stranded=allow_stranded,
                review=True,
            )
        )
        if outcome.denial is not None:
            d = outcome.denial
            raise PolicyDeniedError(
                f"{d.message} (a dry run: nothing was recorded)", rule=d.rule, remedy=d.remedy
            )
        found: PolicyReview = outcome.extra["review"]
        return found

    def policy(self) -> tuple[Policy, int | None]:
        """Return the policy in force and the seq of the event that recorded it (None: default)."""
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

    def splits(self, model: str, environment: str | None = None) -> list[SplitChange]:
        """Return every change of the model's traffic split, oldest first, and the split after."""
        declared = self.policy()[0].environments
        if environment is not None and declared and environment not in declared:
            raise InvalidInputError(
                f"unknown environment {environment!r}: the policy declares {', '.join(declared)}"
            )
        return self.status(model)[model].split_history(environment)


def _policy_to_record(policy: Policy | str | Path) -> tuple[Policy, str | None, str | None]:
    """Return the policy to record (checked recordable), its file name and its SHA-256."""
    source = sha = None
    if isinstance(policy, Policy):
        chosen = policy
    else:
        chosen, raw = load_policy(policy)
        source, sha = Path(policy).name, policy_digest(raw)
    check_recordable(chosen)
    return chosen, source, sha


def _comparisons(
    version: str,
    examples: str | os.PathLike[str] | None,
    baseline: str | None,
    metrics: Sequence[str] | None,
    confidence: float | str | Sequence[float | str],
    seed: int,
    resamples: int,
) -> dict[str, Any]:
    """Read the per-example file and compare the version with its baseline, or return {}.

    Runs before the append transaction (it can take a second on large files);
    the decision then checks that the baseline is a version on the log.
    """
    if examples is None:
        if baseline is not None or metrics:
            raise InvalidInputError(
                "a comparison with a baseline needs the per-example file: give examples= "
                "(--examples FILE) with the labels and both versions' outputs"
            )
        return {}
    if baseline is None or not str(baseline).strip():
        raise InvalidInputError(
            "a per-example file is compared with a baseline version: give baseline= "
            "(--baseline V), the version this one would replace"
        )
    if str(baseline) == version:
        raise InvalidInputError(
            f"the baseline must be another version than the one evaluated ({version})"
        )
    from auditml._internal.fingerprint import read_with_ref
    from auditml.core.compare import COMPARABLE, compare, parse_examples

    raw, ref = read_with_ref(examples, "per-example file")
    table = parse_examples(raw, where=os.fspath(examples))
    chosen = list(metrics or [m for m in COMPARABLE if table.has(m)])
    if not chosen:
        raise InvalidInputError(
            f"{os.fspath(examples)} has neither score and baseline_score columns (for auc) nor "
            "prediction and baseline_prediction columns (for accuracy)"
        )
    levels = [confidence] if isinstance(confidence, str | int | float) else list(confidence)
    found = compare(
        table,
        chosen,
        baseline=str(baseline),
        levels=[parse_level(level) for level in levels] or [DEFAULT_LEVEL],
        resamples=resamples,
        seed=seed,
        where=os.fspath(examples),
    )
    return {"examples": ref, "comparisons": found}
