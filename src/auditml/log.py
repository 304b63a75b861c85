"""AuditLog: opens a store and composes the ledger and its services."""

from __future__ import annotations

from auditml.ledger import AuditLog

__all__ = ["AuditLog"]
