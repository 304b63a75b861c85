"""Capturing training: ``@track_training`` and ``AuditLog.training_run``.

One line on a training function records a ``model.train`` event: the model
and version (the next free one unless given), start, end and duration, the
actor, the code version and environment, the bound arguments, the datasets
(hashed before the run), the artifacts (hashed after it), the metrics (a
returned dict, or ``run.log_metric``) and tags. A function that raises is
recorded as ``failed`` with the exception's type and message, and the
exception is re-raised unchanged. What the function returns is returned as is,
and nothing auditml fails to record changes that: it is a warning instead.
Credentials in a dataset or artifact URI are removed before it is recorded.

The code version and environment are captured in the background when the
function is decorated (the code a process runs is the code it imported), so a
call pays almost nothing for them; what cannot have changed since the last
capture in the process is taken from it (see :mod:`auditml._internal.fingerprint`).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from auditml._internal.fingerprint import start_capture
from auditml.core.events import Actor
from auditml.errors import AuditmlError, StoreError
from auditml.training import (
    Sources,
    TrainingRun,
    checked_tags,
    current_run,
    named_sources,
    run_context,
)

if TYPE_CHECKING:
    from auditml.log import AuditLog
    from auditml.runtime import Recorder

__all__ = ["Sources", "TrainingRun", "current_run", "track_inference", "track_training"]

P = ParamSpec("P")
R = TypeVar("R")

_LOGS: dict[tuple[int, str], AuditLog] = {}


def _log_for(log: AuditLog | None, url: str | None) -> AuditLog:
    """Return the given log, or one opened once per process for ``url`` (default: resolved)."""
    if log is not None:
        return log
    from auditml.ledger import resolve_url
    from auditml.log import AuditLog

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
    datasets: Sources | None = None,
    artifacts: Sources | None = None,
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
    datasets: Sources | None = None,
    artifacts: Sources | None = None,
    tags: Mapping[str, str] | None = None,
    params: bool = True,
    exclude: tuple[str, ...] = (),
    parent_version: str | None = None,
    base_model: str | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Record every call of a training function as a ``model.train`` event.

    ``model`` defaults to the function's name. ``params=False`` leaves the
    arguments out; ``exclude`` names arguments never to record (secrets).
    ``datasets`` and ``artifacts`` are a dict of name to path or URI, or a list
    of paths named by file name (two with the same file name are refused);
    a wrong type is refused here, when decorating. After a call,
    ``wrapper.last_run`` holds the run, with its version and receipt (None before
    the first call, and after a call auditml could not record).

    The decorated function returns and raises exactly what it would without
    the decorator: what auditml cannot record (a failing store, a value the
    log cannot hold) is a warning, never an exception.
    """
    dataset_specs = named_sources(datasets, "datasets")
    artifact_specs = named_sources(artifacts, "artifacts")
    checked_tags(tags)

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
                datasets=dataset_specs,
                artifacts=artifact_specs,
                tags=tags,
                parent_version=parent_version,
                base_model=base_model,
                provenance=provenance,
            )

        def started_run(args: tuple[Any, ...], kwargs: dict[str, Any]) -> TrainingRun | None:
            """Start a run, or warn and return None when the store cannot record one.

            A store that is missing or unreachable is a failure to record, so the
            function runs unrecorded; a refusal (policy, bad input) still raises.
            """
            try:
                run = new_run(args, kwargs)
                run.start()
            except StoreError as exc:
                warnings.warn(
                    f"auditml could not record the training run of {name!r}: "
                    f"{exc.diagnostics()}; the function runs unrecorded, and what it returns "
                    "or raises is unchanged",
                    stacklevel=3,
                )
                return None
            return run

        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = started_run(args, kwargs)
                async_wrapper.last_run = run  # type: ignore[attr-defined]
                if run is None:
                    return await afn(*args, **kwargs)
                with run_context(run, started=True):
                    result = await afn(*args, **kwargs)
                    run._take_returned(result)
                return result

            async_wrapper.last_run = None  # type: ignore[attr-defined]
            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = started_run(args, kwargs)
            wrapper.last_run = run  # type: ignore[attr-defined]
            if run is None:
                return fn(*args, **kwargs)
            with run_context(run, started=True):
                result = fn(*args, **kwargs)
                run._take_returned(result)
            return result

        wrapper.last_run = None  # type: ignore[attr-defined]
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def _default_output(result: object) -> dict[str, Any]:
    """Return what a prediction's result says, as a record's output: an object of JSON values."""
    if isinstance(result, Mapping):
        return dict(result)
    if result is None or isinstance(result, str | bool | int | float):
        return {"result": result}
    return {}


def track_inference(
    *,
    model: str,
    env: str,
    version: str,
    log: AuditLog | None = None,
    url: str | None = None,
    output: Callable[[Any], Mapping[str, Any]] | None = None,
    request_id: Callable[..., str] | None = None,
    subject: Callable[..., object] | None = None,
    features: Callable[..., object] | None = None,
    recorder: Recorder | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record one runtime record for every call of a predict function.

    The records go to ``recorder`` when given (close it when serving stops),
    else to a recorder of ``model`` in ``env`` opened on the log at the first
    call, which commits in the background and when the process exits.

    The call is timed; its result becomes the record's ``output`` through
    ``output`` (default: a dict as it is, a scalar as ``{"result": value}``).
    ``request_id``, ``subject`` and ``features`` are called with the function's
    arguments (default request id: a random UUID); the subject and features are
    kept off the log, committed in the record. An exception is recorded as its
    type name in ``error`` and re-raised unchanged. What auditml cannot record is
    a warning: the function returns and raises exactly what it would without it.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        recorders: list[Recorder] = [] if recorder is None else [recorder]

        def current() -> Recorder:
            if not recorders:
                opened = _log_for(log, url).runtime(model, env=env)
                atexit.register(opened.close)
                recorders.append(opened)
            return recorders[0]

        def note(
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            started: float,
            result: object,
            error: BaseException | None,
        ) -> None:
            latency = (time.perf_counter() - started) * 1000.0
            try:
                rid = request_id(*args, **kwargs) if request_id else uuid.uuid4().hex
                out = {} if error is not None else (output or _default_output)(result)
                current().record(
                    rid,
                    version=version,
                    output=out,
                    latency_ms=round(latency, 3),
                    error=None if error is None else type(error).__name__,
                    subject=subject(*args, **kwargs) if subject else None,
                    features=features(*args, **kwargs) if features else None,
                )
            except Exception as exc:
                why = exc.diagnostics() if isinstance(exc, AuditmlError) else repr(exc)
                warnings.warn(
                    f"auditml could not record a prediction of {model!r}: {why}; the call's "
                    "result is unchanged",
                    stacklevel=3,
                )

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                note(args, kwargs, started, None, exc)
                raise
            note(args, kwargs, started, result, None)
            return result

        return wrapper

    return decorate
