"""RELIABILITY scenario 9: the proof verifiers never accept a proof that is not genuine.

immudb's GHSA-672p-m5jq-mrh8 was a client that accepted falsified proofs; a transparency log is only
as good as its verifier. Both copies are checked, the product's (``callvault.audit.merkle``) and the
auditor's (``tools/verify_audit_bundle.py``), against genuine proofs of trees of 0..300 leaves and
against every kind of damaged or made-up proof: hashes missing, added, swapped, replaced by random
bytes of any length, an index outside the tree, old size > new size, size 0, another tree's root.

What the RFC 9162 algorithms do *not* bind, by design, and so is not asserted here: the tree size
is authenticated by the signed checkpoint next to the root, not by the proof (the same audit path
can prove leaf 0 in trees of 3 and 4 leaves against the root of 3); and every tree is consistent
with the empty tree, whatever its root.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from callvault.audit import merkle
from tests.conftest import REPO

MAX_SIZE = 300
EXAMPLES = 300


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_audit_bundle",
                                                  REPO / "tools" / "verify_audit_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("verify_audit_bundle", module)
    spec.loader.exec_module(module)
    return module


TOOL = _load_tool()
Inclusion = Callable[[bytes, int, int, Sequence[bytes], bytes], bool]
Consistency = Callable[[int, int, bytes, bytes, Sequence[bytes]], bool]
VERIFIERS: dict[str, tuple[Inclusion, Consistency]] = {
    "callvault": (merkle.verify_inclusion, merkle.verify_consistency),
    "offline tool": (TOOL.verify_inclusion, TOOL.verify_consistency),
}
_TREE = merkle.MerkleTree(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE))
"""One tree of 300 distinct leaves: every smaller tree is a prefix of it (``root(n)``, proofs at n)."""

sizes = st.integers(min_value=1, max_value=MAX_SIZE)
hashes = st.binary(min_size=0, max_size=64)


@st.composite
def damaged(draw: st.DrawFn, proof: list[bytes]) -> list[bytes]:
    """``proof`` with one kind of damage that leaves it different from the genuine one."""
    kinds = ["add", "random"]
    if proof:
        kinds += ["drop", "replace", "truncate", "flip"]
    if len({*proof}) > 1:
        kinds.append("swap")
    kind = draw(st.sampled_from(kinds))
    out = list(proof)
    if kind == "add":
        out.insert(draw(st.integers(0, len(out))), draw(hashes))
    elif kind == "random":
        out = draw(st.lists(hashes, max_size=12))
    elif kind == "drop":
        del out[draw(st.integers(0, len(out) - 1))]
    elif kind == "replace":
        out[draw(st.integers(0, len(out) - 1))] = draw(hashes)
    elif kind == "truncate":
        out = out[:draw(st.integers(0, len(out) - 1))]
    elif kind == "flip":
        i = draw(st.integers(0, len(out) - 1))
        bit = draw(st.integers(0, 255))
        h = bytearray(out[i])
        h[bit // 8] ^= 1 << (bit % 8)
        out[i] = bytes(h)
    else:
        i, j = draw(st.lists(st.integers(0, len(out) - 1), min_size=2, max_size=2, unique=True))
        assume(out[i] != out[j])
        out[i], out[j] = out[j], out[i]
    assume(out != proof)
    return out


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_genuine_inclusion_proof_is_always_accepted(name: str, data: st.DataObject) -> None:
    verify_inclusion, _ = VERIFIERS[name]
    size = data.draw(sizes)
    index = data.draw(st.integers(0, size - 1))
    proof = _TREE.inclusion_proof(index, size)
    assert verify_inclusion(_TREE.leaf(index), index, size, proof, _TREE.root(size))


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_damaged_inclusion_proof_is_never_accepted(name: str, data: st.DataObject) -> None:
    verify_inclusion, _ = VERIFIERS[name]
    size = data.draw(sizes)
    index = data.draw(st.integers(0, size - 1))
    proof = _TREE.inclusion_proof(index, size)
    bad = data.draw(damaged(proof))
    assert not verify_inclusion(_TREE.leaf(index), index, size, bad, _TREE.root(size))


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_genuine_inclusion_proof_proves_nothing_else(name: str, data: st.DataObject) -> None:
    """The right hashes, offered for another leaf, another index, or another tree, are refused."""
    verify_inclusion, _ = VERIFIERS[name]
    size = data.draw(sizes)
    index = data.draw(st.integers(0, size - 1))
    proof = _TREE.inclusion_proof(index, size)
    leaf, root = _TREE.leaf(index), _TREE.root(size)
    other_index = data.draw(st.integers(-3, size + 3).filter(lambda i: i != index))
    assert not verify_inclusion(leaf, other_index, size, proof, root)
    other = data.draw(st.integers(0, MAX_SIZE).filter(lambda n: n != size))
    assert not verify_inclusion(leaf, index, other, proof, _TREE.root(other))  # another tree's head
    assert not verify_inclusion(leaf, index, 0, proof, merkle.EMPTY_ROOT)
    assert not verify_inclusion(leaf, size + data.draw(st.integers(0, 5)), size, proof, root)  # index >= size
    forged = data.draw(hashes.filter(lambda h: h != leaf))
    assert not verify_inclusion(forged, index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, data.draw(hashes.filter(lambda h: h != root)))


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_genuine_consistency_proof_is_always_accepted(name: str, data: st.DataObject) -> None:
    _, verify_consistency = VERIFIERS[name]
    new = data.draw(st.integers(0, MAX_SIZE))
    old = data.draw(st.integers(0, new))
    proof = _TREE.consistency_proof(old, new)
    assert verify_consistency(old, new, _TREE.root(old), _TREE.root(new), proof)


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_damaged_consistency_proof_is_never_accepted(name: str, data: st.DataObject) -> None:
    _, verify_consistency = VERIFIERS[name]
    new = data.draw(sizes)
    old = data.draw(st.integers(0, new))
    proof = _TREE.consistency_proof(old, new)
    bad = data.draw(damaged(proof))
    assert not verify_consistency(old, new, _TREE.root(old), _TREE.root(new), bad)


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_genuine_consistency_proof_proves_nothing_else(name: str, data: st.DataObject) -> None:
    """Other sizes, old > new, a forged old or new root, or a tree that is not a prefix: refused."""
    _, verify_consistency = VERIFIERS[name]
    new = data.draw(st.integers(2, MAX_SIZE))
    old = data.draw(st.integers(1, new - 1))
    proof = _TREE.consistency_proof(old, new)
    old_root, new_root = _TREE.root(old), _TREE.root(new)
    assert not verify_consistency(new, old, new_root, old_root, proof)  # old > new
    assert not verify_consistency(old, new, data.draw(hashes.filter(lambda h: h != old_root)), new_root, proof)
    assert not verify_consistency(old, new, old_root, data.draw(hashes.filter(lambda h: h != new_root)), proof)
    other_old = data.draw(st.integers(1, new).filter(lambda m: m != old))
    assert not verify_consistency(other_old, new, _TREE.root(other_old), new_root, proof)
    other_new = data.draw(st.integers(old, MAX_SIZE).filter(lambda n: n != new))
    assert not verify_consistency(old, other_new, old_root, _TREE.root(other_new), proof)
    assert not verify_consistency(0, new, merkle.EMPTY_ROOT, new_root, proof)  # size 0 takes no proof
    assert not verify_consistency(0, new, old_root, new_root, [])  # and only the empty root
    # A rewritten history: the same sizes, but the new tree does not start with the old one.
    rewritten = merkle.MerkleTree([_TREE.leaf(i) for i in range(old - 1)] + [merkle.leaf_hash(b"forged")]
                                  + [_TREE.leaf(i) for i in range(old, new)])
    assert not verify_consistency(old, new, old_root, rewritten.root(), rewritten.consistency_proof(old))
    assert not verify_consistency(old, new, old_root, rewritten.root(), proof)


@pytest.mark.parametrize("name", sorted(VERIFIERS))
def test_equal_sizes_take_an_empty_proof_and_equal_roots(name: str) -> None:
    _, verify_consistency = VERIFIERS[name]
    root = _TREE.root(7)
    assert verify_consistency(7, 7, root, root, [])
    assert not verify_consistency(7, 7, root, root, [root])
    assert not verify_consistency(7, 7, root, _TREE.root(8), [])
    assert not verify_consistency(-1, 7, root, root, [])
    assert verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])


# ---------------------------------------------------------------------- RFC 6962 / 9162 known answers
# The Certificate Transparency reference data (RFC 6962 test vectors, as published by
# transparency-dev/merkle testonly/constants.go and google/certificate-transparency): the leaves,
# the tree head of each size 0..8, and some proofs. RFC 9162 keeps RFC 6962's hashing, so a tree
# that disagrees with these is one no other implementation can check.
CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
CT_CONSISTENCY = [
    (1, 1, []),
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def _ct_tree() -> merkle.MerkleTree:
    return merkle.MerkleTree(merkle.leaf_hash(bytes.fromhex(h)) for h in CT_LEAVES)


def test_tree_heads_match_the_rfc6962_reference_roots() -> None:
    tree = _ct_tree()
    assert [tree.root(n).hex() for n in range(9)] == CT_ROOTS


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_reference_inclusion_proofs_are_produced_and_accepted(name: str, index: int, size: int,
                                                              path: list[str]) -> None:
    verify_inclusion, _ = VERIFIERS[name]
    tree = _ct_tree()
    assert [p.hex() for p in tree.inclusion_proof(index, size)] == path
    proof = [bytes.fromhex(p) for p in path]
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(tree.leaf(index), index, size, proof, root)
    assert not verify_inclusion(tree.leaf(index), index ^ 1, size, proof, root)


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_reference_consistency_proofs_are_produced_and_accepted(name: str, old: int, new: int,
                                                                path: list[str]) -> None:
    _, verify_consistency = VERIFIERS[name]
    tree = _ct_tree()
    assert [p.hex() for p in tree.consistency_proof(old, new)] == path
    proof = [bytes.fromhex(p) for p in path]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)
    if old != new:
        assert not verify_consistency(old, new, new_root, new_root, proof)
