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
training call should not wait for.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from auditml.core.events import ArtifactRef, CodeVersion, DatasetRef, Environment
from auditml.core.uri import scrub_uri
from auditml.errors import InvalidInputError

__all__ = [
    "BUFFER",
    "artifact_ref",
    "code_version",
    "dataset_ref",
    "encode_param",
    "environment",
    "folder_manifest",
    "hash_file",
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


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return the SHA-256 hex digest and size of a file, streamed in large blocks.

    A large file is read by a helper thread into a ring of buffers while this
    thread hashes the one before (both release the GIL), so reading costs no
    hashing time and the file hashes at the speed of SHA-256 itself.
    """
    with open(path, "rb", buffering=0) as f:
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
        digest, size = hash_file(path)
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
        digest, size = hash_file(path)
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
        raw = path.read_bytes()
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
    """Run git in ``cwd``; return its stdout, or None when git fails or is absent."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version(folder: str | os.PathLike[str] | None) -> CodeVersion | None:
    """Return the git commit, branch, dirty flag and a hash of uncommitted changes.

    The hash covers ``git diff HEAD --binary`` (staged and unstaged changes to
    tracked files) and the path and content hash of each untracked file that
    git does not ignore. None when ``folder`` (default: the current one) is not
    in a git work tree.
    """
    cwd = Path(folder) if folder is not None else Path.cwd()
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    if top is None:
        return None
    commit = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd)
    branch = _git(["symbolic-ref", "--short", "-q", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=all"], cwd) or b""
    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    dirty = bool(status.strip())
    diff_sha: str | None = None
    if dirty:
        digest = hashlib.sha256()
        digest.update(_git(["diff", "HEAD", "--binary"], cwd) or b"")
        root = Path(top.decode().strip())
        listed = _git(["ls-files", "--others", "--exclude-standard", "-z"], cwd) or b""
        for name in sorted(n for n in listed.split(b"\0") if n):
            digest.update(b"\0untracked\0" + name + b"\0")
            try:
                digest.update(hash_file(root / os.fsdecode(name))[0].encode())
            except OSError:
                digest.update(b"unreadable")
        diff_sha = digest.hexdigest()
    return CodeVersion(
        commit=commit.decode().strip() if commit else None,
        branch=branch.decode().strip() if branch else None,
        dirty=dirty,
        diff_sha256=diff_sha,
        repository=scrub_uri(remote.decode().strip())[0] if remote else None,
    )


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


def environment() -> Environment:
    """Return Python, platform, installed packages (name to version) and accelerators."""
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.name  # None for a broken installation's metadata
        if name:
            packages.setdefault(str(name).lower(), str(dist.version))
    return Environment(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=platform.platform(),
        packages=dict(sorted(packages.items())),
        accelerators=_accelerators(),
    )


def start_capture(
    folder: str | os.PathLike[str] | None,
) -> Future[tuple[CodeVersion | None, Environment]]:
    """Start reading the code version of ``folder`` (default: cwd) and the environment.

    A thread of its own per capture (not a shared pool), so a process that
    forks after decorating a function never waits on a pool thread it lost.
    """
    future: Future[tuple[CodeVersion | None, Environment]] = Future()

    def capture() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result((code_version(folder), environment()))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=capture, name="auditml-capture", daemon=True).start()
    return future
