"""Packed Paillier secure-sum engine: keys, fixed-point encoding, encryption, sums, wire format."""

from fedtab.crypto.encoding import EncodingSpec
from fedtab.crypto.keys import (
    PrivateKey,
    PublicKey,
    generate_keypair,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)

__all__ = [
    "EncodingSpec",
    "PrivateKey",
    "PublicKey",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "save_private_key",
    "save_public_key",
]
