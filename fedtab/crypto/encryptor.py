"""Encrypting float vectors into packed Paillier ciphertext vectors.

Threat model: the encryptor sees one party's plaintext vector and the public key. With
``method="djn"`` (default) it needs nothing else; ``method="crt"`` is for key holders and keeps
the private key in this process (and its own worker processes). Every ciphertext it returns is
freshly randomised from the operating system's entropy; an explicit ``numpy.random.Generator``
makes encryption reproducible and is meant for tests only (never the default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedtab.crypto.ciphertexts import EncryptedVector
from fedtab.crypto.encoding import (
    EncodingSpec,
    encode_values,
    pack_encoded,
    slots_per_plaintext,
)
from fedtab.crypto.keys import PrivateKey, PublicKey
from fedtab.crypto.paillier import djn_base, djn_exponent_bits, random_unit
from fedtab.crypto.pool import (
    EncryptCore,
    PoolOwner,
    WorkerPool,
    check_workers,
    encrypt_pool,
    make_encrypt_core,
)
from fedtab.errors import ConfigError, KeyMaterialError

METHODS = ("djn", "crt")


def _rng_int(rng: np.random.Generator, bits: int) -> int:
    """A uniform ``bits``-bit integer drawn from ``rng``."""
    nbytes = -(-bits // 8)
    return int.from_bytes(rng.bytes(nbytes), "big") >> (8 * nbytes - bits)


def _rng_unit(rng: np.random.Generator, n: int) -> int:
    """An element of ``Z_n^*`` drawn from ``rng`` (64 extra bits make the bias negligible)."""
    while True:
        x = _rng_int(rng, n.bit_length() + 64) % n
        if x > 0 and math.gcd(x, n) == 1:
            return x


class Encryptor(PoolOwner):
    """Encrypts float64 vectors for one public key; ``workers > 1`` uses a process pool.

    ``method="djn"`` uses short-exponent randomness from a fixed-base table (public key only);
    ``method="crt"`` needs ``private_key`` and computes ``r^n`` by the CRT. Raises
    :class:`ConfigError` for a bad method or worker count and :class:`KeyMaterialError` when the
    private key is missing or belongs to another key. Use as a context manager or call
    :meth:`close` to stop the pool.
    """

    def __init__(
        self,
        public_key: PublicKey,
        *,
        workers: int = 1,
        private_key: PrivateKey | None = None,
        method: str = "djn",
        rng: np.random.Generator | None = None,
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"unknown encryption method {method!r}; use one of {METHODS}")
        self.public_key = public_key
        self.workers = check_workers(workers)
        self.method = method
        self._rng = rng
        p: int | None = None
        q: int | None = None
        hs: int | None = None
        if private_key is not None and private_key.public != public_key:
            raise KeyMaterialError("the private key does not belong to this public key")
        if method == "crt":
            if private_key is None:
                raise KeyMaterialError("method='crt' needs the private key (key holders only)")
            p, q = private_key.p, private_key.q
        else:
            n = public_key.n
            x = random_unit(n) if rng is None else _rng_unit(rng, n)
            hs = djn_base(n, x)
        self._core: EncryptCore | None = None
        self._pool: WorkerPool | None = None
        if self.workers == 1:
            self._core = make_encrypt_core(method, public_key.n, hs, p, q)
        else:
            self._pool = encrypt_pool(self.workers, method, public_key.n, hs, p, q)

    def _randoms(self, count: int) -> list[int] | None:
        """Explicit random values when a test ``rng`` was given, else ``None`` (fresh OS)."""
        if self._rng is None:
            return None
        n = self.public_key.n
        if self.method == "djn":
            bits = djn_exponent_bits(n.bit_length())
            return [_rng_int(self._rng, bits) for _ in range(count)]
        return [_rng_unit(self._rng, n) for _ in range(count)]

    def encrypt_plaintexts(self, plaintexts: Sequence[int]) -> list[int]:
        """Encrypt raw plaintexts in ``[0, n)``; raises :class:`CiphertextError` otherwise."""
        randoms = self._randoms(len(plaintexts))
        if self._pool is not None:
            return self._pool.encrypt(plaintexts, randoms)
        if self._core is None:
            raise ConfigError("the encryptor has been closed")
        return self._core.encrypt(plaintexts, randoms)

    def encrypt(self, values: np.ndarray, spec: EncodingSpec) -> EncryptedVector:
        """Encode, pack and encrypt a float64 1-D vector.

        Raises :class:`EncodingError` naming the first NaN/inf/out-of-clip position, or when
        the encoding's slot does not fit the key.
        """
        slots = slots_per_plaintext(spec, self.public_key)
        encoded = encode_values(values, spec)
        plaintexts = pack_encoded(encoded, spec, slots)
        return EncryptedVector(
            fingerprint=self.public_key.fingerprint,
            spec=spec,
            length=len(encoded),
            summands=1,
            ciphertexts=tuple(self.encrypt_plaintexts(plaintexts)),
            key_bits=self.public_key.bits,
        )

