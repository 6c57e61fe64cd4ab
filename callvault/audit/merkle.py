"""A Merkle tree over the audit entries, as RFC 9162 (Certificate Transparency 2.0) section 2.1 defines it.

    leaf hash  = SHA-256(0x00 || bytes of the entry's ``entry_hash``)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two smaller than n

Why a tree on top of the hash chain: the chain proves nothing about entries that were removed from
the *end*, and checking one entry against it means reading every entry before it. A signed tree head
(a checkpoint) fixes the whole log at a size, an inclusion proof shows one entry is in it with
log2(n) hashes, and a consistency proof shows a later tree extends an earlier one, so a history
rewritten after a checkpoint was copied elsewhere is caught.

``MerkleTree`` keeps every complete subtree (about 2n hashes in flat byte arrays, 64 MiB for a
million entries), so roots of any earlier size and every proof cost O(log n) hash lookups.
The verification functions are pure and need no tree; ``tools/verify_audit_bundle.py`` carries an
independent copy of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_LEN = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash of ``data``."""
    return hashlib.sha256(b"\x00" + data).digest()


def entry_leaf(entry_hash_hex: str) -> bytes:
    """The leaf hash of an audit entry, from its hex ``entry_hash``."""
    return leaf_hash(bytes.fromhex(entry_hash_hex))


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only Merkle tree of leaf hashes with all complete subtrees kept."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_LEN

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (already ``leaf_hash``-ed), completing parents as pairs fill."""
        if len(leaf) != HASH_LEN:
            raise ValueError("a leaf hash is 32 bytes")
        level = 0
        node = leaf
        while True:
            if level == len(self._levels):
                self._levels.append(bytearray())
            row = self._levels[level]
            row += node
            count = len(row) // HASH_LEN
            if count % 2:
                return
            node = node_hash(bytes(row[-2 * HASH_LEN:-HASH_LEN]), node)
            level += 1

    def _perfect(self, level: int, index: int) -> bytes:
        row = self._levels[level]
        return bytes(row[index * HASH_LEN:(index + 1) * HASH_LEN])

    def subtree_root(self, start: int, size: int) -> bytes:
        """MTH of leaves ``[start, start + size)``."""
        if size == 0:
            return EMPTY_ROOT
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            return self._perfect(level, start >> level)
        if size == 1:
            return self._perfect(0, start)
        k = _largest_power_of_two_below(size)
        return node_hash(self.subtree_root(start, k), self.subtree_root(start + k, size - k))

    def root(self, size: int | None = None) -> bytes:
        """The tree head at ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check_size(size)
        return self.subtree_root(0, size)

    def leaf(self, index: int) -> bytes:
        return self._perfect(0, index)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"the tree has {self.size} leaves, not {size}")

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.3.1 audit path of leaf ``index`` in the tree of ``size`` leaves."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, n: int) -> list[bytes]:
        if n == 1:
            return []
        k = _largest_power_of_two_below(n)
        if m < k:
            return [*self._path(m, start, k), self.subtree_root(start + k, n - k)]
        return [*self._path(m - k, start + k, n - k), self.subtree_root(start, k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.4.1 proof that the tree of ``new_size`` extends the tree of ``old_size``."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"cannot prove {old_size} leaves consistent with {new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, n: int, complete: bool) -> list[bytes]:
        if m == n:
            return [] if complete else [self.subtree_root(start, n)]
        k = _largest_power_of_two_below(n)
        if m <= k:
            return [*self._subproof(m, start, k, complete), self.subtree_root(start + k, n - k)]
        return [*self._subproof(m - k, start + k, n - k, False), self.subtree_root(start, k)]


    def frontier(self, size: int | None = None) -> list[bytes]:
        """The roots of the perfect subtrees that make up the tree of ``size`` leaves (see ``Frontier``)."""
        size = self.size if size is None else size
        self._check_size(size)
        roots, start = [], 0
        for width in _frontier_widths(size):
            roots.append(self.subtree_root(start, width))
            start += width
        return roots


def _frontier_widths(size: int) -> list[int]:
    """The powers of two that sum to ``size``, largest first: the frontier's subtree widths."""
    return [1 << bit for bit in reversed(range(size.bit_length())) if size >> bit & 1]


class Frontier:
    """The right edge of a tree: enough to append leaves and compute new roots without the old leaves.

    A tree of n leaves splits into perfect subtrees whose widths are the powers of two in n (13 =
    8 + 4 + 1); their roots, largest first, are the frontier: popcount(n) hashes, 20 for a million
    entries. Appending a leaf merges equal-width subtrees from the right, like adding 1 to n, and the
    RFC 9162 root is the frontier folded from the right. Why: publishing a checkpoint then costs the
    entries added since the last one, not the whole log (``callvault.audit.checkpoints``).
    """

    def __init__(self, size: int = 0, roots: Sequence[bytes] = ()) -> None:
        if size < 0 or len(roots) != bin(size).count("1") or any(len(r) != HASH_LEN for r in roots):
            raise ValueError(f"a frontier of {size} leaves has {bin(max(size, 0)).count('1')} roots of 32 bytes")
        self.size = size
        self.roots = list(roots)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (already ``leaf_hash``-ed)."""
        if len(leaf) != HASH_LEN:
            raise ValueError("a leaf hash is 32 bytes")
        node, carried = leaf, self.size
        while carried & 1:  # each trailing 1 bit of the old size is a subtree of the new one's width
            node = node_hash(self.roots.pop(), node)
            carried >>= 1
        self.roots.append(node)
        self.size += 1

    def root(self) -> bytes:
        """The RFC 9162 tree head: MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n])), folded from the right."""
        if not self.roots:
            return EMPTY_ROOT
        node = self.roots[-1]
        for left in reversed(self.roots[:-1]):
            node = node_hash(left, node)
        return node

    def to_text(self) -> str:
        """Hex roots, comma-separated (how a checkpoint row stores it)."""
        return ",".join(r.hex() for r in self.roots)

    @classmethod
    def from_text(cls, size: int, text: str) -> Frontier:
        """Parse ``to_text``; raises ValueError when it does not fit ``size``."""
        return cls(size, [bytes.fromhex(part) for part in text.split(",")] if text else [])


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show ``leaf`` at ``index`` in the tree ``root`` of ``size``?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: does ``proof`` show the tree ``new_root`` extends the tree ``old_root``?"""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
