"""Hostile reads of runtime records: lying columns, stray rows, junk proofs, odd input.

The columns copied out of a record (request id, time, model, version, env,
latency, error) and the rows of ``auditml_value`` are indexes, never facts:
each attack here edits them with raw SQL (append-only triggers dropped, as an
attacker holding the database could) and shows that trace, prove record,
open_commitment, runtime stats and check, the card and the report either give
what the verified record bytes say or name the mismatch, and never crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog, InvalidInputError, VerificationError
from auditml.serving import prove_record, runtime_check, runtime_stats, trace
from tests.conftest import drop_triggers, raw_query, raw_sql, run_cli

ORIGIN = "bank.example/credit"
DS, VAL, OPS = "ds@bank.example", "val@bank.example", "ops@bank.example"
INSERT = (
    "INSERT INTO auditml_record (log_id, seg, i, request_id, time, model, version, env, "
    "latency_ms, error, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _serve(log: AuditLog, version: str, ids: list[str], env: str = "production", **kw: Any) -> None:
    """Record one request per id, served by ``version`` in ``env``, in one segment."""
    with log.runtime("credit", env=env, background=False) as rec:
        for n, request_id in enumerate(ids):
            rec.record(
                request_id,
                version=version,
                output={"label": "approve" if n % 2 else "refer", "score": 0.25 * n},
                latency_ms=10 + n,
                error=kw.get("error"),
                time=kw.get("time"),
                subject=kw.get("subject"),
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
        _serve(made, "1", ["a0", "a1", "a2"], subject="customer-1")
        made.deploy("credit", "2", "production", actor=OPS)
        _serve(made, "2", ["b0", "b1", "b2", "b3"])
        made.rollback("credit", "production", reason="INC-1", actor=OPS)
        _serve(made, "1", ["c0"])
        made.checkpoint()
        drop_triggers(db_url)
        yield made


def _stats(log: AuditLog) -> list[dict[str, Any]]:
    return [s.as_dict() for s in runtime_stats(log)]


def _checks(log: AuditLog) -> list[dict[str, Any]]:
    return [f.as_dict() for f in runtime_check(log, now=datetime.now(UTC))]


def _seg_of(log: AuditLog, request_id: str) -> int:
    url = log.store.url
    return int(
        raw_query(url, "SELECT seg FROM auditml_record WHERE request_id = %s", (request_id,))[0][0]
    )


def _body_of(log: AuditLog, request_id: str) -> bytes:
    url = log.store.url
    return bytes(
        raw_query(url, "SELECT body FROM auditml_record WHERE request_id = %s", (request_id,))[0][0]
    )


def _ghost(log: AuditLog, seg: int, i: int = 0, request_id: str = "ghost") -> None:
    """Insert a well-formed record as record ``i`` of segment ``seg``, outside auditml."""
    record = json.loads(_body_of(log, "b0"))
    record.update(request_id=request_id, i=i)
    body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    row = (1, seg, i, request_id, record["time"], "credit", "2", "production", 1.0, None, body)
    raw_sql(log.store.url, [(INSERT, row)])


# -- lookup columns that lie ---------------------------------------------------------------


def test_changed_lookup_columns_change_no_figure_or_finding(log: AuditLog) -> None:
    """Rewritten version, env, model, time, latency and error columns change no stat or finding."""
    stats, checks = _stats(log), _checks(log)
    card_before = _card_production(log)
    raw_sql(
        log.store.url,
        [
            "UPDATE auditml_record SET version = '9', env = 'staging', model = 'other', "
            "time = '2000-01-01T00:00:00.000000Z', latency_ms = 99999, error = 'boom' "
            "WHERE request_id IN ('b0', 'b1', 'c0')",
        ],
    )
    assert _stats(log) == stats
    assert _checks(log) == checks == []
    assert _card_production(log) == card_before
    assert [s.version for s in runtime_stats(log, model="credit", env="production")] == ["1", "2"]


def _card_production(log: AuditLog) -> list[Any]:
    from auditml.cards import build_card

    return [build_card(log, "credit", v).production for v in ("1", "2")]


def test_a_relabelled_request_id_is_named_not_traced(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row moved under another request id fails trace, prove and open_commitment, CLI exit 1."""
    raw_sql(
        log.store.url, ["UPDATE auditml_record SET request_id = 'victim' WHERE request_id = 'b1'"]
    )
    for call in (
        lambda: trace(log, "victim"),
        lambda: prove_record(log, "victim"),
        lambda: log.open_commitment("victim", "subject"),
    ):
        with pytest.raises(VerificationError, match="request_id column was changed") as info:
            call()
        assert info.value.kind == "column"
    db = log.store.url
    for args in (["trace", "victim"], ["prove", "record", "victim"]):
        code, _, err = run_cli([*args, "--db", db], capsys)
        assert code == 1 and "request_id column was changed" in err and "b1" in err


def test_a_version_column_changed_on_the_proven_record_does_not_change_its_trace(
    log: AuditLog,
) -> None:
    """Trace and prove tell the version the record's bytes say, whatever its columns hold."""
    raw_sql(
        log.store.url,
        ["UPDATE auditml_record SET version = '1', model = 'x' WHERE request_id = 'b2'"],
    )
    (story,) = trace(log, "b2").records
    assert story.proof_ok and story.version == "2" and story.deployed_then
    assert prove_record(log, "b2")["record"]["version"] == "2"


def test_a_swapped_index_column_is_named_by_trace(log: AuditLog) -> None:
    """Swapping two records' i columns fails their proofs in trace and prove record, and stats."""
    seg = _seg_of(log, "b0")
    swap = "UPDATE auditml_record SET i = %s WHERE seg = %s AND i = %s"
    raw_sql(log.store.url, [(swap, (100, seg, 0)), (swap, (0, seg, 1)), (swap, (1, seg, 100))])
    (story,) = trace(log, "b0").records
    assert not story.proof_ok and "not the record stored at that index" in str(story.proof_error)
    assert story.approvals == [] and story.deployed is None and not story.deployed_then
    with pytest.raises(VerificationError):
        prove_record(log, "b0")
    with pytest.raises(VerificationError, match="says it is record 1") as info:
        runtime_stats(log)
    assert info.value.seq == seg


def test_trace_trusts_the_signed_checkpoint_note_not_its_root_column(log: AuditLog) -> None:
    """Trace proves against the root the signed note holds; a forged note fails, named."""
    size = log.latest_checkpoint().size  # type: ignore[union-attr]
    raw_sql(
        log.store.url,
        [("UPDATE auditml_checkpoint SET root = %s WHERE size = %s", (bytes(32), size))],
    )
    (story,) = trace(log, "b1").records
    assert story.proof_ok and story.proven_against == "checkpoint"
    note = log.latest_checkpoint().note  # type: ignore[union-attr]
    forged = note.replace(note.splitlines()[2], "A" * 43 + "=")
    raw_sql(
        log.store.url, [("UPDATE auditml_checkpoint SET note = %s WHERE size = %s", (forged, size))]
    )
    (story,) = trace(log, "b1").records
    assert not story.proof_ok and story.approvals == []


def test_segment_records_read_in_batches_come_whole_and_in_order(log: AuditLog) -> None:
    """Reading segments a few at a time (server-side cursors one after another) loses no row."""
    stored = raw_query(log.store.url, "SELECT seg, i, body FROM auditml_record ORDER BY seg, i")
    segs = sorted({int(r[0]) for r in stored})
    with log.store.snapshot() as snap:
        read = [
            (seg, bytes(body))
            for seg, bodies in snap.bodies_of_segments(log._ledger.log_id, segs, chunk=2, batch=1)
            for body in bodies
        ]
    assert read == [(int(seg), bytes(body)) for seg, _, body in stored] and len(read) == 8


# -- rows the log does not commit to ---------------------------------------------------------


def test_a_record_beyond_the_head_is_not_counted_or_traced(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record claiming a segment past the log's head is in no figure, and trace says FAILED."""
    stats, checks = _stats(log), _checks(log)
    _ghost(log, seg=log.head().size + 5)
    assert _stats(log) == stats and _checks(log) == checks
    (story,) = trace(log, "ghost").records
    assert not story.proof_ok and "added outside auditml" in str(story.proof_error)
    assert story.approvals == [] and story.trained_seq is None and story.deployed is None
    with pytest.raises(VerificationError, match="added outside auditml"):
        prove_record(log, "ghost")
    code, out, _ = run_cli(["trace", "ghost", "--db", log.store.url], capsys)
    assert code == 1 and "FAILED" in out and "not traced" in out and "approved" not in out
    code, out, _ = run_cli(["trace", "ghost", "--json", "--db", log.store.url], capsys)
    assert code == 1 and json.loads(out)["records"][0]["proof_ok"] is False
    code, _, err = run_cli(["prove", "record", "ghost", "--db", log.store.url], capsys)
    assert code == 1 and "added outside auditml" in err


def test_a_record_claiming_a_non_segment_event_is_not_counted_or_traced(log: AuditLog) -> None:
    """A record filed under an event that is no runtime.segment (here log.init) is in nothing."""
    stats = _stats(log)
    _ghost(log, seg=0)
    assert _stats(log) == stats and _checks(log) == []
    (story,) = trace(log, "ghost").records
    assert not story.proof_ok and "not a runtime.segment" in str(story.proof_error)
    with pytest.raises(VerificationError, match=r"not a runtime\.segment"):
        prove_record(log, "ghost")


def test_a_record_added_to_a_committed_segment_fails_every_view(log: AuditLog) -> None:
    """An extra row in a real segment fails stats, check, card and report, naming the segment."""
    from auditml.cards import build_card
    from auditml.reports import build_report

    seg = _seg_of(log, "b0")
    _ghost(log, seg=seg, i=4)
    for call in (
        lambda: runtime_stats(log),
        lambda: runtime_check(log),
        lambda: build_card(log, "credit", "2"),
        lambda: build_report(log),
    ):
        with pytest.raises(VerificationError, match="runtime record") as info:
            call()
        assert info.value.seq == seg


def test_a_changed_or_deleted_record_fails_stats_with_its_segment(
    log: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed body or a deleted row fails stats and check (CLI exit 1), never a wrong count."""
    seg = _seg_of(log, "b1")
    changed = _body_of(log, "b1").replace(b'"approve"', b'"refer"')
    raw_sql(
        log.store.url, [("UPDATE auditml_record SET body = %s WHERE request_id = 'b1'", (changed,))]
    )
    with pytest.raises(VerificationError, match="do not hash") as info:
        runtime_stats(log, model="credit")
    assert info.value.seq == seg
    for args in (["runtime", "stats"], ["runtime", "check"]):
        code, _, err = run_cli([*args, "--db", log.store.url], capsys)
        assert code == 1 and "do not hash" in err
    raw_sql(log.store.url, ["DELETE FROM auditml_record WHERE request_id = 'b1'"])
    with pytest.raises(
        VerificationError, match=r"runtime record 1: .* missing, added or out of order"
    ):
        runtime_check(log)
    raw_sql(log.store.url, [("DELETE FROM auditml_record WHERE seg = %s", (seg,))])
    with pytest.raises(VerificationError, match="missing from the store"):
        runtime_stats(log)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"i": 0}', "text, not bytes"])
def test_junk_bodies_never_crash_a_view(
    log: AuditLog, capsys: pytest.CaptureFixture[str], body: bytes | str
) -> None:
    """Junk stored as a record (stray, or in a real segment) is named by every view, no crash."""
    if isinstance(body, str) and not log.store.url.startswith("sqlite"):
        body = body.encode()  # only SQLite's loose typing stores text in a BLOB column
    stats = _stats(log)
    ghost = (1, log.head().size + 1, 0, "junk", "2026-01-01T00:00:00.000000Z", "credit", "2")
    raw_sql(log.store.url, [(INSERT, (*ghost, "production", 1.0, None, body))])
    assert _stats(log) == stats  # a stray row is no record of the log
    with pytest.raises(VerificationError):
        trace(log, "junk")
    with pytest.raises(VerificationError):
        log.open_commitment("junk", "subject")
    code, _, err = run_cli(["trace", "junk", "--db", log.store.url], capsys)
    assert code == 1 and "run `auditml verify`" in err
    seg = _seg_of(log, "b0")
    raw_sql(
        log.store.url, [("UPDATE auditml_record SET body = %s WHERE request_id = 'b0'", (body,))]
    )
    for call in (lambda: runtime_stats(log), lambda: runtime_check(log), lambda: trace(log, "b1")):
        try:
            result = call()
        except VerificationError as exc:
            assert exc.seq == seg
        else:  # trace of a sibling: its own proof fails, reported, not raised
            assert not result.records[0].proof_ok  # type: ignore[union-attr]


# -- values kept off the log -----------------------------------------------------------------


def test_open_commitment_stands_on_the_committed_record(log: AuditLog) -> None:
    """A record body and value swapped together, or a changed value, never open as genuine."""
    from auditml.core.canonical import canonical_bytes
    from auditml.core.records import commitment

    assert log.open_commitment("a1", "subject").value == "customer-1"
    url = log.store.url
    # the value's lookup columns are only an index: changing them changes nothing
    raw_sql(url, ["UPDATE auditml_value SET seg = 0, i = 99, name = 'x'"])
    assert log.open_commitment("a1", "subject").value == "customer-1"
    # a changed value of an untouched record fails as a hash, and junk as unreadable
    kept = json.loads(_body_of(log, "a2"))["commitments"]["subject"]
    held = raw_query(url, "SELECT value, salt FROM auditml_value WHERE commitment = %s", (kept,))[0]
    raw_sql(url, [("UPDATE auditml_value SET value = %s WHERE commitment = %s", (b'"eve"', kept))])
    with pytest.raises(VerificationError, match="not the one committed to"):
        log.open_commitment("a2", "subject")
    raw_sql(url, [("UPDATE auditml_value SET value = %s WHERE commitment = %s", (b"\xff{", kept))])
    with pytest.raises(VerificationError, match="cannot be read"):
        log.open_commitment("a2", "subject")
    raw_sql(
        url,
        [
            (
                "UPDATE auditml_value SET value = %s, salt = %s WHERE commitment = %s",
                (bytes(held[0]), b"x", kept),
            )
        ],
    )
    with pytest.raises(VerificationError):
        log.open_commitment("a2", "subject")
    # an attacker re-commits the record to a value of their own: the segment root no longer holds
    salt = bytes(32)
    forged = commitment("mallory", salt)
    record = json.loads(_body_of(log, "a1"))
    old = record["commitments"]["subject"]
    record["commitments"]["subject"] = forged
    raw_sql(
        url,
        [
            (
                "UPDATE auditml_record SET body = %s WHERE request_id = 'a1'",
                (canonical_bytes(record),),
            ),
            (
                "UPDATE auditml_value SET commitment = %s, salt = %s, value = %s "
                "WHERE commitment = %s",
                (forged, salt, canonical_bytes("mallory"), old),
            ),
        ],
    )
    with pytest.raises(VerificationError, match="not in the segment"):
        log.open_commitment("a1", "subject")


# -- hostile proofs, checkpoints and output paths for the CLI ------------------------------------


def _proof_files(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str], request_id: str = "b2"
) -> tuple[Path, Path, Path]:
    db = log.store.url
    proof, cp, vk = tmp_path / "proof.json", tmp_path / "cp.txt", tmp_path / "vk.txt"
    code, _, err = run_cli(["prove", "record", request_id, "--out", str(proof), "--db", db], capsys)
    assert code == 0, err
    size = json.loads(proof.read_text())["event_inclusion"]["tree_size"]
    assert (
        run_cli(["checkpoint", "--size", str(size), "--out", str(cp), "--db", db], capsys)[0] == 0
    )
    vk.write_text(str(log.verifier_key()))
    return proof, cp, vk


def _mutations(good: dict[str, Any]) -> dict[str, Any]:
    """Return hostile variants of a good proof, by name."""
    big = [good["proof"][0]] * 100_000
    deep: Any = {}
    for _ in range(900):
        deep = {"x": deep}

    def edit(**changes: Any) -> dict[str, Any]:
        return {**json.loads(json.dumps(good)), **changes}

    return {
        "null": None,
        "list": [good],
        "string": "proof",
        "type": edit(type="inclusion"),
        "index-string": edit(index="2"),
        "index-float": edit(index=2.0),
        "index-negative": edit(index=-1),
        "index-huge": edit(index=2**80),
        "count-zero": edit(count=0),
        "count-bool": edit(count=True),
        "proof-dict": edit(proof={"a": 1}),
        "proof-huge": edit(proof=big),
        "proof-short": edit(proof=good["proof"][:-1]),
        "proof-upper": edit(proof=[h.upper() for h in good["proof"]]),
        "record-list": edit(record=[1]),
        "record-deep": edit(record=deep),
        "segment-event-object": edit(segment_event={"a": 1}),
        "segment-event-junk": edit(segment_event="{"),
        "inclusion-huge": edit(event_inclusion={**good["event_inclusion"], "proof": big}),
        "inclusion-size": edit(event_inclusion={**good["event_inclusion"], "tree_size": 10**30}),
        "inclusion-null": edit(event_inclusion=None),
        "log": edit(log="other.example/log"),
    }


def test_hostile_record_proofs_fail_cleanly(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed, mistyped, huge or deeply nested proofs exit 1 or 2 with a sentence, never pass."""
    proof, cp, vk = _proof_files(log, tmp_path, capsys)
    good = json.loads(proof.read_text())
    for name, bad in _mutations(good).items():
        proof.write_text(json.dumps(bad))
        args = ["verify", "--record", str(proof), "--checkpoint", str(cp), "--vkey", str(vk)]
        code, out, err = run_cli(args, capsys)
        assert code in (1, 2) and not out.startswith("OK") and err.strip(), name
        code, out, _ = run_cli([*args, "--json"], capsys)
        assert code in (1, 2) and '"ok": true' not in out, name
    raw = {
        "not-utf8": b"\xff\xfe{}",
        "nan": json.dumps(good).replace('"count": 4', '"count": NaN').encode(),
        "duplicate-key": json.dumps(good)
        .replace('{"type": "record"', '{"type": "record", "type": "record"')
        .encode(),
        "deep-array": b"[" * 200_000 + b"]" * 200_000,
        "empty": b"",
    }
    for name, data in raw.items():
        proof.write_bytes(data)
        args = ["verify", "--record", str(proof), "--checkpoint", str(cp), "--vkey", str(vk)]
        code, out, err = run_cli(args, capsys)
        assert code in (1, 2) and not out.startswith("OK") and "is not a record proof" in err, name


def test_a_proof_for_another_log_or_root_fails(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid proof checked against another size's or another log's checkpoint exits 1."""
    proof, cp, vk = _proof_files(log, tmp_path, capsys)
    _serve(log, "1", ["d0"])
    later = tmp_path / "later.txt"
    assert run_cli(["checkpoint", "--out", str(later), "--db", log.store.url], capsys)[0] == 0
    args = ["verify", "--record", str(proof), "--checkpoint", str(later), "--vkey", str(vk)]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "is not the trusted checkpoint root" in err
    other, _ = AuditLog.init(f"sqlite:///{tmp_path / 'other.db'}", origin=ORIGIN, actor="admin")
    with other:
        other_cp = tmp_path / "other-cp.txt"
        other_cp.write_text(other.checkpoint().note)
        other_vk = str(other.verifier_key())
    args = ["verify", "--record", str(proof), "--checkpoint", str(other_cp), "--vkey", other_vk]
    assert run_cli(args, capsys)[0] == 1
    args = ["verify", "--record", str(proof), "--checkpoint", str(cp), "--vkey", other_vk]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and err.strip()


@pytest.mark.parametrize(
    "checkpoint", [b"", b"\xff\xfe", b"x\n" * 100_000, b"bank.example/credit\n-1\nAAAA\n\n"]
)
def test_hostile_checkpoints_and_keys_fail_cleanly(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: bytes
) -> None:
    """A junk checkpoint file or verifier key exits non-zero with a sentence."""
    proof, cp, vk = _proof_files(log, tmp_path, capsys)
    bad = tmp_path / "bad-cp.txt"
    bad.write_bytes(checkpoint)
    args = ["verify", "--record", str(proof), "--checkpoint", str(bad), "--vkey", str(vk)]
    code, out, err = run_cli(args, capsys)
    assert code in (1, 2) and not out.startswith("OK") and err.strip()
    for key in ("nonsense", "a+b+c", str(tmp_path)):
        args = ["verify", "--record", str(proof), "--checkpoint", str(cp), "--vkey", key]
        code, out, err = run_cli(args, capsys)
        assert code in (1, 2) and not out.startswith("OK") and err.strip(), key


def test_devices_pipes_folders_and_huge_files_are_refused_unread(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/zero, a FIFO, a folder or an oversized file as proof, checkpoint or key never hangs."""
    proof, cp, vk = _proof_files(log, tmp_path, capsys)
    fifo, huge, binary = tmp_path / "fifo", tmp_path / "huge.json", tmp_path / "binary.key"
    os.mkfifo(fifo)
    with huge.open("wb") as f:
        f.truncate(65 << 20)  # sparse: costs no disk
    binary.write_bytes(b"\xff\xfe\x00 not text")
    key = vk.read_text()
    for bad in ("/dev/zero", str(fifo), str(tmp_path), str(huge)):
        for args in (
            ["--record", bad, "--checkpoint", str(cp), "--vkey", key],
            ["--record", str(proof), "--checkpoint", bad, "--vkey", key],
        ):
            code, _, err = run_cli(["verify", *args], capsys)
            assert code == 2 and ("not a regular file" in err or "MiB" in err), (bad, err)
    code, _, err = run_cli(["verify", "--checkpoint", "/dev/zero", "--db", log.store.url], capsys)
    assert code == 2 and "not a regular file" in err
    args = ["--record", str(proof), "--checkpoint", str(cp), "--vkey", str(binary)]
    code, _, err = run_cli(["verify", *args], capsys)
    assert code == 2 and "is not a verifier key file" in err
    for path in ("report.pdf", "bundle"):
        code, _, err = run_cli(["verify", str(tmp_path / path), "--vkey", str(binary)], capsys)
        assert code == 2 and "is not a verifier key file" in err


def test_prove_record_out_never_follows_a_link_or_overwrites(
    log: AuditLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out refuses a symlink (even dangling), and an existing file without --force."""
    db = log.store.url
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link, dangling = tmp_path / "link.json", tmp_path / "dangling.json"
    os.symlink(target, link)
    os.symlink(tmp_path / "nowhere", dangling)
    for path in (link, dangling):
        for extra in ([], ["--force"]):
            args = ["prove", "record", "b1", "--out", str(path), *extra, "--db", db]
            code, _, err = run_cli(args, capsys)
            assert code == 2 and "symbolic link" in err
    assert target.read_text() == "keep me" and not (tmp_path / "nowhere").exists()
    code, _, err = run_cli(["prove", "record", "b1", "--out", str(target), "--db", db], capsys)
    assert code == 2 and "already exists; pass --force" in err and target.read_text() == "keep me"
    code, _, err = run_cli(["prove", "record", "b1", "--out", str(tmp_path), "--db", db], capsys)
    assert code == 2 and "is a folder" in err
    db_file = db.removeprefix("sqlite:///")
    if db.startswith("sqlite"):
        args = ["prove", "record", "b1", "--out", db_file, "--force", "--db", db]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "never overwrites" in err
    code, _, _ = run_cli(
        ["prove", "record", "b1", "--out", str(target), "--force", "--db", db], capsys
    )
    assert code == 0 and json.loads(target.read_text())["record"]["request_id"] == "b1"


# -- CLI input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    ["", " ", "\x00", "a\x00b", "\udcff", "x" * 100_000, "[red]a0[/red]", "\x1b[2Ja0", "a0\n"],
)
def test_odd_request_ids_get_a_sentence(
    log: AuditLog, capsys: pytest.CaptureFixture[str], request_id: str
) -> None:
    """Empty, NUL, non-UTF-8, huge, markup or escape request ids exit 2 with a sentence."""
    db = log.store.url
    for args in (["trace", request_id], ["prove", "record", request_id]):
        code, out, err = run_cli([*args, "--db", db], capsys)
        assert code == 2 and err.startswith("error: ") and "\x1b" not in out + err
    with pytest.raises(InvalidInputError):
        trace(log, request_id)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--model", "nope"], "no model 'nope'"),
        (["--model", "\udcff"], "not valid UTF-8"),
        (["--model", "\x00"], "NUL"),
        (["--env", "nope"], "in environment 'nope'"),
        (["--model", "credit", "--env", "staging"], "of 'credit' in environment 'staging'"),
        (["--since", "yesterday"], "not a date or time"),
        (["--since", "2026-02-30"], "not a date or time"),
        (["--until", "2026-01-01T00:00:00+25:00"], "not a date or time"),
        (["--since", "0001-01-01T00:00:00+05:00"], "out of range"),
        (["--since", "2026-01-02", "--until", "2026-01-01"], "before it starts"),
    ],
)
def test_bad_stats_filters_get_a_sentence(
    log: AuditLog, capsys: pytest.CaptureFixture[str], options: list[str], expected: str
) -> None:
    """Unknown models and environments, bad or reversed times exit 2 naming the problem."""
    code, _, err = run_cli(["runtime", "stats", *options, "--db", log.store.url], capsys)
    assert code == 2 and expected in err


def test_stats_filters_read_the_bytes(log: AuditLog) -> None:
    """--since/--until select records by their own times, even with their time columns rewritten."""
    first = json.loads(_body_of(log, "b0"))["time"]
    raw_sql(log.store.url, ["UPDATE auditml_record SET time = '1999-01-01T00:00:00.000000Z'"])
    after = {(s.version, s.requests) for s in runtime_stats(log, since=first)}
    assert after == {("2", 4), ("1", 1)}
    assert runtime_stats(log, until="2000-01-01") == []
    assert [s.requests for s in runtime_stats(log, until=first)] == [3]


# -- runtime check at its boundaries ----------------------------------------------------------


def _at(time: str, micros: int) -> str:
    moment = datetime.fromisoformat(time.replace("Z", "+00:00")) + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def moves(db_url: str) -> Iterator[tuple[AuditLog, dict[str, str]]]:
    """Yield a log: v1 in production and staging, v2 in staging then production, a rollback."""
    made, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with made:
        for _ in range(3):
            made.record_training("credit", actor=DS)
        made.approve("credit", "1", actor=VAL, reason="VR-1")
        made.approve("credit", "2", actor=VAL, reason="VR-2")
        times = {
            "v1-prod": made.deploy("credit", "1", "production", actor=OPS).time,
            "v1-staging": made.deploy("credit", "1", "staging", actor=OPS).time,
            "v2-staging": made.deploy("credit", "2", "staging", actor=OPS).time,
            "v2-prod": made.deploy("credit", "2", "production", actor=OPS).time,
            "rollback": made.rollback("credit", "production", actor=OPS).time,
        }
        yield made, times


def _one(log: AuditLog, version: str, request_id: str, time: str, env: str = "production") -> None:
    _serve(log, version, [request_id], env=env, time=time)


def test_check_boundaries_same_instant_and_environments(
    moves: tuple[AuditLog, dict[str, str]],
) -> None:
    """A move takes effect at its own microsecond, in its own environment only."""
    log, t = moves
    _one(log, "1", "v1-just-before-v2", _at(t["v2-prod"], -1))
    _one(log, "2", "v2-at-its-deploy", t["v2-prod"])
    _one(log, "1", "v1-at-v2-deploy", t["v2-prod"])
    _one(log, "1", "v1-at-rollback", t["rollback"])
    _one(log, "2", "v2-at-rollback", t["rollback"])
    _one(log, "2", "v2-staging", _at(t["v2-staging"], 1), env="staging")
    _one(log, "1", "v1-staging-after-v2", _at(t["v2-staging"], 1), env="staging")
    _one(log, "1", "v1-before-any", _at(t["v1-prod"], -1))
    _one(log, "3", "v3-never", t["rollback"])
    found = {f.request_ids[0]: f.kind for f in runtime_check(log, now=datetime.now(UTC))}
    assert found == {
        "v1-at-v2-deploy": "replaced",
        "v2-at-rollback": "rolled-back",
        "v1-staging-after-v2": "replaced",
        "v1-before-any": "before-deploy",
        "v3-never": "never-deployed",
    }


def test_a_retired_version_that_serves_is_a_finding(db_url: str) -> None:
    """Records of a version after its retirement are 'retired', wherever they were served."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin")
    with log:
        log.record_training("credit", actor=DS)
        log.record_training("credit", actor=DS)
        log.approve("credit", "1", actor=VAL, reason="VR-1")
        log.approve("credit", "2", actor=VAL, reason="VR-2")
        log.deploy("credit", "1", "production", actor=OPS)
        log.deploy("credit", "2", "production", actor=OPS)
        retired = log.retire("credit", "1", reason="replaced", actor=OPS).time
        _one(log, "1", "zombie", _at(retired, 1))
        _one(log, "1", "same-instant", retired)
        (finding,) = runtime_check(log, now=datetime.now(UTC))
        assert finding.kind == "retired" and set(finding.request_ids) == {"zombie", "same-instant"}


def test_a_clock_running_ahead_is_named_and_cannot_hide_silence(
    moves: tuple[AuditLog, dict[str, str]],
) -> None:
    """Records stamped after their segment was appended are 'clock-skew' and judged at its time."""
    log, t = moves
    _one(log, "1", "ok-1", _at(t["rollback"], 10))
    _one(log, "1", "ok-2", _at(t["rollback"], 20))
    assert runtime_check(log, now=datetime.now(UTC)) == []
    _one(log, "1", "from-2099", "2099-01-01T00:00:00.000000Z")
    found = {f.kind: f for f in runtime_check(log, now=datetime.now(UTC) + timedelta(days=3))}
    assert found["clock-skew"].request_ids == ["from-2099"]
    assert found["silent"].version == "1"  # a record from the future does not keep v1 'alive'


def test_a_deployed_version_with_no_record_goes_silent(
    moves: tuple[AuditLog, dict[str, str]],
) -> None:
    """A running version that never recorded, in an environment its model records in, is silent."""
    log, t = moves
    _one(log, "2", "staging-1", _at(t["v2-staging"], 1), env="staging")
    _one(log, "2", "staging-2", _at(t["v2-staging"], 2), env="staging")
    _one(log, "1", "prod-1", _at(t["v1-prod"], 1))
    _one(log, "1", "prod-2", _at(t["v1-prod"], 2))
    later = datetime.now(UTC) + timedelta(days=2)
    silent = {(f.env, f.version) for f in runtime_check(log, now=later) if f.kind == "silent"}
    assert silent == {("production", "1"), ("staging", "2")}


# -- holes on the writing and verifying side, fixed there ------------------------------------


def test_verify_names_a_record_beyond_the_head(log: AuditLog) -> None:
    """A record row claiming a segment event past the log's head fails verify."""
    _ghost(log, seg=log.head().size + 5)
    with pytest.raises(VerificationError, match="runtime record"):
        log.verify()


def test_segments_hold_at_most_max_records_without_the_background_thread(log: AuditLog) -> None:
    """A recorder without its thread still commits segments of at most max_records records."""
    with log.runtime("credit", env="production", background=False, max_records=10) as rec:
        for n in range(25):
            rec.record(f"m{n}", version="1", output={"label": "refer"}, latency_ms=1)
    counts = [r.event.data["count"] for r in log.events(action="runtime.segment")]
    assert max(counts) <= 10
