"""Packed Paillier secure-sum engine: keys, fixed-point encoding, encryption, sums, wire format.

Threat model (details in each module): the public key and ciphertexts may go anywhere,
including the aggregator; private keys, :class:`Decryptor` and ``Encryptor(method="crt")``
exist only in key holders' (banks') processes.
"""

from fedtab.crypto.ciphertexts import (
    EncryptedVector,
    add_encrypted,
    num_ciphertexts,
    validate_ciphertexts,
)
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.encoding import (
    EncodingSpec,
    decode_plaintexts,
    headroom_bits,
    quantisation_bound,
    slot_bits,
    slots_per_plaintext,
)
from fedtab.crypto.encryptor import Encryptor
from fedtab.crypto.keys import (
    PrivateKey,
    PublicKey,
    generate_keypair,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from fedtab.crypto.wire import (
    encrypted_vector_from_bytes,
    encrypted_vector_to_bytes,
    encrypted_vector_wire_size,
)

__all__ = [
    "Decryptor",
    "EncodingSpec",
    "EncryptedVector",
    "Encryptor",
    "PrivateKey",
    "PublicKey",
    "add_encrypted",
    "decode_plaintexts",
    "encrypted_vector_from_bytes",
    "encrypted_vector_to_bytes",
    "encrypted_vector_wire_size",
    "generate_keypair",
    "headroom_bits",
    "load_private_key",
    "load_public_key",
    "num_ciphertexts",
    "quantisation_bound",
    "save_private_key",
    "save_public_key",
    "slot_bits",
    "slots_per_plaintext",
    "validate_ciphertexts",
]
