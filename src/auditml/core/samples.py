"""A window's sample of one version's runtime records (pure, and light to import).

It lives apart from :mod:`auditml.core.rollout` (which needs pydantic for the
policy's rules) so that a window read's helper process imports no more than it reads with.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

__all__ = ["Sample"]


@dataclass
class Sample:
    """The runtime records of one version over a window: counts, latencies and output values."""

    requests: int = 0
    errors: int = 0
    latency: array[float] | None = None
    scores: dict[str, array[float]] | None = None

    @property
    def error_rate(self) -> float | None:
        """Return the share of requests that ended in an error (None with no requests)."""
        return self.errors / self.requests if self.requests else None
