"""Bank side of the shared-key backend: encrypt a contribution, decrypt this bank's shard of an
aggregate and seal it, open every bank's shard and decode the sum.

Threat model: runs inside a bank process (or the in-process runner), which holds the consortium
private key and shard key. Plaintext shards leave the process only sealed (AES-GCM under the
shard key, which the aggregator lacks), bound by their associated data to job, step, request,
bank, range, key and the aggregate they decrypt (:func:`fedtab.securesum.shards.shard_aad`), so
the aggregator can neither read, swap nor replay them, nor hand banks different aggregates
unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedtab.crypto.ciphertexts import EncryptedVector, num_ciphertexts
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.encoding import decode_plaintexts
from fedtab.crypto.encryptor import Encryptor
from fedtab.crypto.keys import PrivateKey, PublicKey
from fedtab.crypto.wire import encrypted_vector_from_bytes, encrypted_vector_to_bytes
from fedtab.errors import CiphertextError, ProtocolError
from fedtab.securesum.base import Share, SumContext
from fedtab.securesum.sealing import seal, unseal
from fedtab.securesum.shards import aggregate_digest, shard_aad, shard_range


def plaintext_width(public_key: PublicKey) -> int:
    """Bytes per plaintext in a shard (plaintexts are < n)."""
    return (public_key.n.bit_length() + 7) // 8


class SharedKeyBank:
    """Bank ``bank``'s side of the shared-key backend (see module docstring).

    ``encryptor`` and ``decryptor`` may be shared between banks of one process (the in-process
    runner); :meth:`open` makes a bank that owns its own and closes them.
    """

    def __init__(self, bank: str, public_key: PublicKey, encryptor: Encryptor,
                 decryptor: Decryptor, shard_key: bytes, *, owns_engines: bool = False) -> None:
        self.bank = bank
        self.public_key = public_key
        self._encryptor = encryptor
        self._decryptor = decryptor
        self._shard_key = shard_key
        self._owns = owns_engines

    @classmethod
    def open(cls, bank: str, private_key: PrivateKey, shard_key: bytes, *,
             workers: int = 1) -> SharedKeyBank:
        """A bank side with its own encryption and decryption engines (``workers`` each)."""
        public_key = private_key.public
        return cls(bank, public_key, Encryptor(public_key, workers=workers),
                   Decryptor(private_key, workers=workers), shard_key, owns_engines=True)

    def close(self) -> None:
        if self._owns:
            self._encryptor.close()
            self._decryptor.close()

    def contribute(self, ctx: SumContext, vector: np.ndarray) -> bytes:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (ctx.length,):
            raise ProtocolError(
                f"contribution to {ctx.step_id!r} has shape {vector.shape}, "
                f"expected ({ctx.length},)"
            )
        return encrypted_vector_to_bytes(self._encryptor.encrypt(vector, ctx.encoding))

    def _aggregate(self, ctx: SumContext, aggregate: bytes) -> EncryptedVector:
        """Parse an aggregate; raises CiphertextError when it does not match the step."""
        vector = encrypted_vector_from_bytes(aggregate, self.public_key)
        if vector.spec != ctx.encoding or vector.length != ctx.length:
            raise CiphertextError("the aggregate does not match the step request")
        if vector.summands != len(ctx.banks):
            raise CiphertextError(
                f"the aggregate sums {vector.summands} contributions, the job has "
                f"{len(ctx.banks)} banks"
            )
        return vector

    def decrypt_share(self, ctx: SumContext, aggregate: bytes) -> Share:
        """Decrypt this bank's contiguous range of the aggregate and seal it."""
        vector = self._aggregate(ctx, aggregate)
        start, stop = shard_range(len(vector.ciphertexts), ctx.banks, self.bank)
        plaintexts = self._decryptor.decrypt_plaintexts(vector.ciphertexts[start:stop])
        width = plaintext_width(self.public_key)
        raw = b"".join(int(p).to_bytes(width, "big") for p in plaintexts)
        aad = shard_aad(ctx, self.bank, start, stop, aggregate_digest(aggregate))
        return Share(self.bank, start, stop, seal(self._shard_key, raw, aad))

    def combine(self, ctx: SumContext, aggregate: bytes, shares: Sequence[Share]) -> np.ndarray:
        """Unseal every bank's shard and decode the aggregate float vector.

        Raises ProtocolError when a shard is missing, misplaced or fails authentication
        (including a shard decrypted from another aggregate than ``aggregate``). The
        aggregate was validated by every bank that decrypted a shard of it, and each shard's
        associated data binds its digest: here it is not parsed again (its ciphertext count
        follows from the request).
        """
        n_ciphertexts = num_ciphertexts(ctx.length, ctx.encoding, self.public_key)
        banks = ctx.banks
        by_bank = {s.bank: s for s in shares}
        if sorted(by_bank) != sorted(banks) or len(shares) != len(banks):
            raise ProtocolError(f"expected one shard per bank {list(banks)}, got {sorted(by_bank)}")
        digest = aggregate_digest(aggregate)
        width = plaintext_width(self.public_key)
        plaintexts: list[int] = []
        for bank in banks:
            shard = by_bank[bank]
            if (shard.start, shard.stop) != shard_range(n_ciphertexts, banks, bank):
                raise ProtocolError(f"shard of {bank} covers the wrong range")
            if shard.start != len(plaintexts):
                raise ProtocolError("shards are not contiguous")
            aad = shard_aad(ctx, bank, shard.start, shard.stop, digest)
            raw = unseal(self._shard_key, shard.sealed, aad)
            if len(raw) != width * (shard.stop - shard.start):
                raise ProtocolError(f"shard of {bank} has the wrong size")
            plaintexts.extend(
                int.from_bytes(raw[i : i + width], "big") for i in range(0, len(raw), width)
            )
        if len(plaintexts) != n_ciphertexts:
            raise ProtocolError("shards do not cover the aggregate")
        return decode_plaintexts(plaintexts, ctx.encoding, ctx.length, len(banks))

    def open_aggregate(self, ctx: SumContext, aggregate: bytes) -> np.ndarray:
        """Decrypt a whole committed aggregate here (the shared key allows it)."""
        return self._decryptor.decrypt(self._aggregate(ctx, aggregate))
