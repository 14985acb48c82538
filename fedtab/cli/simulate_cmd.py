"""`fedtab simulate`: a whole consortium on this machine, real processes, keys and TLS.

With no arguments it generates a synthetic three-bank consortium, trains the secure federated
model and prints each bank's holdout metrics for local-only, federated and pooled training.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from fedtab.cli.edge import reports_errors
from fedtab.cli.progress import print_progress
from fedtab.data.sources import is_database_url, mask_url
from fedtab.errors import ConfigError
from fedtab.jobs import JobSpec, job_kind, simulated_kinds
from fedtab.simulation.inputs import (
    BankTable,
    SimulationInputs,
    bank_file_inputs,
    bank_source,
    split_table_inputs,
    synthetic_inputs,
)
from fedtab.simulation.runner import SimulationConfig, run_simulation, summary_lines
from fedtab.tracking import TrackingRequest, tracking_options

# Defaults of the zero-argument main job: sized to finish in a few minutes on 2 cores with a
# 2048-bit key (about two minutes) while showing what federation buys each bank.
DEFAULT_ROWS = 150_000
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
    default=DEFAULT_ROWS,
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
    job = _job_spec(kind, params_path, seed, allow_two_banks)
    inputs = _inputs(bank_files, data_path, label, id_column, n_banks, split, rows, seed, out_dir)
    if len(inputs.banks) < 3:
        _say("WARNING: with two banks each bank can deduce the other's contribution")
    config = SimulationConfig(
        out_dir=out_dir, job=job, key_bits=int(key_bits), workers=workers, timeout_seconds=timeout
    )
    from fedtab.tracking.job_run import job_tracking

    tracking = job_tracking(mlflow, job, inputs.bank_names, "simulate",
                            {"simulate.source": inputs.source, "simulate.key_bits": key_bits})
    result = run_simulation(config, inputs, _say, tracking.observing(print_progress(job)))
    tracking.finish([result.model_path, result.report_path], result.report)
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
    for line in summary_lines(result.report):
        click.echo(f"  {line}")


def _job_spec(kind: str, params_path: Path | None, seed: int, allow_two: bool) -> JobSpec:
    declared = job_kind(kind)  # its default parameters for the zero-argument main job
    params = dict(declared.simulation_params)
    job: dict[str, Any] = {"kind": kind, "seed": seed, "allow_two_banks": allow_two}
    if params_path is not None:
        try:
            document = tomllib.loads(params_path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read job file {params_path}: {exc}") from exc
        file_kind = document.get("job", {}).get("kind", kind)
        if file_kind != kind:
            raise ConfigError(
                f"job file {params_path} is a {file_kind!r} job but --model is {kind!r}"
            )
        params.update({declared.schema.canonical(key): value  # eta = learning_rate
                       for key, value in document.get("params", {}).items()})
        job.update(document.get("job", {}))
    spec = JobSpec.from_dict({"job": job, "params": params})
    spec.check_params()
    return spec


def _inputs(
    bank_files: tuple[tuple[str, BankTable], ...],
    data_path: Path | None,
    label: str | None,
    id_column: str | None,
    n_banks: int,
    split: str,
    rows: int,
    seed: int,
    out_dir: Path,
) -> SimulationInputs:
    if bank_files and data_path is not None:
        raise ConfigError("give either --bank-file or --data, not both")
    if (bank_files or data_path is not None) and not label:
        raise ConfigError("--label is required with --bank-file or --data")
    data_dir = out_dir / "data"
    if bank_files:
        names = [name for name, _ in bank_files]
        if len(set(names)) != len(names):
            raise ConfigError(f"bank names repeat in --bank-file: {names}")
        return bank_file_inputs(
            dict(bank_files), str(label), id_column=id_column, data_dir=data_dir
        )
    if data_path is not None:
        return split_table_inputs(
            data_dir, data_path, str(label), n_banks, how=split, seed=seed, id_column=id_column
        )
    _say(f"generating synthetic consortium: {n_banks} banks, {rows} rows (seed {seed})")
    return synthetic_inputs(data_dir, n_banks, rows, seed)


def _say(message: str) -> None:
    click.echo(message, err=True)
    sys.stderr.flush()
