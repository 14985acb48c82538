"""From a LocalTable-style feature matrix to logistic regression's encoded columns.

Numeric features become one column each, missing values imputed with the consortium mean of
the feature (``SimpleImputer(strategy="mean")`` on the pooled rows). Categorical features
(category codes ``0..k-1`` stored as floats) become one-hot columns named
``"<feature>=<category>"``; a missing category is the all-zero row (``OneHotEncoder`` with
``handle_unknown="ignore"``). Encoded columns keep the contract's feature order.

Under the job's floor ``min_group_rows`` (:mod:`fedtab.rare`; what it merged: :class:`Grouping`):
categories rarer than the floor share one column ``"<feature>=<other>"``, last in the feature's
block (where scikit-learn's ``OneHotEncoder(min_frequency=...)`` puts its infrequent column),
and rare missing rows join it; a numeric feature whose mean is withheld (fewer than
``min_group_rows`` present rows) takes its imputation value in every row (a constant column, whose
coefficient stays 0). So every column's mean and coefficient rest on at least the floor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedtab.data.contract import DataContract, LocalTable
from fedtab.errors import DataContractError
from fedtab.moments import hard_range
from fedtab.rare import OTHER, other_count, withhold_rare


@dataclass(frozen=True)
class Grouping:
    """What the floor changed in the encoding (empty: nothing, as in models before it).

    ``other``: per categorical feature index, the category codes sharing its ``<other>`` column
    and whether missing rows join them; ``constant``: numeric feature indices replaced by their
    imputation value in every row.
    """

    other: Mapping[int, tuple[frozenset[int], bool]] = field(default_factory=dict)
    constant: frozenset[int] = frozenset()

    @classmethod
    def from_moments(cls, contract: DataContract, count: Sequence[int | None],
                     mean: Sequence[float | None],
                     category_counts: Sequence[Sequence[int | None]]) -> Grouping:
        """The grouping the committed (released) moments imply: withheld figures are merged."""
        other: dict[int, tuple[frozenset[int], bool]] = {}
        constant: set[int] = set()
        for j, spec in enumerate(contract.features):
            if spec.kind == "numeric":
                if mean[j] is None and count[j] != 0:
                    constant.add(j)
                continue
            merged = frozenset(c for c, n in enumerate(category_counts[j]) if n is None)
            if merged or count[j] is None:
                other[j] = (merged, count[j] is None)
        return cls(other, frozenset(constant))

    @classmethod
    def of_table(cls, table: LocalTable, floor: int) -> Grouping:
        """The grouping the floor gives over one table's own rows (the simulation's pooled and
        local baselines, encoded as the federated model is)."""
        contract, X = table.contract, table.X
        count: list[int | None] = [int(c) for c in (~np.isnan(X)).sum(axis=0)]
        mean: list[float | None] = [0.0 if spec.kind == "numeric" else None
                                    for spec in contract.features]
        categories: list[list[int | None]] = []
        for j, spec in enumerate(contract.features):
            codes = X[~np.isnan(X[:, j]), j].astype(np.int64)
            found = np.bincount(codes, minlength=len(spec.categories))
            categories.append([int(c) for c in found] if spec.kind == "categorical" else [])
        released = withhold_rare(contract, table.n_rows, count, mean, categories, floor)
        return cls.from_moments(contract, *released)

    def to_dict(self, contract: DataContract) -> dict[str, Any]:
        """``{"other": {feature: {"categories": [...], "missing": bool}}, "constant": [...]}``."""
        features = contract.features
        return {
            "other": {features[j].name: {"categories": [features[j].categories[c]
                                                        for c in sorted(codes)],
                                         "missing": missing}
                      for j, (codes, missing) in sorted(self.other.items())},
            "constant": [features[j].name for j in sorted(self.constant)],
        }

    @classmethod
    def from_dict(cls, contract: DataContract, data: Mapping[str, Any]) -> Grouping:
        """Inverse of :meth:`to_dict`; raises :class:`DataContractError` for names the contract
        does not have or that do not fit the feature's kind."""
        index = {spec.name: j for j, spec in enumerate(contract.features)}
        other: dict[int, tuple[frozenset[int], bool]] = {}
        try:
            for name, entry in dict(data.get("other", {})).items():
                spec = contract.features[index[name]]
                codes = frozenset(spec.categories.index(c) for c in entry["categories"])
                other[index[name]] = (codes, bool(entry["missing"]))
            constant = frozenset(index[name] for name in data.get("constant", []))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise DataContractError(f"the merged groups do not fit the contract: {exc}") from exc
        if any(contract.features[j].kind != "categorical" for j in other) or any(
                contract.features[j].kind != "numeric" for j in constant):
            raise DataContractError("the merged groups do not fit the contract's feature kinds")
        return cls(other, constant)


@dataclass(frozen=True)
class DesignEncoder:
    """Encodes ``X`` of shape ``(n, n_features)`` into ``(n, n_encoded)`` float64.

    ``impute`` holds, per contract feature, the value substituted for a missing numeric entry
    (ignored for categorical features); ``grouping`` what the floor merged.
    """

    contract: DataContract
    impute: tuple[float, ...]
    grouping: Grouping = field(default_factory=Grouping)

    def __post_init__(self) -> None:
        if len(self.impute) != len(self.contract.features):
            raise DataContractError(
                f"{len(self.impute)} imputation values for {len(self.contract.features)} features"
            )

    def category_columns(self, j: int) -> tuple[list[int], int | None]:
        """Of categorical feature ``j``: per category code, its column in the feature's block
        (the ``<other>`` column for merged codes), and the column of missing rows (``None``:
        the all-zero row)."""
        k = len(self.contract.features[j].categories)
        merged, missing = self.grouping.other.get(j, (frozenset(), False))
        kept = [c for c in range(k) if c not in merged]
        other = len(kept)
        columns = [kept.index(c) if c not in merged else other for c in range(k)]
        return columns, other if missing else None

    def block_names(self, j: int) -> list[str]:
        """The encoded column names of feature ``j``."""
        spec = self.contract.features[j]
        if spec.kind == "numeric":
            return [spec.name]
        merged, _ = self.grouping.other.get(j, (frozenset(), False))
        names = [f"{spec.name}={c}" for i, c in enumerate(spec.categories) if i not in merged]
        if j in self.grouping.other:
            names.append(f"{spec.name}={OTHER}")
        return names

    @property
    def encoded_names(self) -> list[str]:
        return [name for j in range(len(self.contract.features)) for name in self.block_names(j)]

    @property
    def n_encoded(self) -> int:
        return len(self.encoded_names)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The encoded matrix; raises :class:`DataContractError` on a wrong shape or bad code."""
        X = np.asarray(X, dtype=np.float64)
        n_features = len(self.contract.features)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise DataContractError(f"expected X of shape (n, {n_features}), got {X.shape}")
        blocks: list[np.ndarray] = []
        for j, spec in enumerate(self.contract.features):
            col = X[:, j]
            missing = np.isnan(col)
            if spec.kind == "numeric":
                replaced = np.ones_like(missing) if j in self.grouping.constant else missing
                blocks.append(np.where(replaced, self.impute[j], col)[:, None])
                continue
            blocks.append(self._one_hot(j, col, missing))
        if not blocks:
            return np.zeros((X.shape[0], 0))
        return np.hstack(blocks)

    def _one_hot(self, j: int, col: np.ndarray, missing: np.ndarray) -> np.ndarray:
        spec = self.contract.features[j]
        k = len(spec.categories)
        codes = np.where(missing, 0.0, col)
        bad = ~missing & ((codes < 0) | (codes >= k) | (codes != np.floor(codes)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataContractError(
                f"column {spec.name!r} row {row}: {col[row]!r} is not a category code in [0, {k})"
            )
        columns, missing_column = self.category_columns(j)
        onehot = np.zeros((col.shape[0], len(self.block_names(j))))
        rows = np.flatnonzero(~missing)
        onehot[rows, np.asarray(columns, dtype=np.int64)[codes[rows].astype(np.int64)]] = 1.0
        if missing_column is not None:
            onehot[np.flatnonzero(missing), missing_column] = 1.0
        return onehot

    def value_bounds(self) -> list[tuple[float, float]]:
        """Per encoded column, the range its values may take (:func:`~fedtab.moments.hard_range`;
        one-hot: ``[0, 1]``); raises :class:`DataContractError` for an undeclared range."""
        bounds: list[tuple[float, float]] = []
        for j, spec in enumerate(self.contract.features):
            if spec.kind == "numeric":
                bounds.append(hard_range(spec))
            else:
                bounds.extend([(0.0, 1.0)] * len(self.block_names(j)))
        return bounds


def group_codes(X: np.ndarray, columns: Sequence[int], missing: int | None) -> np.ndarray:
    """A categorical column mapped to its one-hot column indices (the scikit-learn export's
    step before ``OneHotEncoder``): merged codes share one index, missing rows stay NaN (the
    all-zero row) unless they join the ``<other>`` column, codes outside the contract become -1
    (unknown to the encoder: the all-zero row). Shape ``(n, 1)`` -> ``(n, 1)``."""
    col = np.asarray(X, dtype=np.float64).reshape(-1)
    isnan = np.isnan(col)
    safe = np.where(isnan, -1.0, col)
    valid = (safe >= 0) & (safe < len(columns)) & (safe == np.floor(safe))
    out = np.full(col.shape, -1.0)
    out[valid] = np.asarray(columns, dtype=np.float64)[safe[valid].astype(np.int64)]
    out[isnan] = np.nan if missing is None else float(missing)
    return out.reshape(-1, 1)


def encoded_moments(
    encoder: DesignEncoder,
    rows_total: int,
    count: Sequence[int | None],
    mean: Sequence[float | None],
    category_counts: Sequence[Sequence[int | None]],
    squared_deviation: Sequence[float | None],
) -> tuple[list[float], list[float]]:
    """StandardScaler's ``mean_`` and ``scale_`` of the imputed, encoded pooled matrix.

    Population variance (``ddof=0``) over all ``rows_total`` rows: imputed numeric entries sit at
    the mean and add no deviation, so the variance is the non-null squared deviation over
    ``rows_total``; a one-hot column with frequency ``p`` has variance ``p * (1 - p)`` (the
    ``<other>`` column: the rows left over by the released counts, at least the floor). As in
    scikit-learn a (near-)zero variance gives scale 1. A numeric feature whose mean is withheld
    is imputed with the centre of its declared range. Pure Python arithmetic, so every bank
    computes identical values.
    """
    means: list[float] = []
    scales: list[float] = []
    for j, spec in enumerate(encoder.contract.features):
        if spec.kind == "numeric":
            lower = spec.lower if spec.lower is not None else 0.0
            upper = spec.upper if spec.upper is not None else 0.0
            m = mean[j]
            means.append((lower + upper) / 2.0 if m is None else m)
            ss = squared_deviation[j] or 0.0
            var = ss / rows_total
            scales.append(_scale(var, max(abs(lower), abs(upper), 1.0)))
            continue
        counts = [int(c) for c in category_counts[j] if c is not None]
        if j in encoder.grouping.other:
            counts.append(other_count(rows_total, count[j], category_counts[j]))
        for n in counts:
            p = n / rows_total
            means.append(p)
            scales.append(_scale(p * (1.0 - p), 1.0))
    return means, scales


def _scale(var: float, magnitude: float) -> float:
    """``sqrt(var)``, or 1 when the standard deviation is below 1e-12 of the value magnitude."""
    std = math.sqrt(var) if var > 0 else 0.0
    return std if std > 1e-12 * magnitude else 1.0
