"""Rules of the shared-key backend that both sides apply: who decrypts which part of an
aggregate, and what a sealed shard is bound to.

The consortium shares one Paillier key pair; the aggregator adds the banks' packed ciphertexts;
each bank decrypts a contiguous range of the aggregate's ciphertexts (:func:`shard_range`) and
seals the plaintexts under the consortium's AES-GCM shard key (:mod:`fedtab.securesum.sealing`)
bound to :func:`shard_aad`; every bank opens all shards and decodes the sum.

Threat model: no key here; these rules let the aggregator check a shard's range and let banks
refuse a shard made for another job, step, bank, range, key, request or aggregate.
"""

from __future__ import annotations

import hashlib

from fedtab.securesum.base import SumContext

NAME = "shared-key"


def shard_range(n_ciphertexts: int, banks: tuple[str, ...], bank: str) -> tuple[int, int]:
    """The contiguous ciphertext range ``[start, stop)`` of an aggregate that ``bank`` decrypts.

    Banks are taken in sorted order; ranges cover ``0..n_ciphertexts`` without overlap.
    """
    i = banks.index(bank)
    n = len(banks)
    return n_ciphertexts * i // n, n_ciphertexts * (i + 1) // n


def aggregate_digest(aggregate: bytes) -> str:
    """SHA-256 hex digest of the aggregate's bytes, as every bank downloaded them."""
    return hashlib.sha256(aggregate).hexdigest()


def shard_aad(ctx: SumContext, bank: str, start: int, stop: int, aggregate: str) -> bytes:
    """Associated data of the shard ``bank`` sealed: binds job, step index and id, request,
    bank, range, key and the digest ``aggregate`` of the aggregate it decrypts."""
    return (
        f"fedtab-shard-v2|{ctx.job_id}|{ctx.step_index}|{ctx.step_id}|{ctx.request_digest}|"
        f"{bank}|{start}-{stop}|{ctx.key_fingerprint}|{aggregate}"
    ).encode()
