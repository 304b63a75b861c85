"""Finding and loading the Jinja2 templates: a user's folder first, then the ones auditml ships."""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.loaders import split_template_path
from markupsafe import Markup

from auditml._internal.infile import open_regular
from auditml.core.text import escape_controls
from auditml.errors import InvalidInputError

__all__ = [
    "FIELD_CHARS",
    "bounded",
    "check_templates",
    "md_escape",
    "packaged_templates",
    "template_env",
]

#: The most characters of one field a document shows; the JSON output, the log
#: and the evidence bundle keep the whole text. Longer text costs a PDF renderer
#: time that grows with the square of its length (30 KB took a minute).
FIELD_CHARS = 2000
#: A run of this many characters with no break opportunity gets one (a zero-width
#: space every ``_BREAK_EVERY``), so a table column can wrap it. Hashes (64) and
#: verifier keys of origins up to ~65 characters stay whole, for copying.
_LONG_RUN = re.compile(r"\S{121,}")
_BREAK_EVERY = 60
_ZWSP = "\u200b"


class Bounded(str):
    """Text already made fit for a document by :func:`bounded`; not cut again."""

    __slots__ = ()


def bounded(value: object, seq: int | None = None, *, breaks: bool = False) -> object:
    """Make one field fit for a document: controls escaped, capped at FIELD_CHARS.

    Text longer than :data:`FIELD_CHARS` keeps its beginning and says how long it
    was and where the full text is: event ``seq`` when given. With ``breaks``
    (HTML), very long unbroken runs get zero-width spaces so they wrap cheaply.
    Markup (the templates' own HTML, charts) and non-text values pass unchanged,
    but for control characters escaped in Markup.
    """
    if isinstance(value, Bounded) or value is None:
        return value
    if isinstance(value, Markup):
        return Markup(escape_controls(str(value)))
    if not isinstance(value, str):
        return value
    text = escape_controls(value)
    if len(value) > FIELD_CHARS:
        where = f"event {seq}" if seq is not None else "the log and the JSON output"
        text = (
            f"{text[:FIELD_CHARS]}… (truncated: {len(value):,} characters in total; "
            f"full text in {where})"
        )
    if breaks:
        text = _LONG_RUN.sub(_break_run, text)
    return Bounded(text)


def _break_run(match: re.Match[str]) -> str:
    run = match.group()
    return _ZWSP.join(run[i : i + _BREAK_EVERY] for i in range(0, len(run), _BREAK_EVERY))


@cache
def packaged_templates() -> Path:
    """Return the templates folder: inside the installed package, or the source checkout's."""
    package = Path(__file__).resolve().parents[1]  # auditml/, above _internal/
    for candidate in (package / "templates", package.parents[1] / "templates"):
        if candidate.is_dir():
            return candidate
    raise InvalidInputError(  # pragma: no cover - a broken install
        "auditml's templates are missing from this installation; reinstall auditml"
    )


_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}()#+!|~>])")
_MD_BULLET = re.compile(r"^(\s*)(-(?=[\s-]|$)|=)", re.MULTILINE)
_MD_NUMBERED = re.compile(r"^(\s*\d+)([.)])(?=\s|$)", re.MULTILINE)


def md_escape(value: object) -> Markup:
    """Escape text for Markdown so it shows as written: no markup, HTML or structure."""
    if value is None:
        return Markup("")
    if isinstance(value, Markup):
        return value
    text = str(bounded(value)).replace("&", "&amp;").replace("<", "&lt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_BULLET.sub(r"\1\\\2", text)
    return Markup(_MD_NUMBERED.sub(r"\1\\\2", text))


def md_cell(value: object) -> Markup:
    """Escape text for one Markdown table cell: escaped, on one line."""
    return Markup(" ".join(md_escape(value).split()) or " ")


def check_templates(user: Path) -> None:
    """Refuse a ``--templates`` path that is not a folder, saying whether it exists at all."""
    if not user.is_dir():
        found = "is not a folder" if os.path.lexists(user) else "no such folder"
        raise InvalidInputError(f"--templates {user}: {found}")


class _Loader(FileSystemLoader):
    """Jinja's file loader, but a template is opened without blocking and must be a file.

    A named pipe or a link to a device in a user's templates folder is refused
    with a sentence naming it, never read: reading it would hang the command.
    """

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        """Return the template's text from the first folder holding it, as Jinja does."""
        pieces = split_template_path(template)
        for folder in self.searchpath:
            filename = posixpath.join(folder, *pieces)
            if not os.path.lexists(filename):
                continue
            try:
                with open_regular(filename, f"template {template}") as f:
                    contents = f.read().decode(self.encoding)
                    mtime = os.fstat(f.fileno()).st_mtime
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidInputError(f"cannot read the template {filename}: {exc}") from None

            def uptodate(filename: str = filename, mtime: float = mtime) -> bool:
                try:
                    return os.path.getmtime(filename) == mtime
                except OSError:
                    return False

            return contents, os.path.normpath(filename), uptodate
        raise TemplateNotFound(template)


def template_env(user: Path | None = None, *, markdown: bool = False) -> Environment:
    """Return a Jinja2 environment over the user's folder (if any) and the packaged templates.

    HTML templates autoescape; Markdown templates escape every value for
    Markdown instead. Either way a field's text is shown, never interpreted.
    """
    folders = [packaged_templates()]
    if user is not None:
        check_templates(user)
        folders.insert(0, user)
    finalize: Callable[[Any], Any] = md_escape if markdown else _html_field
    env = Environment(
        loader=_Loader([str(f) for f in folders]),
        autoescape=False if markdown else select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    env.filters.update(cell=md_cell, short=_short, stamp=_stamp, day=_day, num=_number, css=_css)
    # Every value printed passes bounded (as finalize). ``clip(seq)`` names the event
    # that holds a long text in full; join and tojson give plain text so their
    # results are bounded and escaped like any other value.
    env.filters.update(clip=_clip_md if markdown else _clip_html, join=_join, tojson=_tojson)
    return env


def _html_field(value: object) -> object:
    return bounded(value, breaks=True)


def _clip_html(value: object, seq: int | None = None) -> object:
    return bounded(value, seq, breaks=True)


def _clip_md(value: object, seq: int | None = None) -> object:
    return bounded(value, seq)


def _join(value: Iterable[object], d: str = "", attribute: str | None = None) -> str:
    """Join as Jinja's join does, but to plain text: printing it escapes and bounds it."""
    items = (getattr(v, attribute) if attribute else v for v in value)
    return str(d).join(str(v) for v in items)


def _tojson(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _short(value: object, n: int = 12) -> str:
    return "" if value is None else str(value)[:n]


def _stamp(value: object) -> str:
    """Show an RFC 3339 UTC time as ``YYYY-MM-DD HH:MM:SS`` (the page says UTC once)."""
    if not isinstance(value, str) or not value:
        return ""
    return value[:19].replace("T", " ")


def _day(value: object) -> str:
    return _stamp(value)[:10]


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _css(value: object) -> Markup:
    """Quote text as a CSS string literal, e.g. for a page's margin boxes."""
    text = re.sub(r"[^\w .:/@+-]", "?", str(value))
    return Markup(f'"{text}"')
