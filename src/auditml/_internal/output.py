"""Writing output files and folders whole or not at all, and never over the log or a key.

Every file auditml writes (reports, cards, checkpoints, bundles, keys, the
demo's files) goes through :func:`output_file` or :func:`output_folder`:

- the destination must not be a symbolic link (not even a dangling one), so
  nothing is ever written through a link;
- it must not be the log's database, its ``-wal``, ``-shm`` or ``-journal``,
  the log key or its ``.pub``/``.vkey``, compared by real path and by inode,
  nor any file that holds a SQLite database, journal or write-ahead log, a
  PEM private key or a ``keygen`` public key: those are refused even with
  ``force``;
- an existing regular file is replaced only with ``force`` (``--force``);
- the data goes to a temporary file beside the destination, is synced, and is
  renamed into place: the destination holds the old bytes or all the new ones.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from auditml.errors import InvalidInputError

__all__ = [
    "check_folder",
    "check_output",
    "log_files",
    "output_file",
    "output_folder",
    "write_output",
]

#: The files SQLite keeps beside a database: they are the database too.
SQLITE_SIDECARS = ("", "-wal", "-shm", "-journal")

#: What the first bytes of a file say it is, for the files never to overwrite.
_SQLITE = b"SQLite format 3\x00"
_WAL = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
_JOURNAL = b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7"
_SNIFF_JSON = 1 << 16  # a public key file is a few hundred bytes; read no more


def log_files(url: str | None, key: Path | None) -> list[Path]:
    """Return the files a log lives in: its SQLite database with its sidecars, and its key."""
    from auditml.store._backends import SQLiteBackend, backend_for

    found: list[Path] = []
    if url is not None:
        backend = backend_for(url)
        if isinstance(backend, SQLiteBackend) and backend.path is not None:
            found += [Path(backend.path + suffix) for suffix in SQLITE_SIDECARS]
    if key is not None:
        found += [key, *(key.with_name(key.name + s) for s in (".pub", ".vkey"))]
        found += [key.with_suffix(s) for s in (".pub", ".vkey")]
    return found


def _same(a: Path, b: Path) -> bool:
    """Return whether ``a`` and ``b`` name one file, by real path or by inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sniff(path: Path) -> str | None:
    """Return what an existing file is when it must never be overwritten, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            head = f.read(_SNIFF_JSON)
        except OSError:
            return None
    if head.startswith(_SQLITE):
        return "a SQLite database"
    if head[:4] in _WAL:
        return "a SQLite write-ahead log"
    if head.startswith(_JOURNAL):
        return "a SQLite journal"
    first = head.lstrip().split(b"\n", 1)[0].strip()
    if first.startswith(b"-----BEGIN") and first.endswith(b"PRIVATE KEY-----"):
        return "a private key"
    if head.lstrip().startswith(b"{") and _is_public_key(head):
        return "a public key file"
    return None


def _is_public_key(text: bytes) -> bool:
    """Return whether ``text`` is a ``keygen`` public key file: a JSON object with its key."""
    try:
        found = json.loads(text)
    except ValueError:
        return False
    return isinstance(found, dict) and {"signer", "public_key"} <= found.keys()


def _refuse_link(target: Path) -> os.stat_result | None:
    """Return the destination's own status (None when it is free); refuse a symbolic link."""
    try:
        st = target.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise InvalidInputError(
            f"{target} is a symbolic link; auditml never writes through a link: "
            "give the path of a regular file"
        )
    return st


def _refuse_protected(target: Path, protect: Iterable[Path], *, exists: bool) -> None:
    """Refuse a destination that is one of the log's files or holds a database or a key."""
    for path in protect:
        if _same(target, path):
            raise InvalidInputError(
                f"{target} is the log's own file {path}; auditml never overwrites it: "
                "choose another file name"
            )
    what = _sniff(target) if exists else None
    if what is not None:
        raise InvalidInputError(
            f"{target} is {what}; auditml never overwrites it, even with --force: "
            "choose another file name"
        )


def check_output(
    out: str | os.PathLike[str], *, force: bool = False, protect: Iterable[Path] = ()
) -> Path:
    """Return ``out`` as a path if a file may be written there, else raise saying why not.

    Run it before slow work, so a refused destination costs nothing;
    :func:`output_file` runs it again just before the file is put in place.
    """
    target = Path(out)
    st = _refuse_link(target)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InvalidInputError(f"{target} is a folder; give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{target} is not a regular file; give another file name")
    if not target.parent.is_dir():
        raise InvalidInputError(f"cannot write {target}: the folder {target.parent} does not exist")
    _refuse_protected(target, protect, exists=st is not None)
    if st is not None and not force:
        raise InvalidInputError(f"{target} already exists; pass --force to replace it")
    return target


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _put(tmp: str, target: Path, *, force: bool) -> None:
    """Move the finished temporary file to ``target``; without ``force``, never over a file."""
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if anything appeared at target meanwhile
    except FileExistsError:
        raise InvalidInputError(f"{target} already exists; pass --force to replace it") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        os.replace(tmp, target)  # a file system without hard links: checked just before
        return
    os.unlink(tmp)


@contextmanager
def output_file(
    out: str | os.PathLike[str],
    *,
    force: bool = False,
    protect: Iterable[Path] = (),
    mode: int | None = None,
) -> Iterator[IO[bytes]]:
    """Yield a binary file whose bytes appear at ``out`` whole when the block ends.

    ``mode`` sets the new file's permissions (default: those of the file it
    replaces, else 0666 less the umask). If the block raises, nothing is left.
    """
    protect = list(protect)
    target = check_output(out, force=force, protect=protect)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
                if mode is None:
                    try:
                        mode = stat.S_IMODE(target.lstat().st_mode)
                    except FileNotFoundError:
                        mode = 0o666 & ~_umask()
                os.fchmod(f.fileno(), mode)
            except OSError as exc:
                raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
        check_output(target, force=force, protect=protect)
        try:
            _put(tmp, target, force=force)
        except OSError as exc:
            raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
        _sync_folder(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(
    out: str | os.PathLike[str],
    data: bytes,
    *,
    force: bool = False,
    protect: Iterable[Path] = (),
    mode: int | None = None,
) -> Path:
    """Write ``data`` to ``out`` whole or not at all, or raise a sentence saying why not."""
    with output_file(out, force=force, protect=protect, mode=mode) as f:
        f.write(data)
    return Path(out)


def check_folder(out: str | os.PathLike[str], *, protect: Iterable[Path] = ()) -> Path:
    """Return ``out`` as a path if a new folder may be written there, else raise saying why not."""
    target = Path(out)
    st = _refuse_link(target)
    _refuse_protected(target, protect, exists=st is not None)
    if st is not None and (not stat.S_ISDIR(st.st_mode) or any(target.iterdir())):
        raise InvalidInputError(f"{target} already exists; give a new path")
    if not target.parent.is_dir():
        raise InvalidInputError(f"cannot write {target}: the folder {target.parent} does not exist")
    return target


@contextmanager
def output_folder(out: str | os.PathLike[str], *, protect: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a new empty folder whose files appear at ``out`` all together when the block ends.

    ``out`` must be free or an empty folder (not a link); a folder that holds
    anything is never replaced. If the block raises, nothing is left.
    """
    target = check_folder(out, protect=protect)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        yield tmp
        try:
            for child in tmp.iterdir():
                if child.is_file() and not child.is_symlink():
                    fd = os.open(child, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            os.chmod(tmp, 0o777 & ~_umask())
            os.replace(tmp, target)  # over an empty folder only: anything else fails here
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise InvalidInputError(f"{target} already exists; give a new path") from None
            raise InvalidInputError(f"cannot write {target}: {exc.strerror or exc}") from None
        _sync_folder(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
