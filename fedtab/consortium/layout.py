"""The on-disk layout of a consortium: file names in each party's folder and party names.

No key material is read or written here; :mod:`fedtab.consortium.create` writes these files and
:mod:`fedtab.consortium.bundles` reads them (the threat model is in :mod:`fedtab.consortium`).
"""

from __future__ import annotations

CONSORTIUM_FILE = "consortium.json"
CONTRACT_FILE = "contract.json"
PUBLIC_KEY_FILE = "paillier_public.json"
PRIVATE_KEY_FILE = "paillier_private.json"
SHARD_KEY_FILE = "shard_key.json"
BANK_FILE = "bank.json"
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
TLS_CERT_FILE = "tls.pem"
TLS_KEY_FILE = "tls.key"
SHARD_KEY_KIND = "fedtab-shard-key"
AGGREGATOR_NAME = "aggregator"
OPERATOR_NAME = "operator"
# Files the aggregator must never hold; their presence stops it from starting.
AGGREGATOR_FORBIDDEN = frozenset({PRIVATE_KEY_FILE, SHARD_KEY_FILE, CA_KEY_FILE})
