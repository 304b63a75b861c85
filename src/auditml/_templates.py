"""Finding and loading the Jinja2 templates: a user's folder first, then the ones auditml ships."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from auditml.errors import InvalidInputError

__all__ = ["md_escape", "packaged_templates", "template_env"]


@cache
def packaged_templates() -> Path:
    """Return the templates folder: inside the installed package, or the source checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parents[1] / "templates"):
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
    text = str(value).replace("&", "&amp;").replace("<", "&lt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _MD_BULLET.sub(r"\1\\\2", text)
    return Markup(_MD_NUMBERED.sub(r"\1\\\2", text))


def md_cell(value: object) -> Markup:
    """Escape text for one Markdown table cell: escaped, on one line."""
    return Markup(" ".join(md_escape(value).split()) or " ")


def template_env(user: Path | None = None, *, markdown: bool = False) -> Environment:
    """Return a Jinja2 environment over the user's folder (if any) and the packaged templates.

    HTML templates autoescape; Markdown templates escape every value for
    Markdown instead. Either way a field's text is shown, never interpreted.
    """
    folders = [packaged_templates()]
    if user is not None:
        if not user.is_dir():
            raise InvalidInputError(f"--templates {user}: no such folder")
        folders.insert(0, user)
    finalize: Callable[[Any], Any] | None = md_escape if markdown else None
    env = Environment(
        loader=FileSystemLoader([str(f) for f in folders]),
        autoescape=False if markdown else select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    env.filters.update(cell=md_cell, short=_short, stamp=_stamp, day=_day, num=_number, css=_css)
    return env


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
