"""What decisions read: the log's committed events as of the locked head, by action and model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Reader"]


class Reader(Protocol):
    """Read-only access to the stored bytes of a log, inside the append transaction.

    The store implements it (``store.TxReader``); decisions and import checks
    depend only on this protocol, so they stay pure and testable over a list.
    """

    def bodies(
        self, model: str, actions: Sequence[str], *, after: int = -1
    ) -> list[tuple[int, bytes]]:
        """Return ``(seq, body)`` of ``model``'s events of ``actions`` after ``after``, in order."""
        ...

    def by_actions(self, actions: Sequence[str], *, after: int = -1) -> list[tuple[int, bytes]]:
        """Return ``(seq, body)`` of every event of ``actions`` after ``after``, in order."""
        ...

    def last_seq(self, action: str) -> int | None:
        """Return the seq of the newest event of ``action``, or None."""
        ...

    def last(self, action: str) -> tuple[int, bytes] | None:
        """Return ``(seq, body)`` of the newest event of ``action``, or None."""
        ...
