"""Wire format of packed ciphertext vectors: exact round trips and strict parsing."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedtab.crypto import (
    EncodingSpec,
    EncryptedVector,
    Encryptor,
    add_encrypted,
    encrypted_vector_from_bytes,
    encrypted_vector_to_bytes,
    encrypted_vector_wire_size,
)
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.keys import PrivateKey, generate_keypair
from fedtab.crypto.wire import HEADER_SIZE, MAGIC, TRAILER_SIZE, ciphertext_width
from fedtab.errors import CiphertextError, EncodingError, WireFormatError

SPEC = EncodingSpec(frac_bits=24, clip=2.0**20, max_summands=16)


def _reseal(data: bytes | bytearray) -> bytes:
    """Recompute the CRC trailer so that the checks behind it are exercised."""
    body = bytes(data[:-TRAILER_SIZE])
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def vector(small_private_key: PrivateKey) -> Iterator[EncryptedVector]:
    values = np.linspace(-SPEC.clip, SPEC.clip, 47)  # 3 ciphertexts, the last one not full
    with Encryptor(small_private_key.public) as enc:
        parts = [enc.encrypt(values, SPEC) for _ in range(3)]
    yield add_encrypted(parts, small_private_key.public)


def test_round_trip_is_exact(small_private_key: PrivateKey, vector: EncryptedVector) -> None:
    data = encrypted_vector_to_bytes(vector)
    width = ciphertext_width(small_private_key.public)
    assert width == 256
    assert data[:4] == MAGIC
    assert len(data) == HEADER_SIZE + len(vector.ciphertexts) * width + TRAILER_SIZE
    back = encrypted_vector_from_bytes(data, small_private_key.public)
    assert back == vector and back.ciphertexts == vector.ciphertexts
    assert back.summands == 3 and back.spec == SPEC and back.length == 47
    assert encrypted_vector_to_bytes(back) == data
    with Decryptor(small_private_key) as dec:
        assert np.allclose(dec.decrypt(back), 3 * np.linspace(-SPEC.clip, SPEC.clip, 47))


def test_wire_size_is_the_serialised_length(vector: EncryptedVector) -> None:
    assert encrypted_vector_wire_size(vector) == len(encrypted_vector_to_bytes(vector))


def test_empty_vector_round_trips(small_private_key: PrivateKey) -> None:
    with Encryptor(small_private_key.public) as enc:
        empty = enc.encrypt(np.zeros(0), SPEC)
    data = encrypted_vector_to_bytes(empty)
    assert len(data) == HEADER_SIZE + TRAILER_SIZE
    assert encrypted_vector_from_bytes(data, small_private_key.public) == empty


def test_a_real_2048_bit_vector_is_compact(private_key_2048: PrivateKey) -> None:
    values = np.random.default_rng(0).uniform(-SPEC.clip, SPEC.clip, 4000)
    with Encryptor(private_key_2048.public) as enc:
        data = encrypted_vector_to_bytes(enc.encrypt(values, SPEC))
    assert len(data) / 4000 <= 16  # a bare phe ciphertext is 512 bytes per value
    back = encrypted_vector_from_bytes(data, private_key_2048.public)
    assert back.length == 4000 and len(back.ciphertexts) == 100


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(0, 10_000))
def test_any_truncation_or_extension_is_rejected(
    small_private_key: PrivateKey, vector: EncryptedVector, cut: int
) -> None:
    data = encrypted_vector_to_bytes(vector)
    cut %= len(data)
    with pytest.raises(WireFormatError):
        encrypted_vector_from_bytes(data[:cut], small_private_key.public)
    with pytest.raises(WireFormatError):
        encrypted_vector_from_bytes(data + data[: cut + 1], small_private_key.public)


@pytest.mark.parametrize(
    ("offset", "new", "error", "match"),
    [
        (0, b"XXXX", WireFormatError, "magic"),
        (4, b"\x02", WireFormatError, "version"),
        (5, b"\x00" * 32, CiphertextError, "key"),
        (37, b"\x99", WireFormatError, "encoding"),  # frac_bits 153
        (37, b"\x17", WireFormatError, "inconsistent"),  # frac_bits 23: slot layout differs
        (38, struct.pack(">d", float("nan")), WireFormatError, "encoding"),
        (46, struct.pack(">I", 0), WireFormatError, "encoding"),
        (50, struct.pack(">Q", 200), WireFormatError, "inconsistent"),
        (58, struct.pack(">I", 0), WireFormatError, "inconsistent"),
        (58, struct.pack(">I", 17), WireFormatError, "inconsistent"),
        (62, struct.pack(">H", 49), WireFormatError, "inconsistent"),
        (64, struct.pack(">I", 15), WireFormatError, "inconsistent"),
        (68, struct.pack(">I", 2), WireFormatError, "inconsistent"),
        (72, struct.pack(">H", 255), WireFormatError, "width"),
    ],
)
def test_corrupt_headers_are_rejected(
    small_private_key: PrivateKey,
    vector: EncryptedVector,
    offset: int,
    new: bytes,
    error: type[Exception],
    match: str,
) -> None:
    data = bytearray(encrypted_vector_to_bytes(vector))
    data[offset : offset + len(new)] = new
    with pytest.raises(error, match=match):
        encrypted_vector_from_bytes(_reseal(data), small_private_key.public)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(4, 10_000), flip=st.integers(1, 255))
def test_any_corrupted_byte_is_caught_by_the_checksum(
    small_private_key: PrivateKey, vector: EncryptedVector, position: int, flip: int
) -> None:
    data = bytearray(encrypted_vector_to_bytes(vector))
    data[position % len(data)] ^= flip
    with pytest.raises((WireFormatError, CiphertextError)):
        encrypted_vector_from_bytes(bytes(data), small_private_key.public)


def test_length_corruption_is_caught_by_the_checksum(
    small_private_key: PrivateKey, vector: EncryptedVector
) -> None:
    data = bytearray(encrypted_vector_to_bytes(vector))
    data[50:58] = struct.pack(">Q", 48)  # same slot layout: only the checksum can tell
    with pytest.raises(WireFormatError, match="checksum"):
        encrypted_vector_from_bytes(bytes(data), small_private_key.public)


def test_invalid_ciphertext_bytes_are_rejected(
    small_private_key: PrivateKey, vector: EncryptedVector
) -> None:
    width = ciphertext_width(small_private_key.public)
    data = encrypted_vector_to_bytes(vector)
    for body in (b"\xff" * width, b"\x00" * width, small_private_key.p.to_bytes(width, "big")):
        second = HEADER_SIZE + width
        bad = data[:second] + body + data[second + width :]
        with pytest.raises(CiphertextError, match="ciphertext 1"):
            encrypted_vector_from_bytes(_reseal(bad), small_private_key.public)


def test_a_flipped_ciphertext_bit_never_decodes_silently(
    small_private_key: PrivateKey, vector: EncryptedVector
) -> None:
    data = bytearray(encrypted_vector_to_bytes(vector))
    data[HEADER_SIZE + 100] ^= 0x10
    with pytest.raises(WireFormatError, match="checksum"):
        encrypted_vector_from_bytes(bytes(data), small_private_key.public)
    resealed = encrypted_vector_from_bytes(_reseal(data), small_private_key.public)
    with Decryptor(small_private_key) as dec, pytest.raises(EncodingError):
        dec.decrypt(resealed)


def test_foreign_key_is_rejected(vector: EncryptedVector) -> None:
    other = generate_keypair(1024, allow_small_for_tests=True)
    with pytest.raises(CiphertextError, match="key"):
        encrypted_vector_from_bytes(encrypted_vector_to_bytes(vector), other.public)


def test_vectors_without_key_size_cannot_be_serialised(vector: EncryptedVector) -> None:
    with pytest.raises(WireFormatError, match="key size"):
        encrypted_vector_to_bytes(replace(vector, key_bits=0))


def test_no_pickle_in_the_format(vector: EncryptedVector) -> None:
    data = encrypted_vector_to_bytes(vector)
    assert b"\x80\x04" not in data[:HEADER_SIZE] and b"\x80\x05" not in data[:HEADER_SIZE]
