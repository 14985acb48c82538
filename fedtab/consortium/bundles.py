"""Loading each party's folder into a bundle: what the aggregator, a bank and the operator hold.

Threat model: honest-but-curious parties. The aggregator holds public material only:
:func:`load_aggregator_bundle` refuses to start if a private key, shard key or CA key is present
in its folder (by file name, or by a header declaring a private Paillier key or shard key), and
it never reads one. Only :func:`load_bank_bundle` reads the Paillier private key and the AES
shard key. Every loader checks that the pieces belong together (key fingerprints against
``consortium.json``, certificates issued by the bundle's CA and naming the right party), so a
file from another consortium fails at start-up with a one-line error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fedtab.consortium.config import ConsortiumConfig, read_json
from fedtab.consortium.layout import (
    AGGREGATOR_FORBIDDEN,
    AGGREGATOR_NAME,
    BANK_FILE,
    CA_CERT_FILE,
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
from fedtab.crypto.keys import (
    PRIVATE_KIND,
    PrivateKey,
    PublicKey,
    load_private_key,
    load_public_key,
)
from fedtab.data.contract import DataContract
from fedtab.errors import ConfigError, DataContractError, KeyMaterialError
from fedtab.securesum.sealing import SHARD_KEY_BYTES
from fedtab.transport.tls import (
    Role,
    TlsIdentity,
    certificate_fingerprint,
    check_identity,
    load_certificate,
    load_private_key_pem,
)

# A private Paillier key file (sorted keys: bits, fingerprint, kind, n, p, q) declares its kind
# within its first ~145 bytes and n (>= 64 hex digits) follows, so 192 bytes never reach p or q.
SNIFF_BYTES = 192
PRIVATE_MARKERS = (PRIVATE_KIND.encode(), SHARD_KEY_KIND.encode())


@dataclass(frozen=True)
class AggregatorBundle:
    """What the aggregator holds: public material only."""

    directory: Path
    config: ConsortiumConfig
    contract: DataContract
    public_key: PublicKey
    tls: TlsIdentity


@dataclass(frozen=True)
class BankBundle:
    """What one bank holds, including the consortium private key and the shard key."""

    directory: Path
    name: str
    config: ConsortiumConfig
    contract: DataContract
    public_key: PublicKey
    private_key: PrivateKey = field(repr=False)
    shard_key: bytes = field(repr=False)
    tls: TlsIdentity


@dataclass(frozen=True)
class OperatorBundle:
    """What the operator's job client holds."""

    directory: Path
    config: ConsortiumConfig
    contract: DataContract
    tls: TlsIdentity


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyMaterialError(f"{path} is missing") from exc
    except OSError as exc:
        raise KeyMaterialError(f"{path} is not readable: {exc}") from exc


def _load_contract(folder: Path) -> DataContract:
    path = folder / CONTRACT_FILE
    try:
        return DataContract.from_dict(read_json(path, ConfigError))
    except DataContractError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _load_tls(folder: Path, config: ConsortiumConfig, name: str, role: Role) -> TlsIdentity:
    identity = TlsIdentity(
        ca_cert_pem=_read_bytes(folder / CA_CERT_FILE),
        cert_pem=_read_bytes(folder / TLS_CERT_FILE),
        key_pem=_read_bytes(folder / TLS_KEY_FILE),
    )
    for file, parse in (
        (CA_CERT_FILE, lambda: load_certificate(identity.ca_cert_pem)),
        (TLS_CERT_FILE, lambda: load_certificate(identity.cert_pem)),
        (TLS_KEY_FILE, lambda: load_private_key_pem(identity.key_pem)),
    ):
        try:
            parse()
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"{folder / file}: {exc}") from exc
    if config.ca_fingerprint and certificate_fingerprint(identity.ca_cert_pem) != (
        config.ca_fingerprint
    ):
        raise KeyMaterialError(f"{folder / CA_CERT_FILE} is not this consortium's CA")
    try:
        subject = check_identity(identity)
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"{folder / TLS_CERT_FILE}: {exc}") from exc
    if subject.name != name or subject.role != role:
        raise KeyMaterialError(
            f"{folder / TLS_CERT_FILE} names {subject.role} {subject.name!r}, "
            f"expected {role} {name!r}"
        )
    return identity


def _load_public(folder: Path, config: ConsortiumConfig) -> PublicKey:
    key = load_public_key(folder / PUBLIC_KEY_FILE, expected_fingerprint=config.key_fingerprint)
    if key.bits != config.key_bits:
        raise KeyMaterialError(
            f"{folder / PUBLIC_KEY_FILE}: {key.bits} bits, config says {config.key_bits}"
        )
    return key


def _refuse_private_material(folder: Path) -> None:
    """Raise if the aggregator's folder holds a private key, shard key or CA key: by file name,
    or by a header declaring a private Paillier key or shard key. Only the first
    ``SNIFF_BYTES`` of a file are read: key files put ``kind`` before any secret field."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.name in AGGREGATOR_FORBIDDEN:
            raise KeyMaterialError(
                f"{path} must not be in the aggregator's folder; refusing to start "
                "(the aggregator holds public keys only)"
            )
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
        if any(marker in head for marker in PRIVATE_MARKERS):
            raise KeyMaterialError(
                f"{path} holds private key material; refusing to start the aggregator"
            )


def load_aggregator_bundle(directory: Path) -> AggregatorBundle:
    """Load the aggregator's folder; never reads a private key.

    Raises :class:`KeyMaterialError` if private key material is present or a key/certificate
    does not belong to the consortium; :class:`ConfigError` for missing/corrupt config files.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"aggregator folder {directory} does not exist")
    _refuse_private_material(directory)
    config = ConsortiumConfig.load(directory / CONSORTIUM_FILE)
    return AggregatorBundle(
        directory=directory,
        config=config,
        contract=_load_contract(directory),
        public_key=_load_public(directory, config),
        tls=_load_tls(directory, config, AGGREGATOR_NAME, "aggregator"),
    )


def _load_shard_key(path: Path, config: ConsortiumConfig) -> bytes:
    data = read_json(path, KeyMaterialError)
    if data.get("kind") != SHARD_KEY_KIND:
        raise KeyMaterialError(f"{path} is not a shard key file")
    if data.get("consortium_id") != config.consortium_id:
        raise KeyMaterialError(f"{path} belongs to another consortium")
    try:
        key = bytes.fromhex(str(data.get("key")))
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: key is not hex") from exc
    if len(key) != SHARD_KEY_BYTES:
        raise KeyMaterialError(f"{path}: key must be {SHARD_KEY_BYTES} bytes")
    return key


def load_bank_bundle(directory: Path) -> BankBundle:
    """Load a bank's folder, checking every key against ``consortium.json``.

    Raises :class:`KeyMaterialError` if a key's fingerprint differs from the configured one,
    the certificate names another party, or a key file is missing/corrupt; :class:`ConfigError`
    for missing/corrupt config files or a bank not listed in the consortium.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"bank folder {directory} does not exist")
    config = ConsortiumConfig.load(directory / CONSORTIUM_FILE)
    name = read_json(directory / BANK_FILE, ConfigError).get("name")
    if not isinstance(name, str) or name not in config.banks:
        raise ConfigError(f"{directory / BANK_FILE}: bank {name!r} is not in the consortium")
    public = _load_public(directory, config)
    private = load_private_key(
        directory / PRIVATE_KEY_FILE, expected_fingerprint=config.key_fingerprint
    )
    return BankBundle(
        directory=directory,
        name=name,
        config=config,
        contract=_load_contract(directory),
        public_key=public,
        private_key=private,
        shard_key=_load_shard_key(directory / SHARD_KEY_FILE, config),
        tls=_load_tls(directory, config, name, "bank"),
    )


def load_operator_bundle(directory: Path) -> OperatorBundle:
    """Load the operator's folder (config, contract, TLS identity)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"operator folder {directory} does not exist")
    config = ConsortiumConfig.load(directory / CONSORTIUM_FILE)
    return OperatorBundle(
        directory=directory,
        config=config,
        contract=_load_contract(directory),
        tls=_load_tls(directory, config, OPERATOR_NAME, "operator"),
    )
