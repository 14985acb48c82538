"""From a LocalTable-style feature matrix to logistic regression's encoded columns.

Numeric features become one column each, missing values imputed with the consortium mean of
the feature (``SimpleImputer(strategy="mean")`` on the pooled rows). Categorical features
(category codes ``0..k-1`` stored as floats) become ``k`` one-hot columns named
``"<feature>=<category>"``; a missing category is the all-zero row (``OneHotEncoder`` with
``handle_unknown="ignore"``). Encoded columns keep the contract's feature order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedtab.data.contract import DataContract
from fedtab.errors import DataContractError
from fedtab.moments import hard_range


@dataclass(frozen=True)
class DesignEncoder:
    """Encodes ``X`` of shape ``(n, n_features)`` into ``(n, n_encoded)`` float64.

    ``impute`` holds, per contract feature, the value substituted for a missing numeric entry
    (ignored for categorical features).
    """

    contract: DataContract
    impute: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.impute) != len(self.contract.features):
            raise DataContractError(
                f"{len(self.impute)} imputation values for {len(self.contract.features)} features"
            )

    @property
    def encoded_names(self) -> list[str]:
        names: list[str] = []
        for spec in self.contract.features:
            if spec.kind == "numeric":
                names.append(spec.name)
            else:
                names.extend(f"{spec.name}={c}" for c in spec.categories)
        return names

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
                blocks.append(np.where(missing, self.impute[j], col)[:, None])
                continue
            k = len(spec.categories)
            codes = np.where(missing, 0.0, col)
            bad = ~missing & ((codes < 0) | (codes >= k) | (codes != np.floor(codes)))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataContractError(
                    f"column {spec.name!r} row {row}: {col[row]!r} is not a category code "
                    f"in [0, {k})"
                )
            onehot = np.zeros((X.shape[0], k))
            rows = np.flatnonzero(~missing)
            onehot[rows, codes[rows].astype(np.int64)] = 1.0
            blocks.append(onehot)
        if not blocks:
            return np.zeros((X.shape[0], 0))
        return np.hstack(blocks)

    def value_bounds(self) -> list[tuple[float, float]]:
        """Per encoded column, the range its values may take (:func:`~fedtab.moments.hard_range`;
        one-hot: ``[0, 1]``); raises :class:`DataContractError` for an undeclared range."""
        bounds: list[tuple[float, float]] = []
        for spec in self.contract.features:
            if spec.kind == "numeric":
                bounds.append(hard_range(spec))
            else:
                bounds.extend([(0.0, 1.0)] * len(spec.categories))
        return bounds


def encoded_moments(
    contract: DataContract,
    rows_total: int,
    mean: Sequence[float | None],
    category_counts: Sequence[Sequence[int]],
    squared_deviation: Sequence[float | None],
) -> tuple[list[float], list[float]]:
    """StandardScaler's ``mean_`` and ``scale_`` of the imputed, encoded pooled matrix.

    Population variance (``ddof=0``) over all ``rows_total`` rows: imputed numeric entries sit at
    the mean and add no deviation, so the variance is the non-null squared deviation over
    ``rows_total``; a one-hot column with frequency ``p`` has variance ``p * (1 - p)``. As in
    scikit-learn a (near-)zero variance gives scale 1. A numeric feature with no non-null value
    anywhere is imputed with the centre of its declared range. Pure Python arithmetic, so every
    bank computes identical values.
    """
    means: list[float] = []
    scales: list[float] = []
    for j, spec in enumerate(contract.features):
        if spec.kind == "numeric":
            lower = spec.lower if spec.lower is not None else 0.0
            upper = spec.upper if spec.upper is not None else 0.0
            m = mean[j]
            means.append((lower + upper) / 2.0 if m is None else m)
            ss = squared_deviation[j] or 0.0
            var = ss / rows_total
            scales.append(_scale(var, max(abs(lower), abs(upper), 1.0)))
        else:
            for count in category_counts[j]:
                p = count / rows_total
                means.append(p)
                scales.append(_scale(p * (1.0 - p), 1.0))
    return means, scales


def _scale(var: float, magnitude: float) -> float:
    """``sqrt(var)``, or 1 when the standard deviation is below 1e-12 of the value magnitude."""
    std = math.sqrt(var) if var > 0 else 0.0
    return std if std > 1e-12 * magnitude else 1.0
