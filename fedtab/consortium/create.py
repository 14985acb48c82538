"""Creating a consortium: CA, Paillier key pair, shard key and one folder per party.

Threat model: the operator who runs ``consortium init`` is trusted to generate keys and hand
each folder to its owner over a secure channel, then keep ``ca/`` offline. Each folder gets
exactly what its party may hold (layout in :mod:`fedtab.consortium`): the Paillier private key
and the shard key go only into ``banks/NAME/`` (mode 0600), the CA key only into ``ca/``
(mode 0600), and the aggregator's folder receives public material only. Nothing is written
over an existing file, and a failure leaves no half-made consortium behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedtab.consortium.config import ConsortiumConfig, parse_address, validate_bank_names
from fedtab.consortium.layout import (
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
from fedtab.crypto.keys import PrivateKey, generate_keypair, save_private_key, save_public_key
from fedtab.data.contract import DataContract
from fedtab.errors import ConfigError
from fedtab.securesum.sealing import generate_shard_key
from fedtab.transport.tls import Role, certificate_fingerprint, create_ca, issue_certificate


@dataclass(frozen=True)
class ConsortiumPaths:
    """Where ``init_consortium`` put everything."""

    root: Path
    config: Path
    ca: Path
    aggregator: Path
    operator: Path
    banks: Mapping[str, Path] = field(default_factory=dict)


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
        _write_bundles(staging, config, contract, (ca_cert, ca_key), private, shard_key, agg_host)
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


def _write_bundles(
    staging: Path,
    config: ConsortiumConfig,
    contract: DataContract,
    ca: tuple[bytes, bytes],
    private: PrivateKey,
    shard_key: bytes,
    agg_host: str,
) -> None:
    """Write the CA, the aggregator's, the operator's and every bank's bundle into ``staging``.

    Threat model: this is the one moment one process holds every party's key material (the
    Paillier private key, the shard key, the CA key); only bank folders receive the private key
    and shard key, the aggregator's folder only the public key.
    """
    ca_cert, ca_key = ca
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
    _write_party(staging / "operator", config, contract, ca_cert, issue(OPERATOR_NAME, "operator"))
    (staging / "banks").mkdir(mode=0o755)
    for name in config.banks:
        bank = staging / "banks" / name
        _write_party(bank, config, contract, ca_cert, issue(name, "bank"))
        save_public_key(private.public, bank / PUBLIC_KEY_FILE)
        save_private_key(private, bank / PRIVATE_KEY_FILE)
        shard = {"kind": SHARD_KEY_KIND, "version": 1, "consortium_id": config.consortium_id}
        _write_json(bank / SHARD_KEY_FILE, {**shard, "key": shard_key.hex()}, 0o600)
        _write_json(bank / BANK_FILE, {"name": name})
