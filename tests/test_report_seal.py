"""The PDF report's seal: every byte but the seal's digits, signed with the log key, to the end.

Two PDFs are printed once for the whole module (a sealed report and one written
the way reports were before they were sealed); every attack works on a copy.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from auditml import AuditLog, build_report, verify_report
from auditml._internal.keyfiles import generate_key_file
from auditml.core.pdfseal import (
    BLANK,
    HEX_LEN,
    MARKER,
    check_seal,
    find_seal,
    placeholder,
    read_seal,
    seal_bytes,
    seal_statement,
)
from auditml.core.signing import FileSigner, VerifierKey, parse_checkpoint
from auditml.errors import ConfigurationError, InvalidInputError, VerificationError
from auditml.reports.model import BUNDLE_NAME, SEAL_NAME
from auditml.reports.pdf import write_pdf_report
from auditml.reports.render import html_to_pdf, render_html
from auditml.reports.verify import MAX_REPORT_BYTES
from tests.conftest import run_cli

ORIGIN = "bank.example/sealed-reports"
ATTACK = b"ALL DEPLOYS APPROVED BY 3 VALIDATORS"
CHANGED = "the PDF's bytes changed since it was sealed"
PAGES = "its pages may show something the evidence does not"


@dataclass(frozen=True)
class Printed:
    """The module's two PDFs and the key that signed them."""

    sealed: bytes
    unsealed: bytes
    vkey: str


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Printed:
    """Print one sealed report and one unsealed (pre-seal) report of a small log.

    An approval's reason is the seal's marker and blank digits, so every test
    also proves that the log's text never appears raw where verify looks.
    """
    folder = tmp_path_factory.mktemp("sealed")
    made, _ = AuditLog.init(f"sqlite:///{folder / 'audit.db'}", origin=ORIGIN, actor="admin")
    with made as log:
        log.record_training("credit", data={"metrics": {"auc": 0.81}}, actor="ds")
        # The log's own text holds the seal's marker: it must not become a second seal.
        log.approve("credit", "1", reason=(MARKER + BLANK).decode(), actor="val")
        report = build_report(log)
        sealed = write_pdf_report(log, report, folder / "report.pdf").read_bytes()
        bundle = log.export(folder / BUNDLE_NAME, size=report.checkpoint.size)
        unsealed = html_to_pdf(render_html(report, for_pdf=True), report, bundle=bundle)
        return Printed(sealed, unsealed, str(log.verifier_key()))


def _file(tmp_path: Path, data: bytes, name: str = "report.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _fails(path: Path, *fragments: str, kind: str = "seal") -> str:
    """Assert the library refuses ``path`` with ``kind`` and every fragment; return the message."""
    with pytest.raises(VerificationError) as caught:
        verify_report(path)
    message = str(caught.value)
    assert caught.value.kind == kind, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _cli_fails(path: Path, capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    code, out, err = run_cli(["verify", str(path)], capsys)
    assert (code, out) == (1, ""), (code, out, err)
    for fragment in fragments:
        assert fragment in err, err


def _overlay() -> PdfWriter:
    """Return a one-page PDF with the tester's red text on it, as pypdf draws it."""
    overlay = PdfWriter()
    page = overlay.add_blank_page(595, 842)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F9"): overlay._add_object(font)})}
    )
    content = DecodedStreamObject()
    content.set_data(b"BT /F9 20 Tf 1 0 0 rg 40 420 Td (" + ATTACK + b") Tj ET")
    page[NameObject("/Contents")] = overlay._add_object(content)
    return overlay


# -- what a sealed report proves ------------------------------------------------------


def test_sealed_report_verifies_and_says_it_checked_the_pages_and_the_evidence(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An untouched report exits 0 and says its pages are as sealed and its evidence verifies."""
    path = _file(tmp_path, printed.sealed)
    check = verify_report(path)
    seal = read_seal(printed.sealed)
    assert seal is not None and check.sealed and check.seal_sha256 == seal.digest_hex
    assert check.as_dict()["ok"] is True and check.as_dict()["sealed"] is True
    code, out, err = run_cli(["verify", str(path)], capsys)
    assert code == 0, err
    assert f"its {check.pages} page(s) and every other byte of the file are as they were " in out
    assert "sealed with the log key, its embedded evidence verifies offline" in out
    code, out, _ = run_cli(["verify", str(path), "--vkey", printed.vkey, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["sealed"] is True and data["seal_sha256"] == seal.digest_hex
    names = PdfReader(path).attachments
    assert SEAL_NAME in names and names[SEAL_NAME][0].count(MARKER) == 1


def test_seal_placeholder_is_stored_raw_once_and_covers_all_but_its_digits(
    printed: Printed,
) -> None:
    """The marker occurs once in the file's raw bytes; its digits hold the file's own length."""
    offset = find_seal(printed.sealed)
    seal = read_seal(printed.sealed)
    assert offset is not None and seal is not None and seal.offset == offset
    assert seal.length == len(printed.sealed) and printed.sealed.count(MARKER) == 1
    report_json = PdfReader(io.BytesIO(printed.sealed)).attachments["audit-report.json"][0]
    assert MARKER + BLANK in report_json  # the log's text is in the file, compressed
    assert printed.sealed[offset - len(MARKER) : offset] == MARKER
    check_seal(printed.sealed, seal, ORIGIN, VerifierKey.parse(printed.vkey))


# -- the tester's attack and its relatives ----------------------------------------------


def test_tester_attack_red_text_merged_onto_page_one_fails(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pypdf overlay merge that passed before now fails, exit 1, though its evidence holds."""
    writer = PdfWriter(clone_from=io.BytesIO(printed.sealed))
    writer.pages[0].merge_page(_overlay().pages[0])
    path = tmp_path / "tampered.pdf"
    writer.write(path)
    assert ATTACK.decode() in (PdfReader(path).pages[0].extract_text() or "")
    message = _fails(path, CHANGED, PAGES)
    assert "besides" not in message  # the evidence and the printed checkpoint still agree
    _cli_fails(path, capsys, CHANGED, PAGES)


def test_one_byte_flipped_in_a_page_content_stream_fails(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One byte changed inside page 1's content stream fails with the seal's digest message."""
    ref = PdfReader(io.BytesIO(printed.sealed)).pages[0].raw_get("/Contents")
    ref = ref[0] if isinstance(ref, list) else ref
    start = printed.sealed.index(f"\n{ref.idnum} 0 obj".encode())
    at = printed.sealed.index(b"stream\n", start) + 7 + 10
    assert at < printed.sealed.index(b"endstream", start)
    data = bytearray(printed.sealed)
    data[at] ^= 0x01
    path = _file(tmp_path, bytes(data))
    _fails(path, CHANGED, PAGES, "the SHA-256 of its bytes is")
    _cli_fails(path, capsys, CHANGED)


def test_appended_incremental_update_fails_even_when_it_changes_nothing_shown(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An incremental update appended after sealing is outside the sealed range, and fails."""
    writer = PdfWriter(io.BytesIO(printed.sealed), incremental=True)
    writer.pages[0].merge_page(_overlay().pages[0])
    buf = io.BytesIO()
    writer.write(buf)
    assert buf.getvalue().startswith(printed.sealed)  # the sealed bytes are all still there
    path = _file(tmp_path, buf.getvalue())
    extra = len(buf.getvalue()) - len(printed.sealed)
    _fails(path, CHANGED, f"it is {extra:,} byte(s) longer than when sealed", PAGES)
    _cli_fails(path, capsys, "appended after its sealed end")
    _fails(
        _file(tmp_path, printed.sealed + b"\n", "newline.pdf"),
        "it is 1 byte(s) longer than when sealed",
    )


def test_a_second_seal_is_refused(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second marker (an update carrying a seal of its own) is refused as ambiguous."""
    writer = PdfWriter(io.BytesIO(printed.sealed), incremental=True)
    writer.add_attachment("auditml-seal-2.txt", placeholder())
    buf = io.BytesIO()
    writer.write(buf)
    path = _file(tmp_path, buf.getvalue())
    _fails(path, "holds 2 seals", "a sealed report holds exactly one")
    _cli_fails(path, capsys, "holds 2 seals")
    twice = _file(tmp_path, printed.sealed + MARKER, "twice.pdf")  # even cut short at the end
    _fails(twice, "holds 2 seals")


def test_changed_metadata_fails(printed: Printed, tmp_path: Path) -> None:
    """A document title changed with pypdf fails, in place of a page or not."""
    writer = PdfWriter(clone_from=io.BytesIO(printed.sealed))
    writer.add_metadata({"/Title": "Approved by every validator"})
    path = tmp_path / "retitled.pdf"
    writer.write(path)
    assert PdfReader(path).metadata.title == "Approved by every validator"  # type: ignore[union-attr]
    _fails(path, CHANGED)


def test_resaved_by_pypdf_with_nothing_changed_fails(printed: Printed, tmp_path: Path) -> None:
    """Re-saving through pypdf rewrites the bytes, so the seal no longer covers them."""
    path = tmp_path / "resaved.pdf"
    PdfWriter(clone_from=io.BytesIO(printed.sealed)).write(path)
    assert path.read_bytes() != printed.sealed
    assert path.read_bytes().count(MARKER) == 1  # the seal came along, uncompressed
    _fails(path, CHANGED, PAGES)


def test_changed_attachment_fails_and_says_the_evidence_broke_too(
    printed: Printed, tmp_path: Path
) -> None:
    """The report's JSON rewritten inside the file fails the seal, and names what else broke."""
    writer = PdfWriter(clone_from=io.BytesIO(printed.sealed))
    names = writer.root_object["/Names"]["/EmbeddedFiles"]["/Names"]  # type: ignore[index]
    for i in range(0, len(names), 2):
        if names[i] == "audit-report.json":
            stream = names[i + 1].get_object()["/EF"]["/F"].get_object()
            stream.set_data(stream.get_data().replace(b'"checkpoint"', b'"checkpoinx"'))
    path = tmp_path / "json.pdf"
    writer.write(path)
    _fails(path, CHANGED, "besides, the audit-report.json embedded in")


def test_resealed_by_another_key_fails(printed: Printed, tmp_path: Path) -> None:
    """A changed file sealed again, by another key of the same name, fails on the signature."""
    seal = read_seal(printed.sealed)
    assert seal is not None
    data = bytearray(printed.sealed)
    data[seal.offset : seal.offset + HEX_LEN] = BLANK
    data[200] ^= 0x01  # any byte outside the digits
    thief = generate_key_file(tmp_path / "thief.key", None)
    forged = seal_bytes(bytes(data), ORIGIN, thief)
    path = _file(tmp_path, forged)
    _fails(path, "the PDF's seal is not signed by the log key", PAGES)


def test_stripped_seal_is_an_unsealed_report_and_fails(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blotting out the marker turns the file into an unsealed one: it still exits 1."""
    path = _file(tmp_path, printed.sealed.replace(MARKER, b"X" * len(MARKER)))
    _fails(path, "carries no seal, so its printed pages are not covered", kind="unsealed")
    _cli_fails(path, capsys, "carries no seal")


# -- reports written before the seal -------------------------------------------------


def test_unsealed_report_verifies_its_evidence_but_says_its_pages_are_not_covered(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pre-seal PDF: the evidence verifies, but the pages are uncovered, so exit 1 and why."""
    path = _file(tmp_path, printed.unsealed, "old.pdf")
    assert MARKER not in printed.unsealed
    _fails(
        path,
        "carries no seal, so its printed pages are not covered",
        "Its embedded evidence verifies offline (3 events of log",
        "the checkpoint it prints is the one that evidence proves",
        "Write the report again with `auditml report`",
        kind="unsealed",
    )
    check = verify_report(path, allow_unsealed=True)
    assert not check.sealed and check.seal_sha256 is None and check.as_dict()["ok"] is False
    assert check.size == 3 and check.origin == ORIGIN
    _cli_fails(path, capsys, "its printed pages are not covered", "evidence verifies offline")
    code, out, _ = run_cli(["verify", str(path), "--json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["kind"] == "unsealed"


def test_pinned_key_of_another_log_fails_a_sealed_report(
    printed: Printed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--vkey pins the key the evidence and the seal must be signed with."""
    other = VerifierKey.of(ORIGIN, generate_key_file(tmp_path / "other.key", None))
    path = _file(tmp_path, printed.sealed)
    with pytest.raises(VerificationError, match="not by the key you pinned"):
        verify_report(path, str(other))
    code, _, err = run_cli(["verify", str(path), "--vkey", str(other)], capsys)
    assert code == 1 and "not by the key you pinned" in err


# -- hostile files -------------------------------------------------------------------


def _digits_at(data: bytes) -> int:
    return data.index(MARKER) + len(MARKER)


def _with_digits(data: bytes, digits: bytes) -> bytes:
    at = _digits_at(data)
    return data[:at] + digits + data[at + len(digits) :]


HOSTILE: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("cut in half", lambda d: d[: len(d) // 2], ""),
    ("cut inside the seal", lambda d: d[: _digits_at(d) + 5], "cut short"),
    ("blank seal", lambda d: _with_digits(d, BLANK), "never sealed"),
    ("not hex", lambda d: _with_digits(d, b"Z"), "damaged or edited"),
    ("upper-case hex", lambda d: _with_digits(d, d[_digits_at(d) :][:HEX_LEN].upper()), ""),
    ("empty", lambda d: b"", "not a readable PDF"),
    ("not a PDF", lambda d: b"just some text, not a PDF at all\n" * 50, "not a readable PDF"),
    ("only a marker", lambda d: MARKER + b"f" * HEX_LEN, CHANGED),
    ("only a header", lambda d: b"%PDF-1.7\n" + MARKER + b"1" * HEX_LEN, CHANGED),
]


@pytest.mark.parametrize(("name", "make", "fragment"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_fail_cleanly(
    printed: Printed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    make: Callable[[bytes], bytes],
    fragment: str,
) -> None:
    """Truncated, damaged, empty, non-PDF and marker-only files exit 1 with a reason, no crash."""
    data = make(printed.sealed)
    assert data != printed.sealed, name
    path = _file(tmp_path, data)
    with pytest.raises(VerificationError) as caught:
        verify_report(path)
    assert fragment in str(caught.value), (name, str(caught.value))
    code, out, err = run_cli(["verify", str(path)], capsys)
    assert (code, out) == (1, "") and err.startswith("FAILED: verification failed ("), (name, err)


def test_huge_folder_and_fifo_are_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file over the limit (sparse: no disk), a folder and a FIFO are refused with exit 2."""
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:
        f.truncate(MAX_REPORT_BYTES + 1)
    fifo = tmp_path / "fifo.pdf"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.pdf"
    folder.mkdir()
    for path, fragment in ((huge, "larger than 2 GiB"), (fifo, "not a regular file")):
        with pytest.raises(InvalidInputError, match=fragment):
            verify_report(path)
        code, _, err = run_cli(["verify", str(path)], capsys)
        assert code == 2 and fragment in err
    code, _, err = run_cli(["verify", str(folder)], capsys)
    assert code == 2 and "not a regular file" in err


# -- writing a sealed report --------------------------------------------------------------


def test_writing_a_pdf_without_the_log_key_is_refused_before_printing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No key, no seal: the PDF is refused (exit 2, nothing written), HTML is still written."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    made, _ = AuditLog.init(url, origin=ORIGIN, actor="admin")
    with made as log:
        log.checkpoint()
        log.key_path().rename(tmp_path / "moved.key")
    with AuditLog.open(url) as log:
        report = build_report(log, allow_partial=True)
        with pytest.raises(ConfigurationError, match="a PDF report is sealed with the log key"):
            write_pdf_report(log, report, tmp_path / "r.pdf")
    assert not (tmp_path / "r.pdf").exists()
    args = ["report", "--out", str(tmp_path / "r.pdf"), "--allow-partial", "--db", url]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "sealed with the log key" in err and not (tmp_path / "r.pdf").exists()
    args = ["report", "--out", str(tmp_path / "r.html"), "--db", url]
    assert run_cli(args, capsys)[0] == 0


# -- the seal on bytes alone (core.pdfseal) ----------------------------------------------


def _signer(tmp_path: Path) -> FileSigner:
    return generate_key_file(tmp_path / "log.key", None)


def test_every_single_byte_change_outside_the_digits_fails(tmp_path: Path) -> None:
    """Flip each byte of a small sealed file in turn: every flip fails, inside the digits too."""
    signer = _signer(tmp_path)
    key = VerifierKey.of(ORIGIN, signer)
    data = seal_bytes(b"head " + placeholder() + b" tail", ORIGIN, signer)
    seal = read_seal(data)
    assert seal is not None
    check_seal(data, seal, ORIGIN, key)
    for at in range(len(data)):
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        with pytest.raises(VerificationError):
            found = read_seal(bytes(flipped))
            if found is None:
                raise VerificationError("unsealed", kind="unsealed")
            check_seal(bytes(flipped), found, ORIGIN, key)


def test_seal_refuses_a_file_with_no_blank_placeholder_or_two(tmp_path: Path) -> None:
    """Sealing needs exactly one blank placeholder; a sealed file is not sealed twice."""
    signer = _signer(tmp_path)
    for data, fragment in (
        (b"no placeholder here", "no blank seal placeholder"),
        (placeholder() + placeholder(), "holds 2 seals"),
    ):
        with pytest.raises(InvalidInputError, match=fragment):
            seal_bytes(data, ORIGIN, signer)
    once = seal_bytes(placeholder(), ORIGIN, signer)
    with pytest.raises(InvalidInputError, match="no blank seal placeholder"):
        seal_bytes(once, ORIGIN, signer)


def test_seal_is_bound_to_its_log_and_is_never_a_checkpoint(tmp_path: Path) -> None:
    """A seal opened as another log's fails; the signed statement cannot parse as a checkpoint."""
    signer = _signer(tmp_path)
    data = seal_bytes(placeholder(), ORIGIN, signer)
    seal = read_seal(data)
    assert seal is not None
    other = VerifierKey.of("bank.example/other", signer)
    with pytest.raises(VerificationError, match="must be by the key of the log"):
        check_seal(data, seal, ORIGIN, other)
    with pytest.raises(VerificationError, match="not signed by the log key"):
        check_seal(data, seal, "bank.example/other", other)
    with pytest.raises(VerificationError, match="size"):
        parse_checkpoint(seal_statement(ORIGIN, seal.offset, seal.length, seal.digest))


def test_an_outsider_verifies_the_seal_from_docs_format_md_alone(printed: Printed) -> None:
    """Section 7 of docs/format.md is enough: hashlib and Ed25519 check the fixture's seal."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = printed.sealed
    marker = b"AUDITML-PDF-SEAL/1:"
    assert data.count(marker) == 1
    o = data.index(marker) + len(marker)
    raw = bytes.fromhex(data[o : o + 216].decode())
    length, digest, signature = int.from_bytes(raw[:8], "big"), raw[8:40], raw[44:]
    assert length == len(data)
    assert hashlib.sha256(data[:o] + data[o + 216 : length]).digest() == digest
    name, _, encoded = printed.vkey.split("+", 2)
    body = f"{name}\nauditml.pdf-seal/v1\nbytes {length} except {o}+216\nsha256 {digest.hex()}\n"
    public = base64.b64decode(encoded)[1:]
    assert raw[40:44] == hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    Ed25519PublicKey.from_public_bytes(public).verify(signature, body.encode())
