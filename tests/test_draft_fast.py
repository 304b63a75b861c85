"""Draft.build's fast path for common shapes gives exactly what the pydantic path gives.

The fast path checks plain evaluation data by hand and declines anything
unusual; whatever it accepts must come out as the same draft, the same data
(keys in the same order, values of the same types) and the same canonical
bytes on the log, and whatever the slow path refuses it must refuse alike.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditml import Actor, Draft, InvalidInputError
from auditml.core import events
from auditml.core.envelope import PartCache, draft_part

ACTOR = Actor(id="pipeline@bench.example", source="api")


class _Str(str):
    """A str subclass: the fast path leaves it to pydantic."""


_names = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["", "x" * 513, "x" * 512, "auc", _Str("auc"), 3, None]),
)
_numbers = st.one_of(
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, "0.5", None, 10**400, 1e308]),
)
_metrics = st.one_of(
    st.dictionaries(_names, _numbers, max_size=6),
    st.sampled_from([[], None, "auc"]),
)
_uris = st.one_of(
    st.sampled_from(
        [
            "s3://datasets/holdout.parquet",
            "s3://bob:secret@bucket/x.parquet",
            "https://h.example/x?token=abc",
            "https://h.example/x#frag",
            "data/local.csv",
            "",
            _Str("s3://x"),
            7,
        ]
    ),
    st.text(max_size=20),
)
_hexes = st.sampled_from(["ab" * 32, "AB" * 32, "ab" * 31, None, 5])
_counts = st.sampled_from([None, 0, 5, -1, True, 2.0, "3"])
_dataset = st.one_of(
    st.fixed_dictionaries(
        {"uri": _uris},
        optional={
            "kind": st.sampled_from(["file", "folder", "uri", "url", None, 1]),
            "sha256": _hexes,
            "size": _counts,
            "files": _counts,
            "split": st.sampled_from(["test", None, 1]),
            "redacted": st.sampled_from([["userinfo"], None]),
            "other": st.just(1),
        },
    ),
    st.sampled_from([None, "s3://x", {}]),
)
_artifact = st.fixed_dictionaries(
    {"uri": _uris},
    optional={"sha256": _hexes, "size": _counts, "extra": st.just(1)},
)
_data = st.fixed_dictionaries(
    {},
    optional={
        "dataset": _dataset,
        "metrics": _metrics,
        "slices": st.one_of(
            st.dictionaries(_names, _metrics, max_size=3), st.sampled_from([None, []])
        ),
        "artifacts": st.one_of(
            st.dictionaries(_names, _artifact, max_size=2), st.sampled_from([None, []])
        ),
        "notes": st.sampled_from(["nightly", "", None, 3, _Str("n")]),
        "imported": st.just({"source": "x"}),
        "unknown": st.just(1),
    },
)
_subjects = st.one_of(
    st.fixed_dictionaries(
        {"model": st.sampled_from(["m", "m\x00", _Str("m")])},
        optional={"version": st.sampled_from(["1", 2])},
    ),
    st.sampled_from([None, {}, {"model": "m", "version": "1"}, "m"]),
)
_actors = st.sampled_from([ACTOR, "dana@bank.example", "", "x" * 600, None, 5])


def _build(slow: bool, **parts: Any) -> tuple[str, Any]:
    """Return ("ok", draft) or ("error", message) for one path of Draft.build."""
    build = Draft._build_validated if slow else Draft.build
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            return "ok", build("model.evaluate", **parts)
    except InvalidInputError as exc:
        return "error", str(exc)


def _typed(value: Any) -> Any:
    """Return ``value`` with each item's exact type and each dict's key order made visible."""
    if isinstance(value, dict):
        return [(type(k), k, _typed(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return (float, "nan")
    return (type(value), value)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_data,
    subject=_subjects,
    actor=_actors,
    imported=st.sampled_from([False, True, {"source": "mlflow"}]),
)
def test_the_fast_path_gives_the_slow_paths_draft_and_bytes(
    data: dict[str, Any], subject: Any, actor: Any, imported: Any
) -> None:
    """Over generated evaluations, both paths give the same draft, data types, order and bytes."""
    _same({"actor": actor, "subject": subject, "data": data, "imported": imported})


_plain_names = st.text(min_size=1, max_size=16)
_plain_metrics = st.dictionaries(
    _plain_names,
    st.one_of(
        st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    max_size=8,
)
_plain_uris = st.from_regex(r"[a-z0-9]{1,8}://[a-z0-9./_-]{0,30}", fullmatch=True)
_plain_data = st.fixed_dictionaries(
    {},
    optional={
        "dataset": st.fixed_dictionaries(
            {"uri": _plain_uris},
            optional={
                "kind": st.sampled_from(["file", "folder", "uri"]),
                "sha256": st.sampled_from(["ab" * 32, "09" * 32]),
                "size": st.integers(min_value=0, max_value=2**40),
                "files": st.integers(min_value=0, max_value=10**6),
                "split": st.text(max_size=8),
            },
        ),
        "metrics": _plain_metrics,
        "slices": st.dictionaries(_plain_names, _plain_metrics, max_size=4),
        "artifacts": st.dictionaries(
            _plain_names,
            st.fixed_dictionaries(
                {"uri": _plain_uris},
                optional={"sha256": st.just("cd" * 32), "size": st.integers(0, 10**9)},
            ),
            max_size=3,
        ),
        "notes": st.text(max_size=40),
    },
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_plain_data,
    subject=st.dictionaries(st.sampled_from(["model", "version", "env"]), st.text(max_size=8)),
    actor=st.sampled_from([ACTOR, "dana@bank.example", None]),
    imported=st.booleans(),
)
def test_plain_evaluations_give_the_same_draft_and_bytes_on_both_paths(
    data: dict[str, Any], subject: dict[str, str], actor: Any, imported: bool
) -> None:
    """Over generated well-formed evaluations (mostly fast), both paths agree to the byte."""
    _same({"actor": actor, "subject": subject, "data": data, "imported": imported})


def _same(parts: dict[str, Any]) -> None:
    """Assert both paths of Draft.build give the same draft, or the same refusal."""
    fast, slow = _build(False, **parts), _build(True, **parts)
    assert fast[0] == slow[0], (fast, slow)
    if slow[0] == "error":
        assert fast[1] == slow[1]
        return
    f, s = fast[1], slow[1]
    assert f == s
    assert _typed(f.data) == _typed(s.data)
    assert _typed(f.subject) == _typed(s.subject)
    assert f.actor == s.actor and type(f.actor) is type(s.actor)
    assert f.model_dump() == s.model_dump()
    assert f.model_fields_set == s.model_fields_set
    if f.actor is not None:
        assert _part(f) == _part(s)


def _part(draft: Draft) -> Any:
    """Return a draft's canonical pieces for the log, or the error canonicalizing refuses with."""
    try:
        return draft_part(draft, PartCache())
    except InvalidInputError as exc:
        return str(exc)


def _typical(i: int) -> dict[str, Any]:
    return {
        "dataset": {"uri": f"s3://datasets/holdout-{i}.parquet", "kind": "uri"},
        "metrics": {"auc": 0.8 + i / 1e4, "accuracy": 0.91, "n": 10_000 + i},
        "slices": {"age<30": {"auc": 0.79}, "age>=30": {"auc": 0.83}},
        "notes": "nightly evaluation run",
    }


def test_typical_evaluations_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common shapes never reach pydantic, so the fast path is the one measured."""

    def refuse(*args: object, **kwargs: object) -> Draft:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(Draft, "_build_validated", refuse)
    for i in range(50):
        draft = Draft.build(
            "model.evaluate",
            actor=ACTOR if i % 2 else "dana@bank.example",
            subject={"model": "m", "version": str(i)},
            data=_typical(i),
            imported=bool(i % 3),
        )
        assert draft.data["metrics"]["n"] == 10_000 + i


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"metrics": {"auc": float("nan")}}, "metrics.auc"),
        ({"metrics": {"auc": True}}, None),
        ({"dataset": {"uri": "s3://bob:pw@b/x"}}, None),
        ({"notes": 3}, "notes"),
        ({"metrics": {"": 1}}, "metrics"),
        ({"imported": {"source": "x"}}, "imported"),
    ],
)
def test_the_fast_path_declines_what_it_does_not_vouch_for(
    data: dict[str, Any], why: str | None
) -> None:
    """NaN, bools, credentials in a URI, wrong types, empty names, a forged mark: the slow path."""
    assert events._fast_parts("model.evaluate", ACTOR, None, data, False) is None
    fast, slow = _build(False, actor=ACTOR, data=data), _build(True, actor=ACTOR, data=data)
    assert fast == slow or (fast[0] == "ok" and fast[1] == slow[1])
    if why is not None:
        assert fast[0] == "error" and why in fast[1]
