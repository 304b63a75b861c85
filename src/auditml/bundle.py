r"""Evidence bundles (docs/format.md section 5): write them, and verify them offline.

A bundle is a folder, or a ``.zip`` of the same files at its root:

- ``events.jsonl``: exactly ``JCS(event)`` then ``\\n`` per event, from seq 0;
- ``checkpoint``: the signed checkpoint for the size the bundle covers;
- ``log.vkey``: the log's verifier key, one line;
- ``proofs.jsonl`` (optional): inclusion proofs, one JSON object per line.

:func:`verify_parts` is the pure core: it takes the files' contents (the
events as an iterable of lines) and raises :class:`VerificationError` naming
the first line that fails. The same function checks a folder, a zip, or a
bundle carried inside a PDF.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from auditml._internal.infile import open_regular, read_regular
from auditml._internal.output import check_folder, check_output, output_file, output_folder
from auditml.core import merkle
from auditml.core.chain import ChainVerifier
from auditml.core.signing import Checkpoint, VerifierKey, open_checkpoint
from auditml.errors import AuditmlError, InvalidInputError, VerificationError

__all__ = [
    "CHECKPOINT",
    "EVENTS",
    "PROOFS",
    "VKEY",
    "BundleReport",
    "check_bundle_path",
    "read_bundle",
    "verify_bundle",
    "verify_parts",
    "write_bundle",
]

EVENTS = "events.jsonl"
CHECKPOINT = "checkpoint"
VKEY = "log.vkey"
PROOFS = "proofs.jsonl"
_CHUNK = 5000
_MAX_SMALL = 1 << 20  # checkpoint, key and proofs files are small; refuse a huge one


@dataclass(frozen=True, slots=True)
class BundleReport:
    """What a bundle proved: the log, its size and root, the key, and the proofs checked."""

    origin: str
    size: int
    root: str
    vkey: str
    proofs: int
    checkpoint: str

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON values."""
        return {
            "ok": True,
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "vkey": self.vkey,
            "proofs": self.proofs,
        }


# -- writing ---------------------------------------------------------------------------


def write_bundle(
    out: str | os.PathLike[str],
    lines: Iterable[bytes],
    *,
    checkpoint: str,
    vkey: str,
    proofs: Iterable[dict[str, Any]] = (),
    force: bool = False,
    protect: Iterable[Path] = (),
) -> Path:
    """Write a bundle to ``out``: a ``.zip`` when the name ends so, else a new folder.

    The bundle appears whole or not at all: it is written beside ``out`` under
    a temporary name and renamed into place. An existing ``out`` is refused,
    except an empty folder, or a ``.zip`` file with ``force``; so are links and
    the ``protect`` files (see :mod:`auditml._internal.output`).
    """
    target = check_bundle_path(out, force=force, protect=protect)
    proof_lines = b"".join(
        json.dumps(p, separators=(",", ":"), sort_keys=True).encode() + b"\n" for p in proofs
    )
    small = {CHECKPOINT: checkpoint.encode(), VKEY: (vkey.strip() + "\n").encode()}
    if proof_lines:
        small[PROOFS] = proof_lines
    if target.suffix.lower() == ".zip":
        with (
            output_file(target, force=force, protect=protect) as raw,
            zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf,
        ):
            with zf.open(EVENTS, "w", force_zip64=True) as f:
                _write_lines(f, lines)
            for name, data in small.items():
                zf.writestr(name, data)
        return target
    with output_folder(target, protect=protect) as folder:  # new and ours: no links in it
        with (folder / EVENTS).open("wb") as f:
            _write_lines(f, lines)
        for name, data in small.items():
            (folder / name).write_bytes(data)
    return target


def check_bundle_path(
    out: str | os.PathLike[str], *, force: bool = False, protect: Iterable[Path] = ()
) -> Path:
    """Return ``out`` as a path if a bundle may be written there, else raise saying why not."""
    if Path(out).suffix.lower() == ".zip":
        return check_output(out, force=force, protect=protect)
    return check_folder(out, protect=protect)


def _write_lines(f: IO[bytes], lines: Iterable[bytes]) -> None:
    for line in lines:
        f.write(line)
        f.write(b"\n")


# -- reading -------------------------------------------------------------------------------


@dataclass
class _Files:
    """A bundle's files, opened from a folder or a zip."""

    checkpoint: str
    vkey: str
    proofs: list[bytes] | None
    open_events: Any  # () -> IO[bytes]


def read_bundle(path: str | os.PathLike[str]) -> _Files:
    """Open a bundle folder or zip, or raise a sentence naming what is missing."""
    source = Path(path)
    if source.is_dir():

        def open_member(name: str) -> IO[bytes] | None:
            """Open a file of the folder, refusing a pipe or device in its place; None if none."""
            try:
                return open_regular(source / name, f"bundle's {name}")
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise InvalidInputError(f"cannot read {source / name}: {exc.strerror}") from None

        def read_small(name: str, required: bool = True) -> bytes | None:
            f = open_member(name)
            if f is None:
                if required:
                    raise InvalidInputError(f"{source} is not a bundle: it has no {name}")
                return None
            with f:
                if os.fstat(f.fileno()).st_size > _MAX_SMALL:
                    raise VerificationError(f"{name} is larger than 1 MiB", kind="format")
                return f.read(_MAX_SMALL + 1)

        def open_events() -> IO[bytes]:
            f = open_member(EVENTS)
            if f is None:
                raise InvalidInputError(f"{source} is not a bundle: it has no {EVENTS}")
            return f

        open_events().close()  # a folder without its events is no bundle: say so first
        return _files(read_small, open_events)
    try:
        raw = open_regular(source, "bundle (a folder or a .zip file)")
    except FileNotFoundError:
        raise InvalidInputError(f"no bundle at {source}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read the bundle {source}: {exc.strerror}") from None
    try:
        zf = zipfile.ZipFile(raw)
    except (zipfile.BadZipFile, OSError) as exc:
        raw.close()
        raise InvalidInputError(
            f"{source} is neither a bundle folder nor a readable zip ({exc})"
        ) from None
    names = set(zf.namelist())

    def read_member(name: str, required: bool = True) -> bytes | None:
        if name not in names:
            if required:
                raise InvalidInputError(f"{source} is not a bundle: it has no {name}")
            return None
        if zf.getinfo(name).file_size > _MAX_SMALL:
            raise VerificationError(f"{name} is larger than 1 MiB", kind="format")
        return zf.read(name)

    if EVENTS not in names:
        raise InvalidInputError(f"{source} is not a bundle: it has no {EVENTS}")
    return _files(read_member, lambda: zf.open(EVENTS))


def _files(read: Any, open_events: Any) -> _Files:
    def text(name: str) -> str:
        data: bytes = read(name)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationError(f"{name} is not UTF-8 text", kind="format") from None

    proofs_raw: bytes | None = read(PROOFS, False)
    proofs = None if proofs_raw is None else proofs_raw.splitlines()
    return _Files(text(CHECKPOINT), text(VKEY), proofs, open_events)


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Yield the lines of ``events.jsonl`` without their newline; refuse a missing last newline."""
    pending = b""
    for block in iter(lambda: stream.read(1 << 20), b""):
        parts = (pending + block).split(b"\n")
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending
        yield b"\0missing-newline"


def verify_bundle(path: str | os.PathLike[str], vkey: str | None = None) -> BundleReport:
    """Verify a bundle folder or zip offline; ``vkey`` pins the verifier key expected."""
    files = read_bundle(path)
    with files.open_events() as stream:
        return verify_parts(_lines(stream), files.checkpoint, files.vkey, files.proofs, pinned=vkey)


def _pinned(text: str | None) -> VerifierKey | None:
    if text is None:
        return None
    candidate = Path(text)
    if "+" not in text and os.path.lexists(candidate):  # a pipe or device there is refused
        try:
            text = read_regular(candidate, "verifier key file", _MAX_SMALL).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read the verifier key file {text}: {exc}") from None
    return VerifierKey.parse(text)


def verify_parts(
    lines: Iterable[bytes],
    checkpoint: str,
    vkey: str,
    proofs: Iterable[bytes] | None = None,
    *,
    pinned: str | None = None,
) -> BundleReport:
    """Verify a bundle's contents; raise VerificationError naming the first line that fails.

    Checks, in docs/format.md's words: every line parses (as canonical JCS of a
    valid event), ``seq`` runs ``0…n-1``, every ``prev`` is the hash of the
    line before, every ``log`` equals the checkpoint origin, the Merkle root of
    the lines equals the checkpoint root, the size equals the checkpoint size,
    and the checkpoint signature verifies with ``log.vkey`` (which must be the
    pinned key, when one is given). Every inclusion proof must verify too.
    """
    try:
        key = VerifierKey.parse(vkey)
    except InvalidInputError as exc:
        raise VerificationError(f"{VKEY}: {exc}", kind="format") from None
    want = _pinned(pinned)
    if want is not None and want != key:
        raise VerificationError(
            f"the bundle was signed by the key {key}, not by the key you pinned ({want})",
            kind="signature",
        )
    try:
        cp = open_checkpoint(checkpoint, key)
    except VerificationError as exc:
        raise VerificationError(f"{CHECKPOINT}: {exc}", kind=exc.kind) from None
    wanted = _read_proofs(proofs, cp)
    leaves: dict[int, bytes] = {}
    verifier = ChainVerifier(cp.origin, deep=True, keep_nodes=False)
    count = 0
    chunk: list[tuple[int | None, bytes | None, bytes]] = []
    for line in lines:
        if line == b"\0missing-newline":
            raise VerificationError(
                f"{EVENTS} line {count}: it does not end with a newline", kind="format"
            )
        if count >= cp.size:
            _feed(verifier, chunk)  # a line inserted earlier is named there, not here
            raise VerificationError(
                f"{EVENTS} line {count + 1}: the checkpoint covers {cp.size} events, so this "
                "line was added after it was signed",
                kind="format",
            )
        if not line:
            raise VerificationError(f"{EVENTS} line {count + 1} is empty", kind="format")
        if count in wanted:
            leaves[count] = merkle.leaf_hash(line)
        chunk.append((None, None, line))
        count += 1
        if len(chunk) >= _CHUNK:
            _feed(verifier, chunk)
            chunk = []
    _feed(verifier, chunk)
    if count < cp.size:
        raise VerificationError(
            f"{EVENTS} ends after line {count}, but the checkpoint covers {cp.size} events: "
            "lines were removed",
            kind="format",
        )
    state = verifier.state()
    if state.root != cp.root:
        raise VerificationError(
            f"{EVENTS} line {count}: the Merkle root of the {count} lines is "
            f"{state.root.hex()}, but the checkpoint signed {cp.root.hex()}, so this last line "
            "was changed (a change to any earlier line breaks the next line's link)",
            kind="format",
        )
    for index, proof in wanted.items():
        if leaves.get(index) != bytes.fromhex(proof["leaf_hash"]):
            raise VerificationError(
                f"{PROOFS}: the proof for event {index} names a leaf hash that is not the hash of "
                f"line {index + 1} of {EVENTS}",
                kind="proof",
            )
    return BundleReport(cp.origin, cp.size, cp.root.hex(), str(key), len(wanted), cp.note)


def _feed(verifier: ChainVerifier, chunk: list[tuple[int | None, bytes | None, bytes]]) -> None:
    try:
        verifier.feed(chunk)
    except VerificationError as exc:
        if exc.seq is None:
            raise VerificationError(f"{EVENTS}: {exc}", kind=exc.kind) from None
        line, text = exc.seq + 1, str(exc)
        if exc.kind == "link" and line > 1:
            # A bundle has no stored hashes, so a changed line shows as the next line's link.
            text = (
                f"its prev is not the hash of line {line - 1}: line {line - 1} was changed, "
                "or lines before this one were removed, added or reordered"
            )
        raise VerificationError(f"{EVENTS} line {line}: {text}", kind=exc.kind) from None


def _read_proofs(proofs: Iterable[bytes] | None, cp: Checkpoint) -> dict[int, dict[str, Any]]:
    """Parse and verify every inclusion proof against the checkpoint; return them by index."""
    found: dict[int, dict[str, Any]] = {}
    for number, raw in enumerate(proofs or (), start=1):
        if not raw.strip():
            continue
        where = f"{PROOFS} line {number}"
        try:
            proof = json.loads(raw)
            if proof.get("type") != "inclusion":
                raise ValueError("its type is not 'inclusion'")
            index, size = int(proof["leaf_index"]), int(proof["tree_size"])
            leaf = bytes.fromhex(proof["leaf_hash"])
            root = bytes.fromhex(proof["root"])
            path = [bytes.fromhex(h) for h in proof["proof"]]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise VerificationError(
                f"{where} is not an inclusion proof: {exc}", kind="format"
            ) from None
        if proof.get("log") != cp.origin or size != cp.size or root != cp.root:
            raise VerificationError(
                f"{where}: the proof is not for the checkpointed tree ({cp.origin}, size "
                f"{cp.size})",
                kind="proof",
            )
        try:
            merkle.verify_inclusion(leaf, index, size, path, root)
        except AuditmlError as exc:
            raise VerificationError(f"{where}: {exc}", kind="proof") from None
        found[index] = proof
    return found


def leaf_hex(line: bytes) -> str:
    """Return the leaf hash (hex) of one line of ``events.jsonl``."""
    return hashlib.sha256(b"\0" + line).hexdigest()


def as_stream(data: bytes) -> IO[bytes]:
    """Return bytes as a readable stream (for bundles carried in memory, e.g. in a PDF)."""
    return io.BytesIO(data)
