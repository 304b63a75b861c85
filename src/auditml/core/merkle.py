"""The RFC 9162 Merkle tree of docs/format.md section 3: hashes, compact ranges and proofs.

The tree is the Certificate Transparency Merkle Tree Hash (RFC 9162 section
2.1) with SHA-256::

    leaf  = SHA-256(0x00 || entry)
    node  = SHA-256(0x01 || left || right)
    empty = SHA-256("")

and a tree of ``n > 1`` leaves splits at ``k``, the largest power of two below
``n``. Every function here is pure: no I/O, only :mod:`hashlib`.

Two ideas keep large logs cheap:

* A *perfect node* ``(level, index)`` is the root of the perfect subtree over
  leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 is the leaf
  hashes. Every node of the RFC tree is either perfect or the right-fold of a
  few perfect nodes, so a store that keeps perfect nodes can answer any root or
  proof with ``O(log n)`` lookups through a :data:`NodeGetter`.
* A :class:`CompactRange` (the Merkle frontier) is the one perfect node per set
  bit of the tree size. It yields the root, accepts appends, and reports the
  perfect nodes each append completes, so they can be stored.

Proof generation follows RFC 9162 sections 2.1.3.1 and 2.1.4.1 and
verification sections 2.1.3.2 and 2.1.4.2; every refusal raises
:class:`~auditml.errors.ProofError` with a sentence saying what is wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import TypeAlias

from auditml.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "NodeGetter",
    "SubRange",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "perfect_nodes",
    "perfect_root",
    "root_at",
    "root_of",
    "subtree_hash",
    "unchecked_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash of the tree (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""The root of the tree with no leaves: SHA-256 of the empty string."""

_MAX_SIZE = 1 << 64
"""Tree sizes must be below this, so a compact range holds at most 64 hashes."""

NodeGetter: TypeAlias = Callable[[int, int], bytes]
"""``get_node(level, index)``: the hash of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 returns leaf hashes."""

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
#: SHA-256 contexts that have hashed each prefix: a copy of one starts a hash for less
#: than a new context costs (OpenSSL looks its digest up each time), with no concatenation.
_LEAF_CONTEXT = hashlib.sha256(_LEAF_PREFIX)
_NODE_CONTEXT = hashlib.sha256(_NODE_PREFIX)

_Range: TypeAlias = tuple[int, int]
_Node: TypeAlias = tuple[int, int, bytes]


# --------------------------------------------------------------------------- hashing


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || entry)``."""
    h = _LEAF_CONTEXT.copy()
    h.update(entry)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    h = _NODE_CONTEXT.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def _aligned_chunks(
    leaves: Sequence[bytes], start: int, min_level: int, out: list[_Node]
) -> Iterator[tuple[bytes, int]]:
    """Yield the root and height of each perfect chunk of ``leaves`` placed from ``start``.

    Each chunk is the largest that fits in what is left and is aligned at its
    start; it is hashed level by level, and its nodes of ``min_level`` or more
    (below its root) go to ``out``, children before parents.
    """
    total = len(leaves)
    pos = 0
    while pos < total:
        height = (total - pos).bit_length() - 1
        if start:
            height = min(height, (start & -start).bit_length() - 1)
        width = 1 << height
        level = leaves[pos : pos + width]
        for lvl in range(1, height + 1):
            level = _parent_level(level)
            if lvl >= min_level:
                first = start >> lvl
                out.extend(zip(repeat(lvl), range(first, first + len(level)), level))
        yield level[0], height
        start += width
        pos += width


def _parent_level(level: Sequence[bytes]) -> list[bytes]:
    """Hash the pairs of an even-length level into the level above it."""
    parents: list[bytes] = []
    add, start = parents.append, _NODE_CONTEXT.copy
    for left, right in zip(level[0::2], level[1::2], strict=True):
        h = start()
        h.update(left)
        h.update(right)
        add(h.digest())
    return parents


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """Return the RFC 9162 leaf hash of each entry, in order."""
    found: list[bytes] = []
    add, start = found.append, _LEAF_CONTEXT.copy
    for entry in entries:
        h = start()
        h.update(entry)
        add(h.digest())
    return found


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Right-fold perfect subtree roots, largest first, into the root over all of them."""
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = _sha256(_NODE_PREFIX + left + root).digest()
    return root


def _as_bytes(value: object, what: str) -> bytes:
    """Return a bytes-like ``value`` as bytes, else raise ProofError naming it."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProofError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _check_hash(value: object, what: str) -> bytes:
    """Return ``value`` as bytes if it is a 32-byte hash, else raise ProofError naming it."""
    data = _as_bytes(value, what)
    if len(data) != HASH_SIZE:
        raise ProofError(f"{what} must be a {HASH_SIZE}-byte hash, got {len(data)} bytes")
    return data


def _check_hash_list(values: Iterable[bytes], what: str) -> list[bytes]:
    """Return ``values`` as a list of bytes after checking that each is a 32-byte hash."""
    items = list(values)
    # Checked with C-level maps: this runs on every leaf of million-leaf batches.
    if not (set(map(type, items)) <= {bytes} and set(map(len, items)) <= {HASH_SIZE}):
        return [_check_hash(item, f"{what} {i}") for i, item in enumerate(items)]
    return items


def _check_size(value: object, what: str) -> int:
    """Return ``value`` if it is an int in ``[0, 2**64)``, else raise ProofError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProofError(f"{what} must be an integer, not {type(value).__name__}")
    if not 0 <= value < _MAX_SIZE:
        raise ProofError(f"{what} must be between 0 and 2**64 - 1, got {value}")
    return value


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash over already-hashed leaves (any count, iteratively)."""
    return unchecked_root(_check_hash_list(leaf_hashes, "leaf hash"))


def unchecked_root(leaf_hashes: list[bytes]) -> bytes:
    """Return :func:`root_of` for leaf hashes this process made (not checked one by one)."""
    level = leaf_hashes
    if not level:
        return EMPTY_ROOT
    # Pairing level by level and carrying an unpaired last node up unchanged
    # builds exactly the RFC 9162 tree (split at the largest power of two).
    while len(level) > 1:
        carry = level[-1:] if len(level) % 2 else []
        level = _parent_level(level[: len(level) - len(carry)]) + carry
    return level[0]


def perfect_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the root of a perfect subtree; the number of leaf hashes must be a power of two."""
    level = _check_hash_list(leaf_hashes, "leaf hash")
    count = len(level)
    if count == 0 or count & (count - 1):
        raise ProofError(f"a perfect subtree needs a power-of-two number of leaves, got {count}")
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


# --------------------------------------------------------------------------- compact range


class CompactRange:
    """The Merkle frontier of a tree of `size` leaves: one hash per set bit of size.

    The hashes are the roots of the perfect subtrees that tile the leaves,
    largest (leftmost) first, so there are at most 64 of them.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        size = _check_size(size, "compact range size")
        items = _check_hash_list(hashes, "compact range hash")
        if len(items) != size.bit_count():
            raise ProofError(
                f"a compact range of size {size} has {size.bit_count()} hashes, got {len(items)}"
            )
        self._size = size
        self._hashes = items

    @property
    def size(self) -> int:
        """The number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect subtree roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def _merge(self, node: bytes, level: int, out: list[_Node], min_level: int) -> None:
        """Add the perfect node at ``level`` that starts at the current size, merging up."""
        size = self._size
        if size + (1 << level) >= _MAX_SIZE:
            raise ProofError("a compact range cannot grow to 2**64 leaves")
        hashes = self._hashes
        index = size >> level
        height = level
        while (size >> height) & 1:
            node = _sha256(_NODE_PREFIX + hashes.pop() + node).digest()
            height += 1
            index >>= 1
            if height >= min_level:
                out.append((height, index, node))
        hashes.append(node)
        self._size = size + (1 << level)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append a leaf hash; return perfect nodes it completes (level >= 1), lowest first."""
        out: list[_Node] = []
        self._merge(_check_hash(leaf_hash, "leaf hash"), 0, out, 1)
        return out

    def extend(
        self, leaf_hashes: Sequence[bytes], *, min_level: int = 1
    ) -> list[tuple[int, int, bytes]]:
        """Append many leaf hashes; return the completed perfect nodes with level >= min_level.

        Nodes come children before parents. The leaves are taken in aligned
        power-of-two chunks, each hashed level by level, so a batch costs about
        one SHA-256 per leaf and ``O(log n)`` Python steps besides.
        """
        if isinstance(min_level, bool) or not isinstance(min_level, int) or min_level < 1:
            raise ProofError(f"min_level must be an integer >= 1, got {min_level!r}")
        leaves = _check_hash_list(leaf_hashes, "leaf hash")
        total = len(leaves)
        if self._size + total >= _MAX_SIZE:
            raise ProofError("a compact range cannot grow to 2**64 leaves")
        out: list[_Node] = []
        for node, height in _aligned_chunks(leaves, self._size, min_level, out):
            self._merge(node, height, out, min_level)  # grows the size by the chunk
        return out

    def extend_recording(
        self,
        leaf_hashes: Sequence[bytes],
        wanted: list[int],
        roots: dict[int, bytes],
        *,
        min_level: int = 1,
    ) -> list[tuple[int, int, bytes]]:
        """Extend as :meth:`extend` does, recording the root at each size of ``wanted`` reached.

        ``wanted`` holds sizes in ascending order; those reached are removed from it
        and their roots put in ``roots``, so one pass over the leaves yields the root
        of every checkpoint along the way.
        """
        out: list[tuple[int, int, bytes]] = []
        at = 0
        end = self._size + len(leaf_hashes)
        while wanted and wanted[0] <= end:
            size = wanted.pop(0)
            if size < self._size:
                continue  # before this range: another pass recorded it
            cut = at + size - self._size
            out += self.extend(leaf_hashes[at:cut], min_level=min_level)
            at = cut
            roots[size] = self.root()
        out += self.extend(leaf_hashes[at:], min_level=min_level)
        return out

    def merge_range(
        self, nodes: Sequence[tuple[int, bytes]], *, min_level: int = 1
    ) -> list[tuple[int, int, bytes]]:
        """Append the leaves that ``nodes`` (a :class:`SubRange` starting here) stand for.

        Returns the perfect nodes with level >= ``min_level`` that the merge
        completes: those that straddle where the sub-range begins.
        """
        out: list[_Node] = []
        for level, node in nodes:
            if self._size & ((1 << level) - 1):
                raise ProofError(
                    f"a node of level {level} cannot start at leaf {self._size}: not aligned"
                )
            self._merge(_check_hash(node, "sub-range node"), level, out, min_level)
        return out

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of the covered leaves (EMPTY_ROOT for size 0)."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def to_bytes(self) -> bytes:
        """Return the hashes concatenated, largest subtree first."""
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        """Rebuild a compact range of ``size`` leaves from :meth:`to_bytes` output."""
        size = _check_size(size, "compact range size")
        raw = _as_bytes(data, "compact range data")
        want = size.bit_count() * HASH_SIZE
        if len(raw) != want:
            raise ProofError(f"a compact range of size {size} needs {want} bytes, got {len(raw)}")
        return cls(size, [raw[i : i + HASH_SIZE] for i in range(0, want, HASH_SIZE)])

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        clone = CompactRange.__new__(CompactRange)
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone


class SubRange:
    """The perfect subtrees that tile the leaves ``[begin, end)`` of a tree, left to right.

    Where :class:`CompactRange` covers leaves from 0, this covers a range that
    starts anywhere, so two processes can each hash one half of a log: the
    left half's compact range then takes the right half's nodes with
    :meth:`CompactRange.merge_range`, which completes the nodes that straddle
    the two. Each node is ``(level, hash)``, aligned at its level.
    """

    __slots__ = ("_begin", "_end", "_nodes")

    def __init__(self, begin: int) -> None:
        self._begin = _check_size(begin, "sub-range start")
        self._end = self._begin
        self._nodes: list[tuple[int, bytes]] = []

    @property
    def begin(self) -> int:
        """The first leaf covered."""
        return self._begin

    @property
    def end(self) -> int:
        """One past the last leaf covered."""
        return self._end

    @property
    def nodes(self) -> list[tuple[int, bytes]]:
        """The perfect subtrees, as ``(level, hash)``, left to right (a copy)."""
        return list(self._nodes)

    def _push(self, node: bytes, level: int, out: list[_Node], min_level: int) -> None:
        """Add the perfect node at ``level`` that starts at ``end``, merging with its left sibling.

        The left sibling is the last node held when it has the same level and the
        new node's index is odd; one that starts before ``begin`` is not held, and
        the merge is left to :meth:`CompactRange.merge_range`.
        """
        nodes = self._nodes
        width = 1 << level
        index = self._end >> level
        while index & 1 and nodes and nodes[-1][0] == level:
            node = _sha256(_NODE_PREFIX + nodes.pop()[1] + node).digest()
            level += 1
            index >>= 1
            if level >= min_level:
                out.append((level, index, node))
        nodes.append((level, node))
        self._end += width

    def extend(
        self, leaf_hashes: Sequence[bytes], *, min_level: int = 1
    ) -> list[tuple[int, int, bytes]]:
        """Append leaf hashes; return the perfect nodes (level >= min_level) wholly inside.

        Nodes come children before parents, as :meth:`CompactRange.extend` gives them.
        """
        leaves = _check_hash_list(leaf_hashes, "leaf hash")
        total = len(leaves)
        if self._end + total >= _MAX_SIZE:
            raise ProofError("a sub-range cannot reach 2**64 leaves")
        out: list[_Node] = []
        for node, height in _aligned_chunks(leaves, self._end, min_level, out):
            self._push(node, height, out, min_level)  # moves the end past the chunk
        return out

    def extend_recording(
        self,
        leaf_hashes: Sequence[bytes],
        wanted: list[int],
        parts: dict[int, list[tuple[int, bytes]]],
        *,
        min_level: int = 1,
    ) -> list[tuple[int, int, bytes]]:
        """Extend, recording the nodes up to each size of ``wanted`` reached, in ``parts``.

        As :meth:`CompactRange.extend_recording` records roots: the root of the
        whole tree at such a size is the left part's compact range merged with them.
        """
        out: list[_Node] = []
        at = 0
        end = self._end + len(leaf_hashes)
        while wanted and wanted[0] <= end:
            size = wanted.pop(0)
            if size <= self._begin:
                continue  # the left part records it
            if size < self._end:
                continue  # before this range: another pass recorded it
            cut = at + size - self._end
            out += self.extend(leaf_hashes[at:cut], min_level=min_level)
            at = cut
            parts[size] = self.nodes
        out += self.extend(leaf_hashes[at:], min_level=min_level)
        return out


# --------------------------------------------------------------------------- nodes from a store


def _get(get_node: NodeGetter, level: int, index: int) -> bytes:
    """Fetch one perfect node and check that it is a hash."""
    return _check_hash(get_node(level, index), f"node (level {level}, index {index})")


def perfect_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """Return the ``(level, index)`` perfect nodes whose fold is the MTH of leaves [start, end)."""
    start = _check_size(start, "subtree start")
    end = _check_size(end, "subtree end")
    width = end - start
    if width <= 0:
        raise ProofError(f"subtree [{start}, {end}) is empty")
    if start % (1 << (width - 1).bit_length()):
        raise ProofError(f"[{start}, {end}) is not a node of an RFC 9162 tree")
    nodes: list[tuple[int, int]] = []
    pos = start
    for level in range(width.bit_length() - 1, -1, -1):
        if (width >> level) & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def subtree_hash(start: int, end: int, get_node: NodeGetter) -> bytes:
    """Return the MTH of leaves [start, end), a node of the RFC 9162 tree, from perfect nodes."""
    return _fold([_get(get_node, level, index) for level, index in perfect_nodes(start, end)])


def root_at(size: int, get_node: NodeGetter) -> bytes:
    """Return the MTH of the first ``size`` leaves, from perfect nodes."""
    size = _check_size(size, "tree size")
    return subtree_hash(0, size, get_node) if size else EMPTY_ROOT


def _split(width: int) -> int:
    """Return the largest power of two strictly below ``width`` (``width >= 2``)."""
    return 1 << ((width - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[_Range]:
    """Return the leaf ranges whose MTHs form PATH(index, D[size]), in proof order."""
    ranges: list[_Range] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[_Range]:
    """Return the leaf ranges whose MTHs form PROOF(size1, D[size2]), in proof order."""
    ranges: list[_Range] = []
    start, end = 0, size2
    whole = True  # the RFC's flag b: still on the left edge, where D[size1] is known
    while size1 < end:
        mid = start + _split(end - start)
        if size1 <= mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def inclusion_nodes(index: int, size: int) -> list[tuple[int, int]]:
    """Return every perfect node that the inclusion proof and root of ``size`` read."""
    ranges = [*_inclusion_ranges(index, size), (index, index + 1)]
    return [node for a, b in ranges for node in perfect_nodes(a, b)] + perfect_nodes(0, size)


def consistency_nodes(size1: int, size2: int) -> list[tuple[int, int]]:
    """Return every perfect node that the consistency proof and both roots read."""
    ranges = [*_consistency_ranges(size1, size2), (0, size1), (0, size2)]
    return [node for a, b in ranges for node in perfect_nodes(a, b)]


def inclusion_proof(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """Return the RFC 9162 inclusion proof PATH for leaf ``index`` in the tree of ``size``."""
    index = _check_size(index, "leaf index")
    size = _check_size(size, "tree size")
    if index >= size:
        raise ProofError(f"leaf index {index} is beyond the tree of size {size}")
    return [subtree_hash(a, b, get_node) for a, b in _inclusion_ranges(index, size)]


def consistency_proof(size1: int, size2: int, get_node: NodeGetter) -> list[bytes]:
    """Return the RFC 9162 consistency proof PROOF from the tree of ``size1`` to ``size2``."""
    size1 = _check_size(size1, "size1")
    size2 = _check_size(size2, "size2")
    if size1 == 0:
        raise ProofError("size1 is 0: nothing to prove about an empty tree")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}")
    return [subtree_hash(a, b, get_node) for a, b in _consistency_ranges(size1, size2)]


# --------------------------------------------------------------------------- verification


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an RFC 9162 inclusion proof; return None, or raise ProofError saying what is wrong."""
    index = _check_size(index, "leaf index")
    size = _check_size(size, "tree size")
    leaf = _check_hash(leaf_hash, "leaf hash")
    root = _check_hash(root, "root")
    path = _check_hash_list(proof, "proof hash")
    if index >= size:
        raise ProofError(f"leaf index {index} is beyond the tree of size {size}")
    want = len(_inclusion_ranges(index, size))
    if len(path) != want:
        raise ProofError(
            f"inclusion proof has {len(path)} hashes; leaf {index} of a tree of size {size} "
            f"needs {want}"
        )
    # RFC 9162 section 2.1.3.2.
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:  # pragma: no cover - excluded by the length check
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:  # pragma: no cover - excluded by the length check
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError(
            f"inclusion proof does not match: leaf {index} with this proof gives root "
            f"{r.hex()}, not {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check an RFC 9162 consistency proof; return None, or raise ProofError saying what's wrong."""
    size1 = _check_size(size1, "size1")
    size2 = _check_size(size2, "size2")
    if size1 == 0:
        raise ProofError("size1 is 0: a consistency proof from an empty tree proves nothing")
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}")
    path = list(proof)
    if size1 == size2:
        # Equal sizes: the proof is empty and the roots are compared as given
        # (the published RFC 9162 probes accept equal roots of any length here).
        if path:
            raise ProofError(f"sizes are equal ({size1}) but the proof is not empty")
        if _as_bytes(root1, "root1") != _as_bytes(root2, "root2"):
            raise ProofError(f"sizes are equal ({size1}) but root1 and root2 differ")
        return
    first = _check_hash(root1, "root1")
    second = _check_hash(root2, "root2")
    path = _check_hash_list(path, "proof hash")
    want = len(_consistency_ranges(size1, size2))
    if len(path) != want:
        raise ProofError(
            f"consistency proof has {len(path)} hashes; sizes {size1} to {size2} need {want}"
        )
    # RFC 9162 section 2.1.4.2.
    if size1 & (size1 - 1) == 0:
        path.insert(0, first)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # pragma: no cover - excluded by the length check
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:  # pragma: no cover - excluded by the length check
        raise ProofError("consistency proof is too short")
    if fr != first:
        raise ProofError(
            f"consistency proof does not match root1: it gives {fr.hex()} for size {size1}, "
            f"not {first.hex()}"
        )
    if sr != second:
        raise ProofError(
            f"consistency proof does not match root2: it gives {sr.hex()} for size {size2}, "
            f"not {second.hex()}"
        )
