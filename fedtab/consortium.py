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
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedtab.crypto.keys import (
    PRIVATE_KIND,
    PrivateKey,
    PublicKey,
    generate_keypair,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from fedtab.data.contract import DataContract
from fedtab.errors import ConfigError, DataContractError, FedtabError, KeyMaterialError
from fedtab.transport.sealing import SHARD_KEY_BYTES, generate_shard_key
from fedtab.transport.tls import (
    Role,
    TlsIdentity,
    certificate_fingerprint,
    check_identity,
    create_ca,
    issue_certificate,
    load_certificate,
    load_private_key_pem,
)

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
MIN_RECOMMENDED_BANKS = 3
# Files the aggregator must never hold; their presence stops it from starting.
AGGREGATOR_FORBIDDEN = frozenset({PRIVATE_KEY_FILE, SHARD_KEY_FILE, CA_KEY_FILE})
_BANK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_RESERVED_NAMES = frozenset({AGGREGATOR_NAME, OPERATOR_NAME})
# A private Paillier key file (sorted keys: bits, fingerprint, kind, n, p, q) declares its kind
# within its first ~145 bytes and n (>= 64 hex digits) follows, so 192 bytes never reach p or q.
_SNIFF_BYTES = 192
_PRIVATE_MARKERS = (PRIVATE_KIND.encode(), SHARD_KEY_KIND.encode())


def parse_address(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``.

    The host is the one banks dial (a DNS name or IP, not a wildcard such as 0.0.0.0); the port
    is 1-65535. Raises :class:`ConfigError` with the reason.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"address {text!r} is not HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"address {text!r}: unbalanced brackets around an IPv6 host")
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"address {text!r}: port must be a number in 1-65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"address {text!r}: {host!r} is not a valid host name") from None
    else:
        if ip.is_unspecified:
            raise ConfigError(
                f"address {text!r}: give the address banks connect to, not a wildcard"
            )
    return host, int(port_text)


def validate_bank_names(names: Sequence[str]) -> tuple[str, ...]:
    """Check bank names (``[A-Za-z0-9_.-]{1,64}``, unique, not reserved, >= 1 bank).

    Raises :class:`ConfigError` naming the first offending name.
    """
    if not names:
        raise ConfigError("a consortium needs at least one bank")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not _BANK_NAME.fullmatch(name) or name.startswith("."):
            raise ConfigError(
                f"bank name {name!r} is invalid: use 1-64 of A-Z a-z 0-9 _ . - "
                "(not starting with '.')"
            )
        if name in _RESERVED_NAMES:
            raise ConfigError(f"bank name {name!r} is reserved")
        if name in seen:
            raise ConfigError(f"bank name {name!r} appears twice")
        seen.add(name)
    return tuple(names)


@dataclass(frozen=True)
class ConsortiumConfig:
    """The public consortium configuration (``consortium.json``), identical in every bundle."""

    consortium_id: str
    banks: tuple[str, ...]
    key_fingerprint: str
    aggregator_address: str
    key_bits: int
    created: str = ""
    ca_fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (banks as a list)."""
        return {**asdict(self), "banks": list(self.banks)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsortiumConfig:
        """Validate and build; raises :class:`ConfigError` on a missing or malformed field."""
        try:
            config = cls(
                consortium_id=_text(data, "consortium_id"),
                banks=validate_bank_names(list(data["banks"])),
                key_fingerprint=_text(data, "key_fingerprint").lower(),
                aggregator_address=_text(data, "aggregator_address"),
                key_bits=int(data["key_bits"]),
                created=str(data.get("created", "")),
                ca_fingerprint=str(data.get("ca_fingerprint", "")).lower(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed consortium config: {exc!r}") from exc
        if not re.fullmatch(r"[0-9a-f]{64}", config.key_fingerprint):
            raise ConfigError("consortium config: key_fingerprint is not a SHA-256 hex digest")
        parse_address(config.aggregator_address)
        return config

    @classmethod
    def load(cls, path: Path) -> ConsortiumConfig:
        """Load ``consortium.json`` (``path`` may be the file or a folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONSORTIUM_FILE
        try:
            return cls.from_dict(_read_json(path, ConfigError))
        except ConfigError as exc:
            if str(path) in str(exc):
                raise
            raise ConfigError(f"{path}: {exc}") from exc


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


@dataclass(frozen=True)
class ConsortiumPaths:
    """Where ``init_consortium`` put everything."""

    root: Path
    config: Path
    ca: Path
    aggregator: Path
    operator: Path
    banks: Mapping[str, Path] = field(default_factory=dict)


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


# --------------------------------------------------------------------------- writing


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (must not exist) with ``mode`` and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def _write_json(path: Path, payload: Mapping[str, Any], mode: int = 0o644) -> None:
    """Write JSON in the payload's key order (the shard key file puts ``kind`` first)."""
    _write(path, (json.dumps(payload, indent=2) + "\n").encode(), mode)


def _write_party(
    folder: Path,
    config: ConsortiumConfig,
    contract: DataContract,
    ca_cert: bytes,
    cert_and_key: tuple[bytes, bytes],
) -> None:
    folder.mkdir(mode=0o700)
    _write_json(folder / CONSORTIUM_FILE, config.to_dict())
    _write_json(folder / CONTRACT_FILE, contract.to_dict())
    _write(folder / CA_CERT_FILE, ca_cert, 0o644)
    _write(folder / TLS_CERT_FILE, cert_and_key[0], 0o644)
    _write(folder / TLS_KEY_FILE, cert_and_key[1], 0o600)


def init_consortium(
    directory: Path,
    contract: DataContract,
    bank_names: Sequence[str],
    *,
    key_bits: int = 2048,
    aggregator_address: str = "127.0.0.1:50051",
    allow_small_key_for_tests: bool = False,
) -> ConsortiumPaths:
    """Create a consortium in ``directory``: CA, Paillier key pair, shard key and one bundle per
    party (layout in the module docstring).

    Everything is written into a hidden sibling folder and renamed into place at the end, so a
    failure leaves nothing half-made. Raises :class:`ConfigError` for bad bank names or address
    or an existing non-empty ``directory``; :class:`KeyMaterialError` for a refused key size.
    """
    directory = Path(directory)
    names = validate_bank_names(bank_names)
    agg_host, _ = parse_address(aggregator_address)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ConfigError(f"{directory} already exists and is not empty; refusing to overwrite")
    private = generate_keypair(key_bits, allow_small_for_tests=allow_small_key_for_tests)
    shard_key = generate_shard_key()
    consortium_id = str(uuid.uuid4())
    ca_cert, ca_key = create_ca(f"fedtab consortium {consortium_id[:8]} CA")
    config = ConsortiumConfig(
        consortium_id=consortium_id,
        banks=names,
        key_fingerprint=private.fingerprint,
        aggregator_address=aggregator_address,
        key_bits=private.public.bits,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        ca_fingerprint=certificate_fingerprint(ca_cert),
    )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.init-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o755)
    try:
        _write_json(staging / CONSORTIUM_FILE, config.to_dict())
        (staging / "ca").mkdir(mode=0o700)
        _write(staging / "ca" / CA_CERT_FILE, ca_cert, 0o644)
        _write(staging / "ca" / CA_KEY_FILE, ca_key, 0o600)

        def issue(name: str, role: Role, hosts: Sequence[str] = ()) -> tuple[bytes, bytes]:
            return issue_certificate(ca_cert, ca_key, name, role, hosts=hosts)

        aggregator = staging / "aggregator"
        _write_party(
            aggregator, config, contract, ca_cert, issue(AGGREGATOR_NAME, "aggregator", [agg_host])
        )
        save_public_key(private.public, aggregator / PUBLIC_KEY_FILE)
        _write_party(
            staging / "operator", config, contract, ca_cert, issue(OPERATOR_NAME, "operator")
        )
        (staging / "banks").mkdir(mode=0o755)
        for name in names:
            bank = staging / "banks" / name
            _write_party(bank, config, contract, ca_cert, issue(name, "bank"))
            save_public_key(private.public, bank / PUBLIC_KEY_FILE)
            save_private_key(private, bank / PRIVATE_KEY_FILE)
            shard = {"kind": SHARD_KEY_KIND, "version": 1, "consortium_id": consortium_id}
            _write_json(bank / SHARD_KEY_FILE, {**shard, "key": shard_key.hex()}, 0o600)
            _write_json(bank / BANK_FILE, {"name": name})
        if directory.exists():
            directory.rmdir()
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ConsortiumPaths(
        root=directory,
        config=directory / CONSORTIUM_FILE,
        ca=directory / "ca",
        aggregator=directory / "aggregator",
        operator=directory / "operator",
        banks={name: directory / "banks" / name for name in names},
    )


# --------------------------------------------------------------------------- loading


def _read_json(path: Path, error: type[FedtabError]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object")
    return data


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
        return DataContract.from_dict(_read_json(path, ConfigError))
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
    ``_SNIFF_BYTES`` of a file are read: key files put ``kind`` before any secret field."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.name in AGGREGATOR_FORBIDDEN:
            raise KeyMaterialError(
                f"{path} must not be in the aggregator's folder; refusing to start "
                "(the aggregator holds public keys only)"
            )
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        if any(marker in head for marker in _PRIVATE_MARKERS):
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
    data = _read_json(path, KeyMaterialError)
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
    name = _read_json(directory / BANK_FILE, ConfigError).get("name")
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
