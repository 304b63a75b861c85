"""Model cards: built from a log made by the real lifecycle API, on both backends, every format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from auditml import AuditLog, InvalidInputError, Policy, PolicyDeniedError
from auditml._internal.keyfiles import PublicKeyFile, generate_key_file
from auditml.cards import build_card
from auditml.cards.diff import diff_cards
from auditml.cards.render import FORMATS, render_card
from auditml.core.card import SECTION_TITLES, ModelCard
from auditml.core.policy import CardRules
from tests.test_cli import run
from tests.vector_files import require_vectors

ORIGIN = "bank.example/cards"
ADMIN, DS, VAL, OPS = (f"{who}@bank.example" for who in ("admin", "ds", "val", "ops"))
REQUIRED = ["intended_use", "limitations"]
PHRASE = b"a passphrase of some length"
SECTIONS: dict[str, Any] = {
    "overview": "Scores retail credit applications.",
    "intended_use": "Rank applications for review by an underwriter.",
    "limitations": "Under-represents applicants under 30.",
    "owners": [{"name": "Credit Analytics", "contact": "ca@bank.example"}],
    "ethical_considerations": [{"name": "Age bias", "mitigation": "Monitored monthly"}],
    "task": "tabular-classification",
    "license": "proprietary",
}


def _train(log: AuditLog, tmp_path: Path, version: str, auc: float, depth: int) -> None:
    data = tmp_path / f"train-{version}.csv"
    data.write_text(f"x,y\n{version},1\n", encoding="utf-8")
    artifact = tmp_path / f"model-{version}.bin"
    artifact.write_bytes(b"weights " + version.encode())
    params = {"max_depth": depth, "features": ["income", "age"]}
    with log.training_run(model="credit", version=version, actor=DS, params=params) as run:
        run.add_dataset("train", data)
        run.add_artifact("model", artifact)
        run.log_metric("train_auc", auc + 0.05)
    log.evaluate(
        "credit",
        version,
        metrics={"auc": auc, "accuracy": auc - 0.1},
        slices={"age<30": {"auc": auc - 0.05}},
        dataset="s3://bank/holdout.parquet",
        notes="holdout evaluation",
        actor=VAL,
    )


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """Yield a log where credit v1 and v2 were trained, evaluated and approved (v1 signed)."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with made:
        made.apply_policy(
            Policy(
                gates={"production": ["auc >= 0.7"]},
                cards=CardRules(required=REQUIRED, complete_for=["production"]),
            ),
            actor=ADMIN,
        )
        _train(made, tmp_path, "1", 0.78, 4)
        _train(made, tmp_path, "2", 0.82, 6)
        signer = generate_key_file(tmp_path / "val.key", PHRASE)
        made.register_key(PublicKeyFile(VAL, "Vera Validator", signer.public_key), actor=ADMIN)
        made.approve("credit", "1", actor=VAL, signer=signer, reason="VR-1 passed")
        made.approve("credit", "2", actor=VAL, reason="VR-2 passed")
        made.deploy("credit", "1", "staging", actor=OPS)
        yield made


def _released(log: AuditLog) -> None:
    """Write the card, deploy v1 then v2 to production, raise an incident, roll back."""
    log.update_card("credit", SECTIONS, actor=DS, reason="first card")
    log.deploy("credit", "1", "production", actor=OPS)
    log.deploy("credit", "2", "production", actor=OPS)
    log.open_incident("credit", "2", "approval rate fell", severity="high", actor=OPS)
    log.rollback("credit", "production", reason="INC-1", actor=OPS)
    log.checkpoint()


def test_the_card_is_built_from_the_log(log: AuditLog) -> None:
    """Training, data, metrics, evaluations, signed approvals, moves and incidents are all there."""
    _released(log)
    card = build_card(log, "credit", "2")
    assert card.status == "approved" and card.training is not None  # rolled back everywhere
    assert card.training.params["max_depth"] == 6 and card.training.trained_by == DS
    assert [d.use for d in card.datasets] == ["training", "evaluation"]
    assert card.artifacts[0].ref.sha256 is not None
    assert card.metric_values() == {"train_auc": 0.87, "auc": 0.82, "accuracy": pytest.approx(0.72)}
    assert {(m.name, m.slice) for m in card.metrics} >= {("auc", "age<30")}
    assert [(d.action, d.actor, d.reason) for d in card.decisions] == [
        ("approve", VAL, "VR-2 passed")
    ]
    assert [(m.action, m.version, m.replaces) for m in card.deployments] == [
        ("deploy", "2", "1"),
        ("rollback", "1", "2"),
    ]
    assert [(i.id, i.severity) for i in card.incidents] == [("INC-1", "high")]
    assert [(g.gate, g.passed) for g in card.gates] == [("auc >= 0.7", True)]
    assert card.metric_history["auc"] == [("1", 0.78), ("2", 0.82)]
    one = build_card(log, "credit", "1")
    (approval,) = one.decisions
    assert approval.signature is not None
    assert (approval.signature.name, approval.signature.meaning) == ("Vera Validator", "approval")


def test_the_card_says_where_the_version_runs_after_a_rollback(log: AuditLog) -> None:
    """A version rolled back to runs again: its card says production, the replaced one nowhere."""
    _released(log)  # v1 staging, v1 then v2 in production, rolled back to v1
    one, two = build_card(log, "credit", "1"), build_card(log, "credit", "2")
    assert sorted(one.running_in) == ["production", "staging"] and two.running_in == []
    assert "<b>production, staging</b><span>runs in</span>" in render_card(one, "html").decode()
    assert "<b>nowhere</b><span>runs in</span>" in render_card(two, "html").decode()


def test_a_run_with_no_environment_says_so_once(log: AuditLog) -> None:
    """A run recorded with no environment reads 'not recorded', not 'X not recorded on Y not …'."""
    log.record_training("credit", version="9", data={"params": {"lr": 0.1}}, actor=DS)
    card = build_card(log, "credit", "9")
    assert "| Environment | not recorded |" in render_card(card, "md").decode()
    html = render_card(card, "html").decode()
    assert "<th>Environment</th><td>not recorded</td>" in html and "on platform" not in html


def test_the_card_is_bound_to_events_and_a_checkpoint(log: AuditLog) -> None:
    """The card names its events by seq and hash and a signed checkpoint that covers them."""
    _released(log)
    card = build_card(log, "credit", "2")
    hashes = {r.seq: r.hash for r in log.events()}
    assert card.binding.events and all(hashes[e.seq] == e.hash for e in card.binding.events)
    assert {"model.train", "model.evaluate", "model.approve", "card.update"} <= {
        e.action for e in card.binding.events
    }
    assert card.binding.origin == ORIGIN and card.binding.root == log.head().root
    assert card.binding.checkpoint is not None and card.binding.covered
    log.evaluate("credit", "2", metrics={"auc": 0.83}, actor=VAL)
    assert not build_card(log, "credit", "2").binding.covered  # a newer event, no checkpoint yet


def test_missing_sections_say_not_provided_and_the_deploy_gate_refuses(log: AuditLog) -> None:
    """Without the required sections production refuses; only the denial is recorded."""
    card = build_card(log, "credit", "1")
    assert card.completeness.missing == REQUIRED and card.completeness.score == 0
    html = render_card(card, "html").decode()
    md = render_card(card, "md").decode()
    assert html.count("Not provided") == len(SECTION_TITLES) == md.count("Not provided")
    before = log.head().size
    with pytest.raises(PolicyDeniedError) as info:
        log.deploy("credit", "1", "production", actor=OPS)
    assert info.value.rule == "card-incomplete"
    assert "missing intended_use, limitations" in str(info.value)
    assert "auditml card update credit 1 FILE" in info.value.remedy
    assert [r.event.action for r in log.events(start=before)] == ["policy.denied"]
    assert log.status("credit")["credit"].running == {"staging": "1"}
    log.deploy("credit", "2", "staging", actor=OPS)  # staging does not need a complete card
    log.update_card("credit", {"intended_use": "Review queue"}, version="1", actor=DS)
    with pytest.raises(PolicyDeniedError, match="missing limitations"):
        log.deploy("credit", "1", "production", actor=OPS)
    log.update_card("credit", {"limitations": "Young applicants"}, version="1", actor=DS)
    log.deploy("credit", "1", "production", actor=OPS)
    assert build_card(log, "credit", "1").completeness.score == 1


def test_card_updates_are_versioned_and_attributed(log: AuditLog) -> None:
    """A later update replaces the sections it names; each section names the event that set it."""
    first = log.update_card("credit", SECTIONS, actor=DS, reason="first card")
    second = log.update_card(
        "credit", {"limitations": "Drifts with interest rates."}, version="2", actor=VAL
    )
    card = build_card(log, "credit", "2")
    assert card.sections.limitations == "Drifts with interest rates."
    assert card.sections.intended_use == SECTIONS["intended_use"]
    assert card.section_events["limitations"] == second.seq
    assert card.section_events["intended_use"] == first.seq
    assert build_card(log, "credit", "1").sections.limitations == SECTIONS["limitations"]
    (event,) = [r.event for r in log.events(action="card.update", start=second.seq)]
    assert event.actor.id == VAL and event.subject == {"model": "credit", "version": "2"}


@pytest.mark.parametrize(
    ("sections", "words"),
    [
        ({"limitatons": "x"}, "did you mean 'limitations'"),
        ({"intended_use": 5}, "section intended_use"),
        ({"owners": [{"contact": "x"}]}, "section owners.0.name"),
        ({"risk_rating": "extreme"}, "section risk_rating"),
        ({}, "holds no section"),
    ],
)
def test_bad_sections_are_refused_and_nothing_is_written(
    log: AuditLog, sections: dict[str, Any], words: str
) -> None:
    """Each malformed card update names what is wrong, and the log does not grow."""
    before = log.head().size
    with pytest.raises(InvalidInputError, match=words.replace("(", r"\(")):
        log.update_card("credit", sections, actor=DS)
    assert log.head().size == before


def test_card_update_refusals_for_files_models_and_repeats(log: AuditLog, tmp_path: Path) -> None:
    """Missing files, bad YAML, unknown models or versions, and no-op updates write nothing."""
    before = log.head().size
    bad = tmp_path / "bad.yaml"
    bad.write_text("intended_use: [unclosed\n", encoding="utf-8")
    for target, words in (
        (tmp_path / "missing.yaml", "no card file at"),
        (bad, "bad.yaml line 2: not valid YAML"),
    ):
        with pytest.raises(InvalidInputError, match=words):
            log.update_card("credit", target, actor=DS)
    with pytest.raises(InvalidInputError, match="no model 'fraud'"):
        log.update_card("fraud", SECTIONS, actor=DS)
    with pytest.raises(InvalidInputError, match="no version '9'"):
        log.update_card("credit", SECTIONS, version="9", actor=DS)
    assert log.head().size == before
    log.update_card("credit", SECTIONS, version="1", actor=DS)
    with pytest.raises(InvalidInputError, match="already reads exactly so"):
        log.update_card("credit", SECTIONS, version="1", actor=DS)


def test_policy_can_restrict_who_writes_cards(log: AuditLog) -> None:
    """With a card permission, someone without the role is denied and only the denial recorded."""
    log.apply_policy(
        Policy(roles={DS: ["developer"]}, permissions={"card": ["developer"]}), actor=ADMIN
    )
    before = log.head().size
    with pytest.raises(PolicyDeniedError) as info:
        log.update_card("credit", SECTIONS, actor=OPS)
    assert info.value.rule == "role"
    assert [r.event.action for r in log.events(start=before)] == ["policy.denied"]
    log.update_card("credit", SECTIONS, actor=DS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_from_the_log(log: AuditLog, fmt: str) -> None:
    """Each format renders the released card and carries the model, version and a metric."""
    _released(log)
    data = render_card(build_card(log, "credit", "2"), fmt)
    if fmt == "pdf":
        text = _pdf_text(data)
        assert "credit · version 2" in text and "Evidence binding" in text
        return
    text = data.decode()
    assert "credit" in text and "0.82" in text
    if fmt in ("html", "md", "huggingface"):
        assert "Rank applications for review" in text and "Vera" not in text  # v2 unsigned


def _pdf_text(data: bytes) -> str:
    from io import BytesIO

    from pypdf import PdfReader

    reader = PdfReader(BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages).replace("\x00", "")


def test_mct_export_validates_against_the_published_schema(log: AuditLog) -> None:
    """The Model Card Toolkit export validates against mct-v0.0.2.schema.json."""
    jsonschema = pytest.importorskip("jsonschema")
    _released(log)
    schemas = require_vectors("model-card-schemas")
    schema = json.loads((schemas / "mct-v0.0.2.schema.json").read_text())
    doc = json.loads(render_card(build_card(log, "credit", "2"), "mct"))
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
    assert doc["model_details"]["version"]["name"] == "2"
    assert {"type": "auc", "value": "0.82"} in doc["quantitative_analysis"]["performance_metrics"]
    assert doc["considerations"]["ethical_considerations"] == [
        {"name": "Age bias", "mitigation_strategy": "Monitored monthly"}
    ]


def _cyclonedx_errors(text: str) -> Any:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)


def test_cyclonedx_export_is_a_valid_ml_bom(log: AuditLog) -> None:
    """The CycloneDX export passes cyclonedx-python-lib's strict 1.6 validator."""
    pytest.importorskip("cyclonedx")
    _released(log)
    text = render_card(build_card(log, "credit", "2"), "cyclonedx").decode()
    assert _cyclonedx_errors(text) is None
    (component,) = json.loads(text)["components"]
    assert component["type"] == "machine-learning-model"
    assert component["hashes"][0]["alg"] == "SHA-256"
    assert component["modelCard"]["considerations"]["useCases"] == [SECTIONS["intended_use"]]


def test_huggingface_export_round_trips_through_huggingface_hub(log: AuditLog) -> None:
    """huggingface_hub's ModelCard loads the export, with model-index results intact."""
    hub = pytest.importorskip("huggingface_hub")
    _released(log)
    text = render_card(build_card(log, "credit", "2"), "huggingface").decode()
    card = hub.ModelCard(text)
    assert card.data.license == "other" and card.data.license_name == "proprietary"
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("s3://bank/holdout.parquet", "auc")] == 0.82
    assert all(r.task_type == "tabular-classification" for r in card.data.eval_results)
    again = hub.ModelCard(str(card))
    assert again.data.to_dict() == card.data.to_dict()


HOSTILE: dict[str, Any] = {
    "overview": "<script>alert('x')</script> & <b>bold</b>",
    "intended_use": (
        "# Not a heading\n- not a list\n1. not numbered\n| a | b |\n[link](javascript:x)"
    ),
    "limitations": "---\nlicense: mit\nmodel-index: []\n...",
    "out_of_scope_use": "x" * 5000,
    "users": ["信用リスクの審査担当", "مدقق المخاطر", "Ελεγκτής"],
    "ethical_considerations": [{"name": "{{ 7*7 }} {% raw %}", "mitigation": "`code` *em*"}],
    "license": "'; DROP TABLE auditml_event; --",
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_text_is_shown_as_text_in_every_format(log: AuditLog, fmt: str) -> None:
    """Markup, Markdown, YAML and template syntax, huge and non-Latin text stay plain text."""
    log.update_card("credit", HOSTILE, version="1", actor=DS)
    card = build_card(log, "credit", "1")
    data = render_card(card, fmt)
    if fmt == "pdf":
        text = _pdf_text(data)
        assert "<script>alert('x')</script>" in text and "{{ 7*7 }}" in text
        return
    text = data.decode()
    if fmt == "html":
        assert "<script>" not in text and "&lt;script&gt;" in text and "<b>bold" not in text
        assert "{{ 7*7 }}" in text and "信用リスクの審査担当" in text
    if fmt in ("md", "huggingface"):
        body = text.split("\n---\n", 1)[-1] if fmt == "huggingface" else text
        lines = body.splitlines()
        assert "# Not a heading" not in lines and "- not a list" not in lines
        assert "<script>" not in body and "\\[link\\]" in body
        assert lines.count("---") == 1  # the template's own rule before the footer
    if fmt == "huggingface":
        front = yaml.safe_load(text.split("---\n")[1])
        assert front["license_name"] == HOSTILE["license"]
        assert set(front) <= {
            "license",
            "license_name",
            "tags",
            "datasets",
            "model-index",
            "auditml",
        }
    if fmt == "json":
        again = ModelCard.model_validate_json(text)
        assert again.sections.intended_use == HOSTILE["intended_use"]
    if fmt == "mct":
        assert json.loads(text)["model_details"]["overview"] == HOSTILE["overview"]
    if fmt == "cyclonedx":
        assert _cyclonedx_errors(text) is None


def test_card_diff_reports_metrics_data_code_params_and_sections(log: AuditLog) -> None:
    """The diff of v1 and v2 gives metric deltas and every changed fingerprint and section."""
    log.update_card("credit", {"limitations": "v2 only"}, version="2", actor=DS)
    result = diff_cards(build_card(log, "credit", "1"), build_card(log, "credit", "2"))
    auc = next(m for m in result.metrics if m.name == "auc" and m.slice is None)
    assert (auc.old, auc.new, auc.kind) == (0.78, 0.82, "changed")
    assert auc.delta == pytest.approx(0.04)
    assert (auc.old_source, auc.new_source) == ("evaluation", "evaluation")
    trained = next(m for m in result.metrics if m.name == "train_auc")
    assert (trained.old_source, trained.new_source) == ("training", "training")
    assert [c.name for c in result.params] == ["max_depth"]
    assert [c.name for c in result.datasets] == ["training train"]
    assert [c.name for c in result.artifacts] == ["model"]
    assert [(c.name, c.kind) for c in result.sections] == [("limitations", "added")]
    same = diff_cards(build_card(log, "credit", "1"), build_card(log, "credit", "1"))
    assert same.empty


def test_card_diff_names_an_evaluation_dataset_once(log: AuditLog) -> None:
    """An evaluation dataset in one card only is 'evaluation 1', not 'evaluation evaluation 1'."""
    log.record_training("credit", version="3", actor=DS)
    result = diff_cards(build_card(log, "credit", "2"), build_card(log, "credit", "3"))
    assert "evaluation 1" in [c.name for c in result.datasets]
    assert not any(c.name.startswith("evaluation evaluation") for c in result.datasets)


def test_a_card_file_signs_a_checkpoint_at_the_head_when_the_key_is_at_hand(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card file signs the head first, so it binds every event; a card on stdout signs nothing."""
    log.checkpoint()
    log.update_card("credit", SECTIONS, actor=DS, reason="first card")  # after the checkpoint
    kept = len(log.checkpoints())
    assert run(["card", "credit", "1", "--format", "json", "--db", log.url], capsys)[0] == 0
    assert len(log.checkpoints()) == kept  # showing a card on stdout writes nothing
    target = tmp_path / "card.json"
    code, _, err = run(["card", "credit", "1", "--out", str(target), "--db", log.url], capsys)
    assert code == 0, err
    binding = json.loads(target.read_text())["binding"]
    assert binding["checkpoint"]["size"] == binding["size"] == log.head().size
    assert max(e["seq"] for e in binding["events"]) < binding["checkpoint"]["size"]


def test_the_card_template_names_every_section_and_its_examples_are_valid(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Uncommented, the template is a valid card update of all 20 sections; required ones marked."""
    code, text, err = run(["card", "template", "--db", log.url], capsys)
    assert code == 0, err
    assert "# Intended use (required by policy)" in text and "# Overview (required" not in text
    after_header = text.split("\n\n", 1)[1].splitlines()  # titles start upper case
    body = "\n".join(line[2:] for line in after_header if line[2:3].islower() or line[2:3] == " ")
    sections = yaml.safe_load(body)
    assert list(sections) == list(SECTION_TITLES)
    target = tmp_path / "card.yaml"
    target.write_text(body, encoding="utf-8")
    assert run(["card", "update", "credit", str(target), "--db", log.url], capsys)[0] == 0
    assert build_card(log, "credit", "1").completeness.score == 1.0
    nowhere = f"sqlite:///{tmp_path / 'none.db'}"
    code, text, _ = run(
        ["card", "template", "--out", str(tmp_path / "t.yaml"), "--db", nowhere], capsys
    )
    assert (
        code == 0 and "20 sections" in text and "required" not in (tmp_path / "t.yaml").read_text()
    )
    code, _, err = run(
        ["card", "update", "credit", str(tmp_path / "t.yaml"), "--db", log.url], capsys
    )
    assert code == 2 and "holds no section" in err and "remove the '# '" in err


def test_card_commands_end_to_end(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Card update, card MODEL VERSION in each format, card diff, and --templates all work."""
    url = log.url
    sections = tmp_path / "card.yaml"
    sections.write_text(yaml.safe_dump(SECTIONS), encoding="utf-8")
    code, out, err = run(
        ["card", "update", "credit", str(sections), "--actor", DS, "--db", url], capsys
    )
    assert code == 0 and "every version of credit" in out, err
    code, out, err = run(["card", "credit", "1", "--db", url], capsys)
    assert code == 0 and out.startswith("# Model card: credit version 1"), err
    target = tmp_path / "card.html"
    code, out, err = run(
        ["card", "credit", "2", "-f", "html", "-o", str(target), "--db", url], capsys
    )
    assert code == 0 and "100% complete" in out and target.read_text().startswith("<!DOCTYPE html>")
    code, out, _ = run(["card", "diff", "credit", "1", "2", "--json", "--db", url], capsys)
    assert json.loads(out)["new_version"] == "2"
    code, out, _ = run(["card", "diff", "credit", "1", "2", "--db", url], capsys)
    rows = [line.split()[:3] for line in out.splitlines()]
    assert ["auc", "all", "evaluation"] in rows and ["train_auc", "all", "training"] in rows
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "card.md.j2").write_text("custom {{ card.model }} {{ card.version }}\n")
    code, out, _ = run(["card", "credit", "1", "--templates", str(mine), "--db", url], capsys)
    assert code == 0 and out == "custom credit 1\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["card", "credit", "1", "-f", "docx"], "unknown card format 'docx'"),
        (["card", "credit", "1", "-f", "pdf"], "a PDF card needs --out"),
        (["card", "credit", "7"], "no version '7'"),
        (["card", "nope", "1"], "no model 'nope'"),
        (["card", "credit", "1", "--templates", "/no/such/dir"], "no such folder"),
        (["card", "update", "credit", "1", "/no/such.yaml"], "no card file at"),
        (["card", "update", "credit", "1", "2", "3"], "give [VERSION] FILE"),
        (["card", "credit", "1", "-f", "html", "-o", "/no/such/dir/c.html"], "cannot write"),
    ],
)
def test_card_command_errors_are_one_clear_line(
    log: AuditLog, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    """Bad formats, versions, models, folders and files exit 2 with a sentence, no traceback."""
    code, out, err = run([*args, "--db", log.url], capsys)
    assert code == 2 and words in err and "Traceback" not in err + out


def test_card_out_suffix_chooses_the_format_and_a_contradiction_is_refused(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out card.html` writes HTML; `--out card.pdf --format md` is refused, writing nothing."""
    from auditml.cli import main

    def run(*args: str) -> int:
        try:
            main(["card", "show", *args, "--db", log.url])
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    model, version = "credit", "1"
    assert run(model, version, "--out", str(tmp_path / "card.html")) == 0
    assert (tmp_path / "card.html").read_text().startswith("<!DOCTYPE html>")
    assert run(model, version, "--out", str(tmp_path / "card.pdf"), "--format", "md") == 2
    assert "names a pdf file, but --format is md" in capsys.readouterr().err
    assert not (tmp_path / "card.pdf").exists()
