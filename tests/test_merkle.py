"""Tests of core.merkle: RFC 9162 roots, compact ranges, and inclusion and consistency proofs."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from auditml.core import merkle
from auditml.core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    SubRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_root,
    root_at,
    root_of,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from auditml.errors import ProofError, VerificationError
from tests import rfc9162_reference as rfc
from tests.vector_files import require_vectors

T = TypeVar("T")

# --------------------------------------------------------------------------- independent reference
# A direct transcription of RFC 9162 section 2.1, kept apart from the library:
# recursive, over raw entries; hashing and the step-by-step verifiers are in
# tests/rfc9162_reference.py.


ref_leaf = rfc.leaf_hash
ref_node = rfc.node_hash
ref_mth = rfc.mth


def ref_k(n: int) -> int:
    """Return the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, d: Sequence[Any], mth: Callable[[Sequence[Any]], T]) -> list[T]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1, with the MTH function passed in."""
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k], mth), mth(d[k:])]
    return [*ref_path(m - k, d[k:], mth), mth(d[:k])]


def ref_subproof(m: int, d: Sequence[Any], b: bool, mth: Callable[[Sequence[Any]], T]) -> list[T]:
    """SUBPROOF(m, D[n], b) of RFC 9162 section 2.1.4.1, with the MTH function passed in."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = ref_k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b, mth), mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False, mth), mth(d[:k])]


def ref_proof(m: int, d: Sequence[Any], mth: Callable[[Sequence[Any]], T]) -> list[T]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1."""
    return ref_subproof(m, d, True, mth)


def span(d: Sequence[int]) -> tuple[int, int]:
    """Name the leaf range [first, last + 1) instead of hashing it: an MTH over indices."""
    return (d[0], d[-1] + 1)


@cache
def ref_path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges that PATH(index, D[size]) hashes, in proof order."""
    return ref_path(index, range(size), span)


@cache
def ref_proof_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Return the leaf ranges that PROOF(size1, D[size2]) hashes, in proof order."""
    return ref_proof(size1, range(size2), span)


def ref_root_from(known: dict[tuple[int, int], bytes], lo: int, hi: int) -> bytes | None:
    """Rebuild MTH of [lo, hi) from known subtree hashes, or None if a leaf is not covered."""
    if (lo, hi) in known:
        return known[(lo, hi)]
    if hi - lo <= 1:
        return None
    k = ref_k(hi - lo)
    left = ref_root_from(known, lo, lo + k)
    right = ref_root_from(known, lo + k, hi)
    return None if left is None or right is None else ref_node(left, right)


def ref_verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Accept as both references do: RFC 9162 section 2.1.3.2 step by step, and by ranges."""
    by_ranges = _ranges_verify_inclusion(leaf, index, size, proof, root)
    assert rfc.verify_inclusion(index, size, leaf, proof, root) is by_ranges
    return by_ranges


def _ranges_verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Accept exactly when the proof hashes, placed where PATH puts them, rebuild the root."""
    if not 0 <= index < size or len(leaf) != 32 or any(len(p) != 32 for p in proof):
        return False
    ranges = ref_path_ranges(index, size)
    if len(ranges) != len(proof):
        return False
    known = dict(zip(ranges, proof, strict=True))
    known[(index, index + 1)] = leaf
    return ref_root_from(known, 0, size) == root


def ref_verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """Accept as both references do: RFC 9162 section 2.1.4.2 step by step, and by ranges."""
    by_ranges = _ranges_verify_consistency(size1, size2, proof, root1, root2)
    assert rfc.verify_consistency(size1, size2, root1, root2, proof) is by_ranges
    return by_ranges


def _ranges_verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """Accept exactly when the proof hashes, placed where PROOF puts them, rebuild both roots."""
    if size1 == 0 or size1 > size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if any(len(p) != 32 for p in proof):
        return False
    ranges = ref_proof_ranges(size1, size2)
    if len(ranges) != len(proof):
        return False
    known = dict(zip(ranges, proof, strict=True))
    if size1 & (size1 - 1) == 0:
        known[(0, size1)] = root1
    return ref_root_from(known, 0, size1) == root1 and ref_root_from(known, 0, size2) == root2


# --------------------------------------------------------------------------- fixtures and helpers

# The RFC 9162 known answers of ../shared/vectors/README.md, kept so a bare checkout checks them.
KNOWN_ENTRIES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
KNOWN_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
KNOWN_LEAVES = [ref_leaf(e) for e in KNOWN_ENTRIES]

MAX_N = 72
ENTRIES = [f"event {i}".encode() for i in range(MAX_N)]
LEAVES = [ref_leaf(e) for e in ENTRIES]

Nodes = dict[tuple[int, int], bytes]


def perfect_nodes(leaves: Sequence[bytes]) -> Nodes:
    """Every perfect node (level, index) -> hash of a tree, level 0 being the leaves."""
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    level, height = list(leaves), 0
    while len(level) > 1:
        level = [ref_node(level[2 * j], level[2 * j + 1]) for j in range(len(level) // 2)]
        height += 1
        nodes.update(((height, j), h) for j, h in enumerate(level))
    return nodes


NODES = perfect_nodes(LEAVES)
KNOWN_NODES = perfect_nodes(KNOWN_LEAVES)


def getter(nodes: Nodes, size: int) -> Callable[[int, int], bytes]:
    """Return a get_node over `nodes` that fails the test if asked beyond `size` leaves."""

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"node ({level}, {index}) is beyond size {size}"
        return nodes[(level, index)]

    return get_node


def flip(data: bytes, bit: int) -> bytes:
    """Return `data` with one bit inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def inclusion_ok(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether verify_inclusion accepts (it must raise only ProofError, if anything)."""
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError:
        return False
    return True


def consistency_ok(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """Whether verify_consistency accepts (it must raise only ProofError, if anything)."""
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError:
        return False
    return True


OTHER = hashlib.sha256(b"not in the tree").digest()

# --------------------------------------------------------------------------- known answers


def test_hash_primitives() -> None:
    """leaf_hash, node_hash and EMPTY_ROOT are the RFC 9162 SHA-256 constructions."""
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == KNOWN_ROOTS[0]
    assert leaf_hash(b"") == KNOWN_ROOTS[1]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("n", range(9))
def test_known_roots_root_of(n: int) -> None:
    """root_of gives the published RFC 9162 root for the first n known leaves."""
    assert root_of([leaf_hash(e) for e in KNOWN_ENTRIES[:n]]) == KNOWN_ROOTS[n]


@pytest.mark.parametrize("n", range(9))
def test_known_roots_compact_range(n: int) -> None:
    """CompactRange reaches the published root by append, by one extend and by uneven extends."""
    appended = CompactRange()
    for h in KNOWN_LEAVES[:n]:
        appended.append(h)
    extended = CompactRange()
    extended.extend(KNOWN_LEAVES[:n])
    stepped = CompactRange()
    stepped.extend(KNOWN_LEAVES[: n // 3])
    stepped.extend(KNOWN_LEAVES[n // 3 : n])
    for cr in (appended, extended, stepped):
        assert cr.size == n
        assert cr.root() == KNOWN_ROOTS[n]


@pytest.mark.parametrize("n", range(9))
def test_known_roots_root_at(n: int) -> None:
    """root_at, from perfect nodes only, gives the published root for every prefix size."""
    assert root_at(n, getter(KNOWN_NODES, n)) == KNOWN_ROOTS[n]


def test_known_perfect_roots() -> None:
    """perfect_root gives the published roots of the power-of-two sizes."""
    for n in (1, 2, 4, 8):
        assert perfect_root(KNOWN_LEAVES[:n]) == KNOWN_ROOTS[n]


# --------------------------------------------------------------------------- published probes


def _probe_params(kind: str) -> list[Any]:
    """One parameter per probe file of rfc9162/<kind>."""
    folder = require_vectors("rfc9162") / kind
    files = sorted(folder.rglob("*.json"))
    return [
        pytest.param(f.relative_to(folder).as_posix(), id=f.relative_to(folder).as_posix())
        for f in files
    ]


def _b64(value: str) -> bytes:
    """Decode one standard-base64 hash of a probe."""
    return base64.b64decode(value, validate=True)


@pytest.mark.parametrize("name", _probe_params("inclusion"))
def test_inclusion_probes(name: str | None) -> None:
    """verify_inclusion succeeds on a published RFC 9162 probe exactly when wantErr is false."""
    folder = require_vectors("rfc9162") / "inclusion"
    assert name is not None, "vectors appeared after collection"
    probe = json.loads((folder / name).read_text())
    args = (
        _b64(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        [_b64(p) for p in probe["proof"] or []],
        _b64(probe["root"]),
    )
    assert inclusion_ok(*args) is not probe["wantErr"], probe["desc"]
    assert ref_verify_inclusion(*args) is not probe["wantErr"], probe["desc"]


@pytest.mark.parametrize("name", _probe_params("consistency"))
def test_consistency_probes(name: str | None) -> None:
    """verify_consistency succeeds on a published RFC 9162 probe exactly when wantErr is false."""
    folder = require_vectors("rfc9162") / "consistency"
    assert name is not None, "vectors appeared after collection"
    probe = json.loads((folder / name).read_text())
    args = (
        probe["size1"],
        probe["size2"],
        [_b64(p) for p in probe["proof"] or []],
        _b64(probe["root1"]),
        _b64(probe["root2"]),
    )
    assert consistency_ok(*args) is not probe["wantErr"], probe["desc"]
    assert ref_verify_consistency(*args) is not probe["wantErr"], probe["desc"]


def test_probe_count() -> None:
    """All 196 published RFC 9162 probes are found, so none is silently skipped."""
    folder = require_vectors("rfc9162")
    assert len(list(Path(folder).rglob("*.json"))) == 196


# --------------------------------------------------------------------------- reference agreement


@pytest.mark.parametrize("n", range(41))
def test_matches_reference_rfc(n: int) -> None:
    """For size n, roots and every PATH and PROOF equal the recursive RFC transcription."""
    entries = ENTRIES[:n]
    want_root = ref_mth(entries)
    get = getter(NODES, n)
    assert root_of(LEAVES[:n]) == want_root
    assert root_at(n, get) == want_root
    cr = CompactRange()
    cr.extend(LEAVES[:n])
    assert cr.root() == want_root
    for i in range(n):
        assert inclusion_proof(i, n, get) == ref_path(i, entries, ref_mth)
    for m in range(1, n + 1):
        assert consistency_proof(m, n, get) == ref_proof(m, entries, ref_mth)


# --------------------------------------------------------------------------- exhaustive proofs


@pytest.mark.parametrize("n", range(1, MAX_N - 1))
def test_inclusion_proofs_exhaustive(n: int) -> None:
    """Every leaf of a size-n tree proves, and every tampered proof, leaf, index or size is refused.

    A different size is accepted exactly when the RFC reference accepts it: an RFC 9162
    inclusion proof does not commit to the size when both sizes give the same path shape.
    """
    get = getter(NODES, n)
    root = root_at(n, get)
    for i in range(n):
        leaf = LEAVES[i]
        proof = inclusion_proof(i, n, get)
        verify_inclusion(leaf, i, n, proof, root)
        assert ref_verify_inclusion(leaf, i, n, proof, root)
        for j, p in enumerate(proof):  # one flipped bit anywhere is refused
            for bit in (255 * ((i + j) % 2), (7 * j + 3 * i + n) % 256):
                flipped = [*proof[:j], flip(p, bit), *proof[j + 1 :]]
                assert not inclusion_ok(leaf, i, n, flipped, root), (i, n, j, bit)
        for bit in (255 * (i % 2), (5 * i + n) % 256):
            assert not inclusion_ok(flip(leaf, bit), i, n, proof, root), (i, n, bit)
            assert not inclusion_ok(leaf, i, n, proof, flip(root, bit)), (i, n, bit)
        bad: list[tuple[bytes, int, int, list[bytes], bytes]] = []
        for j in range(len(proof)):
            bad.append((leaf, i, n, proof[:j] + proof[j + 1 :], root))
        for extra in (OTHER, EMPTY_ROOT, *proof[-1:]):
            bad.append((leaf, i, n, [*proof, extra], root))
            bad.append((leaf, i, n, [extra, *proof], root))
        for wrong in {i - 1, i + 1, i ^ 1, i ^ 2, n, n + 5} - {i, -1}:
            bad.append((leaf, wrong, n, proof, root))
        bad.append((LEAVES[i + 1], i, n, proof, root))
        bad.append((leaf[:31], i, n, proof, root))
        bad.append((leaf, i, n, proof, root[:31]))
        for args in bad:
            assert not inclusion_ok(*args), (i, n, args)
            assert not ref_verify_inclusion(*args), (i, n, args)
        for size in {n - 1, n + 1, 2 * n, n // 2} - {n}:
            args = (leaf, i, size, proof, root)
            assert inclusion_ok(*args) is ref_verify_inclusion(*args), (i, n, size)


@pytest.mark.parametrize("n", range(1, MAX_N - 1))
def test_consistency_proofs_exhaustive(n: int) -> None:
    """Every older size of a size-n tree proves, and every tampered proof, root or size is refused.

    Other sizes are accepted exactly when the RFC reference accepts them (the proof
    hashes then rebuild both given roots, so the sizes are not told apart).
    """
    get = getter(NODES, n)
    root2 = root_at(n, get)
    for m in range(1, n + 1):
        root1 = root_at(m, get)
        proof = consistency_proof(m, n, get)
        verify_consistency(m, n, proof, root1, root2)
        assert ref_verify_consistency(m, n, proof, root1, root2)
        for j, p in enumerate(proof):  # one flipped bit anywhere is refused
            for bit in (255 * ((m + j) % 2), (7 * j + 3 * m + n) % 256):
                flipped = [*proof[:j], flip(p, bit), *proof[j + 1 :]]
                assert not consistency_ok(m, n, flipped, root1, root2), (m, n, j, bit)
        for bit in (255 * (m % 2), (5 * m + n) % 256):
            assert not consistency_ok(m, n, proof, flip(root1, bit), root2), (m, n, bit)
            assert not consistency_ok(m, n, proof, root1, flip(root2, bit)), (m, n, bit)
        bad: list[tuple[int, int, list[bytes], bytes, bytes]] = []
        for j in range(len(proof)):
            bad.append((m, n, proof[:j] + proof[j + 1 :], root1, root2))
        for extra in (OTHER, EMPTY_ROOT, root1, *proof[-1:]):
            bad.append((m, n, [*proof, extra], root1, root2))
            bad.append((m, n, [extra, *proof], root1, root2))
        bad.append((0, n, proof, root1, root2))
        bad.append((n + 1, n, proof, root1, root2))
        if m < n:
            bad.append((m, n, proof, root2, root1))
            bad.append((m, n, proof, root1[:31], root2))
            bad.append((m, n, proof, root1, root2[:31]))
        for args in bad:
            assert not consistency_ok(*args), (m, n, args)
            assert not ref_verify_consistency(*args), (m, n, args)
        for size1, size2 in {(m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1), (m, 2 * n)}:
            if (size1, size2) != (m, n):
                args = (size1, size2, proof, root1, root2)
                assert consistency_ok(*args) is ref_verify_consistency(*args), (m, n, args)


def test_size_is_not_bound_when_the_shape_matches() -> None:
    """As RFC 9162 specifies, leaf 0 of size 5 proves under size 6 too (same path shape)."""
    get = getter(NODES, 5)
    proof = inclusion_proof(0, 5, get)
    verify_inclusion(LEAVES[0], 0, 6, proof, root_at(5, get))
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[0], 0, 9, proof, root_at(5, get))


# --------------------------------------------------------------------------- refusals


def test_proof_generation_refusals() -> None:
    """Proof generation refuses an index beyond the size, size1 of 0 and size1 above size2."""
    get = getter(NODES, 8)
    for index, size in ((0, 0), (8, 8), (9, 8), (-1, 8)):
        with pytest.raises(ProofError):
            inclusion_proof(index, size, get)
    for size1, size2 in ((0, 0), (0, 8), (9, 8), (-1, 8)):
        with pytest.raises(ProofError):
            consistency_proof(size1, size2, get)
    assert consistency_proof(8, 8, get) == []
    assert consistency_proof(5, 5, get) == []


def test_proof_error_is_a_verification_error() -> None:
    """Refusals are ProofError, a VerificationError of kind 'proof'."""
    with pytest.raises(VerificationError) as info:
        verify_inclusion(LEAVES[0], 0, 1, [], OTHER)
    assert isinstance(info.value, ProofError)
    assert info.value.kind == "proof"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((LEAVES[0], 3, 3, [], EMPTY_ROOT), "beyond"),
        ((LEAVES[0], 0, 4, [OTHER], EMPTY_ROOT), "needs 2"),
        ((LEAVES[0], 0, 1, [], OTHER), "does not match"),
        ((b"", 0, 1, [], LEAVES[0]), "leaf hash must be a 32-byte hash"),
        ((LEAVES[0], 0, 1, [], b""), "root must be a 32-byte hash"),
        ((LEAVES[0], 0, 2, [b"x"], OTHER), "proof hash 0"),
        ((LEAVES[0], True, 2, [OTHER], OTHER), "integer"),
        (("ab" * 16, 0, 1, [], OTHER), "must be bytes"),
    ],
)
def test_inclusion_messages(args: tuple[Any, ...], words: str) -> None:
    """verify_inclusion says what is wrong: index, proof length, root, or a malformed hash."""
    with pytest.raises(ProofError, match=words):
        verify_inclusion(*args)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0, 0, [], EMPTY_ROOT, EMPTY_ROOT), "size1 is 0"),
        ((0, 5, [], EMPTY_ROOT, OTHER), "size1 is 0"),
        ((3, 2, [], OTHER, OTHER), "larger than size2"),
        ((2, 2, [OTHER], OTHER, OTHER), "proof is not empty"),
        ((2, 2, [], OTHER, EMPTY_ROOT), "differ"),
        ((2, 3, [], OTHER, OTHER), "need 1"),
        ((2, 3, [OTHER, OTHER], OTHER, OTHER), "need 1"),
        ((1, 2, [], OTHER, OTHER), "need 1"),
        ((1, 2, [OTHER], OTHER, OTHER), "does not match root2"),
        ((3, 4, [OTHER, OTHER, OTHER], OTHER, OTHER), "does not match root1"),
        ((1, 2, [OTHER], b"short", OTHER), "root1 must be a 32-byte hash"),
        ((1, 2, [b""], OTHER, OTHER), "proof hash 0"),
    ],
)
def test_consistency_messages(args: tuple[Any, ...], words: str) -> None:
    """verify_consistency says what is wrong: sizes, proof length, which root, or a bad hash."""
    with pytest.raises(ProofError, match=words):
        verify_consistency(*args)


def test_equal_sizes_compare_roots_as_given() -> None:
    """Equal sizes with an empty proof pass on equal roots, as the published probes require."""
    verify_consistency(1, 1, [], b"don't care", b"don't care")
    verify_consistency(7, 7, [], OTHER, OTHER)


def test_hash_list_refusals() -> None:
    """root_of and perfect_root refuse malformed hashes and non-power-of-two perfect sizes."""
    with pytest.raises(ProofError, match="leaf hash 1"):
        root_of([LEAVES[0], b"short"])
    for n in (0, 3, 6):
        with pytest.raises(ProofError, match="power-of-two"):
            perfect_root(LEAVES[:n])


def test_subtree_hash() -> None:
    """subtree_hash gives the MTH of any RFC node range and refuses ranges that are not nodes."""
    get = getter(NODES, MAX_N)
    for start, end in ((0, 5), (4, 7), (8, 13), (16, 32), (64, 72), (6, 7), (32, 47)):
        assert subtree_hash(start, end, get) == ref_mth(ENTRIES[start:end])
    for start, end in ((3, 5), (4, 9), (2, 5), (5, 5), (6, 4)):
        with pytest.raises(ProofError):
            subtree_hash(start, end, get)


def test_bad_get_node_result_is_refused() -> None:
    """A store returning something that is not a 32-byte hash makes a ProofError, not bad proofs."""
    with pytest.raises(ProofError, match="level 0, index 1"):
        inclusion_proof(0, 2, lambda level, index: b"short")


# --------------------------------------------------------------------------- compact range


def completed_nodes(start: int, end: int, min_level: int = 1) -> set[tuple[int, int, bytes]]:
    """Return the perfect nodes (level >= min_level) whose last leaf lies in [start, end)."""
    return {
        (level, index, h)
        for (level, index), h in NODES.items()
        if level >= min_level and start < (index + 1) << level <= end
    }


def test_append_reports_completed_nodes() -> None:
    """Each append returns exactly the perfect nodes it completes, lowest level first."""
    cr = CompactRange()
    for i, h in enumerate(LEAVES):
        done = cr.append(h)
        assert set(done) == completed_nodes(i, i + 1)
        assert [lvl for lvl, _, _ in done] == sorted(lvl for lvl, _, _ in done)
        assert cr.size == i + 1
        assert len(cr.hashes) == (i + 1).bit_count()
        assert cr.root() == root_of(LEAVES[: i + 1])


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32, 40])
def test_extend_equals_append(chunk: int) -> None:
    """Extending by chunks of one size, from every offset, equals appending leaf by leaf."""
    for offset in range(MAX_N - chunk + 1):
        base = CompactRange()
        base.extend(LEAVES[:offset])
        appended, extended = base.copy(), base.copy()
        from_append = [node for h in LEAVES[offset : offset + chunk] for node in appended.append(h)]
        from_extend = extended.extend(LEAVES[offset : offset + chunk])
        assert extended.size == appended.size == offset + chunk
        assert extended.hashes == appended.hashes
        assert extended.root() == ref_mth(ENTRIES[: offset + chunk])
        assert sorted(from_extend) == sorted(from_append)
        assert set(from_extend) == completed_nodes(offset, offset + chunk)
        assert len(from_extend) == len(set(from_extend))
        seen: set[tuple[int, int]] = set()
        for level, index, _ in from_extend:  # children completed here are reported first
            if level > 1:
                assert (level - 1, 2 * index + 1) in seen
                if (2 * index + 1) << (level - 1) > offset:
                    assert (level - 1, 2 * index) in seen
            seen.add((level, index))
        assert base.size == offset  # copies are independent


@pytest.mark.parametrize("min_level", [1, 2, 3, 5, 64])
def test_extend_min_level(min_level: int) -> None:
    """Extending with min_level reports only the completed nodes at or above that level."""
    cr = CompactRange()
    cr.extend(LEAVES[:11])
    done = cr.extend(LEAVES[11:MAX_N], min_level=min_level)
    assert set(done) == completed_nodes(11, MAX_N, min_level)
    assert cr.root() == ref_mth(ENTRIES)


def test_extend_large_batch() -> None:
    """A large uneven batch gives the same root and nodes whether extended at once or in parts."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(70_003)]
    whole = CompactRange()
    nodes_whole = whole.extend(leaves)
    parts = CompactRange()
    nodes_parts: list[tuple[int, int, bytes]] = []
    for start in range(0, len(leaves), 9_999):
        nodes_parts += parts.extend(leaves[start : start + 9_999])
    assert whole.root() == parts.root() == root_of(leaves)
    assert whole.hashes == parts.hashes
    assert sorted(nodes_whole) == sorted(nodes_parts)
    assert len(nodes_whole) == len(leaves) - len(leaves).bit_count()
    by_pos = {(lvl, idx): h for lvl, idx, h in nodes_whole}
    assert by_pos[(16, 0)] == perfect_root(leaves[: 1 << 16])
    assert root_at(len(leaves), lambda lvl, idx: by_pos[(lvl, idx)] if lvl else leaves[idx]) == (
        whole.root()
    )


def test_compact_range_round_trip() -> None:
    """to_bytes/from_bytes and the (size, hashes) constructor rebuild the same range."""
    for n in (0, 1, 2, 5, 8, 13, 64, 71):
        cr = CompactRange()
        cr.extend(LEAVES[:n])
        data = cr.to_bytes()
        assert len(data) == 32 * n.bit_count()
        again = CompactRange.from_bytes(n, data)
        assert again == cr
        assert again.root() == cr.root() == ref_mth(ENTRIES[:n])
        assert CompactRange(n, cr.hashes) == cr
        again.append(LEAVES[0])
        assert again.size == n + 1 and cr.size == n


def test_compact_range_refusals() -> None:
    """Bad sizes, hash counts, hash lengths and byte lengths are refused with ProofError."""
    h = LEAVES[0]
    for size, hashes in (
        (1, []),
        (3, [h]),
        (2, [h, h]),
        (0, [h]),
        (-1, []),
        (1 << 64, []),
        (True, [h]),
        (1, [b"short"]),
        (1, ["ab" * 16]),
    ):
        with pytest.raises(ProofError):
            CompactRange(size, hashes)  # type: ignore[arg-type]
    for size, data in ((1, b""), (3, h), (1, h + b"x"), (0, h), (-1, b"")):
        with pytest.raises(ProofError):
            CompactRange.from_bytes(size, data)
    cr = CompactRange()
    cr.extend(LEAVES[:5])
    before = cr.to_bytes()
    with pytest.raises(ProofError):
        cr.append(b"short")
    with pytest.raises(ProofError, match="leaf hash 2"):
        cr.extend([h, h, b"", h])
    with pytest.raises(ProofError):
        cr.extend([h], min_level=0)
    assert cr.size == 5 and cr.to_bytes() == before  # a refused batch changes nothing
    full = CompactRange((1 << 64) - 1, [h] * 64)
    with pytest.raises(ProofError):
        full.append(h)


# --------------------------------------------------------------------------- O(log n)


def test_proofs_use_log_n_node_lookups() -> None:
    """Roots and proofs on a 1,000,000-leaf tree fetch at most 2 * 64 nodes, never every leaf."""
    calls: list[tuple[int, int]] = []
    size = 1_000_000

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size
        calls.append((level, index))
        return hashlib.sha256(f"{level}/{index}".encode()).digest()

    def count(fn: Callable[[], object]) -> int:
        calls.clear()
        fn()
        return len(calls)

    assert count(partial(root_at, size, get_node)) <= 64
    for index in (0, 1, 12_345, 524_287, 524_288, 999_998, size - 1):
        assert count(partial(inclusion_proof, index, size, get_node)) <= 2 * 64
    for size1 in (1, 2, 3, 1000, 524_288, 524_289, 999_999, size):
        assert count(partial(consistency_proof, size1, size, get_node)) <= 2 * 64
    huge = (1 << 64) - 1

    def any_node(level: int, index: int) -> bytes:
        calls.append((level, index))
        return OTHER

    for index in (0, huge // 3, huge - 1):
        assert count(partial(inclusion_proof, index, huge, any_node)) <= 2 * 64
    assert count(partial(consistency_proof, huge // 7, huge, any_node)) <= 2 * 64


def _recording_getter(leaves: list[bytes], seen: set[tuple[int, int]]) -> merkle.NodeGetter:
    def get(level: int, index: int) -> bytes:
        seen.add((level, index))
        width = 1 << level
        return merkle.perfect_root(leaves[index * width : (index + 1) * width])

    return get


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 255, 256, 257, 600, 1023, 1025])
def test_prefetch_lists_name_every_node_a_proof_reads(size: int) -> None:
    """inclusion_nodes and consistency_nodes cover every node the proofs and roots ask for."""
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    for index in sorted({0, size // 3, size // 2, size - 1}):
        seen: set[tuple[int, int]] = set()
        get = _recording_getter(leaves, seen)
        get(0, index)
        merkle.inclusion_proof(index, size, get)
        merkle.root_at(size, get)
        assert seen <= set(merkle.inclusion_nodes(index, size))
    for size1 in sorted({1, size // 2 or 1, size}):
        seen = set()
        get = _recording_getter(leaves, seen)
        merkle.consistency_proof(size1, size, get)
        merkle.root_at(size1, get)
        merkle.root_at(size, get)
        assert seen <= set(merkle.consistency_nodes(size1, size))


def _node_order(node: tuple[int, int, bytes]) -> tuple[int, int]:
    return ((node[1] + 1) << node[0], node[0])


@pytest.mark.parametrize("seed", range(40))
def test_two_halves_merge_into_the_tree_of_the_whole(seed: int) -> None:
    """A compact range of [0, s) merged with a sub-range of [s, n) is the tree of n leaves.

    Same root and frontier, the same perfect nodes (those across s made by the
    merge), and the same root at every size recorded on the way, fed in any chunks.
    """
    import random

    rng = random.Random(seed)
    n = rng.randint(1, 2500)
    s = rng.choice([0, 1, n, rng.randint(0, n), 256, 512]) if n >= 512 else rng.randint(0, n)
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(n)]
    wanted = sorted({rng.randint(1, n) for _ in range(6)} | {s} - {0})
    min_level = rng.choice([1, 3, 8])
    whole, roots = CompactRange(), {}
    expected = whole.extend_recording(leaves, list(wanted), roots, min_level=min_level)

    left, left_roots, nodes = CompactRange(), {}, []
    want_left = [w for w in wanted if w <= s]
    at = 0
    while at < s:
        stop = min(at + rng.randint(1, 300), s)
        nodes += left.extend_recording(leaves[at:stop], want_left, left_roots, min_level=min_level)
        at = stop
    right, parts = SubRange(s), {}
    want_right = list(wanted)
    while at < n:
        stop = min(at + rng.randint(1, 300), n)
        nodes += right.extend_recording(leaves[at:stop], want_right, parts, min_level=min_level)
        at = stop
    assert (right.begin, right.end) == (s, n)
    merged = left.copy()
    nodes += merged.merge_range(right.nodes, min_level=min_level)
    assert merged == whole
    assert sorted(nodes, key=_node_order) == sorted(expected, key=_node_order)
    for size, part in parts.items():
        at_size = left.copy()
        at_size.merge_range(part)
        left_roots[size] = at_size.root()
    assert left_roots == roots


def test_a_sub_range_node_that_is_not_aligned_is_refused() -> None:
    """Merging a node that cannot start where the range ends raises ProofError."""
    left = CompactRange()
    left.extend([hashlib.sha256(b"x").digest()])
    with pytest.raises(ProofError, match="not aligned"):
        left.merge_range([(1, hashlib.sha256(b"y").digest())])
