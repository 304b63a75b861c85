"""What every ``auditml`` command group shares: the app, the consoles, options, output, errors.

The command-group modules import from here and from below the CLI, never from
each other. This module holds the one mapping from an auditml error to the
sentence on stderr and the exit status: 1 when verification fails, 2 for bad
input or an unusable store, 3 when policy refuses an action.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.protocol import rich_cast
from rich.style import Style
from rich.table import Table
from rich.text import Text

from auditml._internal.identity import resolve_actor
from auditml._internal.keyfiles import PASSPHRASE_ENV, load_signer, passphrase_from_env
from auditml._version import __version__
from auditml.core.events import IMPORTED_NOTE
from auditml.core.privacy import actor_label
from auditml.core.signing import FileSigner
from auditml.core.text import escape_controls, needs_escape
from auditml.errors import (
    AuditmlError,
    ConfigurationError,
    InvalidInputError,
    PolicyDeniedError,
    VerificationError,
)
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


def _outcome(exc: AuditmlError) -> tuple[int, str, str]:
    for kind, status, word, style in _OUTCOMES:
        if isinstance(exc, kind):
            return status, word, style
    raise AssertionError("AuditmlError matches the last outcome")  # pragma: no cover


def exit_status(exc: AuditmlError) -> int:
    """Return the exit status an error ends the command with: 1, 2 or 3."""
    return _outcome(exc)[0]


def print_error(exc: AuditmlError) -> None:
    """Print an error as one sentence on stderr, after ``FAILED:``, ``denied:`` or ``error:``."""
    _, word, style = _outcome(exc)
    err.print(Text.assemble((word, style), f": {exc.diagnostics()}"))


@contextmanager
def errors(explain: Callable[[AuditmlError], None] = print_error) -> Iterator[None]:
    """Turn an auditml error into what ``explain`` prints (its sentence) and its exit status."""
    try:
        yield
    except AuditmlError as exc:
        explain(exc)
        raise typer.Exit(exit_status(exc)) from None


# -- options shared by several groups -------------------------------------------------------

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


def table(*columns: str, overflow: OverflowMethod = "ellipsis") -> Table:
    """Return a plain table with these columns, as every command prints one."""
    found = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        found.add_column(column, overflow=overflow)
    return found


def utc(time: str) -> str:
    """Return an event time as a table shows it: ``YYYY-MM-DD HH:MM:SS``."""
    return time[:19].replace("T", " ")


def tagged(text: str, imported: bool) -> str:
    """Return ``text`` marked ``(imported)`` when it comes from imported history."""
    return f"{text} (imported)" if imported else text


def note_imported(label: str) -> None:
    """Print the line that says what imported history is, after a table that shows some."""
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
        """Take the bar off the screen, if it ever appeared."""
        if self.bar is not None:
            self.bar.stop()


# -- passphrases ----------------------------------------------------------------------------


def ask_passphrase(what: str, *, confirm: bool = False) -> bytes:
    """Ask for a passphrase on the terminal, or raise saying how to give it without one."""
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
    return with_passphrase(lambda phrase: load_signer(path, phrase), f"the key {path}")
