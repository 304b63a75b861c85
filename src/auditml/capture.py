"""Capturing training: ``@track_training`` and ``AuditLog.training_run``.

One line on a training function records a ``model.train`` event: the model
and version (the next free one unless given), start, end and duration, the
actor, the code version and environment, the bound arguments, the datasets
(hashed before the run), the artifacts (hashed after it), the metrics (a
returned dict, or ``run.log_metric``) and tags. A function that raises is
recorded as ``failed`` with the exception's type and message, and the
exception is re-raised unchanged. What the function returns is returned as is.

The code version and environment are captured in the background when the
function is decorated (the code a process runs is the code it imported), so a
call pays almost nothing for them.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from auditml._fingerprint import artifact_ref, dataset_ref, encode_param, start_capture
from auditml.errors import AuditmlError, InvalidInputError
from auditml.events import Actor, ArtifactRef, CodeVersion, DatasetRef, Environment
from auditml.identity import resolve_actor

if TYPE_CHECKING:
    from auditml.ledger import AuditLog, Receipt

__all__ = ["TrainingRun", "current_run", "track_training"]

P = ParamSpec("P")
R = TypeVar("R")

_CURRENT: ContextVar[TrainingRun | None] = ContextVar("auditml_training_run", default=None)
_LOGS: dict[tuple[int, str], AuditLog] = {}
CAPTURE_WAIT_S = 30.0


def current_run() -> TrainingRun | None:
    """Return the training run in progress in this context, if any."""
    return _CURRENT.get()


def _stamp(at: float) -> str:
    """Return a Unix time as the log's RFC 3339 UTC form with microseconds."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TrainingRun:
    """One training run being recorded; inside it, log metrics, datasets, artifacts and tags."""

    def __init__(
        self,
        log: AuditLog,
        model: str,
        *,
        version: str | None = None,
        actor: Actor | str | None = None,
        params: Mapping[str, Any] | None = None,
        datasets: Mapping[str, str | os.PathLike[str]] | None = None,
        artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_version: str | None = None,
        base_model: str | None = None,
        provenance: Future[tuple[CodeVersion | None, Environment]] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError("a training run needs a model name, e.g. model='credit-risk'")
        self.log = log
        self.model = model
        self.actor = resolve_actor(actor)
        self._explicit = None if version is None else str(version)
        self.version: str | None = self._explicit
        self.params: dict[str, Any] = {k: encode_param(v) for k, v in (params or {}).items()}
        self.datasets: dict[str, DatasetRef] = {}
        self._dataset_specs = dict(datasets or {})
        self._artifact_specs: dict[str, str | os.PathLike[str]] = dict(artifacts or {})
        self.artifacts: dict[str, ArtifactRef] = {}
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {str(k): str(v) for k, v in (tags or {}).items()}
        self.parent_version = parent_version
        self.base_model = base_model
        self.receipt: Receipt | None = None
        self.started = 0.0
        self._provenance = provenance

    # -- what the training code may add -------------------------------------

    def log_metric(self, name: str, value: float) -> None:
        """Record a metric of the trained model (the last value given wins)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"metric {name!r} must be a number, not {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInputError(f"metric {name!r} must be finite, not {value}")
        self.metrics[str(name)] = value

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Record several metrics at once."""
        for name, value in metrics.items():
            self.log_metric(name, value)

    def log_param(self, name: str, value: Any) -> None:
        """Record a parameter; values JSON cannot hold are written as type plus hash."""
        self.params[str(name)] = encode_param(value)

    def add_dataset(self, name: str, source: str | os.PathLike[str]) -> DatasetRef:
        """Hash a file or folder now (or record a URI as given) as a dataset of this run."""
        ref = dataset_ref(source)
        self.datasets[str(name)] = ref
        return ref

    def add_artifact(self, name: str, path: str | os.PathLike[str]) -> None:
        """Name an output to hash when the run ends."""
        self._artifact_specs[str(name)] = path

    def set_tag(self, name: str, value: str) -> None:
        """Attach a tag to the run."""
        self.tags[str(name)] = str(value)

    # -- the run's edges -----------------------------------------------------

    def start(self) -> None:
        """Check policy, take the next version when none was given, and hash the datasets."""
        for name, source in self._dataset_specs.items():
            self.datasets[name] = dataset_ref(source)
        self.version = self.log._begin_training(self.model, self._explicit, self.actor)
        self.started = time.time()

    def finish(self, error: BaseException | None = None) -> Receipt:
        """Hash the artifacts and record the ``model.train`` event, succeeded or failed."""
        ended = time.time()
        if error is None:
            for name, path in self._artifact_specs.items():
                self.artifacts[name] = _artifact(name, path)
        code: CodeVersion | None = None
        env: Environment | None = None
        if self._provenance is not None:
            try:
                code, env = self._provenance.result(timeout=CAPTURE_WAIT_S)
            except Exception as exc:  # provenance is best effort; the run itself is not
                warnings.warn(
                    f"auditml could not capture code and environment: {exc}", stacklevel=3
                )
        data: dict[str, Any] = {
            "status": "failed" if error is not None else "succeeded",
            "started_at": _stamp(self.started),
            "ended_at": _stamp(ended),
            "duration_s": round(max(ended - self.started, 0.0), 6),
            "code": code,
            "environment": env,
            "params": self.params,
            "datasets": self.datasets,
            "artifacts": self.artifacts,
            "metrics": self.metrics,
            "tags": self.tags,
            "parent_version": self.parent_version,
            "base_model": self.base_model,
        }
        if error is not None:
            data["error"] = {"type": _qualname(type(error)), "message": _message(error)}
        self.receipt = self.log._finish_training(
            self.model, self.version, auto=self._explicit is None, actor=self.actor, data=data
        )
        self.version = self.receipt.version
        return self.receipt


def _artifact(name: str, path: str | os.PathLike[str]) -> ArtifactRef:
    """Hash an output; one that is missing is recorded by name only, with a warning."""
    try:
        return artifact_ref(path)
    except InvalidInputError as exc:
        warnings.warn(f"artifact {name!r} was not hashed: {exc}", stacklevel=4)
        return ArtifactRef(uri=os.fspath(path))


def _qualname(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = "<the exception's message could not be read>"
    return text[:4000]


@contextmanager
def run_context(run: TrainingRun) -> Iterator[TrainingRun]:
    """Start ``run``, make it current, and record it however the block ends."""
    run.start()
    token = _CURRENT.set(run)
    try:
        yield run
    except BaseException as exc:
        _CURRENT.reset(token)
        _finish_failed(run, exc)
        raise
    _CURRENT.reset(token)
    run.finish()


def _finish_failed(run: TrainingRun, exc: BaseException) -> None:
    """Record a failed run without ever hiding the exception that failed it."""
    try:
        run.finish(exc)
    except AuditmlError as record_error:
        warnings.warn(
            f"auditml could not record the failed training run: {record_error.diagnostics()}",
            stacklevel=4,
        )


def _metrics_of(result: object) -> dict[str, float]:
    """Return the numeric top-level entries of a returned dict; anything else has none."""
    if not isinstance(result, Mapping):
        return {}
    return {
        str(k): v
        for k, v in result.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and v == v
        and v not in (float("inf"), float("-inf"))
    }


def _log_for(log: AuditLog | None, url: str | None) -> AuditLog:
    """Return the given log, or one opened once per process for ``url`` (default: resolved)."""
    if log is not None:
        return log
    from auditml.ledger import AuditLog, resolve_url

    key = (os.getpid(), resolve_url(url))
    found = _LOGS.get(key)
    if found is None:
        found = AuditLog.open(key[1])
        _LOGS[key] = found
    return found


@overload
def track_training(
    func: Callable[P, R],
) -> Callable[P, R]: ...


@overload
def track_training(
    func: None = None,
    *,
    model: str | None = None,
    version: str | None = None,
    log: AuditLog | None = None,
    url: str | None = None,
    actor: Actor | str | None = None,
    datasets: Mapping[str, str | os.PathLike[str]] | None = None,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    tags: Mapping[str, str] | None = None,
    params: bool = True,
    exclude: tuple[str, ...] = (),
    parent_version: str | None = None,
    base_model: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def track_training(
    func: Callable[P, R] | None = None,
    *,
    model: str | None = None,
    version: str | None = None,
    log: AuditLog | None = None,
    url: str | None = None,
    actor: Actor | str | None = None,
    datasets: Mapping[str, str | os.PathLike[str]] | None = None,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    tags: Mapping[str, str] | None = None,
    params: bool = True,
    exclude: tuple[str, ...] = (),
    parent_version: str | None = None,
    base_model: str | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every call of a training function as a ``model.train`` event.

    ``model`` defaults to the function's name. ``params=False`` leaves the
    arguments out; ``exclude`` names arguments never to record (secrets).
    After a call, ``wrapper.last_run`` holds the run, with its version and receipt.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        name = model or fn.__name__
        signature = inspect.signature(fn)
        try:
            source = inspect.getsourcefile(fn)
        except TypeError:
            source = None
        provenance = start_capture(Path(source).parent if source else None)

        def new_run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> TrainingRun:
            bound: dict[str, Any] = {}
            if params:
                try:
                    call = signature.bind(*args, **kwargs)
                    call.apply_defaults()
                    bound = {
                        k: v
                        for k, v in call.arguments.items()
                        if k not in exclude and k not in ("self", "cls")
                    }
                except TypeError:
                    bound = {}  # the call itself will raise the TypeError
            return TrainingRun(
                _log_for(log, url),
                name,
                version=version,
                actor=actor,
                params=bound,
                datasets=datasets,
                artifacts=artifacts,
                tags=tags,
                parent_version=parent_version,
                base_model=base_model,
                provenance=provenance,
            )

        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = new_run(args, kwargs)
                async_wrapper.last_run = run  # type: ignore[attr-defined]
                with run_context(run):
                    result = await afn(*args, **kwargs)
                    run.log_metrics({**_metrics_of(result), **run.metrics})
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = new_run(args, kwargs)
            wrapper.last_run = run  # type: ignore[attr-defined]
            with run_context(run):
                result = fn(*args, **kwargs)
                run.log_metrics({**_metrics_of(result), **run.metrics})
            return result

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate
