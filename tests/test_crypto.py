"""The key ring: AES-256-GCM with key ids, rotation, and no silent acceptance of edits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from movecar_adapters.crypto import DecryptionFailed, KeyConfigError, KeyRing

OLD, NEW = KeyRing.generate(), KeyRing.generate()


@given(st.text(max_size=50))
def test_round_trip_with_a_fresh_nonce_each_time(plaintext: str) -> None:
    ring = KeyRing([("k1", OLD)])
    first, second = ring.encrypt(plaintext), ring.encrypt(plaintext)
    assert first != second  # equal numbers do not give equal tokens
    assert ring.decrypt(first) == ring.decrypt(second) == plaintext


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="


@given(position=st.integers(0, 10**6), shift=st.integers(1, len(_B64) - 1))
def test_any_edit_of_a_token_is_refused(position: int, shift: int) -> None:
    ring = KeyRing([("k1", OLD)])
    stored = ring.encrypt("13912345678")  # a fresh nonce each time: the draws must not
    i = len("k1:") + position % (len(stored) - len("k1:"))  # depend on the token itself
    new = _B64[(_B64.index(stored[i]) + shift) % len(_B64)]
    with pytest.raises(DecryptionFailed):
        ring.decrypt(stored[:i] + new + stored[i + 1 :])


def test_rotation_keeps_old_rows_readable_and_moves_them_to_the_new_key() -> None:
    old_ring = KeyRing([("k1", OLD)])
    stored = old_ring.encrypt("0519-81997327")
    ring = KeyRing.from_config(f"k2={NEW},k1={OLD}")
    assert ring.needs_rotation(stored)
    assert ring.decrypt(stored) == "0519-81997327"
    rotated = ring.rotate(stored)
    assert ring.key_id_of(rotated) == "k2"
    assert ring.rotate(rotated) == rotated
    with pytest.raises(DecryptionFailed, match="k2"):
        old_ring.decrypt(rotated)  # a ring without the new key cannot read it


def test_a_token_moved_under_another_key_id_does_not_decrypt() -> None:
    ring = KeyRing([("k2", NEW), ("k1", NEW)])  # same key bytes, different ids
    stored = ring.encrypt("13912345678")
    with pytest.raises(DecryptionFailed):
        ring.decrypt("k1:" + stored.partition(":")[2])  # the key id is authenticated


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
