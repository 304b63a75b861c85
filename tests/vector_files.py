"""Where the published test vectors live: ``tests/vectors/``, shipped with the repository.

They were copied as published (see ``tests/vectors/SOURCES.md`` for each
folder's source and license), so a fresh clone runs every vector test.
``AUDITML_VECTORS_DIR`` points the tests at another copy, e.g. a newer one.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "vectors"


def vectors_dir() -> Path:
    """Return ``$AUDITML_VECTORS_DIR`` when set, else the vectors shipped in ``tests/vectors``."""
    override = os.environ.get("AUDITML_VECTORS_DIR")
    return Path(override) if override else SHIPPED


def require_vectors(sub: str) -> Path:
    """Return the vector folder ``sub``; a missing one is an error, never a skip."""
    path = vectors_dir() / sub
    if not path.is_dir():
        raise FileNotFoundError(
            f"published vectors {sub!r} not found at {path}: they ship in tests/vectors/ "
            "(or set AUDITML_VECTORS_DIR to a copy of them)"
        )
    return path
