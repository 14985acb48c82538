"""Raw Paillier number theory on packed plaintexts (``g = n + 1``), with gmpy2.

Threat model: :class:`DjnEncryptCore` holds only the public key; :class:`CrtEncryptCore` and
:class:`DecryptCore` hold the factors ``p``, ``q`` and must live only in a key holder's (bank's)
processes, never in the aggregator. Encryption randomness comes from the operating system
(:mod:`secrets`) unless the caller passes explicit random values (reproducible tests only).

Encryption is ``c = g^m * rho mod n^2`` where ``g^m = 1 + m*n mod n^2`` and ``rho`` is an
``n``-th power:

* **DJN** (Damgård, Jurik, Nielsen, "A generalization of Paillier's public-key system with
  applications to electronic voting", IJIS 2010, section 4.1): pick ``x`` at random,
  ``h = -x^2 mod n`` and ``hs = h^n mod n^2`` once per encryptor; then ``rho = hs^a mod n^2``
  with a uniformly random *short* exponent ``a`` of ``|n|/2`` bits (1024 bits for a 2048-bit
  key, the length DJN propose). Semantic security then rests on the DCR assumption plus the
  assumption that ``hs^a`` with such a short ``a`` is indistinguishable from a random
  ``n``-th power (the short-exponent DCR variant DJN state; no attack better than
  factoring ``n`` or a generic ``2^(|a|/2)`` search for ``a`` is known). ``hs`` is fixed, so
  ``hs^a`` is a fixed-base exponentiation computed from a precomputed window table
  (:class:`FixedBaseTable`: 8-bit windows, ``|n|/16`` rows of 255 entries, about 16 MiB for
  a 2048-bit key) in ``|n|/16`` modular multiplications and no squarings.
* **CRT** (key holders): ``rho = r^n mod n^2`` for uniform ``r`` in ``Z_n^*``, computed as
  ``r^n mod p^2`` and ``mod q^2`` (exponents reduced modulo ``p(p-1)``, ``q(q-1)``) joined
  by the Chinese remainder theorem. This is textbook Paillier randomness, no extra assumption.

Decryption uses the CRT as python-paillier does: ``m_p = L_p(c^(p-1) mod p^2) * h_p mod p``
(likewise for ``q``) and ``m = CRT(m_p, m_q)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2

from fedtab.errors import CiphertextError, KeyMaterialError

WINDOW_BITS = 8


def djn_exponent_bits(n_bits: int) -> int:
    """Length of DJN's short random exponent: ``|n| / 2`` bits (rounded up)."""
    return (n_bits + 1) // 2


def djn_base(n: int, x: int) -> int:
    """``hs = (-x^2 mod n)^n mod n^2`` for ``x`` in ``Z_n^*``; raises if ``gcd(x, n) != 1``."""
    if not 0 < x < n or gmpy2.gcd(x, n) != 1:
        raise KeyMaterialError("the DJN base must be built from an element of Z_n^*")
    h = (-x * x) % n
    return int(gmpy2.powmod(h, n, n * n))


def random_unit(n: int) -> int:
    """A uniformly random element of ``Z_n^*`` from the operating system's entropy."""
    while True:
        x = secrets.randbelow(n)
        if x > 0 and gmpy2.gcd(x, n) == 1:
            return x


class FixedBaseTable:
    """``base^a mod modulus`` for exponents ``a < 2**exponent_bits`` by 8-bit windows.

    Row ``i`` holds ``base^(d * 2^(8i))`` for ``d = 0..255``; ``base^a`` is the product of one
    entry per row, selected by the bytes of ``a``.
    """

    def __init__(self, base: int, modulus: int, exponent_bits: int) -> None:
        self.modulus = gmpy2.mpz(modulus)
        self.exponent_bits = exponent_bits
        self.exponent_bytes = -(-exponent_bits // WINDOW_BITS)
        rows: list[list[gmpy2.mpz]] = []
        step = gmpy2.mpz(base) % self.modulus
        one = gmpy2.mpz(1)
        for _ in range(self.exponent_bytes):
            row = [one, step]
            for _ in range(2, 1 << WINDOW_BITS):
                row.append(row[-1] * step % self.modulus)
            rows.append(row)
            step = row[-1] * step % self.modulus
        self._rows = rows

    def pow(self, exponent: int) -> gmpy2.mpz:
        """``base^exponent mod modulus``; raises :class:`ValueError` if out of range."""
        if not 0 <= exponent < (1 << self.exponent_bits):
            raise ValueError("exponent out of the table's range")
        digits = exponent.to_bytes(self.exponent_bytes, "little")
        acc = gmpy2.mpz(1)
        modulus = self.modulus
        for row, digit in zip(self._rows, digits, strict=True):
            if digit:
                acc = acc * row[digit] % modulus
        return acc


def _check_plaintext(m: int, n: int) -> None:
    if not 0 <= m < n:
        raise CiphertextError("a plaintext must lie in [0, n)")


class DjnEncryptCore:
    """Public-key-only encryption with DJN short-exponent randomness (see module docstring)."""

    def __init__(self, n: int, hs: int) -> None:
        self.n = gmpy2.mpz(n)
        self.nsquare = self.n * self.n
        self.exponent_bits = djn_exponent_bits(int(self.n).bit_length())
        self.table = FixedBaseTable(hs, int(self.nsquare), self.exponent_bits)

    def encrypt(self, plaintexts: Sequence[int], randoms: Sequence[int] | None) -> list[int]:
        """Encrypt each plaintext; ``randoms`` are explicit exponents or ``None`` (fresh)."""
        n, n2, bits = self.n, self.nsquare, self.exponent_bits
        out: list[int] = []
        for i, m in enumerate(plaintexts):
            _check_plaintext(m, n)
            a = secrets.randbits(bits) if randoms is None else randoms[i]
            rho = self.table.pow(a)
            # (1 + m n) rho = rho + n * (m rho mod n)  (mod n^2)
            out.append(int((rho + n * (m * rho % n)) % n2))
        return out


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
            _check_plaintext(m, n)
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
