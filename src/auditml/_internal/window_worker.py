"""Read part of a monitor's window of runtime records, for a window read that uses two cores.

It runs as ``python -m auditml._internal.window_worker`` (not multiprocessing),
so a user's unguarded script is never re-imported; the request arrives on
stdin, so no password shows in ``ps``. The work itself is
:func:`auditml._internal.window_read.serve_request`'s: the same verified read of the
segments it is handed, a few at a time, answered as counts and arrays.
"""

from __future__ import annotations

import os
import sys

from auditml._internal.window_read import serve_request

__all__ = ["main"]


def main() -> None:
    """Serve one exchange: the request and the ranges handed on stdin, the answer on stdout.

    The process ends as soon as its answer is out: tearing down the interpreter
    (freeing every object the read made) would only keep the caller, which reads
    the answer to its end, waiting.
    """
    serve_request(sys.stdin.buffer, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
