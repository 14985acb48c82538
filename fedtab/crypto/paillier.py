"""Raw Paillier number theory on packed plaintexts (``g = n + 1``), with gmpy2: the public part.

Threat model: everything here needs only the public key, so any process may load it, the
aggregator included. The arithmetic that needs the factors ``p``, ``q`` (CRT encryption and
decryption) lives in :mod:`fedtab.crypto.crt`, which only key holders (banks) import.
Encryption randomness comes from the operating system (:mod:`secrets`) unless the caller passes
explicit random values (reproducible tests only).

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
* **CRT** (key holders, :mod:`fedtab.crypto.crt`): ``rho = r^n mod n^2`` for uniform ``r``
  in ``Z_n^*``, computed as ``r^n mod p^2`` and ``mod q^2`` (exponents reduced modulo
  ``p(p-1)``, ``q(q-1)``) joined by the Chinese remainder theorem. This is textbook Paillier
  randomness, no extra assumption.

Decryption (:mod:`fedtab.crypto.crt`) uses the CRT as python-paillier does:
``m_p = L_p(c^(p-1) mod p^2) * h_p mod p`` (likewise for ``q``) and ``m = CRT(m_p, m_q)``.
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


def check_plaintext(m: int, n: int) -> None:
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
            check_plaintext(m, n)
            a = secrets.randbits(bits) if randoms is None else randoms[i]
            rho = self.table.pow(a)
            # (1 + m n) rho = rho + n * (m rho mod n)  (mod n^2)
            out.append(int((rho + n * (m * rho % n)) % n2))
        return out
