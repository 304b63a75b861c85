"""Red team: the kept code version (inotify and stat) always equals a fresh read of git."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from auditml._internal import fingerprint
from auditml._internal.fingerprint import code_version, read_code_version
from auditml.core.events import CodeVersion

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="attacks on the Linux inotify watch"
)


@pytest.fixture(params=["inotify", "stat"])
def watch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run each attack on the inotify watch and on the stat watch, from an empty cache."""
    monkeypatch.setattr(fingerprint, "USE_INOTIFY", request.param == "inotify")
    monkeypatch.setattr(fingerprint, "RACY_S", 0.05)
    fingerprint.clear_capture_cache()
    yield str(request.param)
    fingerprint.clear_capture_cache()


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    return done.stdout.decode()


def _repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """Make a repository at ``path`` with ``files`` committed on main."""
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"a.py": "a = 1\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "one")
    return path


def _prime(folder: Path, *, keep: bool = True) -> CodeVersion | None:
    """Wait past RACY_S and read through the cache; with ``keep``, the answer must be kept.

    A second try is allowed: git's own diff may refresh (rewrite) an index it finds stale.
    """
    key = str(folder.resolve())
    for _ in range(2):
        time.sleep(0.06)
        answer = code_version(folder)
        if any(k[0] == key for k in fingerprint._CODE):
            break
    else:
        assert not keep, "the answer was not kept: no attack"
    assert answer == read_code_version(folder)
    return answer


def _agrees(folder: Path, before: CodeVersion | None, *, changed: bool = True) -> CodeVersion:
    """Return the cached answer after an attack: it equals git's (and differs, if ``changed``)."""
    cached = code_version(folder)
    fresh = read_code_version(folder)
    assert cached == fresh, f"stale cache:\n cached {cached}\n fresh  {fresh}"
    assert fresh is not None
    assert not changed or fresh != before, "the attack changed nothing git reports"
    return fresh


def _attack(
    folder: Path, step: Callable[[], object], *, changed: bool = True, keep: bool = True
) -> CodeVersion:
    """Prime the cache, make one change, and compare the cached answer with git's."""
    before = _prime(folder, keep=keep)
    step()
    return _agrees(folder, before, changed=changed)


# -- edits the tree's watch must see -----------------------------------------------------


def test_an_edit_keeping_size_and_times_is_seen(tmp_path: Path, watch: str) -> None:
    """Bytes changed in place with mtime set back (os.utime) show: ctime and inotify both move."""
    repo = _repo(tmp_path / "r", {"a.py": "a = 1\n"})
    path = repo / "a.py"

    def rewrite() -> None:
        st = path.stat()
        with path.open("r+b") as f:
            f.write(b"b")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    assert _attack(repo, rewrite).dirty


def test_a_write_through_mmap_is_seen(tmp_path: Path, watch: str) -> None:
    """A tracked file changed through a shared map made before the read dirties the tree."""
    repo = _repo(tmp_path / "r", {"data.bin": "0123456789\n"})
    with (repo / "data.bin").open("r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
    try:

        def poke() -> None:
            m[0:1] = b"X"
            m.flush()

        assert _attack(repo, poke).dirty
    finally:
        m.close()


def test_a_new_file_in_new_nested_folders_is_seen(tmp_path: Path, watch: str) -> None:
    """New folders a/b/c (mkdir -p) are seen, then a new file in the deepest one."""
    repo = _repo(tmp_path / "r")
    _attack(repo, lambda: (repo / "a" / "b" / "c").mkdir(parents=True), changed=False)
    assert _attack(repo, lambda: (repo / "a" / "b" / "c" / "x.py").write_text("x")).dirty


def test_a_moved_folder_is_watched_under_its_new_name(tmp_path: Path, watch: str) -> None:
    """A folder renamed inside the tree, then a file edited in it: both changes show."""
    repo = _repo(tmp_path / "r", {"pkg/m.py": "m = 1\n", "other/o.py": "o\n"})
    _attack(repo, lambda: (repo / "pkg").rename(repo / "other" / "pkg2"))
    _attack(repo, lambda: (repo / "other" / "pkg2" / "m.py").write_text("m = 2\n"))


def test_a_folder_moved_in_from_outside_is_watched(tmp_path: Path, watch: str) -> None:
    """A folder made outside the tree and moved in shows; so does a later edit inside it."""
    repo = _repo(tmp_path / "r")
    outside = tmp_path / "outside" / "deep"
    outside.mkdir(parents=True)
    (outside / "x.py").write_text("x\n")
    _attack(repo, lambda: (tmp_path / "outside").rename(repo / "inside"))
    _attack(repo, lambda: (repo / "inside" / "deep" / "x.py").write_text("y\n"))


def test_a_folder_moved_out_and_edited_there_no_longer_counts(tmp_path: Path, watch: str) -> None:
    """A folder moved out of the tree shows; an edit to it outside changes nothing cached."""
    repo = _repo(tmp_path / "r", {"pkg/m.py": "m = 1\n"})
    (repo / "pkg" / "new.py").write_text("n\n")
    _attack(repo, lambda: (repo / "pkg").rename(tmp_path / "gone"))
    _attack(repo, lambda: (tmp_path / "gone" / "m.py").write_text("m = 9\n"), changed=False)


def test_a_folder_deleted_and_made_again_is_watched_anew(tmp_path: Path, watch: str) -> None:
    """A folder removed and made again with the same name: an edit in the new one shows."""
    repo = _repo(tmp_path / "r", {"pkg/m.py": "m = 1\n"})

    def remake() -> None:
        (repo / "pkg" / "m.py").unlink()
        (repo / "pkg").rmdir()
        (repo / "pkg").mkdir()
        (repo / "pkg" / "m.py").write_text("m = 1\n")

    _attack(repo, remake, changed=False)
    _attack(repo, lambda: (repo / "pkg" / "m.py").write_text("m = 2\n"))


def test_an_edit_through_a_symlink_from_outside_is_seen(tmp_path: Path, watch: str) -> None:
    """A tracked file written through a symbolic link that lives outside the tree shows."""
    repo = _repo(tmp_path / "r")
    (tmp_path / "link").symlink_to(repo / "a.py")
    _attack(repo, lambda: (tmp_path / "link").write_text("a = 2\n"))


def test_a_hard_link_made_later_and_written_through_is_seen(tmp_path: Path, watch: str) -> None:
    """A second name made outside after the watch began, then a write through it, both show."""
    repo = _repo(tmp_path / "r")
    _attack(repo, lambda: os.link(repo / "a.py", tmp_path / "other"), changed=False)
    with (tmp_path / "other").open("a") as f:
        f.write("# more\n")
    assert _agrees(repo, None).dirty


def test_an_untracked_symlink_target_edited_outside_is_seen(tmp_path: Path, watch: str) -> None:
    """An untracked link's target (outside, via a hop link) is hashed: edits and retargets show."""
    repo = _repo(tmp_path / "r")
    (tmp_path / "target.txt").write_text("one\n")
    (tmp_path / "hop").symlink_to(tmp_path / "target.txt")
    (repo / "link").symlink_to(tmp_path / "hop")
    _attack(repo, lambda: (tmp_path / "target.txt").write_text("two\n"))
    (tmp_path / "other.txt").write_text("three\n")

    def retarget() -> None:
        (tmp_path / "hop").unlink()
        (tmp_path / "hop").symlink_to(tmp_path / "other.txt")

    _attack(repo, retarget)


def test_a_symlinked_folder_in_the_tree_is_a_link_to_git(tmp_path: Path, watch: str) -> None:
    """A tracked link to a folder outside: edits in that folder change nothing, retargeting does."""
    repo = _repo(tmp_path / "r")
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "f.py").write_text("f\n")
    (tmp_path / "ext2").mkdir()
    (repo / "ext").symlink_to(tmp_path / "ext")
    _git(repo, "add", "ext")
    _git(repo, "commit", "-q", "-m", "link")
    _attack(repo, lambda: (tmp_path / "ext" / "f.py").write_text("g\n"), changed=False)

    def retarget() -> None:
        (repo / "ext").unlink()
        (repo / "ext").symlink_to(tmp_path / "ext2")

    assert _attack(repo, retarget).dirty


def test_a_new_file_in_a_folder_holding_only_ignored_files_is_seen(
    tmp_path: Path, watch: str
) -> None:
    """A folder holding only ignored files (itself not ignored) still sees a new file in it."""
    repo = _repo(tmp_path / "r", {".gitignore": "*.csv\n", "a.py": "a\n"})
    (repo / "data" / "sub").mkdir(parents=True)
    (repo / "data" / "x.csv").write_text("1\n")
    (repo / "data" / "sub" / "y.csv").write_text("1\n")
    assert _attack(repo, lambda: (repo / "data" / "new.py").write_text("x\n")).dirty
    assert _attack(repo, lambda: (repo / "data" / "sub" / "new.py").write_text("x\n")).dirty


def test_an_ignored_folder_stays_unwatched_and_unneeded(tmp_path: Path, watch: str) -> None:
    """Files made inside a folder ignored by name change nothing git reports, kept or not."""
    repo = _repo(tmp_path / "r", {".gitignore": "build/\n", "a.py": "a\n"})
    (repo / "build").mkdir()
    _attack(repo, lambda: (repo / "build" / "x.py").write_text("x\n"), changed=False)


# -- git's own state --------------------------------------------------------------------


def test_git_commands_are_seen(tmp_path: Path, watch: str) -> None:
    """Git add, commit, stash, stash pop, checkout -b, pack-refs, update-ref, detach, reset."""
    repo = _repo(tmp_path / "r")
    (repo / "a.py").write_text("a = 2\n")
    _attack(repo, lambda: _git(repo, "add", "a.py"), changed=False)  # the diff hash is vs HEAD
    _attack(repo, lambda: _git(repo, "commit", "-q", "-m", "two"))
    (repo / "a.py").write_text("a = 3\n")
    _attack(repo, lambda: _git(repo, "stash", "-q"))
    _attack(repo, lambda: _git(repo, "stash", "pop", "-q"))
    _git(repo, "stash", "-q")
    _attack(repo, lambda: _git(repo, "checkout", "-q", "-b", "feature"))
    _attack(repo, lambda: _git(repo, "commit", "-q", "--allow-empty", "-m", "three"))
    _attack(repo, lambda: _git(repo, "pack-refs", "--all"), changed=False)
    _attack(repo, lambda: _git(repo, "update-ref", "refs/heads/feature", "HEAD~1"))
    _attack(repo, lambda: _git(repo, "checkout", "-q", "--detach"))
    _attack(repo, lambda: _git(repo, "reset", "-q", "--hard", "main~1"))


def test_ignore_rules_in_the_tree_and_in_git_dir_are_seen(tmp_path: Path, watch: str) -> None:
    """.gitignore and .git/info/exclude: dropping a rule makes an ignored file count."""
    repo = _repo(tmp_path / "r", {".gitignore": "*.log\n", "a.py": "a\n"})
    (repo / "x.log").write_text("l\n")
    (repo / "y.tmp").write_text("t\n")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("*.tmp\n")
    assert _attack(repo, lambda: (repo / ".gitignore").write_text("")).dirty
    _attack(repo, lambda: (repo / ".git" / "info" / "exclude").write_text(""))


def test_git_info_attributes_is_seen(tmp_path: Path, watch: str) -> None:
    """.git/info/attributes changes git's diff (here: a text file made binary), so its hash."""
    repo = _repo(tmp_path / "r", {"a.txt": "a\n"})
    (repo / "a.txt").write_text("b\n")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    _attack(repo, lambda: (repo / ".git" / "info" / "attributes").write_text("*.txt binary\n"))


def test_an_included_config_file_is_seen(tmp_path: Path, watch: str) -> None:
    """A config file named by [include] in .git/config: a remote changed there shows."""
    repo = _repo(tmp_path / "r")
    extra = tmp_path / "extra.cfg"
    extra.write_text('[remote "origin"]\n\turl = https://git.example/one.git\n')
    _git(repo, "config", "include.path", str(extra))
    changed = '[remote "origin"]\n\turl = https://git.example/two.git\n'
    assert _attack(repo, lambda: extra.write_text(changed)).repository == (
        "https://git.example/two.git"
    )


def test_a_missing_included_config_file_made_later_is_seen(tmp_path: Path, watch: str) -> None:
    """An [include] naming a file that does not exist yet: making it shows."""
    repo = _repo(tmp_path / "r")
    _git(repo, "config", "include.path", "../../later.cfg")  # relative to .git/config
    later = tmp_path / "later.cfg"
    _attack(repo, lambda: later.write_text('[remote "origin"]\n\turl = https://x.example/r\n'))


def test_a_replace_ref_is_seen(tmp_path: Path, watch: str) -> None:
    """A replace ref swaps HEAD's commit for another: git's status changes, and must show."""
    repo = _repo(tmp_path / "r")
    first = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "a.py").write_text("a = 2\n")
    _git(repo, "commit", "-q", "-am", "two")
    second = _git(repo, "rev-parse", "HEAD").strip()
    assert _attack(repo, lambda: _git(repo, "replace", second, first)).dirty


def test_a_commit_inside_an_embedded_repository_is_seen(tmp_path: Path, watch: str) -> None:
    """A repository added as a gitlink without .gitmodules: a commit inside it dirties the outer."""
    repo = _repo(tmp_path / "r")
    inner = _repo(repo / "inner", {"i.py": "i\n"})
    _git(repo, "add", "inner")
    _git(repo, "commit", "-q", "-m", "embed")
    commit = lambda: _git(inner, "commit", "-q", "--allow-empty", "-m", "x")  # noqa: E731
    assert _attack(repo, commit, keep=False).dirty
    assert not fingerprint._CODE, "a tree with a gitlink was kept"


def test_an_untracked_nested_repository_is_one_entry(tmp_path: Path, watch: str) -> None:
    """An untracked repository inside the tree: its commits and files are not the outer's."""
    repo = _repo(tmp_path / "r")
    inner = _repo(repo / "inner", {"i.py": "i\n"})
    _attack(repo, lambda: _git(inner, "commit", "-q", "--allow-empty", "-m", "x"), changed=False)
    _attack(repo, lambda: (inner / "i.py").write_text("j\n"), changed=False)


def test_git_worktrees_are_each_followed(tmp_path: Path, watch: str) -> None:
    """A linked worktree: commits there, a branch moved from the main tree, an edit, all show."""
    repo = _repo(tmp_path / "r")
    wt = tmp_path / "wt"
    _attack(repo, lambda: _git(repo, "worktree", "add", "-q", str(wt), "-b", "feat"), changed=False)
    _attack(wt, lambda: _git(wt, "commit", "-q", "--allow-empty", "-m", "x"))
    _attack(wt, lambda: _git(repo, "update-ref", "refs/heads/feat", "main"))
    _attack(wt, lambda: (wt / "a.py").write_text("w\n"))
    inside = repo / "inner-wt"
    _attack(repo, lambda: _git(repo, "worktree", "add", "-q", str(inside), "-b", "g"))


def test_git_env_files_are_seen(
    tmp_path: Path, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIT_INDEX_FILE and GIT_CONFIG_GLOBAL name files git reads: changes to them show."""
    repo = _repo(tmp_path / "r")
    index = tmp_path / "other-index"
    glob = tmp_path / "global.cfg"
    glob.write_text("")
    monkeypatch.setenv("GIT_INDEX_FILE", str(index))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    _git(repo, "read-tree", "HEAD")
    (repo / "b.py").write_text("b\n")
    _attack(repo, lambda: _git(repo, "add", "b.py"))
    (repo / "c.tmp").write_text("c\n")
    (tmp_path / "ign").write_text("*.tmp\n")
    _attack(repo, lambda: glob.write_text(f"[core]\n\texcludesFile = {tmp_path / 'ign'}\n"))
    _attack(repo, lambda: (tmp_path / "ign").write_text("*.py\n"))


# -- processes, threads, limits -----------------------------------------------------------


def test_changes_from_a_thread_and_a_subprocess_are_seen(tmp_path: Path, watch: str) -> None:
    """An edit made by another thread, then one by a shell process, both show."""
    repo = _repo(tmp_path / "r")

    def in_thread() -> None:
        t = threading.Thread(target=lambda: (repo / "a.py").write_text("a = 2\n"))
        t.start()
        t.join()

    _attack(repo, in_thread)
    _attack(repo, lambda: subprocess.run(["sh", "-c", "echo '#' >> a.py"], cwd=repo, check=True))


def test_an_overflowing_inotify_queue_is_a_change(tmp_path: Path, watch: str) -> None:
    """More events than the kernel queues (an overflow) read as a change, then git's answer."""
    repo = _repo(tmp_path / "r", {"a.py": "a\n", "b.py": "b\n"})
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())

    def flood() -> None:
        for i in range(limit + 10):
            os.utime(repo / ("a.py" if i % 2 else "b.py"))
        (repo / "a.py").write_text("a = 2\n")

    _attack(repo, flood)
    assert code_version(repo) == read_code_version(repo)


def test_many_repositories_past_max_notifiers_and_budget(
    tmp_path: Path, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More trees than MAX_NOTIFIERS, and a tree past its watch budget: edits show in each."""
    repos = [_repo(tmp_path / f"r{i}") for i in range(fingerprint.MAX_NOTIFIERS + 2)]
    for repo in repos:
        _prime(repo)
    for repo in repos:
        (repo / "a.py").write_text("a = 2\n")
        assert _agrees(repo, None).dirty
    fingerprint.clear_capture_cache()
    monkeypatch.setattr(fingerprint, "_watch_budget", lambda: 2)
    big = _repo(tmp_path / "big", {f"d{i}/f.py": "f\n" for i in range(5)})
    _attack(big, lambda: (big / "d3" / "f.py").write_text("g\n"))


def test_a_change_within_the_racy_window_is_never_kept(
    tmp_path: Path, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file edited right after git read it (before the watches are placed) is not served stale."""
    repo = _repo(tmp_path / "r")
    real = fingerprint._described
    edits = iter(["a = 2\n"])

    def then_edit(cwd: Path, root: Path) -> CodeVersion:
        answer = real(cwd, root)
        text = next(edits, None)
        if text is not None:
            (repo / "a.py").write_text(text)
        return answer

    time.sleep(0.06)
    monkeypatch.setattr(fingerprint, "_described", then_edit)
    first = code_version(repo)
    assert first is not None and not first.dirty  # read before the edit
    assert code_version(repo) == read_code_version(repo)
    assert code_version(repo) == read_code_version(repo)


def _edit_then_report(folder: str, done: Any) -> None:
    """In a forked child: edit the tree, then report whether the cache agrees with git."""
    path = Path(folder) / "a.py"
    path.write_text(path.read_text() + "# child\n")
    done.put(code_version(folder) == read_code_version(folder))


def test_a_fork_then_changes_in_child_and_parent(tmp_path: Path, watch: str) -> None:
    """After a fork the child's edit shows in the parent, and the child sees its own."""
    repo = _repo(tmp_path / "r")
    before = _prime(repo)
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    child = context.Process(target=_edit_then_report, args=(str(repo), done))
    child.start()
    child.join(timeout=60)
    assert done.get(timeout=5) is True
    after = _agrees(repo, before)
    (repo / "a.py").write_text("parent\n")
    assert _agrees(repo, after).dirty


@pytest.mark.parametrize("stand_in", ["pipe", "devnull"])
def test_an_inotify_fd_closed_and_reused_is_not_trusted(
    tmp_path: Path, watch: str, stand_in: str
) -> None:
    """An fd closed by other code (a daemon) and reopened as a pipe or /dev/null is not trusted."""
    repo = _repo(tmp_path / "r")
    before = _prime(repo)
    notify = next(iter(fingerprint._CODE.values())).notify
    if notify is None:
        assert watch == "stat"
        return
    if stand_in == "pipe":
        other, spare = os.pipe()
        os.set_blocking(other, False)
    else:
        other = spare = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(other, notify.fd)  # closes the inotify instance, the number now reads other
        (repo / "a.py").write_text("a = 2\n")
        assert _agrees(repo, before).dirty
    finally:
        os.close(other)
        if spare != other:
            os.close(spare)


class _FailingWatches:
    """The C library, but inotify_add_watch fails (ENOSPC) after ``left`` watches."""

    def __init__(self, real: Any, left: int) -> None:
        self.real = real
        self.left = left
        self.inotify_init1 = real.inotify_init1
        self.statfs = real.statfs

    def inotify_add_watch(self, fd: int, path: bytes, mask: int) -> int:
        self.left -= 1
        return -1 if self.left < 0 else int(self.real.inotify_add_watch(fd, path, mask))


def test_running_out_of_watches_midway_falls_back_to_stat(
    tmp_path: Path, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel refusing a watch halfway (other programs took them) leaves everything on stat."""
    repo = _repo(tmp_path / "r", {f"d{i}/f.py": "f\n" for i in range(6)})
    real = fingerprint._libc()
    if real is not None:
        monkeypatch.setattr(fingerprint, "_libc", lambda: _FailingWatches(real, 3))
    before = _prime(repo)
    assert [k.notify for k in fingerprint._CODE.values()] == [None]
    assert fingerprint._NOTIFIERS == [0]
    (repo / "d4" / "new.py").write_text("n\n")
    after = _agrees(repo, before)
    _attack(repo, lambda: (repo / "d5" / "f.py").write_text("g\n"))
    assert after.dirty


def test_a_commit_inside_a_submodule_is_seen(tmp_path: Path, watch: str) -> None:
    """A real submodule (.gitmodules): the answer is not kept, so a commit inside it shows."""
    inner = _repo(tmp_path / "inner", {"i.py": "i\n"})
    repo = _repo(tmp_path / "r")
    _git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "sub")
    _git(repo, "commit", "-q", "-m", "sub")
    commit = lambda: _git(repo / "sub", "commit", "-q", "--allow-empty", "-m", "x")  # noqa: E731
    assert _attack(repo, commit, keep=False).dirty
    assert not fingerprint._CODE


def test_a_folder_named_like_pathspec_magic_is_not_skipped(tmp_path: Path, watch: str) -> None:
    """A folder ':(top)build' holding only ignored files is not taken for the ignored 'build'."""
    repo = _repo(tmp_path / "r", {".gitignore": "build/\n*.csv\n", "a.py": "a\n"})
    (repo / "build").mkdir()
    odd = repo / ":(top)build"
    odd.mkdir()
    (odd / "x.csv").write_text("1\n")
    assert _attack(repo, lambda: (odd / "new.py").write_text("n\n")).dirty


def test_an_embedded_repository_in_an_ignored_folder_is_seen(tmp_path: Path, watch: str) -> None:
    """A gitlink force-added inside an ignored folder: a commit inside it still shows."""
    repo = _repo(tmp_path / "r", {".gitignore": "vendor/\n", "a.py": "a\n"})
    inner = _repo(repo / "vendor" / "lib", {"i.py": "i\n"})
    _git(repo, "add", "-f", "vendor/lib")
    _git(repo, "commit", "-q", "-m", "embed")
    commit = lambda: _git(inner, "commit", "-q", "--allow-empty", "-m", "x")  # noqa: E731
    assert _attack(repo, commit, keep=False).dirty
    assert not fingerprint._CODE, "a tree with a gitlink was kept"


def test_a_worktree_gitfile_pointed_elsewhere_is_seen(tmp_path: Path, watch: str) -> None:
    """A linked worktree's .git file rewritten to name another worktree's admin folder shows."""
    repo = _repo(tmp_path / "r")
    one, two = tmp_path / "one", tmp_path / "two"
    _git(repo, "worktree", "add", "-q", str(one), "-b", "one")
    _git(repo, "worktree", "add", "-q", str(two), "-b", "two")
    gitfile = one / ".git"
    _attack(one, lambda: gitfile.write_text((two / ".git").read_text()))


def test_a_writer_racing_the_reads_leaves_no_stale_answer(tmp_path: Path, watch: str) -> None:
    """A thread editing (and setting mtime back) while reads run: each kept answer holds after."""
    repo = _repo(tmp_path / "r", {"a.py": "a = 0\n"})
    path = repo / "a.py"
    old = path.stat().st_mtime_ns
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            path.write_text(f"a = {i % 10}\n")
            os.utime(path, ns=(old, old))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(20):
            code_version(repo)
    finally:
        stop.set()
        writer.join()
    for text in ("a = 11\n", "a = 0\n"):
        before = _prime(repo, keep=False)
        path.write_text(text)
        os.utime(path, ns=(old, old))
        assert code_version(repo) == read_code_version(repo) != before
