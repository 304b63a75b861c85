"""The ``auditml`` command.

Every command takes ``--db URL`` (or ``AUDITML_DATABASE_URL``; default
``./.auditml/audit.db``). Errors print one sentence to stderr and exit
non-zero: 1 when verification fails, 2 for bad input or an unusable store, 3 when
policy refuses an action (only a ``policy.denied`` event is recorded then).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.protocol import rich_cast
from rich.style import Style
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from auditml._version import __version__
from auditml.core.events import IMPORTED_NOTE, imported_source, is_imported
from auditml.core.text import escape_controls, needs_escape
from auditml.errors import AuditmlError, InvalidInputError, PolicyDeniedError, VerificationError
from auditml.log import AuditLog

__all__ = ["app", "main"]

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_DENIED = 3

app = typer.Typer(
    name="auditml",
    help="A verifiable audit trail for the ML model lifecycle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _safe_text(text: Text) -> Text:
    """Return ``text`` with its control characters escaped, keeping the styles around them."""
    if not needs_escape(text.plain):
        return text
    cuts = sorted({i for i, ch in enumerate(text.plain) if needs_escape(ch) for i in (i, i + 1)})
    safe = text.blank_copy()
    for piece in text.divide(cuts):
        if needs_escape(piece.plain):
            piece = Text(escape_controls(piece.plain), style=piece.style)
        safe.append_text(piece)
    return safe


class SafeConsole(Console):
    r"""A console that prints each control character in its text as ``\uXXXX``, never raw.

    Every string and Text the CLI prints, and every str cell of a table, passes
    through here: a model name, reason, actor id, path or error message holding
    ESC or NUL cannot recolour, retitle or rewrite the user's terminal.
    """

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        """Turn a string into Text as Rich does, with its control characters escaped."""
        return super().render_str(
            escape_controls(text),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=emoji,
            markup=markup,
            highlight=highlight,
            highlighter=highlighter,
        )

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print as Rich does, escaping control characters in Text (and JSON) objects too."""
        safe = [rich_cast(o) for o in objects]
        super().print(*(_safe_text(o) if isinstance(o, Text) else o for o in safe), **kwargs)


# Piped output is not cut to 80 columns: tables keep every field whole for grep and files.
# No Rich markup: paths, URLs, names and reasons print as written, brackets included.
out = SafeConsole(
    highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200
)
err = SafeConsole(stderr=True, highlight=False, markup=False, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL: sqlite:///path or postgresql://… "
        "[default: $AUDITML_DATABASE_URL, else ./.auditml/audit.db]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing output file (never the log's database or a key file).",
    ),
]


def _version(value: bool) -> None:
    if value:
        out.print(f"auditml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Record, verify and report every lifecycle action on your models."""


@contextmanager
def _errors() -> Iterator[None]:
    """Turn auditml errors into one sentence on stderr and a non-zero exit."""
    try:
        yield
    except VerificationError as exc:
        err.print(Text.assemble(("FAILED", "bold red"), f": {exc.diagnostics()}"))
        raise typer.Exit(EXIT_FAILED) from None
    except PolicyDeniedError as exc:
        err.print(f"denied: {exc.diagnostics()}")
        raise typer.Exit(EXIT_DENIED) from None
    except AuditmlError as exc:
        err.print(f"error: {exc.diagnostics()}")
        raise typer.Exit(EXIT_ERROR) from None


def _open(db: str | None) -> AuditLog:
    return AuditLog.open(db)


@app.command()
def init(
    origin: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The log's origin name, e.g. bank.example/credit-models "
            "[default: <host>/<folder>]",
            show_default=False,
        ),
    ] = None,
    description: Annotated[
        str | None, typer.Option(metavar="TEXT", help="What this log is for.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(metavar="ID", help="Who is creating the log.")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="The log's signing key [default: $AUDITML_LOG_KEY, else NAME.key beside a "
            "SQLite file NAME.db, else ./.auditml/ORIGIN.key]; created when missing.",
            show_default=False,
        ),
    ] = None,
    ask_passphrase: Annotated[
        bool,
        typer.Option(
            "--ask-passphrase",
            help="Encrypt a new log key with a passphrase asked for here "
            "(or set $AUDITML_KEY_PASSPHRASE).",
        ),
    ] = False,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Sign a checkpoint every N events [default: 1000; 0: only by hand].",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create the log and its signing key here and say where they are; safe to run again."""
    from auditml._internal.keyfiles import passphrase_from_env
    from auditml._trust_cli import ask_passphrase as ask

    with _errors():
        phrase = passphrase_from_env()
        if ask_passphrase and phrase is None:
            phrase = ask("the new log key", confirm=True)
        log, created = AuditLog.init(
            db,
            origin=origin,
            actor=actor,
            description=description,
            key=key,
            passphrase=phrase,
            checkpoint_every=checkpoint_every,
        )
        with log:
            head = log.head()
            vkey = log.verifier_key()
            if as_json:
                out.print_json(
                    data={
                        "created": created,
                        "origin": log.origin,
                        "url": log.url,
                        "size": head.size,
                        "root": head.root,
                        "vkey": str(vkey),
                        "key_file": str(log.key_path()),
                    }
                )
                return
            verb = "Created" if created else "Already initialised:"
            out.print(f"{verb} log {log.origin!r} at {log.url}")
            out.print(f"{head.size} event(s), root {head.root}")
            out.print(f"signing key {log.key_path()}; verifier key (give it to auditors):")
            out.print(f"  {vkey}")


@app.command("head")
def head_cmd(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the log's origin, size, Merkle root and last event."""
    with _errors(), _open(db) as log:
        head = log.head()
        if as_json:
            out.print_json(data={"url": log.url, **asdict(head)})
            return
        out.print(f"origin     {head.origin}")
        out.print(f"store      {log.url}")
        out.print(f"size       {head.size}")
        out.print(f"root       {head.root}")
        out.print(f"last hash  {head.last_hash}")
        out.print(f"last time  {head.last_time}")


def _subject(subject: dict[str, str]) -> str:
    model = subject.get("model")
    if model is None:
        return ", ".join(f"{k}={v}" for k, v in subject.items())
    version = subject.get("version")
    rest = {k: v for k, v in subject.items() if k not in {"model", "version"}}
    text = model if version is None else f"{model} v{version}"
    return text + "".join(f", {k}={v}" for k, v in rest.items())


@app.command("log")
def log_cmd(
    model: Annotated[
        str | None, typer.Option(metavar="MODEL", help="Only events about this model.")
    ] = None,
    version: Annotated[
        str | None, typer.Option(metavar="VERSION", help="Only events about this version.")
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(metavar="ACTION", help="Only this action, e.g. model.deploy (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="From this UTC date or time on (ISO 8601, inclusive)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="TIME", help="Before this UTC date or time (ISO 8601, exclusive)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=0, metavar="N", help="At most this many events.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List events, oldest first, filtered by model, action and time."""
    with _errors(), _open(db) as log:
        records = log.events(
            model=model, version=version, action=action, since=since, until=until, limit=limit
        )
        if as_json:
            write = sys.stdout.write
            write("[")
            for i, rec in enumerate(records):
                item = {
                    "seq": rec.seq,
                    "hash": rec.hash,
                    "imported": is_imported(rec.event.data),
                    "event": json.loads(rec.body),
                }
                line = json.dumps(item, ensure_ascii=False)
                write(("," if i else "") + "\n  " + escape_controls(line))
            write("\n]\n")
            return
        rows, imported = [], 0
        for rec in records:
            ev = rec.event
            source = imported_source(ev.data)
            rows.append(
                (
                    str(rec.seq),
                    ev.time[:19].replace("T", " "),
                    ev.actor.id,
                    ev.action,
                    _subject(ev.subject),
                    "" if source is None else source,
                    rec.hash[:12],
                )
            )
            imported += source is not None
        if not rows:
            err.print("no events match")
            return
        # The imported column appears only when some event shown was imported.
        names = ("seq", "time (UTC)", "actor", "action", "subject", "imported", "hash")
        keep = [i for i, name in enumerate(names) if name != "imported" or imported]
        table = Table(box=None, pad_edge=False, header_style="bold")
        for i in keep:
            table.add_column(names[i], no_wrap=names[i] != "subject", overflow="fold")
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        out.print(table)
        if imported:
            out.print(f"{imported} event(s) marked imported: {IMPORTED_NOTE}")


class _LazyProgress:
    """A progress bar that appears only once a run has taken longer than a moment."""

    def __init__(self, label: str, delay: float = 0.5) -> None:
        self.label = label
        self.delay = delay
        self.started = time.monotonic()
        self.bar: Progress | None = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < self.delay or not err.is_terminal:
                return
            self.bar = Progress(
                TextColumn(self.label),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.completed:,}/{task.total:,} events"),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=max(total, done))
        self.bar.update(self.task, completed=done, total=max(total, done))

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def verify(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="PATH",
            help="A PDF report (*.pdf) or an evidence bundle to verify offline, with no database.",
            show_default=False,
        ),
    ] = None,
    deep: Annotated[
        bool, typer.Option(help="Also re-canonicalize and schema-check every event (slower).")
    ] = False,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="FILE",
            help="An anchored checkpoint the log must still extend (repeatable).",
        ),
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="Pin the verifier key (text or a file) that anchors and bundles must be "
            "signed with.",
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Verify an evidence bundle offline, with no database."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check every hash, link, signature, the root and anchors; exit 1 on any failure.

    Given a PATH, verify that instead of the database: a PDF report with the
    evidence it carries, or an evidence bundle (folder or zip).
    """
    from auditml._trust_cli import read_anchor, read_vkey

    if path is not None and path.suffix.lower() == ".pdf":
        _verify_report(path, read_vkey(vkey), as_json)
        return
    if path is not None and path.suffix.lower() in {".html", ".htm", ".md", ".json"}:
        with _errors():
            raise InvalidInputError(
                f"{path} is a report in {path.suffix.lower()[1:]}, which carries no evidence "
                "of its own: verify the PDF of the report, or a bundle written by "
                "`auditml export`, or the log itself with `auditml verify --db URL`"
            )
    if path is not None and bundle is None:
        bundle = path
    if bundle is not None:
        _verify_bundle(bundle, read_vkey(vkey), as_json)
        return
    progress = _LazyProgress("verifying")
    log: AuditLog | None = None
    try:
        anchors = [read_anchor(path) for path in checkpoint or ()]
        pinned = read_vkey(vkey)
        log = AuditLog.open(db)  # a head row that lies fails here, as a verification
        with log:
            report = log.verify(deep=deep, progress=progress, checkpoints=anchors, vkey=pinned)
    except VerificationError as exc:
        progress.stop()
        if as_json:
            out.print_json(
                data={
                    "ok": False,
                    "origin": None if log is None else log.origin,
                    "kind": exc.kind,
                    "seq": exc.seq,
                    "error": str(exc),
                }
            )
        else:
            err.print(f"FAILED: {exc.diagnostics()}")
            err.print(
                "The log has been changed outside auditml. Keep this store as evidence and "
                "compare it with a backup or an exported checkpoint.",
            )
        raise typer.Exit(EXIT_FAILED) from None
    except AuditmlError as exc:
        progress.stop()
        if as_json:
            out.print_json(data={"ok": False, "error": exc.diagnostics()})
        else:
            err.print(f"error: {exc.diagnostics()}")
        raise typer.Exit(EXIT_ERROR) from None
    progress.stop()
    if as_json:
        out.print_json(data=report.as_dict())
        return
    speed = ""
    if report.size >= 10_000 and report.seconds > 0:
        speed = f" ({report.size / report.seconds:,.0f} events/s)"
    out.print(
        f"OK: log {report.origin!r} is intact: {report.size:,} events verified "
        f"in {report.seconds:.2f}s{speed}"
    )
    out.print(f"root {report.root}")
    if report.signatures:
        out.print(f"{report.signatures} e-signature(s) verified against the registered keys")
    if report.checkpoint is not None:
        out.print(f"the log's latest signed checkpoint (size {report.checkpoint}) holds")
    for size in report.anchors:
        out.print(f"the log extends the anchored checkpoint at size {size}")
    if report.vkey is not None and vkey is None:
        # A whole log rewritten and re-signed with another key verifies against itself:
        # only a key held elsewhere tells them apart.
        out.print(f"log key {report.vkey}: compare it with yours, or pin it with --vkey")


@contextmanager
def _offline(as_json: bool) -> Iterator[None]:
    """Report an offline check's failure (as JSON too) with exit 1, other errors with exit 2."""
    try:
        yield
    except VerificationError as exc:
        if as_json:
            out.print_json(data={"ok": False, "kind": exc.kind, "error": str(exc)})
        else:
            err.print(f"FAILED: {exc.diagnostics()}")
        raise typer.Exit(EXIT_FAILED) from None
    except AuditmlError as exc:
        err.print(f"error: {exc.diagnostics()}")
        raise typer.Exit(EXIT_ERROR) from None


def _verify_bundle(path: Path, vkey: str | None, as_json: bool) -> None:
    """Verify an evidence bundle offline and report like ``verify`` does."""
    from auditml.bundle import verify_bundle

    with _offline(as_json):
        report = verify_bundle(path, vkey)
    if as_json:
        out.print_json(data=report.as_dict())
        return
    out.print(
        f"OK: bundle of log {report.origin!r} verifies offline: {report.size:,} events, "
        f"root {report.root}"
    )
    out.print(f"signed by {report.vkey}" + ("" if vkey else " (pin it with --vkey)"))
    if report.proofs:
        out.print(f"{report.proofs} inclusion proof(s) verified")


def _verify_report(path: Path, vkey: str | None, as_json: bool) -> None:
    """Verify a PDF report against its embedded evidence and report like ``verify`` does."""
    from auditml.reports.verify import verify_report

    with _offline(as_json):
        check = verify_report(path, vkey)
    if as_json:
        out.print_json(data=check.as_dict())
        return
    out.print(
        f"OK: report {check.report_id or path.name} is intact: its embedded evidence verifies "
        f"offline ({check.size:,} events of log {check.origin!r}, root {check.root}) and the "
        "checkpoint it prints is the one that evidence proves"
    )
    out.print(f"signed by {check.vkey}" + ("" if vkey else " (pin it with --vkey)"))


# The lifecycle and trust commands register themselves on ``app``.
from auditml import _card_cli, _lifecycle_cli, _report_cli, _trust_cli  # noqa: E402, F401

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
    "deploy": "Deploy an approved version.",
    "rollback": "Roll back to a version that ran before.",
    "retire": "Retire a version for good.",
    "status": "Show versions' states and what runs where.",
    "history": "Show a model's deployment timeline.",
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
    "card": "Build, record and compare model cards.",
    "card show": "Render a version's model card.",
    "card update": "Record a card's human-written sections.",
    "card diff": "Compare the cards of two versions.",
    "key": "The log key and people's e-signature keys.",
    "key show": "Print the log's verifier key.",
    "key list": "List people's registered keys.",
    "key register": "Register a person's public key.",
    "key revoke": "Revoke a person's key from now on.",
    "prove": "Print Merkle inclusion or consistency proofs.",
    "prove inclusion": "Prove that an event is in the log.",
    "prove consistency": "Prove that the log only grew.",
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


for _group in app.registered_groups:
    _group.short_help = SHORT_HELP[str(_group.name)]
    assert _group.typer_instance is not None
    for _command in _group.typer_instance.registered_commands:
        _command.short_help = SHORT_HELP[f"{_group.name} {_command_name(_command)}"]
        _command.cls = _Command
for _command in app.registered_commands:
    _command.short_help = SHORT_HELP[_command_name(_command)]
    _command.cls = _Command


class _Notices(logging.Handler):
    """Print auditml's warnings (e.g. a write waiting for a lock) on stderr as notes."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"note: {record.getMessage()}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; no auditml error ever ends in a traceback."""
    notices = logging.getLogger("auditml")
    if not any(isinstance(h, _Notices) for h in notices.handlers):
        notices.addHandler(_Notices(logging.WARNING))
    try:
        app(args=argv, prog_name="auditml")
    except AuditmlError as exc:
        err.print(f"error: {exc.diagnostics()}")
        sys.exit(EXIT_ERROR)
    except Exception as exc:
        if os.environ.get("AUDITML_DEBUG"):
            raise
        err.print(
            f"internal error: {type(exc).__name__}: {exc} (set AUDITML_DEBUG=1 for details, "
            "and please report it)",
        )
        sys.exit(70)
