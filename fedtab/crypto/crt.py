"""Paillier arithmetic with the private factors ``p``, ``q`` (Chinese remainder theorem).

Threat model: :class:`CrtEncryptCore` and :class:`DecryptCore` hold the factors of ``n``; this
module must be loaded only in a key holder's (bank's) processes and their own worker
processes, never in the aggregator (``tests/test_layering.py`` checks that no aggregator module
imports it). :mod:`fedtab.crypto.paillier` explains the two encryption methods; randomness for
``r`` comes from the operating system unless the caller passes explicit values (tests only).
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2

from fedtab.crypto.paillier import check_plaintext, random_unit


class CrtEncryptCore:
    """Key-holder encryption with full ``r^n`` randomness computed by the CRT."""

    def __init__(self, p: int, q: int) -> None:
        self.p, self.q = gmpy2.mpz(p), gmpy2.mpz(q)
        self.n = self.p * self.q
        self.nsquare = self.n * self.n
        self.psq, self.qsq = self.p * self.p, self.q * self.q
        self.exp_p = self.n % (self.p * (self.p - 1))
        self.exp_q = self.n % (self.q * (self.q - 1))
        self.psq_inv = gmpy2.invert(self.psq, self.qsq)

    def r_to_n(self, r: int) -> gmpy2.mpz:
        """``r^n mod n^2`` via ``mod p^2`` and ``mod q^2``."""
        xp = gmpy2.powmod(r, self.exp_p, self.psq)
        xq = gmpy2.powmod(r, self.exp_q, self.qsq)
        return xp + self.psq * ((xq - xp) * self.psq_inv % self.qsq)

    def encrypt(self, plaintexts: Sequence[int], randoms: Sequence[int] | None) -> list[int]:
        """Encrypt each plaintext; ``randoms`` are explicit ``r`` in ``Z_n^*`` or ``None``."""
        n, n2 = self.n, self.nsquare
        out: list[int] = []
        for i, m in enumerate(plaintexts):
            check_plaintext(m, n)
            r = random_unit(int(n)) if randoms is None else randoms[i]
            rho = self.r_to_n(r)
            out.append(int((rho + n * (m * rho % n)) % n2))
        return out


class DecryptCore:
    """CRT decryption of raw ciphertexts (``hp``, ``hq`` as in python-paillier)."""

    def __init__(self, p: int, q: int) -> None:
        self.p, self.q = gmpy2.mpz(p), gmpy2.mpz(q)
        self.n = self.p * self.q
        self.psq, self.qsq = self.p * self.p, self.q * self.q
        self.hp = self._h(self.p, self.psq)
        self.hq = self._h(self.q, self.qsq)
        self.p_inv = gmpy2.invert(self.p, self.q)

    def _h(self, prime: gmpy2.mpz, prime_sq: gmpy2.mpz) -> gmpy2.mpz:
        g_pow = gmpy2.powmod(self.n + 1, prime - 1, prime_sq)
        return gmpy2.invert((g_pow - 1) // prime, prime)

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Decrypt raw ciphertexts (assumed validated) into plaintexts in ``[0, n)``."""
        p, q, psq, qsq = self.p, self.q, self.psq, self.qsq
        pm1, qm1, hp, hq, p_inv = p - 1, q - 1, self.hp, self.hq, self.p_inv
        out: list[int] = []
        for c in ciphertexts:
            mp = (gmpy2.powmod(c, pm1, psq) - 1) // p * hp % p
            mq = (gmpy2.powmod(c, qm1, qsq) - 1) // q * hq % q
            out.append(int(mp + p * ((mq - mp) * p_inv % q)))
        return out
