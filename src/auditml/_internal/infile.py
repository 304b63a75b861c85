"""Opening a file auditml reads, refusing anything that is not a regular file, without blocking.

A named pipe (FIFO), a device (``/dev/zero``, a terminal, ``/dev/stdin``
attached to one), a socket or a folder given where a file belongs would hang
a command (a FIFO blocks until a writer comes; ``/dev/zero`` never ends) or
fail with an error that names something else. Every input file the library and
the CLI read goes through :func:`open_regular`:

- the path is opened with ``O_NONBLOCK``, so opening a FIFO with no writer
  returns at once instead of waiting;
- what was opened is checked with ``fstat`` on that descriptor, not with a
  ``stat`` of the path before opening it: the file checked is the file read,
  whatever replaces the path meanwhile;
- anything but a regular file is refused with a sentence naming what it is,
  before a byte of it is read.

Errors from opening itself (a missing file, no permission) are raised as the
``OSError`` they are, so each caller keeps its own sentence for them.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from auditml.errors import AuditmlError, InvalidInputError

__all__ = ["check_regular", "kind_of", "open_regular", "read_bounded", "read_regular"]

#: Opening without blocking (POSIX); Windows has no FIFOs to block on.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

#: How each kind of file that is not a regular one is named in a sentence.
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str | None:
    """Return how a file of this mode is named when it is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover - a door, a whiteout, ...


def _refuse(
    path: str | os.PathLike[str],
    kind: str,
    what: str,
    error: type[AuditmlError] = InvalidInputError,
) -> AuditmlError:
    return error(
        f"{os.fspath(path)} is {kind}, not a regular file: give the path of the {what}; "
        "auditml does not read pipes, devices, sockets or folders"
    )


def _open_fd(
    path: str | os.PathLike[str], what: str, error: type[AuditmlError] = InvalidInputError
) -> int:
    """Open ``path`` to read without blocking; return the descriptor of a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a device with nothing behind it)
            try:
                kind = kind_of(os.stat(path).st_mode)
            except OSError:
                kind = None
            if kind is not None:
                raise _refuse(path, kind, what, error) from None
        raise
    try:
        kind = kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise _refuse(path, kind, what, error)
        if _NONBLOCK:
            os.set_blocking(fd, True)  # reads of the regular file as usual from here
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | os.PathLike[str], what: str, *, buffering: int = -1) -> BinaryIO:
    """Return ``path`` opened to read in binary, or raise if it is not a regular file.

    ``what`` names the file in the refusal, e.g. ``"policy file"``. A missing or
    unreadable path raises the ``OSError`` that opening it raised.
    """
    found: BinaryIO = os.fdopen(_open_fd(path, what), "rb", buffering=buffering)
    return found


def read_regular(path: str | os.PathLike[str], what: str, limit: int | None = None) -> bytes:
    """Return the bytes of the regular file ``path``; with ``limit``, at most ``limit`` + 1.

    Refuses what is not a regular file as :func:`open_regular` does.
    """
    with open_regular(path, what) as f:
        return f.read() if limit is None else f.read(limit + 1)


def read_bounded(path: str | os.PathLike[str], what: str, limit: int) -> bytes:
    """Return the bytes of the regular file ``path``, refusing one over ``limit`` bytes unread.

    At most ``limit`` + 1 bytes are ever read, so a huge file costs no memory.
    """
    raw = read_regular(path, what, limit)
    if len(raw) > limit:
        raise InvalidInputError(
            f"{path} is larger than {limit >> 20} MiB, far more than any {what} holds: "
            "it is not read; check that this is the file you meant"
        )
    return raw


def check_regular(
    path: str | os.PathLike[str], what: str, error: type[AuditmlError] = InvalidInputError
) -> bool:
    """Return whether ``path`` exists; raise if it is something other than a regular file.

    For a file that another library opens by its path (SQLite): it is opened
    here without blocking and checked, then closed. A missing path is False; the
    refusal is raised as ``error``.
    """
    try:
        fd = _open_fd(Path(path), what, error)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # it exists but cannot be opened here: its user says why
    os.close(fd)
    return True
