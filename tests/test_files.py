"""Files auditml writes and reads: never over the log or a key, never through a link, atomic.

Every command that writes a file refuses the log's database, its write-ahead
log and its key (even with --force), refuses a symbolic link at the
destination, replaces an existing file only with --force, and leaves no
temporary file behind. Every command that only reads leaves a file that is
not an auditml log byte for byte as it was.
"""

from __future__ import annotations

import os
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from auditml import AuditLog
from auditml._internal.output import output_file, output_folder, write_output
from auditml.errors import InvalidInputError
from tests.conftest import raw_query, raw_sql
from tests.test_cli import run

ORIGIN = "bank.example/files"
DS = "ds@bank.example"
PHRASE = "correct horse battery staple"

#: Each command that writes a file, given the destination.
WRITERS: dict[str, Callable[[str], list[str]]] = {
    "report": lambda out: ["report", "--format", "json", "--out", out],
    "card": lambda out: ["card", "credit", "1", "-f", "md", "-o", out],
    "checkpoint": lambda out: ["checkpoint", "--out", out],
    "export": lambda out: ["export", out],
}


@pytest.fixture
def url(db_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Return a log with one trained version, made by the CLI."""
    code, _, err = run(["init", "--origin", ORIGIN, "--db", db_url], capsys)
    assert code == 0, err
    code, _, err = run(["train", "credit", "--actor", DS, "--no-code", "--db", db_url], capsys)
    assert code == 0, err
    return db_url


def key_of(url: str) -> Path:
    """Return the path of the log's private key."""
    with AuditLog.open(url) as log:
        return log.key_path()


def snapshot(path: Path) -> tuple[bytes, int] | None:
    """Return a file's bytes and modification time, or None when nothing is there."""
    if not os.path.lexists(path):
        return None
    return path.read_bytes(), path.stat().st_mtime_ns


def temp_files(folder: Path) -> list[str]:
    """Return the names of temporary files the writers leave behind, if any."""
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def protected(url: str) -> list[Path]:
    """Return the log's own files that exist on this backend: database, WAL (SQLite), key."""
    key = key_of(url)
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        return [db, Path(f"{db}-wal"), key]
    return [key]


@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("force", [False, True])
def test_writers_refuse_the_log_database_wal_and_key(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, force: bool
) -> None:
    """Writing to the database, its WAL or the log key: exit 2, named, untouched, even forced."""
    reader = None
    if url.startswith("sqlite:///"):  # an open reader keeps the WAL file in place
        reader = sqlite3.connect(url.removeprefix("sqlite:///"))
        reader.execute("SELECT count(*) FROM auditml_event").fetchone()
        assert Path(url.removeprefix("sqlite:///") + "-wal").exists()
    for target in protected(url):
        before = snapshot(target)
        args = [*WRITERS[command](str(target)), "--db", url, *(["--force"] if force else [])]
        code, _, err = run(args, capsys)
        assert code == 2, (target, err)
        assert f"{target} is the log's own file" in err and "never overwrites it" in err
        assert snapshot(target) == before
    if reader is not None:
        reader.close()
    assert temp_files(tmp_path) == []
    code, _, err = run(["verify", "--db", url], capsys)
    assert code == 0, err


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_writers_see_through_dot_dot_and_hard_links(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """The key reached by a '..' path or through a hard link is still the key: refused."""
    key = key_of(url)
    before = snapshot(key)
    (key.parent / "sub").mkdir()
    dotted = key.parent / "sub" / ".." / key.name
    linked = tmp_path / "innocent.txt"
    os.link(key, linked)
    for target in (dotted, linked):
        code, _, err = run([*WRITERS[command](str(target)), "--db", url, "--force"], capsys)
        assert code == 2, (target, err)
        assert "is the log's own file" in err
    assert snapshot(key) == before and linked.read_bytes() == before[0]  # type: ignore[index]
    assert temp_files(tmp_path) == []


def test_writers_refuse_a_hard_link_to_the_database(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A second name of the SQLite database is refused by inode, even with --force."""
    db_url = f"sqlite:///{tmp_path / 'audit.db'}"  # a PostgreSQL log has no database file
    run(["init", "--origin", ORIGIN, "--db", db_url], capsys)
    db = Path(db_url.removeprefix("sqlite:///"))
    alias = tmp_path / "copy.txt"
    os.link(db, alias)
    before = snapshot(db)
    code, _, err = run(["checkpoint", "--out", str(alias), "--force", "--db", db_url], capsys)
    assert code == 2 and f"{alias} is the log's own file {db}" in err
    assert snapshot(db) == before


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_writers_refuse_other_databases_and_private_keys_even_with_force(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """Another log's database and a person's keys are recognized and never replaced."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    person = tmp_path / "alice.key"
    person.write_bytes(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGb\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    public = tmp_path / "alice.key.pub"
    public.write_text('{"signer": "alice", "name": "Alice", "public_key": "AAAA"}\n')
    for target, what in (
        (other, "a SQLite database"),
        (person, "a private key"),
        (public, "a public key file"),
    ):
        before = snapshot(target)
        code, _, err = run([*WRITERS[command](str(target)), "--db", url, "--force"], capsys)
        assert code == 2, err
        assert f"{target} is {what}; auditml never overwrites it, even with --force" in err
        assert snapshot(target) == before


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_writers_refuse_a_symlink_even_to_a_harmless_file(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """A link at the destination is refused, live or dangling: nothing written through it."""
    harmless = tmp_path / "notes.txt"
    harmless.write_bytes(b"keep me\n")
    live = tmp_path / "live-link"
    live.symlink_to(harmless)
    dangling = tmp_path / "dangling-link"
    dangling.symlink_to(tmp_path / "nowhere.txt")
    for link in (live, dangling):
        code, _, err = run([*WRITERS[command](str(link)), "--db", url, "--force"], capsys)
        assert code == 2, err
        assert f"{link} is a symbolic link; auditml never writes through a link" in err
        assert link.is_symlink()
    assert harmless.read_bytes() == b"keep me\n"
    assert not (tmp_path / "nowhere.txt").exists()
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("command", ["report", "card", "checkpoint"])
def test_writers_replace_an_existing_file_only_with_force(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    """An existing file: exit 2 naming it and --force, untouched; with --force it is replaced."""
    target = tmp_path / "out.txt"
    target.write_bytes(b"old\n")
    code, _, err = run([*WRITERS[command](str(target)), "--db", url], capsys)
    assert code == 2
    assert f"{target} already exists; pass --force to replace it" in err
    assert target.read_bytes() == b"old\n"
    code, _, err = run([*WRITERS[command](str(target)), "--db", url, "--force"], capsys)
    assert code == 0, err
    assert target.read_bytes() != b"old\n" and target.stat().st_size > 0
    assert temp_files(tmp_path) == []


def test_export_replaces_a_zip_only_with_force_and_never_a_full_folder(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """export: an existing .zip needs --force; a folder that holds anything is never replaced."""
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(b"old")
    code, _, err = run(["export", str(bundle), "--db", url], capsys)
    assert code == 2 and f"{bundle} already exists; pass --force to replace it" in err
    assert bundle.read_bytes() == b"old"
    code, _, err = run(["export", str(bundle), "--force", "--db", url], capsys)
    assert code == 0, err
    assert "events.jsonl" in zipfile.ZipFile(bundle).namelist()
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "mine.txt").write_bytes(b"mine")
    code, _, err = run(["export", str(folder), "--force", "--db", url], capsys)
    assert code == 2 and f"{folder} already exists; give a new path" in err
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert temp_files(tmp_path) == [] and not list(tmp_path.glob(".bundle*"))


def test_a_refused_checkpoint_or_export_signs_nothing(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A refused destination is refused before the log signs a checkpoint: no row is added."""
    run(["train", "credit", "--actor", DS, "--no-code", "--db", url], capsys)
    before = raw_query(url, "SELECT count(*) FROM auditml_checkpoint")
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"x")
    for args in (["checkpoint", "--out", str(taken)], ["export", str(taken)]):
        code, _, _ = run([*args, "--db", url], capsys)
        assert code == 2
    assert raw_query(url, "SELECT count(*) FROM auditml_checkpoint") == before


def test_a_pdf_report_refuses_the_database_before_printing(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PDF report aimed at the log key: refused, exit 2, the key unchanged."""
    key = key_of(url)
    before = snapshot(key)
    code, _, err = run(["report", "--format", "pdf", "--out", str(key), "--db", url], capsys)
    assert code == 2 and "is the log's own file" in err
    assert snapshot(key) == before


def test_keygen_never_overwrites_and_never_follows_a_link(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keygen refuses an existing key, an existing .pub and a dangling link; nothing written."""
    monkeypatch.setenv("AUDITML_KEY_PASSPHRASE", PHRASE)
    key = tmp_path / "alice.key"
    code, _, err = run(["keygen", "--actor", "alice", "--out", str(key)], capsys)
    assert code == 0, err
    before = snapshot(key), snapshot(Path(f"{key}.pub"))
    code, _, err = run(["keygen", "--actor", "alice", "--out", str(key)], capsys)
    assert code == 2 and "already exists; keys are never overwritten" in err
    assert (snapshot(key), snapshot(Path(f"{key}.pub"))) == before
    link = tmp_path / "bob.key"
    link.symlink_to(tmp_path / "elsewhere.key")
    code, _, err = run(["keygen", "--actor", "bob", "--out", str(link)], capsys)
    assert code == 2 and f"{link} already exists" in err
    assert not (tmp_path / "elsewhere.key").exists()
    assert temp_files(tmp_path) == []


def test_demo_refuses_a_symlinked_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The demo refuses a link to a folder as --out: exit 2, named, nothing written there."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "demo-link"
    link.symlink_to(real)
    code, _, err = run(["demo", "--out", str(link)], capsys)
    assert code == 2 and f"{link} is a symbolic link" in err
    assert list(real.iterdir()) == []


# -- the helper itself ---------------------------------------------------------------------


def test_a_write_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    """An error while writing leaves neither the file nor a temporary file."""
    target = tmp_path / "half.bin"
    with pytest.raises(RuntimeError), output_file(target) as f:
        f.write(b"half")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_appears_during_a_write_is_not_replaced(tmp_path: Path) -> None:
    """Without force, a file created while the data was written wins: refused, kept."""
    target = tmp_path / "race.txt"
    with (
        pytest.raises(InvalidInputError, match="already exists; pass --force"),
        output_file(target) as f,
    ):
        f.write(b"mine")
        target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs"
    assert temp_files(tmp_path) == []


def test_a_link_that_appears_during_a_write_is_not_followed(tmp_path: Path) -> None:
    """With force, a link put at the destination meanwhile is refused; its target kept."""
    harmless = tmp_path / "notes.txt"
    harmless.write_bytes(b"keep")
    target = tmp_path / "out.txt"
    with (
        pytest.raises(InvalidInputError, match="symbolic link"),
        output_file(target, force=True) as f,
    ):
        f.write(b"data")
        target.symlink_to(harmless)
    assert harmless.read_bytes() == b"keep" and target.is_symlink()


def test_new_files_follow_the_umask_and_keys_are_0600(tmp_path: Path) -> None:
    """A new output gets 0666 less the umask; a replaced file keeps its mode; mode= wins."""
    old = os.umask(0o027)
    try:
        assert (write_output(tmp_path / "a", b"x").stat().st_mode & 0o777) == 0o640
        (tmp_path / "b").write_bytes(b"")
        os.chmod(tmp_path / "b", 0o604)
        assert (write_output(tmp_path / "b", b"x", force=True).stat().st_mode & 0o777) == 0o604
        assert (write_output(tmp_path / "c", b"x", mode=0o600).stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


def test_a_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    """A folder write that fails leaves nothing; one that succeeds replaces only an empty folder."""
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), output_folder(target) as folder:
        (folder / "a").write_bytes(b"a")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    with output_folder(target) as folder:
        (folder / "a").write_bytes(b"a")
    assert (target / "a").read_bytes() == b"a" and list(tmp_path.iterdir()) == [target]


# -- reading never writes ------------------------------------------------------------------

#: Commands that only read the log.
READERS = [
    ["verify"],
    ["verify", "--deep"],
    ["log"],
    ["head"],
    ["status"],
    ["history", "credit"],
    ["policy", "show"],
    ["signatures"],
    ["prove", "inclusion", "0"],
    ["key", "show"],
    ["key", "list"],
    ["card", "credit", "1"],
    ["incident", "list"],
]


def _foreign(kind: str, path: Path) -> None:
    """Make a file that is not an auditml log at ``path``."""
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("just some notes\n")
    elif kind == "sqlite":
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.close()


@pytest.mark.parametrize("kind", ["zero-byte", "text", "sqlite", "missing"])
def test_reading_a_file_that_is_not_a_log_changes_nothing(
    kind: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every read command on a foreign or missing file: exit 2, a clear message, bytes unchanged."""
    path = tmp_path / "foreign.db"
    _foreign(kind, path)
    before = snapshot(path)
    report = tmp_path / "r.json"
    commands = [*READERS, ["report", "--format", "json", "--out", str(report)]]
    expected = {
        "zero-byte": "holds no auditml log: run `auditml init` first",
        "text": "is not a database, so not an auditml log",
        "sqlite": "holds no auditml log: run `auditml init` first",
        "missing": f"no audit log at {path}: run `auditml init` there first",
    }[kind]
    for args in commands:
        code, _, err = run([*args, "--db", f"sqlite:///{path}"], capsys)
        assert code == 2, (args, err)
        assert expected in err, (args, err)
        assert snapshot(path) == before, args
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ([] if kind == "missing" else ["foreign.db"])
    if kind == "sqlite":
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_reading_an_empty_store_creates_no_tables(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store with no log: read commands exit 2 and leave it without any auditml table."""
    if db_url.startswith("sqlite:///"):
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()
        tables = "SELECT name FROM sqlite_master"
    else:
        tables = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    for args in READERS:
        code, _, err = run([*args, "--db", db_url], capsys)
        assert code == 2 and "no auditml log" in err, (args, err)
    assert raw_query(db_url, tables) == []


def test_an_old_store_is_upgraded_by_init_not_by_reading(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store made before checkpoints: reads say to run init and add nothing; init upgrades it."""
    raw_sql(
        url,
        [
            "DROP TABLE auditml_checkpoint CASCADE"
            if "postgres" in url
            else "DROP TABLE auditml_checkpoint"
        ],
    )
    code, _, err = run(["head", "--db", url], capsys)
    assert code == 2 and "made by an earlier auditml, before checkpoints" in err
    assert "run `auditml init`" in err
    code, _, err = run(["verify", "--db", url], capsys)
    assert code == 2
    query = (
        "SELECT count(*) FROM sqlite_master WHERE name = 'auditml_checkpoint'"
        if url.startswith("sqlite:///")
        else "SELECT count(*) FROM information_schema.tables WHERE table_name = "
        "'auditml_checkpoint' AND table_schema = current_schema()"
    )
    assert raw_query(url, query) == [(0,)]
    code, _, err = run(["init", "--origin", ORIGIN, "--db", url], capsys)
    assert code == 0, err
    code, _, err = run(["head", "--db", url], capsys)
    assert code == 0, err
