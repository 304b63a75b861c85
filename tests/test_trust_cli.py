"""The trust commands as a user meets them: keys, checkpoints, anchors, proofs, bundles."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from auditml import AuditLog
from auditml.core.merkle import verify_consistency, verify_inclusion
from tests.conftest import drop_triggers, raw_sql
from tests.test_cli import run

ORIGIN = "bank.example/trust-cli"
DS = "ds@bank.example"
VAL = "val@bank.example"
ADMIN = "admin@bank.example"


@pytest.fixture
def url(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Return a log with a trained version, made by the CLI."""
    code, _, err = run(["init", "--origin", ORIGIN, "--db", db_url, "--actor", ADMIN], capsys)
    assert code == 0, err
    code, _, err = run(["train", "credit", "--actor", DS, "--no-code", "--db", db_url], capsys)
    assert code == 0, err
    return db_url


def vkey_of(url: str) -> str:
    """Return the log's verifier key."""
    with AuditLog.open(url) as log:
        return str(log.verifier_key())


def test_init_creates_a_private_key_and_prints_the_verifier_key(
    db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Init writes a 0600 key file, prints where it is and the C2SP verifier key, never the key."""
    key = tmp_path / "keys" / "log.key"
    code, out, _ = run(
        ["init", "--origin", ORIGIN, "--db", db_url, "--key", str(key), "--json"], capsys
    )
    assert code == 0
    info = json.loads(out)
    assert info["key_file"] == str(key) and info["vkey"].startswith(ORIGIN + "+")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = [line for line in key.read_text().splitlines() if "-----" not in line]
    code, out, _ = run(["key", "show", "--db", db_url], capsys)
    assert code == 0 and out.strip() == info["vkey"]
    assert not any(line in out for line in secret)


def test_checkpoint_anchor_and_verify(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A checkpoint written to a file is an anchor that verify --checkpoint accepts."""
    anchor = tmp_path / "anchor.cp"
    code, out, err = run(["checkpoint", "--out", str(anchor), "--db", url], capsys)
    assert code == 0, err
    assert anchor.read_text().startswith(f"{ORIGIN}\n2\n")
    run(["train", "credit", "--actor", DS, "--no-code", "--db", url], capsys)
    code, out, err = run(["verify", "--checkpoint", str(anchor), "--db", url], capsys)
    assert code == 0, err
    assert "extends the anchored checkpoint at size 2" in out


def test_a_truncated_log_fails_against_its_anchor(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Restoring an older copy of the log is named against a later anchor, exit 1."""
    anchor = tmp_path / "anchor.cp"
    run(["train", "credit", "--actor", DS, "--no-code", "--db", url], capsys)
    run(["checkpoint", "--out", str(anchor), "--db", url], capsys)
    # Cut the tail and move the head back, as a restore of an older backup would leave it.
    with AuditLog.open(url) as log:
        head_at_2 = list(log.events(stop=2))
        root_2 = bytes.fromhex(log.root(2))
    drop_triggers(url)
    last = head_at_2[-1]
    raw_sql(
        url,
        [
            "DELETE FROM auditml_event WHERE seq >= 2",
            "DELETE FROM auditml_checkpoint WHERE size > 2",
            (
                "UPDATE auditml_log SET size = 2, head_hash = %s, head_time = %s, root = %s, "
                "frontier = %s",
                (bytes.fromhex(last.hash), last.event.time, root_2, _frontier(head_at_2)),
            ),
        ],
    )
    code, _, err = run(["verify", "--db", url], capsys)
    assert code == 0, err  # the chain alone cannot tell
    code, _, err = run(["verify", "--checkpoint", str(anchor), "--db", url], capsys)
    assert code == 1
    assert "(anchor)" in err and "truncated or restored from an older backup" in err


def _frontier(records: list) -> bytes:  # type: ignore[type-arg]
    from auditml.core.merkle import CompactRange

    rng = CompactRange()
    for record in records:
        rng.append(bytes.fromhex(record.hash))
    return rng.to_bytes()


def test_anchor_refusals_name_what_is_wrong(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A changed anchor, a missing file and an anchor from another log each get one sentence."""
    anchor = tmp_path / "anchor.cp"
    run(["checkpoint", "--out", str(anchor), "--db", url], capsys)
    forged = tmp_path / "forged.cp"
    forged.write_text(anchor.read_text().replace("\n2\n", "\n1\n", 1))
    code, _, err = run(["verify", "--checkpoint", str(forged), "--db", url], capsys)
    assert code == 1 and "does not verify" in err
    code, _, err = run(["verify", "--checkpoint", str(tmp_path / "none.cp"), "--db", url], capsys)
    assert code == 2 and "no checkpoint file" in err
    other = tmp_path / "other.db"
    run(["init", "--origin", "other.example/log", "--db", f"sqlite:///{other}"], capsys)
    foreign = tmp_path / "foreign.cp"
    run(["checkpoint", "--out", str(foreign), "--db", f"sqlite:///{other}"], capsys)
    code, _, err = run(["verify", "--checkpoint", str(foreign), "--db", url], capsys)
    assert code == 1 and "not 'bank.example/trust-cli'" in err
    code, _, err = run(
        [
            "verify",
            "--checkpoint",
            str(anchor),
            "--vkey",
            vkey_of(f"sqlite:///{other}"),
            "--db",
            url,
        ],
        capsys,
    )
    assert code == 1 and "(signature)" in err


def test_proofs_print_format_json_that_verifies(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both prove commands print docs/format.md JSON that the verifiers accept."""
    for _ in range(5):
        run(["train", "credit", "--actor", DS, "--no-code", "--db", url], capsys)
    code, out, err = run(["prove", "inclusion", "3", "--db", url], capsys)
    assert code == 0, err
    proof = json.loads(out)
    assert set(proof) == {"type", "log", "tree_size", "leaf_index", "leaf_hash", "root", "proof"}
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        3,
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )
    code, out, _ = run(["prove", "consistency", "3", "6", "--db", url], capsys)
    cons = json.loads(out)
    assert (cons["type"], cons["size1"], cons["size2"]) == ("consistency", 3, 6)
    verify_consistency(
        3,
        6,
        [bytes.fromhex(h) for h in cons["proof"]],
        bytes.fromhex(cons["root1"]),
        bytes.fromhex(cons["root2"]),
    )
    code, _, err = run(["prove", "inclusion", "99", "--db", url], capsys)
    assert code == 2 and "not in the tree" in err
    code, _, err = run(["prove", "consistency", "0", "--db", url], capsys)
    assert code == 2 and "size1 must be from 1" in err


@pytest.mark.parametrize("name", ["bundle", "bundle.zip"])
def test_export_then_verify_offline_then_tamper(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    """A bundle verifies with no database, pinned to the right key; a changed line is named."""
    out_path = tmp_path / name
    code, out, err = run(["export", str(out_path), "--prove", "1", "--db", url], capsys)
    assert code == 0, err
    vkey = vkey_of(url)
    code, out, err = run(["verify", "--bundle", str(out_path), "--vkey", vkey], capsys)
    assert code == 0, err
    assert "verifies offline: 2 events" in out and "1 inclusion proof(s)" in out
    code, _, err = run(["export", str(out_path), "--db", url], capsys)
    assert code == 2 and "already exists" in err
    if name == "bundle":
        events = out_path / "events.jsonl"
        lines = events.read_bytes().split(b"\n")
        lines[0] = lines[0].replace(b"log.init", b"log.init ")
        events.write_bytes(b"\n".join(lines))
        code, _, err = run(["verify", "--bundle", str(out_path)], capsys)
        assert code == 1 and "events.jsonl line 1" in err


def test_a_bundle_signed_by_another_key_is_refused_when_pinned(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--vkey pins the auditor's expected key; a bundle signed by any other is refused."""
    run(["export", str(tmp_path / "b"), "--db", url], capsys)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run(["init", "--origin", ORIGIN, "--db", other], capsys)
    code, _, err = run(
        ["verify", "--bundle", str(tmp_path / "b"), "--vkey", vkey_of(other)], capsys
    )
    assert code == 1 and "not by the key you pinned" in err


def test_signed_approval_by_command(
    url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """keygen, key register, approve --sign-with, signatures and verify work end to end."""
    monkeypatch.setenv("AUDITML_KEY_PASSPHRASE", "correct horse battery staple")
    key = tmp_path / "val.key"
    code, out, err = run(
        ["keygen", "--actor", VAL, "--name", "Vera Validator", "--out", str(key)], capsys
    )
    assert code == 0, err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and b"ENCRYPTED" in key.read_bytes()
    pub = Path(f"{key}.pub")
    code, _, err = run(["key", "register", str(pub), "--actor", ADMIN, "--db", url], capsys)
    assert code == 0, err
    code, _, err = run(
        [
            "approve",
            "credit",
            "1",
            "--sign-with",
            str(key),
            "--reason",
            "VR-17",
            "--actor",
            VAL,
            "--db",
            url,
        ],
        capsys,
    )
    assert code == 0, err
    code, out, _ = run(["signatures", "--json", "--db", url], capsys)
    (entry,) = json.loads(out)
    assert (entry["name"], entry["meaning"], entry["version"]) == (
        "Vera Validator",
        "approval",
        "1",
    )
    code, out, err = run(["verify", "--db", url], capsys)
    assert code == 0 and "1 e-signature(s) verified" in out, err
    code, _, err = run(["key", "revoke", str(pub), "--actor", ADMIN, "--db", url], capsys)
    assert code == 0, err
    code, _, err = run(
        ["reject", "credit", "1", "--sign-with", str(key), "--actor", VAL, "--db", url], capsys
    )
    assert code == 3 and "signature-invalid" in err and "revoked" in err


def test_policy_can_require_signed_approvals(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With require_signatures, an unsigned approval is refused (exit 3) and recorded."""
    policy = tmp_path / "auditml.toml"
    policy.write_text('require_signatures = ["approve"]\n', encoding="utf-8")
    run(["policy", "apply", str(policy), "--actor", ADMIN, "--db", url], capsys)
    code, _, err = run(["approve", "credit", "1", "--actor", VAL, "--db", url], capsys)
    assert code == 3 and "signature-required" in err
    with AuditLog.open(url) as log:
        assert [r.event.data["rule"] for r in log.events(action="policy.denied")] == [
            "signature-required"
        ]


def test_keygen_without_a_passphrase_off_a_terminal_says_how(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The keygen command refuses to write an unprotected key and says how to give a passphrase."""
    code, _, err = run(["keygen", "--actor", VAL, "--out", str(tmp_path / "k.key")], capsys)
    assert code == 2 and "AUDITML_KEY_PASSPHRASE" in err
    assert not (tmp_path / "k.key").exists()
