"""Aggregator side of the shared-key backend: validate encrypted contributions, add them
homomorphically, check each sealed shard's range and relay the shards.

Threat model: the aggregator holds the consortium *public* key only. It sees ciphertexts and
sealed shards it cannot open. This module must not import decryption code
(``fedtab.crypto.decryptor``): the aggregator's import closure never contains it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedtab.crypto.ciphertexts import EncryptedVector, add_encrypted
from fedtab.crypto.keys import PublicKey
from fedtab.crypto.wire import (
    HEADER_SIZE,
    TRAILER_SIZE,
    ciphertext_width,
    encrypted_vector_from_bytes,
    encrypted_vector_to_bytes,
)
from fedtab.errors import CiphertextError, ProtocolError
from fedtab.securesum.base import Aggregate, Share, SumContext
from fedtab.securesum.sealing import NONCE_BYTES, TAG_BYTES
from fedtab.securesum.shards import shard_range


class SharedKeyAggregator:
    """The aggregator's side of the shared-key backend under ``public_key``."""

    def __init__(self, public_key: PublicKey) -> None:
        self.public_key = public_key

    def validate(self, ctx: SumContext, contribution: bytes) -> EncryptedVector:
        """Parse one bank's encrypted vector; raises CiphertextError or WireFormatError."""
        vector = encrypted_vector_from_bytes(contribution, self.public_key)
        if vector.fingerprint != ctx.key_fingerprint:
            raise CiphertextError("contribution is encrypted under another key")
        if vector.spec != ctx.encoding:
            raise CiphertextError("contribution uses another encoding than the step request")
        if vector.length != ctx.length:
            raise CiphertextError(
                f"contribution has {vector.length} values, the request says {ctx.length}"
            )
        if vector.summands != 1:
            raise CiphertextError("a bank's contribution must be a single summand")
        return vector

    def add(self, ctx: SumContext, contributions: Sequence[object]) -> Aggregate:
        vectors = [v for v in contributions if isinstance(v, EncryptedVector)]
        if len(vectors) != len(contributions):
            raise ProtocolError("internal: a contribution was not validated by this backend")
        total = add_encrypted(vectors, self.public_key)
        return Aggregate(encrypted_vector_to_bytes(total), len(total.ciphertexts))

    def check_share(self, ctx: SumContext, aggregate: Aggregate, share: Share) -> None:
        expected = shard_range(aggregate.size, ctx.banks, share.bank)
        if (share.start, share.stop) != expected:
            raise ProtocolError(
                f"bank {share.bank} sent shard {share.start}-{share.stop}, its range is "
                f"{expected[0]}-{expected[1]}"
            )

    def contribution_bytes(self, ctx: SumContext) -> int:
        """The largest vector of ``ctx.length`` values the wire format allows under our key
        (one value per ciphertext: a contribution packed under another encoding than the
        request's is still read, then refused by :meth:`validate` naming the encoding)."""
        return HEADER_SIZE + max(ctx.length, 0) * ciphertext_width(self.public_key) + TRAILER_SIZE

    def share_bytes(self, ctx: SumContext, aggregate: Aggregate, bank: str) -> int:
        """``bank``'s range of plaintexts (each as wide as ``n``) sealed: nonce and tag added."""
        start, stop = shard_range(aggregate.size, ctx.banks, bank)
        width = (self.public_key.n.bit_length() + 7) // 8
        return (stop - start) * width + NONCE_BYTES + TAG_BYTES

    def relay(self, ctx: SumContext, shares: Mapping[str, Share]) -> list[Share]:
        return sorted(shares.values(), key=lambda s: s.start)
