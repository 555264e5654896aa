"""The key ring: AES-256-GCM bound to each value's place, rotation, no silent edits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_adapters.crypto import (
    CiphertextMisplaced,
    DecryptionFailed,
    KeyConfigError,
    KeyRing,
    UnboundCiphertext,
    place,
)
from movecar_core.errors import MoveCarError

OLD, NEW = KeyRing.generate(), KeyRing.generate()
HERE = place("case-1", 1, "CaseOpened", "requester_phone")

# Places as the store makes them: case ids of its alphabet, versions, the event types and
# fields that hold phones (and others, so the property does not lean on the vocabulary).
case_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
places = st.builds(
    place,
    case_ids,
    st.integers(1, 10**6),
    st.sampled_from(["CaseOpened", "OwnerLookedUp", "OwnerCallPlaced"]),
    st.sampled_from(["requester_phone", "owner_phone", "note"]),
)


@given(st.text(max_size=50), places)
def test_round_trip_with_a_fresh_nonce_each_time(plaintext: str, where: str) -> None:
    ring = KeyRing([("k1", OLD)])
    first, second = ring.encrypt(plaintext, where), ring.encrypt(plaintext, where)
    assert first != second  # equal numbers do not give equal tokens
    assert ring.decrypt(first, where) == ring.decrypt(second, where) == plaintext
    assert first.startswith("~1:k1:") and ring.key_id_of(first) == "k1"


@given(places, places, st.sampled_from(["13912345678", "0519-81997327"]))
def test_a_token_opens_only_in_its_own_place(here: str, there: str, phone: str) -> None:
    ring = KeyRing([("k1", OLD)])
    stored = ring.encrypt(phone, here)
    if here == there:
        assert ring.decrypt(stored, there) == phone
        return
    with pytest.raises(CiphertextMisplaced) as refused:
        ring.decrypt(stored, there)
    message = str(refused.value)
    assert phone not in message and OLD not in message and stored not in message
    assert isinstance(refused.value, MoveCarError)


def test_each_part_of_the_place_is_bound() -> None:
    ring = KeyRing([("k1", OLD)])
    stored = ring.encrypt("13912345678", HERE)
    for other in (
        place("case-2", 1, "CaseOpened", "requester_phone"),  # another case
        place("case-1", 2, "CaseOpened", "requester_phone"),  # another version
        place("case-1", 1, "OwnerLookedUp", "requester_phone"),  # another record type
        place("case-1", 1, "CaseOpened", "owner_phone"),  # another field
        place("case-", 11, "CaseOpened", "requester_phone"),  # no sliding between parts
    ):
        with pytest.raises(CiphertextMisplaced, match="does not open at case"):
            ring.decrypt(stored, other)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="


@given(position=st.integers(0, 10**6), shift=st.integers(1, len(_B64) - 1))
def test_any_edit_of_a_token_is_refused(position: int, shift: int) -> None:
    ring = KeyRing([("k1", OLD)])
    stored = ring.encrypt("13912345678", HERE)  # a fresh nonce each time: the draws must
    head = len("~1:k1:")  # not depend on the token itself
    i = head + position % (len(stored) - head)
    new = _B64[(_B64.index(stored[i]) + shift) % len(_B64)]
    with pytest.raises(DecryptionFailed):
        ring.decrypt(stored[:i] + new + stored[i + 1 :], HERE)


@given(places, places)
def test_rotation_keeps_the_binding(here: str, there: str) -> None:
    old_ring = KeyRing([("k1", OLD)])
    stored = old_ring.encrypt("0519-81997327", here)
    ring = KeyRing.from_config(f"k2={NEW},k1={OLD}")
    assert ring.needs_rotation(stored)
    assert ring.decrypt(stored, here) == "0519-81997327"
    rotated = ring.rotate(stored, here)
    assert ring.key_id_of(rotated) == "k2" and ring.is_bound(rotated)
    assert ring.rotate(rotated, here) == rotated
    assert ring.decrypt(rotated, here) == "0519-81997327"
    if there != here:
        with pytest.raises(CiphertextMisplaced):
            ring.decrypt(rotated, there)
        with pytest.raises(CiphertextMisplaced):  # nor can rotation launder a moved token
            ring.rotate(stored, there)
    with pytest.raises(DecryptionFailed, match="k2"):
        old_ring.decrypt(rotated, here)  # a ring without the new key cannot read it


def test_a_token_moved_under_another_key_id_does_not_decrypt() -> None:
    ring = KeyRing([("k2", NEW), ("k1", NEW)])  # same key bytes, different ids
    stored = ring.encrypt("13912345678", HERE)
    with pytest.raises(DecryptionFailed):
        ring.decrypt("~1:k1:" + stored.rpartition(":")[2], HERE)  # the key id is bound


def test_legacy_tokens_are_refused_and_rebound_only_by_rotation() -> None:
    ring = KeyRing([("k1", OLD)])
    legacy = ring.encrypt_legacy("13912345678")
    assert not ring.is_bound(legacy) and ring.key_id_of(legacy) == "k1"
    assert ring.needs_rotation(legacy)  # even under the newest key
    with pytest.raises(UnboundCiphertext, match="keys rotate") as refused:
        ring.decrypt(legacy, HERE)
    assert "13912345678" not in str(refused.value)
    assert ring.decrypt_legacy(legacy) == "13912345678"
    rebound = ring.rotate(legacy, HERE)
    assert ring.is_bound(rebound) and ring.decrypt(rebound, HERE) == "13912345678"
    other = place("case-2", 1, "CaseOpened", "requester_phone")
    with pytest.raises(CiphertextMisplaced):
        ring.decrypt(rebound, other)


def test_neither_form_can_be_relabelled_as_the_other() -> None:
    ring = KeyRing([("k1", OLD)])
    legacy = ring.encrypt_legacy("13912345678")
    with pytest.raises(CiphertextMisplaced):
        ring.decrypt("~1:" + legacy, HERE)  # a legacy token dressed as a bound one
    bound = ring.encrypt("13912345678", HERE)
    with pytest.raises(DecryptionFailed):
        ring.decrypt_legacy(bound.removeprefix("~1:"))  # a bound one passed off as legacy
    for odd in ("~2:k1:" + bound.rpartition(":")[2], "k1", "~1:k1", "~1:k1:x:" + "A" * 40):
        with pytest.raises(DecryptionFailed):
            ring.decrypt(odd, HERE)


@pytest.mark.parametrize(
    "spec",
    ["", "k1", f"k1={OLD},k1={NEW}", "k1=short", f"a:b={OLD}", f"k1={OLD[:-4]}"],
)
def test_bad_key_configuration_is_refused(spec: str) -> None:
    with pytest.raises(KeyConfigError):
        KeyRing.from_config(spec)


def test_keys_come_from_the_environment_only_when_set() -> None:
    with pytest.raises(KeyConfigError, match="MOVECAR_KEYS"):
        KeyRing.from_env({})
    assert KeyRing.from_env({"MOVECAR_KEYS": f"k1={OLD}"}).current_id == "k1"
