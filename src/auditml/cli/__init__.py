"""The ``auditml`` command.

Every command takes ``--db URL`` (or ``AUDITML_DATABASE_URL``; default
``./.auditml/audit.db``). Errors print one sentence to stderr and exit
non-zero: 1 when verification fails, 2 for bad input or an unusable store, 3 when
policy refuses an action (only a ``policy.denied`` event is recorded then).

One module per command group registers its commands on the shared ``app``
(:mod:`auditml.cli._common`); this module imports them, and nothing else does.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import warnings
from importlib import import_module
from typing import Any, TextIO

from auditml.cli._startup import command_done, startup

with startup():  # typer, and the code every command shares
    import typer
    from typer.core import TyperCommand

    from auditml.cli import _common
    from auditml.cli._common import (
        exit_status,
        json_errors,
        notice,
        print_aborted,
        print_click_error,
        print_error,
    )
    from auditml.errors import AuditmlError

__all__ = ["app", "main"]

#: The module that registers each top-level command or group. A command line naming one of
#: these imports that module alone, and builds that command alone: ``auditml status`` pays
#: for neither ``auditml report``'s imports nor the building of 45 other commands (issue 20).
#: Anything else (``--help``, ``--version``, no command, a mistyped one) loads them all.
COMMAND_MODULES = {
    **dict.fromkeys(("init", "head", "log", "verify"), "log"),
    **dict.fromkeys(
        (
            "train",
            "evaluate",
            "approve",
            "reject",
            "deploy",
            "promote",
            "monitor",
            "rollback",
            "retire",
            "status",
            "history",
            "demo",
            "policy",
            "incident",
        ),
        "lifecycle",
    ),
    "report": "report",
    **dict.fromkeys(("keygen", "checkpoint", "export", "signatures", "key", "prove"), "trust"),
    **dict.fromkeys(("trace", "runtime"), "runtime"),
    **dict.fromkeys(("erase", "actors", "retention"), "privacy"),
    "card": "card",
    **dict.fromkeys(("import", "mlflow"), "mlflow"),
}

#: The line each command shows in ``--help`` lists: a whole sentence that fits an 80-column
#: terminal. Click would take a docstring's first sentence, cut at "Art." or at the width.
SHORT_HELP = {
    "init": "Create the log and its signing key.",
    "head": "Show the log's size, root and last event.",
    "log": "List events, filtered by model, action, time.",
    "verify": "Check the log, a bundle or a PDF report.",
    "train": "Record a training run from any pipeline.",
    "evaluate": "Record an evaluation of a version.",
    "approve": "Approve a version (not by its trainer).",
    "reject": "Reject a version for good.",
    "deploy": "Deploy an approved version, or a canary.",
    "promote": "Widen a canary's share of traffic.",
    "monitor": "Check a canary; roll back when it trips.",
    "rollback": "Roll back to a version that ran before.",
    "retire": "Retire a version for good.",
    "status": "Show versions' states and what runs where.",
    "history": "Show a model's deployment timeline.",
    "trace": "Show which approved version served a request.",
    "demo": "Record a whole model life in seconds.",
    "report": "Write the audit report (PDF, HTML, ...).",
    "keygen": "Create a personal e-signature key.",
    "checkpoint": "Sign the log's size and root.",
    "export": "Write an offline-verifiable bundle.",
    "signatures": "List the e-signature manifest.",
    "policy": "Record and show the policy in force.",
    "policy apply": "Record a policy file on the log.",
    "policy show": "Show the policy in force.",
    "incident": "Open, close and list incidents.",
    "incident open": "Open an incident against a version.",
    "incident close": "Close an open incident.",
    "incident list": "List incidents and their deadlines.",
    "runtime": "Ingest, count and check runtime records.",
    "runtime stats": "Requests, errors, latency and outputs.",
    "runtime check": "Find records a version should not have made.",
    "runtime ingest": "Commit records written as JSON Lines.",
    "erase": "Erase a subject's values or an actor's identity.",
    "actors": "List who acts under each pseudonym.",
    "retention": "Retention schedule: what is due, what went.",
    "retention show": "Show the schedule, what falls due, what went.",
    "retention apply": "Remove what has expired; record what went.",
    "card": "Build, record and compare model cards.",
    "card show": "Render a version's model card.",
    "card update": "Record a card's human-written sections.",
    "card diff": "Compare the cards of two versions.",
    "card template": "Print every card section, to fill in.",
    "key": "The log key and people's e-signature keys.",
    "key show": "Print the log's verifier key.",
    "key list": "List people's registered keys.",
    "key register": "Register a person's public key.",
    "key revoke": "Revoke a person's key from now on.",
    "prove": "Print inclusion, consistency or record proofs.",
    "prove inclusion": "Prove that an event is in the log.",
    "prove consistency": "Prove that the log only grew.",
    "prove record": "Prove that a runtime record is in the log.",
    "import": "Import history recorded elsewhere.",
    "import mlflow": "Import an MLflow registry's history.",
    "mlflow": "Follow an MLflow registry's changes.",
    "mlflow watch": "Record each change made in MLflow.",
}


def _command_name(info: typer.models.CommandInfo | typer.models.TyperInfo) -> str:
    callback = info.callback
    return str(info.name or getattr(callback, "__name__", ""))


class _Command(TyperCommand):
    """A command whose usage line names its arguments as the help does: MODEL, [N], FILE..."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar or (param.name or "").upper()
            if not param.required and not name.startswith("["):
                name = f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


def _order(name: str) -> int:
    return list(SHORT_HELP).index(name)


def _finish() -> typer.Typer:
    """Give every command registered so far its help line and usage, in SHORT_HELP's order.

    ``--help`` lists commands in that order, whatever order the groups were imported in.
    Running it again after more groups are imported is harmless.
    """
    app = _common.app
    app.registered_commands.sort(key=lambda c: _order(_command_name(c)))
    app.registered_groups.sort(key=lambda g: _order(str(g.name)))
    for group in app.registered_groups:
        group.short_help = SHORT_HELP[str(group.name)]
        assert group.typer_instance is not None
        for command in group.typer_instance.registered_commands:
            command.short_help = SHORT_HELP[f"{group.name} {_command_name(command)}"]
            command.cls = _Command
    for command in app.registered_commands:
        command.short_help = SHORT_HELP[_command_name(command)]
        command.cls = _Command
    return app


def _load_all() -> typer.Typer:
    """Import every command group and return the whole app."""
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        import_module(f"auditml.cli.{module}")
    return _finish()


def _app_for(argv: list[str]) -> typer.Typer:
    """Return an app holding only the command ``argv`` names, or the whole app.

    The one command is built exactly as in the whole app (same root options, same
    settings), so its help, usage, errors and output are the same.
    """
    name = argv[0] if argv else None
    module = COMMAND_MODULES.get(name or "")
    with startup():
        if module is None:
            return _load_all()
        import_module(f"auditml.cli.{module}")
        app = _finish()
    one = copy.copy(app)
    one.registered_commands = [c for c in app.registered_commands if _command_name(c) == name]
    one.registered_groups = [g for g in app.registered_groups if g.name == name]
    return one


def __getattr__(name: str) -> Any:
    """Give ``app``, the whole command tree, to whoever imports it from here."""
    if name == "app":
        return _load_all()
    raise AttributeError(f"module 'auditml.cli' has no attribute {name!r}")


class _Notices(logging.Handler):
    """Print auditml's warnings (e.g. a write waiting for a lock) on stderr as notes."""

    def emit(self, record: logging.LogRecord) -> None:
        notice("note", record.getMessage())


def _say_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as a ``warning:`` line, without Python's file, line and source."""
    notice("warning", str(message))


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; no auditml error ever ends in a traceback."""
    notices = logging.getLogger("auditml")
    if not any(isinstance(h, _Notices) for h in notices.handlers):
        notices.addHandler(_Notices(logging.WARNING))
    with warnings.catch_warnings():
        warnings.showwarning = _say_warning
        try:
            _run(argv)
        finally:
            command_done()


def _asks_json(args: list[str]) -> bool:
    """Return whether ``--json`` is among the options of a command line (before any ``--``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def _run(argv: list[str] | None) -> None:
    """Run the app, turning every error into a message and an exit status.

    Click runs outside its standalone mode, so that its own errors (usage
    errors: a missing argument, an unknown option) come here and are reported
    as ours are, ``error: ...`` or JSON with --json, with the same exit status.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    json_errors(_asks_json(args))
    try:
        status = _app_for(args)(args=args, prog_name="auditml", standalone_mode=False)
    except _common.ClickException as exc:
        print_click_error(exc)
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.Abort:  # Ctrl-D at a prompt
        print_aborted()
        sys.exit(1)
    except AuditmlError as exc:  # one a command did not handle itself
        print_error(exc)
        sys.exit(exit_status(exc))
    except Exception as exc:
        if os.environ.get("AUDITML_DEBUG"):
            raise
        _common.report(  # not `report`: that name is the `auditml report` module here
            f"{type(exc).__name__}: {exc} (set AUDITML_DEBUG=1 for details, and please report it)",
            kind="internal",
            status=70,
            word="internal error",
        )
        sys.exit(70)
    finally:
        json_errors(False)
    if isinstance(status, int) and status:  # typer.Exit(N) ends a command with status N
        sys.exit(status)
