"""Consortium Paillier key pairs: generation, fingerprints and JSON key files.

Threat model: honest-but-curious parties. The public key (``n``) is shared with everyone,
including the aggregator; the private key (``p``, ``q``) is held by banks only and must never
reach the aggregator. Key files are plain JSON tagged with a ``kind`` so that a private key can
never be loaded where a public one is expected (nor the reverse), and with a fingerprint (SHA-256
of ``n``) so a key that does not belong to the consortium is rejected. Private-key files are
written with mode 0600; ``repr`` of a private key never shows its factors. Primes come from the
operating system's entropy (:mod:`secrets`), never from a seeded generator.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gmpy2

from fedtab.atomic import atomic_write_text
from fedtab.errors import KeyMaterialError

PUBLIC_KIND = "fedtab-paillier-public-key"
PRIVATE_KIND = "fedtab-paillier-private-key"
FORMAT_VERSION = 1
MIN_BITS = 2048
ALLOWED_BITS = (2048, 3072)
MIN_TEST_BITS = 256
_MR_ROUNDS = 40


def fingerprint_of(n: int) -> str:
    """SHA-256 hex digest of ``n`` as minimal big-endian bytes (the key's stable identity)."""
    return hashlib.sha256(n.to_bytes((n.bit_length() + 7) // 8, "big")).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """A Paillier public key with generator ``g = n + 1``."""

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 15 or self.n % 2 == 0:
            raise KeyMaterialError("a Paillier modulus must be an odd integer > 15")

    @property
    def bits(self) -> int:
        """Bit length of ``n``."""
        return self.n.bit_length()

    @property
    def nsquare(self) -> int:
        """``n**2``, the ciphertext modulus."""
        return self.n * self.n

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of ``n`` (big-endian bytes); identifies the consortium key."""
        return fingerprint_of(self.n)

    def __repr__(self) -> str:
        return f"PublicKey(bits={self.bits}, fingerprint={self.fingerprint[:16]}...)"


@dataclass(frozen=True)
class PrivateKey:
    """A Paillier private key: the public key and the factors ``p``, ``q`` of ``n``."""

    public: PublicKey
    p: int = field(repr=False)
    q: int = field(repr=False)

    def __post_init__(self) -> None:
        if self.p * self.q != self.public.n or self.p == self.q or min(self.p, self.q) < 3:
            raise KeyMaterialError("private key factors do not match the public modulus")

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the public part."""
        return self.public.fingerprint

    def __repr__(self) -> str:
        return f"PrivateKey(bits={self.public.bits}, fingerprint={self.fingerprint[:16]}...)"


def require_full_size(key: PublicKey, *, allow_small_for_tests: bool = False) -> None:
    """Refuse a consortium key under :data:`MIN_BITS` bits (a service must not run on one).

    Smaller keys pass only with ``allow_small_for_tests`` (``FEDTAB_ALLOW_SMALL_KEYS=1``, for
    tests). Raises :class:`KeyMaterialError` in one line.
    """
    if key.bits < MIN_BITS and not allow_small_for_tests:
        raise KeyMaterialError(
            f"the consortium's Paillier key has {key.bits} bits, below the minimum of "
            f"{MIN_BITS}; create the consortium again with a {MIN_BITS}-bit key"
        )


def _random_prime(bits: int) -> int:
    """A random prime of exactly ``bits`` bits with the top two bits set (so p*q has 2*bits)."""
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if gmpy2.is_prime(candidate, _MR_ROUNDS):
            return int(candidate)


def generate_keypair(bits: int = 2048, *, allow_small_for_tests: bool = False) -> PrivateKey:
    """Generate a consortium key pair with an ``n`` of exactly ``bits`` bits.

    ``bits`` must be 2048 or 3072; smaller even sizes (>= 256) are accepted only with
    ``allow_small_for_tests=True``. Raises :class:`KeyMaterialError` otherwise.
    """
    if bits not in ALLOWED_BITS:
        small_ok = allow_small_for_tests and MIN_TEST_BITS <= bits < MIN_BITS and bits % 2 == 0
        if not small_ok:
            raise KeyMaterialError(
                f"key size {bits} bits refused: use one of {ALLOWED_BITS}"
                + ("" if bits >= MIN_BITS else " (smaller keys only in tests)")
            )
    half = bits // 2
    while True:
        p = _random_prime(half)
        q = _random_prime(half)
        n = p * q
        if p != q and n.bit_length() == bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            return PrivateKey(public=PublicKey(n), p=p, q=q)


def _write_json(path: Path, payload: dict[str, Any], mode: int) -> None:
    """Write JSON atomically with the given file mode (never readable by others meanwhile)."""
    atomic_write_text(Path(path), json.dumps(payload, indent=2, sort_keys=True) + "\n", mode)


def _read_json(path: Path, expected_kind: str) -> dict[str, Any]:
    """Read a key file and check its ``kind``; raises :class:`KeyMaterialError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeyMaterialError(f"key file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyMaterialError(f"key file {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise KeyMaterialError(f"key file {path} is not a JSON object")
    kind = data.get("kind")
    if kind != expected_kind:
        if kind == PRIVATE_KIND and expected_kind == PUBLIC_KIND:
            raise KeyMaterialError(
                f"{path} holds a PRIVATE key where a public key was expected; refusing to load it"
            )
        if kind == PUBLIC_KIND and expected_kind == PRIVATE_KIND:
            raise KeyMaterialError(f"{path} holds a public key where a private key was expected")
        raise KeyMaterialError(f"{path} is not a fedtab key file (kind={kind!r})")
    if data.get("version") != FORMAT_VERSION:
        raise KeyMaterialError(f"{path}: unsupported key file version {data.get('version')!r}")
    return data


def _hex_field(data: dict[str, Any], name: str, path: Path) -> int:
    value = data.get(name)
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return int(value, 16)
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: field {name!r} is not a hex integer") from exc


def _check_fingerprint(
    key: PublicKey, data: dict[str, Any], path: Path, expected: str | None
) -> None:
    if data.get("fingerprint") != key.fingerprint:
        raise KeyMaterialError(f"{path}: stored fingerprint does not match n (corrupt key file)")
    if expected is not None and key.fingerprint != expected.lower():
        raise KeyMaterialError(
            f"{path}: key fingerprint {key.fingerprint[:16]}... does not match the expected "
            f"{expected[:16]}..."
        )


def save_public_key(key: PublicKey, path: Path) -> None:
    """Write the public key as JSON (``kind``, ``n`` hex, ``bits``, ``fingerprint``)."""
    payload = {
        "kind": PUBLIC_KIND,
        "version": FORMAT_VERSION,
        "bits": key.bits,
        "n": format(key.n, "x"),
        "fingerprint": key.fingerprint,
    }
    _write_json(Path(path), payload, 0o644)


def load_public_key(path: Path, expected_fingerprint: str | None = None) -> PublicKey:
    """Load a public key file; raises :class:`KeyMaterialError` on a private-key file, a
    corrupt file or a fingerprint mismatch."""
    path = Path(path)
    data = _read_json(path, PUBLIC_KIND)
    try:
        key = PublicKey(_hex_field(data, "n", path))
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"{path}: {exc}") from exc
    _check_fingerprint(key, data, path, expected_fingerprint)
    return key


def save_private_key(key: PrivateKey, path: Path) -> None:
    """Write the private key as JSON with file mode 0600."""
    payload = {
        "kind": PRIVATE_KIND,
        "version": FORMAT_VERSION,
        "bits": key.public.bits,
        "n": format(key.public.n, "x"),
        "p": format(key.p, "x"),
        "q": format(key.q, "x"),
        "fingerprint": key.fingerprint,
    }
    _write_json(Path(path), payload, 0o600)


def load_private_key(path: Path, expected_fingerprint: str | None = None) -> PrivateKey:
    """Load a private key file; raises :class:`KeyMaterialError` on a public-key file, a
    corrupt file (factors not matching ``n``) or a fingerprint mismatch."""
    path = Path(path)
    data = _read_json(path, PRIVATE_KIND)
    n = _hex_field(data, "n", path)
    p = _hex_field(data, "p", path)
    q = _hex_field(data, "q", path)
    try:
        key = PrivateKey(public=PublicKey(n), p=p, q=q)
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"{path}: {exc}") from exc
    _check_fingerprint(key.public, data, path, expected_fingerprint)
    return key
