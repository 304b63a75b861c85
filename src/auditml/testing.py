"""Helpers for your own tests: a real log in memory, with no file and no server.

from auditml.testing import memory_log

def test_training_is_recorded() -> None:
    with memory_log() as log:
        train(log)
        assert [r.event.action for r in log.events()] == ["log.init", "model.train"]
"""

from __future__ import annotations

from auditml.log import AuditLog

__all__ = ["memory_log"]


def memory_log(origin: str = "test.example/log", actor: str = "test@example.com") -> AuditLog:
    """Return a new, empty log held in memory; it vanishes when closed."""
    log, _ = AuditLog.init("sqlite://", origin=origin, actor=actor)
    return log
