"""Split one table into simulated banks, each with a stratified local holdout.

Used by ``fedtab simulate --data PATH --banks N`` and by the benchmarks: ``iid`` deals rows out
at random; ``by-column:COL`` gives each bank a contiguous range of a numeric column (e.g. time)
or a group of a categorical column's values, which is how real banks differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedtab.errors import ConfigError


@dataclass(frozen=True)
class BankSplit:
    """One simulated bank: its training rows and its local holdout."""

    name: str
    train: pd.DataFrame
    holdout: pd.DataFrame


def bank_names(n_banks: int) -> list[str]:
    """Default bank names ``bank_1`` .. ``bank_N``."""
    return [f"bank_{i + 1}" for i in range(n_banks)]


def split_banks(
    table: pd.DataFrame,
    label: str,
    n_banks: int,
    *,
    how: str = "iid",
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> list[BankSplit]:
    """Split ``table`` into ``n_banks`` banks, then a stratified holdout within each bank.

    ``how`` is ``"iid"`` or ``"by-column:COL"``. Raises :class:`ConfigError` on a bad spec,
    an unknown column, or a bank left without both classes in train and holdout.
    """
    if n_banks < 1:
        raise ConfigError(f"--banks must be at least 1, got {n_banks}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    if label not in table.columns:
        raise ConfigError(f"label column {label!r} is not in the table")
    rng = np.random.default_rng(seed)
    parts = _assign_banks(table, n_banks, how, rng)
    splits = []
    for name, part in zip(bank_names(n_banks), parts, strict=True):
        train, holdout = _stratified_holdout(part, label, holdout_fraction, rng)
        for kind, frame in (("training", train), ("holdout", holdout)):
            if frame[label].nunique() < 2:
                raise ConfigError(
                    f"{name} has only one class in its {kind} rows; use fewer banks or "
                    "another split"
                )
        splits.append(BankSplit(name=name, train=train, holdout=holdout))
    return splits


def _assign_banks(
    table: pd.DataFrame, n_banks: int, how: str, rng: np.random.Generator
) -> list[pd.DataFrame]:
    if how == "iid":
        order = rng.permutation(len(table))
        return [table.iloc[np.sort(chunk)] for chunk in np.array_split(order, n_banks)]
    if how.startswith("by-column:"):
        column = how.split(":", 1)[1]
        if column not in table.columns:
            raise ConfigError(f"split column {column!r} is not in the table")
        values = table[column]
        if pd.api.types.is_numeric_dtype(values):
            order = np.argsort(values.to_numpy(), kind="stable")
            return [table.iloc[np.sort(chunk)] for chunk in np.array_split(order, n_banks)]
        groups = sorted(values.astype(str).unique())
        if len(groups) < n_banks:
            raise ConfigError(f"column {column!r} has {len(groups)} values, fewer than banks")
        owners = {g: i % n_banks for i, g in enumerate(groups)}
        bank_of_row = values.astype(str).map(owners).to_numpy()
        return [table[bank_of_row == i] for i in range(n_banks)]
    raise ConfigError(f"unknown split {how!r}; use 'iid' or 'by-column:COL'")


def _stratified_holdout(
    part: pd.DataFrame, label: str, fraction: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    is_holdout = np.zeros(len(part), dtype=bool)
    labels = part[label].to_numpy()
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        n_holdout = round(len(rows) * fraction)
        is_holdout[rng.choice(rows, size=n_holdout, replace=False)] = True
    return part[~is_holdout], part[is_holdout]
