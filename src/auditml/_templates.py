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
    env.filters["cell"] = md_cell
    env.filters["short"] = lambda h, n=12: "" if h is None else str(h)[:n]
    return env
