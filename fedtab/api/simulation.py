"""Simulate a whole consortium on this machine from DataFrames, files or synthetic data.

:func:`simulate` is ``fedtab simulate`` as a function: it creates a consortium (CA,
certificates, a real Paillier key), starts the aggregator and one process per bank over
loopback mutual TLS, trains the secure federated model, writes ``model.json`` and
``report.json``, and scores the model on every bank's holdout next to local-only and pooled
training. The bank tables are, by the type of ``tables``:

- a mapping ``{bank name: DataFrame, .csv/.parquet path or database
  :class:`~fedtab.data.sources.TableSource`}``: one training table per bank (``fedtab simulate
  --bank-file``), with per-bank ``holdouts`` to compare on;
- one table (DataFrame, path or database source): split into ``banks`` banks with 20%
  holdouts (``--data``);
- ``None``: the synthetic consortium of ``fedtab datagen`` with ``rows`` rows.

The job comes from :func:`simulation_job` (the kind's simulation defaults, overridden by
``params``), checked in full before any process starts:

>>> from fedtab.api import simulation_job
>>> job = simulation_job("gbdt", {"n_estimators": 3, "eta": 0.3})
>>> job.kind, job.params["n_estimators"], job.params["learning_rate"]
('gbdt', 3, 0.3)

A run takes a minute or more (a real 2048-bit key by default), so this example is not run:

>>> from fedtab.api import simulate
>>> from fedtab.api.examples import bank_tables
>>> trains, holdouts = bank_tables(banks=3, rows=6000)
>>> result = simulate(trains, holdouts=holdouts, label="is_fraud", id_column="txn_id",
...                   params={"n_estimators": 10})                      # doctest: +SKIP
>>> result.metrics.query("model == 'federated'")[["bank", "pr_auc"]]   # doctest: +SKIP
>>> result.model.predict(holdouts["bank_a"])                          # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd

from fedtab.api.jobs import tracked
from fedtab.data.sources import TableSource, read_source
from fedtab.data.tables import read_table
from fedtab.errors import ConfigError
from fedtab.jobs import JobSpec, job_kind
from fedtab.simulation import inputs as sources
from fedtab.tracking import TrackingRequest

if TYPE_CHECKING:
    from fedtab.api.models import Model
    from fedtab.transport.messages import JobStatus

# Rows of the zero-argument main job: sized to finish in a few minutes on 2 cores with a
# 2048-bit key (about two minutes) while showing what federation buys each bank.
DEFAULT_ROWS = 150_000
Say = Callable[[str], None]
Source: TypeAlias = pd.DataFrame | str | Path | TableSource
Tables: TypeAlias = Mapping[str, Source] | Source | None


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation wrote (under ``out_dir``) and found.

    ``report`` is ``report.json`` as a dict (job, timings, traffic, per-bank metrics with
    intervals); ``table`` the printed per-bank comparison (empty without holdouts).
    """

    job: JobSpec
    out_dir: Path
    model_path: Path
    report_path: Path
    report: dict[str, Any]
    table: str

    @property
    def model(self) -> Model:
        """The federated model (``model_path`` loaded)."""
        from fedtab.api.models import load_model

        return load_model(self.model_path)

    @property
    def metrics(self) -> pd.DataFrame:
        """Holdout metrics, one row per bank and model (``local_only``, ``federated``,
        ``pooled``): rows, frauds, every scalar metric and ``<metric>_low``/``_high``
        bootstrap interval bounds."""
        rows = []
        for bank in self.report.get("holdout_comparison", []):
            for model, metrics in bank["metrics"].items():
                row = {"bank": bank["bank"], "model": model,
                       "holdout_rows": bank["holdout_rows"],
                       "holdout_positives": bank["holdout_positives"]}
                row.update({k: v for k, v in metrics.items() if isinstance(v, int | float)})
                for key, (low, high) in bank.get("intervals", {}).get(model, {}).items():
                    row[f"{key}_low"], row[f"{key}_high"] = low, high
                rows.append(row)
        return pd.DataFrame(rows)

    @property
    def summary(self) -> list[str]:
        """What the run did, in a few lines: key, traffic, steps, what was checked."""
        from fedtab.simulation.runner import summary_lines

        return summary_lines(self.report)


def simulation_job(
    model: str = "gbdt",
    params: Mapping[str, Any] | str | Path | None = None,
    *,
    seed: int = 0,
    allow_two_banks: bool = False,
) -> JobSpec:
    """The job a simulation runs: ``model``'s simulation defaults overridden by ``params``.

    ``params`` is a mapping (XGBoost / scikit-learn names or aliases, e.g. ``eta``) or the
    path of a TOML job file, whose ``[params]`` and ``[job]`` (seed, allow_two_banks,
    bank_timeout) override the defaults. Raises :class:`ConfigError` naming a bad parameter.
    """
    declared = job_kind(model)
    merged = dict(declared.simulation_params)
    job: dict[str, Any] = {"kind": model, "seed": seed, "allow_two_banks": allow_two_banks}
    overrides: Mapping[str, Any] = {}
    if isinstance(params, str | Path):
        document = _job_file(Path(params))
        file_kind = document.get("job", {}).get("kind", model)
        if file_kind != model:
            raise ConfigError(
                f"job file {params} is a {file_kind!r} job but --model is {model!r}"
            )
        overrides = document.get("params", {})
        job.update(document.get("job", {}))
    elif params is not None:
        overrides = params
    merged.update({declared.schema.canonical(key): value  # eta = learning_rate
                   for key, value in overrides.items()})
    spec = JobSpec.from_dict({"job": job, "params": merged})
    spec.check_params()
    return spec


def simulate(
    tables: Tables = None,
    *,
    label: str | None = None,
    id_column: str | None = None,
    holdouts: Mapping[str, Source] | None = None,
    model: str = "gbdt",
    params: Mapping[str, Any] | str | Path | None = None,
    job: JobSpec | None = None,
    banks: int = 3,
    split: str = "iid",
    rows: int = DEFAULT_ROWS,
    seed: int = 0,
    allow_two_banks: bool = False,
    out: str | Path | None = None,
    key_bits: int = 2048,
    workers: int = 1,
    timeout: float | None = None,
    progress: Callable[[JobStatus], None] | None = None,
    say: Say | None = None,
    mlflow: TrackingRequest | None = None,
) -> SimulationResult:
    """Simulate a consortium locally: train securely, compare with local-only and pooled.

    ``tables``, ``holdouts``: see the module docstring; ``label`` (the 0/1 column) is required
    with tables, ``id_column`` is left out of the features. ``model``, ``params``, ``seed``,
    ``allow_two_banks``: the job (:func:`simulation_job`), or a ready ``job``. ``banks`` and
    ``split`` (``iid`` or ``by-column:COL``) split one table; ``rows`` sizes synthetic data;
    ``seed`` also drives splits and synthetic data. ``out``: the output folder (default: a new
    temporary folder). ``key_bits`` below 2048 only with ``FEDTAB_ALLOW_SMALL_KEYS=1`` (tests).
    ``workers``: crypto processes per bank; ``timeout``: seconds. ``progress`` receives every
    job status change, ``say`` one-line narrative notes. ``mlflow``: track the run in MLflow
    (``fedtab simulate --mlflow``).

    Raises :class:`~fedtab.errors.FedtabError` subclasses with a one-line reason (bad
    parameters, a table that breaks the contract, too few banks, a process that died, a failed
    or timed-out job).
    """
    from fedtab.simulation.runner import SimulationConfig, run_simulation

    note = say or _quiet
    if job is None:
        job = simulation_job(model, params, seed=seed, allow_two_banks=allow_two_banks)
    elif params is not None:
        raise ConfigError("give either job or params, not both")
    _check_tables(tables, label, holdouts)
    out_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="fedtab-sim-"))
    found = _inputs(tables, out_dir / "data", label, id_column, holdouts,
                    banks=banks, split=split, rows=rows, seed=seed, say=note)
    if len(found.banks) < 3:
        note("WARNING: with two banks each bank can deduce the other's contribution")
    config = SimulationConfig(out_dir=out_dir, job=job, key_bits=key_bits, workers=workers,
                              timeout_seconds=timeout)
    progress, finish = tracked(mlflow, job, found.bank_names, "simulate", progress,
                               {"simulate.source": found.source, "simulate.key_bits": key_bits})
    result = run_simulation(config, found, note, progress)
    finish([result.model_path, result.report_path], result.report)
    return SimulationResult(job, out_dir, result.model_path, result.report_path,
                            result.report, result.table)


def _inputs(
    tables: Tables,
    data_dir: Path,
    label: str | None,
    id_column: str | None,
    holdouts: Mapping[str, Source] | None,
    *,
    banks: int,
    split: str,
    rows: int,
    seed: int,
    say: Say,
) -> sources.SimulationInputs:
    """The bank tables of a simulation, by the type of ``tables`` (module docstring)."""
    if isinstance(tables, Mapping):
        if holdouts is None and not any(isinstance(t, pd.DataFrame) for t in tables.values()):
            files = {name: t if isinstance(t, TableSource) else Path(t)
                     for name, t in tables.items()}
            return sources.bank_file_inputs(files, str(label), id_column=id_column,
                                            data_dir=data_dir)
        return sources.bank_frame_inputs(
            data_dir, {name: _frame(t) for name, t in tables.items()}, str(label),
            holdouts={name: _frame(t) for name, t in (holdouts or {}).items()},
            id_column=id_column,
        )
    if isinstance(tables, str | Path):
        return sources.split_table_inputs(data_dir, Path(tables), str(label), banks,
                                          how=split, seed=seed, id_column=id_column)
    if tables is not None:
        source = tables.describe() if isinstance(tables, TableSource) else "a DataFrame"
        return sources.split_frame_inputs(data_dir, _frame(tables), str(label), banks,
                                          how=split, seed=seed, id_column=id_column,
                                          source=source)
    say(f"generating synthetic consortium: {banks} banks, {rows} rows (seed {seed})")
    return sources.synthetic_inputs(data_dir, banks, rows, seed)


def _check_tables(
    tables: Tables, label: str | None, holdouts: Mapping[str, Source] | None
) -> None:
    """Refuse, before anything is written, tables without a label or misplaced holdouts."""
    if tables is not None and not label:
        raise ConfigError("label (the 0/1 column) is required with tables")
    if holdouts is not None and not isinstance(tables, Mapping):
        raise ConfigError("holdouts need tables as a mapping of bank name to table")


def _frame(table: Source) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    return read_source(table) if isinstance(table, TableSource) else read_table(Path(table))


def _job_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read job file {path}: {exc}") from exc


def _quiet(message: str) -> None:
    """The default ``say``: notes are dropped."""

