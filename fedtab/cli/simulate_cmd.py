"""`fedtab simulate`: a whole consortium on this machine, real processes, keys and TLS.

With no arguments it generates a synthetic three-bank consortium, trains the secure federated
model and prints each bank's holdout metrics for local-only, federated and pooled training.
Option parsing and printing only: the work is :func:`fedtab.api.simulate`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from fedtab.api import simulation as api
from fedtab.cli.edge import reports_errors
from fedtab.cli.progress import print_progress
from fedtab.data.sources import is_database_url, mask_url
from fedtab.errors import ConfigError
from fedtab.jobs import simulated_kinds
from fedtab.simulation.inputs import BankTable, bank_source
from fedtab.tracking import TrackingRequest, tracking_options


class BankFileType(click.ParamType):
    """``NAME=PATH`` for one bank's table, or ``NAME=URL#TABLE`` / ``NAME=URL#SELECT ...`` for
    a database table or query (:func:`fedtab.simulation.inputs.bank_source`)."""

    name = "NAME=PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, sep, path = str(value).partition("=")
        if not sep or not name or not path:
            self.fail(f"{mask_url(str(value))!r} is not NAME=PATH", param, ctx)
        if is_database_url(path):
            try:
                return name, bank_source(path)
            except ConfigError as exc:
                self.fail(f"bank {name!r}: {exc}", param, ctx)
        if not Path(path).is_file():
            self.fail(f"bank {name!r}: file {path!r} does not exist", param, ctx)
        return name, Path(path)


@click.command()
@click.option(
    "--bank-file",
    "bank_files",
    envvar="FEDTAB_SIMULATE_BANK_FILE",
    type=BankFileType(),
    multiple=True,
    help="A bank's table as NAME=PATH, or NAME=URL#TABLE or NAME=URL#SELECT... for a "
    "database (repeat per bank).",
)
@click.option(
    "--data",
    "data_path",
    envvar="FEDTAB_SIMULATE_DATA",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="One table to split into --banks banks (20% holdout per bank).",
)
@click.option("--label", help="Label column (0/1) of --data or --bank-file tables.")
@click.option(
    "--id",
    "id_column",
    envvar="FEDTAB_SIMULATE_ID",
    help="Optional row-id column, excluded from features.",
)
@click.option(
    "--banks",
    "n_banks",
    envvar="FEDTAB_SIMULATE_BANKS",
    type=click.IntRange(2, 64),
    default=3,
    show_default=True,
    help="Number of banks for --data or synthetic data.",
)
@click.option(
    "--split", default="iid", show_default=True, help="How --data is split: iid or by-column:COL."
)
@click.option(
    "--rows",
    type=click.IntRange(1_000),
    default=api.DEFAULT_ROWS,
    show_default=True,
    help="Rows of synthetic data (all banks together).",
)
@click.option(
    "--model",
    "kind",
    envvar="FEDTAB_SIMULATE_MODEL",
    type=click.Choice(simulated_kinds()),
    default="gbdt",
    show_default=True,
)
@click.option(
    "--params",
    "params_path",
    envvar="FEDTAB_SIMULATE_PARAMS",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A job file whose [params] (and [job]) override defaults.",
)
@click.option(
    "--out",
    "out_dir",
    envvar="FEDTAB_SIMULATE_OUT",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("fedtab-out"),
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--key-bits",
    type=click.Choice(["2048", "3072", "1024", "768"]),
    default="2048",
    show_default=True,
    help="Paillier key size (below 2048 only with FEDTAB_ALLOW_SMALL_KEYS=1, for tests).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Crypto worker processes per bank.",
)
@click.option(
    "--allow-two-banks",
    is_flag=True,
    help="Allow a two-bank consortium (each bank can deduce the other's sums).",
)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@reports_errors
@tracking_options
def simulate(
    bank_files: tuple[tuple[str, BankTable], ...],
    data_path: Path | None,
    label: str | None,
    id_column: str | None,
    n_banks: int,
    split: str,
    rows: int,
    kind: str,
    params_path: Path | None,
    out_dir: Path,
    seed: int,
    key_bits: str,
    workers: int,
    allow_two_banks: bool,
    timeout: float | None,
    mlflow: TrackingRequest,
) -> None:
    """Simulate a consortium locally: train securely, compare with local-only and pooled."""
    started = time.perf_counter()
    job = api.simulation_job(kind, params_path, seed=seed, allow_two_banks=allow_two_banks)
    result = api.simulate(
        _tables(bank_files, data_path, label), job=job, label=label, id_column=id_column,
        banks=n_banks, split=split, rows=rows, seed=seed, out=out_dir, key_bits=int(key_bits),
        workers=workers, timeout=timeout, progress=print_progress(job), say=_say, mlflow=mlflow,
    )
    if result.table:
        click.echo()
        click.echo(
            f"Holdout metrics per bank ({job.kind}; pooled = reference only a "
            "simulation can train):"
        )
        click.echo(result.table)
    click.echo()
    click.echo(f"model: {result.model_path}")
    click.echo(f"report: {result.report_path}")
    click.echo(f"total time: {time.perf_counter() - started:.1f}s")
    click.echo()
    click.echo("What this run did:")
    for line in result.summary:
        click.echo(f"  {line}")


def _tables(
    bank_files: tuple[tuple[str, BankTable], ...], data_path: Path | None, label: str | None
) -> dict[str, BankTable] | Path | None:
    """The ``tables`` argument of :func:`fedtab.api.simulate` from the command's options."""
    if bank_files and data_path is not None:
        raise ConfigError("give either --bank-file or --data, not both")
    if (bank_files or data_path is not None) and not label:
        raise ConfigError("--label is required with --bank-file or --data")
    if bank_files:
        names = [name for name, _ in bank_files]
        if len(set(names)) != len(names):
            raise ConfigError(f"bank names repeat in --bank-file: {names}")
        return dict(bank_files)
    return data_path


def _say(message: str) -> None:
    click.echo(message, err=True)
    sys.stderr.flush()
