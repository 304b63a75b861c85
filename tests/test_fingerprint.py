"""Fingerprints: file and folder hashes, URIs, parameters, code version and environment."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml import InvalidInputError
from auditml._internal import fingerprint
from auditml._internal.fingerprint import (
    BUFFER,
    artifact_ref,
    code_version,
    dataset_ref,
    encode_param,
    environment,
    folder_manifest,
    hash_file,
    read_code_version,
    read_environment,
    start_capture,
)
from auditml.core.events import CodeVersion


def test_file_hash_is_plain_sha256_across_buffer_boundaries(tmp_path: Path) -> None:
    """A file spanning several read buffers hashes to hashlib's SHA-256 of its bytes."""
    data = bytes(range(256)) * (BUFFER // 256 * 2 + 7)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert hash_file(path) == (hashlib.sha256(data).hexdigest(), len(data))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == (hashlib.sha256(b"").hexdigest(), 0)


def test_folder_digest_is_the_documented_manifest(tmp_path: Path) -> None:
    """A folder's digest is SHA-256 over sorted 'sha size path' lines; order on disk is moot."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.csv").write_bytes(b"z")
    (tmp_path / "a.csv").write_bytes(b"aa")
    (tmp_path / "b" / "a.csv").write_bytes(b"")
    lines = [
        (hashlib.sha256(b"aa").hexdigest(), 2, "a.csv"),
        (hashlib.sha256(b"").hexdigest(), 0, "b/a.csv"),
        (hashlib.sha256(b"z").hexdigest(), 1, "b/z.csv"),
    ]
    assert folder_manifest(tmp_path) == lines
    text = "".join(f"{sha} {size} {rel}\n" for sha, size, rel in lines)
    ref = dataset_ref(tmp_path)
    assert ref.kind == "folder" and ref.files == 3 and ref.size == 3
    assert ref.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_folder_digest_changes_with_content_and_names(tmp_path: Path) -> None:
    """Renaming or editing any file changes the folder's digest."""
    (tmp_path / "x").write_bytes(b"1")
    first = dataset_ref(tmp_path).sha256
    (tmp_path / "x").write_bytes(b"2")
    second = dataset_ref(tmp_path).sha256
    (tmp_path / "x").rename(tmp_path / "y")
    third = dataset_ref(tmp_path).sha256
    assert len({first, second, third}) == 3


def test_many_files_hash_in_parallel_to_the_same_answer(tmp_path: Path) -> None:
    """Hundreds of files give the digest a one-by-one loop gives."""
    for i in range(300):
        (tmp_path / f"f{i:03}").write_bytes(str(i).encode() * (i + 1))
    expected = [
        (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.name)
        for p in sorted(tmp_path.iterdir())
    ]
    assert folder_manifest(tmp_path) == expected


@pytest.mark.parametrize("uri", ["s3://bucket/train.parquet", "gs://b/k", "https://x.example/d"])
def test_uris_are_recorded_as_given(uri: str) -> None:
    """A URI is neither fetched nor hashed: it is recorded exactly as written."""
    assert dataset_ref(uri).model_dump(exclude_none=True) == {"uri": uri, "kind": "uri"}
    assert artifact_ref(uri).model_dump(exclude_none=True) == {"uri": uri}


def test_missing_paths_are_refused_by_name(tmp_path: Path) -> None:
    """A dataset or artifact path that does not exist is bad input naming the path."""
    with pytest.raises(InvalidInputError, match=r"nope\.csv.*does not exist"):
        dataset_ref(tmp_path / "nope.csv")
    with pytest.raises(InvalidInputError, match=r"model\.pkl.*does not exist"):
        artifact_ref(tmp_path / "model.pkl")
    with pytest.raises(InvalidInputError, match="empty"):
        dataset_ref("  ")


def test_file_uris_are_local_paths(tmp_path: Path) -> None:
    """file:// names a local file, which is hashed."""
    path = tmp_path / "d.csv"
    path.write_bytes(b"abc")
    assert dataset_ref(f"file://{path}").sha256 == hashlib.sha256(b"abc").hexdigest()


class Unpicklable:
    """A value neither JSON nor pickle can hold."""

    def __reduce__(self) -> str:
        raise TypeError("no")

    def __repr__(self) -> str:
        return "Unpicklable()"


def test_params_json_can_hold_are_kept_and_the_rest_become_type_and_hash() -> None:
    """Plain values stay, containers become lists, other values become type plus SHA-256."""
    assert encode_param({"a": (1, 2.5, "x", None, True)}) == {"a": [1, 2.5, "x", None, True]}
    assert encode_param(Path("/data/x")) == "/data/x"
    assert encode_param({3, 1, 2}) == [1, 2, 3]
    assert encode_param(2**60) == {"type": "int", "value": str(2**60)}
    assert encode_param(math.nan) == {"type": "float", "value": "nan"}
    blob = encode_param(b"\x00\x01")
    assert blob == {"type": "bytes", "sha256": hashlib.sha256(b"\x00\x01").hexdigest()}
    odd = encode_param(Unpicklable())
    assert odd["type"].endswith("Unpicklable")
    assert odd["sha256"] == hashlib.sha256(b"Unpicklable()").hexdigest()
    assert encode_param({1: "non-string key"})["type"] == "dict"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_code_version_names_commit_branch_and_hashes_uncommitted_changes(tmp_path: Path) -> None:
    """Commit and branch are read; the dirty hash changes with edits and with untracked files."""
    assert code_version(tmp_path) is None
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "remote", "add", "origin", "https://user:token@git.example/r.git")
    (tmp_path / "train.py").write_text("x = 1\n", encoding="utf-8")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    clean = code_version(tmp_path)
    assert clean is not None
    assert clean.branch == "main" and clean.dirty is False and clean.diff_sha256 is None
    assert clean.commit is not None and len(clean.commit) == 40
    assert clean.repository == "https://git.example/r.git"  # credentials never recorded
    (tmp_path / "train.py").write_text("x = 2\n", encoding="utf-8")
    edited = code_version(tmp_path)
    (tmp_path / "notes.txt").write_text("n", encoding="utf-8")
    untracked = code_version(tmp_path)
    assert edited is not None and untracked is not None
    assert edited.dirty and edited.diff_sha256 is not None
    assert untracked.diff_sha256 not in (None, edited.diff_sha256)


def test_environment_lists_python_platform_and_packages() -> None:
    """The environment names Python, the platform and installed packages with versions."""
    env = environment()
    assert env.python is not None and env.python.split()[-1].count(".") == 2
    assert env.platform
    assert "pydantic" in env.packages and env.packages["pydantic"][0].isdigit()


def test_capture_runs_in_the_background_and_returns_both(tmp_path: Path) -> None:
    """start_capture returns a future with the code version and the environment."""
    code, env = start_capture(tmp_path).result(timeout=30)
    assert code is None and env.python


# -- the capture cache: what is kept equals what git and importlib say now ------------------


class _Spawns:
    """Count the git processes the code-version capture starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = fingerprint._git

        def counted(args: list[str], cwd: Path) -> bytes | None:
            self.count += 1
            return real(args, cwd)

        monkeypatch.setattr(fingerprint, "_git", counted)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Spawns]:
    """Start from an empty capture cache that trusts a change 50 ms after it was made."""
    monkeypatch.setattr(fingerprint, "RACY_S", 0.05)
    fingerprint.clear_capture_cache()
    yield _Spawns(monkeypatch)
    fingerprint.clear_capture_cache()


def _settled() -> None:
    """Wait past RACY_S, so the next read may be kept (file times are coarse)."""
    time.sleep(0.06)


def _same_as_git(folder: Path, spawns: _Spawns, *, kept: bool = True) -> CodeVersion | None:
    """Read the code version through the cache twice and without it; all three must agree.

    With ``kept``, the second cached read must start no git process: it is served by file
    stats alone. (Outside a repository every folder up to / is watched, and other
    processes change /tmp at any time.)
    """
    _settled()
    first = code_version(folder)
    before = spawns.count
    again = code_version(folder)
    assert not kept or spawns.count == before, "a read of an unchanged work tree started git"
    slow = read_code_version(folder)
    assert first == again == slow
    return first


def _rewrite_keeping_size_and_times(path: Path) -> None:
    """Change a file's bytes in place, same size, then set its times back as they were."""
    before = path.stat()
    with path.open("r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(b"Y" if first != b"Y" else b"Z")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _write_through_link(link: Path) -> None:
    """Change a file's bytes through another name of it (a hard link outside the tree)."""
    with link.open("ab") as f:
        f.write(b"through the other name\n")


def _track_in_ignored_folder(repo: Path) -> None:
    """Commit a file inside a folder git ignores (added with -f): git still tracks it."""
    (repo / "build").mkdir()
    (repo / "build" / "keep.txt").write_text("kept\n", encoding="utf-8")
    with (repo / ".gitignore").open("a", encoding="utf-8") as f:
        f.write("build/\n")
    _git(repo, "add", "-f", "build/keep.txt", ".gitignore")
    _git(repo, "commit", "-q", "-m", "ignored but tracked")


@pytest.mark.parametrize("watch", ["inotify", "stat"])
def test_the_cached_code_version_follows_every_change_git_sees(
    tmp_path: Path, cache: _Spawns, monkeypatch: pytest.MonkeyPatch, watch: str
) -> None:
    """After each kind of change, the cached answer equals git's, field by field, from any folder.

    Edits (also one that keeps size and times, one through a hard link from outside the
    tree, and one to a tracked file in an ignored folder), staged changes, untracked files
    (also in a folder that was empty), ignore rules, commits, branches, a deleted file and a
    changed remote: none leaves a stale answer, whether the work tree is watched by inotify
    (where the system has it) or by stat.
    """
    monkeypatch.setattr(fingerprint, "USE_INOTIFY", watch == "inotify")
    repo = tmp_path / "repo"
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    (repo / "empty").mkdir()
    assert _same_as_git(sub, cache, kept=False) is None  # not a repository yet
    _git(repo, "init", "-q", "-b", "main")
    (sub / "train.py").write_text("x = 1\n", encoding="utf-8")
    (repo / "README").write_text("r\n", encoding="utf-8")
    os.link(repo / "README", tmp_path / "README-link")  # a second name, outside the tree
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    seen = [_same_as_git(sub, cache)]
    assert seen[0] is not None and seen[0].dirty is False and seen[0].branch == "main"
    notified = [kept.notify is not None for kept in fingerprint._CODE.values()]
    if watch == "stat" or fingerprint._libc() is None:
        assert notified == [False]
    elif fingerprint._fs_type(tmp_path) in fingerprint._LOCAL_FS:
        assert notified == [True], "inotify was not used on a local filesystem"
    steps = [
        lambda: _rewrite_keeping_size_and_times(sub / "train.py"),
        lambda: _write_through_link(tmp_path / "README-link"),
        lambda: (sub / "train.py").write_text("x = 22\n", encoding="utf-8"),
        lambda: _git(repo, "add", "src/pkg/train.py"),
        lambda: (repo / "empty" / "notes.txt").write_text("n", encoding="utf-8"),
        lambda: (repo / "empty" / "notes.txt").write_text("longer", encoding="utf-8"),
        lambda: (repo / "new" / "deep").mkdir(parents=True),
        lambda: (repo / "new" / "deep" / "data.csv").write_text("a\n", encoding="utf-8"),
        lambda: (repo / ".gitignore").write_text("*.csv\n", encoding="utf-8"),
        lambda: _git(repo, "add", "-A"),
        lambda: _git(repo, "commit", "-q", "-m", "two"),
        lambda: _git(repo, "checkout", "-q", "-b", "feature"),
        lambda: (repo / "README").unlink(),
        lambda: _git(repo, "remote", "add", "origin", "https://git.example/r.git"),
        lambda: _git(repo, "commit", "-q", "-am", "three"),
        lambda: _git(repo, "checkout", "-q", "main"),
        lambda: _track_in_ignored_folder(repo),
        lambda: (repo / "build" / "keep.txt").write_text("kept, edited\n", encoding="utf-8"),
        lambda: _rewrite_keeping_size_and_times(repo / "build" / "keep.txt"),
    ]
    for step in steps:
        step()
        seen.append(_same_as_git(sub, cache))
        assert _same_as_git(repo, cache) is not None
    assert seen[-1] is not None and seen[-1].repository == "https://git.example/r.git"
    assert len({s.model_dump_json() for s in seen if s is not None}) >= 8  # the changes showed


def test_a_work_tree_changed_just_now_is_read_from_git_again(
    tmp_path: Path, cache: _Spawns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer read within RACY_S of a change is not kept: the next read asks git again."""
    monkeypatch.setattr(fingerprint, "RACY_S", 3600.0)
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("a = 1\n", encoding="utf-8")
    first = code_version(tmp_path)
    before = cache.count
    assert code_version(tmp_path) == first == read_code_version(tmp_path)
    assert cache.count > before


def test_untracked_files_are_hashed_from_the_top_of_the_work_tree(
    tmp_path: Path, cache: _Spawns
) -> None:
    """From a subfolder, an untracked file elsewhere in the work tree changes the diff hash."""
    sub = tmp_path / "src"
    sub.mkdir()
    _git(tmp_path, "init", "-q", "-b", "main")
    (sub / "train.py").write_text("x = 1\n", encoding="utf-8")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    (tmp_path / "top.txt").write_text("a", encoding="utf-8")
    one = read_code_version(sub)
    (tmp_path / "top.txt").write_text("b", encoding="utf-8")
    two = read_code_version(sub)
    assert one is not None and two is not None and one.dirty and two.dirty
    assert one.diff_sha256 != two.diff_sha256


@pytest.mark.timeout(60)
def test_an_untracked_fifo_or_link_to_a_device_is_never_read(tmp_path: Path) -> None:
    """An untracked FIFO, or a link to /dev/zero, is hashed by kind and link text, never read."""
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "train.py").write_text("x = 1\n", encoding="utf-8")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "one")
    os.mkfifo(tmp_path / "queue")
    (tmp_path / "zeros").symlink_to("/dev/zero")
    one = read_code_version(tmp_path)  # reading either would block or never end
    (tmp_path / "zeros").unlink()
    (tmp_path / "zeros").symlink_to("/dev/null")
    two = read_code_version(tmp_path)
    assert one is not None and two is not None and one.dirty and two.dirty
    assert one.diff_sha256 != two.diff_sha256  # the link was re-pointed
    assert read_code_version(tmp_path) == two


def test_the_cached_environment_equals_a_fresh_read_and_sees_an_install(
    tmp_path: Path, cache: _Spawns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packages come from the cache while sys.path is unchanged, and again after an install.

    A package installed into a folder of sys.path shows in the next capture.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    _settled()
    first = environment()
    assert first == read_environment()
    assert fingerprint._PACKAGES, "an unchanged sys.path was not kept"
    dist = site / "auditml_fake_pkg-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: auditml-fake-pkg\nVersion: 1.2.3\n", encoding="utf-8"
    )
    second = environment()
    assert second.packages.get("auditml-fake-pkg") == "1.2.3"
    assert second == read_environment()
    assert first.python == second.python and first.platform == second.platform


def _capture_in_child(folder: str, done: Any) -> None:
    """Read the code version and environment in a forked child and report it."""
    code_version(folder)
    environment()
    done.put("captured")


def test_a_child_forked_during_a_capture_can_capture(tmp_path: Path, cache: _Spawns) -> None:
    """A fork while another thread holds the capture locks leaves the child free to capture."""
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    with fingerprint._CODE_LOCK, fingerprint._ENV_LOCK:  # a capture in progress at fork time
        child = context.Process(target=_capture_in_child, args=(str(tmp_path), done))
        child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child hung on a lock its parent held"
    assert done.get(timeout=5) == "captured"


def _report_cache(folder: str, done: Any) -> None:
    """Report, in a forked child, what it kept of its parent's cache, then capture."""
    kept = len(fingerprint._CODE)
    done.put((kept, code_version(folder) == read_code_version(folder)))


def test_a_forked_child_does_not_share_its_parents_watch(tmp_path: Path, cache: _Spawns) -> None:
    """A forked child starts with no cached code version, captures afresh; the parent still sees.

    The parent's inotify queue is not the child's to read: an event it took would be lost.
    """
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("a = 1\n", encoding="utf-8")
    _settled()
    code_version(tmp_path)
    assert fingerprint._CODE
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    child = context.Process(target=_report_cache, args=(str(tmp_path), done))
    child.start()
    child.join(timeout=60)
    assert done.get(timeout=5) == (0, True)
    (tmp_path / "a.py").write_text("a = 2\n", encoding="utf-8")
    assert code_version(tmp_path) == read_code_version(tmp_path)


def test_a_capture_of_a_kept_answer_is_taken_at_once_and_a_change_is_not(
    tmp_path: Path, cache: _Spawns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept answer is taken at once, with no thread; a change is never served from the cache.

    The change is seen once (which takes it off the inotify queue) and stays seen; the
    fresh read runs in the background, and both answers equal git's.
    """
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("a = 1\n", encoding="utf-8")
    _settled()
    start_capture(tmp_path).result(timeout=60)  # fills the cache
    threads: list[object] = []
    real_thread = fingerprint.threading.Thread

    def counted(*args: Any, **kwargs: Any) -> Any:
        threads.append(kwargs.get("name"))
        return real_thread(*args, **kwargs)

    monkeypatch.setattr(fingerprint.threading, "Thread", counted)
    quick = start_capture(tmp_path)
    assert quick.done() and threads == [], "a kept answer waited for a thread"
    assert quick.result() == (read_code_version(tmp_path), read_environment())
    (tmp_path / "a.py").write_text("a = 2\n", encoding="utf-8")
    assert fingerprint._kept_capture(tmp_path) is None  # sees the change, and empties the queue
    assert fingerprint._kept_capture(tmp_path) is None  # still changed: the event is not lost
    fresh = start_capture(tmp_path).result(timeout=60)
    assert threads == ["auditml-capture"]
    assert fresh == (read_code_version(tmp_path), read_environment())
    assert fresh[0] is not None and fresh[0].diff_sha256 != quick.result()[0].diff_sha256  # type: ignore[union-attr]


def test_past_the_inotify_limits_work_trees_are_watched_by_stat(
    tmp_path: Path, cache: _Spawns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond MAX_NOTIFIERS kept answers, or a tree larger than its watch budget, stats watch.

    Every answer, kept either way, still follows an edit.
    """
    _git(tmp_path, "init", "-q", "-b", "main")
    folders = [tmp_path / f"f{i}" for i in range(fingerprint.MAX_NOTIFIERS + 2)]
    for folder in folders:
        folder.mkdir()
        (folder / "a.py").write_text("a = 1\n", encoding="utf-8")
    _settled()
    before = [code_version(folder) for folder in folders]
    notified = [kept.notify is not None for kept in fingerprint._CODE.values()]
    assert len(notified) == len(folders) and sum(notified) <= fingerprint.MAX_NOTIFIERS
    (folders[-1] / "a.py").write_text("a = 22\n", encoding="utf-8")
    after = [code_version(folder) for folder in folders]
    assert after == [read_code_version(folder) for folder in folders]
    assert after != before
    fingerprint.clear_capture_cache()
    assert fingerprint._NOTIFIERS == [0]
    monkeypatch.setattr(fingerprint, "_watch_budget", lambda: 1)
    _settled()
    kept = code_version(tmp_path)
    assert [k.notify for k in fingerprint._CODE.values()] == [None]
    (folders[0] / "a.py").write_text("a = 333\n", encoding="utf-8")
    assert code_version(tmp_path) == read_code_version(tmp_path) != kept
