"""Runtime views: trace a request to its version, prove its record, stats, checks, the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError
from auditml.serving import prove_record, runtime_check, runtime_stats, trace
from tests import rfc9162_reference as rfc
from tests.conftest import run_cli

ORIGIN = "bank.example/credit"
DS, VAL, OPS = "ds@bank.example", "val@bank.example", "ops@bank.example"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _serve(log: AuditLog, version: str, ids: list[str], **fields: Any) -> None:
    """Record one request per id, served by ``version`` in production, in one segment."""
    with log.runtime("credit", env="production", background=False) as rec:
        for n, request_id in enumerate(ids):
            rec.record(
                request_id,
                version=version,
                output=fields.get("output", {"label": "approve" if n % 2 else "refer"}),
                latency_ms=fields.get("latency_ms", 10 + n),
                error=fields.get("error"),
                time=fields.get("time"),
            )


@pytest.fixture
def log(db_url: str) -> Iterator[AuditLog]:
    """Yield a log where v1 served, v2 replaced it and served, then production rolled back to v1."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made:
        made.record_training("credit", actor=DS)
        made.record_training("credit", actor=DS)
        made.approve("credit", "1", actor=VAL, reason="VR-1")
        made.approve("credit", "2", actor=VAL, reason="VR-2")
        made.deploy("credit", "1", "production", actor=OPS)
        _serve(made, "1", ["a0", "a1", "a2"])
        made.deploy("credit", "2", "production", actor=OPS)
        made.open_incident("credit", "2", "approval rate fell", severity="high", actor=OPS)
        _serve(made, "2", ["b0", "b1", "b2", "b3"])
        made.rollback("credit", "production", reason="INC-1", actor=OPS)
        _serve(made, "1", ["c0"])
        made.checkpoint()
        yield made


def test_records_are_traced_to_the_version_that_served_them(log: AuditLog) -> None:
    """Before, during and after v2's time in production, each request traces to its own version."""
    assert [s.version for s in trace(log, "a1").records] == ["1"]
    (during,) = trace(log, "b2").records
    (after,) = trace(log, "c0").records
    assert during.version == "2" and after.version == "1"
    assert during.proof_ok and after.proof_ok and during.proven_against == "checkpoint"
    assert during.deployed is not None and during.deployed["action"] == "model.deploy"
    assert after.deployed is not None and after.deployed["action"] == "model.rollback"
    assert during.deployed_then and after.deployed_then
    assert [a["actor"] for a in during.approvals] == [VAL] and during.trained_by == [DS]
    assert [i["summary"] for i in during.incidents_open] == ["approval rate fell"]
    assert trace(log, "a0").records[0].incidents_open == []


def test_stats_count_requests_errors_latency_and_outputs_per_version(log: AuditLog) -> None:
    """Stats group by version and env, and filters narrow them to what matches."""
    _serve(log, "1", ["e0"], error="timeout", latency_ms=100, output={"score": 0.5})
    found = {(s.version, s.env): s for s in runtime_stats(log)}
    v1, v2 = found[("1", "production")], found[("2", "production")]
    assert (v1.requests, v1.errors, v2.requests, v2.errors) == (5, 1, 4, 0)
    assert v1.error_rate == pytest.approx(0.2)
    assert v2.latency_ms["p50"] == pytest.approx(11.5)
    assert v2.labels == {"label": {"refer": 2, "approve": 2}}
    assert v1.scores["score"]["p50"] == 0.5
    assert [s.version for s in runtime_stats(log, model="credit", env="production")] == ["1", "2"]
    with pytest.raises(InvalidInputError, match="no runtime records or deployments"):
        runtime_stats(log, env="staging")
    assert runtime_stats(log, until="2000-01-01") == []


def test_a_clean_log_has_no_findings(log: AuditLog) -> None:
    """Records each made by the version deployed there at the time give no finding."""
    assert runtime_check(log, now=datetime.now(UTC)) == []


def test_check_reports_versions_that_served_without_deployment(log: AuditLog) -> None:
    """A never-deployed version, a rolled-back one and a record from before deploy are findings."""
    log.record_training("credit", actor=DS)  # version 3: never approved
    _serve(log, "3", ["x0", "x1"])
    _serve(log, "2", ["late"])
    _serve(log, "1", ["early"], time="2020-01-01T00:00:00.000000Z")
    found = {f.kind: f for f in runtime_check(log, now=datetime.now(UTC))}
    assert set(found) == {"never-deployed", "rolled-back", "before-deploy"}
    never = found["never-deployed"]
    assert (never.version, never.count, never.request_ids) == ("3", 2, ["x0", "x1"])
    assert "never approved" in never.message
    assert found["rolled-back"].request_ids == ["late"] and found["rolled-back"].version == "2"
    assert found["before-deploy"].first_time == "2020-01-01T00:00:00.000000Z"


def test_a_deployed_version_that_went_quiet_is_silent(log: AuditLog) -> None:
    """v1 running again with one record since its rollback is silent once far past its usual gap."""
    assert runtime_check(log, now=datetime.now(UTC)) == []
    (silent,) = runtime_check(log, now=datetime.now(UTC) + timedelta(days=2))
    assert (silent.kind, silent.version, silent.count) == ("silent", "1", 1)
    assert "stopped producing records" in silent.message


# -- proofs, checked by an implementation written from docs/format.md alone ----------------


def _jcs(value: Any) -> bytes:
    """RFC 8785 for the values these records hold: sorted keys, no spaces, short numbers."""

    def enc(v: Any) -> str:
        if isinstance(v, dict):
            items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-16-be"))
            return "{" + ",".join(enc(k) + ":" + enc(x) for k, x in items) + "}"
        if isinstance(v, list):
            return "[" + ",".join(enc(x) for x in v) + "]"
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return json.dumps(v, ensure_ascii=False)

    return enc(value).encode("utf-8")


def _independent_check(proof: dict[str, Any], note: str) -> None:
    """Check a record proof as FORMAT.md section 6 says, against a checkpoint note's root."""
    origin, size, root_b64 = note.split("\n")[:3]
    root = base64.b64decode(root_b64)
    assert proof["type"] == "record" and proof["log"] == origin
    record = proof["record"]
    assert proof["index"] == record["i"]
    segment = json.loads(proof["segment_event"])
    assert segment["action"] == "runtime.segment" and segment["seq"] == proof["segment_seq"]
    assert segment["data"]["count"] == proof["count"]
    leaf = rfc.leaf_hash(_jcs(record))
    path = [bytes.fromhex(h) for h in proof["proof"]]
    segment_root = bytes.fromhex(segment["data"]["root"])
    assert rfc.verify_inclusion(proof["index"], proof["count"], leaf, path, segment_root)
    inclusion = proof["event_inclusion"]
    event_leaf = hashlib.sha256(b"\x00" + proof["segment_event"].encode("utf-8")).digest()
    assert bytes.fromhex(inclusion["leaf_hash"]) == event_leaf
    assert inclusion["leaf_index"] == proof["segment_seq"]
    assert inclusion["tree_size"] == int(size) and bytes.fromhex(inclusion["root"]) == root
    event_path = [bytes.fromhex(h) for h in inclusion["proof"]]
    assert rfc.verify_inclusion(inclusion["leaf_index"], int(size), event_leaf, event_path, root)


def _cli_proof(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str], request_id: str
) -> tuple[Path, Path, Path]:
    """Write the record proof, the checkpoint and the verifier key with the CLI; return them."""
    db = log.store.url
    proof, cp, vk = tmp_path / "proof.json", tmp_path / "cp.txt", tmp_path / "vk.txt"
    code, _, err = run_cli(["prove", "record", request_id, "--out", str(proof), "--db", db], capsys)
    assert code == 0, err
    size = json.loads(proof.read_text())["event_inclusion"]["tree_size"]
    cmd = ["checkpoint", "--size", str(size), "--out", str(cp), "--force", "--db", db]
    assert run_cli(cmd, capsys)[0] == 0
    vk.write_text(str(log.verifier_key()))
    return proof, cp, vk


def test_a_cli_record_proof_verifies_independently(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`auditml prove record` writes a proof that code written from FORMAT.md alone accepts."""
    for request_id in ("a0", "b3", "c0"):
        proof, cp, vk = _cli_proof(log, tmp_path, capsys, request_id)
        _independent_check(json.loads(proof.read_text()), cp.read_text())
        args = ["verify", "--record", str(proof), "--checkpoint", str(cp), "--vkey", str(vk)]
        code, out, err = run_cli(args, capsys)
        assert code == 0 and out.startswith("OK: the record of request"), err
        proof.unlink()


def test_the_api_proof_is_the_cli_proof(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prove_record returns exactly what the CLI writes, at the latest checkpoint's size."""
    proof, _, _ = _cli_proof(log, tmp_path, capsys, "b1")
    latest = log.latest_checkpoint()
    assert latest is not None
    assert prove_record(log, "b1") == json.loads(proof.read_text())
    assert prove_record(log, "b1")["event_inclusion"]["tree_size"] == latest.size


def test_a_tampered_proof_fails_with_a_precise_message(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed output, index, segment event or path fails offline, with exit 1 and the reason."""
    proof, cp, vk = _cli_proof(log, tmp_path, capsys, "b2")
    good = json.loads(proof.read_text())
    cases = {
        "the record is not in the segment": lambda p: p["record"]["output"].update(label="x"),
        "index 1 is not record.i 2": lambda p: p.update(index=1),
        "segment_event is not in canonical (JCS) form": lambda p: p.update(
            segment_event=p["segment_event"].replace('"count":4', '"count":4 ')
        ),
        "the segment event is not in the checkpointed log": lambda p: p["event_inclusion"][
            "proof"
        ].__setitem__(0, "00" * 32),
    }
    for expected, tamper in cases.items():
        bad = json.loads(json.dumps(good))
        tamper(bad)
        proof.write_text(json.dumps(bad))
        args = ["verify", "--record", str(proof), "--checkpoint", str(cp), "--vkey", str(vk)]
        code, _, err = run_cli(args, capsys)
        assert code == 1 and "FAILED" in err and expected in err, (expected, err)


# -- the CLI -----------------------------------------------------------------------------------


def test_stats_of_huge_scores_of_both_signs_stay_finite(log: AuditLog) -> None:
    """Scores near ±1e308 give finite quantiles and mean in stats and valid JSON, not NaN or inf."""
    for n, score in enumerate([-1e308] * 5 + [1e308] * 5):
        _serve(log, "1", [f"h{n}"], output={"score": score})
    (v1,) = [s for s in runtime_stats(log) if s.version == "1"]
    figures = v1.scores["score"]
    assert all(math.isfinite(v) for v in figures.values() if v is not None)
    assert figures["p00"] == -1e308 and figures["p100"] == 1e308
    assert figures["p50"] == 0.0 and figures["mean"] == 0.0


def test_trace_and_runtime_commands(log: AuditLog, capsys: pytest.CaptureFixture[str]) -> None:
    """Trace tells the story, stats print a table, check exits 0 on a clean log; --json parses."""
    db = log.store.url
    code, out, _ = run_cli(["trace", "b1", "--db", db], capsys)
    assert code == 0 and "credit version 2 in production" in out and "proof        OK" in out
    assert "incident     INC-1 open (high)" in out
    code, out, _ = run_cli(["trace", "b1", "--json", "--db", db], capsys)
    assert json.loads(out)["records"][0]["record"]["version"] == "2"
    code, out, _ = run_cli(["runtime", "stats", "--db", db], capsys)
    assert code == 0 and "credit" in out and "p99 ms" in out
    code, out, _ = run_cli(["runtime", "stats", "--json", "--model", "credit", "--db", db], capsys)
    assert [s["requests"] for s in json.loads(out)] == [4, 4]
    code, out, _ = run_cli(["runtime", "check", "--db", db], capsys)
    assert code == 0 and out.startswith("OK")
    assert run_cli(["verify", "--no-runtime", "--db", db], capsys)[0] == 0


def test_runtime_check_exits_1_with_findings(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finding makes `auditml runtime check` exit 1 and name the records behind it."""
    _serve(log, "2", ["late-1", "late-2"])
    code, out, _ = run_cli(["runtime", "check", "--db", log.store.url], capsys)
    assert code == 1 and "rolled-back" in out and "late-1, late-2" in out
    code, out, _ = run_cli(["runtime", "check", "--json", "--db", log.store.url], capsys)
    assert code == 1 and json.loads(out)["findings"][0]["count"] == 2


def test_cli_errors_are_sentences(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad request ids, missing or junk files and bad dates exit 2 with a sentence, no traceback."""
    db = log.store.url
    code, _, err = run_cli(["trace", "nope", "--db", db], capsys)
    assert code == 2 and "no runtime record of request 'nope'" in err
    code, _, err = run_cli(["prove", "record", "nope", "--db", db], capsys)
    assert code == 2 and "no runtime record" in err
    args = [
        "verify",
        "--record",
        str(tmp_path / "missing.json"),
        "--checkpoint",
        "x",
        "--vkey",
        "y",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    proof, cp, vk = _cli_proof(log, tmp_path, capsys, "a0")
    code, _, err = run_cli(["prove", "record", "a0", "--out", str(proof), "--db", db], capsys)
    assert code == 2 and "already exists; pass --force" in err
    args = ["verify", "--record", str(tmp_path / "missing.json"), "--checkpoint", str(cp)]
    code, _, err = run_cli([*args, "--vkey", str(vk)], capsys)
    assert code == 2 and "no record proof file" in err
    code, _, err = run_cli(["verify", "--record", str(proof), "--vkey", str(vk)], capsys)
    assert code == 2 and "exactly one --checkpoint" in err
    (tmp_path / "junk.json").write_text("not json")
    args = ["verify", "--record", str(tmp_path / "junk.json"), "--checkpoint", str(cp)]
    code, _, err = run_cli([*args, "--vkey", str(vk)], capsys)
    assert code == 2 and "is not a record proof" in err
    code, _, err = run_cli(["runtime", "stats", "--since", "yesterday", "--db", db], capsys)
    assert code == 2 and "not a date or time" in err


# -- cards ---------------------------------------------------------------------------------


def test_the_card_says_where_the_version_served(log: AuditLog) -> None:
    """The model card's "In production" gives each version's requests and error rate per env."""
    from auditml.cards import build_card, render_card

    _serve(log, "2", ["late"], error="timeout")
    card = build_card(log, "credit", "2")
    (served,) = card.production
    assert (served.environment, served.requests, served.errors) == ("production", 5, 1)
    assert served.error_rate == pytest.approx(0.2) and served.first_time is not None
    assert b"## In production" in render_card(card, "md")
    log.record_training("credit", actor=DS)
    assert build_card(log, "credit", "3").production == []


def test_the_report_has_a_runtime_section_with_the_findings(log: AuditLog) -> None:
    """The audit report lists requests per version and env, and every runtime check finding."""
    from auditml.reports import build_report, render_report

    _serve(log, "2", ["late"])
    report = build_report(log)
    rows = {(x.version, x.environment): x.requests for x in report.runtime}
    assert rows == {("1", "production"): 4, ("2", "production"): 5}
    (finding,) = report.runtime_findings
    assert (finding.kind, finding.request_ids) == ("rolled-back", ["late"])
    text = render_report(report, "md").decode()
    assert "### Runtime records (Art. 12, Art. 72)" in text and "**rolled-back**" in text
    assert any("runtime records" in x.requirement for x in report.crossref)
