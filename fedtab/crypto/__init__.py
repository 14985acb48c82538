"""Packed Paillier secure-sum engine: keys, fixed-point encoding, encryption, sums, wire format.

Threat model (details in each module): the public key and ciphertexts may go anywhere,
including the aggregator, so this package exports only what needs the public key alone.
Private-key material is imported explicitly, by key holders (banks) only:
:mod:`fedtab.crypto.keys` (``PrivateKey``, ``generate_keypair``, private key files),
:mod:`fedtab.crypto.decryptor` (``Decryptor``) and :mod:`fedtab.crypto.crt` (the arithmetic
with the factors, behind ``Decryptor`` and ``Encryptor(method="crt")``). Importing this package
loads neither of the last two; ``tests/test_layering.py`` checks that the aggregator never does.
"""

from fedtab.crypto.ciphertexts import (
    EncryptedVector,
    add_encrypted,
    num_ciphertexts,
    validate_ciphertexts,
)
from fedtab.crypto.encoding import (
    EncodingSpec,
    decode_plaintexts,
    headroom_bits,
    quantisation_bound,
    slot_bits,
    slots_per_plaintext,
)
from fedtab.crypto.encryptor import Encryptor
from fedtab.crypto.keys import PublicKey, load_public_key, save_public_key
from fedtab.crypto.wire import (
    encrypted_vector_from_bytes,
    encrypted_vector_to_bytes,
    encrypted_vector_wire_size,
)

__all__ = [
    "EncodingSpec",
    "EncryptedVector",
    "Encryptor",
    "PublicKey",
    "add_encrypted",
    "decode_plaintexts",
    "encrypted_vector_from_bytes",
    "encrypted_vector_to_bytes",
    "encrypted_vector_wire_size",
    "headroom_bits",
    "load_public_key",
    "num_ciphertexts",
    "quantisation_bound",
    "save_public_key",
    "slot_bits",
    "slots_per_plaintext",
    "validate_ciphertexts",
]
