"""Consortium bundles on disk: creating a consortium and loading each party's folder.

Threat model: honest-but-curious parties; the operator who runs ``consortium init`` is trusted
to generate keys and hand each folder to its owner over a secure channel, then keep ``ca/``
offline. ``init_consortium`` writes one folder per party with exactly what that party may hold:

- ``aggregator/``: public config, data contract, Paillier *public* key, CA certificate and its
  own TLS certificate/key. Never a private Paillier key, the shard key or the CA key.
  :func:`load_aggregator_bundle` refuses to start if a private key or shard key is present in
  its folder, and it never reads one.
- ``banks/NAME/``: the same plus the Paillier private key and the AES shard key (mode 0600).
- ``operator/``: public config, contract and a TLS identity to submit jobs.
- ``ca/``: the CA certificate and key (mode 0600), needed only to issue certificates later.

Every loader checks that the pieces belong together (key fingerprints against
``consortium.json``, certificates issued by the bundle's CA and naming the right party), so a
file from another consortium fails at start-up with a one-line error naming the file.

Modules: :mod:`~fedtab.consortium.layout` (file and party names), :mod:`~fedtab.consortium.config`
(``consortium.json``, addresses, bank names), :mod:`~fedtab.consortium.create`
(:func:`init_consortium`) and :mod:`~fedtab.consortium.bundles` (the loaders).
"""

from fedtab.consortium.bundles import (
    AggregatorBundle,
    BankBundle,
    OperatorBundle,
    load_aggregator_bundle,
    load_bank_bundle,
    load_operator_bundle,
)
from fedtab.consortium.config import (
    MIN_RECOMMENDED_BANKS,
    ConsortiumConfig,
    parse_address,
    validate_bank_names,
)
from fedtab.consortium.create import ConsortiumPaths, init_consortium
from fedtab.consortium.layout import (
    AGGREGATOR_FORBIDDEN,
    AGGREGATOR_NAME,
    BANK_FILE,
    CA_CERT_FILE,
    CA_KEY_FILE,
    CONSORTIUM_FILE,
    CONTRACT_FILE,
    OPERATOR_NAME,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SHARD_KEY_FILE,
    SHARD_KEY_KIND,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
)

__all__ = [
    "AGGREGATOR_FORBIDDEN",
    "AGGREGATOR_NAME",
    "BANK_FILE",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CONSORTIUM_FILE",
    "CONTRACT_FILE",
    "MIN_RECOMMENDED_BANKS",
    "OPERATOR_NAME",
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "SHARD_KEY_FILE",
    "SHARD_KEY_KIND",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "AggregatorBundle",
    "BankBundle",
    "ConsortiumConfig",
    "ConsortiumPaths",
    "OperatorBundle",
    "init_consortium",
    "load_aggregator_bundle",
    "load_bank_bundle",
    "load_operator_bundle",
    "parse_address",
    "validate_bank_names",
]
