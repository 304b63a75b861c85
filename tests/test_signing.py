"""Keys, C2SP signed notes and checkpoints, and Part 11 e-signatures: pure, no database."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auditml import InvalidInputError, VerificationError
from auditml._internal.keyfiles import generate_key_file, load_signer
from auditml.core.signing import (
    FileSigner,
    VerifierKey,
    checkpoint_body,
    esig_statement,
    make_esignature,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
    verify_esignature,
)
from auditml.errors import ConfigurationError
from tests.vector_files import require_vectors

ORIGIN = "bank.example/credit-models"
ROOT = bytes(range(32))


@pytest.fixture
def signer(tmp_path: Path) -> FileSigner:
    """Return a fresh unencrypted log key."""
    return generate_key_file(tmp_path / "log.key", None)


def test_c2sp_example_note_verifies_with_its_key() -> None:
    """The published C2SP example note verifies with its verifier key, and a changed one fails."""
    folder = require_vectors("c2sp")
    vkey = VerifierKey.parse((folder / "example.vkey").read_text(encoding="utf-8"))
    note = (folder / "example.note").read_text(encoding="utf-8")
    body, names = open_note(note, [vkey])
    assert body == "This is an example message.\n" and names == ["example.com/foo"]
    with pytest.raises(VerificationError) as failed:
        open_note(note.replace("example message", "exemplary message"), [vkey])
    assert failed.value.kind == "signature"


def test_verifier_keys_round_trip_and_bind_their_id(signer: FileSigner) -> None:
    """A verifier key prints and parses back; a wrong key ID or algorithm is refused."""
    vkey = VerifierKey.of(ORIGIN, signer)
    assert VerifierKey.parse(str(vkey)) == vkey
    name, kid, key = str(vkey).split("+", 2)
    with pytest.raises(InvalidInputError, match="names key ID"):
        VerifierKey.parse(f"{name}+{'00000000' if kid != '00000000' else '11111111'}+{key}")
    other = base64.b64encode(b"\x02" + signer.public_key).decode()
    with pytest.raises(InvalidInputError, match="not an Ed25519 key"):
        VerifierKey.parse(f"{name}+{kid}+{other}")
    with pytest.raises(InvalidInputError, match="form"):
        VerifierKey.parse("just-a-name")


def test_checkpoint_text_is_exactly_the_c2sp_body() -> None:
    """The body is origin, decimal size and standard base64 root, each ending in a newline."""
    body = checkpoint_body(ORIGIN, 42, ROOT)
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(body) == (ORIGIN, 42, ROOT)
    assert parse_checkpoint(body + "extension line\n") == (ORIGIN, 42, ROOT)


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n1\nnot base64!\n",
        f"\n1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n1\n",
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body: str) -> None:
    """A leading zero, a negative size, a short or non-base64 root, no origin: all refused."""
    with pytest.raises(VerificationError) as failed:
        parse_checkpoint(body)
    assert failed.value.kind == "format"


def test_signed_checkpoint_verifies_and_names_what_is_wrong(
    signer: FileSigner, tmp_path: Path
) -> None:
    """A checkpoint opens with its log key; another key, origin or a changed size is refused."""
    cp = sign_checkpoint(ORIGIN, 7, ROOT, signer)
    vkey = VerifierKey.of(ORIGIN, signer)
    opened = open_checkpoint(cp.note, vkey)
    assert (opened.origin, opened.size, opened.root) == (ORIGIN, 7, ROOT)
    stranger = generate_key_file(tmp_path / "other.key", None)
    with pytest.raises(VerificationError, match="signed by another key") as other_key:
        open_checkpoint(cp.note, VerifierKey.of(ORIGIN, stranger))
    assert other_key.value.kind == "signature"
    with pytest.raises(VerificationError, match=r"not 'other\.example/log'") as other_origin:
        open_checkpoint(cp.note, vkey, origin="other.example/log")
    assert other_origin.value.kind == "anchor"
    forged = cp.note.replace("\n7\n", "\n8\n", 1)
    with pytest.raises(VerificationError, match="does not verify"):
        open_checkpoint(forged, vkey)
    foreign = sign_checkpoint("other.example/log", 7, ROOT, signer)
    with pytest.raises(VerificationError) as wrong_log:
        open_checkpoint(foreign.note, vkey)
    assert wrong_log.value.kind == "anchor"


def test_unknown_cosigners_are_ignored(signer: FileSigner, tmp_path: Path) -> None:
    """A second signature line by a key the verifier does not know does not matter."""
    witness = generate_key_file(tmp_path / "witness.key", None)
    cp = sign_checkpoint(ORIGIN, 3, ROOT, signer)
    extra = sign_note(checkpoint_body(ORIGIN, 3, ROOT), "witness.example", witness)
    cosigned = cp.note + extra.split("\n\n", 1)[1]
    assert open_checkpoint(cosigned, VerifierKey.of(ORIGIN, signer)).size == 3


def test_key_files_are_private_and_encrypted_with_a_passphrase(tmp_path: Path) -> None:
    """Keys are written 0600, encrypted when a passphrase is given, never overwritten."""
    path = tmp_path / "keys" / "me.key"
    made = generate_key_file(path, b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in path.read_bytes()
    assert load_signer(path, b"correct horse").public_key == made.public_key
    with pytest.raises(ConfigurationError, match="is encrypted"):
        load_signer(path)
    with pytest.raises(ConfigurationError, match="wrong passphrase"):
        load_signer(path, b"wrong")
    with pytest.raises(InvalidInputError, match="never overwritten"):
        generate_key_file(path, None)
    with pytest.raises(ConfigurationError, match="no key file"):
        load_signer(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("not a key", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        load_signer(tmp_path / "junk.key")


def test_no_private_key_material_in_reprs_or_errors(tmp_path: Path) -> None:
    """A signer's repr shows its path and public fingerprint, never the private key."""
    path = tmp_path / "me.key"
    made = generate_key_file(path, None)
    pem = path.read_text(encoding="utf-8")
    secret_lines = [line for line in pem.splitlines() if "-----" not in line]
    shown = repr(made)
    assert all(line not in shown for line in secret_lines)
    assert "me.key" in shown


RECORD = {
    "origin": ORIGIN,
    "action": "model.approve",
    "model": "credit-risk",
    "version": "3",
    "artifact_sha256": "ab" * 32,
}


def test_esignature_verifies_only_on_its_own_record(signer: FileSigner) -> None:
    """A signature verifies for its record; moved to any other record or key, it fails."""
    sig = make_esignature(
        signer,
        meaning="approval",
        actor="val@bank.example",
        name="Vera Validator",
        at=datetime.now(UTC),
        **RECORD,
    )
    verify_esignature(sig, public_key=signer.public_key, **RECORD)  # raises if it fails
    for key, value in [
        ("origin", "other.example/log"),
        ("action", "model.reject"),
        ("model", "fraud"),
        ("version", "4"),
        ("artifact_sha256", "cd" * 32),
        ("artifact_sha256", None),
    ]:
        with pytest.raises(VerificationError, match="does not verify for this record"):
            verify_esignature(sig, public_key=signer.public_key, **{**RECORD, key: value})
    for field, value in [
        ("meaning", "review"),
        ("signer", "eve@bank.example"),
        ("name", "Eve"),
        ("time", "2020-01-01T00:00:00.000000Z"),
    ]:
        changed = sig.model_copy(update={field: value})
        with pytest.raises(VerificationError, match="does not verify for this record"):
            verify_esignature(changed, public_key=signer.public_key, **RECORD)


def test_esignature_checked_with_another_key_raises(signer: FileSigner) -> None:
    """An e-signature checked against a key other than the one it names raises, naming both."""
    sig = make_esignature(
        signer,
        meaning="approval",
        actor="val@bank.example",
        name="Vera Validator",
        at=datetime.now(UTC),
        **RECORD,
    )
    other = FileSigner(Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="names the key") as failed:
        verify_esignature(sig, public_key=other.public_key, **RECORD)
    assert failed.value.kind == "signature"


def test_verifier_key_verify_raises_and_never_returns_false(signer: FileSigner) -> None:
    """VerifierKey.verify passes its own signature and raises on a changed message or a bad one."""
    vkey = VerifierKey.of(ORIGIN, signer)
    signature = signer.sign(b"message")
    vkey.verify(b"message", signature)  # raises if it fails
    with pytest.raises(VerificationError, match="signed by another key") as changed:
        vkey.verify(b"massage", signature)
    assert changed.value.kind == "signature"
    with pytest.raises(VerificationError, match="63 bytes long"):
        vkey.verify(b"message", signature[:-1])


def test_esignature_statement_names_every_bound_field() -> None:
    """The signed statement is JCS and holds origin, action, subject, digest, meaning, signer."""
    text = esig_statement(
        meaning="approval",
        signer="v@b",
        name="V",
        time="2026-11-23T00:00:00.000000Z",
        nonce="0" * 32,
        **RECORD,
    ).decode()
    for value in [ORIGIN, "model.approve", "credit-risk", '"3"', "ab" * 32, "approval", "v@b"]:
        assert value in text
    assert text.startswith('{"action":"model.approve"')
