"""Who is acting: an explicit id, else ``AUDITML_ACTOR``, else git user.email, else the OS user."""

from __future__ import annotations

import functools
import getpass
import os
import subprocess

from auditml.core.events import Actor
from auditml.errors import InvalidInputError

__all__ = ["resolve_actor"]


@functools.cache
def _git_email() -> str | None:
    """Return git's configured user.email, or None when git or the setting is absent."""
    try:
        out = subprocess.run(
            ["git", "config", "user.email"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    email = out.stdout.strip()
    return email or None


def resolve_actor(explicit: Actor | str | None = None, *, source: str = "api") -> Actor:
    """Return the acting identity and record where it came from.

    ``source`` says how an explicit id was given (``api`` or ``flag``).
    """
    if isinstance(explicit, Actor):
        return explicit
    if explicit is not None:
        if not explicit.strip():
            raise InvalidInputError("the actor id is empty: give a non-empty --actor or actor=")
        return Actor(id=explicit, source="flag" if source == "flag" else "api")
    env = os.environ.get("AUDITML_ACTOR", "").strip()
    if env:
        return Actor(id=env, source="env")
    email = _git_email()
    if email:
        return Actor(id=email, source="git")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(id=user or "unknown", source="os")
