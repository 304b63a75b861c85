"""Read half of a monitor's window of runtime records, for a window read that uses two cores.

It runs as ``python -m auditml._internal.window_worker`` (not multiprocessing),
so a user's unguarded script is never re-imported; the request arrives on
stdin, so no password shows in ``ps``. The work itself is
:func:`auditml.evidence.serve_request`'s: the same verified read of the
segments it is given, answered as counts and arrays.
"""

from __future__ import annotations

import sys

from auditml.evidence import serve_request

__all__ = ["main"]


def main() -> None:
    """Read one request from stdin and write the answer to stdout."""
    sys.stdout.buffer.write(serve_request(sys.stdin.buffer.read()))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
