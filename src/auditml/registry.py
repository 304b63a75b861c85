"""Following an outside model registry (MLflow): record what changed there, and what broke policy.

The edge code (:mod:`auditml.mlflow_bridge`) reads the registry with MLflow's
own client into a :class:`~auditml.core.registry.Snapshot`; this service
records the difference from what the log already holds, inside one append
transaction, deciding what is new from the ``registry.change`` events read
back as verified bytes under the head lock. So recording the same snapshot
again (a second ``auditml import mlflow``, the next poll) records nothing, and
two writers cannot record one change twice. The events are folded once per
process and then only the new ones are read (:meth:`auditml.core.decide.View.registries`),
so a poll does not slow down as the log grows. A registry is keyed by the
identity of its URI (:func:`auditml.core.uri.registry_identity`), one for
every spelling of it, old events' spellings included.

A version the log does not know yet is recorded as an imported ``model.train``
(its run's parameters, metrics, tags and times are MLflow's word), beside the
``registry.change`` that says it appeared. A version the log already holds a
training for is that training only when the training names the MLflow run
the version came from; anything else is refused, naming both, and nothing is
recorded (MLflow and auditml number versions each on their own). An import marks every event it
records as imported history; a watch records each change live, as auditml saw
it, and checks it against the policy in force (:func:`auditml.core.registry.violations`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from auditml.core.decide import Outcome, View
from auditml.core.events import REGISTRY_ACTIONS, Actor, Draft, RegistryViolation
from auditml.core.privacy import is_pseudonym
from auditml.core.registry import Change, Snapshot, diff, violations
from auditml.core.state import VersionState, parse_found
from auditml.core.uri import registry_identity, scrub_uri
from auditml.errors import InvalidInputError

if TYPE_CHECKING:
    from auditml.ledger import Ledger, Receipt

__all__ = ["ImportedRun", "Recorded", "RegistryService", "ViolationEntry", "training_run"]


@dataclass(frozen=True)
class ImportedRun:
    """A registry version's source run, as the registry tells it: recorded as imported training."""

    actor: str
    data: dict[str, Any]
    mark: dict[str, Any]


@dataclass
class Recorded:
    """What one recording appended: each change with its event and the rules it broke."""

    changes: list[tuple[Change, int, list[RegistryViolation]]] = field(default_factory=list)
    trained: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def violations(self) -> list[tuple[Change, int, RegistryViolation]]:
        """Return every violation recorded, with its change and event."""
        return [(c, seq, v) for c, seq, found in self.changes for v in found]


@dataclass(frozen=True)
class ViolationEntry:
    """A change made in the registry that policy would have refused, as the log records it."""

    seq: int
    time: str
    model: str
    version: str | None
    kind: str
    alias: str | None
    stage: str | None
    rule: str
    message: str
    environment: str | None

    def as_dict(self) -> dict[str, Any]:
        """Return the violation as plain JSON values."""
        return dict(self.__dict__)


def identity(uri: str) -> str:
    """Return the one spelling of a registry's URI that the log keys it by (see core.uri).

    Raises InvalidInputError for a URI no registry can have.
    """
    return registry_identity(uri, os.getcwd())


def _event_identity(cwd: str) -> Callable[[str | None], str | None]:
    """Return how the URI an event was recorded from maps to its registry's identity.

    An old event keeps the spelling it was recorded with: it is read as the
    identity of that spelling (a relative path against ``cwd``), and one that
    no registry can have is kept apart under a key no lookup can give.
    """
    seen: dict[str, str] = {}  # a log holds a few spellings, each on many events

    def key(raw: str | None) -> str | None:
        if raw is None:
            return None
        found = seen.get(raw)
        if found is None:
            try:
                found = registry_identity(raw, cwd)
            except InvalidInputError:
                found = "\x00unusable:" + raw
            if len(seen) < 1024:
                seen[raw] = found
        return found

    return key


def _known(view: View, uri: str | None = None) -> Snapshot:
    """Return what the log says the registry at ``uri`` showed, from verified event bytes.

    Only changes recorded from that registry count, under any spelling of its
    URI (all of them without one): what another MLflow server showed says
    nothing about this one, and a model missing here must not read as deleted
    there.
    """
    cwd = os.getcwd()
    key = None if uri is None else registry_identity(uri, cwd)
    return view.registries(_event_identity(cwd), cwd).snapshot(key)


class RegistryService:
    """Record an outside registry's changes on a ledger, and read back its violations."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def known(self, uri: str | None = None) -> Snapshot:
        """Return what the log says the registry at ``uri`` showed (committed events, no lock)."""
        found: list[Snapshot] = []

        def read(view: View) -> Outcome:
            found.append(_known(view, uri))
            return Outcome(None)

        self._ledger.peek(read)
        return found[0]

    def record(
        self,
        now: Snapshot,
        *,
        via: str,
        uri: str,
        actor: Actor,
        models: Iterable[str] | None = None,
        runs: Mapping[tuple[str, str], ImportedRun] | None = None,
    ) -> Recorded:
        """Record the changes that take what the log knows to ``now``; return what was recorded.

        ``via`` ``import`` records every event as imported history (never
        checked, never counted by a decision); ``poll`` and ``webhook`` record
        each change live and check it against the policy in force. ``runs``
        gives the source run of versions the log may not know yet.
        """
        wanted = None if models is None else sorted(set(models))
        uri = identity(uri)
        importing = via == "import"
        result = Recorded()
        # Pseudonyms are drawn outside the append (the policy may ask for them).
        actor = self._ledger.pseudonymize(actor)
        # An MLflow user named like an auditml pseudonym is MLflow's word, not that
        # person: it is kept under an ``mlflow:`` prefix, never taken as their pseudonym.
        people = {
            name: self._ledger.pseudonymize(
                Actor(id=f"mlflow:{name}" if is_pseudonym(name) else name)
            )
            for name in {"mlflow", *(run.actor for run in (runs or {}).values())}
        }

        def decide(view: View) -> list[Draft]:
            result.changes.clear()
            result.trained.clear()
            changes = diff(_known(view, uri), now, wanted)
            drafts: list[Draft] = []
            clashes: list[str] = []
            planned: list[tuple[int, Change, list[RegistryViolation]]] = []
            for change in changes:
                if change.kind == "version.created" and change.version is not None:
                    run = (runs or {}).get((change.model, change.version))
                    held = view.model(change.model).versions.get(change.version)
                    if held is None:
                        drafts.append(_train_draft(change, run, uri, people))
                        result.trained.append((change.model, change.version, len(drafts) - 1))
                    else:
                        clash = _clash(view, uri, change, now, held)
                        if clash is not None:
                            clashes.append(clash)
                found = (
                    []
                    if importing
                    else violations(change, view.policy, view.model(change.model), view.people)
                )
                data = {**change.data(), "uri": uri, "via": via, "violations": found}
                mark = None
                if importing:
                    mark = {
                        "source": "mlflow",
                        "uri": _models_uri(change),
                        "time": change.source_time,
                        "details": {"tracking_uri": uri},
                    }
                    mark = {k: v for k, v in mark.items() if v is not None}
                drafts.append(
                    Draft.build(
                        "registry.change",
                        actor=actor,
                        subject=change.subject(),
                        data=data,
                        imported=mark if mark is not None else False,
                    )
                )
                planned.append((len(drafts) - 1, change, found))
            if clashes:
                raise InvalidInputError(_clash_error(clashes))
            result.changes.extend((c, i, f) for i, c, f in planned)
            return drafts

        receipts = self._ledger.decide_batch(decide)
        result.changes = [(c, receipts[i].seq, f) for c, i, f in result.changes]
        result.trained = [(m, v, receipts[i].seq) for m, v, i in result.trained]
        return result

    def record_sync(
        self,
        *,
        model: str,
        version: str,
        environment: str,
        alias: str,
        decision_seq: int,
        uri: str,
        previous: str | None,
        error: str | None,
        actor: Actor,
    ) -> Receipt:
        """Record that auditml moved (or failed to move) an alias after ``decision_seq``.

        ``decision_seq`` must be a live deploy, rollback or promotion that put
        ``model`` ``version`` in ``environment``: a sync that is ``done`` counts as
        the registry showing the alias there, so none may stand on no decision.
        """
        try:
            uri = identity(uri)
        except InvalidInputError:  # the failure it caused is recorded, never its credentials
            uri = scrub_uri(uri)[0]
        data = {
            "uri": uri,
            "alias": alias,
            "environment": environment,
            "decision_seq": decision_seq,
            "status": "failed" if error else "done",
            "previous": previous,
            "error": error,
        }
        draft = Draft.build(
            "registry.sync",
            actor=self._ledger.pseudonymize(actor),
            subject={"model": model, "version": version},
            data=data,
        )

        def decide(view: View) -> list[Draft]:
            # Only the live move in force there: a sync standing on a superseded one
            # would make the log say MLflow shows the old version, hiding a move back.
            live = [m for m in view.model(model).timeline if m.environment == environment]
            last = next((m for m in reversed(live) if not m.imported), None)
            if last is None or last.seq != decision_seq or last.version != version:
                raise InvalidInputError(
                    f"event {decision_seq} is no live deploy, rollback or promotion that put "
                    f"{model} v{version} in {environment} and is still in force there: an "
                    "alias sync records what followed such a decision, and nothing was recorded"
                )
            rules = view.policy.mlflow
            wanted = rules.aliases.get(environment)
            other = rules.environment_of_alias(alias)
            if (wanted is not None and alias != wanted) or (wanted is None and other is not None):
                stands = (
                    f"{wanted!r} stands for {environment}"
                    if wanted
                    else (f"{alias!r} stands for {other}")
                )
                raise InvalidInputError(
                    f"the alias {alias!r} is not the one the policy in force maps to "
                    f"{environment} ({stands}): a sync of a decision in {environment} moves "
                    "that alias only, and nothing was recorded"
                )
            return [draft]

        return self._ledger.decide_batch(decide)[0]

    def violations(self, model: str | None = None) -> list[ViolationEntry]:
        """Return every violation the log records (of ``model``), oldest first."""
        found: list[ViolationEntry] = []
        for record in self._ledger.records(model, REGISTRY_ACTIONS):
            event = record.event
            if event.action != "registry.change":
                continue
            data = event.data
            listed = data.get("violations")
            for item in listed if isinstance(listed, list) else []:
                if not isinstance(item, dict):
                    continue
                found.append(
                    ViolationEntry(
                        seq=record.seq,
                        time=event.time,
                        model=event.subject.get("model", ""),
                        version=event.subject.get("version"),
                        kind=str(data.get("kind")),
                        alias=_text(data.get("alias")),
                        stage=_text(data.get("stage")),
                        rule=str(item.get("rule")),
                        message=str(item.get("message")),
                        environment=_text(item.get("environment")),
                    )
                )
        return found


def training_run(data: Mapping[str, Any]) -> tuple[str | None, bool]:
    """Return the MLflow run a ``model.train`` event's data names, and whether it is imported.

    An imported training names the run it was imported from (its mark's ``id``);
    a live one names the MLflow run it ran inside (its ``mlflow.run_id`` tag,
    which ``@track_training`` records).
    """
    mark = data.get("imported")
    if isinstance(mark, dict):
        named = mark.get("id") if mark.get("source") == "mlflow" else None
        return (named if isinstance(named, str) and named else None), True
    tags = data.get("tags")
    named = tags.get("mlflow.run_id") if isinstance(tags, dict) else None
    return (named if isinstance(named, str) and named else None), False


def _run_of(view: View, model: str, held: VersionState) -> tuple[str | None, bool, int | None]:
    """Return the MLflow run a version's training names, whether it was imported, and its seq.

    Read from the training's verified bytes (see :func:`training_run`).
    """
    seq = held.trained_seq
    if seq is None:
        return None, held.trained_imported, None
    for found, body in view.reader.bodies(model, ("model.train",), after=seq - 1):
        if found == seq:
            run, imported = training_run(parse_found(found, body, ("model.train",), model).data)
            return run, imported, seq
    return None, held.trained_imported, seq


def _clash(view: View, uri: str, change: Change, now: Snapshot, held: VersionState) -> str | None:
    """Return why a version the registry shows is not the training auditml holds under its number.

    MLflow numbers its versions and auditml numbers its trainings, each on its
    own: the same number is the same training only when auditml's training
    names the run MLflow's version came from. Anything else (another run, no
    run on either side) would attach MLflow's provenance, aliases and stages to
    a different training, so it is refused rather than recorded or dropped.
    """
    version = str(change.version)
    shown = now.get(change.model)
    known = shown.versions.get(version) if shown is not None else None
    theirs = known.run_id if known is not None else None
    ours, imported, seq = _run_of(view, change.model, held)
    if theirs is not None and ours == theirs:
        return None
    what = "imported" if imported else "live"
    return (
        f"MLflow at {uri!r} shows {change.model!r} version {_short(version)} "
        f"({'from run ' + _short(theirs) if theirs else 'with no run'}), but auditml's "
        f"{change.model!r} version {_short(version)} is another training "
        f"({what}, event {seq if seq is not None else '?'}, "
        f"{'MLflow run ' + _short(ours) if ours else 'no MLflow run'})"
    )


def _short(text: str) -> str:
    """Return an id as an error shows it: printable, at most 64 characters (MLflow's are 32)."""
    if text.isprintable() and len(text) <= 64:
        return text
    return repr(text[:64]) + ("…" if len(text) > 64 else "")


def _clash_error(clashes: list[str]) -> str:
    """Return the refusal of a recording whose versions clash with auditml's own, and the fixes."""
    more = f" (and {len(clashes) - 1} more version(s) like it)" if len(clashes) > 1 else ""
    return (
        f"{clashes[0]}{more}. auditml will not attach MLflow's version to a different "
        "training, so nothing was recorded. If they are the same model, record the training "
        "inside the MLflow run that registers it (@track_training then keeps its "
        "mlflow.run_id); if not, give one of them another model name, or leave this model "
        "out with --model NAME for the others"
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _models_uri(change: Change) -> str:
    """Return MLflow's URI of the model or version a change is about."""
    if change.version is None:
        return f"models:/{change.model}"
    return f"models:/{change.model}/{change.version}"


def _train_draft(
    change: Change, run: ImportedRun | None, uri: str, people: Mapping[str, Actor]
) -> Draft:
    """Return the imported ``model.train`` of a version the log does not know yet."""
    subject = {"model": change.model, "version": str(change.version)}
    if run is None:
        mark: dict[str, Any] = {"source": "mlflow", "uri": _models_uri(change)}
        if change.source_time:
            mark["time"] = change.source_time
        mark["details"] = {"tracking_uri": uri}
        data: dict[str, Any] = {}
        if change.value:
            data["artifacts"] = {"model": {"uri": change.value}}
        return Draft.build(
            "model.train", actor=people["mlflow"], subject=subject, data=data, imported=mark
        )
    return Draft.build(
        "model.train", actor=people[run.actor], subject=subject, data=run.data, imported=run.mark
    )
