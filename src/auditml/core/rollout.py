"""Rollouts: the rules a policy sets for canaries and monitors, and the statistics they read (pure).

A policy may require that a version reach an environment through a canary,
and say when the canary has been watched long enough to be promoted::

    [rollout]
    production = { canary = "10%", min_requests = 1000, min_duration = "1h" }

``canary`` is the largest share a rollout there may start with;
``min_requests`` counts the canary's verified runtime records since it
started, and ``min_duration`` how long it has run, before it may take all the
traffic. A monitor compares the canary with the stable version over a window
and trips on any of its triggers::

    [monitor.production]
    triggers = ["error_rate > 0.02", "latency_p95_ms > 250", "score_psi(score) > 0.2"]
    min_requests = 500          # fewer canary (or stable) records: undecided, never acts
    window = "1h"
    actor = "monitor@bank.example"   # the identity that rolls back [default: auditml-monitor]

A trigger is ``STATISTIC OP NUMBER``. The statistics are the canary's
``error_rate``, ``latency_p50_ms``, ``latency_p95_ms`` and ``latency_p99_ms``;
``error_rate_delta`` and ``latency_p95_delta_ms`` (canary minus stable); and
``score_psi(FIELD)``, the population stability index of the numeric output
``FIELD`` of the canary against the stable version (``score_psi`` alone reads
the monitor's ``score_field``, ``score`` by default). PSI bins the values by the
stable version's deciles and sums ``(c - s) * ln(c / s)`` over the bins, each
share floored at 0.0001 so an empty bin stays finite.

Never a rollback on thin evidence: a statistic the window cannot decide is
``undecided`` (neither ok nor tripped), and an undecided trigger never acts.

- ``error_rate`` and ``error_rate_delta`` count requests: decided when the
  canary (and, except for a shadow, the stable version) has at least
  ``min_requests`` requests.
- The latency statistics count the latencies recorded, at least
  ``min_requests`` of each version they read.
- ``score_psi(FIELD)`` counts *scored* values, the records whose output holds
  a number in ``FIELD`` (an error without an output is no evidence about the
  distribution). It is decided only when each version has at least
  ``min_requests`` of them **and** together they reach an effective size
  ``1 / (1/canary + 1/stable)`` of at least :data:`PSI_MIN_EFFECTIVE` (200,
  which needs at least 200 of each: 20 expected per decile bin). Two samples
  of one distribution give a PSI of about ``(1/canary + 1/stable)`` times a
  chi-square with 9 degrees of freedom. Simulated at that floor (209 canary
  values against 5,000 stable ones, 400 against 400, 210 against 4,200:
  20,000 windows of one uniform distribution each), identical data exceeded
  0.2 once in 60,000 windows; at 100 against 5,000 they did in 3.9% of
  windows, at 200 against 200 in 2.3%, and at 20 against 5,000 the median
  PSI is 0.97 (the floor of empty bins dominates). A trigger at 0.1 still
  trips on identical data about 2% of the time at the floor: a lower
  threshold wants a larger ``min_requests``.

A check records the counts behind each statistic (``counts``: the requests,
``latency`` values and ``scored(FIELD)`` values of each version), so an auditor
sees why a trigger was undecided.
"""

from __future__ import annotations

import math
import operator
import re
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from auditml.core.samples import Sample
from auditml.errors import InvalidInputError

if TYPE_CHECKING:  # NumPy is imported when statistics are computed, not with the policy
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_MONITOR_ACTOR",
    "PSI_MIN_EFFECTIVE",
    "STATISTICS",
    "MonitorRule",
    "RolloutRule",
    "Sample",
    "Trigger",
    "evidence_counts",
    "parse_duration_s",
    "parse_percent",
    "parse_trigger",
    "prepare_statistics",
    "psi",
    "psi_decided",
    "quantile",
    "quantiles",
    "sorted_quantile",
    "statistics",
    "undecided_because",
]

DEFAULT_MONITOR_ACTOR = "auditml-monitor"

#: The statistics a trigger may name (``score_psi`` also as ``score_psi(FIELD)``).
STATISTICS = (
    "error_rate",
    "error_rate_delta",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_p95_delta_ms",
    "score_psi",
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_TRIGGER = re.compile(
    r"^\s*(?P<stat>[a-z_0-9]+)(?:\((?P<field>[A-Za-z_][A-Za-z0-9_.-]*)\))?\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PERCENT = re.compile(r"^\s*(?P<n>\d+)\s*%?\s*$")


def parse_duration_s(text: object, *, where: str = "window") -> float:
    """Return the seconds of a duration such as ``90s``, ``15m``, ``1h`` or ``2d``, or raise."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    seconds = float(match["n"]) * _UNITS[match["unit"]] if match else 0.0
    if match is None or seconds <= 0:
        raise InvalidInputError(
            f"{where} {text!r} is not a duration: give a positive number and a unit, "
            "e.g. 90s, 15m, 1h or 2d"
        )
    return seconds


def parse_percent(text: object, *, where: str = "traffic") -> int:
    """Return a share of traffic such as ``10%`` (or ``10``) as a whole percent 1 to 100."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    match = _PERCENT.match(text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match["n"]) <= 100:
        raise InvalidInputError(
            f"{where} {text!r} is not a share of traffic: give a whole percent from 1% to 100%, "
            "e.g. 10%"
        )
    return int(match["n"])


@dataclass(frozen=True, slots=True)
class Trigger:
    """One rollback trigger, e.g. ``error_rate > 0.02`` or ``score_psi(score) > 0.2``."""

    text: str
    statistic: str
    field: str | None
    op: str
    value: float

    @property
    def key(self) -> str:
        """Return the name of the statistic as a check records it, e.g. ``score_psi(score)``."""
        return f"{self.statistic}({self.field})" if self.field else self.statistic

    def trips(self, value: float) -> bool:
        """Return whether ``value`` of the statistic trips the trigger."""
        return _OPS[self.op](value, self.value)


def parse_trigger(text: object, *, score_field: str = "score") -> Trigger:
    """Parse ``STATISTIC OP NUMBER``, or raise InvalidInputError naming what is wrong."""
    match = _TRIGGER.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInputError(
            f"trigger {text!r} is not of the form 'STATISTIC OP NUMBER', e.g. "
            "'error_rate > 0.02' (OP is one of > >= < <=)"
        )
    stat, field = match["stat"], match["field"]
    if stat not in STATISTICS:
        raise InvalidInputError(
            f"trigger {text!r} names the unknown statistic {stat!r}: triggers may use "
            f"{', '.join(STATISTICS)}"
        )
    if field is not None and stat != "score_psi":
        raise InvalidInputError(
            f"trigger {text!r}: only score_psi takes an output field, e.g. score_psi(score)"
        )
    value = float(match["value"])
    if not math.isfinite(value):
        raise InvalidInputError(f"trigger {text!r} compares with a number too large; give one")
    if stat == "score_psi" and field is None:
        field = score_field
    return Trigger(str(text).strip(), stat, field, match["op"], value)


class RolloutRule(BaseModel):
    """What a rollout to one environment must do before its canary may take all traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    canary: str = "10%"
    min_requests: int = Field(default=0, ge=0, le=2**53 - 1)
    min_duration: str = "0s"

    @field_validator("canary")
    @classmethod
    def _canary_parses(cls, value: str) -> str:
        if parse_percent(value, where="canary") >= 100:
            raise ValueError("canary must be a share below 100%, e.g. 10%")
        return value

    @field_validator("min_duration")
    @classmethod
    def _duration_parses(cls, value: str) -> str:
        if value.strip() not in ("0", "0s"):
            parse_duration_s(value, where="min_duration")
        return value

    @property
    def canary_percent(self) -> int:
        """Return the largest share a canary may start with, in percent."""
        return parse_percent(self.canary, where="canary")

    @property
    def min_duration_s(self) -> float:
        """Return ``min_duration`` in seconds."""
        if self.min_duration.strip() in ("0", "0s"):
            return 0.0
        return parse_duration_s(self.min_duration, where="min_duration")


class MonitorRule(BaseModel):
    """The rollback triggers of one environment, the evidence they need and who acts on them."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    triggers: list[str] = Field(default_factory=list)
    min_requests: int = Field(default=100, ge=1, le=2**53 - 1)
    window: str = "1h"
    score_field: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")] = "score"
    actor: Annotated[str, StringConstraints(min_length=1, max_length=512)] = DEFAULT_MONITOR_ACTOR

    @field_validator("triggers")
    @classmethod
    def _triggers_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_trigger(text)
        return value

    @field_validator("window")
    @classmethod
    def _window_parses(cls, value: str) -> str:
        parse_duration_s(value, where="window")
        return value

    def parsed(self) -> list[Trigger]:
        """Return the triggers, parsed."""
        return [parse_trigger(text, score_field=self.score_field) for text in self.triggers]

    @property
    def window_s(self) -> float:
        """Return the default window in seconds."""
        return parse_duration_s(self.window, where="window")


# --------------------------------------------------------------------------- statistics


def prepare_statistics() -> None:
    """Import what :func:`statistics` computes with (NumPy), e.g. while waiting for records."""
    import numpy  # noqa: F401


def quantile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q`` quantile of ``values``, interpolated linearly (None when empty)."""
    return quantiles(values, (q,))[0]


def quantiles(
    values: Sequence[float] | NDArray[np.float64], qs: Sequence[float]
) -> list[float | None]:
    """Return the ``qs`` quantiles of ``values`` (any order), each interpolated linearly.

    The quantile ``q`` of n values sorted is ``v[lo] + (v[hi] - v[lo]) * (p - lo)``
    with ``p = q * (n - 1)``, ``lo = floor(p)`` and ``hi = min(lo + 1, n - 1)``. Only
    those order statistics are found (NumPy's partition, no full sort); the
    arithmetic is Python's on them, so the figures are exactly a sort's.
    """
    found = _floats(values)
    n = len(found)
    if not n or not qs:  # NumPy reads an empty kth as an array of floats, not indexes
        return [None] * len(qs)
    spots = []
    for q in qs:
        pos = q * (n - 1)
        low = math.floor(pos)
        spots.append((pos, low, min(low + 1, n - 1)))
    import numpy as np

    kth = sorted({i for _, low, high in spots for i in (low, high)})
    ordered = np.partition(found, kth)
    picked = {i: float(ordered[i]) for i in kth}
    return [_between(picked[low], picked[high], pos - low) for pos, low, high in spots]


def sorted_quantile(ordered: Sequence[float], q: float) -> float | None:
    """Return :func:`quantiles`' ``q`` quantile of values already sorted (None when empty)."""
    n = len(ordered)
    if not n:
        return None
    pos = q * (n - 1)
    low = math.floor(pos)
    return _between(float(ordered[low]), float(ordered[min(low + 1, n - 1)]), pos - low)


def _between(low: float, high: float, f: float) -> float:
    """Return ``low + (high - low) * f``; where the difference overflows, the weighted sum.

    Values near ±1e308 (an unbounded score) would give NaN or infinity for a
    quantile that lies between them, and so a PSI cut that bins nothing.
    """
    found = low + (high - low) * f
    if math.isfinite(found) or not (math.isfinite(low) and math.isfinite(high)):
        return found
    return low * (1 - f) + high * f


#: PSI floors each bin's share at this, so an empty bin contributes a finite amount.
PSI_FLOOR = 1e-4
PSI_BINS = 10
#: A PSI is decided only when 1/(1/canary + 1/stable) scored values reach this (see above).
PSI_MIN_EFFECTIVE = 200


def psi(stable: Sequence[float], canary: Sequence[float], bins: int = PSI_BINS) -> float | None:
    """Return the population stability index of ``canary`` against ``stable`` (None if empty).

    The bins are cut at the stable values' quantiles 1/bins … (bins-1)/bins;
    a value equal to a cut falls in the bin above it.
    """
    base, seen = _floats(stable), _floats(canary)
    if not len(base) or not len(seen):
        return None
    cuts = sorted({q for q in quantiles(base, [k / bins for k in range(1, bins)]) if q is not None})

    import numpy as np

    def shares(values: NDArray[np.float64]) -> list[float]:
        edges = [0, *(int(np.count_nonzero(values < cut)) for cut in cuts), len(values)]
        return [max((high - low) / len(values), PSI_FLOOR) for low, high in pairwise(edges)]

    return sum((c - s) * math.log(c / s) for c, s in zip(shares(seen), shares(base), strict=True))


def _floats(values: Sequence[float] | NDArray[np.float64] | None) -> NDArray[np.float64]:
    """Return ``values`` as a NumPy array of floats (an ``array('d')`` is read in place)."""
    import numpy as np

    if values is None or not len(values):
        return np.empty(0, dtype=np.float64)
    if isinstance(values, array) and values.typecode == "d":
        return np.frombuffer(values, dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def psi_decided(canary: int, stable: int, min_requests: int) -> bool:
    """Return whether PSI over ``canary`` and ``stable`` scored values may be decided.

    Each needs ``min_requests`` values, and together an effective size
    ``1 / (1/canary + 1/stable)`` of at least :data:`PSI_MIN_EFFECTIVE` (see the
    module's docstring for why); computed in integers, so no rounding decides.
    """
    if canary < max(min_requests, 1) or stable < max(min_requests, 1):
        return False
    return canary * stable >= PSI_MIN_EFFECTIVE * (canary + stable)


def statistics(
    canary: Sample, stable: Sample, triggers: Sequence[Trigger], *, min_values: int = 0
) -> dict[str, float | None]:
    """Return every statistic the triggers read (and the basic ones), for a check to record.

    A latency statistic drawn from fewer than ``min_values`` values (the
    monitor's ``min_requests``) is None, undecided, and so is a PSI that
    :func:`psi_decided` refuses: twenty requests of which one carries a score
    are no evidence about the score's distribution.
    """
    lat_c = _enough(canary.latency, min_values)
    lat_s = _enough(stable.latency, min_values)
    p50_c, p95_c, p99_c = quantiles(lat_c, (0.5, 0.95, 0.99))
    p95_s = quantile(lat_s, 0.95)
    err_c, err_s = canary.error_rate, stable.error_rate
    found: dict[str, float | None] = {
        "error_rate": err_c,
        "stable_error_rate": err_s,
        "error_rate_delta": None if err_c is None or err_s is None else err_c - err_s,
        "latency_p50_ms": p50_c,
        "latency_p95_ms": p95_c,
        "latency_p99_ms": p99_c,
        "stable_latency_p95_ms": p95_s,
        "latency_p95_delta_ms": None if p95_c is None or p95_s is None else p95_c - p95_s,
    }
    for trigger in triggers:
        if trigger.statistic == "score_psi" and trigger.key not in found:
            name = trigger.field or "score"
            seen = (canary.scores or {}).get(name)
            base = (stable.scores or {}).get(name)
            decided = psi_decided(len(seen or ()), len(base or ()), min_values)
            found[trigger.key] = psi(base or (), seen or ()) if decided else None
    return {k: (None if v is None else round(v, 9)) for k, v in found.items()}


def evidence_counts(canary: Sample, stable: Sample, triggers: Sequence[Trigger]) -> dict[str, int]:
    """Return the counts behind each statistic the triggers read, for a check to record.

    ``canary`` and ``stable`` are requests (what the error rates read);
    ``canary_latency`` and ``stable_latency`` the latencies recorded;
    ``canary_scored(FIELD)`` and ``stable_scored(FIELD)`` the values of each
    output field a ``score_psi`` trigger reads.
    """
    counts = {
        "canary": canary.requests,
        "stable": stable.requests,
        "canary_latency": len(canary.latency or ()),
        "stable_latency": len(stable.latency or ()),
    }
    for trigger in triggers:
        if trigger.statistic == "score_psi":
            name = trigger.field or "score"
            counts[f"canary_scored({name})"] = len((canary.scores or {}).get(name) or ())
            counts[f"stable_scored({name})"] = len((stable.scores or {}).get(name) or ())
    return counts


def undecided_because(
    statistic: str, counts: Mapping[str, object], min_requests: int, *, shadow: bool = False
) -> str | None:
    """Return why the counts a check recorded cannot decide ``statistic``, or None if they can.

    ``statistic`` is a trigger's key as a check records it (``score_psi(score)``);
    ``counts`` those of :func:`evidence_counts`. A count a check did not record
    (one from before checks recorded them) is read as unknown.
    """

    def count(key: str) -> int | None:
        value = counts.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    requests = count("canary"), count("stable")
    if None not in requests:
        c, s = requests
        assert c is not None and s is not None
        if c < min_requests or (not shadow and s < min_requests):
            return f"{c} canary and {s} stable requests; at least {min_requests} of each needed"
    if statistic.startswith("score_psi(") and statistic.endswith(")"):
        name = statistic.removeprefix("score_psi(")[:-1]
        c, s = count(f"canary_scored({name})"), count(f"stable_scored({name})")
        if c is None or s is None or psi_decided(c, s, min_requests):
            return None
        return (
            f"{c} canary and {s} stable {name} values; PSI needs at least "
            f"{max(min_requests, 1)} of each and 1/(1/canary + 1/stable) >= {PSI_MIN_EFFECTIVE}"
        )
    if statistic.startswith("latency"):
        c, s = count("canary_latency"), count("stable_latency")
        if c is None or s is None:
            return None
        if c < min_requests or (statistic.endswith("_delta_ms") and s < min_requests):
            return f"{c} canary and {s} stable latencies; at least {min_requests} needed"
    return None


def _enough(values: Sequence[float] | None, least: int) -> Sequence[float]:
    """Return ``values``, or none of them when there are fewer than ``least``."""
    return values if values is not None and len(values) >= least else ()


def judge(
    values: Mapping[str, float | None],
    triggers: Sequence[Trigger],
    *,
    enough: bool,
) -> tuple[str, list[dict[str, object]]]:
    """Return the verdict (tripped, ok or undecided) and each trigger's result.

    With too few records (``enough`` false), nothing is judged: every trigger
    is undecided and so is the verdict, whatever the figures say.
    """
    results: list[dict[str, object]] = []
    tripped = False
    unknown = False
    for trigger in triggers:
        value = values.get(trigger.key)
        fired: bool | None = None
        if enough and value is not None:
            fired = trigger.trips(value)
            tripped = tripped or fired
        else:
            unknown = True
        results.append(
            {"trigger": trigger.text, "statistic": trigger.key, "value": value, "tripped": fired}
        )
    if not enough:
        return "undecided", results
    if tripped:
        return "tripped", results
    return ("undecided" if unknown else "ok"), results
