"""A bank's cryptographic part of one secure sum: encrypt its vector, decrypt its shard of the
aggregate, seal it for the other banks, and rebuild the aggregate from everyone's shards.

Threat model: runs inside a bank process, which holds the consortium private key and shard key.
Plaintext shards leave the process only sealed (AES-GCM under the shard key, which the
aggregator lacks), bound by their associated data to job, step, bank, range and key.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedtab.crypto import (
    Encryptor,
    PublicKey,
    decode_plaintexts,
    encrypted_vector_from_bytes,
    encrypted_vector_to_bytes,
)
from fedtab.crypto.decryptor import Decryptor
from fedtab.errors import CiphertextError, ProtocolError
from fedtab.protocol.steps import SumRequest
from fedtab.transport.messages import SealedShard, Tag, shard_aad, shard_range
from fedtab.transport.sealing import seal, unseal


def plaintext_width(public_key: PublicKey) -> int:
    """Bytes per plaintext in a shard (plaintexts are < n)."""
    return (public_key.n.bit_length() + 7) // 8


def encrypt_contribution(encryptor: Encryptor, request: SumRequest, vector: np.ndarray) -> bytes:
    """This bank's vector of shape ``(request.length,)`` as encrypted-vector bytes."""
    vector = np.asarray(vector, dtype=np.float64)
    if vector.shape != (request.length,):
        raise ProtocolError(
            f"contribution to {request.step_id!r} has shape {vector.shape}, "
            f"expected ({request.length},)"
        )
    return encrypted_vector_to_bytes(encryptor.encrypt(vector, request.encoding))


def decrypt_shard(
    decryptor: Decryptor,
    public_key: PublicKey,
    shard_key: bytes,
    tag: Tag,
    banks: tuple[str, ...],
    aggregate: bytes,
    request: SumRequest,
) -> tuple[int, int, bytes]:
    """Decrypt this bank's contiguous range of the aggregate and seal it: ``(start, stop, sealed)``.

    Raises CiphertextError when the aggregate does not match the request or bank count.
    """
    vector = encrypted_vector_from_bytes(aggregate, public_key)
    if vector.spec != request.encoding or vector.length != request.length:
        raise CiphertextError("the aggregate does not match the step request")
    if vector.summands != len(banks):
        raise CiphertextError(
            f"the aggregate sums {vector.summands} contributions, the job has {len(banks)} banks"
        )
    start, stop = shard_range(len(vector.ciphertexts), banks, tag.bank)
    plaintexts = decryptor.decrypt_plaintexts(vector.ciphertexts[start:stop])
    width = plaintext_width(public_key)
    raw = b"".join(int(p).to_bytes(width, "big") for p in plaintexts)
    return start, stop, seal(shard_key, raw, shard_aad(tag, start, stop))


def open_shards(
    public_key: PublicKey,
    shard_key: bytes,
    tag: Tag,
    banks: tuple[str, ...],
    shards: Sequence[SealedShard],
    request: SumRequest,
    n_ciphertexts: int,
) -> np.ndarray:
    """Unseal every bank's shard and decode the aggregate float vector ``(request.length,)``.

    ``tag`` is this bank's tag of the step (its ``bank`` is replaced by each shard's sender).
    Raises ProtocolError when a shard is missing, misplaced or fails authentication.
    """
    by_bank = {s.bank: s for s in shards}
    if sorted(by_bank) != sorted(banks) or len(shards) != len(banks):
        raise ProtocolError(f"expected one shard per bank {list(banks)}, got {sorted(by_bank)}")
    width = plaintext_width(public_key)
    plaintexts: list[int] = []
    for bank in banks:
        shard = by_bank[bank]
        if (shard.start, shard.stop) != shard_range(n_ciphertexts, banks, bank):
            raise ProtocolError(f"shard of {bank} covers the wrong range")
        if shard.start != len(plaintexts):
            raise ProtocolError("shards are not contiguous")
        sender = Tag(tag.job_id, tag.step_index, tag.step_id, bank, tag.key_fingerprint,
                     tag.request_digest)
        raw = unseal(shard_key, shard.sealed, shard_aad(sender, shard.start, shard.stop))
        if len(raw) != width * (shard.stop - shard.start):
            raise ProtocolError(f"shard of {bank} has the wrong size")
        plaintexts.extend(
            int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)
        )
    if len(plaintexts) != n_ciphertexts:
        raise ProtocolError("shards do not cover the aggregate")
    return decode_plaintexts(plaintexts, request.encoding, request.length, len(banks))
