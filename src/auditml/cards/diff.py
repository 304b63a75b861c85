"""A structured diff of two cards: metric deltas, data and code fingerprints, parameters, text."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from auditml.core.card import SECTION_TITLES, ModelCard

__all__ = ["CardDiff", "Change", "MetricChange", "diff_cards"]

Kind = Literal["added", "removed", "changed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)


class MetricChange(_Frozen):
    """A metric in either card, with its values and the change."""

    name: str
    slice: str | None = None
    old: float | None
    new: float | None
    delta: float | None
    kind: Kind | Literal["same"]
    #: Where each value comes from: ``training`` or ``evaluation`` (None: absent).
    old_source: str | None = None
    new_source: str | None = None


class Change(_Frozen):
    """One field that differs: its name, the old and the new value."""

    name: str
    kind: Kind
    old: JsonValue = None
    new: JsonValue = None


class CardDiff(_Frozen):
    """What changed from one version's card to another's."""

    model: str
    old_version: str
    new_version: str
    metrics: list[MetricChange] = Field(default_factory=list)
    datasets: list[Change] = Field(default_factory=list)
    artifacts: list[Change] = Field(default_factory=list)
    code: list[Change] = Field(default_factory=list)
    environment: list[Change] = Field(default_factory=list)
    params: list[Change] = Field(default_factory=list)
    sections: list[Change] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Return whether nothing but the metrics' sameness is reported."""
        return not any(
            (
                [m for m in self.metrics if m.kind != "same"],
                self.datasets,
                self.artifacts,
                self.code,
                self.environment,
                self.params,
                self.sections,
            )
        )


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Compare two flat mappings key by key, in the order keys first appear."""
    found = []
    for name in dict.fromkeys([*old, *new]):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        kind: Kind = "added" if a is None else "removed" if b is None else "changed"
        found.append(Change(name=name, kind=kind, old=a, new=b))
    return found


def _environment(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Compare two environments; one not recorded at all is one line, not one per package."""
    if bool(old) == bool(new):
        return _changes(old, new)

    def summary(env: dict[str, Any]) -> str | None:
        packages = sum(1 for key in env if key.startswith("package "))
        return f"{env.get('python', 'Python')}, {packages} packages" if env else None

    kind: Kind = "added" if not old else "removed"
    return [Change(name="environment", kind=kind, old=summary(old), new=summary(new))]


def _metrics(card: ModelCard) -> dict[tuple[str, str | None], tuple[float, str]]:
    return {(m.name, m.slice): (m.value, m.source) for m in card.metrics}


def diff_cards(old: ModelCard, new: ModelCard) -> CardDiff:
    """Return what changed from ``old``'s card to ``new``'s (pure)."""
    a, b = _metrics(old), _metrics(new)
    metrics = []
    for key in dict.fromkeys([*a, *b]):
        (x, xs), (y, ys) = a.get(key, (None, None)), b.get(key, (None, None))
        kind = "added" if x is None else "removed" if y is None else "same" if x == y else "changed"
        metrics.append(
            MetricChange(
                name=key[0],
                slice=key[1],
                old=x,
                new=y,
                # Twelve significant digits: 0.86 - 0.85 is 0.01, not 0.010000000000000009.
                delta=None if x is None or y is None else float(f"{y - x:.12g}"),
                kind=kind,
                old_source=xs,
                new_source=ys,
            )
        )

    def data(card: ModelCard) -> dict[str, Any]:
        return {
            d.name if d.name.startswith(d.use) else f"{d.use} {d.name}": d.ref.sha256 or d.ref.uri
            for d in card.datasets
        }

    def arts(card: ModelCard) -> dict[str, Any]:
        return {x.name: x.ref.sha256 or x.ref.uri for x in card.artifacts}

    def code(card: ModelCard) -> dict[str, Any]:
        t = card.training
        c = t.code if t else None
        return {} if c is None else c.model_dump(exclude_none=True)

    def env(card: ModelCard) -> dict[str, Any]:
        t = card.training
        if t is None:
            return {}
        found: dict[str, Any] = {"python": t.python, "platform": t.platform}
        found.update({f"package {k}": v for k, v in t.packages.items()})
        return {k: v for k, v in found.items() if v is not None}

    def params(card: ModelCard) -> dict[str, Any]:
        return dict(card.training.params) if card.training else {}

    def sections(card: ModelCard) -> dict[str, Any]:
        dumped = card.sections.model_dump(mode="json")
        return {k: dumped[k] for k in SECTION_TITLES if dumped[k] is not None}

    return CardDiff(
        model=new.model,
        old_version=old.version,
        new_version=new.version,
        metrics=metrics,
        datasets=_changes(data(old), data(new)),
        artifacts=_changes(arts(old), arts(new)),
        code=_changes(code(old), code(new)),
        environment=_environment(env(old), env(new)),
        params=_changes(params(old), params(new)),
        sections=_changes(sections(old), sections(new)),
    )
