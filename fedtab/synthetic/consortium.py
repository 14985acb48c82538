"""The synthetic consortium: several banks' transaction tables under one data contract.

``generate_consortium(n_banks, rows, seed)`` is deterministic: the same arguments give the same
tables (and, written with :func:`write_consortium`, byte-identical files). Bank ``i`` draws its
rows from its own child of ``numpy.random.SeedSequence(seed)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedtab.atomic import atomic_write_text
from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.errors import ConfigError
from fedtab.synthetic import rows
from fedtab.synthetic.profiles import (
    CHANNELS,
    MERCHANT_CATEGORIES,
    PATTERNS,
    BankProfile,
    bank_profiles,
)

LABEL = "is_fraud"
ID_COLUMN = "txn_id"
MIN_ROWS_PER_BANK = 400
# Every bank sees every pattern at least twice, so its holdout holds at least one of each.
MIN_FRAUDS_PER_PATTERN = 2
CATEGORICAL = {"merchant_category": MERCHANT_CATEGORIES, "channel": CHANNELS}
NULLABLE_INTEGER = ("card_age_days", "customer_age")


def consortium_contract() -> DataContract:
    """The data contract of every synthetic table, with declared (not inferred) ranges."""
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", 0.0, rows.AMOUNT_MAX, nullable=False),
            FeatureSpec("merchant_category", "categorical", categories=MERCHANT_CATEGORIES),
            FeatureSpec("channel", "categorical", categories=CHANNELS, nullable=False),
            FeatureSpec("hour", "numeric", 0.0, 23.0, nullable=False),
            FeatureSpec("country_mismatch", "numeric", 0.0, 1.0, nullable=False),
            FeatureSpec("card_age_days", "numeric", 0.0, rows.CARD_AGE_MAX),
            FeatureSpec("txn_count_1h", "numeric", 0.0, float(rows.COUNT_1H_MAX), nullable=False),
            FeatureSpec(
                "txn_count_24h", "numeric", 0.0, float(rows.COUNT_24H_MAX), nullable=False
            ),
            FeatureSpec("device_change", "numeric", 0.0, 1.0, nullable=False),
            FeatureSpec("customer_age", "numeric", rows.AGE_MIN, rows.AGE_MAX),
        ),
        label=LABEL,
        id_column=ID_COLUMN,
    )


@dataclass(frozen=True, eq=False)
class BankData:
    """One bank's tables. ``*_patterns`` name each row's fraud pattern ("" = legitimate).

    The pattern arrays are ground truth for tests and analysis; they are not written to files.
    """

    profile: BankProfile
    train: pd.DataFrame
    holdout: pd.DataFrame
    train_patterns: np.ndarray
    holdout_patterns: np.ndarray

    @property
    def name(self) -> str:
        return self.profile.name


@dataclass(frozen=True, eq=False)
class Consortium:
    """All banks' tables and the shared contract."""

    banks: tuple[BankData, ...]
    contract: DataContract
    seed: int
    holdout_fraction: float = 0.2

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.banks]

    def bank(self, name: str) -> BankData:
        """The bank called ``name``; raises :class:`ConfigError` if there is none."""
        for bank in self.banks:
            if bank.name == name:
                return bank
        raise ConfigError(f"no bank {name!r} in this consortium (banks: {', '.join(self.names)})")


def _bank_rows(n_banks: int, total: int) -> tuple[tuple[BankProfile, ...], list[int]]:
    profiles = bank_profiles(n_banks)
    counts = [int(np.floor(p.share * total)) for p in profiles]
    counts[0] += total - sum(counts)
    smallest = min(counts)
    if smallest < MIN_ROWS_PER_BANK:
        need = int(np.ceil(MIN_ROWS_PER_BANK / min(p.share for p in profiles)))
        raise ConfigError(
            f"{total} rows give a bank only {smallest} rows (minimum {MIN_ROWS_PER_BANK}); "
            f"use at least {need} rows for {n_banks} banks"
        )
    return profiles, counts


def _pattern_counts(profile: BankProfile, n_fraud: int) -> list[int]:
    """Frauds per pattern: the profile's mix, at least two of each, the rest to the primary."""
    counts = [
        max(MIN_FRAUDS_PER_PATTERN, int(np.floor(share * n_fraud)))
        for share in profile.pattern_mix
    ]
    primary = PATTERNS.index(profile.primary_pattern)
    counts[primary] += n_fraud - sum(counts)
    return counts


def _split(rng: np.random.Generator, idx: np.ndarray, fraction: float) -> np.ndarray:
    """A random ``fraction`` of ``idx`` (at least one, and at least one left over).

    ``idx`` must hold at least two entries.
    """
    k = min(max(1, round(len(idx) * fraction)), len(idx) - 1)
    return np.asarray(rng.choice(idx, size=k, replace=False))


def _frame(cols: rows.Columns, labels: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    data: dict[str, object] = {ID_COLUMN: ids}
    for spec in consortium_contract().features:
        values = cols[spec.name]
        if spec.name in CATEGORICAL:
            names = np.asarray(CATEGORICAL[spec.name] + (None,), dtype=object)
            data[spec.name] = names[values]  # code -1 picks the trailing None
        elif spec.name in NULLABLE_INTEGER:
            data[spec.name] = pd.array(values, dtype="Int64")
        else:
            data[spec.name] = values
    data[LABEL] = labels.astype(np.int64)
    return pd.DataFrame(data)


def _generate_bank(
    profile: BankProfile, n: int, fraction: float, rng: np.random.Generator
) -> BankData:
    n_fraud = max(MIN_FRAUDS_PER_PATTERN * len(PATTERNS), round(profile.fraud_rate * n))
    per_pattern = _pattern_counts(profile, n_fraud)
    parts = [rows.legit_rows(rng, profile, n - n_fraud)]
    labels = [np.zeros(n - n_fraud, dtype=np.int64)]
    patterns = [np.full(n - n_fraud, "", dtype=object)]
    for name, count in zip(PATTERNS, per_pattern, strict=True):
        parts.append(rows.fraud_rows(rng, profile, name, count))
        labels.append(np.ones(count, dtype=np.int64))
        patterns.append(np.full(count, name, dtype=object))
    cols = rows.finish(rng, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    order = rng.permutation(n)
    cols = {k: v[order] for k, v in cols.items()}
    y = np.concatenate(labels)[order]
    pattern = np.concatenate(patterns)[order]

    # Stratified by pattern: every holdout has legitimate rows and frauds of every pattern.
    holdout = np.zeros(n, dtype=bool)
    for group in ("", *PATTERNS):
        holdout[_split(rng, np.flatnonzero(pattern == group), fraction)] = True
    ids = np.asarray([f"{profile.name}-{k:07d}" for k in range(n)], dtype=object)
    frame = _frame(cols, y, ids)
    return BankData(
        profile=profile,
        train=frame[~holdout].reset_index(drop=True),
        holdout=frame[holdout].reset_index(drop=True),
        train_patterns=pattern[~holdout],
        holdout_patterns=pattern[holdout],
    )


def generate_consortium(
    n_banks: int, rows: int, seed: int, holdout_fraction: float = 0.2
) -> Consortium:
    """Generate ``n_banks`` banks with ``rows`` transactions in all (train + holdout).

    Rows are split unevenly (60/15/25 % for three banks); each bank's holdout is a stratified
    ``holdout_fraction`` of its rows. Raises :class:`ConfigError` for a bad bank count, too few
    rows, a negative seed or a fraction outside (0, 1).
    """
    if seed < 0:
        raise ConfigError(f"seed must be non-negative, got {seed}")
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    profiles, counts = _bank_rows(n_banks, rows)
    children = np.random.SeedSequence(seed).spawn(n_banks)
    banks = tuple(
        _generate_bank(p, n, holdout_fraction, np.random.default_rng(child))
        for p, n, child in zip(profiles, counts, children, strict=True)
    )
    return Consortium(banks, consortium_contract(), seed, holdout_fraction)


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.2f", lineterminator="\n")


def write_consortium(consortium: Consortium, out_dir: Path) -> list[Path]:
    """Write ``<bank>/train.csv``, ``<bank>/holdout.csv``, ``manifest.json``, ``contract.json``.

    Each file is written atomically and ``contract.json`` last, so its presence means the set is
    complete. Returns the written paths; raises ``OSError`` if the folder is not writable.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    banks: list[dict[str, object]] = []
    for bank in consortium.banks:
        for split, frame in (("train", bank.train), ("holdout", bank.holdout)):
            path = out_dir / bank.name / f"{split}.csv"
            atomic_write_text(path, _csv(frame))
            written.append(path)
        banks.append(
            {
                "name": bank.name,
                "primary_pattern": bank.profile.primary_pattern,
                "train_rows": len(bank.train),
                "train_frauds": int(bank.train[LABEL].sum()),
                "holdout_rows": len(bank.holdout),
                "holdout_frauds": int(bank.holdout[LABEL].sum()),
            }
        )
    manifest = {
        "generator": "fedtab.synthetic",
        "seed": consortium.seed,
        "holdout_fraction": consortium.holdout_fraction,
        "label": LABEL,
        "id_column": ID_COLUMN,
        "banks": banks,
    }
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(out_dir / "contract.json", consortium.contract.to_json())
    written += [out_dir / "manifest.json", out_dir / "contract.json"]
    return written
