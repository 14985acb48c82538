"""`fedtab consortium`: create a consortium (CA, Paillier keys, shard key, bundles) or show one.

Every option can also be set from the environment (``FEDTAB_CONSORTIUM_INIT_SCHEMA``,
``FEDTAB_CONSORTIUM_INIT_BANK`` (space-separated), ``FEDTAB_CONSORTIUM_INIT_KEY_BITS``,
``FEDTAB_CONSORTIUM_INIT_AGGREGATOR_ADDRESS``). Keys smaller than 2048 bits are refused
unless the hidden ``--insecure-small-key-for-tests`` flag (or ``FEDTAB_ALLOW_SMALL_KEYS=1``) is
given; that exists for tests only. Errors print one line and exit non-zero.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from fedtab.cli.edge import reports_errors
from fedtab.consortium import (
    BANK_FILE,
    CONSORTIUM_FILE,
    MIN_RECOMMENDED_BANKS,
    TLS_CERT_FILE,
    ConsortiumConfig,
    init_consortium,
    parse_address,
)
from fedtab.data.contract import DataContract
from fedtab.errors import ConfigError
from fedtab.transport.tls import certificate_fingerprint, certificate_subject, load_certificate


class AddressType(click.ParamType):
    """``HOST:PORT`` (``[v6]:PORT``) that banks dial; the value stays the original string."""

    name = "HOST:PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value).strip()
        try:
            parse_address(text)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        return text


ADDRESS = AddressType()


@click.group()
def consortium() -> None:
    """Create a consortium (CA, keys, one folder per party) or show its public config."""


@consortium.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--schema",
    "schema_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="FEDTAB_CONSORTIUM_INIT_SCHEMA",
    show_envvar=True,
    help="The data contract (JSON, from `fedtab schema infer`).",
)
@click.option(
    "--bank",
    "banks",
    multiple=True,
    required=True,
    envvar="FEDTAB_CONSORTIUM_INIT_BANK",
    show_envvar=True,
    help="A member bank's name (repeat for each bank).",
)
@click.option(
    "--key-bits",
    type=click.IntRange(min=256),
    default=2048,
    show_default=True,
    show_envvar=True,
    help="Paillier modulus size (2048 or 3072).",
)
@click.option(
    "--aggregator-address",
    type=ADDRESS,
    default="127.0.0.1:50051",
    show_default=True,
    show_envvar=True,
    help="Where banks reach the aggregator; its host goes into the aggregator's certificate.",
)
@click.option(
    "--insecure-small-key-for-tests",
    "allow_small",
    is_flag=True,
    hidden=True,
    envvar="FEDTAB_ALLOW_SMALL_KEYS",
)
@reports_errors
def init(
    directory: Path,
    schema_path: Path,
    banks: tuple[str, ...],
    key_bits: int,
    aggregator_address: str,
    allow_small: bool,
) -> None:
    """Create a new consortium in DIRECTORY (which must not exist or be empty)."""
    contract = DataContract.load(schema_path)
    paths = init_consortium(
        directory,
        contract,
        banks,
        key_bits=key_bits,
        aggregator_address=aggregator_address,
        allow_small_key_for_tests=allow_small,
    )
    config = ConsortiumConfig.load(paths.config)
    click.echo(f"created consortium {config.consortium_id} in {paths.root}")
    click.echo(f"  Paillier key: {config.key_bits} bits, fingerprint {config.key_fingerprint}")
    click.echo(f"  aggregator address: {config.aggregator_address}")
    click.echo(f"  data contract: {len(contract.features)} features, label {contract.label!r}")
    click.echo("give each folder to its owner over a secure channel:")
    click.echo(f"  {paths.aggregator}  -> the aggregator (public key only)")
    for name, folder in paths.banks.items():
        click.echo(f"  {folder}  -> bank {name!r} (private key + shard key: keep secret)")
    click.echo(f"  {paths.operator}  -> the operator who submits jobs")
    click.echo(f"  {paths.ca}  -> keep offline (CA key; only needed to add members)")
    if key_bits < 2048:
        click.echo(f"warning: {key_bits}-bit key is INSECURE; for tests only", err=True)
    if len(banks) < MIN_RECOMMENDED_BANKS:
        click.echo(
            f"warning: only {len(banks)} bank(s): with fewer than {MIN_RECOMMENDED_BANKS} banks "
            "an aggregate reveals the other bank's contribution; jobs will need an explicit "
            "override",
            err=True,
        )


def _folder_kind(directory: Path) -> str:
    if (directory / "ca").is_dir() and (directory / "banks").is_dir():
        return "consortium root"
    if (directory / BANK_FILE).is_file():
        return "bank bundle"
    if (directory / TLS_CERT_FILE).is_file():
        return f"{directory.name} bundle"
    return "consortium config"


@consortium.command("show")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@reports_errors
def show(directory: Path) -> None:
    """Print the public config of a consortium root or any party's folder (no secrets)."""
    if not (directory / CONSORTIUM_FILE).is_file():
        raise ConfigError(f"{directory / CONSORTIUM_FILE} is missing (not a consortium folder)")
    config = ConsortiumConfig.load(directory / CONSORTIUM_FILE)
    click.echo(f"folder:             {directory} ({_folder_kind(directory)})")
    click.echo(f"consortium id:      {config.consortium_id}")
    click.echo(f"created:            {config.created or '-'}")
    click.echo(f"banks ({len(config.banks)}):          {', '.join(config.banks)}")
    click.echo(f"aggregator address: {config.aggregator_address}")
    click.echo(f"Paillier key:       {config.key_bits} bits, fingerprint {config.key_fingerprint}")
    if config.ca_fingerprint:
        click.echo(f"CA fingerprint:     {config.ca_fingerprint}")
    cert_path = directory / TLS_CERT_FILE
    if cert_path.is_file():
        pem = cert_path.read_bytes()
        subject = certificate_subject(pem)
        expires = load_certificate(pem).not_valid_after_utc
        days = (expires - datetime.now(UTC)).days
        click.echo(
            f"certificate:        {subject.role} {subject.name!r}, expires {expires:%Y-%m-%d}"
            f" ({days} days), fingerprint {certificate_fingerprint(pem)}"
        )
    if len(config.banks) < MIN_RECOMMENDED_BANKS:
        click.echo(
            f"warning: fewer than {MIN_RECOMMENDED_BANKS} banks; jobs need an explicit override",
            err=True,
        )
