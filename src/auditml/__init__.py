"""auditml: an append-only, hash-chained, verifiable audit trail for the ML model lifecycle.

Everything public is listed in ``__all__``; nothing else is promised.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auditml")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+source"

from auditml.errors import (
    AppendError,
    AuditmlError,
    CanonicalizationError,
    ConfigurationError,
    InvalidInputError,
    LogNotFoundError,
    ProofError,
    StoreError,
    StoreUnavailableError,
    UnknownActionError,
    VerificationError,
)
from auditml.events import Actor, Draft, Event
from auditml.ledger import AuditLog, Head, Receipt, Record, VerifyReport

__all__ = [
    "Actor",
    "AppendError",
    "AuditLog",
    "AuditmlError",
    "CanonicalizationError",
    "ConfigurationError",
    "Draft",
    "Event",
    "Head",
    "InvalidInputError",
    "LogNotFoundError",
    "ProofError",
    "Receipt",
    "Record",
    "StoreError",
    "StoreUnavailableError",
    "UnknownActionError",
    "VerificationError",
    "VerifyReport",
    "__version__",
]
