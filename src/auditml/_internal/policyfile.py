"""Reading a policy file (``auditml.toml``): the file I/O around :mod:`auditml.core.policy`."""

from __future__ import annotations

import os
from pathlib import Path

from auditml._internal.infile import read_bounded
from auditml.core.policy import Policy, policy_from_toml
from auditml.errors import InvalidInputError

__all__ = ["load_policy"]


def load_policy(path: str | os.PathLike[str]) -> tuple[Policy, bytes]:
    """Read a TOML policy file; return the policy and the file's bytes, or raise clearly."""
    file = Path(path)
    try:
        raw = read_bounded(file, "policy file", 16 << 20)
    except FileNotFoundError:
        raise InvalidInputError(
            f"no policy file at {file}: write one (see `auditml policy --help`)"
        ) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read the policy file {file}: {exc.strerror}") from None
    return policy_from_toml(raw, where=str(file)), raw
