"""Statistical release gates: a version compared with its baseline, recorded, gated, shown.

The pure tests check the statistics against SciPy's own result, a published
McNemar example and hand-computed AUCs; the store tests (both backends) check
what ``evaluate`` records, what a gate on the interval lets through, and that
bad input writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError
from auditml.core.compare import Examples, compare, parse_examples, parse_level
from auditml.core.events import Comparison, ComparisonInterval
from auditml.core.policy import check_gates, parse_gate
from tests.conftest import run_cli

np = pytest.importorskip("numpy")
stats = pytest.importorskip("scipy.stats")

DS = "ds@bank.example"
VAL = "val@bank.example"
REL = "rel@bank.example"
OFF = "off@bank.example"


def write_examples(path: Path, rows: list[dict[str, object]]) -> Path:
    """Write per-example rows as a CSV file with a header and return its path."""
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sample(n: int, seed: int, gain: float) -> list[dict[str, object]]:
    """Return ``n`` examples whose new scores separate the classes ``gain`` better."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    base = labels * 0.4 + rng.normal(0, 0.5, n)
    new = labels * (0.4 + gain) + rng.normal(0, 0.5, n)
    return [
        {
            "id": f"x{i}",
            "label": int(labels[i]),
            "score": round(float(new[i]), 6),
            "baseline_score": round(float(base[i]), 6),
            "prediction": int(new[i] > 0.2 + gain / 2),
            "baseline_prediction": int(base[i] > 0.2),
        }
        for i in range(n)
    ]


def examples_of(rows: list[dict[str, object]]) -> Examples:
    """Parse rows as the CSV file a validator would write."""
    columns = list(rows[0])
    text = "\n".join([",".join(columns)] + [",".join(str(r[c]) for c in columns) for r in rows])
    return parse_examples(text.encode(), where="examples.csv")


# -- the statistics, against published and library results ---------------------------------


def test_mcnemar_matches_the_published_worked_example() -> None:
    """McNemar's exact p on Fagerland et al.'s table (1 vs 7 discordant of 21) is 0.070.

    Source: Fagerland, Lydersen and Laake, "The McNemar test for binary
    matched-pairs data: mid-p and asymptotic are better than exact conditional",
    BMC Medical Research Methodology 13:91 (2013), Table 1 (airway
    hyper-responsiveness before and after stem cell transplantation, Bentur et
    al.): cells 1, 1, 7, 12; published exact conditional p = 0.070.
    """
    cells = {(1, 1): 1, (1, 0): 1, (0, 1): 7, (0, 0): 12}  # (baseline right, version right)
    rows = []
    for (base_right, new_right), count in cells.items():
        for _ in range(count):
            rows.append(
                {
                    "id": f"c{len(rows)}",
                    "label": 1,
                    "prediction": new_right,
                    "baseline_prediction": base_right,
                }
            )
    (found,) = compare(examples_of(rows), ["accuracy"], baseline="1")
    assert found.discordant is not None
    assert (found.discordant.baseline_only, found.discordant.version_only) == (1, 7)
    assert round(found.p_value, 3) == 0.070
    assert found.p_value == pytest.approx(18 / 256)  # 2 * P(X <= 1), X ~ Bin(8, 1/2)
    assert found.delta == pytest.approx((8 - 2) / 21)
    assert found.n == 21
    assert found.test.startswith("McNemar exact")


def test_auc_matches_a_hand_computed_example() -> None:
    """AUCs of 1.0 and 0.875 (a tie counts one half) are computed exactly, delta 0.125."""
    block = [  # positives 0.5 and 0.3 against negatives 0.3 and 0.1: 1 + 1 + 0.5 + 1 of 4
        (1, 0.9, 0.5),
        (1, 0.8, 0.3),
        (0, 0.3, 0.3),
        (0, 0.1, 0.1),
    ]
    rows = [
        {"id": f"e{i}-{j}", "label": label, "score": new, "baseline_score": base}
        for i in range(10)
        for j, (label, new, base) in enumerate(block)
    ]  # ten copies: the same AUCs, and enough of each class to resample
    (found,) = compare(examples_of(rows), ["auc"], baseline="1")
    assert (found.value, found.baseline_value, found.delta) == (1.0, 0.875, 0.125)
    assert found.n == 40


def test_the_bootstrap_interval_is_scipys_own_result() -> None:
    """The interval and p-value equal scipy.stats.bootstrap's, run with the recorded seed."""
    rows = sample(300, seed=3, gain=0.2)
    (found,) = compare(examples_of(rows), ["auc"], baseline="1", seed=11, resamples=1000)
    y = np.array([r["label"] for r in rows], dtype=float)
    new = np.array([r["score"] for r in rows], dtype=float)
    base = np.array([r["baseline_score"] for r in rows], dtype=float)

    def auc(labels: object, scores: object) -> float:  # Mann-Whitney U over n1 * n0
        lab = np.asarray(labels, dtype=bool)
        sco = np.asarray(scores)
        u = stats.mannwhitneyu(sco[lab], sco[~lab]).statistic
        return float(u / (lab.sum() * (~lab).sum()))

    reference = stats.bootstrap(
        (y, new, base),
        lambda a, b, c: auc(a, b) - auc(a, c),
        paired=True,
        vectorized=False,
        n_resamples=1000,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(11),
    )
    (interval,) = found.intervals
    assert interval.low == pytest.approx(reference.confidence_interval.low, abs=1e-12)
    assert interval.high == pytest.approx(reference.confidence_interval.high, abs=1e-12)
    assert found.value == pytest.approx(auc(y, new), abs=1e-12)
    assert found.delta == pytest.approx(auc(y, new) - auc(y, base), abs=1e-12)
    spread = reference.bootstrap_distribution
    beyond = min(int((spread <= 0).sum()), int((spread >= 0).sum()))
    assert found.p_value == pytest.approx(min(1.0, 2 * (beyond + 1) / 1001))
    assert (found.resamples, found.seed, found.interval_method) == (
        1000,
        11,
        "paired bootstrap, percentile",
    )


def test_the_same_seed_gives_the_same_interval_and_another_seed_does_not() -> None:
    """Re-running with the recorded seed reproduces the bounds to the bit."""
    table = examples_of(sample(200, seed=5, gain=0.1))
    first = compare(table, ["auc", "accuracy"], baseline="1", seed=42)
    again = compare(table, ["auc", "accuracy"], baseline="1", seed=42)
    other = compare(table, ["auc"], baseline="1", seed=43)
    assert [c.model_dump() for c in first] == [c.model_dump() for c in again]
    assert first[0].intervals != other[0].intervals


def test_a_wider_level_gives_a_wider_interval_from_the_same_resamples() -> None:
    """The 99% interval holds the 95% one; both are recorded, in percent."""
    (found,) = compare(
        examples_of(sample(200, seed=6, gain=0.1)), ["auc"], baseline="1", levels=[99, "95%"]
    )
    narrow, wide = found.intervals
    assert (narrow.level, wide.level) == (95.0, 99.0)
    assert wide.low <= narrow.low <= found.delta <= narrow.high <= wide.high


def test_identical_versions_differ_by_nothing() -> None:
    """Two versions with the same outputs: delta 0, interval [0, 0], p-value 1."""
    rows = sample(100, seed=7, gain=0.0)
    for row in rows:
        row["score"], row["prediction"] = row["baseline_score"], row["baseline_prediction"]
    for found in compare(examples_of(rows), ["auc", "accuracy"], baseline="1"):
        assert found.delta == 0
        assert (found.intervals[0].low, found.intervals[0].high) == (0, 0)
        assert found.p_value == 1.0


def test_a_clear_improvement_has_an_interval_above_zero() -> None:
    """A much better version: the whole 95% interval is above 0 and p is small."""
    (found,) = compare(examples_of(sample(400, seed=8, gain=0.8)), ["auc"], baseline="1")
    assert found.intervals[0].low > 0
    assert found.p_value < 0.01


def test_json_lines_and_csv_give_the_same_examples() -> None:
    """A JSON Lines file reads as the CSV with the same rows; labels true/1/1.0 are one class."""
    rows = sample(30, seed=9, gain=0.2)
    lines = [json.dumps(row) for row in rows]
    lines[0] = json.dumps({**rows[0], "label": bool(rows[0]["label"])})
    jsonl = parse_examples(("\n".join(lines) + "\n").encode(), where="x.jsonl")
    assert jsonl == examples_of(rows)


# -- bad files and bad arguments: a sentence naming the fault ---------------------------------

GOOD = "id,label,score,baseline_score\na,1,0.9,0.8\nb,0,0.2,0.3\n"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "holds no examples"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"label,score,baseline_score\n1,0.9,0.8\n", "no 'id' column"),
        (b"id,score,baseline_score\na,0.9,0.8\n", "no 'label' column"),
        (b"id,label,score\na,1,0.9\n", "has a 'score' column but no 'baseline_score'"),
        (GOOD.encode() + b"a,0,0.1,0.2\n", "line 4: id 'a' is repeated (first on line 2)"),
        (GOOD.encode() + b"c,0,,0.2\n", "line 4: example 'c' has no score"),
        (GOOD.encode() + b"c,0,nan,0.2\n", "score of example 'c' is 'nan', not a finite number"),
        (GOOD.encode() + b"c,0,high,0.2\n", "'high', not a finite number"),
        (GOOD.encode() + b"c,0,0.2\n", "line 4: 3 fields where the header has 4"),
        (GOOD.encode() + b",0,0.1,0.2\n", "line 4: the id is missing"),
        (GOOD.encode() + b"c,,0.1,0.2\n", "example 'c' has no label"),
        (b"id,id,label\na,b,1\n", "names column 'id' twice"),
        (b'{"id": "a", "label": 1}\n[1, 2]\n', "line 2: each line must be one JSON object"),
        (b'{"id": "a", "id": "b", "label": 1}\n', "line 1:"),
        (b'{"id": "a", "label": 1}\n{"id": "b", "label": 0, "score": 1}\n', "line 2: a 'score'"),
        (b'{"id": "a", "label": 1, "score": NaN, "baseline_score": 1}\n', "line 1:"),
    ],
)
def test_a_bad_file_is_refused_naming_the_fault(raw: bytes, message: str) -> None:
    """Each kind of malformed per-example file gives an error naming the line and the fault."""
    with pytest.raises(InvalidInputError, match=r"examples\.csv") as caught:
        parse_examples(raw, where="examples.csv")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        ("a,2,0.9,0.8\nb,0,0.1,0.2\n", {}, "has label '2': AUC needs labels 0 and 1"),
        ("a,1,0.9,0.8\nb,1,0.1,0.2\n", {}, "every example is positive (1)"),
        ("a,1,0.9,0.8\nb,0,0.1,0.2\n", {"metrics": ["f1"]}, "cannot compare 'f1'"),
        ("a,1,0.9,0.8\nb,0,0.1,0.2\n", {"metrics": ["accuracy"]}, "no 'prediction'"),
        ("a,1,0.9,0.8\nb,0,0.1,0.2\n", {"resamples": 10}, "resamples must be from 100"),
        ("a,1,0.9,0.8\nb,0,0.1,0.2\n", {"seed": -1}, "the seed must be"),
        ("a,1,0.9,0.8\nb,0,0.1,0.2\n", {"levels": [100]}, "from 50 to below 100"),
        ("a,1,0.9,0.8\n", {}, "holds 1 example"),
        ("a,1,0.9,0.8\nb,0,0.1,0.2\nc,0,0.2,0.1\n", {}, "too few examples of one class"),
    ],
)
def test_a_comparison_the_file_cannot_answer_is_refused(
    body: str, kwargs: dict[str, object], message: str
) -> None:
    """Non-binary labels, one class, unknown metrics, bad settings: a clear error."""
    table = parse_examples(f"id,label,score,baseline_score\n{body}".encode(), where="f.csv")
    metrics = kwargs.pop("metrics", ["auc"])
    with pytest.raises(InvalidInputError) as caught:
        compare(table, metrics, baseline="1", **kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "level"), [("95", 95.0), ("95%", 95.0), (0.99, 99.0), ("99.9 %", 99.9)]
)
def test_confidence_levels_are_read_in_percent(text: str | float, level: float) -> None:
    """95, 95% and 0.95 all mean 95 percent."""
    assert parse_level(text) == level


@pytest.mark.parametrize("text", ["ninety", "100", "40", "0.2", "inf"])
def test_a_bad_confidence_level_is_refused(text: str) -> None:
    """A level that is not a percentage from 50 to below 100 is refused."""
    with pytest.raises(InvalidInputError, match="confidence level"):
        parse_level(text)


# -- gates on the interval ---------------------------------------------------------------------


def comparison(low: float, high: float, level: float = 95) -> Comparison:
    """Return an AUC comparison against v1 with one interval."""
    return Comparison(
        metric="auc",
        baseline="1",
        n=500,
        value=0.8,
        baseline_value=0.78,
        delta=(low + high) / 2,
        intervals=[ComparisonInterval(level=level, low=low, high=high)],
        interval_method="paired bootstrap, percentile",
        p_value=0.2,
        test="paired bootstrap",
    )


def test_a_delta_gate_parses_with_its_level() -> None:
    """'auc_delta >= 0 at 95%' is a gate on the auc comparison at 95 percent."""
    gate = parse_gate("auc_delta >= 0 at 95%")
    assert (gate.metric, gate.op, gate.value, gate.level, gate.compared) == (
        "auc_delta",
        ">=",
        0.0,
        95.0,
        "auc",
    )
    assert str(gate) == "auc_delta >= 0 at 95%"
    assert parse_gate("auc >= 0.8").level is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auc >= 0.8 at 95%", "only a comparison with the baseline has"),
        ("auc_delta == 0 at 95%", "not =="),
        ("auc_delta >= 0 at 100%", "from 50% to below 100%"),
        ("auc_delta >= 0 at 95", "is not of the form"),
        ("_delta >= 0 at 95%", "only a comparison"),
    ],
)
def test_a_bad_delta_gate_is_refused(text: str, message: str) -> None:
    """A level on a plain metric, == on an interval, a level of 100%: refused, said why."""
    with pytest.raises(InvalidInputError, match="metric gate") as caught:
        parse_gate(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("gate", "low", "high", "passes"),
    [
        ("auc_delta >= 0 at 95%", 0.001, 0.05, True),
        ("auc_delta >= 0 at 95%", -0.001, 0.05, False),  # the point estimate is above 0
        ("auc_delta > 0 at 95%", 0.0, 0.05, False),
        ("auc_delta >= -0.01 at 95%", -0.005, 0.05, True),
        ("auc_delta <= 0.02 at 95%", -0.05, 0.01, True),  # the upper bound
        ("auc_delta <= 0.02 at 95%", -0.05, 0.03, False),
    ],
)
def test_a_delta_gate_checks_the_right_bound(
    gate: str, low: float, high: float, passes: bool
) -> None:
    """>= and > check the lower bound of the interval, <= and < the upper bound."""
    policy = Policy(gates={"prod": [gate]})
    denial = check_gates(policy, "prod", {}, "2", {"auc": (7, comparison(low, high))})
    assert (denial is None) is passes
    if denial is not None:
        side = "lower" if ">" in gate else "upper"
        assert f"its {side} bound" in denial.message
        assert "against version 1 (event 7, n=500)" in denial.message


def test_a_delta_gate_without_a_comparison_or_at_another_level_fails_saying_why() -> None:
    """No comparison recorded, or none at the gate's level: the gate fails and says which."""
    policy = Policy(gates={"prod": ["auc_delta >= 0 at 95%"]})
    none = check_gates(policy, "prod", {"auc_delta": 0.5}, "2")  # a plain metric never counts
    assert none is not None
    assert "no comparison of auc with a baseline is recorded" in none.message
    assert "--confidence 95" in none.remedy
    other = check_gates(policy, "prod", {}, "2", {"auc": (7, comparison(0.1, 0.2, level=90))})
    assert other is not None
    assert "has intervals at 90%, not at 95%" in other.message


# -- on the log (both backends) ----------------------------------------------------------------


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log with versions 1 and 2 of model m trained, and 2 approved."""
    created, _ = AuditLog.init(db_url, origin="test.example/compare", actor=OFF)
    with created:
        for version in ("1", "2"):
            created.record_training("m", version=version, data={}, actor=DS)
        created.approve("m", "2", actor=VAL)
        yield created


def test_evaluate_records_the_comparison_and_the_files_digest(
    log: AuditLog, tmp_path: Path
) -> None:
    """The event holds each comparison (method, n, interval, p-value, baseline) and the file."""
    path = write_examples(tmp_path / "examples.csv", sample(200, seed=1, gain=0.3))
    receipt = log.evaluate(
        "m", "2", examples=path, baseline="1", confidence=[95, 99], seed=5, actor=VAL
    )
    (record,) = log.events(start=receipt.seq, stop=receipt.seq + 1)
    data = record.event.data
    assert data["examples"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data["examples"]["size"] == path.stat().st_size
    expected = compare(
        parse_examples(path.read_bytes(), where="x"),
        ["auc", "accuracy"],
        baseline="1",
        levels=[95, 99],
        seed=5,
    )
    assert data["comparisons"] == [c.model_dump(mode="json", exclude_none=True) for c in expected]
    auc = data["comparisons"][0]
    assert (auc["metric"], auc["baseline"], auc["n"], auc["seed"]) == ("auc", "1", 200, 5)
    assert [i["level"] for i in auc["intervals"]] == [95, 99]
    state = log.status("m")["m"].versions["2"]
    assert set(state.live_comparisons) == {"auc", "accuracy"}
    assert state.live_comparisons["auc"][0] == receipt.seq


def test_a_gate_on_the_lower_bound_passes_and_fails_as_it_should(
    log: AuditLog, tmp_path: Path
) -> None:
    """An interval crossing 0 refuses the deploy (a denial, nothing else); a clear win passes."""
    log.apply_policy(Policy(gates={"prod": ["auc_delta >= 0 at 95%"]}), actor=OFF)
    with pytest.raises(PolicyDeniedError, match="no comparison of auc"):
        log.deploy("m", "2", "prod", actor=REL)
    weak = write_examples(tmp_path / "weak.csv", sample(60, seed=2, gain=0.05))
    log.evaluate("m", "2", examples=weak, baseline="1", compare=["auc"], actor=VAL)
    (seq, recorded) = log.status("m")["m"].versions["2"].live_comparisons["auc"]
    assert recorded.intervals[0].low < 0 < recorded.intervals[0].high
    before = log.head().size
    with pytest.raises(PolicyDeniedError) as caught:
        log.deploy("m", "2", "prod", actor=REL)
    assert caught.value.rule == "metric-gate"
    assert f"(event {seq}, n=60)" in str(caught.value)
    assert log.head().size == before + 1  # only the denial
    assert log.status("m")["m"].running == {}
    strong = write_examples(tmp_path / "strong.csv", sample(400, seed=2, gain=0.8))
    log.evaluate("m", "2", examples=strong, baseline="1", compare=["auc"], actor=VAL)
    log.deploy("m", "2", "prod", actor=REL)
    assert log.status("m")["m"].running == {"prod": "2"}


def test_a_gate_at_an_unrecorded_level_fails(log: AuditLog, tmp_path: Path) -> None:
    """A gate at 99% is not met by a comparison recorded at 95% only, however strong."""
    log.apply_policy(Policy(gates={"prod": ["auc_delta >= 0 at 99%"]}), actor=OFF)
    strong = write_examples(tmp_path / "strong.csv", sample(400, seed=2, gain=0.8))
    log.evaluate("m", "2", examples=strong, baseline="1", actor=VAL)
    with pytest.raises(PolicyDeniedError, match="has intervals at 95%, not at 99%"):
        log.deploy("m", "2", "prod", actor=REL)


def test_an_imported_comparison_never_passes_a_gate(log: AuditLog, tmp_path: Path) -> None:
    """A comparison in imported history shows, but only a live one counts for a gate."""
    log.apply_policy(Policy(gates={"prod": ["auc_delta >= 0 at 95%"]}), actor=OFF)
    data = {"comparisons": [comparison(0.1, 0.2).model_dump(mode="json", exclude_none=True)]}
    log.append("model.evaluate", subject={"model": "m", "version": "2"}, data=data, imported=True)
    state = log.status("m")["m"].versions["2"]
    assert "auc" in state.comparisons and "auc" not in state.live_comparisons
    with pytest.raises(PolicyDeniedError, match="no comparison of auc"):
        log.deploy("m", "2", "prod", actor=REL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline": "9"}, "baseline version '9' of 'm' is not on the log"),
        ({"baseline": "2"}, "the baseline must be another version"),
        ({"baseline": None}, "give baseline="),
        ({"examples": None}, "needs the per-example file"),
        ({"examples": "missing.csv"}, "no per-example file at missing.csv"),
        ({"compare": ["f1"]}, "cannot compare 'f1'"),
        ({"confidence": "very"}, "is not a number"),
    ],
)
def test_a_bad_comparison_writes_nothing(
    log: AuditLog, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    """An unknown or same baseline, a missing file or setting: a clear error, nothing written."""
    path = write_examples(tmp_path / "examples.csv", sample(50, seed=4, gain=0.1))
    args: dict[str, object] = {"examples": path, "baseline": "1", **kwargs}
    before = log.head().size
    with pytest.raises(InvalidInputError) as caught:
        log.evaluate("m", "2", actor=VAL, **args)  # type: ignore[arg-type]
    assert message in str(caught.value)
    assert log.head().size == before


def test_a_failed_baseline_is_refused(log: AuditLog, tmp_path: Path) -> None:
    """A failed training run is no baseline: the comparison is refused, nothing written."""
    log.record_training("m", version="3", data={"status": "failed"}, actor=DS)
    path = write_examples(tmp_path / "examples.csv", sample(50, seed=4, gain=0.1))
    before = log.head().size
    with pytest.raises(InvalidInputError, match="is a failed training run"):
        log.evaluate("m", "2", examples=path, baseline="3", actor=VAL)
    assert log.head().size == before


def test_the_card_and_report_show_the_comparison_with_its_interval(
    log: AuditLog, tmp_path: Path
) -> None:
    """The card lists the comparison and the gate's bound; the report's evaluations show it."""
    from auditml.cards.build import build_card
    from auditml.cards.render import render_card
    from auditml.reports.build import build_report
    from auditml.reports.render import render_report

    log.apply_policy(Policy(gates={"prod": ["auc_delta >= 0 at 95%"]}), actor=OFF)
    path = write_examples(tmp_path / "examples.csv", sample(200, seed=1, gain=0.3))
    receipt = log.evaluate("m", "2", examples=path, baseline="1", compare=["auc"], actor=VAL)
    card = build_card(log, "m", "2")
    (shown,) = card.comparisons
    (gate,) = card.gates
    assert (shown.seq, shown.baseline, shown.n, shown.examples is not None) == (
        receipt.seq,
        "1",
        200,
        True,
    )
    low, high = shown.intervals[0].low, shown.intervals[0].high
    assert (gate.value, gate.interval, gate.baseline, gate.seq) == (
        low,
        (low, high),
        "1",
        receipt.seq,
    )
    text = render_card(card, "md").decode()
    assert "## Comparison with the baseline" in text
    assert f"95% [{low:+.4f}, {high:+.4f}]".replace("+", "\\+") in text  # Markdown escapes +
    assert "paired bootstrap, percentile, 2000 resamples, seed 0" in text
    html = render_card(card, "html").decode()
    assert "Comparison with the baseline" in html
    assert f"95% [{low:+.4f}, {high:+.4f}]" in html
    pytest.importorskip("weasyprint")
    from tests.test_cards import _pdf_text

    assert "Comparison with the baseline" in _pdf_text(render_card(card, "pdf"))
    report = build_report(log)
    (summary,) = [e for e in report.evaluations if e.version == "2"]
    assert [(c.metric, c.seq) for c in summary.comparisons] == [("auc", receipt.seq)]
    assert (
        f"auc vs v1: {shown.delta:+.4f}".replace("+", "\\+") in render_report(report, "md").decode()
    )


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def url(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Return a log with versions 1 and 2 of model m trained."""
    for args in (
        ["init", "--origin", "test.example/cli", "--db", db_url],
        ["train", "m", "--no-code", "--db", db_url, "--actor", DS],
        ["train", "m", "--no-code", "--db", db_url, "--actor", DS],
    ):
        assert run_cli(args, capsys)[0] == 0
    return db_url


def test_the_command_records_and_prints_the_comparison(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --examples and --baseline, the command prints each delta, interval and p-value."""
    path = write_examples(tmp_path / "examples.csv", sample(100, seed=1, gain=0.3))
    code, out, err = run_cli(
        [
            *("evaluate", "m", "2", "--examples", str(path), "--baseline", "1"),
            *("--confidence", "90%", "--confidence", "99", "--seed", "3"),
            *("--db", url, "--actor", VAL),
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    assert "Recorded evaluation of m v2" in out
    assert "auc:" in out and "accuracy:" in out
    assert "90% [" in out and "99% [" in out and "n=100" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--baseline", "7"], "baseline version '7'"),
        (["--baseline", "1", "--compare", "f1"], "cannot compare 'f1'"),
        (["--baseline", "1", "--confidence", "150"], "from 50 to below 100"),
        (["--baseline", "1", "--resamples", "5"], "resamples must be from 100"),
        ([], "give baseline="),
    ],
)
def test_the_command_refuses_bad_input_without_a_traceback(
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    """A bad baseline, metric, level or count exits 2 with one sentence and writes nothing."""
    path = write_examples(tmp_path / "examples.csv", sample(50, seed=1, gain=0.3))
    with AuditLog.open(url) as opened:
        before = opened.head().size
    code, _, err = run_cli(
        ["evaluate", "m", "2", "--examples", str(path), *extra, "--db", url], capsys
    )
    assert code == 2
    assert message in err
    with AuditLog.open(url) as opened:
        assert opened.head().size == before


def test_the_command_names_a_malformed_file(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with a repeated id, or no file at all, exits 2 naming it."""
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + "a,0,0.1,0.2\n", encoding="utf-8")
    code, _, err = run_cli(
        ["evaluate", "m", "2", "--examples", str(bad), "--baseline", "1", "--db", url], capsys
    )
    assert code == 2 and "id 'a' is repeated" in err and str(bad) in err
    code, _, err = run_cli(
        ["evaluate", "m", "2", "--compare", "auc", "--baseline", "1", "--db", url], capsys
    )
    assert code == 2 and "needs the per-example file" in err


def test_the_card_exports_carry_the_delta_with_its_confidence_interval(
    log: AuditLog, tmp_path: Path
) -> None:
    """MCT and CycloneDX list each delta with its interval, and still validate."""
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("cyclonedx")
    from auditml.cards.build import build_card
    from auditml.cards.render import render_card
    from tests.test_cards import _cyclonedx_errors
    from tests.vector_files import require_vectors

    path = write_examples(tmp_path / "examples.csv", sample(200, seed=1, gain=0.3))
    log.evaluate("m", "2", examples=path, baseline="1", compare=["auc"], actor=VAL)
    card = build_card(log, "m", "2")
    (c,) = card.comparisons
    schema = json.loads(
        (require_vectors("model-card-schemas") / "mct-v0.0.2.schema.json").read_text()
    )
    mct = json.loads(render_card(card, "mct"))
    jsonschema.validate(mct, schema, format_checker=jsonschema.FormatChecker())
    (delta,) = mct["quantitative_analysis"]["performance_metrics"]
    assert delta["type"].startswith("auc_delta vs version 1 (95%, paired bootstrap")
    assert delta["value"] == repr(c.delta)
    assert delta["confidence_interval"] == {
        "lower_bound": repr(c.intervals[0].low),
        "upper_bound": repr(c.intervals[0].high),
    }
    bom = render_card(card, "cyclonedx").decode()
    assert _cyclonedx_errors(bom) is None
    (metric,) = json.loads(bom)["components"][0]["modelCard"]["quantitativeAnalysis"][
        "performanceMetrics"
    ]
    assert metric["confidenceInterval"]["lowerBound"] == repr(c.intervals[0].low)


def test_a_policy_gating_a_metric_auditml_cannot_compare_is_not_recorded(log: AuditLog) -> None:
    """'f1_delta >= 0 at 95%' is refused when the policy is applied; nothing is written."""
    before = log.head().size
    with pytest.raises(InvalidInputError, match="cannot compare: comparable metrics are auc"):
        log.apply_policy(Policy(gates={"prod": ["f1_delta >= 0 at 95%"]}), actor=OFF)
    assert log.head().size == before
    log.apply_policy(Policy(gates={"prod": ["accuracy_delta >= 0 at 90%"]}), actor=OFF)
