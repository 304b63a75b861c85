"""An outside model registry (MLflow) as auditml knows it: pure rules over values.

auditml follows a registry by comparing what it shows now (a :class:`Snapshot`,
read by the edge code in :mod:`auditml.mlflow_bridge`) with what the log says
it showed before (:func:`fold_known`, folded from ``registry.change`` events,
and the ``registry.sync`` events of aliases auditml moved itself, read back as
verified bytes). :func:`diff` names each difference as one change,
so recording the changes of a snapshot twice records nothing the second time:
the identity of a fact is its model, its version and its field (an alias, a
stage, a tag key, the description), and a fact is new only when its value
differs from the one the log holds.

:func:`violations` says which rules of the policy in force a change made in the
registry broke: an alias or stage that stands for an environment
(``[mlflow] aliases`` / ``stages``) moved to a version without the live
approvals a deploy there needs, or to a version no live auditml deploy or
rollback put there (MLflow records no one as having moved an alias, so no
one holding the deploy permission decided it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from auditml.core.events import Event, RegistryViolation, is_imported
from auditml.core.policy import Policy
from auditml.core.state import ModelState

__all__ = [
    "Change",
    "KnownModel",
    "KnownRegistries",
    "KnownVersion",
    "Snapshot",
    "diff",
    "fold_change",
    "fold_known",
    "violations",
]

#: MLflow's stage of a version that has none.
NO_STAGE = "None"


@dataclass
class KnownVersion:
    """One registry version: its stage, tags, description, and what it came from."""

    version: str
    stage: str = NO_STAGE
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    source: str | None = None
    run_id: str | None = None
    created: str | None = None
    updated: str | None = None


@dataclass
class KnownModel:
    """One registered model: its versions, aliases, tags and description."""

    name: str
    versions: dict[str, KnownVersion] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    updated: str | None = None


#: What a registry shows now (or what the log says it showed), by model name.
Snapshot = dict[str, KnownModel]


@dataclass(frozen=True)
class Change:
    """One difference between what the log knew and what the registry shows."""

    kind: str
    model: str
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    key: str | None = None
    value: str | None = None
    previous: str | None = None
    source_time: str | None = None

    def data(self) -> dict[str, Any]:
        """Return the change's fields of a ``registry.change`` event's data."""
        fields = {
            "kind": self.kind,
            "alias": self.alias,
            "stage": self.stage,
            "key": self.key,
            "value": self.value,
            "previous": self.previous,
            "source_time": self.source_time,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def subject(self) -> dict[str, str]:
        """Return the event's subject: the model, and the version when it is about one."""
        if self.version is None:
            return {"model": self.model}
        return {"model": self.model, "version": self.version}

    def describe(self) -> str:
        """Return the change in one line, as the watch prints it."""
        where = f"{self.model} v{self.version}" if self.version else self.model
        what = {
            "version.created": "new version",
            "version.deleted": "version deleted",
            "alias.set": f"alias {self.alias} -> v{self.version}"
            + (f" (was v{self.previous})" if self.previous else ""),
            "alias.removed": f"alias {self.alias} removed (was v{self.previous})",
            "stage.set": f"stage {self.previous or NO_STAGE} -> {self.stage}",
            "tag.set": f"tag {self.key}={self.value}",
            "tag.deleted": f"tag {self.key} deleted",
            "description.set": "description set",
        }[self.kind]
        return f"{where}: {what}"


def fold_known(events: Iterable[Event]) -> Snapshot:
    """Return what the log says the registry showed, from its ``registry.change`` events."""
    known: Snapshot = {}
    for event in events:
        fold_change(known, event)
    return known


def fold_change(known: Snapshot, event: Event) -> None:
    """Fold one ``registry.change`` or ``registry.sync`` event into what the registry showed.

    A ``registry.sync`` that is ``done`` is auditml moving the alias itself: the
    registry shows it there from then on, so a later move back in the registry
    is a change (and no poll records auditml's own move as the registry's). An
    imported sync stands on no live decision and is not folded.
    """
    data, subject = event.data, event.subject
    model = known.setdefault(subject.get("model", ""), KnownModel(subject.get("model", "")))
    version = subject.get("version")
    if event.action == "registry.sync":
        # An imported sync is no move this log's auditml made after a live decision.
        if data.get("status") == "done" and version is not None and not is_imported(data):
            model.aliases[str(data.get("alias"))] = version
        return
    kind = data.get("kind")
    value = data.get("value")
    text = value if isinstance(value, str) else ""
    if kind == "version.created" and version is not None:
        model.versions[version] = KnownVersion(version, source=text or None)
        return
    if kind == "version.deleted" and version is not None:
        model.versions.pop(version, None)
        return
    if kind == "alias.set" and version is not None:
        model.aliases[str(data.get("alias"))] = version
        return
    if kind == "alias.removed":
        model.aliases.pop(str(data.get("alias")), None)
        return
    held = model.versions.get(version) if version is not None else None
    if version is not None and held is None:
        held = model.versions[version] = KnownVersion(version)
    if kind == "stage.set" and held is not None:
        held.stage = str(data.get("stage"))
    elif kind in ("tag.set", "tag.deleted"):
        tags = held.tags if held is not None else model.tags
        key = str(data.get("key"))
        if kind == "tag.set":
            tags[key] = text
        else:
            tags.pop(key, None)
    elif kind == "description.set":
        if held is not None:
            held.description = text
        else:
            model.description = text


class KnownRegistries:
    """What the log says each outside registry showed, folded one event at a time.

    Events are grouped by ``identity`` of the URI they were recorded from (so
    spellings of one registry, old events' included, fold together), and all
    of them together under None. :meth:`snapshot` returns a copy, so whatever a
    caller does with it never reaches the fold.
    """

    def __init__(self, identity: Callable[[str | None], str | None]) -> None:
        self._identity = identity
        self._by_uri: dict[str, Snapshot] = {}
        self._all: Snapshot = {}

    def apply(self, seq: int, event: Event) -> None:
        """Fold one ``registry.change`` event (at ``seq``) in."""
        fold_change(self._all, event)
        raw = event.data.get("uri")
        key = self._identity(raw if isinstance(raw, str) else None)
        if key is not None:
            fold_change(self._by_uri.setdefault(key, {}), event)

    def snapshot(self, key: str | None) -> Snapshot:
        """Return (a copy of) what the registry of identity ``key`` showed; None: all of them."""
        found = self._all if key is None else self._by_uri.get(key, {})
        return copy.deepcopy(found)


def _order(version: str) -> tuple[int, int, str, str]:
    """Sort versions by number, then by name (a number of any length, never through int())."""
    if version.isascii() and version.isdigit():
        digits = version.lstrip("0") or "0"
        return (0, len(digits), digits, version)
    return (1, 0, "", version)


def _tags(
    model: str, version: str | None, before: Mapping[str, str], now: Mapping[str, str], when: str
) -> list[Change]:
    """Return the tag changes between two tag maps (set ones in name order, then deleted)."""
    found = [
        Change("tag.set", model, version, key=k, value=v, previous=before.get(k), source_time=when)
        for k, v in sorted(now.items())
        if before.get(k) != v
    ]
    found += [
        Change("tag.deleted", model, version, key=k, previous=before[k])
        for k in sorted(before)
        if k not in now
    ]
    return found


def diff(known: Snapshot, now: Snapshot, models: Iterable[str] | None = None) -> list[Change]:
    """Return the changes that take ``known`` to ``now``, in a stable order.

    ``models`` limits the comparison to those names (a model known but not in
    ``now`` then counts as deleted only when it is one of them); None compares
    every model either side names.
    """
    names = set(now) | set(known) if models is None else set(models)
    changes: list[Change] = []
    for name in sorted(names):
        before = known.get(name, KnownModel(name))
        after = now.get(name, KnownModel(name))
        for v in sorted(after.versions, key=_order):
            new = after.versions[v]
            old = before.versions.get(v)
            if old is None:
                changes.append(
                    Change("version.created", name, v, value=new.source, source_time=new.created)
                )
                old = KnownVersion(v)
            when = new.updated or new.created
            if new.stage != old.stage:
                changes.append(
                    Change(
                        "stage.set",
                        name,
                        v,
                        stage=new.stage,
                        previous=old.stage,
                        source_time=when,
                    )
                )
            changes += _tags(name, v, old.tags, new.tags, when or "")
            if new.description != old.description:
                changes.append(
                    Change("description.set", name, v, value=new.description, source_time=when)
                )
        for v in sorted(set(before.versions) - set(after.versions), key=_order):
            changes.append(Change("version.deleted", name, v))
        for alias in sorted(before.aliases):
            if alias not in after.aliases:
                changes.append(
                    Change("alias.removed", name, alias=alias, previous=before.aliases[alias])
                )
        for alias, v in sorted(after.aliases.items()):
            if before.aliases.get(alias) != v:
                changes.append(
                    Change("alias.set", name, v, alias=alias, previous=before.aliases.get(alias))
                )
        changes += _tags(name, None, before.tags, after.tags, after.updated or "")
        if after.description != before.description:
            changes.append(
                Change("description.set", name, value=after.description, source_time=after.updated)
            )
    return [change if change.source_time else _without_time(change) for change in changes]


def _without_time(change: Change) -> Change:
    """Return a change whose empty source time says the registry kept none."""
    return Change(**{**change.__dict__, "source_time": None})


def environment_of(change: Change, policy: Policy) -> str | None:
    """Return the environment a change moves (an alias or stage the policy maps), or None."""
    rules = policy.mlflow
    if change.kind == "alias.set" and change.alias is not None:
        return rules.environment_of_alias(change.alias)
    if change.kind == "stage.set" and change.stage is not None:
        return rules.environment_of_stage(change.stage)
    return None


def violations(
    change: Change, policy: Policy, state: ModelState, people: Mapping[str, str] | None = None
) -> list[RegistryViolation]:
    """Return the rules of ``policy`` a change made in the registry broke (empty: none).

    Only a change that moves an alias or stage the policy maps to an
    environment is checked. It breaks ``mlflow.unapproved`` when the version
    it moved to lacks the live approvals a deploy there needs (or was rejected
    or retired), and ``mlflow.no_release_decision`` when no live auditml deploy
    or rollback put that version there, so no one holding the deploy
    permission decided it.
    """
    env = environment_of(change, policy)
    if env is None or change.version is None:
        return []
    moved = f"{change.model}'s {change.alias or 'stage ' + str(change.stage)} ({env})"
    found: list[RegistryViolation] = []
    vs = state.versions.get(change.version)
    needed = policy.approvals_needed(env)
    if vs is None:
        problem: str | None = f"auditml has no version {change.version} of {change.model}"
    elif vs.rejected is not None or vs.retired is not None:
        problem = f"version {change.version} was {'rejected' if vs.rejected else 'retired'}"
    else:
        exclude = vs.trainers if policy.separation_of_duties else ()
        have = len(vs.approvers_for(env, exclude=exclude, people=people))
        problem = None
        if have < needed:
            problem = (
                f"version {change.version} has {have} of the {needed} live approval(s) {env} needs"
            )
    if problem is not None:
        found.append(
            RegistryViolation(
                rule="mlflow.unapproved",
                message=f"{moved} was moved in MLflow to version {change.version}, but {problem}",
                environment=env,
            )
        )
    decided = state.live_running().get(env)
    if decided != change.version:
        allowed = policy.allowed_roles("deploy")
        who = f"someone with the {' or '.join(allowed)} role" if allowed else "anyone"
        found.append(
            RegistryViolation(
                rule="mlflow.no_release_decision",
                message=(
                    f"{moved} was moved in MLflow to version {change.version}, but no auditml "
                    f"deploy or rollback by {who} put it in {env} (auditml has "
                    f"{'version ' + decided if decided else 'nothing'} there); MLflow does "
                    "not record who moves an alias"
                ),
                environment=env,
            )
        )
    return found
