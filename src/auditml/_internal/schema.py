"""JSON Schemas generated from the event models; ``python -m auditml._internal.schema`` writes them.

The checked-in files are the published contract; a test fails when they drift
from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from auditml.core.events import ACTIONS, Event

__all__ = ["render_schemas", "write_schemas"]

_BASE = "https://auditml.dev/schemas/v1/"


def _schema(model: type[BaseModel], name: str, title: str) -> str:
    schema = model.model_json_schema(mode="serialization")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": _BASE + name,
        **schema,
        "title": title,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """Return every schema file's name and text: the envelope, one per action, the model card."""
    files = {"event.schema.json": _schema(Event, "event.schema.json", "auditml event (v1)")}
    for action, model in sorted(ACTIONS.items()):
        name = f"data/{action}.schema.json"
        files[name] = _schema(model, name, f"data of {action}")
    from auditml.core.card import ModelCard

    name = "model-card.schema.json"
    files[name] = _schema(ModelCard, name, "auditml model card (v1)")
    return files


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema under ``folder`` and return the paths written."""
    written = []
    for name, text in render_schemas().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("schemas")
    for path in write_schemas(target):
        print(path)
