"""The ``auditml card`` commands: render or export a card, record its human sections, diff two.

``auditml card MODEL VERSION`` renders; ``auditml card update``, ``auditml
card diff`` and ``auditml card template`` are subcommands. (A model literally
named ``update``, ``diff`` or ``template`` is rendered with ``auditml card show
update VERSION``.)
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from auditml.cli._common import (
    ActorOption,
    DbOption,
    ForceOption,
    JsonOption,
    ModelArgument,
    ReasonOption,
    app,
    done,
    errors,
    group,
    open_log,
    out,
    table,
    who,
)
from auditml.core.text import escape_controls
from auditml.errors import AuditmlError, ConfigurationError, InvalidInputError, StoreError

if TYPE_CHECKING:
    from auditml.cards.diff import CardDiff
    from auditml.log import AuditLog

#: The card formats, as auditml.cards.render.FORMATS names them (a test holds them equal):
#: the cards package is imported only when a card command runs.
FORMATS = ("html", "md", "pdf", "json", "mct", "huggingface", "cyclonedx")


class _ShowByDefault(TyperGroup):
    """A group whose first argument, when it names no subcommand, means ``show``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click.Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


card_app = group(
    "Model cards built from the log: render or export one, record its human sections, "
    "diff two versions. `auditml card MODEL VERSION` renders a card.",
    cls=_ShowByDefault,
)
app.add_typer(card_app, name="card")

TemplatesOption = Annotated[
    Path | None,
    typer.Option(
        "--templates",
        metavar="DIR",
        help="A folder of templates that override auditml's (card.html.j2, card.md.j2, card.css).",
    ),
]


#: The file suffix each card format is written with.
SUFFIXES = {
    "html": ".html",
    "md": ".md",
    "pdf": ".pdf",
    "json": ".json",
    "mct": ".json",
    "cyclonedx": ".json",
    "huggingface": ".md",
}


def _card_format(fmt: str | None, out_path: Path | None) -> str:
    """Return the card format: the one asked for, else the one --out's suffix names, else md.

    A suffix that names another format than the one asked for is refused, so a
    file called card.pdf never holds Markdown.
    """
    suffix = "" if out_path is None else out_path.suffix.lower()
    named = {".html": "html", ".htm": "html", ".md": "md", ".pdf": "pdf", ".json": "json"}.get(
        suffix
    )
    if fmt is None:
        return named or "md"
    if named is not None and SUFFIXES.get(fmt) != SUFFIXES[named]:
        raise InvalidInputError(
            f"--out {out_path} names a {named} file, but --format is {fmt}: give a file "
            f"ending in {SUFFIXES.get(fmt, '.' + fmt)}, or leave out --format"
        )
    return fmt


def _sign_head(log: AuditLog) -> None:
    """Sign a checkpoint at the head when the key is at hand, so a card file binds every event.

    Without the key (or write access) the card binds the latest checkpoint, and says
    which of its events that checkpoint does not cover yet.
    """
    latest = log.latest_checkpoint()
    if latest is not None and latest.size >= log.head().size:
        return
    with contextlib.suppress(ConfigurationError, StoreError):
        log.checkpoint()


@card_app.command("show")
def show(
    model: ModelArgument,
    version: Annotated[str, typer.Argument(help="The version.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help=f"One of {', '.join(FORMATS)} [default: what --out's suffix names, else md].",
            show_default=False,
        ),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write here [default: stdout]."),
    ] = None,
    templates: TemplatesOption = None,
    force: ForceOption = False,
    db: DbOption = None,
) -> None:
    """Render the card of MODEL VERSION, built from the log, in one of the formats."""
    from auditml._internal.output import check_output, write_output
    from auditml.cards.build import build_card
    from auditml.cards.render import render_card

    with errors():
        fmt = _card_format(fmt, out_path)
        if fmt not in FORMATS:
            raise InvalidInputError(
                f"unknown card format {fmt!r}: choose one of {', '.join(FORMATS)}"
            )
        if fmt == "pdf" and out_path is None:
            raise InvalidInputError("a PDF card needs --out FILE.pdf")
        with open_log(db) as log:
            protect = log._own_files()
            if out_path is not None:
                check_output(out_path, force=force, protect=protect)  # before rendering
                _sign_head(log)
            card = build_card(log, model, version)
        data = render_card(card, fmt, templates=templates)
        if out_path is None:
            sys.stdout.write(escape_controls(data.decode()))  # \uXXXX: also valid JSON
            return
        write_output(out_path, data, force=force, protect=protect)
        pct = f"{card.completeness.score:.0%}"
        missing = card.completeness.missing
        note = f"; missing {', '.join(missing)}" if missing else ""
        out.print(f"Wrote the {fmt} card of {model} {version} to {out_path} ({pct} complete{note})")


@card_app.command("template")
def template(
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write here [default: stdout]."),
    ] = None,
    force: ForceOption = False,
    db: DbOption = None,
) -> None:
    """Print a YAML file of every card section, commented out, to fill in for `card update`."""
    from auditml._internal.output import check_output, write_output
    from auditml.core.card_sections import SECTION_EXAMPLES, SECTION_TITLES

    with errors():
        required: list[str] = []
        # No log yet: no policy to mark the sections it requires.
        with contextlib.suppress(AuditmlError), open_log(db) as log:
            required = list(log.policy()[0].cards.required)
        if out_path is not None:
            check_output(out_path, force=force)
        lines = [
            "# The sections of a model card that people write: the log cannot know them.",
            "# Uncomment a section (remove the '# ' before each of its lines), write your own",
            "# text in place of the example, then record the file:",
            "#   auditml card update MODEL [VERSION] card.yaml",
        ]
        if required:
            lines.append(f"# Policy requires: {', '.join(required)}.")
        for name, title in SECTION_TITLES.items():
            mark = " (required by policy)" if name in required else ""
            lines += ["", f"# {title}{mark}"]
            lines += [f"# {line}" for line in SECTION_EXAMPLES[name].splitlines()]
        text = "\n".join(lines) + "\n"
        if out_path is None:
            sys.stdout.write(text)
            return
        write_output(out_path, text.encode(), force=force)
        out.print(f"Wrote a card template of {len(SECTION_TITLES)} sections to {out_path}")


@card_app.command("update")
def update(
    model: ModelArgument,
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[VERSION] FILE",
            help="The version (leave out to write for every version), then a YAML or JSON "
            "file of sections, e.g. 'intended_use: ...' (`auditml card template` prints "
            "every section to fill in).",
        ),
    ],
    reason: ReasonOption = None,
    actor: ActorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record the human-written sections of a card, as a card.update event."""
    with errors():
        if len(args) not in (1, 2):
            raise InvalidInputError("give [VERSION] FILE: the version is optional, the file is not")
        version, file = (None, args[0]) if len(args) == 1 else (args[0], args[1])
        with open_log(db) as log:
            receipt = log.update_card(
                model, Path(file), version=version, reason=reason, actor=who(actor)
            )
        whose = f"{model} version {version}" if version else f"every version of {model}"
        done(receipt, f"Recorded the card sections of {file} for {whose}", as_json)


@card_app.command("diff")
def diff(
    model: ModelArgument,
    old: Annotated[str, typer.Argument(metavar="V1", help="The earlier version.")],
    new: Annotated[str, typer.Argument(metavar="V2", help="The later version.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what changed between the cards of V1 and V2: metrics, data, code, params, text."""
    from auditml.cards.build import build_card
    from auditml.cards.diff import diff_cards

    with errors(), open_log(db) as log:
        result = diff_cards(build_card(log, model, old), build_card(log, model, new))
    if as_json:
        out.print_json(json.dumps(result.model_dump(mode="json")))
        return
    _print_diff(result)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _print_diff(result: CardDiff) -> None:
    out.print(f"{result.model}: version {result.old_version} → {result.new_version}")
    versions = (f"v{result.old_version}", f"v{result.new_version}")
    changed = [m for m in result.metrics if m.kind != "same"]
    if changed:
        shown = table("metric", "slice", "from", *versions, "delta", overflow="fold")
        for m in changed:
            delta = "" if m.delta is None else f"{m.delta:+.6g}"
            sources = dict.fromkeys(s for s in (m.old_source, m.new_source) if s is not None)
            shown.add_row(
                m.name, m.slice or "all", " → ".join(sources), _fmt(m.old), _fmt(m.new), delta
            )
        out.print(shown)
    groups = (
        ("data", result.datasets),
        ("artifacts", result.artifacts),
        ("code", result.code),
        ("environment", result.environment),
        ("parameters", result.params),
        ("card sections", result.sections),
    )
    for title, changes in groups:
        if not changes:
            continue
        shown = table(title, "change", *versions, overflow="fold")
        for c in changes:
            shown.add_row(
                c.name,
                c.kind,
                "not recorded" if c.old is None else _fmt(c.old),
                "not recorded" if c.new is None else _fmt(c.new),
            )
        out.print(shown)
    if result.empty:
        out.print("The two cards hold the same metrics, data, code, parameters and sections.")
