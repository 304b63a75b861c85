r"""Fingerprints: hashes of files and folders, the code version, the environment, parameters.

Files are hashed by :func:`hashlib.file_digest`-style streaming with a large
buffer, so hashing runs at the speed of SHA-256 itself. A folder is hashed
through a manifest: one line per regular file, sorted by its POSIX path
relative to the folder::

    <sha256 hex> <size in bytes> <relative/path>\n

and the folder's digest is the SHA-256 of that text. The files of a folder are
hashed on a thread pool as wide as the machine (hashlib releases the GIL while
it hashes), so a folder of many files uses every core.

Code version and environment are read in a background thread
(:func:`start_capture`): the code a process runs is the code it imported, and
reading git and the installed packages takes tens of milliseconds that a
training call should not wait for. Within a process they are read once and
kept: Python and the platform for good, the packages while no folder of
``sys.path`` changes, and the code version while no file git looks at changes
(checked by file stats, and on Linux by inotify for the work tree's folders, so
a later capture starts no process and stats git's own files and the tree's files,
not its folders). What is kept
is always what :func:`read_code_version` and :func:`read_environment` would
read afresh; a test compares them field by field.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import pickle
import platform
import queue
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from auditml._internal.infile import open_regular, read_regular
from auditml.core.events import ArtifactRef, CodeVersion, DatasetRef, Environment
from auditml.core.uri import scrub_uri
from auditml.errors import InvalidInputError

__all__ = [
    "BUFFER",
    "artifact_ref",
    "clear_capture_cache",
    "code_version",
    "dataset_ref",
    "encode_param",
    "environment",
    "folder_manifest",
    "hash_file",
    "installed_packages",
    "read_code_version",
    "read_environment",
    "read_with_ref",
    "start_capture",
]

#: Read size for hashing: large enough that the per-call cost vanishes next to SHA-256.
BUFFER = 1 << 20
MAX_SAFE_INT = 2**53 - 1
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GIT_TIMEOUT_S = 10.0


def is_uri(source: str) -> bool:
    """Return whether ``source`` names a remote location (``scheme://…``) rather than a path."""
    return bool(_URI.match(source)) and not source.startswith("file://")


def _local(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


_LOCAL = threading.local()
#: Files at least this large are read by a second thread while this one hashes.
PIPELINE_FROM = 16 * BUFFER


def _buffer() -> bytearray:
    """Return this thread's read buffer, made once (zeroing 1 MiB per file costs time)."""
    found: bytearray | None = getattr(_LOCAL, "buffer", None)
    if found is None:
        found = _LOCAL.buffer = bytearray(BUFFER)
    return found


def hash_file(path: str | os.PathLike[str], what: str = "file") -> tuple[str, int]:
    """Return the SHA-256 hex digest and size of a file, streamed in large blocks.

    A large file is read by a helper thread into a ring of buffers while this
    thread hashes the one before (both release the GIL), so reading costs no
    hashing time and the file hashes at the speed of SHA-256 itself. A pipe, device,
    socket or folder is refused (``what`` names the file then), never read.
    """
    with open_regular(path, what, buffering=0) as f:
        return _hash_open(f)


def _hash_open(f: Any) -> tuple[str, int]:
    """Return the SHA-256 hex digest and size of what an open file holds from its position."""
    try:
        large = os.fstat(f.fileno()).st_size >= PIPELINE_FROM
    except OSError:
        large = False
    if large:
        return _hash_pipelined(f)
    digest = hashlib.sha256()
    size = 0
    buffer = _buffer()
    view = memoryview(buffer)
    while n := f.readinto(buffer):
        digest.update(view[:n])
        size += n
    return digest.hexdigest(), size


def _untracked_digest(path: Path) -> bytes:
    """Return what an untracked path adds to the diff hash: its content's SHA-256, if a file.

    The path is opened without blocking and held to what it is once open, so a
    FIFO, a device (a link to ``/dev/zero``) or a socket is never read, which
    would block or never end: it adds its kind and, for a link, the link's text.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return b"unreadable"
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.set_blocking(fd, True)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                return _hash_open(f)[0].encode()
    except OSError:
        return b"unreadable"
    finally:
        os.close(fd)
    try:
        link = os.fsencode(os.readlink(path)) if path.is_symlink() else b""
    except OSError:
        link = b""
    return b"special %o " % stat.S_IFMT(mode) + link


def _hash_pipelined(f: Any) -> tuple[str, int]:
    """Hash an open file while a helper thread reads ahead into three buffers."""
    digest = hashlib.sha256()
    free: queue.Queue[bytearray] = queue.Queue()
    full: queue.Queue[tuple[bytearray, int] | BaseException] = queue.Queue()
    for _ in range(3):
        free.put(bytearray(BUFFER))
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                buffer = free.get()
                n = f.readinto(buffer)
                full.put((buffer, n or 0))
                if not n:
                    return
        except BaseException as exc:  # handed to the hashing thread, which raises it
            full.put(exc)

    reader = threading.Thread(target=read, name="auditml-read", daemon=True)
    reader.start()
    size = 0
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            if not n:
                break
            digest.update(memoryview(buffer)[:n])
            size += n
            free.put(buffer)
    finally:
        stop.set()
        free.put(bytearray(0))  # wake the reader if it waits for a buffer
        reader.join()
    return digest.hexdigest(), size


def _walk(folder: Path) -> list[tuple[str, Path]]:
    """Return ``(relative posix path, path)`` of every regular file under ``folder``, sorted."""
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        base = Path(root)
        for name in files:
            path = base / name
            try:
                mode = path.stat().st_mode  # follows a symlink to a file: its content counts
            except OSError:
                continue  # a dangling link holds no data
            if stat.S_ISREG(mode):
                found.append((path.relative_to(folder).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def _workers() -> int:
    return max(2, os.cpu_count() or 2)


def folder_manifest(folder: str | os.PathLike[str]) -> list[tuple[str, int, str]]:
    """Return ``(sha256, size, relative path)`` of every file under ``folder``, sorted by path."""
    files = _walk(Path(folder))
    if not files:
        return []
    if len(files) == 1:
        digest, size = hash_file(files[0][1])
        return [(digest, size, files[0][0])]
    with ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="auditml-hash") as pool:
        hashed = list(pool.map(lambda item: hash_file(item[1]), files, chunksize=8))
    return [(digest, size, rel) for (rel, _), (digest, size) in zip(files, hashed, strict=True)]


def manifest_digest(manifest: list[tuple[str, int, str]]) -> str:
    """Return the SHA-256 of a folder manifest written as the module docstring says."""
    digest = hashlib.sha256()
    for sha, size, rel in manifest:
        digest.update(f"{sha} {size} {rel}\n".encode())
    return digest.hexdigest()


def local_uri(path: Path) -> str:
    """Return how a local file is recorded: relative to the working folder when inside it.

    A path like ``data/train.csv`` reads the same on every machine the project runs
    on, and keeps temporary folders and home directories out of documents; a file
    outside the working folder is recorded by its absolute path.
    """
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(resolved)


def dataset_ref(source: str | os.PathLike[str]) -> DatasetRef:
    """Hash a dataset file or folder, or record a URI as given; a missing path is refused."""
    text = os.fspath(source)
    if not text.strip():
        raise InvalidInputError("a dataset needs a path or URI, not an empty string")
    if is_uri(text):
        return DatasetRef(uri=text, kind="uri")
    path = _local(text)
    try:
        if path.is_dir():
            manifest = folder_manifest(path)
            return DatasetRef(
                uri=local_uri(path),
                kind="folder",
                sha256=manifest_digest(manifest),
                size=sum(size for _, size, _ in manifest),
                files=len(manifest),
            )
        digest, size = hash_file(path, "dataset file")
    except FileNotFoundError:
        raise InvalidInputError(
            f"dataset {text!r} does not exist: give an existing file or folder, "
            "or a URI such as s3://bucket/key"
        ) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read dataset {text!r}: {exc.strerror}") from None
    return DatasetRef(uri=local_uri(path), kind="file", sha256=digest, size=size)


def artifact_ref(source: str | os.PathLike[str]) -> ArtifactRef:
    """Hash an output file (or folder, via its manifest), or record a URI as given."""
    text = os.fspath(source)
    if not text.strip():
        raise InvalidInputError("an artifact needs a path or URI, not an empty string")
    if is_uri(text):
        return ArtifactRef(uri=text)
    path = _local(text)
    try:
        if path.is_dir():
            manifest = folder_manifest(path)
            return ArtifactRef(
                uri=local_uri(path),
                sha256=manifest_digest(manifest),
                size=sum(size for _, size, _ in manifest),
            )
        digest, size = hash_file(path, "artifact file")
    except FileNotFoundError:
        raise InvalidInputError(
            f"artifact {text!r} does not exist: write it before the run ends, "
            "or give a URI such as s3://bucket/model.pkl"
        ) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read artifact {text!r}: {exc.strerror}") from None
    return ArtifactRef(uri=local_uri(path), sha256=digest, size=size)


def read_with_ref(source: str | os.PathLike[str], what: str) -> tuple[bytes, ArtifactRef]:
    """Read a local file once and return its bytes and its reference (path, SHA-256, size).

    The digest is of exactly the bytes returned, so what is recorded is what was read.
    """
    text = os.fspath(source)
    if not text.strip() or is_uri(text):
        raise InvalidInputError(f"the {what} must be a local file, not {text!r}")
    path = _local(text)
    try:
        raw = read_regular(path, what)
    except FileNotFoundError:
        raise InvalidInputError(f"no {what} at {text}") from None
    except IsADirectoryError:
        raise InvalidInputError(f"the {what} {text} is a folder, not a file") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} {text}: {exc.strerror}") from None
    ref = ArtifactRef(uri=local_uri(path), sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))
    return raw, ref


# -- parameters ----------------------------------------------------------------


def _type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def opaque(value: object) -> dict[str, Any]:
    """Return ``{"type", "sha256"}`` for a value JSON cannot hold.

    The hash is over the value's bytes when it exposes them (arrays, buffers),
    else its pickle, else its ``repr``: the same value gives the same hash.
    """
    payload: bytes
    try:
        tobytes = getattr(value, "tobytes", None)
    except Exception:
        tobytes = None
    if isinstance(value, bytes | bytearray | memoryview):
        payload = bytes(value)
    elif callable(tobytes):
        try:
            raw = tobytes()
            payload = raw if isinstance(raw, bytes) else repr(value).encode()
        except Exception:
            payload = repr(value).encode()
    else:
        try:
            payload = pickle.dumps(value, protocol=5)
        except Exception:
            try:
                payload = repr(value).encode("utf-8", "backslashreplace")
            except Exception:  # neither pickle nor repr: the type is all there is to say
                return {"type": _type_name(value)}
    return {"type": _type_name(value), "sha256": hashlib.sha256(payload).hexdigest()}


def is_text(value: str) -> bool:
    """Return whether a string is valid Unicode JSON can hold (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_param(value: Any, _depth: int = 0) -> Any:
    """Return ``value`` as JSON the log can hold; anything else becomes type plus hash.

    Tuples and sets become lists, paths become strings, integers beyond
    +/-(2^53-1) and NaN or infinite floats become decimal strings with their
    type, and any other value JSON cannot hold (an object, a mapping with
    keys that are not strings, text with lone surrogates, nesting deeper than
    32) becomes ``{"type", "sha256"}``. Never raises: a value that fails while
    it is read (a mapping whose iteration raises) is recorded as type plus hash.
    """
    try:
        return _encode(value, _depth)
    except Exception:
        return opaque(value)


def _encode(value: Any, _depth: int) -> Any:
    """Do the work of :func:`encode_param`, which catches what reading ``value`` raises."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if is_text(value) else opaque(value)
    if isinstance(value, int):
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return int(value)
        return {"type": _type_name(value), "value": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"type": "float", "value": repr(value)}
    if isinstance(value, os.PathLike):
        return encode_param(os.fspath(value), _depth + 1)
    if _depth < 32:
        if isinstance(value, Mapping) and all(isinstance(k, str) and is_text(k) for k in value):
            return {k: encode_param(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [encode_param(v, _depth + 1) for v in value]
        if isinstance(value, set | frozenset):
            items = [encode_param(v, _depth + 1) for v in value]
            if all(isinstance(v, str | int | float) for v in items):
                return sorted(items, key=lambda v: (type(v).__name__, v))
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__.startswith("numpy"):
        try:
            scalar = item()
        except Exception:
            scalar = None
        if isinstance(scalar, bool | int | float | str):
            return encode_param(scalar, _depth + 1)
    return opaque(value)


# -- code version and environment ---------------------------------------------


def _git(args: list[str], cwd: Path) -> bytes | None:
    """Run git in ``cwd``; return its stdout, or None when git fails or is absent.

    ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from rewriting the index (and
    taking its lock) while it reads: a capture must not get in the way of the
    user's own git commands, nor change the files it watches.
    """
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_code_version(folder: str | os.PathLike[str] | None) -> CodeVersion | None:
    """Return the code version of ``folder`` as git itself reports it, with no cache.

    This is the definition of what a training event records as its ``code``;
    :func:`code_version` returns the same, from a cache while the work tree
    has not changed.
    """
    cwd = Path(folder) if folder is not None else Path.cwd()
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if top is None:
        return None
    return _described(cwd, Path(os.fsdecode(top.strip())))


def _described(cwd: Path, root: Path) -> CodeVersion:
    """Return the commit, branch, dirty flag, diff hash and remote of the work tree at ``root``."""
    commit = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd)
    branch = _git(["symbolic-ref", "--short", "-q", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=all"], cwd) or b""
    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    dirty = bool(status.strip())
    diff_sha: str | None = None
    if dirty:
        digest = hashlib.sha256()
        digest.update(_git(["diff", "HEAD", "--binary"], cwd) or b"")
        # From the top: in a subfolder, ls-files would list only its files, relative to it.
        listed = _git(["ls-files", "--others", "--exclude-standard", "-z"], root) or b""
        for name in sorted(n for n in listed.split(b"\0") if n):
            digest.update(b"\0untracked\0" + name + b"\0")
            digest.update(_untracked_digest(root / os.fsdecode(name)))
        diff_sha = digest.hexdigest()
    return CodeVersion(
        commit=commit.decode().strip() if commit else None,
        branch=branch.decode().strip() if branch else None,
        dirty=dirty,
        diff_sha256=diff_sha,
        repository=scrub_uri(remote.decode().strip())[0] if remote else None,
    )


# -- the code version, kept while the work tree is unchanged ------------------------------
#
# Reading the code version runs git five to seven times (30-100 ms). Within a process it
# changes only when a file git looks at changes, so the answer is kept with the stat of
# every such file: the folder and its parents (a repository appearing above it), git's
# HEAD, index, refs (also replace refs), config (also included files), ignore and attributes
# files, every tracked and untracked file (and the links an untracked link leads through),
# and every directory of the work tree that no ignore rule matches (a new file changes its
# directory). A tree with a gitlink (a submodule) is not kept: its state is another HEAD's.
# A later capture stats them again, spawning no process, and asks git only when one
# differs. A file changed within RACY_S of the read is not trusted to show its next change
# in its stat (file times are coarse), so such an answer is not kept at all.
#
# Stating every file costs a system call each (about 1 ms for 450 files), so on Linux the
# work tree's files and folders are watched by inotify instead, where the kernel reports
# every change made through the local filesystem by any process: one read of the watch
# queue replaces their stats. The watches are placed after ``since`` and before the stats
# that judge an answer racy, so a change before a watch shows in its stat and one after in
# the queue. What inotify does not fully see stays watched by stat: other filesystems (NFS
# and FUSE are not told of remote changes), files with several hard links (a write through
# another name reaches no watch of ours), paths on another device (a mount in the tree),
# git's own files, the config files and the folders above the work tree. Nor does inotify
# see a write through a shared memory map (mmap: no write call, only a new mtime), so the
# files stay on stat unless INOTIFY_FILES is set; inotify then watches the folders (entries
# made, removed or renamed).

#: Seconds before a read within which a changed file keeps its answer out of the cache.
RACY_S = 2.0
#: Environment variables that change what git reads.
_GIT_ENV = ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CEILING_DIRECTORIES")
_Stat = tuple[int, int, int, int, int] | None


def _stat(path: str | Path) -> _Stat:
    """Return what says a path changed: inode, size, mode, mtime and ctime (None: absent)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


class _Watched:
    """The paths a code version was read from (by stat, or by an inotify watch), and the answer."""

    def __init__(
        self,
        paths: list[Path],
        answer: CodeVersion | None,
        notify: _Notify | None = None,
        newest_ns: int = 0,
    ) -> None:
        self.paths = [os.fspath(path) for path in paths]
        self.stats = [_stat(path) for path in self.paths]
        self.answer = answer
        self.notify = notify
        self.newest_ns = newest_ns  # the latest change to a path inotify watches, when placed

    def racy(self, since_ns: int) -> bool:
        """Return whether a path changed after ``since_ns``: its next change may not show."""
        if self.newest_ns >= since_ns:
            return True
        return any(st is not None and max(st[3], st[4]) >= since_ns for st in self.stats)

    def unchanged(self) -> bool:
        """Return whether no watched path changed since the answer was read.

        The inotify queue is read first: one system call for the whole work tree.
        """
        if self.notify is not None and self.notify.changed():
            return False
        return all(_stat(path) == kept for path, kept in zip(self.paths, self.stats, strict=True))

    def close(self) -> None:
        """Give back the inotify watch, if any."""
        if self.notify is not None:
            self.notify.close()


# -- inotify (Linux only; anything else is watched by stat) -------------------------------

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_DONT_FOLLOW = 0x400, 0x800, 0x02000000
#: Every change to a file, a folder or a folder's entries (reads and opens are not asked for).
_IN_CHANGES = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_DONT_FOLLOW
)
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, getattr(os, "O_CLOEXEC", 0o2000000)
#: Filesystems where inotify hears of every change (ext2-4, XFS, Btrfs, tmpfs): not NFS, FUSE...
_LOCAL_FS = frozenset({0xEF53, 0x58465342, 0x9123683E, 0x01021994})
#: At most this many watches per work tree, and at most an eighth of the user's limit: an
#: editor's or a build tool's watchers share it, and must not run out because of ours.
MAX_WATCHES = 4096
#: At most this many work trees watched by inotify at once in a process; others are stated.
MAX_NOTIFIERS = 4
_NOTIFIERS = [0]  # how many are open now, counted under _CODE_LOCK


@functools.cache
def _watch_budget() -> int:
    """Return how many inotify watches one work tree may take."""
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return 0
    return min(MAX_WATCHES, limit // 8)


#: Set to False to watch every path by stat (tests compare the two).
USE_INOTIFY = True
#: Whether files may be watched by inotify alone. No: a write through a shared memory map
#: (mmap) raises no inotify event, only a new mtime, so files stay on stat and inotify
#: watches the folders (entries made, removed or renamed).
INOTIFY_FILES = False


@functools.cache
def _libc() -> Any:
    """Return the C library with inotify and statfs declared, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return libc


def _fs_type(path: Path) -> int | None:
    """Return the filesystem magic number of ``path`` (``statfs``'s ``f_type``), or None."""
    import ctypes

    buffer = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc().statfs(os.fsencode(path), buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF  # f_type comes first


class _Notify:
    """An inotify instance: anything in its queue means a watched path changed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pid = os.getpid()
        self.fired = False
        self.identity = self._identity()
        _NOTIFIERS[0] += 1

    def _identity(self) -> tuple[int, int, int] | None:
        """Return what the fd's number refers to now (device, inode, mode), None when closed."""
        try:
            st = os.fstat(self.fd)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mode)

    def changed(self) -> bool:
        """Return whether an event (or an overflow) was ever queued; a forked child never trusts it.

        Reading takes the events out of the queue, so once one is seen the answer stays
        "changed". The queue is shared with a forked child, which could take its parent's
        events, so in any process but the one that placed the watches it is always "changed".
        Code that closes every fd (a daemon) may open a pipe or /dev/null on the same number,
        which would read as "no event" (or block): the number must still be an inotify one.
        """
        if self.fired or self.fd < 0 or os.getpid() != self.pid:
            return True
        if self.identity is None or self._identity() != self.identity:
            self.fired = True
            return True
        try:
            self.fired = bool(os.read(self.fd, 1 << 16))
        except BlockingIOError:
            return False
        except OSError:
            self.fired = True
        return self.fired

    def close(self) -> None:
        """Close the inotify instance, which removes its watches."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
            _NOTIFIERS[0] -= 1


def _notify(
    root: Path, dirs: list[Path], files: list[Path]
) -> tuple[_Notify | None, list[Path], int]:
    """Watch ``dirs`` and ``files`` by inotify; return the watch and the paths left to stat.

    Also returned: the latest change (mtime or ctime, ns) of the paths inotify watches, to
    judge the answer racy as their stats would. A path is watched only when inotify hears
    of every change to it: on a local filesystem, on the device of ``root``, and (for a
    file) a regular file or link with one name, in a folder watched so (a file's replacement
    is an event of its folder). Unless INOTIFY_FILES, files are all left to stat, unwatched.
    """
    everything = [*dirs, *files]
    stated = [] if INOTIFY_FILES else files
    files = files if INOTIFY_FILES else []
    libc = _libc() if USE_INOTIFY else None
    if libc is None or _NOTIFIERS[0] >= MAX_NOTIFIERS:
        return None, everything, 0
    if not 0 < len(dirs) + len(files) <= _watch_budget():
        return None, everything, 0
    try:
        top = os.lstat(root)
    except OSError:
        return None, everything, 0
    if _fs_type(root) not in _LOCAL_FS:
        return None, everything, 0
    fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return None, everything, 0
    notify = _Notify(fd)
    left: list[Path] = list(stated)
    watched_dirs: set[Path] = set()
    newest = 0
    for path, is_dir in [*((d, True) for d in dirs), *((f, False) for f in files)]:
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_CHANGES) < 0:
            notify.close()  # out of watches, or gone: stat everything, as without inotify
            return None, everything, 0
        try:
            st = os.lstat(path)  # after the watch: a change before it shows here, after it there
        except OSError:
            left.append(path)
            continue
        kind_ok = (
            stat.S_ISDIR(st.st_mode)
            if is_dir
            else path.parent in watched_dirs
            and ((stat.S_ISREG(st.st_mode) and st.st_nlink == 1) or stat.S_ISLNK(st.st_mode))
        )
        if st.st_dev != top.st_dev or not kind_ok:
            left.append(path)
            continue
        if is_dir:
            watched_dirs.add(path)
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return notify, left, newest


_CODE_LOCK = threading.Lock()
_CODE: dict[tuple[str, tuple[tuple[str, str | None], ...]], _Watched] = {}


def _fresh_locks() -> None:
    """Give a forked child its own unheld locks: a capture thread may have held one at fork."""
    global _CODE_LOCK, _ENV_LOCK
    _CODE_LOCK = threading.Lock()
    _ENV_LOCK = threading.Lock()
    for kept in _CODE.values():  # the parent's inotify queues are not the child's to read
        kept.close()
    _CODE.clear()
    _NOTIFIERS[0] = 0


def clear_capture_cache() -> None:
    """Forget every code version and environment kept in this process."""
    with _CODE_LOCK:
        for kept in _CODE.values():
            kept.close()
        _CODE.clear()
    with _ENV_LOCK:
        _PACKAGES.clear()
        _ACCELERATORS_ASKED.clear()


def _git_env() -> tuple[tuple[str, str | None], ...]:
    names = sorted({*_GIT_ENV, *(k for k in os.environ if k.startswith("GIT_"))})
    return tuple((name, os.environ.get(name)) for name in names)


def code_version(folder: str | os.PathLike[str] | None) -> CodeVersion | None:
    """Return the git commit, branch, dirty flag and a hash of uncommitted changes.

    The hash covers ``git diff HEAD --binary`` (staged and unstaged changes to
    tracked files) and the path and content hash of each untracked file that
    git does not ignore. None when ``folder`` (default: the current one) is not
    in a git work tree. The answer is :func:`read_code_version`'s; once read,
    it is kept while no file git looks at changes, so a later call reads only
    file stats (on Linux, the work tree's inotify queue for its folders) and
    starts no process.
    """
    cwd = Path(folder) if folder is not None else Path.cwd()
    try:
        key = (str(cwd.resolve()), _git_env())
    except OSError:
        return read_code_version(cwd)
    with _CODE_LOCK:
        kept = _CODE.get(key)
        if kept is not None:
            if kept.unchanged():
                return kept.answer
            kept.close()
        _CODE.pop(key, None)
        since = time.time_ns() - int(RACY_S * 1e9)
        answer, paths, watched_tree = _read_watched(cwd)
        if paths is not None:
            notify, left, newest = (
                _notify(*watched_tree) if watched_tree is not None else (None, [], 0)
            )
            watched = _Watched([*paths, *left], answer, notify, newest)
            if watched.racy(since):
                watched.close()
            else:
                _CODE[key] = watched
        return answer


_Tree = tuple[Path, list[Path], list[Path]]


def _read_watched(cwd: Path) -> tuple[CodeVersion | None, list[Path] | None, _Tree | None]:
    """Return the code version of ``cwd`` and the paths whose stats say it still holds.

    The paths come in two parts: those to stat, and the work tree (its top, its folders
    and its files), which inotify may watch instead. None for the paths when the answer
    cannot be watched by stats: a repository with submodules or other gitlinks (their
    state is read by git inside them), or refs kept in a reftable.
    """
    resolved = cwd.resolve()
    above = [resolved, *resolved.parents]
    dirs = _git(
        [
            "rev-parse",
            "--path-format=absolute",
            "--show-toplevel",
            "--git-dir",
            "--git-common-dir",
            "--git-path",
            "index",  # GIT_INDEX_FILE, when set
            "--git-path",
            "info/attributes",
            "--git-path",
            "info/grafts",
        ],
        cwd,
    )
    if dirs is None:
        return read_code_version(cwd), above, None
    lines = os.fsdecode(dirs).splitlines()
    if len(lines) != 6:
        return read_code_version(cwd), None, None
    root, gitdir, common, index, attributes, grafts = (Path(line) for line in lines)
    answer = _described(cwd, root)
    if (root / ".gitmodules").exists() or (common / "reftable").exists():
        return answer, None, None
    # A repository made between the folder and the top would take the folder over; one made
    # above the top would not, so folders above it (often busy, like /tmp) are not watched.
    inside = [folder for folder in above if folder == root or root in folder.parents]
    paths = [*inside, gitdir / "HEAD", index, gitdir / "config.worktree"]
    if (root / ".git").is_file():  # a linked worktree's pointer to its git folder
        paths.append(root / ".git")
    paths += [common / "config", common / "packed-refs", common / "info" / "exclude"]
    # Attributes change git's diff and status; replace refs and grafts change HEAD's tree.
    paths += [attributes, grafts, common / "refs" / "replace"]
    if answer.branch:
        paths.append(common / "refs" / "heads" / answer.branch)
    paths += _config_files(cwd, root)
    # Tracked ("H") and untracked ("?") files in one listing, then the ignored folders.
    files = _git(["ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard"], root)
    ignored = _git(
        ["ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"], root
    )
    if files is None or ignored is None:
        return answer, None, None
    listed = [n[2:] for n in files.split(b"\0") if n]
    untracked = [n[2:] for n in files.split(b"\0") if n.startswith(b"? ")]
    # A nested repository is listed as a folder: its own entries are not the tree's, so
    # it is watched by its stat, as a file is.
    paths += [root / os.fsdecode(name) for name in listed if name.endswith(b"/")]
    tree_files = [root / os.fsdecode(name) for name in listed if not name.endswith(b"/")]
    # An untracked link's target is hashed into the answer: each link on the way is stated.
    for name in untracked:
        paths += _link_hops(root / os.fsdecode(name))
    # A folder is skipped only when a rule ignores it; one listed because every file in it
    # is ignored is still read by git, and a new file there may count.
    listed_dirs = [os.fsdecode(n.rstrip(b"/")) for n in ignored.split(b"\0") if n.endswith(b"/")]
    skip = _ignored_by_rule(root, listed_dirs)
    skip |= {os.fsdecode(n.rstrip(b"/")) for n in listed if n.endswith(b"/")}  # nested repos
    tree_dirs = _tree_dirs(root, skip)
    # A tracked name that is a folder is a gitlink (a repository added without .gitmodules):
    # its state is its own HEAD's, so, as with submodules, the answer is not kept.
    walked = set(tree_dirs)
    if any(path in walked for path in tree_files):
        return answer, None, None
    return answer, paths, (root, tree_dirs, tree_files)


def _link_hops(path: Path) -> list[Path]:
    """Return each path a symbolic link leads through (none for a file that is not a link)."""
    hops: list[Path] = []
    here = os.fspath(path)
    for _ in range(40):  # as the kernel: at most 40 links followed
        try:
            target = os.readlink(here)
        except OSError:
            break
        here = os.path.join(os.path.dirname(here), target)
        hops.append(Path(here))
    return hops


def _ignored_by_rule(root: Path, names: list[str]) -> set[str]:
    """Return those of ``names`` (folders relative to ``root``) that an ignore rule matches.

    A name starting with ':' would be read as pathspec magic (':(top)build' as 'build'), so
    such a folder is never skipped.
    """
    names = [name for name in names if not name.startswith(":")]
    if not names:
        return set()
    try:
        done = subprocess.run(
            ["git", "check-ignore", "-z", "--stdin"],
            cwd=root,
            input=b"".join(os.fsencode(name) + b"\0" for name in names),
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return set()  # nothing skipped: every folder is watched
    if done.returncode not in (0, 1):  # 1: none is ignored
        return set()
    return {os.fsdecode(n) for n in done.stdout.split(b"\0") if n}


def _config_files(cwd: Path, root: Path) -> list[Path]:
    """Return git's config and ignore and attributes files (present or not), and included ones.

    Every config file git read (its origin) and every file an ``include`` or ``includeIf``
    names (read or not: its condition or its existence may change) is returned.
    """
    home = Path(os.environ.get("HOME") or Path.home())
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    found = [Path("/etc/gitconfig"), home / ".gitconfig", xdg / "git" / "config"]
    found += [xdg / "git" / "ignore", xdg / "git" / "attributes", Path("/etc/gitattributes")]
    found += [
        Path(os.environ[n]) for n in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM") if n in os.environ
    ]
    listing = _git(["config", "-z", "--list", "--show-origin"], cwd) or b""
    items = listing.split(b"\0")
    for origin, entry in zip(items[::2], items[1::2], strict=False):
        key, _, value = os.fsdecode(entry).partition("\n")
        key = key.lower()
        where: Path | None = None
        if origin.startswith(b"file:"):
            where = cwd / os.fsdecode(origin[len(b"file:") :])
            found.append(where)
        if key in ("core.excludesfile", "core.attributesfile") and value:
            found.append(root / os.path.expanduser(value))
        elif key.startswith("include") and key.endswith(".path") and value:
            base = where.parent if where is not None else cwd
            found.append(base / os.path.expanduser(value))
    return list(dict.fromkeys(found))  # each file once: the listing names it per entry


def _tree_dirs(root: Path, skip: set[str]) -> list[Path]:
    """Return every directory of the work tree at ``root`` except ``.git`` and ``skip``."""
    found: list[Path] = []
    for here, dirs, _ in os.walk(root, followlinks=False):
        base = Path(here)
        found.append(base)
        rel = base.relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if d != ".git" and prefix + d not in skip]
    return found


def _accelerators() -> list[str]:
    """Name the accelerators of frameworks already imported (never imports one itself)."""
    found: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            cuda = torch.cuda
            if cuda.is_available():
                found += [f"cuda:{i} {cuda.get_device_name(i)}" for i in range(cuda.device_count())]
            mps = getattr(getattr(torch, "backends", None), "mps", None)
            if mps is not None and mps.is_available():
                found.append("mps")
        except Exception:  # a broken driver must not break training
            pass
    jax = sys.modules.get("jax")
    if jax is not None:
        with contextlib.suppress(Exception):
            found += [
                f"jax:{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".rstrip()
                for d in jax.devices()
                if d.platform != "cpu"
            ]
    return found


@functools.cache
def _interpreter() -> tuple[str, str]:
    """Return the Python and the platform, which cannot change within a process."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return python, platform.platform()


_ENV_LOCK = threading.Lock()
_PACKAGES: dict[tuple[str, ...], tuple[list[_Stat], dict[str, str]]] = {}


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_fresh_locks)


def _read_packages() -> dict[str, str]:
    """Return every installed distribution's name (lower case) and version, sorted."""
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.name  # None for a broken installation's metadata
        if name:
            packages.setdefault(str(name).lower(), str(dist.version))
    return dict(sorted(packages.items()))


def _kept_packages() -> dict[str, str] | None:
    """Return the kept packages if ``sys.path`` and its folders are unchanged, else None.

    Never reads the packages, nor waits for a capture under way.
    """
    key = tuple(sys.path)
    if not _ENV_LOCK.acquire(blocking=False):
        return None
    try:
        kept = _PACKAGES.get(key)
        if kept is None or kept[0] != [_stat(Path(entry or ".")) for entry in key]:
            return None
        return dict(kept[1])
    finally:
        _ENV_LOCK.release()


def installed_packages() -> dict[str, str]:
    """Return the installed packages, read again only when a folder of ``sys.path`` changed.

    Installing or removing a package adds or removes its ``.dist-info``
    folder, which changes the stat of the folder it is in.
    """
    key = tuple(sys.path)
    folders = [Path(entry or ".") for entry in key]
    with _ENV_LOCK:
        kept = _PACKAGES.get(key)
        stats = [_stat(folder) for folder in folders]
        if kept is not None and kept[0] == stats:
            return dict(kept[1])
        since = time.time_ns() - int(RACY_S * 1e9)
        packages = _read_packages()
        if all(st is None or max(st[3], st[4]) < since for st in stats):
            _PACKAGES.clear()
            _PACKAGES[key] = (stats, packages)
        return dict(packages)


def read_environment() -> Environment:
    """Return the environment as read now, with no cache: the definition of what is recorded."""
    return Environment(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=platform.platform(),
        packages=_read_packages(),
        accelerators=_accelerators(),
    )


def environment() -> Environment:
    """Return Python, platform, installed packages (name to version) and accelerators.

    Python and the platform are read once per process, the packages again only
    when ``sys.path`` or one of its folders changed, and the accelerators
    every time (a framework imported since may name one).
    """
    python, system = _interpreter()
    frameworks = _frameworks()
    found = Environment(
        python=python,
        platform=system,
        packages=installed_packages(),
        accelerators=_accelerators(),
    )
    _ACCELERATORS_ASKED.add(frameworks)
    return found


#: The sets of accelerator frameworks imported when the accelerators were last named: once
#: named, asking again is quick (the framework has found its devices).
_ACCELERATORS_ASKED: set[frozenset[str]] = set()


def _frameworks() -> frozenset[str]:
    return frozenset(name for name in ("torch", "jax") if name in sys.modules)


def _kept_capture(
    folder: str | os.PathLike[str] | None,
) -> tuple[CodeVersion | None, Environment] | None:
    """Return the code version and environment from what is kept, if it all still holds.

    Never starts a process, reads the installed packages or waits on a lock: anything
    that would (nothing kept, a change, another capture under way, a framework imported
    since the accelerators were last named) returns None, and the capture runs in the
    background as it did. What it returns is exactly what :func:`code_version` and
    :func:`environment` return.
    """
    if _frameworks() not in _ACCELERATORS_ASKED:
        return None
    cwd = Path(folder) if folder is not None else Path.cwd()
    try:
        key = (str(cwd.resolve()), _git_env())
    except OSError:
        return None
    if not _CODE_LOCK.acquire(blocking=False):
        return None
    try:
        kept = _CODE.get(key)
        if kept is None or not kept.unchanged():
            return None
        code = kept.answer
    finally:
        _CODE_LOCK.release()
    packages = _kept_packages()
    if packages is None:
        return None
    python, system = _interpreter()
    return code, Environment(
        python=python, platform=system, packages=packages, accelerators=_accelerators()
    )


def start_capture(
    folder: str | os.PathLike[str] | None,
) -> Future[tuple[CodeVersion | None, Environment]]:
    """Start reading the code version of ``folder`` (default: cwd) and the environment.

    When everything is kept and still holds (the common case after the first capture
    of a process) the answer is taken at once, here: file stats and one read of the
    inotify queue, with no thread to wait for. Otherwise a thread of its own per
    capture (not a shared pool), so a process that forks after decorating a function
    never waits on a pool thread it lost.
    """
    future: Future[tuple[CodeVersion | None, Environment]] = Future()
    kept = _kept_capture(folder)
    if kept is not None:
        future.set_running_or_notify_cancel()
        future.set_result(kept)
        return future

    def capture() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result((code_version(folder), environment()))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=capture, name="auditml-capture", daemon=True).start()
    return future
