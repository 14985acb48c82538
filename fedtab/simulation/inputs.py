"""Where a simulation's bank tables come from: synthetic data, one split table, or bank files.

Every source ends as :class:`SimulationInputs`: a contract and, per bank, a training file and
(where the source has one) a holdout file, all written under the simulation's output folder so
the bank processes read them like real banks would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fedtab.atomic import atomic_write_text
from fedtab.data.contract import DataContract
from fedtab.data.infer import infer_contract
from fedtab.data.tables import read_table
from fedtab.errors import ConfigError
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
    table = read_table(table_path)
    contract = infer_contract(table, label, id_column)
    banks = []
    for split in split_banks(table, label, n_banks, how=how, seed=seed):
        train_path = data_dir / split.name / "train.csv"
        holdout_path = data_dir / split.name / "holdout.csv"
        atomic_write_text(train_path, split.train.to_csv(index=False))
        atomic_write_text(holdout_path, split.holdout.to_csv(index=False))
        banks.append(BankInput(split.name, train_path, holdout_path))
    return SimulationInputs(
        contract, tuple(banks), f"{table_path} split {how} into {n_banks} banks"
    )


def bank_file_inputs(
    bank_files: Mapping[str, Path], label: str, *, id_column: str | None = None
) -> SimulationInputs:
    """Use each bank's own file as its training table; infer one contract over all of them."""
    if not bank_files:
        raise ConfigError("no --bank-file given")
    frames = {name: read_table(path) for name, path in bank_files.items()}
    columns = {name: list(frame.columns) for name, frame in frames.items()}
    first_name, first_columns = next(iter(columns.items()))
    for name, cols in columns.items():
        if sorted(cols) != sorted(first_columns):
            raise ConfigError(
                f"bank {name!r} has columns that differ from bank {first_name!r}: "
                f"{sorted(set(cols) ^ set(first_columns))}"
            )
    contract = infer_contract(pd.concat(frames.values(), ignore_index=True), label, id_column)
    banks = tuple(BankInput(name, Path(path)) for name, path in sorted(bank_files.items()))
    return SimulationInputs(contract, banks, f"{len(banks)} bank files")
