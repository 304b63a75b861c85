"""Writing an output file whole or not at all, with errors that say why it cannot be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from auditml.errors import InvalidInputError

__all__ = ["write_output"]


def write_output(out: Path, data: bytes) -> Path:
    """Write ``data`` to ``out`` whole or not at all, or raise a sentence saying why not."""
    target = Path(out)
    if target.is_dir():
        raise InvalidInputError(f"--out {target} is a folder; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInputError(f"cannot write {target}: the folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=folder)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
