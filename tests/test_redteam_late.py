"""Red-team attacks on the late features: report seals, ingest skips, registry syncs, policy.

Each test is one hostile input or escape hatch; those that found a hole came with its fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from auditml import AuditLog
from auditml.core.registry import KnownModel, KnownVersion, Snapshot
from auditml.errors import InvalidInputError

URI = "http://mlflow.internal:5000"
MODEL = "credit-risk"


def _init(db_url: str) -> AuditLog:
    log, _ = AuditLog.init(db_url, origin="bank.example/credit-models")
    log.close()
    return AuditLog.open(db_url)


def _shows(*versions: str, **aliases: str) -> Snapshot:
    """Return a registry showing ``versions`` of the model and ``aliases`` (alias -> version)."""
    model = KnownModel(
        MODEL, versions={v: KnownVersion(v) for v in versions}, aliases=dict(aliases)
    )
    return {MODEL: model}


def _sync(log: AuditLog, version: str, env: str, alias: str, seq: int) -> None:
    log.record_registry_sync(
        model=MODEL,
        version=version,
        environment=env,
        alias=alias,
        decision_seq=seq,
        uri=URI,
        actor="ops",
    )


def _two_deploys(log: AuditLog, tmp_path: Path) -> tuple[int, int]:
    """Map production to champion and staging to candidate; deploy v1 then v2 to production."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[mlflow]\naliases = { production = "champion", staging = "candidate" }\n')
    log.apply_policy(policy, actor="ops")
    log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
    for version in ("1", "2"):
        log.approve(MODEL, version, actor="val@bank.example")
    first = log.deploy(MODEL, "1", "production", actor="ops@bank.example").seq
    second = log.deploy(MODEL, "2", "production", actor="ops@bank.example").seq
    _sync(log, "2", "production", "champion", second)
    return first, second


def test_a_sync_naming_a_superseded_deploy_is_refused(db_url: str, tmp_path: Path) -> None:
    """A done sync standing on a replaced deploy (v1, then v2) cannot hide MLflow's move back."""
    with _init(db_url) as log:
        first, _ = _two_deploys(log, tmp_path)
        size = log.head().size
        with pytest.raises(InvalidInputError, match="no live deploy"):
            _sync(log, "1", "production", "champion", first)
        assert log.head().size == size
        # MLflow moved champion back to v1 by hand: the next poll sees it.
        back = log.record_registry(_shows("1", "2", champion="1"), via="poll", uri=URI, actor="o")
        assert [(c.kind, c.version) for c, _, _ in back.changes] == [("alias.set", "1")]


def test_a_sync_moving_another_environments_alias_is_refused(db_url: str, tmp_path: Path) -> None:
    """A production deploy cannot vouch for staging's alias (or any other than production's)."""
    with _init(db_url) as log:
        _, second = _two_deploys(log, tmp_path)
        size = log.head().size
        for alias in ("candidate", "not-champion"):
            with pytest.raises(InvalidInputError, match="alias"):
                _sync(log, "2", "production", alias, second)
        assert log.head().size == size
        assert log.registry_known(URI)[MODEL].aliases == {"champion": "2"}


def test_an_imported_done_sync_does_not_count_as_mlflow_showing_the_alias(db_url: str) -> None:
    """append('registry.sync', imported=True) stands on no live decision, so the fold ignores it."""
    with _init(db_url) as log:
        log.record_registry(_shows("1", "2", champion="1"), via="import", uri=URI, actor="ops")
        log.append(
            "registry.sync",
            subject={"model": MODEL, "version": "2"},
            data={
                "uri": URI,
                "alias": "champion",
                "environment": "production",
                "decision_seq": 0,
                "status": "done",
                "previous": "1",
                "error": None,
            },
            actor="ops",
            imported=True,
        )
        assert log.registry_known(URI)[MODEL].aliases == {"champion": "1"}
        moved = log.record_registry(_shows("1", "2", champion="2"), via="poll", uri=URI, actor="o")
        assert [(c.kind, c.version) for c, _, _ in moved.changes] == [("alias.set", "2")]


@pytest.mark.parametrize(
    "uri",
    [
        "https://bob:hunter2@mlflow.internal:5000/\n",
        "https://bob:hunter2@mlflow.internal:5000/ x",
        "https://mlflow.internal:5000/?token=hunter2&x=" + "a" * 5000,
    ],
)
def test_a_sync_with_a_uri_no_registry_can_have_never_writes_its_credentials(
    db_url: str, tmp_path: Path, uri: str
) -> None:
    """A sync's URI that fails its identity is still stripped of credentials before the log."""
    with _init(db_url) as log:
        _, second = _two_deploys(log, tmp_path)
        log.record_registry_sync(
            model=MODEL,
            version="2",
            environment="production",
            alias="champion",
            decision_seq=second,
            uri=uri,
            error="the URI is not one MLflow can reach",
            actor="ops",
        )
        (sync,) = [r for r in log.events(action="registry.sync")][-1:]
        assert "hunter2" not in sync.event.data["uri"]
        log.verify()
