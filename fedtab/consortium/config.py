"""The public consortium configuration (``consortium.json``), address parsing and bank names.

Nothing here is secret: ``consortium.json`` sits in every party's folder and holds only
fingerprints of the keys, never a key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedtab.consortium.layout import AGGREGATOR_NAME, CONSORTIUM_FILE, OPERATOR_NAME
from fedtab.errors import ConfigError, FedtabError

MIN_RECOMMENDED_BANKS = 3
_BANK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_RESERVED_NAMES = frozenset({AGGREGATOR_NAME, OPERATOR_NAME})


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
            return cls.from_dict(read_json(path, ConfigError))
        except ConfigError as exc:
            if str(path) in str(exc):
                raise
            raise ConfigError(f"{path}: {exc}") from exc


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def read_json(path: Path, error: type[FedtabError]) -> dict[str, Any]:
    """Read a JSON object from ``path``; raises ``error`` naming the file if it is missing,
    unreadable, not JSON or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise error(f"{path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path} is not a JSON object")
    return data
