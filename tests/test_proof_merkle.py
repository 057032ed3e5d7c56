"""RFC 6962 / RFC 9162 Merkle hashing and proofs against the Certificate Transparency vectors."""

from __future__ import annotations

import pytest

from station.proof import merkle

CT_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
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
LEAVES = [merkle.leaf_hash(bytes.fromhex(h)) for h in CT_INPUTS]


@pytest.mark.parametrize("size", range(9))
def test_roots_match_rfc6962_vectors(size: int) -> None:
    assert merkle.root(LEAVES[:size]).hex() == CT_ROOTS[size]


@pytest.mark.parametrize(
    ("index", "proof"),
    [
        (
            0,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ],
)
def test_inclusion_proof_vectors(index: int, proof: list[str]) -> None:
    got = merkle.inclusion_proof(index, LEAVES)
    assert [p.hex() for p in got] == proof
    assert merkle.verify_inclusion(index, 8, LEAVES[index], got, bytes.fromhex(CT_ROOTS[8]))


@pytest.mark.parametrize(
    ("old", "new", "proof"),
    [
        (
            1,
            8,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ],
)
def test_consistency_proof_vectors(old: int, new: int, proof: list[str]) -> None:
    got = merkle.consistency_proof(old, LEAVES[:new])
    assert [p.hex() for p in got] == proof
    r1, r2 = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert merkle.verify_consistency(old, new, got, r1, r2)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"leaf {i}".encode()) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33])
def test_every_inclusion_proof_verifies_and_nothing_else_does(n: int) -> None:
    leaves = _leaves(n)
    root = merkle.root(leaves)
    other = merkle.leaf_hash(b"not in the tree")
    for i in range(n):
        proof = merkle.inclusion_proof(i, leaves)
        assert merkle.verify_inclusion(i, n, leaves[i], proof, root)
        assert not merkle.verify_inclusion(i, n, other, proof, root)
        assert not merkle.verify_inclusion(i, n, leaves[i], [*proof, other], root)
        if n > 1:
            assert not merkle.verify_inclusion((i + 1) % n, n, leaves[i], proof, root)
        if proof:
            bad = [*proof[:-1], merkle.leaf_hash(b"x")]
            assert not merkle.verify_inclusion(i, n, leaves[i], bad, root)


@pytest.mark.parametrize("n", [2, 3, 4, 7, 8, 13, 20])
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(n: int) -> None:
    leaves = _leaves(n)
    root = merkle.root(leaves)
    for m in range(1, n + 1):
        proof = merkle.consistency_proof(m, leaves)
        old_root = merkle.root(leaves[:m])
        assert merkle.verify_consistency(m, n, proof, old_root, root)
        forked = [*leaves[: m - 1], merkle.leaf_hash(b"forged"), *leaves[m:]]
        assert not merkle.verify_consistency(m, n, proof, old_root, merkle.root(forked))
        if m < n:
            assert not merkle.verify_consistency(m, n, proof, merkle.root(forked[:m]), root)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_proof(3, _leaves(3))
    with pytest.raises(ValueError):
        merkle.consistency_proof(0, _leaves(3))
    assert not merkle.verify_inclusion(0, 0, b"", [], merkle.EMPTY_ROOT)
    assert not merkle.verify_consistency(3, 2, [], b"", b"")
    assert merkle.verify_consistency(0, 5, [], merkle.EMPTY_ROOT, merkle.root(_leaves(5)))
