"""Reading the human sections of a card from a YAML or JSON file, with errors that say where."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from auditml._internal.infile import read_bounded
from auditml.core.card import validate_sections
from auditml.errors import InvalidInputError

__all__ = ["read_sections"]


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors' aliases: a card needs none, and an alias bomb grows each use."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "it uses an alias (*name), which a card file may not: write the text out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def read_sections(path: Path) -> tuple[dict[str, Any], str, str]:
    """Return the sections a file holds, the file's name and its SHA-256, or raise clearly."""
    try:
        raw = read_bounded(path, "card file", 16 << 20)
    except FileNotFoundError:
        raise InvalidInputError(
            f"no card file at {path}: write the sections as YAML, e.g. "
            "'intended_use: ...' and 'limitations: ...', and give its path"
        ) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{path} is not UTF-8 text") from None
    try:
        loaded = json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, _NoAliases)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} line {exc.lineno}: not valid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InvalidInputError(f"{path}{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise InvalidInputError(f"{path} is nested too deeply to read; flatten it") from None
    sections = validate_sections(loaded, where=str(path))
    return sections, path.name, hashlib.sha256(raw).hexdigest()
