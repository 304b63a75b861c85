"""A command's start-up without the cyclic garbage collector's passes (issue 20)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["command_done", "startup"]

#: Whether the process runs its first command: only that one's start-up is frozen.
_first_command = True


@contextmanager
def startup() -> Iterator[None]:
    """Import a command's code and open the log without the cyclic garbage collector's passes.

    Start-up makes a few hundred thousand objects (modules, classes, pydantic
    models) that live as long as the process, and frees almost none: the
    collector's passes over them were about a tenth of a short command's time
    and freed nothing. The collector is paused meanwhile; in the process's
    first command what start-up made is then frozen (:func:`gc.freeze`), so
    that later passes, the command's own and the last one at exit, skip it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _first_command:
            gc.freeze()
        if enabled:
            gc.enable()


def command_done() -> None:
    """Freeze nothing more: a process running more commands (a test suite) keeps them collectable.

    An ``auditml`` process runs one command; a process calling the CLI again
    holds, by then, objects of its own that must stay collectable.
    """
    global _first_command
    _first_command = False
