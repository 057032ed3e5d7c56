"""RFC 6962 Merkle tree hashing with RFC 9162 inclusion and consistency proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# one copy of the hashing and of the proof checks: the verifier shipped inside evidence bundles
# runs alone (no packcam), so it holds them and the station uses its copy
from station.proof.standalone_verify import (
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (RFC 6962 2.1), iteratively: a stack of full subtrees."""
    if not leaves:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right
    for h in leaves:
        height, node = 0, h
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            node = node_hash(left, node)
            height += 1
        stack.append((height, node))
    # Fold the ragged right edge: smaller subtrees hang off the right of larger ones.
    node = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        node = node_hash(left, node)
    return node


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 2.1.1: the audit path for leaf ``index``."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside a tree of size {n}")
    proof: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            proof.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root(leaves[lo : lo + k]))
            lo = lo + k
    proof.reverse()  # PATH lists siblings from the leaf upwards
    return proof


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 2.1.2 between the first ``old_size`` leaves and all of them."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from size {old_size} to {n}")

    def sub(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi - lo:
            return [] if whole else [root(leaves[lo:hi])]
        k = _split(hi - lo)
        if m <= k:
            return [*sub(m, lo, lo + k, whole), root(leaves[lo + k : hi])]
        return [*sub(m - k, lo + k, hi, False), root(leaves[lo : lo + k])]

    return sub(old_size, 0, n, True)
