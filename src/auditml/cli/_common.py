"""What every ``auditml`` command group shares: the app, the consoles, options, output, errors.

The command-group modules import from here and from below the CLI, never from
each other. This module holds the one mapping from an auditml error to the
sentence on stderr and the exit status: 1 when verification fails, 2 for bad
input or an unusable store, 3 when policy refuses an action.

Every error, ours or a usage error of Click's, is reported by :func:`report`:
one line on stderr starting ``error:`` (``denied:``, ``FAILED:``), or, when
``--json`` is on the command line, one JSON object on one line of stderr::

    {"error": "<the sentence>", "kind": "invalid_input", "exit": 2}

(a denial adds its ``rule``, ``remedy`` and ``seq``; a failed verification its
``check`` and ``seq``). Warnings and notes before it are JSON lines too
(:func:`notice`), so the error is the last line. Stdout then stays empty, or
holds only the JSON a command prints as its result (``verify --json`` prints its
failed check there).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from auditml._internal.identity import resolve_actor
from auditml.cli._startup import startup
from auditml.core.privacy import actor_label
from auditml.core.text import escape_controls, needs_escape
from auditml.errors import (
    AuditmlError,
    ConfigurationError,
    InvalidInputError,
    PolicyDeniedError,
    StoreError,
    VerificationError,
)

# What a command needs of the log, the ledger, keys and progress bars is imported when it
# runs: ``auditml status`` should not pay for what ``auditml report`` uses (issue 20).
# Rich is imported on first use too: a decision prints one plain line (issue 20).
if TYPE_CHECKING:
    from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
    from rich.progress import Progress
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

    from auditml.core.signing import FileSigner
    from auditml.ledger import Receipt
    from auditml.log import AuditLog

T = TypeVar("T")

# -- the app --------------------------------------------------------------------------------

app = typer.Typer(
    name="auditml",
    help="A verifiable audit trail for the ML model lifecycle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def group(help_text: str, **settings: Any) -> typer.Typer:
    """Return a command group (``auditml NAME ...``), made as every group is."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, **settings)


# -- the consoles ---------------------------------------------------------------------------


def _safe_text(text: Text) -> Text:
    """Return ``text`` with its control characters escaped, keeping the styles around them."""
    from rich.text import Text

    if not needs_escape(text.plain):
        return text
    cuts = sorted({i for i, ch in enumerate(text.plain) if needs_escape(ch) for i in (i, i + 1)})
    safe = text.blank_copy()
    for piece in text.divide(cuts):
        if needs_escape(piece.plain):
            piece = Text(escape_controls(piece.plain), style=piece.style)
        safe.append_text(piece)
    return safe


@functools.cache
def _safe_console() -> type[Console]:
    """Return the SafeConsole class, made (with Rich imported) the first time it is needed."""
    from rich.console import Console
    from rich.protocol import rich_cast
    from rich.text import Text

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

    return SafeConsole


def _plain(text: str) -> bool:
    """Return whether Rich would print ``text`` exactly as it is, followed by a newline.

    True for one line of printable characters: no control character to escape,
    no tab to expand (markup, emoji codes and highlighting are off).
    """
    return text.isprintable()


def _styles_show(file: Any) -> bool:
    """Return whether Rich would treat ``file`` as a terminal (its styles and colours show)."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return True  # Rich's own rules for these apply: let it decide
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return True


class LazyConsole:
    """A SafeConsole made on first use; until then, a plain line is written without Rich.

    ``auditml approve`` prints one plain line: importing Rich for it cost more than
    the decision (issue 20). Anything else (Text, tables, JSON, options, a line
    Rich would change) goes to the SafeConsole, and so does everything once it exists.
    """

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._stderr = bool(settings.get("stderr"))
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """Return the SafeConsole itself, making it the first time."""
        if self._console is None:
            self._console = _safe_console()(**self._settings)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print as the SafeConsole does."""
        file = sys.stderr if self._stderr else sys.stdout
        if (
            self._console is None
            and not kwargs
            and len(objects) == 1
            and file is not None
            and os.name != "nt"  # Rich writes to a Windows console its own way
            and "IPython" not in sys.modules  # and to a notebook
        ):
            text = self._plain_text(objects[0], file)
            if text is not None:
                file.write(text)
                file.flush()
                return
        self.console.print(*objects, **kwargs)

    def _plain_text(self, found: object, file: Any) -> str | None:
        """Return what Rich would write for ``found``, where that is known without Rich."""
        if type(found) is str:
            return found + "\n" if _plain(found) else None
        if type(found) not in (PlainTable, Styled) or _styles_show(file):
            return None
        if isinstance(found, Styled):
            text = found.plain()
            return text + "\n" if _plain(text) else None
        width = self._settings.get("width")
        return found.plain(width) if isinstance(found, PlainTable) and width else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


# Piped output is not cut to 80 columns: tables keep every field whole for grep and files.
# No Rich markup or emoji codes: paths, URLs, names and reasons print as written, brackets
# and `:name:` included.
out = LazyConsole(
    highlight=False,
    markup=False,
    emoji=False,
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 200,
)
err = LazyConsole(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from auditml._version import __version__

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


# -- errors and exit statuses ---------------------------------------------------------------

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_DENIED = 3

#: The one mapping from an error to its exit status, and the word and style its sentence
#: on stderr starts with. The first kind that matches wins.
_OUTCOMES: tuple[tuple[type[AuditmlError], int, str, str], ...] = (
    (VerificationError, EXIT_FAILED, "FAILED", "bold red"),
    (PolicyDeniedError, EXIT_DENIED, "denied", ""),
    (AuditmlError, EXIT_ERROR, "error", ""),
)


#: The ``kind`` an error has in its JSON form; the first class that matches wins.
_KINDS: tuple[tuple[type[AuditmlError], str], ...] = (
    (VerificationError, "verification_failed"),
    (PolicyDeniedError, "policy_denied"),
    (InvalidInputError, "invalid_input"),
    (ConfigurationError, "configuration"),
    (StoreError, "store"),
    (AuditmlError, "error"),
)

#: Click's base class of its own errors, and of usage errors, as the installed Typer
#: raises them (Typer 0.29 carries its own copy of Click; older ones use Click itself).
_CLICK_CLASSES = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
ClickException: type[Exception] = _CLICK_CLASSES["ClickException"]
UsageError: type[Exception] = _CLICK_CLASSES["UsageError"]

#: Whether ``--json`` is on the command line being run (set by :func:`auditml.cli.main`),
#: and the value the command's own --json option took once Click has read it (None
#: until then: a usage error can come before).
_json_line = False
_json_option: bool | None = None


def json_errors(asked: bool) -> None:
    """Say whether the command line being run has ``--json`` on it; forget the option's value."""
    global _json_line, _json_option
    _json_line, _json_option = asked, None


def _json_seen(value: bool) -> bool:
    """Keep the value of a command's --json option as Click reads it (its callback)."""
    global _json_option
    _json_option = bool(value)
    return value


def _json_wanted() -> bool:
    """Return whether errors are reported as JSON: the command's --json, else the line's."""
    return _json_line if _json_option is None else _json_option


def report(
    message: str,
    *,
    kind: str,
    status: int,
    word: str = "error",
    style: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    """Report an error on stderr: ``word: message``, or with --json one JSON object on a line.

    The JSON is ASCII (every other character escaped), so no byte of a message
    can reach the terminal raw; it holds ``error``, ``kind``, ``exit`` and ``extra``.
    """
    if _json_wanted():
        found = {"error": message, "kind": kind, "exit": status, **(extra or {})}
        stream = sys.stderr
        stream.write(json.dumps(found, ensure_ascii=True) + "\n")
        stream.flush()
        return
    from rich.text import Text

    err.print(Text.assemble((word, style), f": {message}"))


def notice(word: str, message: str) -> None:
    """Print a ``warning:`` or ``note:`` line on stderr, or with --json ``{"warning": ...}``.

    With --json, every line on stderr is then one JSON object: scripts can read
    the warnings, and the error (the object with ``error``) comes last.
    """
    if _json_wanted():
        sys.stderr.write(json.dumps({word: message}, ensure_ascii=True) + "\n")
        sys.stderr.flush()
    else:
        err.print(f"{word}: {message}")


def _outcome(exc: AuditmlError) -> tuple[int, str, str]:
    for kind, status, word, style in _OUTCOMES:
        if isinstance(exc, kind):
            return status, word, style
    raise AssertionError("AuditmlError matches the last outcome")  # pragma: no cover


def exit_status(exc: AuditmlError) -> int:
    """Return the exit status an error ends the command with: 1, 2 or 3."""
    return _outcome(exc)[0]


def error_kind(exc: AuditmlError) -> str:
    """Return the ``kind`` of an error's JSON form, e.g. ``invalid_input``."""
    return next(name for cls, name in _KINDS if isinstance(exc, cls))


def print_error(exc: AuditmlError) -> None:
    """Print an error as one sentence on stderr, after ``FAILED:``, ``denied:`` or ``error:``.

    With --json, print it as one JSON object instead (see :func:`report`).
    """
    status, word, style = _outcome(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, PolicyDeniedError):
        extra = {"rule": exc.rule, "remedy": exc.remedy, "seq": exc.seq}
    elif isinstance(exc, VerificationError):
        extra = {"check": exc.kind, "seq": exc.seq}
    report(
        exc.diagnostics(), kind=error_kind(exc), status=status, word=word, style=style, extra=extra
    )


def print_click_error(exc: Any) -> None:
    """Report an error of Click's (a usage error) as ours are: ``error:`` first, or JSON.

    The usage line and the hint to ``--help`` follow the sentence, as Click
    prints them; with --json there is only the JSON object. A command line with
    no command at all still prints the help, as Click does.
    """
    if type(exc).__name__ == "NoArgsIsHelpError":  # Click's help for a bare group: not an error
        exc.show()
        return
    usage = isinstance(exc, UsageError)
    report(exc.format_message(), kind="usage" if usage else "error", status=exc.exit_code)
    ctx = exc.ctx if usage else None
    if ctx is None or _json_wanted():
        return
    err.print(ctx.get_usage())
    if ctx.command.get_help_option(ctx) is not None:
        err.print(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")


def print_aborted() -> None:
    """Say that a prompt was ended (Ctrl-D) as Click does, or as JSON with --json."""
    if _json_wanted():
        report("aborted", kind="aborted", status=1)
    else:
        err.print("Aborted!")


@contextmanager
def errors(explain: Callable[[AuditmlError], None] = print_error) -> Iterator[None]:
    """Turn an auditml error into what ``explain`` prints (its sentence) and its exit status."""
    try:
        yield
    except AuditmlError as exc:
        explain(exc)
        raise typer.Exit(exit_status(exc)) from None


# -- options shared by several groups -------------------------------------------------------


def _db_url(value: str | None) -> str | None:
    """Read a --db given as a plain file path (no ``scheme://``) as the SQLite file there."""
    if value is None or "://" in value or not value.strip():
        return value
    from urllib.parse import quote

    return f"sqlite:///{quote(value, safe='/')}"  # '?', '#' and '%' are part of a file name


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database URL: sqlite:///path (or just the SQLite file's path) or "
        "postgresql://… [default: $AUDITML_DATABASE_URL, else ./.auditml/audit.db]",
        show_default=False,
        callback=_db_url,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON instead of text (errors too, on stderr).",
        callback=_json_seen,
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing output file (never the log's database or a key file).",
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor",
        metavar="ID",
        help="Who is acting [default: $AUDITML_ACTOR, else git user.email, else the OS user]",
        show_default=False,
    ),
]
ReasonOption = Annotated[str | None, typer.Option(metavar="TEXT", help="Why.")]
ModelArgument = Annotated[str, typer.Argument(help="The model's name.")]
OnlyModelArgument = Annotated[str | None, typer.Argument(help="Only this model.")]


def open_log(db: str | None) -> AuditLog:
    """Open the log that ``--db`` names (or the default one)."""
    with startup():
        from auditml.log import AuditLog

        return AuditLog.open(db)


def actor_names(log: AuditLog) -> Callable[[str], str]:
    """Return how a command shows actor ids: a pseudonym with its person while the directory knows.

    The directory is read once; an id that is no pseudonym, or one whose
    identity was erased, is shown as it is.
    """
    directory = log.actors()
    if not directory:
        return lambda actor_id: actor_id
    return lambda actor_id: actor_label(actor_id, directory)


def who(actor: str | None) -> Any:
    """Return the actor that ``--actor`` names, or the one found in the environment."""
    return resolve_actor(actor, source="flag")


# -- output ---------------------------------------------------------------------------------


def done(receipt: Receipt, text: str, as_json: bool) -> None:
    """Say what was recorded and at which event, or print its receipt as JSON."""
    if as_json:
        out.print_json(data=asdict(receipt))
    else:
        out.print(f"{text} (event {receipt.seq})")


def table(*columns: str, overflow: OverflowMethod = "ellipsis") -> PlainTable:
    """Return a plain table with these columns, as every command prints one."""
    found = PlainTable()
    for column in columns:
        found.add_column(column, overflow=overflow)
    return found


class PlainTable:
    """A table laid out as Rich lays out a borderless one, written without Rich when it can be.

    Printed to a console that exists, or where a cell is not a printable ASCII
    string or the table is wider than the console, it is Rich's ``Table``
    (``__rich__``). Otherwise (output to a pipe or a file, no console yet) its
    lines are written as that table prints them: each column as wide as its
    widest cell, cells left-justified and padded, two spaces between columns.
    Column options (overflow, wrapping) only matter to a table too wide, which
    Rich prints. A test holds the two to the same bytes.
    """

    def __init__(self) -> None:
        self.columns: list[tuple[str, dict[str, Any]]] = []
        self.rows: list[tuple[Any, ...]] = []

    def add_column(self, header: str, **options: Any) -> None:
        """Add a column, with Rich's column options."""
        self.columns.append((header, options))

    def add_row(self, *cells: Any) -> None:
        """Add a row of cells, one per column."""
        self.rows.append(cells)

    def __rich__(self) -> Table:
        """Return the table as Rich's."""
        from rich.table import Table

        found = Table(box=None, pad_edge=False, header_style="bold")
        for header, options in self.columns:
            found.add_column(header, **options)
        for row in self.rows:
            found.add_row(*row)
        return found

    def plain(self, width: int) -> str | None:
        """Return the lines Rich would print at ``width`` columns, or None where unsure."""
        lines = [tuple(header for header, _ in self.columns), *self.rows]
        if not self.columns or not all(len(row) == len(self.columns) for row in lines):
            return None
        cells = [cell for row in lines for cell in row]
        if not all(type(c) is str and c.isascii() and c.isprintable() for c in cells):
            return None
        widths = [max(map(len, column)) for column in zip(*lines, strict=True)]
        if not all(widths) or sum(widths) + 2 * (len(widths) - 1) > width:
            return None
        return "".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + "\n"
            for row in lines
        )


class Styled:
    """A line of parts, each with a Rich style, written without Rich where styles don't show."""

    def __init__(self, *parts: str | tuple[str, str]) -> None:
        self.parts = parts

    def __rich__(self) -> Text:
        """Return the line as Rich's Text."""
        from rich.text import Text

        return Text.assemble(*self.parts)

    def plain(self) -> str:
        """Return the line's text, without its styles."""
        return "".join(part if isinstance(part, str) else part[0] for part in self.parts)


def utc(time: str) -> str:
    """Return an event time as a table shows it: ``YYYY-MM-DD HH:MM:SS``."""
    return time[:19].replace("T", " ")


def tagged(text: str, imported: bool) -> str:
    """Return ``text`` marked ``(imported)`` when it comes from imported history."""
    return f"{text} (imported)" if imported else text


def note_imported(label: str) -> None:
    """Print the line that says what imported history is, after a table that shows some."""
    from auditml.core.events import IMPORTED_NOTE

    out.print(f"{label}: {IMPORTED_NOTE}")


class LazyProgress:
    """A progress bar on stderr that appears only once a run has taken longer than a moment."""

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
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn(self.label),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.completed:,}/{task.total:,} events"),
                TimeRemainingColumn(),
                console=err.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=max(total, done))
        self.bar.update(self.task, completed=done, total=max(total, done))

    def stop(self) -> None:
        """Take the bar off the screen, if it ever appeared."""
        if self.bar is not None:
            self.bar.stop()


# -- passphrases ----------------------------------------------------------------------------


def ask_passphrase(what: str, *, confirm: bool = False) -> bytes:
    """Ask for a passphrase on the terminal, or raise saying how to give it without one."""
    from auditml._internal.keyfiles import PASSPHRASE_ENV

    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"{what} needs a passphrase: set {PASSPHRASE_ENV}, or run this on a terminal"
        )
    text: str = typer.prompt(
        f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm, err=True
    )
    if not text:
        raise InvalidInputError("the passphrase is empty")
    return text.encode()


def with_passphrase(run: Callable[[bytes | None], T], what: str) -> T:
    """Run ``run`` with the env passphrase; if an encrypted key needs one, ask and run again."""
    from auditml._internal.keyfiles import passphrase_from_env

    try:
        return run(passphrase_from_env())
    except ConfigurationError as exc:
        if "is encrypted" not in str(exc) or passphrase_from_env() is not None:
            raise
        if not sys.stdin.isatty():
            raise
        return run(ask_passphrase(what))


def load_person_key(path: Path) -> FileSigner:
    """Load a person's signing key for --sign-with, asking for its passphrase if needed."""
    from auditml._internal.keyfiles import load_signer

    return with_passphrase(lambda phrase: load_signer(path, phrase), f"the key {path}")


class KeyWhenUsed:
    """A person's signing key for --sign-with, loaded (its passphrase asked) when first used.

    A decision checks every other rule before it signs: one the policy refuses,
    or of a version that does not exist, never reads the key nor asks for its
    passphrase.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signer: FileSigner | None = None

    def _loaded(self) -> FileSigner:
        if self._signer is None:
            self._signer = load_person_key(self.path)
        return self._signer

    @property
    def public_key(self) -> bytes:
        """Return the raw Ed25519 public key, loading the key first."""
        return self._loaded().public_key

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``, loading the key first."""
        return self._loaded().sign(message)


# -- MLflow ---------------------------------------------------------------------------------


def _training_run(log: AuditLog, model: str, version: str) -> tuple[str | None, str]:
    """Return the MLflow run auditml's training of a version names, and which training it is."""
    from auditml.registry import training_run

    state = log.status(model).get(model)
    held = state.versions.get(version) if state is not None else None
    seq = held.trained_seq if held is not None else None
    if seq is None:
        return None, "no training on the log"
    for record in log.events(model=model, action="model.train", start=seq, stop=seq + 1):
        run, imported = training_run(record.event.data)
        return run, f"{'imported' if imported else 'live'}, event {seq}"
    return None, f"event {seq}"


def sync_alias(log: AuditLog, model: str, version: str, env: str, seq: int, actor: Any) -> None:
    """Move the MLflow alias that stands for ``env`` after decision ``seq``; record the outcome.

    Does nothing unless the policy in force maps ``env`` to an alias. The
    decision stands whatever happens: a failure is printed and recorded.
    """
    rules = log.policy()[0].mlflow
    alias = rules.aliases.get(env)
    if alias is None:
        return
    uri = rules.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    previous = error = None
    shown = uri or ""
    try:
        if not uri:
            raise InvalidInputError(
                "no tracking URI: set tracking_uri in the policy's [mlflow] table or "
                "MLFLOW_TRACKING_URI"
            )
        from auditml import mlflow_bridge as bridge

        shown = bridge.shown_uri(uri)
        client = bridge.client_for(uri)
        ours, what = _training_run(log, model, version)
        bridge.check_same_training(client, uri, model, version, ours, what)
        previous = bridge.move_alias(client, uri, model, alias, version)
    except AuditmlError as exc:
        error = str(exc)
    try:
        receipt = log.record_registry_sync(
            model=model,
            version=version,
            environment=env,
            alias=alias,
            decision_seq=seq,
            uri=shown,
            previous=previous,
            error=error,
            actor=actor,
        )
    except InvalidInputError as exc:  # e.g. another decision in env since this one
        done = "was moved" if error is None else "was not moved"
        notice(
            "warning",
            f"the {env} decision stands (event {seq}); MLflow's alias {model}@{alias} {done}, "
            f"but that could not be recorded: {exc}. The next `auditml mlflow watch` records "
            "what MLflow shows",
        )
        return
    if error is None:
        moved = (
            f"MLflow: moved {model}@{alias} to version {version}"
            + (f" (was {previous})" if previous else "")
            + f" (event {receipt.seq})"
        )
        if _json_wanted():
            notice("note", moved)
        else:
            err.print(moved)
    else:
        notice(
            "warning",
            f"the {env} decision stands (event {seq}), but MLflow's alias "
            f"{model}@{alias} was NOT moved to version {version}: {error} (recorded as event "
            f"{receipt.seq}); move the alias in MLflow by hand to match",
        )
