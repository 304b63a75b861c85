"""The one exception tree of auditml.

Every error auditml raises on purpose derives from :class:`AuditmlError`; the
CLI catches only that base class and prints :meth:`AuditmlError.diagnostics`,
so a user sees one sentence and a non-zero exit, never a traceback::

    AuditmlError
    ├── InvalidInputError            bad input: nothing was written
    │   ├── CanonicalizationError    a value JCS cannot represent (NaN, big int, duplicate key, ...)
    │   └── UnknownActionError       an action name with no registered model
    ├── ConfigurationError           a bad URL, option or environment variable
    ├── PolicyDeniedError            policy refused an action; only a denial event was recorded
    ├── StoreError                   the database cannot be used as asked
    │   ├── StoreUnavailableError    unreachable, missing or not an auditml store
    │   ├── LogNotFoundError         no log (or not the named one) in the store
    │   └── AppendError              an append failed; the log is exactly as it was
    │       └── StaleHeadError       the head moved since the writer read it: nothing written
    └── VerificationError            the log, a proof or a bundle does not verify
        └── ProofError               a Merkle proof or tree size is invalid
"""

from __future__ import annotations

__all__ = [
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
]


class AuditmlError(Exception):
    """Base class of every error auditml raises on purpose."""

    def diagnostics(self) -> str:
        """Return the text shown to a user: what is wrong and how to fix it."""
        return str(self)


class InvalidInputError(AuditmlError, ValueError):
    """Input was refused before anything was written."""


class CanonicalizationError(InvalidInputError):
    """A value has no RFC 8785 canonical form, or JSON text is not strict."""


class UnknownActionError(InvalidInputError):
    """An event names an action that has no registered data model."""


class ConfigurationError(AuditmlError):
    """A database URL, option or environment variable is unusable."""


class PolicyDeniedError(AuditmlError):
    """Policy refused an action: nothing changed but a ``policy.denied`` event.

    ``rule`` names the rule that refused, ``remedy`` says what would satisfy it,
    and ``seq`` is the denial event recorded on the log (None when none was).
    """

    def __init__(self, message: str, *, rule: str, remedy: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.remedy = remedy
        self.seq = seq

    def diagnostics(self) -> str:
        """Return the refusal, the rule and what would satisfy it."""
        recorded = f" (recorded as event {self.seq})" if self.seq is not None else ""
        return f"refused by policy rule {self.rule!r}: {self}{recorded}. To proceed: {self.remedy}"


class StoreError(AuditmlError):
    """The store cannot do what was asked."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached, opened, or is not an auditml store."""


class LogNotFoundError(StoreError):
    """The store holds no log, or not the one that was named."""


class AppendError(StoreError):
    """An append failed; nothing of it was written."""


class StaleHeadError(AppendError):
    """An append's head was stale: the log's head is no longer the size and hash it was built on.

    The head row moves only from the size and hash the writer read (a
    compare-and-set inside the append transaction), so a writer that read an
    old head fails here rather than fork the chain. Appends retry it from the
    new head; it reaches a caller only when the head keeps moving under it.
    """


class VerificationError(AuditmlError):
    """Something does not verify.

    ``kind`` names what failed (``hash``, ``link``, ``seq``, ``origin``,
    ``time``, ``head``, ``format``, ``column``, ``signature``, ``anchor``, ``proof``,
    ``record``, ``value``: a value kept off the log, ``erasure``, ``directory``:
    the off-log actor directory against its enrollments), and
    ``seq`` is the first event that fails, when one event is to blame.
    """

    def __init__(self, message: str, *, kind: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.seq = seq

    def diagnostics(self) -> str:
        """Return the failure, naming the event when one is to blame."""
        where = f"event {self.seq}: " if self.seq is not None else ""
        return f"verification failed ({self.kind}): {where}{self}"


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof, or its sizes, are invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="proof")
