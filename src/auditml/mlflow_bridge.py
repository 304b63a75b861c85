"""Working beside MLflow: read its registry, move its aliases, hear its webhooks.

This is the only module that imports ``mlflow``, and only inside its
functions, so ``import auditml`` and every command but ``auditml import
mlflow``, ``auditml mlflow watch`` and a deploy or rollback with ``[mlflow]
aliases`` in the policy never load it (install it with ``pip install
'auditml[mlflow]'``). What it reads is MLflow's word: auditml records it as
MLflow gave it, with MLflow's own timestamps, and never invents what MLflow did
not keep (who moved an alias, and when).

Webhooks (MLflow 3) are checked as MLflow signs them: ``X-MLflow-Signature``
is ``v1,`` and the base64 HMAC-SHA256, under the webhook's secret, of
``DELIVERY_ID.TIMESTAMP.BODY`` (from ``X-MLflow-Delivery-Id`` and
``X-MLflow-Timestamp``). A delivery with a wrong signature, an old timestamp
or a delivery id already seen is refused. A webhook only wakes the watch: the
change itself is read back from the registry, so a webhook can never make
auditml record something MLflow does not show.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from auditml._internal.infile import check_regular
from auditml.core.registry import NO_STAGE, KnownModel, KnownVersion, Snapshot
from auditml.core.uri import registry_identity, scrub_uri
from auditml.errors import InvalidInputError, StoreError
from auditml.registry import ImportedRun

__all__ = [
    "MAX_SKEW_S",
    "WebhookListener",
    "check_same_training",
    "client_for",
    "move_alias",
    "read_runs",
    "read_snapshot",
    "registry_key",
    "run_on_violation",
    "sign_webhook",
    "verify_webhook",
]

#: The largest webhook body read (MLflow's registry events are a few hundred bytes).
MAX_BODY = 1_000_000
#: The most items one paginated search may return before it is taken as never ending.
MAX_ITEMS = 1_000_000
#: How far a webhook's timestamp may be from this clock before it is refused as a replay.
MAX_SKEW_S = 300
#: The MLflow events a watch subscribes to (MLflow 3 sends no event for a stage change).
WEBHOOK_EVENTS = (
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
)
#: Run tags left out of an imported run: MLflow's own bookkeeping, often long JSON.
SKIPPED_TAGS = ("mlflow.log-model.history",)


def _mlflow() -> Any:
    """Import MLflow, or say how to install it."""
    try:
        import mlflow
    except ImportError:
        raise InvalidInputError(
            "this command needs MLflow, which is not installed: pip install 'auditml[mlflow]'"
        ) from None
    return mlflow


def shown_uri(uri: str) -> str:
    """Return a tracking URI without credentials, as auditml prints it."""
    return scrub_uri(uri)[0]


def registry_key(uri: str) -> str:
    """Return the identity the log records a registry under: one for every spelling of it.

    Raises InvalidInputError for a URI no registry can have (see core.uri).
    """
    return registry_identity(uri, os.getcwd())


def _failure(uri: str, exc: BaseException) -> StoreError:
    """Return the error that says MLflow at ``uri`` could not be used, in one line."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if any(word in first for word in ("Max retries", "NewConnectionError", "Connection refused")):
        first = "nothing answers there (connection refused or timed out)"
    elif len(first) > 300:
        first = first[:300] + "…"
    return StoreError(
        f"could not use the MLflow registry at {shown_uri(uri)!r}: {first}. Check the "
        "tracking URI (e.g. http://127.0.0.1:5000 or sqlite:///mlflow.db) and that the "
        "server is running"
    )


def client_for(uri: str) -> Any:
    """Return an MlflowClient for ``uri`` that fails fast, or raise StoreError clearly."""
    registry_key(uri)  # a URI no registry can have is refused before MLflow is loaded
    # A server that is down should fail in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    _must_exist(uri)
    mlflow = _mlflow()
    try:
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    except Exception as exc:
        raise _failure(uri, exc) from None


def _must_exist(uri: str) -> None:
    """Refuse a local MLflow store that is not there: MLflow would create an empty one.

    An empty registry read from a mistyped path would otherwise look like a
    registry whose models were all deleted.
    """
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) != ":memory:" and not check_regular(path, "MLflow database"):
            raise InvalidInputError(
                f"no MLflow database at {path}: check --tracking-uri (sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db); auditml never creates one"
            )
    elif "://" not in uri or uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        if not path.is_dir():
            raise InvalidInputError(
                f"no MLflow file store at {path}: check --tracking-uri (a folder such as ./mlruns, "
                "a sqlite:/// database or an http(s):// server)"
            )


def _stamp(ms: object) -> str | None:
    """Return MLflow's milliseconds since the epoch as the log writes times, or None."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not 0 < ms < 2**53:
        return None  # none, or nothing a clock can say (NaN, past year 9999): MLflow kept none
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _quoted(name: str) -> str:
    """Return a name as an MLflow filter string literal."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pages(search: Any, **args: Any) -> Iterable[Any]:
    """Yield every item of a paginated MLflow search, refusing one that never ends.

    A server that hands back a page token it gave before, or more than
    MAX_ITEMS items, would keep a watch reading for ever: that is an error
    naming what MLflow did, not a registry auditml records.
    """
    token = None
    seen: set[str] = set()
    count = 0
    while True:
        page = search(page_token=token, **args)
        for item in page:
            count += 1
            if count > MAX_ITEMS:
                raise StoreError(
                    f"MLflow returned more than {MAX_ITEMS:,} items for one search: auditml "
                    "stops there; follow fewer models at once with --model NAME"
                )
            yield item
        token = getattr(page, "token", None)
        if not token:
            return
        if not isinstance(token, str) or token in seen:
            raise StoreError(
                "MLflow returned a page token it had already given (or not a string): its "
                "search never ends, so auditml stops; check the server's version and logs"
            )
        seen.add(token)


def read_snapshot(
    client: Any, uri: str, models: Sequence[str] | None = None, *, strict: bool = True
) -> Snapshot:
    """Return what the registry shows now: each model's versions, stages, tags and aliases.

    A model named in ``models`` that MLflow lacks is an error when ``strict``
    (an import of a mistyped name); otherwise it is left out, as deleted.
    """
    try:
        if models:
            found = []
            for name in models:
                hits = list(
                    _pages(client.search_registered_models, filter_string=f"name = {_quoted(name)}")
                )
                hits = [m for m in hits if m.name == name]
                if not hits and strict:
                    raise InvalidInputError(
                        f"MLflow at {shown_uri(uri)!r} has no registered model {name!r}: "
                        "check --model (names are case-sensitive)"
                    )
                found.extend(hits)
        else:
            found = list(_pages(client.search_registered_models))
        snapshot: Snapshot = {}
        for rm in found:
            model = KnownModel(
                rm.name,
                aliases={str(a): str(v) for a, v in (rm.aliases or {}).items()},
                tags={str(k): str(v) for k, v in (rm.tags or {}).items()},
                description=rm.description or "",
                updated=_stamp(rm.last_updated_timestamp),
            )
            versions = _pages(
                client.search_model_versions, filter_string=f"name = {_quoted(rm.name)}"
            )
            for mv in versions:
                model.versions[str(mv.version)] = KnownVersion(
                    str(mv.version),
                    stage=mv.current_stage or NO_STAGE,
                    tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
                    description=mv.description or "",
                    source=mv.source or None,
                    run_id=mv.run_id or None,
                    created=_stamp(mv.creation_timestamp),
                    updated=_stamp(mv.last_updated_timestamp),
                )
            snapshot[rm.name] = model
        return snapshot
    except (InvalidInputError, StoreError):
        raise
    except Exception as exc:
        raise _failure(uri, exc) from None


def _metrics(values: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Return a run's finite metrics, and the ones the log cannot hold as numbers."""
    kept: dict[str, float] = {}
    dropped: list[dict[str, Any]] = []
    for name, value in sorted(values.items()):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            kept[name] = value
        else:
            dropped.append(
                {"name": name, "reason": "not a finite number", "type": type(value).__name__}
            )
    return kept, dropped


def read_runs(
    client: Any, uri: str, snapshot: Snapshot, known: Snapshot
) -> dict[tuple[str, str], ImportedRun]:
    """Return the source run of each version the log does not know yet, as MLflow keeps it."""
    runs: dict[tuple[str, str], ImportedRun] = {}
    clean = registry_key(uri)
    for name, model in snapshot.items():
        before = known.get(name)
        for version, mv in model.versions.items():
            if before is not None and version in before.versions:
                continue
            runs[(name, version)] = _imported_run(client, clean, name, mv)
    return runs


def _imported_run(client: Any, uri: str, name: str, mv: KnownVersion) -> ImportedRun:
    """Return one version's training as imported history: its run, if MLflow still has it."""
    details: dict[str, Any] = {
        "tracking_uri": uri,
        "model_version": f"models:/{name}/{mv.version}",
        "version_created": mv.created,
        "version_updated": mv.updated,
    }
    data: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    if mv.source:
        artifacts["model"] = {"uri": mv.source}
    actor = "mlflow"
    run = None
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except Exception as exc:  # a deleted run: the version is still recorded
            details["run_error"] = str(exc).splitlines()[0][:200] if str(exc) else "not found"
    if run is not None:
        info, rd = run.info, run.data
        tags = {k: str(v) for k, v in (rd.tags or {}).items() if k not in SKIPPED_TAGS}
        metrics, dropped = _metrics(dict(rd.metrics or {}))
        actor = info.user_id or tags.get("mlflow.user") or "mlflow"
        status = str(info.status or "")
        data = {
            "status": "failed" if status in ("FAILED", "KILLED") else "succeeded",
            "started_at": _stamp(info.start_time),
            "ended_at": _stamp(info.end_time),
            "params": dict(rd.params or {}),
            "metrics": metrics,
            "dropped_metrics": dropped,
            "tags": tags,
        }
        if info.start_time and info.end_time and info.end_time >= info.start_time:
            data["duration_s"] = (info.end_time - info.start_time) / 1000
        commit = tags.get("mlflow.source.git.commit")
        if commit:
            data["code"] = {
                "commit": commit,
                "branch": tags.get("mlflow.source.git.branch"),
                "repository": tags.get("mlflow.source.git.repoURL"),
            }
        if info.artifact_uri:
            artifacts["run"] = {"uri": info.artifact_uri}
        details.update(
            {
                "experiment_id": str(info.experiment_id),
                "run_name": info.run_name,
                "run_status": status or None,
                "run_start": _stamp(info.start_time),
                "run_end": _stamp(info.end_time),
            }
        )
    data["artifacts"] = artifacts
    mark: dict[str, Any] = {
        "source": "mlflow",
        "details": {k: v for k, v in details.items() if v is not None},
    }
    if mv.run_id:
        mark["id"] = mv.run_id
        mark["uri"] = f"runs:/{mv.run_id}"
    else:
        mark["uri"] = f"models:/{name}/{mv.version}"
    if mv.created:
        mark["time"] = mv.created
    return ImportedRun(
        actor=actor, data={k: v for k, v in data.items() if v is not None}, mark=mark
    )


def check_same_training(
    client: Any, uri: str, model: str, version: str, ours: str | None, what: str
) -> None:
    """Refuse to point an alias at MLflow's ``version`` when it is not auditml's training of it.

    ``ours`` is the MLflow run auditml's training of that version names (None:
    none); ``what`` says which training that is (e.g. ``live, event 12``).
    auditml and MLflow number versions each on their own, so the same number
    is the same model only when MLflow's version came from that run.
    """
    try:
        theirs = client.get_model_version(model, version).run_id or None
    except Exception as exc:
        raise _failure(uri, exc) from None
    if theirs is not None and theirs == ours:
        return
    raise InvalidInputError(
        f"MLflow's {model!r} version {version} "
        f"({'from run ' + _printable(theirs) if theirs else 'with no run'}) is not the training "
        f"auditml deployed as version {version} ({what}, "
        f"{'MLflow run ' + _printable(ours) if ours else 'no MLflow run'}), so its alias was "
        "left where it was: auditml and MLflow numbered these versions each on their own. "
        "Register the deployed model in MLflow from the run auditml recorded, or move the "
        "alias by hand"
    )


def _printable(text: str) -> str:
    """Return an id as a message shows it: printable, at most 64 characters (MLflow's are 32)."""
    if text.isprintable() and len(text) <= 64:
        return text
    return repr(text[:64]) + ("…" if len(text) > 64 else "")


def move_alias(client: Any, uri: str, model: str, alias: str, version: str) -> str | None:
    """Point ``alias`` of ``model`` at ``version`` in MLflow; return the version it named before."""
    previous = None
    try:
        try:
            previous = str(client.get_model_version_by_alias(model, alias).version)
        except Exception:
            previous = None  # no such alias yet
        client.set_registered_model_alias(model, alias, version)
    except Exception as exc:
        raise _failure(uri, exc) from None
    return previous


def run_on_violation(argv: Sequence[str], violation: dict[str, Any]) -> str | None:
    """Run the configured command with the violation as JSON on stdin; return what went wrong."""
    payload = json.dumps(violation, sort_keys=True)
    env = {**os.environ, "AUDITML_VIOLATION": payload}
    try:
        done = subprocess.run(  # an argument list, never a shell
            list(argv), input=payload, text=True, env=env, timeout=60, capture_output=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not run {argv[0]!r}: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or [""]
        return f"{argv[0]!r} exited with status {done.returncode} {tail[0]}".rstrip()
    return None


# -- webhooks -------------------------------------------------------------------------------


def sign_webhook(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-MLflow-Signature`` MLflow sends for a delivery (used to check one)."""
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None
) -> str | None:
    """Return why a webhook delivery is refused, or None when its signature and time hold."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("x-mlflow-signature")
    delivery = lowered.get("x-mlflow-delivery-id")
    stamp = lowered.get("x-mlflow-timestamp")
    if not signature or not delivery or not stamp:
        return "it is not signed (no X-MLflow-Signature, Delivery-Id or Timestamp header)"
    expected = sign_webhook(secret, delivery, stamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "its signature does not match the secret"
    try:
        sent = int(stamp)
    except ValueError:
        return f"its timestamp {stamp[:40]!r} is not a number"
    if abs((time.time() if now is None else now) - sent) > MAX_SKEW_S:
        return f"its timestamp is more than {MAX_SKEW_S} s from this clock (a replay?)"
    return None


class WebhookListener:
    """An HTTP endpoint for MLflow's webhooks: checks each delivery, wakes the watch on a good one.

    ``refused`` counts deliveries refused (forged, stale, replayed); ``wake``
    receives one item per accepted delivery.
    """

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.secret = secret
        self._on_refused = on_refused
        self.wake: queue.Queue[dict[str, Any]] = queue.Queue()
        self.refused: list[str] = []
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                said = (self.headers.get("Content-Length") or "0").strip()
                length = int(said) if re.fullmatch(r"[0-9]{1,12}", said) else -1
                if not 0 <= length <= MAX_BODY:
                    # Never read a body of no stated size (a negative one read to the end of
                    # the stream) or one past the limit: refuse before reading it.
                    listener.refuse(
                        f"its Content-Length {said[:40]!r} is not a size from 0 to {MAX_BODY} bytes"
                    )
                    self.close_connection = True
                    self.send_response(413 if length > MAX_BODY else 400)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(b"refused\n")
                    return
                body = self.rfile.read(length)
                why = listener.check(dict(self.headers.items()), body)
                self.send_response(401 if why else 200)
                self.end_headers()
                self.wfile.write(b"refused\n" if why else b"ok\n")

            def log_message(self, format: str, *args: Any) -> None:
                return  # the watch prints what matters

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Return the URL MLflow should post to."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        """Start answering deliveries in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering deliveries."""
        self._server.shutdown()
        self._server.server_close()

    def refuse(self, why: str) -> None:
        """Count a delivery refused before its signature could be checked."""
        with self._lock:
            self.refused.append(why)
        if self._on_refused is not None:
            self._on_refused(why)

    def check(self, headers: dict[str, str], body: bytes) -> str | None:
        """Check one delivery; queue a wake-up when it holds, else count why it was refused."""
        why = verify_webhook(self.secret, headers, body)
        delivery = {k.lower(): v for k, v in headers.items()}.get("x-mlflow-delivery-id", "")
        with self._lock:
            now = time.time()
            # A delivery older than the skew allowed is refused by its timestamp anyway.
            self._seen = {d: t for d, t in self._seen.items() if now - t <= 2 * MAX_SKEW_S}
            if why is None and delivery in self._seen:
                why = f"delivery {delivery[:64]} was already received (a replay)"
            if why is not None:
                self.refused.append(why)
            else:
                self._seen[delivery] = now
        if why is not None:
            if self._on_refused is not None:
                self._on_refused(why)
            return why
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {}
        self.wake.put(payload if isinstance(payload, dict) else {})
        return None


def register_webhook(client: Any, url: str, secret: str) -> tuple[str | None, str]:
    """Ask the MLflow server to post registry events to ``url``; return (its id, what was said)."""
    try:
        hook = client.create_webhook(
            name="auditml-watch",
            url=url,
            events=list(WEBHOOK_EVENTS),
            secret=secret,
            description="auditml mlflow watch: records registry changes on the audit log",
        )
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return None, f"the server offers no webhooks to {url} ({first})"
    return str(hook.webhook_id), f"webhook {hook.webhook_id} posts to {url}"


def remove_webhook(client: Any, webhook_id: str) -> None:
    """Remove the webhook a watch registered (best effort: the watch is ending)."""
    try:
        client.delete_webhook(webhook_id)
    except Exception:
        return
