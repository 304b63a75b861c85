"""auditml: an append-only, hash-chained, verifiable audit trail for the ML model lifecycle.

Everything public is listed in ``__all__``; nothing else is promised. Names
load on first use, so a process that needs only part of auditml (verify's
helper, a short CLI command) does not pay for the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from auditml._version import __version__

if TYPE_CHECKING:
    from auditml.capture import TrainingRun, current_run, track_inference, track_training
    from auditml.cards import ModelCard, build_card, diff_cards, render_card
    from auditml.core.events import Actor, Draft, Event
    from auditml.core.policy import Policy
    from auditml.core.state import ModelState, Move, VersionState
    from auditml.errors import (
        AppendError,
        AuditmlError,
        CanonicalizationError,
        ConfigurationError,
        InvalidInputError,
        LogNotFoundError,
        PolicyDeniedError,
        ProofError,
        StaleHeadError,
        StoreError,
        StoreUnavailableError,
        UnknownActionError,
        VerificationError,
    )
    from auditml.ledger import Head, Receipt, Record, VerifyReport
    from auditml.log import AuditLog
    from auditml.reports import AuditReport, build_report, render_report, verify_report

_HOMES = {
    "auditml.errors": (
        "AppendError",
        "AuditmlError",
        "CanonicalizationError",
        "ConfigurationError",
        "InvalidInputError",
        "LogNotFoundError",
        "PolicyDeniedError",
        "ProofError",
        "StaleHeadError",
        "StoreError",
        "StoreUnavailableError",
        "UnknownActionError",
        "VerificationError",
    ),
    "auditml.capture": ("TrainingRun", "current_run", "track_inference", "track_training"),
    "auditml.cards": ("ModelCard", "build_card", "diff_cards", "render_card"),
    "auditml.core.events": ("Actor", "Draft", "Event"),
    "auditml.ledger": ("Head", "Receipt", "Record", "VerifyReport"),
    "auditml.log": ("AuditLog",),
    "auditml.core.state": ("ModelState", "Move", "VersionState"),
    "auditml.core.policy": ("Policy",),
    "auditml.reports": ("AuditReport", "build_report", "render_report", "verify_report"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "Actor",
    "AppendError",
    "AuditLog",
    "AuditReport",
    "AuditmlError",
    "CanonicalizationError",
    "ConfigurationError",
    "Draft",
    "Event",
    "Head",
    "InvalidInputError",
    "LogNotFoundError",
    "ModelCard",
    "ModelState",
    "Move",
    "Policy",
    "PolicyDeniedError",
    "ProofError",
    "Receipt",
    "Record",
    "StaleHeadError",
    "StoreError",
    "StoreUnavailableError",
    "TrainingRun",
    "UnknownActionError",
    "VerificationError",
    "VerifyReport",
    "VersionState",
    "__version__",
    "build_card",
    "build_report",
    "current_run",
    "diff_cards",
    "render_card",
    "render_report",
    "track_inference",
    "track_training",
    "verify_report",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'auditml' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
