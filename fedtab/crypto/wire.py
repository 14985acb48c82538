"""Byte format of a packed ciphertext vector (no pickle).

Threat model: these bytes cross the network between banks and the aggregator and may be
truncated, corrupted or crafted. Parsing is strict: exact sizes, a known magic and version, the
receiver's own key fingerprint, encoding parameters that reproduce the declared slot layout,
and every ciphertext checked to be a unit of ``Z_{n^2}``. Only the public key is needed.

Layout (all integers big-endian)::

    offset size field
    0      4    magic b"FTPV"
    4      1    version (1)
    5      32   key fingerprint (SHA-256 of n, raw bytes)
    37     1    frac_bits
    38     8    clip (IEEE-754 float64)
    46     4    max_summands
    50     8    length (float values)
    58     4    summands
    62     2    slot_bits
    64     4    values per plaintext (slot count used per ciphertext)
    68     4    ciphertext count
    72     2    ciphertext width in bytes (= byte length of n^2)
    74     ...  count x width bytes: the ciphertexts, fixed width, big-endian
    end-4  4    CRC-32 of everything before it

The CRC catches accidental corruption (including of fields such as ``length`` that no other
check can vouch for); it is not authentication. Against active attackers the transport's mTLS
protects messages; the protocol's parties are honest-but-curious.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from fedtab.crypto.ciphertexts import EncryptedVector, num_ciphertexts, validate_ciphertexts
from fedtab.crypto.encoding import EncodingSpec, plaintext_layout, slot_bits
from fedtab.crypto.keys import PublicKey
from fedtab.errors import CiphertextError, EncodingError, WireFormatError

MAGIC = b"FTPV"
VERSION = 1
_HEADER = struct.Struct(">4sB32sBdIQIHIIH")
HEADER_SIZE = _HEADER.size
_CRC = struct.Struct(">I")
TRAILER_SIZE = _CRC.size


def ciphertext_width(public_key: PublicKey) -> int:
    """Bytes per ciphertext on the wire: the byte length of ``n^2``."""
    return _width_for_bits(public_key.bits)


def _width_for_bits(key_bits: int) -> int:
    # n^2 has 2*bits or 2*bits - 1 bits; with an even key size both round to the same bytes.
    return (2 * key_bits + 7) // 8


def encrypted_vector_wire_size(vector: EncryptedVector) -> int:
    """Bytes :func:`encrypted_vector_to_bytes` produces for ``vector``, without serialising it."""
    return HEADER_SIZE + len(vector.ciphertexts) * _width_for_bits(vector.key_bits) + TRAILER_SIZE


def encrypted_vector_to_bytes(vector: EncryptedVector) -> bytes:
    """Serialise a vector: the header above plus fixed-width big-endian ciphertexts.

    Raises :class:`WireFormatError` when the vector does not record its key size
    (``key_bits == 0``) or a field or ciphertext does not fit the format.
    """
    if vector.key_bits <= 0:
        raise WireFormatError(
            "the vector does not record its key size (key_bits=0); build it with "
            "Encryptor, add_encrypted or encrypted_vector_from_bytes"
        )
    width = _width_for_bits(vector.key_bits)
    spec = vector.spec
    count = len(vector.ciphertexts)
    try:
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            bytes.fromhex(vector.fingerprint),
            spec.frac_bits,
            spec.clip,
            spec.max_summands,
            vector.length,
            vector.summands,
            slot_bits(spec),
            plaintext_layout(vector.length, count),
            count,
            width,
        )
        body = b"".join(int(c).to_bytes(width, "big") for c in vector.ciphertexts)
    except (struct.error, ValueError, OverflowError) as exc:
        raise WireFormatError(f"vector does not fit the wire format: {exc}") from exc
    message = header + body
    return message + _CRC.pack(zlib.crc32(message))


def encrypted_vector_from_bytes(data: bytes, public_key: PublicKey) -> EncryptedVector:
    """Parse bytes from :func:`encrypted_vector_to_bytes` for ``public_key``.

    Raises :class:`WireFormatError` for truncated, oversized or malformed bytes and
    :class:`CiphertextError` for another key's vector or an invalid ciphertext.
    """
    data = _checked_frame(bytes(data))
    header = _HEADER.unpack_from(data)
    spec, length, summands, count, width = _checked_header(header, public_key)
    if len(data) != HEADER_SIZE + count * width:
        raise WireFormatError(
            f"vector body is {len(data) - HEADER_SIZE} bytes, header declares {count * width}"
        )
    ciphertexts = tuple(
        int.from_bytes(data[off : off + width], "big")
        for off in range(HEADER_SIZE, len(data), width)
    )
    validate_ciphertexts(ciphertexts, public_key)
    return EncryptedVector(
        fingerprint=public_key.fingerprint,
        spec=spec,
        length=length,
        summands=summands,
        ciphertexts=ciphertexts,
        key_bits=public_key.bits,
    )


def _checked_frame(data: bytes) -> bytes:
    """Header and body of a vector whose size, magic, version and checksum are right."""
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        raise WireFormatError(
            f"truncated vector: {len(data)} bytes, header and checksum need "
            f"{HEADER_SIZE + TRAILER_SIZE}"
        )
    magic, version = _HEADER.unpack_from(data)[:2]
    if magic != MAGIC:
        raise WireFormatError("not a fedtab ciphertext vector (bad magic)")
    if version != VERSION:
        raise WireFormatError(f"unsupported ciphertext vector version {version}")
    (crc,) = _CRC.unpack_from(data, len(data) - TRAILER_SIZE)
    data = data[:-TRAILER_SIZE]
    if zlib.crc32(data) != crc:
        raise WireFormatError("checksum mismatch: the vector is truncated or corrupt")
    return data


def _checked_header(
    header: tuple[Any, ...], public_key: PublicKey
) -> tuple[EncodingSpec, int, int, int, int]:
    """``(spec, length, summands, count, width)`` of a header consistent with ``public_key``."""
    (_, _, fingerprint, frac_bits, clip, max_summands, length, summands, slots_bits, per,
     count, width) = header
    if fingerprint.hex() != public_key.fingerprint:
        raise CiphertextError(
            f"vector was encrypted under key {fingerprint.hex()[:16]}..., "
            f"expected {public_key.fingerprint[:16]}..."
        )
    try:
        spec = EncodingSpec(frac_bits=frac_bits, clip=clip, max_summands=max_summands)
    except EncodingError as exc:
        raise WireFormatError(f"bad encoding parameters in header: {exc}") from exc
    if width != ciphertext_width(public_key):
        raise WireFormatError(
            f"ciphertext width {width} does not match the key ({ciphertext_width(public_key)})"
        )
    try:
        expected_count = num_ciphertexts(length, spec, public_key)
    except (EncodingError, CiphertextError) as exc:
        raise WireFormatError(f"inconsistent header: {exc}") from exc
    if (
        slots_bits != slot_bits(spec)
        or count != expected_count
        or per != plaintext_layout(length, count)
        or not 1 <= summands <= max_summands
    ):
        raise WireFormatError("inconsistent header (slot layout, count or summands)")
    return spec, length, summands, count, width
