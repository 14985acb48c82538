"""Global histogram bins from secure-summed fine count histograms (no local sketch leaves a bank).

Every bank buckets each feature on the same *fine grid*, derived from the data contract only
(declared ``lower``/``upper``; one bucket per category code); the consortium sums the fine count
histograms and every bank picks the same quantile cut points from the aggregate.

Numeric grids are uniform on an asinh scale, ``u = asinh(x / s)`` with ``s`` a small fraction of
the declared range's magnitude, so heavy-tailed features (amounts) get fine buckets near zero and
coarse ones in the tail; values outside ``[lower, upper]`` fall into the end buckets.

All comparisons are made in float32, as XGBoost does (``DMatrix`` stores float32): a value ``x``
lies in bin ``#{c in cuts : c <= float32(x)}``, so bin ``<= b`` is exactly XGBoost's
``x < cuts[b]`` and an exported threshold is the float32 cut value itself. NaN is missing.
"""

from __future__ import annotations

import numpy as np

from fedtab.data.contract import FeatureSpec
from fedtab.errors import DataContractError

_SCALE_FRACTION = 2.0**-10


def fine_grid_size(max_bin: int) -> int:
    """Buckets of the fine numeric grid for a job with ``max_bin`` final bins."""
    return int(min(8192, max(1024, 16 * max_bin)))


def fine_edges(spec: FeatureSpec, n_fine: int) -> np.ndarray:
    """Inner bucket boundaries (float32, strictly increasing) of one feature's fine grid.

    Bucket ``k`` holds ``edges[k-1] <= x < edges[k]``; there are ``len(edges) + 1`` buckets.
    Raises :class:`DataContractError` if a numeric feature has no declared range.
    """
    if spec.kind == "categorical":
        return np.arange(1, max(1, len(spec.categories)), dtype=np.float32)
    if spec.lower is None or spec.upper is None or not spec.lower < spec.upper:
        raise DataContractError(f"feature {spec.name!r}: numeric features need lower < upper")
    magnitude = max(abs(spec.lower), abs(spec.upper))
    scale = magnitude * _SCALE_FRACTION if magnitude > 0 else 1.0
    grid = np.linspace(np.arcsinh(spec.lower / scale), np.arcsinh(spec.upper / scale), n_fine + 1)
    edges = (scale * np.sinh(grid[1:-1])).astype(np.float32)
    return np.unique(edges)


def assign_bins(column: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Bin of every value: ``#{c <= float32(x)}``; NaN gets ``len(cuts) + 1`` (missing).

    ``column`` float of shape ``(n,)``; ``cuts`` float32 increasing. Returns int32 ``(n,)``.
    """
    values = column.astype(np.float32)
    bins = np.searchsorted(cuts.astype(np.float32), values, side="right").astype(np.int32)
    bins[np.isnan(values)] = len(cuts) + 1
    return bins


def select_cuts(edges: np.ndarray, counts: np.ndarray, max_bin: int) -> np.ndarray:
    """Quantile cut points (float32, a subset of ``edges``) giving at most ``max_bin`` bins.

    ``counts`` is the consortium's count per fine bucket, shape ``(len(edges) + 1,)``. Every
    resulting bin is occupied. If at most ``max_bin`` buckets are occupied each gets its own bin;
    otherwise bins take equal shares of the rows. A cut between occupied buckets ``i < j`` sits
    at the middle boundary of the empty gap between them.
    """
    occupied = np.flatnonzero(counts > 0)
    if len(occupied) <= 1:
        return np.zeros(0, dtype=np.float32)
    if len(occupied) <= max_bin:
        after = np.arange(len(occupied) - 1)
    else:
        cum = np.cumsum(counts[occupied], dtype=np.float64)
        targets = cum[-1] * np.arange(1, max_bin) / max_bin
        after = np.unique(np.searchsorted(cum, targets, side="left"))
        after = after[after < len(occupied) - 1]
    left = occupied[after]
    right = occupied[after + 1]
    boundary = (left + right - 1) // 2
    return np.asarray(edges[boundary], dtype=np.float32)


def fine_counts(X: np.ndarray, fine: list[np.ndarray]) -> np.ndarray:
    """A bank's fine count histograms: per feature its buckets then a missing bucket.

    ``X`` float ``(n, n_features)``; returns float64 of length ``sum(len(e) + 2 for e in fine)``.
    """
    parts = [
        np.bincount(assign_bins(X[:, j], edges), minlength=len(edges) + 2).astype(np.float64)
        for j, edges in enumerate(fine)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def cuts_from_counts(
    counts: np.ndarray, fine: list[np.ndarray], max_bin: int
) -> tuple[list[np.ndarray], list[bool]]:
    """Global cut points and missing flags from the consortium's :func:`fine_counts` sum."""
    cuts, has_missing, at = [], [], 0
    for edges in fine:
        feature = counts[at : at + len(edges) + 2]
        at += len(edges) + 2
        cuts.append(select_cuts(edges, feature[:-1], max_bin))
        has_missing.append(bool(feature[-1] > 0))
    return cuts, has_missing
