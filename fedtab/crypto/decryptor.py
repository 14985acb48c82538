"""Decrypting packed aggregate ciphertext vectors back to float64 (CRT, batched, parallel).

Threat model: only key holders (banks) import this module and construct a :class:`Decryptor`
(:mod:`fedtab.crypto` does not export it, and ``tests/test_layering.py`` checks that no
aggregator module loads it). It keeps the private key in this process and, with
``workers > 1``, in its own spawn-context worker processes. It is the single decryption
interface, so threshold decryption can replace it later. Ciphertexts are
validated before decryption (units of ``Z_{n^2}``), and decoding checks every slot's headroom,
so tampered or foreign ciphertexts are rejected instead of decoding to garbage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedtab.crypto.ciphertexts import EncryptedVector, check_vector, validate_ciphertexts
from fedtab.crypto.crt import DecryptCore
from fedtab.crypto.encoding import decode_plaintexts
from fedtab.crypto.keys import PrivateKey
from fedtab.crypto.pool import PoolOwner, WorkerPool, check_workers, init_worker
from fedtab.errors import ConfigError


class Decryptor(PoolOwner):
    """Decrypts packed vectors with one private key; ``workers > 1`` uses a process pool."""

    def __init__(self, private_key: PrivateKey, *, workers: int = 1) -> None:
        self.public_key = private_key.public
        self.workers = check_workers(workers)
        self._core: DecryptCore | None = None
        self._pool: WorkerPool | None = None
        if self.workers == 1:
            self._core = DecryptCore(private_key.p, private_key.q)
        else:
            self._pool = WorkerPool(self.workers, init_worker,
                                    (DecryptCore, (private_key.p, private_key.q)))

    def decrypt_plaintexts(self, ciphertexts: Sequence[int]) -> list[int]:
        """Decrypt raw ciphertexts into packed plaintexts in ``[0, n)``, in order.

        This is the unit of work banks share when they split an aggregate's decryption.
        Raises :class:`CiphertextError` for a ciphertext outside ``(0, n^2)`` or not coprime
        to ``n``.
        """
        validate_ciphertexts(ciphertexts, self.public_key)
        return self._decrypt_valid(ciphertexts)

    def _decrypt_valid(self, ciphertexts: Sequence[int]) -> list[int]:
        if self._pool is not None:
            return self._pool.decrypt(ciphertexts)
        if self._core is None:
            raise ConfigError("the decryptor has been closed")
        return self._core.decrypt(ciphertexts)

    def decrypt(self, vector: EncryptedVector) -> np.ndarray:
        """Decrypt and decode a vector into float64 values of shape ``(vector.length,)``.

        Raises :class:`CiphertextError` for another key, a wrong ciphertext count or an
        invalid ciphertext, and :class:`EncodingError` when a slot overflowed (more summands
        than declared) or the plaintexts are corrupt.
        """
        check_vector(vector, self.public_key)
        plaintexts = self._decrypt_valid(vector.ciphertexts)
        return decode_plaintexts(plaintexts, vector.spec, vector.length, vector.summands)

