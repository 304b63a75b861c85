"""Record a model's first lifecycle steps on the log in ./.auditml/audit.db.

Run ``auditml init`` first, then ``python examples/quickstart.py``, then
``auditml status``, ``auditml log`` and ``auditml verify``. Each run trains
the next version of the model.
"""

from __future__ import annotations

from auditml import AuditLog, track_training


@track_training(model="credit-risk", actor="data-scientist@bank.example")
def train(max_depth: int = 6, learning_rate: float = 0.1) -> dict[str, float]:
    """Stand in for real training: return the metrics the model reached."""
    return {"auc": 0.87, "ks": 0.41}


train(max_depth=6)
version = train.last_run.version  # type: ignore[attr-defined]
print(f"trained credit-risk v{version}")

with AuditLog.open() as log:
    log.evaluate(
        "credit-risk",
        version,
        metrics={"auc": 0.85},
        slices={"age<30": {"auc": 0.82}},
        dataset="s3://bank-data/credit/holdout-2026-10.parquet",
        actor="validator@bank.example",
    )
    # A second person approves: the trainer may not approve their own model.
    log.approve(
        "credit-risk", version, reason="holdout AUC above 0.80", actor="validator@bank.example"
    )
    receipt = log.deploy(
        "credit-risk",
        version,
        "production",
        reason="quarterly refresh",
        actor="release@bank.example",
    )
    print(f"approved and deployed v{version} to production (event {receipt.seq})")
    print(f"the log now holds {log.head().size} events")
