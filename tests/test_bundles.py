"""Evidence bundles: export, verify offline with no database, then tamper and be refused.

Every kind of change to ``events.jsonl`` (a line changed, dropped, added or
reordered) is refused, and the error names the line where the bundle stops
being what the checkpoint signed.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from auditml import AuditLog, VerificationError
from auditml._internal.keyfiles import generate_key_file
from auditml.bundle import EVENTS, verify_bundle
from auditml.core.signing import VerifierKey, sign_checkpoint
from tests.conftest import append_evaluations
from tests.test_cli import run

ORIGIN = "bank.example/bundles"
SIZE = 30
Lines = list[bytes]


def _grow(log: AuditLog, count: int, tag: str) -> None:
    append_evaluations(log, count, tag)


@pytest.fixture
def exported(db_url: str, tmp_path: Path) -> tuple[str, Path, str]:
    """Return (url, bundle folder of the first SIZE events, the log's verifier key)."""
    log, _ = AuditLog.init(db_url, origin=ORIGIN, actor="admin@bank.example")
    with log:
        _grow(log, SIZE + 9, "evaluation")
        folder = log.export(tmp_path / "bundle", size=SIZE, prove=[0, 7, SIZE - 1])
        vkey = str(log.verifier_key())
    return db_url, folder, vkey


def test_a_bundle_verifies_offline_after_the_database_is_gone(
    exported: tuple[str, Path, str], tmp_path: Path
) -> None:
    """The bundle alone proves its events: no database file, pinned to the log's key."""
    url, folder, vkey = exported
    if url.startswith("sqlite:///"):
        for path in tmp_path.glob("audit.db*"):
            path.unlink()
    report = verify_bundle(folder, vkey)
    assert (report.origin, report.size, report.proofs) == (ORIGIN, SIZE, 3)


def test_a_bundle_still_verifies_after_the_log_grows(exported: tuple[str, Path, str]) -> None:
    """Exported at size N, the bundle still verifies, and the log still extends its checkpoint."""
    url, folder, vkey = exported
    with AuditLog.open(url) as log:
        _grow(log, 25, "later")
        note = (folder / "checkpoint").read_text()
        assert log.verify(checkpoints=[note]).size == SIZE + 10 + 25
    assert verify_bundle(folder, vkey).size == SIZE


def test_zip_and_folder_bundles_hold_the_same_files(
    exported: tuple[str, Path, str], tmp_path: Path
) -> None:
    """A .zip export holds exactly the folder's files at its root, and verifies the same."""
    url, folder, vkey = exported
    with AuditLog.open(url) as log:
        archive = log.export(tmp_path / "bundle.zip", size=SIZE, prove=[0, 7, SIZE - 1])
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(p.name for p in folder.iterdir())
        for name in names:
            assert zf.read(name) == (folder / name).read_bytes()
    assert verify_bundle(archive, vkey).root == verify_bundle(folder, vkey).root


def _changed(index: int) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        lines[index] = lines[index].replace(b'"ci@bank.example"', b'"mallory@bank.example"')
        if index == 0:
            lines[0] = lines[0].replace(b'"admin@bank.example"', b'"mallory@bank.example"')
        return lines

    return edit


def _dropped(index: int) -> Callable[[Lines], Lines]:
    return lambda lines: lines[:index] + lines[index + 1 :]


def _added(index: int) -> Callable[[Lines], Lines]:
    return lambda lines: [*lines[: index + 1], lines[index], *lines[index + 1 :]]


def _swapped(index: int) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
        return lines

    return edit


CASES = {
    # name: (edit, the line the error must name)
    "first line changed": (_changed(0), 2),
    "middle line changed": (_changed(14), 16),
    "last line changed": (_changed(SIZE - 1), SIZE),
    "first line dropped": (_dropped(0), 1),
    "middle line dropped": (_dropped(14), 15),
    "last line dropped": (_dropped(SIZE - 1), SIZE - 1),
    "line added after the first": (_added(0), 2),
    "line added in the middle": (_added(14), 16),
    "line added at the end": (_added(SIZE - 1), SIZE + 1),
    "first two lines swapped": (_swapped(0), 1),
    "middle lines swapped": (_swapped(14), 15),
    "last two lines swapped": (_swapped(SIZE - 2), SIZE - 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_tampered_line_is_refused_and_named(
    exported: tuple[str, Path, str], tmp_path: Path, case: str
) -> None:
    """A changed, dropped, added or reordered line is refused with the line number."""
    _, folder, vkey = exported
    edit, line = CASES[case]
    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    events = copy / EVENTS
    lines = events.read_bytes().split(b"\n")[:-1]
    events.write_bytes(b"".join(item + b"\n" for item in edit(lines)))
    with pytest.raises(VerificationError) as info:
        verify_bundle(copy, vkey)
    assert f"{EVENTS} line {line}" in str(info.value) or f"after line {line}," in str(info.value)


def test_a_tampered_zip_is_refused_like_a_folder(
    exported: tuple[str, Path, str], tmp_path: Path
) -> None:
    """The same change inside a .zip is named by line too."""
    _, folder, vkey = exported
    events = (folder / EVENTS).read_bytes().split(b"\n")
    events[4] = events[4].replace(b"evaluation", b"evaluati0n")
    archive = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.iterdir():
            data = b"\n".join(events) if path.name == EVENTS else path.read_bytes()
            zf.writestr(path.name, data)
    with pytest.raises(VerificationError, match=f"{EVENTS} line 6"):
        verify_bundle(archive, vkey)


def test_a_changed_checkpoint_or_proof_is_refused(
    exported: tuple[str, Path, str], tmp_path: Path
) -> None:
    """A checkpoint with another size, or an inclusion proof with a changed hash, is refused."""
    _, folder, vkey = exported
    copy = tmp_path / "cp"
    shutil.copytree(folder, copy)
    note = (copy / "checkpoint").read_text()
    (copy / "checkpoint").write_text(note.replace(f"\n{SIZE}\n", f"\n{SIZE - 1}\n", 1))
    with pytest.raises(VerificationError, match="checkpoint"):
        verify_bundle(copy, vkey)
    copy = tmp_path / "proof"
    shutil.copytree(folder, copy)
    proofs = (copy / "proofs.jsonl").read_text().splitlines()
    first = proofs[1]
    digit = "0" if first[-10] != "0" else "1"
    proofs[1] = first[:-10] + digit + first[-9:]
    (copy / "proofs.jsonl").write_text("\n".join(proofs) + "\n")
    with pytest.raises(VerificationError, match=r"proofs\.jsonl"):
        verify_bundle(copy, vkey)


def test_a_bundle_resigned_by_another_key_is_refused_when_pinned(
    exported: tuple[str, Path, str], tmp_path: Path
) -> None:
    """Swapping in another key and re-signing the checkpoint fails against the pinned key."""
    _, folder, vkey = exported
    copy = tmp_path / "resigned"
    shutil.copytree(folder, copy)
    report = verify_bundle(folder, vkey)
    stranger = generate_key_file(tmp_path / "stranger.key", None)
    cp = sign_checkpoint(ORIGIN, SIZE, bytes.fromhex(report.root), stranger)
    (copy / "checkpoint").write_text(cp.note)
    (copy / "log.vkey").write_text(str(VerifierKey.of(ORIGIN, stranger)) + "\n")
    assert verify_bundle(copy).size == SIZE  # it is self-consistent ...
    with pytest.raises(VerificationError, match="not by the key you pinned"):
        verify_bundle(copy, vkey)  # ... but not signed by the key the auditor expects


def test_cli_round_trip_export_verify_tamper(
    exported: tuple[str, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By command: export, verify offline with --vkey, then a dropped line exits 1 naming it."""
    url, _, vkey = exported
    out = tmp_path / "by-cli.zip"
    code, _, err = run(["export", str(out), "--size", "12", "--db", url], capsys)
    assert code == 0, err
    code, stdout, err = run(["verify", "--bundle", str(out), "--vkey", vkey, "--json"], capsys)
    assert code == 0, err
    assert '"size": 12' in stdout
    folder = tmp_path / "by-cli"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(folder)
    lines = (folder / EVENTS).read_bytes().split(b"\n")
    del lines[3]
    (folder / EVENTS).write_bytes(b"\n".join(lines))
    code, _, err = run(["verify", "--bundle", str(folder), "--vkey", vkey], capsys)
    assert code == 1 and f"{EVENTS} line 4" in err and "Traceback" not in err
