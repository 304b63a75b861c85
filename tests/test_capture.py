"""Training capture: @track_training and log.training_run record what ran, and never change it."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError, current_run
from auditml import track_training as track
from auditml._internal import fingerprint
from auditml._internal.fingerprint import opaque
from auditml.capture import TrainingRun
from auditml.errors import CanonicalizationError, StoreUnavailableError
from tests.test_cli import run

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

    with pytest.warns(UserWarning, match="metric 'note' was not recorded: str is not a number"):
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
    assert d["dropped_metrics"] == [
        {"name": "note", "reason": "str is not a number", **opaque("not a metric")}
    ]
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


def test_starting_a_permitted_run_takes_no_write_lock(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that may start learns its version from a snapshot: only its finish writes."""
    writes: list[int] = []
    real = type(log.store).append_after

    def counted(store: Any, log_id: int, prepare: Any) -> Any:
        writes.append(log_id)
        return real(store, log_id, prepare)

    monkeypatch.setattr(type(log.store), "append_after", counted)
    with log.training_run(model="credit", actor=DS) as run:
        assert run.version == "1"
        assert writes == []
    assert len(writes) == 1 and len(trains(log)) == 1


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


# -- values the log cannot hold never change what the function does -------------


def bodies(log: AuditLog) -> bytes:
    """Return the stored bytes of every event, to search for what must not be there."""
    return b"\n".join(r.body for r in log.events())


def test_an_unsafe_integer_in_the_returned_dict_is_dropped_and_the_result_returned(
    log: AuditLog,
) -> None:
    """{'tokens': 2**53 + 1} comes back as it was; the run is recorded, naming the dropped one."""
    sentinel = {"tokens": 2**53 + 1, "auc": 0.9}

    @track(model="credit", log=log, actor=DS)
    def fit() -> dict[str, Any]:
        return sentinel

    with pytest.warns(UserWarning) as caught:
        result = fit()
    assert result is sentinel and result == {"tokens": 2**53 + 1, "auc": 0.9}
    assert [str(w.message) for w in caught] == [
        "metric 'tokens' was not recorded: an integer beyond +/-(2**53 - 1), which JSON cannot "
        "hold exactly; the training event names it in dropped_metrics"
    ]
    (d,) = trains(log)
    assert d["status"] == "succeeded"
    assert d["metrics"] == {"auc": 0.9}
    assert d["dropped_metrics"] == [
        {
            "name": "tokens",
            "reason": "an integer beyond +/-(2**53 - 1), which JSON cannot hold exactly",
            "type": "int",
            "sha256": opaque(2**53 + 1)["sha256"],
        }
    ]


@pytest.mark.parametrize(
    ("key", "value", "name", "reason"),
    [
        ("loss", float("nan"), "loss", "NaN (not a number)"),
        ("loss", float("-inf"), "loss", "infinite"),
        ("grade", "high", "grade", "str is not a number"),
        ("ok", True, "ok", "bool is not a number"),
        ("n", -(2**60), "n", "an integer beyond +/-(2**53 - 1), which JSON cannot hold exactly"),
        ("blob", Opaque(), "blob", "Opaque is not a number"),
        (3, 0.5, "3", "its name is int, not text"),
        ("", 0.5, "<empty>", "its name must be 1 to 512 characters of valid text"),
        ("bad\ud800", 0.5, "bad\\ud800", "its name must be 1 to 512 characters of valid text"),
    ],
)
def test_every_value_that_is_not_a_metric_is_dropped_with_a_warning(
    log: AuditLog, key: object, value: object, name: str, reason: str
) -> None:
    """NaN, infinity, text, bools, objects and bad names are named with why, never lost silently."""
    sentinel = {key: value, "auc": 0.8}

    @track(model="credit", log=log, actor=DS)
    def fit() -> dict[object, object]:
        return sentinel

    with pytest.warns(UserWarning, match="was not recorded") as caught:
        assert fit() is sentinel
    assert str(caught[0].message) == (
        f"metric {name!r} was not recorded: {reason}; the training event names it in "
        "dropped_metrics"
    )
    (d,) = trains(log)
    assert d["metrics"] == {"auc": 0.8}
    assert d["dropped_metrics"] == [{"name": name, "reason": reason, **opaque(value)}]


def test_numbers_of_other_real_types_are_recorded_as_metrics(log: AuditLog) -> None:
    """A Fraction (like a numpy float32) is a real number and is recorded as one."""
    from fractions import Fraction

    @track(model="credit", log=log, actor=DS)
    def fit() -> dict[str, object]:
        return {"auc": Fraction(3, 4), "epochs": 12}

    fit()
    (d,) = trains(log)
    assert d["metrics"] == {"auc": 0.75, "epochs": 12}
    assert "dropped_metrics" not in d


class Tensor:
    """A stand-in for a torch tensor: a module auditml knows, and item()."""

    __module__ = "torch"

    def __init__(self, *values: float) -> None:
        self.values = values

    def item(self) -> float:
        """Return the one value, as torch does, or refuse."""
        if len(self.values) != 1:
            raise RuntimeError("only one element tensors can be converted to Python scalars")
        return self.values[0]


def test_one_element_tensors_are_metrics_and_others_are_dropped(log: AuditLog) -> None:
    """A 0-d tensor is recorded through item(); a tensor of many values is a named drop."""

    @track(model="credit", log=log, actor=DS)
    def fit() -> dict[str, Tensor]:
        return {"loss": Tensor(0.25), "scores": Tensor(0.1, 0.2)}

    with pytest.warns(UserWarning, match="metric 'scores' was not recorded: Tensor is not a"):
        fit()
    (d,) = trains(log)
    assert d["metrics"] == {"loss": 0.25}
    assert [(m["name"], m["type"]) for m in d["dropped_metrics"]] == [("scores", "torch.Tensor")]


def test_log_metric_never_raises_into_training_and_the_last_value_wins(log: AuditLog) -> None:
    """run.log_metric(NaN) warns and records the drop; a later good value replaces it, and back."""

    @track(model="credit", log=log, actor=DS)
    def fit() -> dict[str, float]:
        run = current_run()
        assert run is not None
        run.log_metric("loss", float("nan"))
        run.log_metric("loss", 0.3)
        run.log_metric("auc", 0.9)
        run.log_metric("auc", float("nan"))
        return {"auc": 0.7, "acc": 0.6}

    with pytest.warns(UserWarning) as caught:
        assert fit() == {"auc": 0.7, "acc": 0.6}
    assert [str(w.message).split(":")[0] for w in caught] == [
        "metric 'loss' was not recorded",
        "metric 'auc' was not recorded",
    ]
    (d,) = trains(log)
    assert d["metrics"] == {"loss": 0.3, "acc": 0.6}
    assert d["dropped_metrics"] == [
        {"name": "auc", "reason": "NaN (not a number)", **opaque(float("nan"))}
    ]


def test_log_param_and_set_tag_never_raise_into_training(log: AuditLog) -> None:
    """Params JSON cannot hold become type plus hash; an unreadable tag is left out, and said."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    deep: list[Any] = []
    for _ in range(40):
        deep = [deep]

    with log.training_run(model="credit", actor=DS) as run:
        run.log_param("tokens", 2**53 + 1)
        run.log_param("lr", float("nan"))
        run.log_param("by_id", {1: "a"})
        run.log_param("deep", deep)
        run.log_param("text", "lone \ud800")
        run.log_param(7, "seven")  # type: ignore[arg-type]
        with pytest.warns(UserWarning, match="tag 'owner' cannot be read as text: no text"):
            run.set_tag("owner", Unprintable())  # type: ignore[arg-type]
        run.set_tag("stage", "pilot \ud800")
    (d,) = trains(log)
    assert d["params"]["tokens"] == {"type": "int", "value": "9007199254740993"}
    assert d["params"]["lr"] == {"type": "float", "value": "nan"}
    assert d["params"]["by_id"] == opaque({1: "a"})
    leaf, levels = d["params"]["deep"], 0
    while isinstance(leaf, list):
        leaf, levels = leaf[0], levels + 1
    assert levels == 32 and leaf["type"] == "list" and len(leaf["sha256"]) == 64
    assert d["params"]["text"] == opaque("lone \ud800")
    assert d["params"]["7"] == "seven"
    assert d["tags"] == {"stage": "pilot \\ud800"}


def test_an_exception_message_that_is_not_valid_text_is_still_recorded(log: AuditLog) -> None:
    """The failed run is recorded with the message escaped, and the same exception propagates."""
    boom = ValueError("bad byte \udcff")

    @track(model="credit", log=log, actor=DS)
    def fit() -> None:
        raise boom

    with pytest.raises(ValueError) as caught:
        fit()
    assert caught.value is boom
    (d,) = trains(log)
    assert d["error"] == {"type": "ValueError", "message": "bad byte \\udcff"}


def test_async_function_with_an_unsafe_value_returns_unchanged(log: AuditLog) -> None:
    """An async def returns its own dict, and its run is recorded with the drop named."""
    sentinel = {"tokens": 2**53 + 1}

    @track(model="credit", log=log, actor=DS)
    async def fit() -> dict[str, int]:
        await asyncio.sleep(0)
        return sentinel

    with pytest.warns(UserWarning, match="metric 'tokens' was not recorded"):
        assert asyncio.run(fit()) is sentinel
    assert [m["name"] for m in trains(log)[0]["dropped_metrics"]] == ["tokens"]


def test_a_context_manager_block_with_a_nan_metric_is_recorded(log: AuditLog) -> None:
    """Inside log.training_run, a NaN metric is a warning and a named drop, not an exception."""
    with (
        pytest.warns(UserWarning, match="metric 'loss' was not recorded: NaN"),
        log.training_run(model="credit", actor=DS) as run,
    ):
        run.log_metrics({"loss": float("nan"), "auc": 0.9})
    (d,) = trains(log)
    assert d["metrics"] == {"auc": 0.9}
    assert [m["name"] for m in d["dropped_metrics"]] == ["loss"]


def _fail_recording(error: Exception) -> Any:
    """Return a stand-in for AuditLog._finish_training that fails with ``error``."""

    def finish(*args: Any, **kwargs: Any) -> Any:
        raise error

    return finish


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (StoreUnavailableError("the database is unreachable"), "the database is unreachable"),
        (CanonicalizationError("tokens is beyond 2**53 - 1"), "tokens is beyond 2**53 - 1"),
        (RuntimeError("driver crashed"), "RuntimeError: driver crashed"),
    ],
)
def test_a_failure_to_record_is_a_warning_and_the_result_comes_back(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch, error: Exception, why: str
) -> None:
    """When recording the finished run fails, the function's own result is returned as is."""
    sentinel = object()
    monkeypatch.setattr(log, "_finish_training", _fail_recording(error))

    @track(model="credit", log=log, actor=DS)
    def fit() -> object:
        return sentinel

    with pytest.warns(UserWarning) as caught:
        assert fit() is sentinel
    assert [str(w.message) for w in caught] == [
        f"auditml could not record the training run of 'credit': {why}; "
        "its result is returned unchanged"
    ]
    assert fit.last_run.receipt is None  # type: ignore[attr-defined]
    assert trains(log) == []


def test_a_failure_to_record_a_failed_run_reraises_the_functions_own_exception(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training exception, not auditml's, reaches the caller; auditml's is a warning."""
    boom = KeyError("label")
    monkeypatch.setattr(log, "_finish_training", _fail_recording(StoreUnavailableError("gone")))

    @track(model="credit", log=log, actor=DS)
    async def fit() -> None:
        raise boom

    with pytest.warns(UserWarning) as caught, pytest.raises(KeyError) as raised:
        asyncio.run(fit())
    assert raised.value is boom
    assert [str(w.message) for w in caught] == [
        "auditml could not record the failed training run of 'credit': gone; "
        "its exception is raised unchanged"
    ]


def test_a_failure_to_record_a_with_block_is_a_warning(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """log.training_run's block ends normally even when its event cannot be written."""
    monkeypatch.setattr(log, "_finish_training", _fail_recording(StoreUnavailableError("gone")))
    with (
        pytest.warns(UserWarning, match="could not record the training run of 'credit': gone"),
        log.training_run(model="credit", actor=DS) as run,
    ):
        run.log_metric("auc", 0.9)
    assert run.receipt is None and trains(log) == []


def test_a_database_that_vanishes_during_training_does_not_break_the_call(
    tmp_path: Path,
) -> None:
    """A real store failure (the SQLite file gone) after the function ran is only a warning."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    created, _ = AuditLog.init(url, origin="test.example/capture", actor="admin")
    sentinel = object()

    @track(model="credit", log=created, actor=DS)
    def fit() -> object:
        created.close()
        (tmp_path / "audit.db").rename(tmp_path / "moved.db")
        (tmp_path / "audit.db").mkdir()
        return sentinel

    with pytest.warns(UserWarning, match="could not record the training run of 'credit'"):
        assert fit() is sentinel


# -- datasets and artifacts: lists, and wrong types refused when decorating -----


def test_lists_of_paths_are_named_by_file_name(log: AuditLog, tmp_path: Path) -> None:
    """datasets=[...] and artifacts=(...) record each entry under its file name."""
    (tmp_path / "data").mkdir()
    train_csv = tmp_path / "data" / "train.csv"
    train_csv.write_text("x\n1\n", encoding="utf-8")
    out = tmp_path / "model.bin"

    @track(
        model="credit",
        log=log,
        actor=DS,
        datasets=[train_csv, "s3://bucket/folder/test.parquet", str(tmp_path / "data")],
        artifacts=(out,),
    )
    def fit() -> None:
        out.write_bytes(b"weights")

    fit()
    (d,) = trains(log)
    assert sorted(d["datasets"]) == ["data", "test.parquet", "train.csv"]
    assert d["datasets"]["train.csv"]["sha256"] == hashlib.sha256(b"x\n1\n").hexdigest()
    assert d["datasets"]["test.parquet"] == {
        "uri": "s3://bucket/folder/test.parquet",
        "kind": "uri",
    }
    assert d["datasets"]["data"]["kind"] == "folder"
    assert d["artifacts"] == {
        "model.bin": {
            "uri": "model.bin",  # inside the working folder: recorded relative to it
            "sha256": hashlib.sha256(b"weights").hexdigest(),
            "size": 7,
        }
    }


def test_two_paths_with_one_file_name_are_refused_when_decorating() -> None:
    """Neither would be findable under its name, so the list is refused, naming both."""
    with pytest.raises(InvalidInputError) as caught:
        track(model="credit", artifacts=["a/model.bin", "b/model.bin"])
    assert str(caught.value) == (
        "two artifacts are both named 'model.bin' ('a/model.bin' and 'b/model.bin'): pass a dict "
        "to give each its own name, e.g. artifacts={'train': ..., 'test': ...}"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"datasets": 5}, "datasets must be a dict of name to path or URI, or a list of paths, "),
        ({"artifacts": {"a", 1}}, "artifacts must be a dict of name to path or URI, or a list of"),
        ({"datasets": [1]}, "every entry of datasets must be a path or URI (str or os.PathLike)"),
        ({"datasets": ["a.csv", None]}, "every entry of datasets must be a path or URI"),
        ({"artifacts": {1: "model.bin"}}, "the names of artifacts must be text of 1 to 512"),
        ({"artifacts": {"": "model.bin"}}, "the names of artifacts must be text of 1 to 512"),
        ({"datasets": {"train": 3.5}}, "dataset 'train' must be a path or URI"),
        ({"datasets": {"train": " "}}, "dataset 'train' is an empty path"),
        ({"datasets": ["s3://bucket/"]}, None),
        ({"datasets": ["/"]}, "cannot name dataset '/' by its file name"),
        ({"tags": ["team"]}, "tags must be a dict of name to text, not list"),
    ],
)
def test_wrong_types_are_refused_with_a_clear_error_when_decorating(
    kwargs: dict[str, Any], message: str | None
) -> None:
    """A wrong datasets/artifacts/tags value is an InvalidInputError before any call."""
    if message is None:  # a URI without a path is named by its host
        track(model="credit", **kwargs)
        return
    with pytest.raises(InvalidInputError) as caught:
        track(model="credit", **kwargs)
    assert str(caught.value).startswith(message)


def test_wrong_types_are_refused_by_training_run_before_the_block(log: AuditLog) -> None:
    """log.training_run(datasets=5) fails at the call, and nothing is written."""
    before = log.head().size
    with pytest.raises(InvalidInputError, match="datasets must be a dict"):
        log.training_run(model="credit", actor=DS, datasets=5)  # type: ignore[arg-type]
    assert log.head().size == before


def test_add_artifact_refuses_what_is_not_a_path(log: AuditLog) -> None:
    """run.add_artifact(name, 42) is refused at once, not when the run ends."""
    with log.training_run(model="credit", actor=DS) as run:
        with pytest.raises(InvalidInputError, match="artifact 'model' must be a path or URI"):
            run.add_artifact("model", 42)  # type: ignore[arg-type]
        run.log_metric("auc", 0.9)
    assert trains(log)[0]["metrics"] == {"auc": 0.9}


# -- credentials never reach the log ---------------------------------------------

SECRET_URI = "https://bob:P-W~@data.example/x.csv?token=T-0K~&v=2"
CLEAN_URI = "https://data.example/x.csv?v=2"
WARNED = (
    "auditml removed credentials (userinfo, query:token) from the dataset URI "
    f"{CLEAN_URI!r} before recording it: the log is append-only, so a secret written there "
    "stays for ever; pass credentials through the environment instead"
)


def test_dataset_and_artifact_uris_lose_their_credentials(log: AuditLog) -> None:
    """The decorator records the URI without user info or secret parameters, and says so."""

    @track(
        model="credit",
        log=log,
        actor=DS,
        datasets={"train": SECRET_URI},
        artifacts={"model": "s3://bucket/m.bin?X-Amz-Signature=S-1G~&X-Amz-Expires=60"},
    )
    def fit() -> None:
        return None

    with pytest.warns(UserWarning) as caught:
        fit()
    assert str(caught[0].message) == WARNED
    assert "removed credentials (query:X-Amz-Signature) from the artifact URI" in str(
        caught[1].message
    )
    (d,) = trains(log)
    assert d["datasets"]["train"] == {
        "uri": CLEAN_URI,
        "kind": "uri",
        "redacted": ["userinfo", "query:token"],
    }
    assert d["artifacts"]["model"] == {
        "uri": "s3://bucket/m.bin?X-Amz-Expires=60",
        "redacted": ["query:X-Amz-Signature"],
    }
    stored = bodies(log)
    assert b"P-W~" not in stored and b"T-0K~" not in stored and b"S-1G~" not in stored


def test_evaluate_and_record_training_strip_credentials_too(log: AuditLog) -> None:
    """log.evaluate (path string or DatasetRef) and record_training never store a secret."""
    from auditml.core.events import DatasetRef

    with pytest.warns(UserWarning, match="removed credentials") as caught:
        log.record_training(
            "credit",
            actor=DS,
            data={"datasets": {"db": {"uri": "postgres://u:P-W~@db.example/ml", "kind": "uri"}}},
        )
        log.evaluate("credit", "1", metrics={"auc": 0.9}, dataset=SECRET_URI, actor=DS)
        log.evaluate(
            "credit",
            "1",
            dataset=DatasetRef(uri="gs://b/o?X-Goog-Signature=S-1G~"),
            artifacts={"plot": "https://h/p.png?sig=S-1G~"},
            actor=DS,
        )
    assert len(caught) == 4  # the train's and three evaluate URIs, each once
    assert trains(log)[0]["datasets"]["db"] == {
        "uri": "postgres://db.example/ml",
        "kind": "uri",
        "redacted": ["userinfo"],
    }
    first, second = [r.event.data for r in log.events(action="model.evaluate")]
    assert first["dataset"] == {
        "uri": CLEAN_URI,
        "kind": "uri",
        "redacted": ["userinfo", "query:token"],
    }
    assert second["dataset"]["uri"] == "gs://b/o"
    assert second["artifacts"]["plot"] == {
        "uri": "https://h/p.png",
        "redacted": ["query:sig"],
    }
    stored = bodies(log)
    assert b"P-W~" not in stored and b"T-0K~" not in stored and b"S-1G~" not in stored


def test_local_paths_are_recorded_as_given(log: AuditLog, tmp_path: Path) -> None:
    """A file whose name looks like a query is a path: nothing is removed, nothing warned."""
    odd = tmp_path / "x?token=1.csv"
    odd.write_text("1\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with log.training_run(model="credit", actor=DS, datasets=[odd]):
            pass
    assert trains(log)[0]["datasets"]["x?token=1.csv"]["uri"] == "x?token=1.csv"


def test_local_paths_are_relative_to_the_working_folder_or_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file inside the working folder is recorded relative to it; one outside, absolutely."""
    from auditml._internal.fingerprint import dataset_ref

    (tmp_path / "work" / "data").mkdir(parents=True)
    inside = tmp_path / "work" / "data" / "train.csv"
    outside = tmp_path / "elsewhere.csv"
    for path in (inside, outside):
        path.write_text("x\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "work")
    assert dataset_ref(inside).uri == "data/train.csv"
    assert dataset_ref("data/../data/train.csv").uri == "data/train.csv"
    assert dataset_ref(outside).uri == str(outside.resolve())


def test_cli_train_and_evaluate_strip_credentials_and_say_so(
    db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--dataset, --artifact and --from-json of train, and evaluate's --dataset, store no secret."""
    assert run(["init", "--origin", "t.example/cli", "--db", db_url], capsys)[0] == 0
    spec = tmp_path / "run.json"
    spec.write_text(
        json.dumps(
            {
                "datasets": {"db": {"uri": "postgres://u:P-W~@db.example/ml"}},
                "artifacts": ["s3://bucket/model.bin?X-Amz-Credential=S-1G~"],
            }
        ),
        encoding="utf-8",
    )
    code, _, err = run(
        [
            *["train", "credit", "--from-json", str(spec), "--dataset", f"train={SECRET_URI}"],
            *[
                "--artifact",
                "gs://b/card.pdf?X-Goog-Signature=S-1G~",
                "--actor",
                DS,
                "--db",
                db_url,
            ],
        ],
        capsys,
    )
    assert code == 0, err
    assert f"warning: {WARNED}\n" in err
    assert "Traceback" not in err and "UserWarning" not in err
    code, _, err = run(
        ["evaluate", "credit", "1", "--dataset", SECRET_URI, "--actor", DS, "--db", db_url],
        capsys,
    )
    assert code == 0 and err == f"warning: {WARNED}\n"
    with AuditLog.open(db_url) as opened:
        (d,) = trains(opened)
        assert d["datasets"]["train"]["redacted"] == ["userinfo", "query:token"]
        assert d["datasets"]["db"]["uri"] == "postgres://db.example/ml"
        assert sorted(d["artifacts"]) == ["card.pdf", "model.bin"]
        stored = bodies(opened)
    assert b"P-W~" not in stored and b"T-0K~" not in stored and b"S-1G~" not in stored


def test_cli_bare_sources_with_one_file_name_are_refused(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two unnamed --dataset values with one file name: exit 2, one sentence, nothing written."""
    assert run(["init", "--origin", "t.example/cli", "--db", db_url], capsys)[0] == 0
    code, _, err = run(
        [
            "train",
            "credit",
            "--dataset",
            "s3://a/x.csv",
            "--dataset",
            "s3://b/x.csv",
            "--db",
            db_url,
        ],
        capsys,
    )
    assert code == 2
    assert err == (
        "error: two --dataset options are both named 'x.csv': give each a name, "
        "e.g. --dataset train=... --dataset test=...\n"
    )
    with AuditLog.open(db_url) as opened:
        assert trains(opened) == []


@pytest.mark.parametrize(
    ("args", "spec", "message"),
    [
        (["--dataset", "=s3://b/x.csv"], None, "error: --dataset ='s3://b/x.csv' has no name"),
        (["--artifact", "s3://bucket/"], None, None),
        ([], {"datasets": 5}, "datasets must be a dict of name to path or URI"),
        ([], {"artifacts": [1]}, "every entry of artifacts must be a path or URI"),
        ([], {"datasets": {"train": 3}}, "datasets['train'] must be a path, a URI or an object"),
    ],
)
def test_cli_train_refuses_sources_of_the_wrong_shape(
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    spec: dict[str, Any] | None,
    message: str | None,
) -> None:
    """Bad --dataset/--artifact values or --from-json shapes exit 2 and write nothing."""
    assert run(["init", "--origin", "t.example/cli", "--db", db_url], capsys)[0] == 0
    if spec is not None:
        (tmp_path / "run.json").write_text(json.dumps(spec), encoding="utf-8")
        args = [*args, "--from-json", str(tmp_path / "run.json")]
    code, _, err = run(["train", "credit", *args, "--actor", DS, "--db", db_url], capsys)
    with AuditLog.open(db_url) as opened:
        recorded = trains(opened)
    if message is None:  # a URI with no path is named by its host
        assert code == 0 and list(recorded[0]["artifacts"]) == ["bucket"]
        return
    assert code == 2 and message in err and "Traceback" not in err
    assert recorded == []


def test_a_missing_log_is_a_warning_and_the_function_still_runs(tmp_path: Path) -> None:
    """With no log to record into, the decorated function runs and returns as it would."""
    result = {"auc": 0.9}

    @track(model="m", url=f"sqlite:///{tmp_path / 'nowhere' / 'audit.db'}")
    def fit() -> dict[str, float]:
        return result

    assert fit.last_run is None  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="runs unrecorded"):
        assert fit() is result
    assert fit.last_run is None  # type: ignore[attr-defined]


def test_last_run_is_none_after_a_call_that_could_not_be_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call auditml could not record leaves last_run None, not the previous call's run."""
    db = tmp_path / "audit.db"
    AuditLog.init(f"sqlite:///{db}", origin="bank.example/capture", actor=DS)[0].close()

    @track(model="credit", actor=DS, url=f"sqlite:///{db}")
    def fit() -> int:
        return 1

    @track(model="credit", actor=DS, url=f"sqlite:///{db}")
    async def afit() -> int:
        return 2

    assert fit.last_run is None and afit.last_run is None  # type: ignore[attr-defined]
    assert fit() == 1 and asyncio.run(afit()) == 2
    assert fit.last_run.version == "1" and afit.last_run.version == "2"  # type: ignore[attr-defined]

    def unreachable(self: TrainingRun) -> None:
        raise StoreUnavailableError("the database is unreachable")

    monkeypatch.setattr(TrainingRun, "start", unreachable)
    with pytest.warns(UserWarning, match="runs unrecorded"):
        assert fit() == 1 and asyncio.run(afit()) == 2
    assert fit.last_run is None and afit.last_run is None  # type: ignore[attr-defined]


# -- nothing recorded is lost to speed ------------------------------------------------------


def _git_here(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_a_training_event_from_the_fast_path_equals_one_captured_the_slow_way(
    log: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cached capture records what a fresh read records (cache cleared, git run), per field.

    Code version, environment, parameters, artifacts and metrics are compared one by one.
    """
    monkeypatch.setattr(fingerprint, "RACY_S", 0.05)
    fingerprint.clear_capture_cache()
    repo = tmp_path / "project"
    (repo / "pipeline").mkdir(parents=True)
    module = repo / "pipeline" / "train_mod.py"
    module.write_text(
        "def fit(out, lr=0.1, depth=6):\n"
        "    out.write_bytes(b'w' * 4096)\n"
        "    return {'auc': 0.9, 'ks': 0.4}\n",
        encoding="utf-8",
    )
    _git_here(repo, "init", "-q", "-b", "main")
    _git_here(repo, "remote", "add", "origin", "https://git.example/risk/models.git")
    _git_here(repo, "add", ".")
    _git_here(repo, "commit", "-q", "-m", "one")
    (repo / "notes.txt").write_text("untracked", encoding="utf-8")  # dirty: untracked file
    spec = importlib.util.spec_from_file_location("auditml_test_train_mod", module)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "model.bin"

    def train_once() -> dict[str, Any]:
        fit = track(model="credit", log=log, actor=DS, artifacts={"model": out})(mod.fit)
        fit(out, lr=0.2)
        (event,) = [r.event for r in log.events(action="model.train", version=fit.last_run.version)]  # type: ignore[attr-defined]
        return event.data

    time.sleep(0.06)  # past RACY_S, so the first read is kept
    train_once()  # fills the cache
    spawned: list[list[str]] = []
    real_git = fingerprint._git
    monkeypatch.setattr(
        fingerprint, "_git", lambda args, cwd: spawned.append(args) or real_git(args, cwd)
    )
    fast = train_once()
    assert spawned == [], "the fast path started git"
    # A change that keeps the file's size and times is still seen by the next run.
    notes = repo / "notes.txt"
    before = notes.stat()
    notes.write_text("untrackeD", encoding="utf-8")
    os.utime(notes, ns=(before.st_atime_ns, before.st_mtime_ns))
    changed = train_once()
    assert changed["code"] == fingerprint.read_code_version(repo / "pipeline").model_dump()  # type: ignore[union-attr]
    assert changed["code"]["diff_sha256"] != fast["code"]["diff_sha256"]
    notes.write_text("untracked", encoding="utf-8")
    time.sleep(0.06)  # past RACY_S again
    train_once()
    spawned.clear()
    fast = train_once()
    assert spawned == [], "the fast path started git"
    fingerprint.clear_capture_cache()
    monkeypatch.setattr(fingerprint, "code_version", fingerprint.read_code_version)
    monkeypatch.setattr(fingerprint, "environment", fingerprint.read_environment)
    slow = train_once()
    assert spawned, "the slow path did not ask git"
    assert fast["code"]["dirty"] is True and fast["code"]["diff_sha256"]
    assert fast["code"]["repository"] == "https://git.example/risk/models.git"
    assert fast["environment"]["packages"]["pydantic"]
    assert sorted(fast) == sorted(slow)
    for field in fast:
        if field in ("started_at", "ended_at", "duration_s"):
            continue  # the moment of each run
        assert fast[field] == slow[field], field
