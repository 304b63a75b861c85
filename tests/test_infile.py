"""The one way auditml opens a file it reads: without blocking, held to a regular file by fstat."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from auditml._internal.infile import check_regular, open_regular, read_regular
from auditml.errors import InvalidInputError, StoreUnavailableError

pytestmark = pytest.mark.timeout(10, method="signal")


def test_a_regular_file_is_read_whole_and_blocking(tmp_path: Path) -> None:
    """A regular file reads as usual, its descriptor back in blocking mode; limit reads limit+1."""
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with open_regular(path, "file") as f:
        assert os.get_blocking(f.fileno())
        assert f.read() == b"0123456789"
    assert read_regular(path, "file", 3) == b"0123"


def test_a_fifo_with_a_writer_is_refused_too(tmp_path: Path) -> None:
    """A FIFO is refused for what it is, not because nothing is written to it yet."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    holder = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer (and reader) stays open
    try:
        os.write(holder, b"data")
        with pytest.raises(InvalidInputError, match="is a named pipe"):
            read_regular(path, "policy file")
    finally:
        os.close(holder)


def test_the_kind_comes_from_the_opened_descriptor_not_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stat of the path that says "regular file" does not let a FIFO through: fstat decides."""
    path = tmp_path / "fifo"
    os.mkfifo(path)
    regular = os.stat(__file__)
    assert stat.S_ISREG(regular.st_mode)
    monkeypatch.setattr(os, "stat", lambda *_, **__: regular)
    monkeypatch.setattr(os, "lstat", lambda *_, **__: regular)
    with pytest.raises(InvalidInputError, match="is a named pipe"):
        read_regular(path, "file")


def test_a_link_to_a_device_is_refused_and_names_the_given_path(tmp_path: Path) -> None:
    """A link to /dev/zero is refused as a character device, naming the path as given."""
    link = tmp_path / "data.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(InvalidInputError, match=f"^{link} is a character device"):
        read_regular(link, "dataset file")


def test_a_missing_file_raises_the_os_error_for_the_caller_to_word(tmp_path: Path) -> None:
    """A missing path is FileNotFoundError (each caller has its sentence for it), never read."""
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "none", "file")


def test_check_regular_says_whether_a_file_is_there_and_refuses_others(tmp_path: Path) -> None:
    """check_regular: False when missing, True for a file, the given error for a FIFO or folder."""
    assert check_regular(tmp_path / "none", "db") is False
    (tmp_path / "f").write_bytes(b"")
    assert check_regular(tmp_path / "f", "db") is True
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(StoreUnavailableError, match="named pipe"):
        check_regular(tmp_path / "fifo", "db", StoreUnavailableError)
    with pytest.raises(InvalidInputError, match="is a folder"):
        check_regular(tmp_path, "db")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["policy", "apply", "{f}", "--db", "{db}"], "policy.toml"),
        (["card", "update", "m", "{f}", "--db", "{db}"], "card.yaml"),
        (["train", "m", "--from-json", "{f}", "--db", "{db}"], "run.json"),
    ],
)
def test_a_huge_input_file_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], name: str
) -> None:
    """A policy, card or JSON file far beyond any real one (a sparse 1 GiB file) is not read."""
    from tests.conftest import run_cli

    db = f"sqlite:///{tmp_path / 'a.db'}"
    assert run_cli(["init", "--origin", "huge.example/x", "--db", db], capsys)[0] == 0
    big = tmp_path / name
    with big.open("wb") as f:
        f.truncate(1 << 30)  # sparse: no disk, but a read would take 1 GiB of memory
    code, _, err = run_cli([a.format(f=big, db=db) for a in args], capsys)
    assert code == 2 and "is larger than" in err and "it is not read" in err
