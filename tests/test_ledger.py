"""The ledger's Merkle tree (RFC 6962), proofs, leaves and checkpoint text."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_core.errors import InvalidInput
from movecar_core.integrity import canonical_json
from movecar_core.ledger import (
    EMPTY_ROOT,
    Checkpoint,
    CompactTree,
    InvalidCheckpoint,
    InvalidProof,
    LeafKind,
    checkpoint_message,
    consistency_proof,
    event_leaf,
    inclusion_proof,
    leaf_hash,
    leaf_json,
    merkle_root,
    node_hash,
    settlement_leaf,
    utc_text,
    verify_consistency,
    verify_inclusion,
)

#: The test vectors of Certificate Transparency's Merkle tree tests (RFC 6962 trees of
#: 1 to 8 leaves over these inputs), as the Go and C++ implementations use them.
CT_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
             "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(hashes: list[str]) -> str:
    """RFC 6962 §2.1's MTH, written as the RFC writes it (recursively)."""
    if not hashes:
        return hashlib.sha256(b"").hexdigest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def leaves(n: int) -> list[str]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_ct_vectors() -> None:
    hashed = [leaf_hash(bytes.fromhex(x)) for x in CT_INPUTS]
    assert merkle_root([]) == EMPTY_ROOT
    for n in range(1, 9):
        assert merkle_root(hashed[:n]) == CT_ROOTS[n - 1]


@given(st.integers(0, 300))
def test_compact_tree_equals_the_rfc_definition(n: int) -> None:
    hashed = leaves(n)
    tree = CompactTree()
    for i, h in enumerate(hashed):
        tree.append(h)
        assert tree.size == i + 1
    assert tree.root() == reference_root(hashed)
    assert CompactTree.from_json(tree.to_json()) == tree


@given(st.data())
def test_every_inclusion_proof_verifies_and_no_other_leaf_does(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 200))
    index = data.draw(st.integers(0, n - 1))
    hashed = leaves(n)
    root = merkle_root(hashed)
    proof = inclusion_proof(hashed, index)
    assert verify_inclusion(hashed[index], index, n, proof, root)
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index)) if n > 1 else None
    if other is not None:
        assert not verify_inclusion(hashed[other], index, n, proof, root)
        assert not verify_inclusion(hashed[index], other, n, proof, root)
    if proof:
        spot = data.draw(st.integers(0, len(proof) - 1))
        bent = [*proof]
        bent[spot] = leaf_hash(b"forged")
        assert not verify_inclusion(hashed[index], index, n, bent, root)


@given(st.data())
def test_consistency_proofs_prove_prefixes_and_only_prefixes(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 200))
    m = data.draw(st.integers(0, n))
    hashed = leaves(n)
    old, new = merkle_root(hashed[:m]), merkle_root(hashed)
    proof = consistency_proof(hashed, m)
    assert verify_consistency(m, old, n, new, proof)
    if 0 < m < n:
        # the same sizes, but the old tree had a leaf the new one does not
        changed = [*hashed[:m]]
        changed[data.draw(st.integers(0, m - 1))] = leaf_hash(b"rewritten")
        assert not verify_consistency(m, merkle_root(changed), n, new, proof)
        assert not verify_consistency(m, old, n, merkle_root([*hashed[:-1], old]), proof)
        if proof:
            spot = data.draw(st.integers(0, len(proof) - 1))
            bent = [*proof]
            bent[spot] = leaf_hash(b"forged")
            assert not verify_consistency(m, old, n, new, bent)


def test_malformed_proofs_are_typed_errors() -> None:
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash(b""), 0, 1, ["zz"], EMPTY_ROOT)
    with pytest.raises(InvalidProof):
        verify_consistency(1, EMPTY_ROOT, 2, EMPTY_ROOT, "not a list")  # type: ignore[arg-type]
    with pytest.raises(InvalidProof):
        inclusion_proof(leaves(3), 3)
    assert not verify_inclusion(leaf_hash(b""), -1, 1, [], EMPTY_ROOT)


def test_compact_tree_refuses_what_is_not_a_tree() -> None:
    for text in ["", "[]", '{"size": 3, "peaks": []}', '{"size": -1, "peaks": []}',
                 '{"size": 1, "peaks": ["x"]}', "[" * 100_000]:  # fmt: skip
        with pytest.raises(InvalidInput):
            CompactTree.from_json(text)


AT = dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)


def test_leaves_cover_every_field() -> None:
    base = event_leaf("c1", 1, 3, AT, "a" * 64)
    assert base.kind is LeafKind.EVENT and base.subject == "c1/3" and base.case_id == "c1"
    assert event_leaf("c1", 1, 3, AT, "a" * 64) == base
    for other in [
        event_leaf("c2", 1, 3, AT, "a" * 64),
        event_leaf("c1", 2, 3, AT, "a" * 64),
        event_leaf("c1", 1, 4, AT, "a" * 64),
        event_leaf("c1", 1, 3, AT + dt.timedelta(microseconds=1), "a" * 64),
        event_leaf("c1", 1, 3, AT, "b" * 64),
    ]:
        assert other.hash != base.hash
    # the same instant in another zone is the same record
    shanghai = AT.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert event_leaf("c1", 1, 3, shanghai, "a" * 64) == base

    def fee_leaf(price: str, fee: str) -> str:
        return settlement_leaf(
            "2025-03",
            AT,
            billable_calls=10,
            unit_price=Decimal(price),
            fee=Decimal(fee),
            report_digest="d" * 64,
        ).hash

    # one amount, one leaf (the columns keep two places); another amount, another leaf
    assert fee_leaf("1.50", "15.00") == fee_leaf("1.5", "15")
    assert fee_leaf("1.50", "15.00") != fee_leaf("1.51", "15.00")


SIGNATURE = "A" * 86 + "=="


def test_checkpoint_json_round_trip_and_refusals() -> None:
    cp = Checkpoint(5, "f" * 64, AT, "0123456789abcdef", SIGNATURE)
    assert Checkpoint.parse(cp.to_json()) == cp
    assert cp.message() == checkpoint_message(5, "f" * 64, AT, "0123456789abcdef")
    assert cp.message().startswith(b"movecar-checkpoint/1\nsize 5\n")
    bad = [
        "not json",
        "[]",
        cp.to_json().replace('"size": 5', '"size": -5'),
        cp.to_json().replace('"size": 5', '"size": true'),
        cp.to_json().replace("f" * 64, "F" * 64),
        cp.to_json().replace("0123456789abcdef", "xyz"),
        cp.to_json().replace(SIGNATURE, "AAAA"),
        cp.to_json().replace("movecar-checkpoint/1", "other/1"),
        cp.to_json().replace("2025-03-01T08:30:00.000000Z", "yesterday"),
        cp.to_json()[:-1] + ', "extra": 1}',
        "[" * 100_000,
        " " * 5000,
    ]
    for text in bad:
        with pytest.raises(InvalidCheckpoint):
            Checkpoint.parse(text)


LEAF_VALUES = st.lists(
    st.one_of(
        st.text(),
        st.integers(),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),  # not a leaf value: goes the defining way
        st.lists(st.integers(), max_size=2),
    ),
    max_size=8,
)


@given(LEAF_VALUES)
def test_leaf_json_is_canonical_json(values: list[object]) -> None:
    assert leaf_json(values) == canonical_json(values)


@given(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [
                dt.UTC,
                dt.timezone(dt.timedelta(hours=8)),
                dt.timezone(dt.timedelta(hours=-11, minutes=-30)),
            ]
        ),
    )
)
def test_utc_text_is_the_utc_instant(at: dt.datetime) -> None:
    defining = at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    assert utc_text(at) == defining + "Z"
