"""A command's start-up without the cyclic garbage collector (issue 20)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["startup"]


@contextmanager
def startup() -> Iterator[None]:
    """Import a command's code and open the log without the cyclic garbage collector's passes.

    Start-up makes a few hundred thousand objects (modules, classes, pydantic
    models) that live as long as the process, and frees almost none: the
    collector's passes over them were about a tenth of a short command's time
    and freed nothing. The collector is paused meanwhile, and what start-up
    made is then frozen (:func:`gc.freeze`): later passes, the command's own
    and the last one at exit, skip it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
