"""The inline SVG charts: well-formed, escaped, deterministic, and honest about gaps."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from auditml._internal.charts import TimelineMark, metric_chart, nice_ticks, timeline_chart

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&amp;'


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_metric_chart_is_well_formed_svg_with_one_line_per_metric() -> None:
    """Two metrics over three versions give two polylines and six points."""
    svg = metric_chart(
        {"auc": [("1", 0.7), ("2", 0.8), ("3", 0.85)], "f1": [("1", 0.5), ("2", 0.6), ("3", 0.55)]},
        title="Metrics",
    )
    root = _parse(svg)
    assert root.tag == f"{SVG}svg"
    assert len(root.findall(f".//{SVG}polyline")) == 2
    assert len(root.findall(f".//{SVG}circle")) == 6


def test_metric_chart_escapes_hostile_names() -> None:
    """Metric names, version labels and titles from the log are shown as text, never as markup."""
    svg = metric_chart({HOSTILE: [(HOSTILE, 1.0)]}, title=HOSTILE)
    assert "<script>" not in svg
    root = _parse(svg)
    assert root.find(f".//{SVG}script") is None
    assert any(HOSTILE in (el.text or "") for el in root.iter(f"{SVG}title"))


def test_metric_chart_missing_value_breaks_the_line() -> None:
    """A version without the metric leaves a gap instead of a line drawn through it."""
    svg = metric_chart({"auc": [("1", 0.7), ("2", 0.8), ("3", None), ("4", 0.9), ("5", 0.95)]})
    lines = _parse(svg).findall(f".//{SVG}polyline")
    assert [len(line.get("points", "").split()) for line in lines] == [2, 2]


def test_metric_chart_without_data_says_so() -> None:
    """An empty series, or one with only missing values, draws a small 'No data' box."""
    assert "No data" in metric_chart({})
    assert "No data" in metric_chart({"auc": [("1", None)]})


def test_metric_chart_is_deterministic_and_handles_one_flat_point() -> None:
    """The same data gives the same bytes, and a single constant value still gets an axis."""
    first = metric_chart({"loss": [("v1", 2.0)]})
    assert first == metric_chart({"loss": [("v1", 2.0)]})
    assert len(_parse(first).findall(f".//{SVG}circle")) == 1


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    """Ticks start at or below the minimum, end at or above the maximum, on a round step."""
    ticks = nice_ticks(0.613, 0.912)
    assert ticks[0] <= 0.613 and ticks[-1] >= 0.912
    steps = {round(b - a, 9) for a, b in pairwise(ticks)}
    assert len(steps) == 1 and steps.pop() in {0.05, 0.1}


def test_timeline_chart_marks_rollbacks_in_red_per_environment() -> None:
    """Each environment is a lane; a rollback is drawn as a red marker, deploys are not."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    svg = timeline_chart(
        {
            "staging": [
                TimelineMark(t0, "1", "deploy"),
                TimelineMark(t0 + timedelta(days=1), "2", "deploy"),
            ],
            "production": [
                TimelineMark(t0 + timedelta(days=2), "1", "deploy"),
                TimelineMark(t0 + timedelta(days=3), "2", "deploy"),
                TimelineMark(t0 + timedelta(days=4), "1", "rollback"),
                TimelineMark(t0 + timedelta(days=5), "1", "retire"),
            ],
        }
    )
    root = _parse(svg)
    red = [el for el in root.iter(f"{SVG}path") if el.get("fill") == "#C62828"]
    assert len(red) == 2  # the rollback mark and its legend swatch
    texts = "".join(root.itertext())
    assert "staging" in texts and "production" in texts and "rollback 1" in texts


def test_timeline_chart_single_moment_and_hostile_environment() -> None:
    """One mark still gets a time axis, and a hostile environment name stays text."""
    svg = timeline_chart({HOSTILE: [TimelineMark(datetime(2026, 5, 1, 12), "v<1>", "deploy")]})
    assert "<script>" not in svg and "v&lt;1&gt;" in svg
    _parse(svg)


def test_timeline_chart_without_moves_says_so() -> None:
    """No deployments at all draws 'No data' rather than an empty frame."""
    assert "No data" in timeline_chart({})


def test_a_timeline_of_close_events_is_drawn_in_order_and_named_by_seq() -> None:
    """Moves seconds apart get distinct ticks naming their events; the legend shows what occurs."""
    t0 = datetime(2026, 11, 22, 2, 51, 7, tzinfo=UTC)
    lanes = {
        "production": [
            TimelineMark(t0, "1", "deploy", 12),
            TimelineMark(t0 + timedelta(seconds=1), "2", "deploy", 14),
            TimelineMark(t0 + timedelta(seconds=2), "1", "rollback", 16),
        ]
    }
    svg = str(timeline_chart(lanes))
    assert all(f">event {seq}<" in svg for seq in (12, 14, 16))
    assert "not to time scale" in svg
    assert ">rollback<" in svg and ">retire<" not in svg
    slow = {
        "production": [
            TimelineMark(t0, "1", "deploy"),
            TimelineMark(t0 + timedelta(days=9), "2", "deploy"),
        ]
    }
    drawn = str(timeline_chart(slow))
    assert "not to time scale" not in drawn and ">rollback<" not in drawn
