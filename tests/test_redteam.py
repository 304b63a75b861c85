"""Red-team attacks on a hardened store: each test is one way in, shown to be closed.

An attacker here either calls the public API in ways it did not mean to
allow, or holds the database (raw SQL, triggers dropped) but not the log's
private key. Either way a decision must not change while ``auditml verify``
still passes, and a tampered store must make the CLI exit 1, never 2 or 70.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from auditml import AuditLog, InvalidInputError, PolicyDeniedError
from auditml.events import Draft
from auditml.policy import Policy

ORIGIN = "bank.example/redteam"
ADMIN = "admin@bank.example"
TRAINER = "dana@bank.example"
VALIDATOR = "victor@bank.example"
OUTSIDER = "mallory@bank.example"


def _gated(db_url: str) -> AuditLog:
    """Return a log whose production gate needs auc >= 0.9 and whose evaluations need a role."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    log.apply_policy(
        Policy(
            roles={ADMIN: ["admin"], VALIDATOR: ["validator"]},
            permissions={
                "policy": ["admin"],
                "evaluate": ["validator"],
                "incident": ["validator"],
            },
            approvals={"default": 1},
            gates={"production": ["auc >= 0.9"]},
        ),
        reason="gates",
        actor=ADMIN,
    )
    log.record_training("credit-risk", data={"metrics": {"auc": 0.5}}, actor=TRAINER)
    log.approve("credit-risk", "1", reason="VR-1", actor=VALIDATOR)
    return log


@pytest.mark.parametrize(
    "attack",
    [
        lambda log: log.append(
            "model.evaluate",
            subject={"model": "credit-risk", "version": "1"},
            data={"metrics": {"auc": 0.99}},
            actor=OUTSIDER,
        ),
        lambda log: log.append_many(
            [
                Draft.build(
                    "model.evaluate",
                    actor=OUTSIDER,
                    subject={"model": "credit-risk", "version": "1"},
                    data={"metrics": {"auc": 0.99}},
                )
            ]
        ),
        lambda log: log.append(
            "incident.close",
            subject={"model": "credit-risk", "version": "1"},
            data={"id": "INC-1", "resolution": "nothing to see"},
            actor=OUTSIDER,
        ),
    ],
    ids=["append", "append_many", "incident"],
)
def test_plain_append_cannot_feed_a_gate_or_close_an_incident(
    db_url: str, attack: Callable[[AuditLog], object]
) -> None:
    """Plain append of model.evaluate or incident.* is refused, so it cannot pass a metric gate."""
    with _gated(db_url) as log:
        size = log.head().size
        with pytest.raises(InvalidInputError, match="checked against policy"):
            attack(log)
        assert log.head().size == size
        with pytest.raises(PolicyDeniedError):
            log.evaluate("credit-risk", "1", metrics={"auc": 0.99}, actor=OUTSIDER)
        with pytest.raises(PolicyDeniedError, match="auc"):
            log.deploy("credit-risk", "1", "production", actor=ADMIN)


def test_imported_evaluations_never_pass_a_live_gate(db_url: str) -> None:
    """The escape hatch imported=True records the metric but the live gate still refuses."""
    with _gated(db_url) as log:
        log.append(
            "model.evaluate",
            subject={"model": "credit-risk", "version": "1"},
            data={"metrics": {"auc": 0.99}},
            actor=OUTSIDER,
            imported=True,
        )
        with pytest.raises(PolicyDeniedError, match="auc"):
            log.deploy("credit-risk", "1", "production", actor=ADMIN)
