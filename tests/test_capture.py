"""Training capture: @track_training and log.training_run record what ran, and never change it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError, current_run
from auditml import track_training as track

DS = "ds@bank.example"


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a fresh log holding only its init event."""
    created, _ = AuditLog.init(db_url, origin="test.example/capture", actor="admin")
    with created:
        yield created


def trains(log: AuditLog) -> list[dict[str, Any]]:
    """Return the data of every model.train event, oldest first."""
    return [r.event.data for r in log.events(action="model.train")]


class Opaque:
    """A parameter value JSON cannot hold."""

    def __repr__(self) -> str:
        return "Opaque()"


def test_decorator_records_the_run_and_returns_the_result_unchanged(
    log: AuditLog, tmp_path: Path
) -> None:
    """One line records model, version, times, params, datasets, artifacts, metrics and tags."""
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,0\n", encoding="utf-8")
    out = tmp_path / "model.bin"
    sentinel: dict[str, Any] = {"auc": 0.91, "loss": 0.2, "note": "not a metric"}

    @track(
        model="credit",
        log=log,
        actor=DS,
        datasets={"train": data},
        artifacts={"model": out},
        tags={"team": "risk"},
    )
    def fit(lr: float, layers: tuple[int, ...] = (8, 4), blob: object = None) -> dict[str, Any]:
        out.write_bytes(b"weights")
        return sentinel

    result = fit(0.1, blob=Opaque())
    assert result is sentinel
    run = fit.last_run  # type: ignore[attr-defined]
    assert run.version == "1" and run.receipt.version == "1"
    (event,) = [r.event for r in log.events(action="model.train")]
    assert event.subject == {"model": "credit", "version": "1"}
    assert event.actor.id == DS
    d = event.data
    assert d["status"] == "succeeded"
    assert d["started_at"] <= d["ended_at"] and d["duration_s"] >= 0
    assert d["params"]["lr"] == 0.1 and d["params"]["layers"] == [8, 4]
    assert d["params"]["blob"]["type"].endswith("Opaque")
    assert len(d["params"]["blob"]["sha256"]) == 64
    assert d["datasets"]["train"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert d["artifacts"]["model"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert d["metrics"] == {"auc": 0.91, "loss": 0.2}
    assert d["tags"] == {"team": "risk"}
    assert "python" in d["environment"]


def test_a_failing_function_is_recorded_and_reraised_unchanged(log: AuditLog) -> None:
    """The exception object itself propagates, after a failed model.train event is written."""
    boom = RuntimeError("out of memory on batch 7")

    @track(model="credit", log=log, actor=DS)
    def fit() -> None:
        raise boom

    with pytest.raises(RuntimeError) as caught:
        fit()
    assert caught.value is boom
    (d,) = trains(log)
    assert d["status"] == "failed"
    assert d["error"] == {"type": "RuntimeError", "message": "out of memory on batch 7"}
    assert log.status("credit")["credit"].versions["1"].state == "failed"


def test_async_training_functions_are_recorded(log: AuditLog) -> None:
    """An async def is awaited and recorded like a plain function."""

    @track(model="credit", log=log, actor=DS)
    async def fit(epochs: int) -> dict[str, float]:
        await asyncio.sleep(0)
        return {"acc": 0.5 + epochs / 100}

    assert asyncio.run(fit(3)) == {"acc": 0.53}
    assert trains(log)[0]["metrics"] == {"acc": 0.53}
    assert trains(log)[0]["params"] == {"epochs": 3}


def test_bare_decorator_uses_the_function_name(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """@track_training with no arguments records under the function's name on the default log."""
    AuditLog.init(db_url, origin="test.example/capture", actor="admin")[0].close()
    monkeypatch.setenv("AUDITML_DATABASE_URL", db_url)

    @track
    def churn_model() -> int:
        return 7

    assert churn_model() == 7
    with AuditLog.open(db_url) as log:
        assert [r.event.subject for r in log.events(action="model.train")] == [
            {"model": "churn_model", "version": "1"}
        ]


def test_training_run_context_and_current_run(log: AuditLog, tmp_path: Path) -> None:
    """A with-block is one run; current_run() gives it to the code inside."""
    assert current_run() is None
    with log.training_run(model="credit", actor=DS, params={"seed": 1}) as run:
        assert current_run() is run
        assert run.version == "1"
        run.log_metric("auc", 0.8)
        run.log_param("opt", "adam")
        run.set_tag("stage", "pilot")
    assert current_run() is None
    d = trains(log)[0]
    assert d["metrics"] == {"auc": 0.8}
    assert d["params"] == {"seed": 1, "opt": "adam"}
    assert d["tags"] == {"stage": "pilot"}


def test_training_run_records_failure_of_the_block(log: AuditLog) -> None:
    """An exception inside the block records a failed run and propagates."""
    with pytest.raises(KeyError), log.training_run(model="credit", actor=DS):
        raise KeyError("label")
    assert trains(log)[0]["error"]["type"] == "KeyError"


def test_excluded_and_disabled_params_are_not_recorded(log: AuditLog) -> None:
    """exclude= keeps secrets out; params=False records no arguments at all."""

    @track(model="a", log=log, actor=DS, exclude=("token",))
    def fit_a(lr: float, token: str) -> None:
        return None

    @track(model="b", log=log, actor=DS, params=False)
    def fit_b(lr: float) -> None:
        return None

    fit_a(0.1, token="s3cret")
    fit_b(0.2)
    a, b = trains(log)
    assert a["params"] == {"lr": 0.1}
    assert "params" not in b


def test_a_denied_trainer_is_refused_before_the_function_runs(log: AuditLog) -> None:
    """With train restricted to a role, the function never runs and the denial is recorded."""
    log.apply_policy(Policy(roles={DS: ["dev"]}, permissions={"train": ["dev"]}), actor="admin")
    calls: list[int] = []

    @track(model="credit", log=log, actor="intruder@bank.example")
    def fit() -> None:
        calls.append(1)

    with pytest.raises(PolicyDeniedError):
        fit()
    assert calls == []
    assert trains(log) == []
    assert [r.event.data["attempted"] for r in log.events(action="policy.denied")] == [
        "model.train"
    ]


def test_an_explicit_version_already_trained_is_refused_before_running(log: AuditLog) -> None:
    """Reusing a trained version fails fast, before any training work."""
    log.record_training("credit", version="3", actor=DS)
    calls: list[int] = []

    @track(model="credit", version="3", log=log, actor=DS)
    def fit() -> None:
        calls.append(1)

    with pytest.raises(InvalidInputError, match="already trained"):
        fit()
    assert calls == []


def test_a_missing_dataset_is_refused_before_running(log: AuditLog, tmp_path: Path) -> None:
    """A dataset path that does not exist is bad input, named, and nothing runs or is written."""
    calls: list[int] = []
    before = log.head().size

    @track(model="credit", log=log, actor=DS, datasets={"train": tmp_path / "nope.csv"})
    def fit() -> None:
        calls.append(1)

    with pytest.raises(InvalidInputError, match=r"nope\.csv"):
        fit()
    assert calls == [] and log.head().size == before


def test_versions_count_up_across_calls(log: AuditLog) -> None:
    """Each call of a decorated function gets the model's next version."""

    @track(model="credit", log=log, actor=DS)
    def fit() -> None:
        return None

    for _ in range(3):
        fit()
    assert [r.event.subject["version"] for r in log.events(action="model.train")] == [
        "1",
        "2",
        "3",
    ]
