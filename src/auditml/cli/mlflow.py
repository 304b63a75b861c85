"""The MLflow commands: ``auditml import mlflow``, ``auditml mlflow watch``, and alias moves.

MLflow is imported only when one of these runs (through
:mod:`auditml.mlflow_bridge`), never by ``import auditml`` or any other command.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auditml.cli._common import (
    ActorOption,
    DbOption,
    JsonOption,
    app,
    errors,
    group,
    notice,
    open_log,
    out,
    who,
)
from auditml.core.events import IMPORTED_NOTE
from auditml.errors import InvalidInputError

if TYPE_CHECKING:  # the command tree is built without the log (issue 20)
    from auditml.log import AuditLog
    from auditml.registry import Recorded

import_app = group("Import history recorded elsewhere, marked as imported.")
app.add_typer(import_app, name="import")
mlflow_app = group("Work beside an MLflow registry: follow its changes as they happen.")
app.add_typer(mlflow_app, name="mlflow")

UriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="MLflow's tracking URI, e.g. http://127.0.0.1:5000 or sqlite:///mlflow.db "
        "[default: [mlflow] tracking_uri of the policy, else $MLFLOW_TRACKING_URI]",
        show_default=False,
    ),
]
ModelsOption = Annotated[
    list[str] | None,
    typer.Option("--model", metavar="NAME", help="Only this registered model (repeatable)."),
]

HISTORY_NOTE = (
    "history before this import is MLflow's word, not auditml's evidence: MLflow keeps no "
    "record of who moved an alias or when, so none is invented"
)


def _uri(log: AuditLog, given: str | None) -> str:
    """Return the tracking URI: the flag, the policy's, or MLflow's own variable."""
    uri = given or log.policy()[0].mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise InvalidInputError(
            "no MLflow tracking URI: give --tracking-uri URI, or set tracking_uri in the "
            "[mlflow] table of the policy, or MLFLOW_TRACKING_URI"
        )
    return uri


def _record(
    log: AuditLog, uri: str, models: list[str] | None, via: str, actor: Any
) -> tuple[Recorded, int, int]:
    """Read the registry and record what is new; return it with the models and versions seen."""
    from auditml import mlflow_bridge as bridge

    client = bridge.client_for(uri)
    snapshot = bridge.read_snapshot(client, uri, models, strict=via == "import")
    key = bridge.registry_key(uri)
    known = log.registry_known(key)
    runs = bridge.read_runs(client, uri, snapshot, known)
    recorded = log.record_registry(
        snapshot,
        via=via,
        uri=key,
        actor=actor,
        models=models or None,
        runs=runs,
    )
    versions = sum(len(m.versions) for m in snapshot.values())
    return recorded, len(snapshot), versions


@import_app.command("mlflow")
def import_mlflow(
    tracking_uri: UriOption = None,
    model: ModelsOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import an MLflow registry's versions, runs, stages, aliases and tags (again: what is new)."""
    with errors(), open_log(db) as log:
        uri = _uri(log, tracking_uri)
        recorded, models, versions = _record(log, uri, model, "import", who(actor))
        from auditml.mlflow_bridge import shown_uri

        shown = shown_uri(uri)
        if as_json:
            out.print_json(
                data={
                    "tracking_uri": shown,
                    "models": models,
                    "versions": versions,
                    "trained": [
                        {"model": m, "version": v, "seq": s} for m, v, s in recorded.trained
                    ],
                    "changes": [
                        {"seq": seq, **change.data(), **change.subject()}
                        for change, seq, _ in recorded.changes
                    ],
                    "note": HISTORY_NOTE,
                }
            )
            return
        if not recorded.changes:
            out.print(
                f"Nothing new in MLflow at {shown}: the log already holds all it shows "
                f"({models} model(s), {versions} version(s))."
            )
            return
        events = len(recorded.changes) + len(recorded.trained)
        out.print(
            f"Imported from MLflow at {shown}: {events} events ({len(recorded.trained)} "
            f"training run(s), {len(recorded.changes)} registry change(s)) for {models} "
            f"model(s), {versions} version(s), marked as imported."
        )
        out.print(f"Note: {HISTORY_NOTE}; {IMPORTED_NOTE}.")


def _secret(path: Path | None) -> str | None:
    """Return the webhook secret in ``path``, or refuse an unusable file."""
    from auditml._internal.infile import read_regular

    if path is None:
        return None
    try:
        text = read_regular(path, "secret file", 1 << 20).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read the secret file {str(path)!r}: {exc}") from None
    if len(text) < 16:
        raise InvalidInputError(
            f"the secret file {str(path)!r} holds {len(text)} characters: a webhook secret "
            "needs at least 16 (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return text


def _listen(value: str | None) -> tuple[str, int] | None:
    """Parse ``--listen HOST:PORT``."""
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(
            f"--listen {value!r} is not HOST:PORT, e.g. --listen 127.0.0.1:8765"
        )
    return host.strip("[]"), int(port)


def _report(log: AuditLog, recorded: Recorded, via: str, as_json: bool = False) -> None:
    """Print each change recorded (a JSON line each), each violation, and run the command."""
    from auditml.mlflow_bridge import run_on_violation

    for change, seq, found in recorded.changes:
        if as_json:
            line = {
                "seq": seq,
                "via": via,
                "model": change.model,
                "version": change.version,
                **change.data(),
                "violations": [v.model_dump(mode="json") for v in found],
            }
            sys.stdout.write(json.dumps(line, ensure_ascii=True) + "\n")
            sys.stdout.flush()
            continue
        out.print(f"event {seq}  {change.describe()}  (via {via})")
        for violation in found:
            out.print(f"VIOLATION event {seq}: {violation.rule}: {violation.message}")
    command = log.policy()[0].mlflow.on_violation
    for change, seq, violation in recorded.violations:
        if not command:
            continue
        payload = {
            "seq": seq,
            "model": change.model,
            "version": change.version,
            "kind": change.kind,
            "alias": change.alias,
            "stage": change.stage,
            "rule": violation.rule,
            "message": violation.message,
            "environment": violation.environment,
            "log": log.origin,
        }
        problem = run_on_violation(command, payload)
        if problem:
            notice("warning", f"on_violation for event {seq}: {problem}")


@mlflow_app.command("watch")
def watch(
    tracking_uri: UriOption = None,
    model: ModelsOption = None,
    once: Annotated[bool, typer.Option("--once", help="Poll once, record, and stop.")] = False,
    interval: Annotated[
        float, typer.Option(metavar="S", help="Seconds between polls.", min=0.1)
    ] = 30.0,
    listen: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Also take MLflow's webhooks here (checked with --secret-file's secret).",
        ),
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="The webhook secret (HMAC-SHA256 key), one line."),
    ] = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record each change made in an MLflow registry; changes policy would refuse are violations.

    With --once it exits 1 when the changes it recorded include a violation, so a
    scheduled job can tell. With --json each change is one JSON line on stdout.
    """
    with errors(), open_log(db) as log:
        where = _listen(listen)
        secret = _secret(secret_file)
        if (where is None) != (secret is None):
            raise InvalidInputError(
                "webhooks need both --listen HOST:PORT and --secret-file FILE (MLflow signs "
                "each delivery with the secret; an unsigned one is refused)"
            )
        uri = _uri(log, tracking_uri)
        from auditml import mlflow_bridge as bridge

        client = bridge.client_for(uri)
        listener = hook_id = None
        mode = "reading it once" if once else f"polling every {interval:g} s"
        if where is not None and secret is not None:
            listener = bridge.WebhookListener(
                where[0],
                where[1],
                secret,
                on_refused=lambda why: notice("warning", f"refused a webhook delivery: {why}"),
            )
            listener.start()
            hook_id, said = bridge.register_webhook(client, listener.url, secret)
            if hook_id is None:
                mode = f"{mode}; no webhooks: {said}"
            else:
                mode = f"webhooks ({said}, signatures checked) and {mode} as a backstop"
        if not as_json:
            out.print(
                f"auditml mlflow watch: following MLflow at {bridge.shown_uri(uri)} by {mode}"
            )
        actor_id = who(actor)
        via = "poll"
        in_main = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
        try:
            while True:
                recorded, _, _ = _record(log, uri, model, via, actor_id)
                _report(log, recorded, via, as_json)
                if once:
                    if not recorded.changes and not as_json:
                        out.print("no changes since the log last looked")
                    if recorded.violations:
                        raise typer.Exit(1)
                    return
                via = "poll"
                if listener is None:
                    time.sleep(interval)
                    continue
                try:
                    listener.wake.get(timeout=interval)
                    via = "webhook"
                    while True:  # one read of the registry answers a burst of deliveries
                        listener.wake.get_nowait()
                except queue.Empty:
                    pass
        except KeyboardInterrupt:
            if not as_json:
                out.print("stopped")
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous_handler)
            if listener is not None:
                listener.stop()
            if hook_id is not None:
                bridge.remove_webhook(client, hook_id)


def _interrupt(signum: int, frame: Any) -> None:
    """Stop a watch on SIGTERM as on Ctrl-C, so it removes the webhook it registered."""
    raise KeyboardInterrupt
