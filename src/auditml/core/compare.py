"""Paired comparison of a version with its baseline on the same examples (pure computation).

A validator gives one file of per-example results: each example's ``id``, its
true ``label``, and both versions' outputs on it, ``score`` and
``baseline_score`` (a probability or any score where higher means the positive
class; for AUC) and/or ``prediction`` and ``baseline_prediction`` (the class
each version predicted; for accuracy). The file is CSV with a header row, or
JSON Lines (one object per line); other columns are ignored::

    id,label,score,baseline_score,prediction,baseline_prediction
    a-1,1,0.91,0.80,1,1
    a-2,0,0.35,0.52,0,1

:func:`parse_examples` checks the file hard (a missing or repeated id, an
empty or non-numeric cell, NaN, a label that is not 0/1 for AUC) and names the
line at fault. :func:`compare` then computes, for each metric asked for, the
version's value minus the baseline's on exactly those examples:

- an interval for the delta by a paired bootstrap (every resample draws the
  same examples for both versions), percentile method, with a recorded number
  of resamples and seed, so re-running gives the same bounds;
- a two-sided p-value for "no difference": McNemar's exact test (a binomial
  test on the discordant pairs) for accuracy; for AUC, the bootstrap's own
  (the share of resampled deltas on the far side of zero, doubled, with the
  usual +1 correction, so it is never 0).

The statistics come from SciPy (``scipy.stats.bootstrap`` draws the resamples
and the interval, ``binomtest`` gives McNemar's p), imported only here and only
when a comparison runs: install it with ``pip install 'auditml[stats]'``.
Nothing here reads a file or the clock; the caller reads the bytes and
records the result.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from auditml.core.canonical import loads_strict
from auditml.core.events import Comparison, ComparisonInterval, DiscordantPairs
from auditml.errors import InvalidInputError

__all__ = [
    "COMPARABLE",
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "Examples",
    "compare",
    "parse_examples",
    "parse_level",
]

#: The metrics a comparison can be asked for, and the columns each needs.
COMPARABLE: Mapping[str, tuple[str, str]] = {
    "auc": ("score", "baseline_score"),
    "accuracy": ("prediction", "baseline_prediction"),
}
DEFAULT_LEVEL = 95.0
DEFAULT_RESAMPLES = 2000
MAX_RESAMPLES = 100_000
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}
#: About how many numbers one vectorized batch of resamples holds (bounds memory).
_BATCH_CELLS = 2_000_000


@dataclass(frozen=True, slots=True)
class Examples:
    """The rows of a per-example file, in file order, checked and typed.

    Scores are floats; labels and predictions are class names as text, with
    numbers and booleans written one way (``1``, ``1.0``, ``true``: ``"1"``).
    A column absent from the file is None.
    """

    ids: tuple[str, ...]
    labels: tuple[str, ...]
    score: tuple[float, ...] | None = None
    baseline_score: tuple[float, ...] | None = None
    prediction: tuple[str, ...] | None = None
    baseline_prediction: tuple[str, ...] | None = None

    @property
    def n(self) -> int:
        """Return the number of examples."""
        return len(self.ids)

    def has(self, metric: str) -> bool:
        """Return whether the file holds both versions' columns ``metric`` needs."""
        return all(getattr(self, column) is not None for column in COMPARABLE[metric])


def parse_level(text: str | float, *, where: str = "confidence level") -> float:
    """Return a confidence level in percent from ``95``, ``95%``, ``99.9`` or ``0.95``."""
    raw = str(text).strip().removesuffix("%").strip()
    try:
        level = float(raw)
    except ValueError:
        raise InvalidInputError(
            f"{where} {text!r} is not a number: give a percentage, e.g. 95 or 95%"
        ) from None
    if 0 < level < 1 and not str(text).strip().endswith("%"):
        level *= 100  # 0.95 means 95%
    if not (math.isfinite(level) and 50 <= level < 100):
        raise InvalidInputError(
            f"{where} {text!r} must be a percentage from 50 to below 100, e.g. 95"
        )
    return round(level, 6)


# -- reading the file ----------------------------------------------------------


def _class(value: object) -> str | None:
    """Return a class name written one way: numbers and booleans as ``"1"``; None for empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return None
        return str(int(number)) if number.is_integer() else repr(number)
    if not isinstance(value, str):
        raise TypeError(type(value).__name__)
    text = value.strip()
    if not text:
        return None
    if text.lower() in _TRUE | _FALSE:
        return "1" if text.lower() in _TRUE else "0"
    try:
        number = float(text)
    except ValueError:
        return text
    return _class(number) if math.isfinite(number) else text


def _score(value: object) -> float | None:
    """Return a finite score, or None when the cell is empty; raise ValueError when not one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def _csv_rows(text: str, where: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line, row) of a CSV file with a header, refusing a row of the wrong width."""
    reader = csv.reader(line + "\n" for line in text.split("\n"))
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field longer than the csv module's limit
            raise InvalidInputError(
                f"{where} line {reader.line_num}: not readable as CSV ({exc}): one example a "
                "line, short fields, or use JSON Lines"
            ) from None
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise InvalidInputError(
                    f"{where}: the header names column {repeated[0]!r} twice: name each once"
                )
            continue
        if len(row) != len(header):
            raise InvalidInputError(
                f"{where} line {line}: {len(row)} fields where the header has {len(header)}: "
                "every row needs one value per column"
            )
        yield line, dict(zip(header, row, strict=True))


def _jsonl_rows(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line, object) of a JSON Lines file, refusing a line that is not one JSON object."""
    for line, body in enumerate(text.splitlines(), start=1):
        if not body.strip():
            continue
        try:
            found = loads_strict(body.encode("utf-8"))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where} line {line}: {exc}") from None
        if not isinstance(found, dict):
            raise InvalidInputError(
                f"{where} line {line}: each line must be one JSON object, "
                f'e.g. {{"id": "a-1", "label": 1, "score": 0.9, "baseline_score": 0.8}}'
            )
        yield line, found


def parse_examples(raw: bytes, *, where: str) -> Examples:
    """Read a per-example file (CSV with a header, or JSON Lines) or raise naming what is wrong.

    JSON Lines is recognised by its first character, ``{``. Every row needs an
    ``id`` (unique) and a ``label``; a column holding both versions' outputs
    (``score``/``baseline_score``, ``prediction``/``baseline_prediction``) must
    be filled on every row.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{where} is not UTF-8 text") from None
    jsonl = text.lstrip().startswith("{")
    rows: Iterator[tuple[int, Mapping[str, Any]]] = (
        _jsonl_rows(text, where) if jsonl else _csv_rows(text, where)
    )
    columns = ("score", "baseline_score", "prediction", "baseline_prediction")
    ids: list[str] = []
    labels: list[str] = []
    values: dict[str, list[Any]] = {c: [] for c in columns}
    present: set[str] | None = None
    seen: dict[str, int] = {}
    for line, row in rows:
        if present is None:
            present = {c for c in columns if c in row}
            missing = [c for c in ("id", "label") if c not in row]
            if missing:
                raise InvalidInputError(
                    f"{where}: no {' and no '.join(repr(m) for m in missing)} column "
                    f"(it has {', '.join(repr(str(k)) for k in row) or 'none'}): every example "
                    "needs an id and its true label"
                )
        extra = sorted(c for c in columns if c in row and c not in present)
        if extra:
            raise InvalidInputError(
                f"{where} line {line}: a {extra[0]!r} the first example does not have: "
                "every example needs the same outputs"
            )
        ident = row.get("id")
        if isinstance(ident, int) and not isinstance(ident, bool):
            ident = str(ident)
        if not isinstance(ident, str) or not ident.strip():
            raise InvalidInputError(f"{where} line {line}: the id is missing or not text")
        ident = ident.strip()
        if ident in seen:
            raise InvalidInputError(
                f"{where} line {line}: id {ident!r} is repeated (first on line {seen[ident]}): "
                "each example appears once, with both versions' outputs on its row"
            )
        seen[ident] = line
        try:
            label = _class(row.get("label"))
        except TypeError:
            label = None
        if label is None:
            raise InvalidInputError(f"{where} line {line}: example {ident!r} has no label")
        ids.append(ident)
        labels.append(label)
        for column in present:
            if column in COMPARABLE["auc"]:
                try:
                    value: Any = _score(row.get(column))
                except (ValueError, TypeError):
                    raise InvalidInputError(
                        f"{where} line {line}: {column} of example {ident!r} is "
                        f"{row.get(column)!r}, not a finite number"
                    ) from None
            else:
                try:
                    value = _class(row.get(column))
                except TypeError:
                    value = None
            if value is None:
                raise InvalidInputError(
                    f"{where} line {line}: example {ident!r} has no {column}: "
                    "every example needs both versions' outputs"
                )
            values[column].append(value)
    if present is None:
        raise InvalidInputError(f"{where} holds no examples")
    for ours, theirs in COMPARABLE.values():
        if (ours in present) != (theirs in present):
            has, lacks = (ours, theirs) if ours in present else (theirs, ours)
            raise InvalidInputError(
                f"{where} has a {has!r} column but no {lacks!r}: a comparison needs both "
                "versions' outputs on the same examples"
            )
    return Examples(
        ids=tuple(ids),
        labels=tuple(labels),
        **{c: tuple(values[c]) if c in present else None for c in columns},
    )


# -- the comparison -------------------------------------------------------------


def _stats() -> tuple[Any, Any]:
    """Import numpy and scipy.stats, or raise saying how to install them."""
    try:
        import numpy
        import scipy.stats
    except ImportError:
        raise InvalidInputError(
            "comparing with a baseline needs SciPy: pip install 'auditml[stats]'"
        ) from None
    return numpy, scipy.stats


def _library() -> str:
    import numpy
    import scipy

    return f"scipy {scipy.__version__}, numpy {numpy.__version__}"


def _auc_of_draws(np: Any, labels: Any, scores: Any) -> Callable[[Any], Any]:
    """Return ROC AUC as a function of resampled example indices (one resample a row).

    It is the Mann-Whitney statistic: the share of (positive, negative) pairs
    the score orders rightly, a tie counting one half; NaN when a resample
    holds one class. The scores are ranked once into tie groups; each resample
    then costs one count of its draws per (group, class), not a sort.
    """
    groups = np.unique(scores, return_inverse=True)[1].reshape(-1)
    width = int(groups.max()) + 1
    keys = groups * 2 + labels.astype(np.int64)  # (tie group, class) of each example

    def auc(picked: Any) -> Any:
        rows = picked.reshape(-1, picked.shape[-1])
        offsets = np.arange(rows.shape[0])[:, None] * (2 * width)
        counts = np.bincount((keys[rows] + offsets).ravel(), minlength=rows.shape[0] * 2 * width)
        counts = counts.reshape(rows.shape[0], width, 2).astype(float)
        neg, pos = counts[:, :, 0], counts[:, :, 1]
        below = np.cumsum(neg, axis=1) - neg  # negatives scored lower than each group
        with np.errstate(divide="ignore", invalid="ignore"):
            found = (pos * (below + neg / 2)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))
        return found.reshape(picked.shape[:-1])

    return auc


def _binary(examples: Examples, where: str) -> tuple[int, ...]:
    """Return the labels as 0/1 for AUC, or raise naming a label that is not."""
    found: list[int] = []
    for ident, label in zip(examples.ids, examples.labels, strict=True):
        if label not in ("0", "1"):
            raise InvalidInputError(
                f"{where}: example {ident!r} has label {label!r}: AUC needs labels 0 and 1 "
                "(or true and false)"
            )
        found.append(int(label))
    positives = sum(found)
    if positives == 0 or positives == len(found):
        only = "positive (1)" if positives else "negative (0)"
        raise InvalidInputError(
            f"{where}: every example is {only}: AUC needs examples of both classes"
        )
    return tuple(found)


def compare(
    examples: Examples,
    metrics: Sequence[str],
    *,
    baseline: str,
    levels: Sequence[float] = (DEFAULT_LEVEL,),
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    where: str = "the examples",
) -> list[Comparison]:
    """Compare the version with ``baseline`` on ``examples`` for each metric, deterministically.

    Raises InvalidInputError for a metric the file cannot answer, a bad level,
    seed or number of resamples, or too few examples of a class to resample.
    """
    if not metrics:
        raise InvalidInputError("name at least one metric to compare, e.g. auc or accuracy")
    for metric in metrics:
        if metric not in COMPARABLE:
            raise InvalidInputError(
                f"cannot compare {metric!r}: comparable metrics are {', '.join(COMPARABLE)}"
            )
        if not examples.has(metric):
            ours, theirs = COMPARABLE[metric]
            raise InvalidInputError(
                f"{where} has no {ours!r} and {theirs!r} columns, which comparing {metric} needs"
            )
    if not 100 <= resamples <= MAX_RESAMPLES:
        raise InvalidInputError(
            f"resamples must be from 100 to {MAX_RESAMPLES}, not {resamples} (default "
            f"{DEFAULT_RESAMPLES})"
        )
    if not 0 <= seed <= 2**53 - 1:
        raise InvalidInputError(f"the seed must be a whole number from 0 to 2**53 - 1, not {seed}")
    if examples.n < 2:
        raise InvalidInputError(f"{where} holds {examples.n} example: a comparison needs more")
    levels = sorted({parse_level(level) for level in levels})
    np, stats = _stats()
    return [
        _compare_one(np, stats, examples, metric, baseline, levels, resamples, seed, where)
        for metric in dict.fromkeys(metrics)
    ]


def _compare_one(
    np: Any,
    stats: Any,
    examples: Examples,
    metric: str,
    baseline: str,
    levels: Sequence[float],
    resamples: int,
    seed: int,
    where: str,
) -> Comparison:
    """Compare one metric: the paired bootstrap interval and the metric's test."""
    discordant: DiscordantPairs | None = None
    n = examples.n
    if metric == "auc":
        labels = np.asarray(_binary(examples, where), dtype=float)
        ours = _auc_of_draws(np, labels, np.asarray(examples.score, dtype=float))
        theirs = _auc_of_draws(np, labels, np.asarray(examples.baseline_score, dtype=float))

        def delta(picked: Any, axis: int = -1) -> Any:
            return ours(picked) - theirs(picked)

        everyone = np.arange(n)
        value, base = float(ours(everyone)), float(theirs(everyone))
    else:
        truth = np.asarray(examples.labels, dtype=object)
        right = (np.asarray(examples.prediction, dtype=object) == truth).astype(float)
        right_before = (np.asarray(examples.baseline_prediction, dtype=object) == truth).astype(
            float
        )
        gain = right - right_before

        def delta(picked: Any, axis: int = -1) -> Any:
            return gain[picked].mean(axis=-1)

        value, base = float(right.mean()), float(right_before.mean())
        discordant = DiscordantPairs(
            baseline_only=int(((right_before == 1) & (right == 0)).sum()),
            version_only=int(((right == 1) & (right_before == 0)).sum()),
        )
    # Resampling the examples' indices is what scipy.stats.bootstrap does for paired
    # samples: each resample draws the same examples for both versions.
    result = None
    intervals: list[ComparisonInterval] = []
    for level in levels:
        with warnings.catch_warnings():  # a degenerate resample is reported below, in words
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                (np.arange(n),),
                delta,
                vectorized=True,
                n_resamples=0 if result is not None else resamples,
                bootstrap_result=result,
                batch=max(1, _BATCH_CELLS // n),
                method="percentile",
                confidence_level=level / 100,
                rng=np.random.default_rng(seed),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        degenerate = bool(np.isnan(result.bootstrap_distribution).any())
        if degenerate or not (math.isfinite(low) and math.isfinite(high)):
            raise InvalidInputError(
                f"{where}: too few examples of one class to resample for {metric} "
                f"({sum(1 for label in examples.labels if label == '1')} positive of {n}): "
                "some resamples held only one class; give more examples of each"
            )
        intervals.append(ComparisonInterval(level=level, low=low, high=high))
    assert result is not None  # levels is never empty
    spread = np.asarray(result.bootstrap_distribution)
    if discordant is not None:
        pairs = discordant.baseline_only + discordant.version_only
        p_value = 1.0
        if pairs:
            p_value = float(stats.binomtest(discordant.version_only, pairs).pvalue)
        test = "McNemar exact (two-sided binomial test on the discordant pairs)"
    else:
        below, above = int((spread <= 0).sum()), int((spread >= 0).sum())
        p_value = min(1.0, 2 * (min(below, above) + 1) / (len(spread) + 1))
        test = "paired bootstrap (two-sided, share of resampled deltas beyond zero)"
    return Comparison(
        metric=metric,
        baseline=baseline,
        n=examples.n,
        value=value,
        baseline_value=base,
        delta=value - base,
        intervals=intervals,
        interval_method="paired bootstrap, percentile",
        resamples=resamples,
        seed=seed,
        p_value=min(1.0, p_value),
        test=test,
        discordant=discordant,
        library=_library(),
    )
