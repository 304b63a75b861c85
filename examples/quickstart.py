"""Record a model's first lifecycle steps on the log in ./.auditml/audit.db.

Run ``auditml init`` first, then ``python examples/quickstart.py``, then
``auditml log`` and ``auditml verify``.
"""

from __future__ import annotations

from auditml import AuditLog, Draft

with AuditLog.open() as log:
    model = {"model": "credit-risk", "version": str(log.head().size)}
    trained = log.append(
        "model.train",
        subject=model,
        actor="data-scientist@bank.example",
        data={
            "params": {"max_depth": 6, "learning_rate": 0.1},
            "datasets": {"train": {"uri": "s3://bank-data/credit/2026-10.parquet"}},
            "metrics": {"auc": 0.87, "ks": 0.41},
        },
    )
    print(f"recorded model.train as event {trained.seq} ({trained.hash[:12]})")
    # A batch is one transaction: every event lands, or none does.
    receipts = log.append_many(
        [
            Draft.build(
                "model.evaluate",
                actor="validator@bank.example",
                subject=model,
                data={"metrics": {"auc": 0.85}, "slices": {"age<30": {"auc": 0.82}}},
            ),
            Draft.build(
                "model.approve",
                actor="validator@bank.example",
                subject=model,
                data={"reason": "holdout AUC above 0.80", "environments": ["production"]},
            ),
            Draft.build(
                "model.deploy",
                actor="release@bank.example",
                subject=model,
                data={"environment": "production", "reason": "quarterly refresh"},
            ),
        ]
    )
    print(f"recorded {len(receipts)} more events; the log now holds {log.head().size}")
