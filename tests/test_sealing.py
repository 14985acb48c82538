"""AES-256-GCM sealing of decryption shards: round trip and every kind of rejection."""

from __future__ import annotations

import pytest

from fedtab.errors import KeyMaterialError, ProtocolError
from fedtab.securesum.sealing import generate_shard_key, seal, unseal

AAD = b"job=j1|round=3|step=hist|shard=0|bank=bank-a|key=abcd"


def test_round_trip_and_size() -> None:
    key = generate_shard_key()
    assert len(key) == 32
    plaintext = bytes(range(256)) * 40
    sealed = seal(key, plaintext, AAD)
    assert len(sealed) == len(plaintext) + 12 + 16
    assert plaintext not in sealed
    assert unseal(key, sealed, AAD) == plaintext
    assert unseal(key, seal(key, b"", AAD), AAD) == b""


def test_fresh_nonce_and_key_each_time() -> None:
    key = generate_shard_key()
    assert generate_shard_key() != key
    first, second = seal(key, b"same", AAD), seal(key, b"same", AAD)
    assert first[:12] != second[:12] and first != second


@pytest.mark.parametrize("position", [0, 12, -1])
def test_tampered_byte_is_rejected(position: int) -> None:
    key = generate_shard_key()
    sealed = bytearray(seal(key, b"aggregate shard", AAD))
    sealed[position] ^= 0x01
    with pytest.raises(ProtocolError, match="failed authentication"):
        unseal(key, bytes(sealed), AAD)


def test_wrong_aad_is_rejected() -> None:
    key = generate_shard_key()
    sealed = seal(key, b"aggregate shard", AAD)
    with pytest.raises(ProtocolError, match="failed authentication"):
        unseal(key, sealed, AAD.replace(b"round=3", b"round=4"))


def test_wrong_key_is_rejected() -> None:
    sealed = seal(generate_shard_key(), b"aggregate shard", AAD)
    with pytest.raises(ProtocolError, match="failed authentication"):
        unseal(generate_shard_key(), sealed, AAD)


def test_truncated_is_rejected() -> None:
    key = generate_shard_key()
    sealed = seal(key, b"aggregate shard", AAD)
    for cut in (0, 5, 27, len(sealed) - 1):
        with pytest.raises(ProtocolError, match="failed authentication"):
            unseal(key, sealed[:cut], AAD)


def test_bad_key_length() -> None:
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        seal(b"short", b"x", AAD)
    with pytest.raises(KeyMaterialError, match="32 bytes"):
        unseal(b"\0" * 16, b"\0" * 40, AAD)
