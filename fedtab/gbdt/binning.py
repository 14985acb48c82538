"""Global histogram bins from secure-summed fine count histograms (no local sketch leaves a bank).

Every bank buckets each feature on the same *fine grid*, derived from the data contract only
(declared ``lower``/``upper``; one bucket per category code); the consortium sums the fine count
histograms and every bank picks the same quantile cut points from the aggregate (a pure function
of it, so identical on every bank).

Privacy floor: cut points are released (proposal, model file), so each one reveals that rows lie
on both of its sides. Every bin they define holds at least ``min_rows`` (the job's
``min_child_samples``) of the consortium's rows with a value (or, in the last bin, folded
missing values: below), the first and the last bin included: adjacent occupied fine buckets
are merged until each bin reaches the floor. A feature whose rows cannot fill two such bins
gets no cut and is never split. Categorical
features have one fine bucket per category code, so rare categories are merged with their
neighbours in code order (a bin is a run of consecutive codes). Missing values keep their own
bucket outside the cuts when the consortium has at least ``min_rows`` of them (the released
``has_missing`` flag); fewer missing values (but some) are *folded*: counted in the last occupied
bucket and binned into the last bin, so they go right at every split, as XGBoost sends missing
values of a feature trained without them (``default_left = 0``). The cut points, the flag and
the model are then those of the same rows with these values set to the feature's largest value:
nothing released tells a few missing values from none.

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
from fedtab.errors import ConfigError, DataContractError

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


def assign_bins(column: np.ndarray, cuts: np.ndarray, *, has_missing: bool = True) -> np.ndarray:
    """Bin of every value: ``#{c <= float32(x)}``; NaN gets ``len(cuts) + 1`` (missing), or
    the last bin ``len(cuts)`` when the feature has no missing bucket (``has_missing`` false:
    its few missing values are folded, see the module docstring).

    ``column`` float of shape ``(n,)``; ``cuts`` float32 increasing. Returns int32 ``(n,)``.
    """
    values = column.astype(np.float32)
    bins = np.searchsorted(cuts.astype(np.float32), values, side="right").astype(np.int32)
    bins[np.isnan(values)] = len(cuts) + 1 if has_missing else len(cuts)
    return bins


def select_cuts(
    edges: np.ndarray, counts: np.ndarray, max_bin: int, *, min_rows: int
) -> np.ndarray:
    """Quantile cut points (float32, a subset of ``edges``) giving at most ``max_bin`` bins.

    ``counts`` is the consortium's count per fine bucket, shape ``(len(edges) + 1,)`` (missing
    values excluded). Every resulting bin holds at least ``min_rows >= 1`` rows. With ``n`` rows
    the target is ``min(max_bin, n // min_rows)`` bins of equal shares (every occupied bucket its
    own bin when there are no more occupied buckets than that); scanning left to right, a cut
    whose bin would hold fewer than ``min_rows`` rows moves right to the first occupied-bucket
    boundary where it holds enough, and the first cut that would leave fewer than ``min_rows``
    rows to its right moves left to the last boundary that does not (or is dropped), ending the
    scan. No cut means no boundary has ``min_rows`` rows on both sides (e.g. fewer than
    ``2 * min_rows`` rows). A cut between occupied buckets ``i < j`` sits at the middle boundary
    of the empty gap between them. Cuts are strictly increasing. Raises :class:`ConfigError` if
    ``min_rows < 1``.
    """
    if min_rows < 1:
        raise ConfigError("min_rows must be >= 1")
    mass = np.rint(np.asarray(counts, dtype=np.float64))
    occupied = np.flatnonzero(mass > 0)
    cum = np.cumsum(mass[occupied])
    total = float(cum[-1]) if len(cum) else 0.0
    n_bins = int(min(max_bin, total // min_rows))
    if len(occupied) <= 1 or n_bins < 2:
        return np.zeros(0, dtype=np.float32)
    if len(occupied) <= n_bins:
        candidates = np.arange(len(occupied) - 1)
    else:
        targets = total * np.arange(1, n_bins) / n_bins
        candidates = np.unique(np.searchsorted(cum, targets, side="left"))
    after = _floor_cuts(cum, candidates, float(min_rows))
    left = occupied[after]
    right = occupied[after + 1]
    boundary = (left + right - 1) // 2
    return np.asarray(edges[boundary], dtype=np.float32)


def _floor_cuts(cum: np.ndarray, candidates: np.ndarray, floor: float) -> np.ndarray:
    """Occupied-bucket indices to cut after, each bin (ends included) holding ``>= floor`` rows.

    ``cum`` is the cumulative count over occupied buckets; ``candidates`` increasing indices.
    """
    total, last, kept = float(cum[-1]), 0.0, []
    # the last index that leaves >= floor rows to its right (< len(cum) - 1 as floor >= 1)
    final = int(np.searchsorted(cum, total - floor, side="right")) - 1
    for candidate in candidates:
        at = max(int(candidate), int(np.searchsorted(cum, last + floor, side="left")))
        if at > final:
            # too close to the end: cut at the last place that still leaves the floor there
            if final >= 0 and cum[final] - last >= floor:
                kept.append(final)
            break
        kept.append(at)
        last = float(cum[at])
    return np.asarray(kept, dtype=np.int64)


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
    counts: np.ndarray, fine: list[np.ndarray], max_bin: int, *, min_rows: int,
    weakened_missing: bool = False,
) -> tuple[list[np.ndarray], list[bool]]:
    """Global cut points and missing flags from the consortium's :func:`fine_counts` sum.

    Every bin of every feature holds at least ``min_rows`` rows (see :func:`select_cuts`); a
    feature has a missing bucket only with at least ``min_rows`` missing values, fewer are
    folded into its last occupied bucket (module docstring). ``weakened_missing``: the old
    rule, a flag for any missing value (one row's granularity): for an attack test's positive
    control only.
    """
    cuts, has_missing, at = [], [], 0
    for edges in fine:
        feature = np.rint(counts[at : at + len(edges) + 2])
        at += len(edges) + 2
        present, missing = feature[:-1].copy(), float(feature[-1])
        flag = missing > 0 if weakened_missing else missing >= min_rows
        occupied = np.flatnonzero(present > 0)
        if not flag and missing > 0 and len(occupied):
            present[occupied[-1]] += missing
        cuts.append(select_cuts(edges, present, max_bin, min_rows=min_rows))
        has_missing.append(bool(flag))
    return cuts, has_missing
