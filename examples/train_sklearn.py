"""Train a scikit-learn model and record it with auditml: one decorator, one evaluation.

Install the example's extra first: pip install '.[examples]'
Then, in a folder where `auditml init` has run:

    python examples/train_sklearn.py
    auditml status credit-risk-sk
    auditml approve credit-risk-sk 1 --actor validator@bank.example   # a second person
    auditml deploy credit-risk-sk 1 --env staging --actor release@bank.example
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split

from auditml import AuditLog, current_run, track_training

MODEL = "credit-risk-sk"
WORK = Path(tempfile.gettempdir()) / "auditml-sklearn-example"


def make_data() -> tuple[Path, Path]:
    """Write a synthetic, imbalanced credit dataset split into train and test files."""
    WORK.mkdir(exist_ok=True)
    x, y = make_classification(
        n_samples=5000, n_features=12, n_informative=6, weights=[0.85], random_state=7
    )
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=7)
    train, test = WORK / "train.npz", WORK / "test.npz"
    np.savez(train, x=x_train, y=y_train)
    np.savez(test, x=x_test, y=y_test)
    return train, test


TRAIN, TEST = make_data()


@track_training(model=MODEL, datasets={"train": TRAIN}, tags={"framework": "scikit-learn"})
def train(
    c: float = 1.0, max_iter: int = 500, class_weight: str | None = "balanced"
) -> dict[str, float]:
    """Fit a logistic regression, save it as an artifact, and return its training metrics."""
    data = np.load(TRAIN)
    model = LogisticRegression(C=c, max_iter=max_iter, class_weight=class_weight)
    model.fit(data["x"], data["y"])
    run = current_run()
    assert run is not None
    out = WORK / f"{MODEL}-v{run.version}.pkl"
    out.write_bytes(pickle.dumps(model))
    run.add_artifact("model", out)
    scores = model.predict_proba(data["x"])[:, 1]
    return {"train_auc": float(roc_auc_score(data["y"], scores))}


def main() -> None:
    """Train one version, evaluate it on held-out data, and print what was recorded."""
    train(c=0.5)
    version = train.last_run.version  # type: ignore[attr-defined]
    model = pickle.loads((WORK / f"{MODEL}-v{version}.pkl").read_bytes())
    data = np.load(TEST)
    scores = model.predict_proba(data["x"])[:, 1]
    metrics = {
        "auc": float(roc_auc_score(data["y"], scores)),
        "accuracy": float(accuracy_score(data["y"], scores >= 0.5)),
    }
    with AuditLog.open() as log:
        receipt = log.evaluate(MODEL, version, metrics=metrics, dataset=str(TEST))
    auc = metrics["auc"]
    print(f"trained {MODEL} v{version}; test auc {auc:.3f} (evaluation event {receipt.seq})")


if __name__ == "__main__":
    main()
