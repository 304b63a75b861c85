"""Fingerprints: file and folder hashes, URIs, parameters, code version and environment."""

from __future__ import annotations

import hashlib
import math
import subprocess
from pathlib import Path

import pytest

from auditml import InvalidInputError
from auditml._internal.fingerprint import (
    BUFFER,
    artifact_ref,
    code_version,
    dataset_ref,
    encode_param,
    environment,
    folder_manifest,
    hash_file,
    start_capture,
)


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
