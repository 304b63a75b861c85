"""Pipes, devices, sockets and folders where a command wants a file: a clear error, never a hang.

Every file-taking option and argument of every command is given a named pipe
(FIFO) with no writer, a link to ``/dev/zero``, a socket and a folder. Reading
the first blocks until a writer comes, the second never ends: the command must
refuse each before reading a byte, say what the path is, and exit 2. The
timeout marker turns a hang into a failure instead of a stuck run.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import AuditLog
from tests.conftest import run_cli as run

pytestmark = pytest.mark.timeout(10, method="signal")

#: What the refusal says for each kind of path.
SAYS = {
    "fifo": "is a named pipe (FIFO), not a regular file",
    "zero": "is a character device, not a regular file",
    "socket": "is a socket, not a regular file",
    "folder": "folder",
}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Yield a folder with a short path: a socket's path must fit in about 100 bytes."""
    found = Path(tempfile.mkdtemp(prefix="am", dir="/tmp"))
    try:
        yield found
    finally:
        shutil.rmtree(found, ignore_errors=True)


@pytest.fixture
def special(short_dir: Path) -> Iterator[Callable[[str, str], Path]]:
    """Return a maker of a path of a kind (fifo, zero, socket, folder) with a given name."""
    sockets: list[socket.socket] = []

    def make(kind: str, name: str) -> Path:
        path = short_dir / name
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "socket":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            sock.listen(1)
            sockets.append(sock)
        else:
            path.mkdir()
        return path

    yield make
    for sock in sockets:
        sock.close()


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """Work in a fresh folder holding a log (the default of --db) with credit-risk v1 trained."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    monkeypatch.setenv("AUDITML_DATABASE_URL", url)
    monkeypatch.setenv("AUDITML_ACTOR", "ds@bank.example")
    monkeypatch.delenv("AUDITML_LOG_KEY", raising=False)
    monkeypatch.delenv("AUDITML_KEY_PASSPHRASE", raising=False)
    code, _, err = run(["init", "--origin", "bank.example/m"], capsys)
    assert code == 0, err
    with AuditLog.open(url) as log:
        log.record_training("credit-risk", version="1", data={}, actor="ds@bank.example")
    return tmp_path


#: (case id, command line with {p} for the path, the path's file name, kinds it is refused as).
#: A folder is left out where a folder is a valid answer (a dataset, a bundle, templates).
FILE_KINDS = ("fifo", "zero", "socket", "folder")
NOT_FOLDER = ("fifo", "zero", "socket")
INPUTS = [
    ("status --db", ["status", "--db", "sqlite:///{p}"], "x.db", FILE_KINDS),
    ("head --db", ["head", "--db", "sqlite:///{p}"], "x.db", FILE_KINDS),
    ("init --db", ["init", "--db", "sqlite:///{p}"], "x.db", FILE_KINDS),
    ("init --key", ["init", "--db", "sqlite:///{w}/new.db", "--key", "{p}"], "x.key", FILE_KINDS),
    ("train --from-json", ["train", "credit-risk", "--from-json", "{p}"], "x.json", FILE_KINDS),
    ("train --dataset", ["train", "credit-risk", "--dataset", "d={p}"], "x.csv", NOT_FOLDER),
    ("train --artifact", ["train", "credit-risk", "--artifact", "a={p}"], "x.pkl", NOT_FOLDER),
    (
        "evaluate --from-json",
        ["evaluate", "credit-risk", "1", "--from-json", "{p}"],
        "x",
        FILE_KINDS,
    ),
    (
        "evaluate --dataset",
        ["evaluate", "credit-risk", "1", "--dataset", "{p}"],
        "x.csv",
        NOT_FOLDER,
    ),
    (
        "evaluate --examples",
        ["evaluate", "credit-risk", "1", "--examples", "{p}", "--baseline", "0"],
        "x.csv",
        FILE_KINDS,
    ),
    (
        "evaluate --artifact",
        ["evaluate", "credit-risk", "1", "--artifact", "a={p}"],
        "x.png",
        NOT_FOLDER,
    ),
    ("policy apply", ["policy", "apply", "{p}"], "auditml.toml", FILE_KINDS),
    ("card update", ["card", "update", "credit-risk", "1", "{p}"], "card.yaml", FILE_KINDS),
    (
        "approve --sign-with",
        ["approve", "credit-risk", "1", "--actor", "val@bank.example", "--sign-with", "{p}"],
        "k",
        FILE_KINDS,
    ),
    ("key register", ["key", "register", "{p}"], "x.pub", FILE_KINDS),
    ("key revoke", ["key", "revoke", "{p}", "--reason", "lost"], "x.pub", FILE_KINDS),
    ("verify PATH", ["verify", "{p}"], "bundle.zip", NOT_FOLDER),
    ("verify --bundle", ["verify", "--bundle", "{p}"], "bundle", NOT_FOLDER),
    ("verify PDF", ["verify", "{p}"], "report.pdf", FILE_KINDS),
    ("verify --checkpoint", ["verify", "--checkpoint", "{p}"], "cp.txt", FILE_KINDS),
    ("verify --vkey", ["verify", "--vkey", "{p}"], "log.vkey", FILE_KINDS),
    (
        "verify --record",
        ["verify", "--record", "{p}", "--checkpoint", "{w}/cp.txt", "--vkey", "{w}/log.vkey"],
        "proof.json",
        FILE_KINDS,
    ),
    (
        "runtime ingest",
        ["runtime", "ingest", "{p}", "--model", "m", "--env", "prod"],
        "r",
        FILE_KINDS,
    ),
    (
        "mlflow watch --secret-file",
        ["mlflow", "watch", "--tracking-uri", "http://127.0.0.1:9", "--secret-file", "{p}"],
        "secret",
        FILE_KINDS,
    ),
    (
        "import mlflow --tracking-uri",
        ["import", "mlflow", "--tracking-uri", "sqlite:///{p}"],
        "mlflow.db",
        FILE_KINDS,
    ),
]


def _cases(
    table: list[tuple[str, list[str], str, tuple[str, ...]]],
) -> list[Any]:
    return [
        pytest.param(argv, name, kind, id=f"{case}-{kind}")
        for case, argv, name, kinds in table
        for kind in kinds
    ]


def _argv(argv: list[str], path: Path, workdir: Path) -> list[str]:
    return [a.replace("{p}", str(path)).replace("{w}", str(workdir)) for a in argv]


def _signed_checkpoint(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Write cp.txt (a signed checkpoint) and log.vkey in the working folder."""
    code, _, err = run(["checkpoint", "--out", str(workdir / "cp.txt")], capsys)
    assert code == 0, err
    code, out, err = run(["key", "show"], capsys)
    assert code == 0, err
    (workdir / "log.vkey").write_text(out.strip().splitlines()[-1].split()[-1] + "\n")


@pytest.mark.parametrize(("argv", "name", "kind"), _cases(INPUTS))
def test_an_input_that_is_not_a_regular_file_is_refused_unread(
    argv: list[str],
    name: str,
    kind: str,
    workdir: Path,
    special: Callable[[str, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each file input given a FIFO, /dev/zero, a socket or a folder exits 2 naming it, at once."""
    if "--record" in argv:
        _signed_checkpoint(workdir, capsys)
    path = special(kind, name)
    code, out, err = run(_argv(argv, path, workdir), capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and str(path) in err, err
    assert SAYS[kind] in err, err
    assert out == ""


def test_the_verifier_key_file_of_the_record_check_is_read(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The --record case's checkpoint and key are good: it is the proof file that is refused."""
    _signed_checkpoint(workdir, capsys)
    code, _, err = run(
        [
            "verify",
            "--record",
            str(workdir / "none.json"),
            "--checkpoint",
            "cp.txt",
            "--vkey",
            str(workdir / "log.vkey"),
        ],
        capsys,
    )
    assert code == 2 and "no record proof file at" in err, err


TEMPLATES = [
    ("card --templates", ["card", "credit-risk", "1", "--templates", "{p}"], "t", NOT_FOLDER),
    (
        "report --templates",
        ["report", "--out", "{w}/r.html", "--templates", "{p}"],
        "t",
        NOT_FOLDER,
    ),
]


@pytest.mark.parametrize(("argv", "name", "kind"), _cases(TEMPLATES))
def test_templates_that_are_not_a_folder_are_refused(
    argv: list[str],
    name: str,
    kind: str,
    workdir: Path,
    special: Callable[[str, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--templates given a FIFO, a device or a socket says it is not a folder (not "no such")."""
    path = special(kind, name)
    code, out, err = run(_argv(argv, path, workdir), capsys)
    assert code == 2, (out, err)
    assert f"--templates {path}: is not a folder" in err


@pytest.mark.parametrize("kind", ["fifo", "zero", "socket", "folder"])
@pytest.mark.parametrize(
    ("argv", "template"),
    [
        (["card", "credit-risk", "1", "--templates", "{t}"], "card.md.j2"),
        (["report", "--out", "{w}/r.html", "--templates", "{t}"], "report.html.j2"),
        (["report", "--out", "{w}/r.html", "--templates", "{t}"], "report.css"),
    ],
)
def test_a_template_that_is_not_a_regular_file_is_refused(
    argv: list[str],
    template: str,
    kind: str,
    workdir: Path,
    special: Callable[[str, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A FIFO, device, socket or folder in the user's templates folder is named, never read."""
    folder = special("folder", "templates")
    made = special(kind, f"templates/{template}")
    line = [a.replace("{t}", str(folder)).replace("{w}", str(workdir)) for a in argv]
    code, out, err = run(line, capsys)
    assert code == 2, (out, err)
    assert str(made) in err and SAYS[kind] in err, err
    assert not (workdir / "r.html").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "apply", "/dev/zero"],
        ["policy", "apply", "/dev/null"],
        ["card", "update", "credit-risk", "1", "/dev/zero"],
        ["status", "--db", "sqlite:////dev/null"],
        ["init", "--db", "sqlite:////dev/null"],
        ["train", "credit-risk", "--dataset", "d=/dev/zero"],
        ["evaluate", "credit-risk", "1", "--examples", "/dev/zero", "--baseline", "0"],
        ["verify", "--checkpoint", "/dev/zero"],
        ["key", "register", "/dev/zero"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_device_files_given_by_their_own_path_are_refused(
    argv: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/zero and /dev/null named directly are refused as character devices, unread."""
    code, out, err = run(argv, capsys)
    assert code == 2, (out, err)
    assert "is a character device, not a regular file" in err, err


def test_dev_stdin_on_a_pipe_is_refused_and_on_a_file_is_read(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/stdin is what stdin is: a pipe there is refused unread, a redirected file is read."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    try:
        os.dup2(read_end, 0)
        code, _, err = run(["policy", "apply", "/dev/stdin"], capsys)
        assert code == 2 and "is a named pipe (FIFO)" in err, err
        policy = workdir / "p.toml"
        policy.write_text("[roles]\n")
        with policy.open("rb") as f:
            os.dup2(f.fileno(), 0)
            code, _, err = run(["policy", "apply", "/dev/stdin"], capsys)
        assert "not a regular file" not in err, err
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)


OUTPUTS = [
    ("checkpoint --out", ["checkpoint", "--out", "{p}"], "cp.txt"),
    ("report --out", ["report", "--out", "{p}"], "r.html"),
    ("card --out", ["card", "credit-risk", "1", "--out", "{p}"], "card.md"),
    ("prove record --out", ["prove", "record", "req-1", "--out", "{p}"], "proof.json"),
    ("keygen --out", ["keygen", "--actor", "me@bank.example", "--out", "{p}"], "me.key"),
    ("export OUT.zip", ["export", "{p}"], "b.zip"),
    ("export OUT", ["export", "{p}"], "b"),
    ("demo --out", ["demo", "--out", "{p}"], "demo"),
]


@pytest.mark.parametrize("kind", ["fifo", "zero", "socket", "dangling link"])
@pytest.mark.parametrize(("argv", "name"), [pytest.param(a, n, id=c) for c, a, n in OUTPUTS])
def test_an_output_is_never_written_into_a_pipe_device_socket_or_link(
    argv: list[str],
    name: str,
    kind: str,
    workdir: Path,
    special: Callable[[str, str], Path],
    short_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each output given a FIFO, /dev/zero, a socket or a dangling link exits 2, writing nothing."""
    if kind == "dangling link":
        path = short_dir / name
        path.symlink_to(short_dir / "target")
    else:
        path = special(kind, name)
    before = path.lstat()
    code, out, err = run(_argv(argv, path, workdir), capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and str(path) in err, err
    after = path.lstat()
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode)
    assert after.st_ino == before.st_ino
    assert not (short_dir / "target").exists()
    assert [p.name for p in short_dir.iterdir()] == [name]  # no temporary file left either


@pytest.mark.parametrize("member", ["events.jsonl", "checkpoint", "log.vkey", "proofs.jsonl"])
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_bundle_folder_holding_a_pipe_or_device_is_refused_unread(
    member: str,
    kind: str,
    workdir: Path,
    short_dir: Path,
    special: Callable[[str, str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each file of a bundle folder replaced by a FIFO or a link to /dev/zero is named, unread."""
    bundle = workdir / "b"
    code, _, err = run(["export", str(bundle)], capsys)
    assert code == 0, err
    made = special(kind, member)
    (bundle / member).unlink(missing_ok=True)
    (bundle / member).symlink_to(made)
    code, out, err = run(["verify", str(bundle)], capsys)
    assert code == 2, (out, err)
    assert f"{bundle / member} is" in err and SAYS[kind] in err, err
