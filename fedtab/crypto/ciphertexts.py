"""Packed ciphertext vectors, their validation and the homomorphic sum.

Threat model: this is the aggregator's side of the secure sum; it needs only the public key and
never sees a plaintext. Inputs come from other parties and may be malformed or malicious: each
ciphertext must be a unit of ``Z_{n^2}`` (``0 < c < n^2`` and ``gcd(c, n) = 1``), and all
vectors must use the same key (fingerprint), encoding and length. The declared number of
summands is tracked so the total can never exceed the headroom reserved by the encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import gmpy2

from fedtab.crypto.encoding import EncodingSpec, slots_per_plaintext
from fedtab.crypto.keys import PublicKey
from fedtab.errors import CiphertextError


@dataclass(frozen=True)
class EncryptedVector:
    """A float vector of ``length`` values, encoded with ``spec`` and packed into ciphertexts.

    ``summands`` counts the parties' vectors added into it (1 right after encryption);
    ``fingerprint`` is the public key's fingerprint. ``key_bits`` (bit length of ``n``, 0 if
    unknown) only sizes the wire format; every constructor in :mod:`fedtab.crypto` sets it.
    """

    fingerprint: str
    spec: EncodingSpec
    length: int
    summands: int
    ciphertexts: tuple[int, ...]
    key_bits: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.length < 0 or self.summands < 1:
            raise CiphertextError(
                f"invalid vector header: length={self.length}, summands={self.summands}"
            )
        if self.summands > self.spec.max_summands:
            raise CiphertextError(
                f"{self.summands} summands exceed the encoding's max_summands="
                f"{self.spec.max_summands}"
            )

    def __repr__(self) -> str:
        return (
            f"EncryptedVector(length={self.length}, summands={self.summands}, "
            f"ciphertexts={len(self.ciphertexts)}, spec={self.spec}, "
            f"fingerprint={self.fingerprint[:16]}...)"
        )


def num_ciphertexts(length: int, spec: EncodingSpec, public_key: PublicKey) -> int:
    """Number of ciphertexts that carry ``length`` values under ``spec`` and ``public_key``."""
    if length < 0:
        raise CiphertextError(f"length must be non-negative, got {length}")
    return -(-length // slots_per_plaintext(spec, public_key))


def validate_ciphertexts(ciphertexts: Sequence[int], public_key: PublicKey) -> None:
    """Raise :class:`CiphertextError` naming the first ciphertext that is not a unit mod n^2."""
    n = gmpy2.mpz(public_key.n)
    nsquare = n * n
    for index, c in enumerate(ciphertexts):
        if not isinstance(c, int | type(n)):
            raise CiphertextError(f"ciphertext {index} is not an integer")
        if not 0 < c < nsquare:
            raise CiphertextError(f"ciphertext {index} lies outside (0, n^2)")
        if gmpy2.gcd(c, n) != 1:
            raise CiphertextError(f"ciphertext {index} is not coprime to n")


def check_vector(vector: EncryptedVector, public_key: PublicKey) -> None:
    """Check a vector's key fingerprint, ciphertext count and every ciphertext."""
    if vector.fingerprint != public_key.fingerprint:
        raise CiphertextError(
            f"vector was encrypted under key {vector.fingerprint[:16]}..., "
            f"expected {public_key.fingerprint[:16]}..."
        )
    if vector.key_bits not in (0, public_key.bits):
        raise CiphertextError(
            f"vector was made for a {vector.key_bits}-bit key, not {public_key.bits} bits"
        )
    expected = num_ciphertexts(vector.length, vector.spec, public_key)
    if len(vector.ciphertexts) != expected:
        raise CiphertextError(
            f"a vector of {vector.length} values needs {expected} ciphertexts, "
            f"got {len(vector.ciphertexts)}"
        )
    validate_ciphertexts(vector.ciphertexts, public_key)


def add_encrypted(vectors: Sequence[EncryptedVector], public_key: PublicKey) -> EncryptedVector:
    """Homomorphically add packed vectors (multiply ciphertexts position by position mod n^2).

    Raises :class:`CiphertextError` if the list is empty, if any vector uses another key,
    encoding or length, holds an invalid ciphertext, or if the total number of summands would
    exceed ``spec.max_summands`` (which could overflow a slot).
    """
    if not vectors:
        raise CiphertextError("nothing to add: no vectors given")
    first = vectors[0]
    total = 0
    for index, vector in enumerate(vectors):
        if vector.spec != first.spec:
            raise CiphertextError(
                f"vector {index} uses encoding {vector.spec}, vector 0 uses {first.spec}"
            )
        if vector.length != first.length:
            raise CiphertextError(
                f"vector {index} has length {vector.length}, vector 0 has {first.length}"
            )
        try:
            check_vector(vector, public_key)
        except CiphertextError as exc:
            raise CiphertextError(f"vector {index}: {exc}") from exc
        total += vector.summands
    if total > first.spec.max_summands:
        raise CiphertextError(
            f"the sum would hold {total} summands, more than max_summands="
            f"{first.spec.max_summands} the encoding has headroom for"
        )
    nsquare = gmpy2.mpz(public_key.nsquare)
    sums = [gmpy2.mpz(c) for c in first.ciphertexts]
    for vector in vectors[1:]:
        sums = [acc * c % nsquare for acc, c in zip(sums, vector.ciphertexts, strict=True)]
    return EncryptedVector(
        fingerprint=public_key.fingerprint,
        spec=first.spec,
        length=first.length,
        summands=total,
        ciphertexts=tuple(int(c) for c in sums),
        key_bits=public_key.bits,
    )
