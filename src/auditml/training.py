"""A training run being recorded: its inputs, outputs, metrics and how it ended.

:class:`TrainingRun` gathers what ``@track_training`` and
``AuditLog.training_run`` record in a ``model.train`` event; it talks to the
log only through :class:`TrainingLog`, so it sits below the log that starts it.
"""

from __future__ import annotations

import numbers
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from auditml._internal.fingerprint import (
    MAX_SAFE_INT,
    artifact_ref,
    dataset_ref,
    encode_param,
    is_text,
    opaque,
)
from auditml._internal.identity import resolve_actor
from auditml.core.events import Actor, ArtifactRef, CodeVersion, DatasetRef, Environment
from auditml.core.uri import has_scheme, scrub_uri
from auditml.errors import AuditmlError, InvalidInputError

if TYPE_CHECKING:
    from auditml.ledger import Receipt
__all__ = ["Sources", "TrainingLog", "TrainingRun", "current_run", "run_context"]


P = ParamSpec("P")
R = TypeVar("R")

Source = str | os.PathLike[str]
#: Datasets or artifacts: a dict of name to path or URI, or a list of them named by file name.
Sources = Mapping[str, Source] | Sequence[Source] | Source

_CURRENT: ContextVar[TrainingRun | None] = ContextVar("auditml_training_run", default=None)
CAPTURE_WAIT_S = 30.0
#: Modules whose one-element arrays and tensors are metrics through ``.item()``.
_ARRAY_MODULES = frozenset({"numpy", "torch", "jax", "jaxlib", "tensorflow"})


def current_run() -> TrainingRun | None:
    """Return the training run in progress in this context, if any."""
    return _CURRENT.get()


def _stamp(at: float) -> str:
    """Return a Unix time as the log's RFC 3339 UTC form with microseconds."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TrainingLog(Protocol):
    """What a training run needs of the log: a checked start and a recorded finish."""

    def _begin_training(self, model: str, version: str | None, actor: Actor) -> str: ...

    def _finish_training(
        self, model: str, version: str | None, *, auto: bool, actor: Actor, data: dict[str, Any]
    ) -> Receipt: ...


class TrainingRun:
    """One training run being recorded; inside it, log metrics, datasets, artifacts and tags.

    Nothing logged here raises into the training code for a value the log
    cannot hold: a metric that is not a finite number is dropped with a
    warning and named in the event's ``dropped_metrics``, a parameter JSON
    cannot hold is recorded as type plus hash.
    """

    def __init__(
        self,
        log: TrainingLog,
        model: str,
        *,
        version: str | None = None,
        actor: Actor | str | None = None,
        params: Mapping[str, Any] | None = None,
        datasets: Sources | None = None,
        artifacts: Sources | None = None,
        tags: Mapping[str, str] | None = None,
        parent_version: str | None = None,
        base_model: str | None = None,
        provenance: Future[tuple[CodeVersion | None, Environment]] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError("a training run needs a model name, e.g. model='credit-risk'")
        self._dataset_specs = named_sources(datasets, "datasets")
        self._artifact_specs = named_sources(artifacts, "artifacts")
        self.tags: dict[str, str] = checked_tags(tags)
        self.log = log
        self.model = model
        self.actor = resolve_actor(actor)
        self._explicit = None if version is None else str(version)
        self.version: str | None = self._explicit
        self.params: dict[str, Any] = {str(k): encode_param(v) for k, v in (params or {}).items()}
        self.datasets: dict[str, DatasetRef] = {}
        self.artifacts: dict[str, ArtifactRef] = {}
        self.metrics: dict[str, float] = {}
        self.dropped_metrics: dict[str, dict[str, Any]] = {}
        self._logged: set[str] = set()
        self.parent_version = parent_version
        self.base_model = base_model
        self.receipt: Receipt | None = None
        self.started = 0.0
        self._provenance = provenance

    # -- what the training code may add -------------------------------------

    def log_metric(self, name: str, value: float) -> None:
        """Record a metric of the trained model (the last value given wins).

        A value that is not a finite number JSON holds exactly (NaN, text, an
        integer beyond 2**53 - 1) is not recorded as a metric: it is named with
        its type and hash in the event's ``dropped_metrics``, with a warning.
        """
        self._logged.add(_shown(name))
        self._take_metric(name, value)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Record several metrics at once."""
        for name, value in metrics.items():
            self.log_metric(name, value)

    def log_param(self, name: str, value: Any) -> None:
        """Record a parameter; values JSON cannot hold are written as type plus hash."""
        self.params[_shown(name)] = encode_param(value)

    def add_dataset(self, name: str, source: str | os.PathLike[str]) -> DatasetRef:
        """Hash a file or folder now (or record a URI as given) as a dataset of this run."""
        checked = named_sources({name: source}, "datasets")
        ref = dataset_ref(checked[name])
        self.datasets[name] = ref
        return ref

    def add_artifact(self, name: str, path: str | os.PathLike[str]) -> None:
        """Name an output to hash when the run ends."""
        self._artifact_specs.update(named_sources({name: path}, "artifacts"))

    def set_tag(self, name: str, value: str) -> None:
        """Attach a tag to the run; one that cannot be read as text is left out, with a warning."""
        try:
            self.tags.update(checked_tags({name: value}))
        except InvalidInputError as exc:
            warnings.warn(f"tag not recorded: {exc}", stacklevel=2)

    def _take_metric(self, name: object, value: object) -> None:
        """Keep a metric, or drop it with a warning and say why in ``dropped_metrics``."""
        key = _shown(name)
        number, reason = _metric_value(name, value)
        if reason is None:
            self.metrics[key] = number
            self.dropped_metrics.pop(key, None)
            return
        self.metrics.pop(key, None)
        self.dropped_metrics[key] = {"name": key, "reason": reason, **opaque(value)}
        warnings.warn(
            f"metric {key!r} was not recorded: {reason}; the training event names it "
            "in dropped_metrics",
            stacklevel=3,
        )

    def _take_returned(self, result: object) -> None:
        """Take the top-level entries of a returned dict as metrics; never raises."""
        if not isinstance(result, Mapping):
            return
        try:
            items = list(result.items())
        except Exception as exc:
            warnings.warn(
                f"auditml could not read the metrics of the returned {type(result).__name__}: "
                f"{_message(exc)}",
                stacklevel=4,
            )
            return
        for name, value in items:
            if _shown(name) not in self._logged:  # run.log_metric wins over the returned value
                self._take_metric(name, value)

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
            "dropped_metrics": list(self.dropped_metrics.values()),
            "started_at": _stamp(self.started),
            "ended_at": _stamp(ended),
            "duration_s": round(max(ended - self.started, 0.0), 6),
            "code": code,
            "environment": env,
            "params": self.params,
            "datasets": self.datasets,
            "artifacts": self.artifacts,
            "metrics": self.metrics,
            "tags": {**_mlflow_run(), **self.tags},
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


def _mlflow_run() -> dict[str, str]:
    """Return the active MLflow run's id and experiment as tags, when MLflow is already in use.

    MLflow is never imported here: only a process that imported it can have an
    active run, so the two records point at each other at no cost to the rest.
    """
    module = sys.modules.get("mlflow")
    active = getattr(module, "active_run", None)
    if active is None:
        return {}
    try:
        run = active()
        if run is None:
            return {}
        return {
            "mlflow.run_id": str(run.info.run_id),
            "mlflow.experiment_id": str(run.info.experiment_id),
        }
    except Exception:  # MLflow's state is its own; the training record does not depend on it
        return {}


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


def _text(value: str) -> str:
    """Return ``value`` as text the log can hold: lone surrogates become backslash escapes."""
    return value if is_text(value) else value.encode("utf-8", "backslashreplace").decode()


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = "<the exception's message could not be read>"
    return _text(text[:4000])


def _shown(name: object) -> str:
    """Return a metric or parameter name as recordable text (at most 512 characters)."""
    if isinstance(name, str):
        text = name
    else:
        try:
            text = str(name)
        except Exception:
            text = f"<{type(name).__name__}>"
    return _text(text)[:512] or "<empty>"


def _scalar(value: object) -> object:
    """Return the number a one-element array or tensor holds: ``loss`` as ``loss.item()``."""
    if type(value).__module__.partition(".")[0] not in _ARRAY_MODULES:
        return value
    try:
        return value.item()  # type: ignore[attr-defined]
    except Exception:  # not one element, or no item(): the value is reported as it is
        return value


def _metric_value(name: object, value: object) -> tuple[float, str | None]:
    """Return a metric as the number to record, or why it cannot be recorded as a number."""
    if not isinstance(name, str):
        return 0, f"its name is {type(name).__name__}, not text"
    if not name or len(name) > 512 or not is_text(name):
        return 0, "its name must be 1 to 512 characters of valid text"
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return 0, f"{type(value).__name__} is not a number"
    try:
        number: float = int(value) if isinstance(value, numbers.Integral) else float(value)
    except Exception as exc:
        return 0, f"{type(value).__name__} does not convert to a number ({_message(exc)})"
    if isinstance(number, int) and not -MAX_SAFE_INT <= number <= MAX_SAFE_INT:
        return 0, "an integer beyond +/-(2**53 - 1), which JSON cannot hold exactly"
    if number != number:
        return 0, "NaN (not a number)"
    if number in (float("inf"), float("-inf")):
        return 0, "infinite"
    return number, None


def _located(text: str) -> str:
    """Return a path or URI fit to show in a message: credentials removed, at most 200 chars."""
    clean = _text(scrub_uri(text)[0])
    return repr(clean if len(clean) <= 200 else clean[:200] + "...")


def _file_name(text: str) -> str:
    """Return the last segment of a path or URI (query and fragment left out)."""
    if has_scheme(text):
        text = re.split(r"[?#]", text, maxsplit=1)[0]
    parts = [part for part in re.split(r"[\\/]", text) if part and part != "."]
    return parts[-1] if parts else ""


def _source(value: object, what: str, name: str | None) -> Source:
    """Return one dataset or artifact path or URI, or refuse it with a clear error."""
    label = f"{what[:-1]} {name!r}" if name is not None else f"every entry of {what}"
    if not isinstance(value, str | os.PathLike):
        raise InvalidInputError(
            f"{label} must be a path or URI (str or os.PathLike), not {type(value).__name__}: "
            f"e.g. {what}={{'train': 'data/train.csv'}}"
        )
    text = os.fspath(value)
    if not isinstance(text, str):
        raise InvalidInputError(f"{label} must be a text path, not {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{label} is an empty path: give a file, a folder or a URI")
    return value


def named_sources(value: object, what: str) -> dict[str, Source]:
    """Return ``datasets`` or ``artifacts`` as a dict of name to path or URI.

    A dict is taken as it is; a list or tuple (or one path) is named by the
    file name of each entry, and two entries with the same file name are
    refused, since either name would hide the other: pass a dict to name them.
    Anything else is refused with :class:`InvalidInputError`, so a decorator
    given a wrong value fails when it decorates, not when training ends.
    """
    if value is None:
        return {}
    if isinstance(value, str | os.PathLike):
        value = [value]
    found: dict[str, Source] = {}
    example = f"e.g. {what}={{'train': 'data/train.csv'}} or {what}=['data/train.csv']"
    if isinstance(value, Mapping):
        for name, source in value.items():
            if not isinstance(name, str) or not name.strip() or len(name) > 512:
                shown = repr(_shown(name)) if isinstance(name, str) else type(name).__name__
                raise InvalidInputError(
                    f"the names of {what} must be text of 1 to 512 characters, not {shown}: "
                    + example
                )
            found[name] = _source(source, what, name)
        return found
    if not isinstance(value, list | tuple):
        raise InvalidInputError(
            f"{what} must be a dict of name to path or URI, or a list of paths, "
            f"not {type(value).__name__}: {example}"
        )
    for source in value:
        text = os.fspath(_source(source, what, None))
        name = _file_name(scrub_uri(text)[0])
        if not name or len(name) > 512:
            raise InvalidInputError(
                f"cannot name {what[:-1]} {_located(text)} by its file name: pass a dict, {example}"
            )
        if name in found:
            raise InvalidInputError(
                f"two {what} are both named {name!r} ({_located(os.fspath(found[name]))} and "
                f"{_located(text)}): pass a dict to give each its own name, "
                f"e.g. {what}={{'train': ..., 'test': ...}}"
            )
        found[name] = source
    return found


def checked_tags(tags: object) -> dict[str, str]:
    """Return tags as text to text, or refuse a value that is not a mapping."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInputError(
            f"tags must be a dict of name to text, not {type(tags).__name__}: "
            "e.g. tags={'team': 'risk'}"
        )
    found: dict[str, str] = {}
    for name, value in tags.items():
        try:
            found[_text(str(name))] = _text(str(value))
        except Exception as exc:
            raise InvalidInputError(
                f"tag {_shown(name)!r} cannot be read as text: {_message(exc)}"
            ) from None
    return found


@contextmanager
def run_context(run: TrainingRun, *, started: bool = False) -> Iterator[TrainingRun]:
    """Start ``run`` (unless ``started``), make it current, and record it however the block ends.

    A refusal at the start (policy, a version already trained, a missing
    dataset) raises before the block runs. Once it has run, nothing auditml
    fails to record changes how the block ends: the failure is a warning.
    """
    if not started:
        run.start()
    token = _CURRENT.set(run)
    try:
        yield run
    except BaseException as exc:
        _CURRENT.reset(token)
        _record(run, exc)
        raise
    _CURRENT.reset(token)
    _record(run, None)


def _record(run: TrainingRun, error: BaseException | None) -> None:
    """Record a finished run; a failure to record is a warning, never an exception."""
    try:
        run.finish(error)
    except Exception as failure:
        why = (
            failure.diagnostics()
            if isinstance(failure, AuditmlError)
            else f"{_qualname(type(failure))}: {_message(failure)}"
        )
        passes = "its exception is raised" if error is not None else "its result is returned"
        warnings.warn(
            f"auditml could not record the {'failed ' if error is not None else ''}training "
            f"run of {run.model!r}: {why}; {passes} unchanged",
            stacklevel=4,
        )
