"""The public API, written down: a change to it shows here and must be deliberate."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import auditml

SNAPSHOT = Path(__file__).parent / "snapshots" / "public_api.json"


def _signature(obj: Any) -> str:
    """Return a callable's signature as text, or a marker for what is not callable."""
    if isinstance(obj, property):
        return "property"
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return type(obj).__name__


def _members(cls: type) -> dict[str, str]:
    """Every public attribute a class defines or inherits, with its signature."""
    found: dict[str, str] = {}
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, (staticmethod, classmethod)):
            raw = getattr(cls, name)
        found[name] = _signature(raw)
    return found


def current_api() -> dict[str, Any]:
    """Return the names auditml exports, each function's signature and AuditLog's methods."""
    names: dict[str, str] = {}
    for name in auditml.__all__:
        value = getattr(auditml, name)
        if inspect.isclass(value):
            names[name] = "class"
        elif callable(value):
            names[name] = _signature(value)
        else:
            names[name] = type(value).__name__
    return {"__all__": names, "AuditLog": _members(auditml.AuditLog)}


def test_public_api_matches_snapshot() -> None:
    """__all__, each public function's signature and each AuditLog method are as recorded."""
    api = current_api()
    if os.environ.get("AUDITML_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(api, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert api == recorded
