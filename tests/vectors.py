"""Where the published test vectors live, and a skip that says so when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def vectors_dir() -> Path | None:
    """Return ``../shared/vectors`` (or ``$AUDITML_VECTORS_DIR``) when it exists."""
    override = os.environ.get("AUDITML_VECTORS_DIR")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "vectors")
    for path in candidates:
        if path.is_dir():
            return path
    return None


def require_vectors(sub: str) -> Path:
    """Return the vector folder ``sub``, or skip the test saying where it was looked for."""
    root = vectors_dir()
    if root is None or not (root / sub).is_dir():
        pytest.skip(
            f"published vectors '{sub}' not found: expected ../shared/vectors/{sub} "
            "beside the checkout, or set AUDITML_VECTORS_DIR"
        )
    return root / sub
