"""Where a simulation's bank tables come from: synthetic data, one split table, or bank files
(or database tables).

Every source ends as :class:`SimulationInputs`: a contract and, per bank, a training file and
(where the source has one) a holdout file, all written under the simulation's output folder so
the bank processes read them like real banks would. A bank table from a database is read once
and copied to ``DATA_DIR/NAME/train.parquet`` (Parquet keeps the column types the query
returned), so the bank process and the baselines score the same rows; the database URL (and a
password in it) is never passed to another process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fedtab.atomic import atomic_write_bytes, atomic_write_text
from fedtab.data.contract import DataContract
from fedtab.data.infer import infer_contract
from fedtab.data.sources import (
    TableSource,
    mask_url,
    read_source,
    table_source,
    with_row_key,
)
from fedtab.data.tables import read_table
from fedtab.errors import ConfigError, DataContractError
from fedtab.simulation.splits import split_banks
from fedtab.synthetic import generate_consortium, write_consortium


@dataclass(frozen=True)
class BankInput:
    """One simulated bank's files."""

    name: str
    train_path: Path
    holdout_path: Path | None = None


@dataclass(frozen=True)
class SimulationInputs:
    """The contract every bank follows and each bank's files, in bank-name order."""

    contract: DataContract
    banks: tuple[BankInput, ...]
    source: str

    @property
    def bank_names(self) -> list[str]:
        return [bank.name for bank in self.banks]


def synthetic_inputs(data_dir: Path, n_banks: int, rows: int, seed: int) -> SimulationInputs:
    """Generate a synthetic consortium (``fedtab datagen``) into ``data_dir``."""
    consortium = generate_consortium(n_banks, rows, seed)
    write_consortium(consortium, data_dir)
    banks = tuple(
        BankInput(b.name, data_dir / b.name / "train.csv", data_dir / b.name / "holdout.csv")
        for b in consortium.banks
    )
    return SimulationInputs(
        consortium.contract, banks, f"synthetic: {n_banks} banks, {rows} rows, seed {seed}"
    )


def split_table_inputs(
    data_dir: Path,
    table_path: Path,
    label: str,
    n_banks: int,
    *,
    how: str,
    seed: int,
    id_column: str | None = None,
) -> SimulationInputs:
    """Split one table into banks with stratified 20% holdouts; infer the contract on it."""
    return split_frame_inputs(
        data_dir, read_table(table_path), label, n_banks, how=how, seed=seed,
        id_column=id_column, source=str(table_path),
    )


def split_frame_inputs(
    data_dir: Path,
    table: pd.DataFrame,
    label: str,
    n_banks: int,
    *,
    how: str,
    seed: int,
    id_column: str | None = None,
    source: str = "a DataFrame",
) -> SimulationInputs:
    """:func:`split_table_inputs` for a table already in memory (``source`` names it)."""
    contract = infer_contract(table, label, id_column)
    banks = []
    for split in split_banks(table, label, n_banks, how=how, seed=seed):
        train_path = data_dir / split.name / "train.csv"
        holdout_path = data_dir / split.name / "holdout.csv"
        atomic_write_text(train_path, split.train.to_csv(index=False))
        atomic_write_text(holdout_path, split.holdout.to_csv(index=False))
        banks.append(BankInput(split.name, train_path, holdout_path))
    return SimulationInputs(
        contract, tuple(banks), f"{source} split {how} into {n_banks} banks"
    )


BankTable = Path | TableSource
_POOLED_ROW = re.compile(r"\brow (\d+)\b")


def bank_source(value: str) -> TableSource:
    """A database bank table written ``URL#TABLE`` or ``URL#SELECT ...`` (a fragment with a
    space in it is a query, otherwise a table name).

    Raises:
        ConfigError: no ``#`` part; the URL masked in the message.
    """
    url, _, what = value.partition("#")
    what = what.strip()
    if not what:
        raise ConfigError(f"{mask_url(url)}: add #TABLE or #SELECT ... after the database URL")
    if any(ch.isspace() for ch in what):
        return table_source(url, query=what)
    return table_source(url, table=what)


def bank_file_inputs(
    bank_files: Mapping[str, BankTable],
    label: str,
    *,
    id_column: str | None = None,
    data_dir: Path | None = None,
) -> SimulationInputs:
    """Use each bank's own file (or database table) as its training table; infer one contract
    over all of them. Database tables are copied to ``data_dir/NAME/train.parquet``."""
    if not bank_files:
        raise ConfigError("no --bank-file given")
    frames = {name: _read_bank(table) for name, table in bank_files.items()}
    columns = {name: list(frame.columns) for name, frame in frames.items()}
    first_name, first_columns = next(iter(columns.items()))
    for name, cols in columns.items():
        if sorted(cols) != sorted(first_columns):
            raise ConfigError(
                f"bank {name!r} has columns that differ from bank {first_name!r}: "
                f"{sorted(set(cols) ^ set(first_columns))}"
            )
    pooled = pd.concat(frames.values(), ignore_index=True)
    try:
        contract = infer_contract(pooled, label, id_column)
    except DataContractError as exc:
        raise _bank_error(str(exc), frames, bank_files, id_column) from exc
    banks = []
    for name, table in sorted(bank_files.items()):
        if isinstance(table, TableSource):
            if data_dir is None:
                raise ConfigError(f"bank {name!r}: a database table needs a data folder")
            path = data_dir / name / "train.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frames[name].to_parquet(path, index=False)
            banks.append(BankInput(name, path))
        else:
            banks.append(BankInput(name, Path(table)))
    return SimulationInputs(contract, tuple(banks), f"{len(banks)} bank files")


def _read_bank(table: BankTable) -> pd.DataFrame:
    if isinstance(table, TableSource):
        return read_source(table)
    return read_table(Path(table))


def _bank_error(message: str, frames: Mapping[str, pd.DataFrame],
                bank_files: Mapping[str, BankTable], id_column: str | None) -> DataContractError:
    """A pooled-inference error about ``row N`` retold as that bank's source and row."""
    found = _POOLED_ROW.search(message)
    if found is None:
        return DataContractError(message)
    row = int(found.group(1))
    for name, frame in frames.items():
        if row <= len(frame):
            local = f"{message[: found.start(1)]}{row}{message[found.end(1):]}"
            return DataContractError(
                f"bank {name!r}, {bank_files[name]}: {with_row_key(local, frame, id_column)}"
            )
        row -= len(frame)
    return DataContractError(message)


def bank_frame_inputs(
    data_dir: Path,
    trains: Mapping[str, pd.DataFrame],
    label: str,
    *,
    holdouts: Mapping[str, pd.DataFrame] | None = None,
    id_column: str | None = None,
) -> SimulationInputs:
    """Each bank's training table (and optional holdout) from memory, written as Parquet
    (column types kept) under ``data_dir/<bank>/``; one contract inferred over the training
    tables. Raises :class:`ConfigError` when banks disagree on columns or a holdout names an
    unknown bank."""
    holdouts = dict(holdouts or {})
    unknown = sorted(set(holdouts) - set(trains))
    if unknown:
        raise ConfigError(f"holdouts for unknown banks {unknown}; banks are {sorted(trains)}")
    contract = _pooled_contract(trains, label, id_column)
    banks = []
    for name, frame in sorted(trains.items()):
        train_path = data_dir / name / "train.parquet"
        _write_parquet(train_path, frame)
        holdout_path = None
        if name in holdouts:
            holdout_path = data_dir / name / "holdout.parquet"
            _write_parquet(holdout_path, holdouts[name])
        banks.append(BankInput(name, train_path, holdout_path))
    return SimulationInputs(contract, tuple(banks), f"{len(banks)} bank tables")


def _pooled_contract(
    frames: Mapping[str, pd.DataFrame], label: str, id_column: str | None
) -> DataContract:
    """One contract inferred over every bank's table; banks must share their columns."""
    if not frames:
        raise ConfigError("no bank tables given")
    first_name, first = next(iter(frames.items()))
    for name, frame in frames.items():
        if sorted(map(str, frame.columns)) != sorted(map(str, first.columns)):
            raise ConfigError(
                f"bank {name!r} has columns that differ from bank {first_name!r}: "
                f"{sorted(set(map(str, frame.columns)) ^ set(map(str, first.columns)))}"
            )
    return infer_contract(pd.concat(frames.values(), ignore_index=True), label, id_column)


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_bytes(path, frame.to_parquet(index=False))
