import json
from pathlib import Path

import pytest

from auditml import Actor, Draft, InvalidInputError, UnknownActionError
from auditml._internal.schema import render_schemas
from auditml.core.events import ACTIONS, TrainData, data_model, validate_data

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
REQUIRED_ACTIONS = {
    "model.train",
    "model.evaluate",
    "model.approve",
    "model.reject",
    "model.deploy",
    "model.rollback",
    "model.retire",
    "policy.update",
    "log.init",
}


def test_every_required_action_has_a_model() -> None:
    """The nine actions of the ledger issue each have a data model."""
    assert set(ACTIONS) >= REQUIRED_ACTIONS


def test_unknown_action_lists_the_known_ones() -> None:
    """Asking for an action that does not exist names every action that does."""
    with pytest.raises(UnknownActionError) as info:
        data_model("model.deplyo")
    assert "model.deploy" in str(info.value) and "'model.deplyo'" in str(info.value)


def test_checked_in_schemas_match_the_models() -> None:
    """schemas/ is what the models generate (after a change: python -m auditml._internal.schema)."""
    expected = render_schemas()
    found = {
        str(path.relative_to(SCHEMAS)): path.read_text(encoding="utf-8")
        for path in SCHEMAS.rglob("*.json")
    }
    assert sorted(found) == sorted(expected), "schemas/ has missing or extra files"
    for name, text in expected.items():
        assert found[name] == text, f"schemas/{name} drifted from the models"


def test_schemas_describe_the_envelope_and_every_action() -> None:
    """The envelope schema requires the docs/format.md keys, and each action has its own schema."""
    envelope = json.loads((SCHEMAS / "event.schema.json").read_text())
    assert set(envelope["required"]) == {
        "v",
        "log",
        "seq",
        "prev",
        "time",
        "actor",
        "action",
        "subject",
        "data",
    }
    for action in ACTIONS:
        assert (SCHEMAS / "data" / f"{action}.schema.json").is_file()


def test_data_drops_empty_fields_and_keeps_meaningful_defaults() -> None:
    """Stored data leaves out None and empty collections, but keeps a run's status."""
    assert validate_data("model.train", {}) == {"status": "succeeded"}
    assert validate_data("model.train", TrainData(metrics={"auc": 0.9})) == {
        "status": "succeeded",
        "metrics": {"auc": 0.9},
    }


def test_data_of_the_wrong_model_is_refused() -> None:
    """Passing one action's model as another action's data is an error, not a silent cast."""
    with pytest.raises(InvalidInputError, match="must be DeployData"):
        validate_data("model.deploy", TrainData())


def test_draft_accepts_an_actor_id_or_an_actor() -> None:
    """A draft takes a plain id (recorded as given through the API) or a full Actor."""
    plain = Draft.build("model.retire", actor="a@b.example", subject={"model": "m"})
    assert plain.actor == Actor(id="a@b.example", source="api")
    full = Draft.build("model.retire", actor=Actor(id="x", name="X Y", source="env"))
    assert full.actor.name == "X Y"


def test_draft_refuses_bad_subjects_and_empty_actors() -> None:
    """Subjects map names to strings, and an actor needs an id."""
    with pytest.raises(InvalidInputError, match="subject"):
        Draft.build("model.retire", actor="a", subject={"version": 3})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="actor"):
        Draft.build("model.retire", actor={"id": ""})


def test_every_action_has_one_rule_in_the_registry() -> None:
    """The action registry and the data models name exactly the same actions."""
    from auditml.core.events import ACTIONS, REGISTRY

    assert set(REGISTRY) == set(ACTIONS)


def test_action_lists_are_derived_from_the_registry() -> None:
    """Folded, signed, key and incident actions are the registry's, in its order."""
    from auditml.core import events

    assert events.LIFECYCLE_ACTIONS == (
        "model.train",
        "model.evaluate",
        "model.approve",
        "model.reject",
        "model.deploy",
        "model.rollback",
        "rollout.start",
        "rollout.promote",
        "model.retire",
        "incident.open",
        "card.update",
    )
    assert events.SIGNED_ACTIONS == ("model.approve", "model.reject")
    assert events.KEY_ACTIONS == ("key.register", "key.revoke")
    assert events.INCIDENT_ACTIONS == ("incident.open", "incident.close")
    assert set(events.GOVERNED) == set(events.REGISTRY)
