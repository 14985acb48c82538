"""Sealing of plaintext decryption shards that banks relay to each other through the aggregator.

Threat model: honest-but-curious aggregator that relays every message between banks. Banks
share decryption work: each decrypts a shard of the aggregate ciphertexts and the plaintext
shards go to the other banks *via the aggregator*. The aggregator must not read them (they are
the plaintext aggregates it may never see) nor alter, swap or replay them undetected. So each
shard is sealed with AES-256-GCM under the consortium's symmetric *shard key*, which every bank
holds and the aggregator never does (it is written only into bank bundles).

The associated data (AAD) binds a sealed shard to its context — the caller passes
``fedtab.securesum.shards.shard_aad``: job, step index and id, request digest, sending bank,
ciphertext range, key fingerprint and the digest of the aggregate it decrypts — so a shard
sealed for one step or aggregate cannot be replayed into another. Nonces are 12 random bytes
from the OS per message (safe far beyond the number of shards a consortium will ever seal under
one key: the birthday bound is ~2^48 messages). Out of scope: a malicious bank (all banks hold
the same key and could forge shards of others); that needs per-bank signatures or threshold
decryption, which come later.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedtab.errors import KeyMaterialError, ProtocolError

SHARD_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def generate_shard_key() -> bytes:
    """A fresh 32-byte AES-256 key from the operating system's entropy."""
    return secrets.token_bytes(SHARD_KEY_BYTES)


def _cipher(key: bytes) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != SHARD_KEY_BYTES:
        raise KeyMaterialError(f"a shard key must be {SHARD_KEY_BYTES} bytes")
    return AESGCM(bytes(key))


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` bound to ``aad``.

    Returns ``nonce (12 bytes) || ciphertext || tag (16 bytes)``, i.e. ``len(plaintext) + 28``
    bytes. Raises :class:`KeyMaterialError` if ``key`` is not 32 bytes.
    """
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + _cipher(key).encrypt(nonce, bytes(plaintext), bytes(aad))


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Verify and decrypt a value produced by :func:`seal` with the same ``key`` and ``aad``.

    Raises :class:`ProtocolError` ("... failed authentication ...") when the bytes were
    tampered with or truncated, or the key or associated data differ; :class:`KeyMaterialError`
    if ``key`` is not 32 bytes.
    """
    cipher = _cipher(key)
    sealed = bytes(sealed)
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise ProtocolError(
            f"sealed shard failed authentication: {len(sealed)} bytes is shorter than nonce and tag"
        )
    try:
        return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bytes(aad))
    except InvalidTag as exc:
        raise ProtocolError(
            "sealed shard failed authentication (tampered, wrong context or wrong shard key)"
        ) from exc
