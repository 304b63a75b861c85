"""Audit reports: built from real lifecycle logs, rendered in every format, verified as PDFs."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader, PdfWriter

from auditml import AuditLog, VerificationError, build_report, render_report, verify_report
from auditml._internal.keyfiles import PublicKeyFile, generate_key_file
from auditml.bundle import verify_bundle
from auditml.core.signing import FileSigner
from auditml.reports.model import NO_EVIDENCE, SECTIONS
from auditml.reports.pdf import BUNDLE_NAME, html_to_pdf, write_pdf_report
from auditml.reports.render import render_html
from tests.test_cli import run

ORIGIN = "bank.example/report-test"
ADMIN = "admin@bank.example"
DS = "ds@bank.example"
VAL = "val@bank.example"
REL = "rel@bank.example"
HOSTILE = "<script>alert('x')</script> [click](http://evil.example) | # not a heading"
AWARE = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _signer(tmp_path: Path) -> FileSigner:
    return generate_key_file(tmp_path / "val.key", b"a passphrase of some length")


def _story(log: AuditLog, tmp_path: Path) -> None:
    """Record a model's life with the real API: train, approve (signed), deploy, incident."""
    signer = _signer(tmp_path)
    log.register_key(PublicKeyFile(VAL, "Vera Validator", signer.public_key), actor=ADMIN)
    for auc in (0.81, 0.84):
        log.record_training("credit", data={"metrics": {"auc": auc}}, actor=DS)
    log.update_card(
        "credit",
        {
            "intended_use": "Scoring consumer loan applications",
            "owners": [{"name": "Credit risk team"}],
            "risk_rating": "high",
            "limitations": HOSTILE,
        },
        actor=DS,
    )
    for version in ("1", "2"):
        for i in range(3):
            log.evaluate("credit", version, metrics={"auc": 0.8 + i / 100}, actor=VAL)
    log.approve("credit", "1", reason="validation report VR-1", actor=VAL, signer=signer)
    log.approve("credit", "2", reason=HOSTILE, actor=VAL)
    log.deploy("credit", "1", "production", actor=REL)
    log.deploy("credit", "2", "production", actor=REL)
    log.open_incident(
        "credit",
        "2",
        "applicants under 30 refused",
        severity="serious",
        impact="death",
        environment="production",
        aware_at=AWARE,
        id="INC-7",
        actor=REL,
    )
    log.rollback("credit", "production", reason="INC-7", actor=REL)
    log.close_incident("INC-7", "rolled back", reported_at=AWARE + timedelta(days=3), actor=REL)


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Any:
    """Yield a log holding the whole story of model ``credit``."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with made:
        _story(made, tmp_path)
        yield made


def _pdf(log: AuditLog, tmp_path: Path, **kw: Any) -> Path:
    report = build_report(log, **kw)
    return write_pdf_report(log, report, tmp_path / "report.pdf")


def _text(path: Path) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def test_pdf_shows_every_section_and_the_cross_reference_matrix(
    log: AuditLog, tmp_path: Path
) -> None:
    """The PDF's text holds every section heading in order and each regulation it maps."""
    text = _text(_pdf(log, tmp_path))
    flat = " ".join(text.split())
    position = flat.find("14. Cross-reference matrix")  # the end of the contents
    for i, (_, title) in enumerate(SECTIONS[1:], start=2):
        position = flat.find(f"{i}. {title}", position + 1)
        assert position > 0, f"section {i}. {title} missing or out of order"
    for clause in (
        "Art. 11",
        "Art. 12",
        "Art. 17",
        "Art. 18",
        "Art. 19",
        "Art. 72",
        "Art. 73",
        "Annex IV",
        "SR 26-2",
        "SR 11-7",
        "11.10",
        "11.50",
    ):
        assert clause in flat, clause
    assert "Vera Validator" in flat and "approval" in flat
    assert "Art. 73(4)" in flat and "2026-03-12 09:30:00 UTC" in flat  # 10 days: a death
    assert "yes: to v1" in flat


def test_pdf_has_running_header_toc_bookmarks_metadata_and_pdfa(
    log: AuditLog, tmp_path: Path
) -> None:
    """Every page says 'page X of Y'; bookmarks cover every section; metadata and PDF/A are set."""
    path = _pdf(log, tmp_path)
    reader = PdfReader(path)
    count = len(reader.pages)
    for number, page in enumerate(reader.pages, start=1):
        assert f"page {number} of {count}" in (page.extract_text() or "")
    titles = [item.title for item in reader.outline if not isinstance(item, list)]
    for index, (_, title) in enumerate(SECTIONS[1:], start=2):
        assert f"{index}. {title}" in titles
    meta = reader.metadata
    assert meta is not None
    assert meta.title == "Audit report: all models"
    assert meta.author and "auditml" in meta.author
    assert meta.subject and "credit" in meta.subject
    assert "checkpoint=" in str(meta.get("/Keywords"))
    xmp = reader.xmp_metadata
    assert xmp is not None and b"pdfaid" in xmp.stream.get_data()
    mediabox = reader.pages[0].mediabox
    assert round(float(mediabox.width)) == 595  # A4


def test_letter_paper(log: AuditLog, tmp_path: Path) -> None:
    """--paper letter prints on US letter pages."""
    report = build_report(log)
    path = tmp_path / "letter.pdf"
    write_pdf_report(log, report, path, paper="letter")
    box = PdfReader(path).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)


def test_embedded_bundle_extracts_and_verifies(log: AuditLog, tmp_path: Path) -> None:
    """The bundle inside the PDF verifies offline and matches the report's checkpoint."""
    report = build_report(log)
    path = write_pdf_report(log, report, tmp_path / "report.pdf")
    data = PdfReader(path).attachments[BUNDLE_NAME][0]
    (tmp_path / "b.zip").write_bytes(data)
    proven = verify_bundle(tmp_path / "b.zip")
    assert (proven.origin, proven.size, proven.root) == (
        report.checkpoint.origin,
        report.checkpoint.size,
        report.checkpoint.root,
    )
    check = verify_report(path)
    assert check.size == report.checkpoint.size and check.report_id == report.report_id


def _rewrite_bundle(path: Path, out: Path) -> None:
    """Change one event inside the embedded bundle, rewriting the attachment with pypdf."""
    writer = PdfWriter(clone_from=path)
    names = writer.root_object["/Names"]["/EmbeddedFiles"]["/Names"]
    for i in range(0, len(names), 2):
        if names[i] == BUNDLE_NAME:
            stream = names[i + 1].get_object()["/EF"]["/F"].get_object()
            original = zipfile.ZipFile(io.BytesIO(stream.get_data()))
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as changed:
                for item in original.namelist():
                    body = original.read(item)
                    if item == "events.jsonl":
                        body = body.replace(b"validation report VR-1", b"validation report VR-9")
                    changed.writestr(item, body)
            stream.set_data(buf.getvalue())
    writer.write(out)


def test_cli_verify_accepts_untouched_report_and_refuses_altered_evidence(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml verify report.pdf` exits 0 when intact and 1 once the embedded bundle changed."""
    path = _pdf(log, tmp_path)
    code, out, err = run(["verify", str(path)], capsys)
    assert code == 0, err
    assert "intact" in out
    altered = tmp_path / "altered.pdf"
    _rewrite_bundle(path, altered)
    code, out, err = run(["verify", str(altered)], capsys)
    assert code == 1
    assert "evidence bundle embedded" in err and "does not verify" in err
    assert "Traceback" not in err


def test_verify_refuses_report_whose_printed_checkpoint_disagrees(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PDF that prints another root than its evidence proves fails loudly, exit 1."""
    report = build_report(log)
    forged_cp = report.checkpoint.model_copy(update={"root": "ab" * 32})
    forged = report.model_copy(
        update={
            "checkpoint": forged_cp,
            "integrity": report.integrity.model_copy(update={"checkpoint": forged_cp}),
        }
    )
    bundle = log.export(tmp_path / "bundle.zip", size=report.checkpoint.size)
    path = tmp_path / "forged.pdf"
    path.write_bytes(html_to_pdf(render_html(forged), forged, bundle=bundle))
    with pytest.raises(VerificationError, match="the report and its evidence disagree"):
        verify_report(path)
    code, _, err = run(["verify", str(path)], capsys)
    assert code == 1 and "disagree" in err


def test_verify_refuses_a_pdf_without_evidence(tmp_path: Path) -> None:
    """A PDF that carries no bundle is not a verifiable report."""
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    path = tmp_path / "blank.pdf"
    writer.write(path)
    with pytest.raises(VerificationError, match=r"carries no evidence-bundle\.zip"):
        verify_report(path)


def test_html_md_json_show_hostile_text_as_text(log: AuditLog, tmp_path: Path) -> None:
    """HTML escapes and Markdown neutralises a script, a link and a heading from the log."""
    report = build_report(log)
    html = render_report(report, "html").decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    md = render_report(report, "md").decode()
    assert "<script>" not in md and "](http" not in md
    assert "\\[click\\]\\(http://evil.example\\)" in md
    assert not re.search(r"^# not a heading", md, re.MULTILINE)
    data = json.loads(render_report(report, "json"))
    assert data["checkpoint"]["root"] == report.checkpoint.root
    assert next(c["sections"]["limitations"] for c in data["cards"]) == HOSTILE


def test_empty_sections_say_no_evidence_recorded(db_url: str) -> None:
    """A log with one training run still has every section, the empty ones saying so."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor=ADMIN)
    with made:
        made.record_training("solo", actor=DS)
        report = build_report(made)
    assert report.signatures == [] and report.incidents == []
    html = render_report(report, "html").decode()
    md = render_report(report, "md").decode()
    for i, (_, title) in enumerate(SECTIONS, start=1):
        assert f"{i}. {title}" in html
        assert f"{i}. {title}" in md
    assert html.count(NO_EVIDENCE) >= 6
    assert md.count(NO_EVIDENCE) >= 6


def test_report_summarizes_evaluations_and_lists_decisions(log: AuditLog) -> None:
    """Evaluations are counted per version; every decision is listed with actor and reason."""
    report = build_report(log)
    counts = {(e.model, e.version): e.count for e in report.evaluations}
    assert counts == {("credit", "1"): 3, ("credit", "2"): 3}
    actions = [d.action for d in report.changes]
    assert "model.evaluate" not in actions
    for action in (
        "model.train",
        "model.approve",
        "model.deploy",
        "model.rollback",
        "incident.open",
        "incident.close",
        "key.register",
        "card.update",
    ):
        assert action in actions, action
    rollback = next(d for d in report.changes if d.action == "model.rollback")
    assert (rollback.actor, rollback.reason, rollback.environment) == (REL, "INC-7", "production")
    (incident,) = report.incidents
    assert incident.report_clause == "Art. 73(4)" and incident.reported_late is False
    assert incident.rollback_to == "1"
    assert report.identities[0].intended_purpose == "Scoring consumer loan applications"
    assert report.identities[0].risk_tier == "high"
    assert [s.name for s in report.signatures] == ["Vera Validator"]


def test_since_limits_the_decisions_listed_but_not_the_state(log: AuditLog) -> None:
    """--since in the future lists no decision, yet the inventory still shows what runs."""
    report = build_report(log, since="2999-01-01")
    assert report.changes == [] and report.evaluations == []
    assert {v.version: v.state for v in report.inventory}["1"] == "deployed"


def test_cli_writes_every_format(
    log: AuditLog, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml report` writes HTML, Markdown and JSON, chosen by --format or the suffix."""
    for name, fmt in (("r.html", None), ("r.md", "md"), ("r.json", "json")):
        args = ["report", "--db", db_url, "--model", "credit", "--out", str(tmp_path / name)]
        code, out, err = run([*args, *(["--format", fmt] if fmt else [])], capsys)
        assert code == 0, err
        assert "Wrote" in out
    assert json.loads((tmp_path / "r.json").read_text())["models"] == ["credit"]
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--model", "nope"], "no model 'nope'"),
        (["--since", "last tuesday"], "not a date or time"),
        (["--format", "docx"], "not a report format"),
        (["--paper", "a3"], "not a paper size"),
    ],
)
def test_cli_bad_input_is_one_clean_sentence(
    log: AuditLog,
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    """Unknown model, bad time, bad format or paper: exit 2 with a sentence, no traceback."""
    code, _, err = run(
        ["report", "--db", db_url, "--out", str(tmp_path / "r.html"), *extra], capsys
    )
    assert code == 2
    assert words in err and "Traceback" not in err


def test_cli_unwritable_out_is_a_clean_error(
    log: AuditLog, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --out in a missing folder, or a read-only one, gives exit 2 and says why."""
    code, _, err = run(
        ["report", "--db", db_url, "--out", str(tmp_path / "missing" / "r.pdf")], capsys
    )
    assert code == 2 and "missing" in err and "Traceback" not in err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(
            ["report", "--db", db_url, "--format", "html", "--out", str(locked / "r.html")],
            capsys,
        )
    finally:
        locked.chmod(0o700)
    import os

    if os.geteuid() != 0:  # root writes anywhere
        assert code == 2 and "cannot write" in err
    assert "Traceback" not in err


def test_user_templates_override_the_packaged_ones(log: AuditLog, tmp_path: Path) -> None:
    """A report.md.j2 in --templates replaces the packaged Markdown template."""
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.md.j2").write_text("custom {{ r.report_id }}\n")
    report = build_report(log)
    out = render_report(report, "md", templates=tmp_path / "tpl").decode()
    assert out == f"custom {report.report_id}\n"


def test_an_html_report_says_where_its_evidence_is_and_claims_no_attachment(
    log: AuditLog,
) -> None:
    """The HTML copy says it carries no evidence; only the page a PDF is made from claims one."""
    from auditml.reports.render import render_html

    report = build_report(log)
    html = render_report(report, "html").decode()
    assert "This HTML copy carries no evidence of its own" in html
    assert "This PDF alone" not in html
    assert "This PDF alone" in render_html(report, for_pdf=True)
