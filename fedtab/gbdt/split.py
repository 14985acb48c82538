"""Histogram layouts and XGBoost's split search on aggregate node statistics.

Every bank runs this on the same decrypted aggregates with the same deterministic numpy code, so
every bank proposes the same split. Formulas are XGBoost's (``reg_alpha`` = 0):
``weight = -G / (H + lambda)`` clamped to ``max_delta_step``; gain ``G^2 / (H + lambda)`` (or
``-(2 G w + (H + lambda) w^2)`` when ``max_delta_step`` > 0); a split's loss change is
``gain(L) + gain(R) - gain(parent)``. Each candidate is tried with missing values going right
and left (XGBoost's learned default direction). A split is valid when both children hold at least
``min_child_samples`` consortium rows and ``min_child_weight`` hessian, and its loss change
exceeds 1e-6 and is at least ``min_split_loss`` (fedtab applies gamma while growing; XGBoost
prunes afterwards, which only differs when a weak split has a strong descendant).

Gradient statistics are only needed at *candidate positions*: the boundary after bin ``b`` of a
feature is a candidate when bin ``b`` holds rows (else it repeats the previous boundary) and the
row counts allow a valid split in some missing direction (:func:`candidate_positions`). Counts
only shrink from parent to child, so a child's candidates are a subset of its parent's, and
cumulative sums at the parent's candidates are enough to derive a sibling by subtraction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedtab.gbdt.params import GBDTParams

_RT_EPS = 1e-6


@dataclass(frozen=True)
class HistLayout:
    """Where each (feature, bin) lives in one node's full count histogram of length ``size``.

    ``features`` are the tree's sampled feature ids; ``features[k]`` occupies
    ``[start[k], start[k] + width[k])`` with bins ``0..n_cuts[k]`` then, if it has missing
    values, one missing slot.
    """

    features: np.ndarray
    n_cuts: np.ndarray
    has_missing: np.ndarray
    start: np.ndarray
    width: np.ndarray

    @classmethod
    def build(cls, features: np.ndarray, n_cuts: np.ndarray, has_missing: np.ndarray) -> HistLayout:
        """Layout for ``features`` given every feature's cut count and missing flag."""
        feats = np.asarray(features, dtype=np.int64)
        cuts = np.asarray(n_cuts, dtype=np.int64)[feats]
        miss = np.asarray(has_missing, dtype=bool)[feats]
        width = cuts + 1 + miss.astype(np.int64)
        start = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64)
        return cls(feats, cuts, miss, start, width)

    @property
    def size(self) -> int:
        return int(self.width.sum())

    def segment(self, hist: np.ndarray, k: int) -> tuple[np.ndarray, float]:
        """Feature ``k``'s bins ``0..n_cuts[k]`` and its missing value (0 when none)."""
        seg = hist[..., self.start[k] : self.start[k] + self.width[k]]
        bins = seg[..., : self.n_cuts[k] + 1]
        return bins, float(seg[..., -1]) if self.has_missing[k] else 0.0


@dataclass(frozen=True)
class NodeHist:
    """A node's aggregate statistics as the split search needs them.

    ``counts``: full count histogram (layout order). Per sampled feature ``k``:
    ``positions[k]`` (increasing bins ``b``), ``cum[k]`` of shape ``(2, len(positions[k]))``
    holding gradient and hessian sums over bins ``<= b``, and ``missing[:, k]``. ``total``:
    the node's (gradient, hessian) sums. ``released`` (bool per feature, ``None``: all) marks
    the features whose missing bucket was summed separately; elsewhere the missing rows are
    *folded* into the right-hand side and ``missing`` is 0 (:mod:`fedtab.gbdt.positions`).
    """

    counts: np.ndarray
    positions: tuple[np.ndarray, ...]
    cum: tuple[np.ndarray, ...]
    missing: np.ndarray
    total: np.ndarray
    released: np.ndarray | None = None

    @property
    def missing_released(self) -> np.ndarray:
        """Bool per feature: the missing bucket's sums are known (see ``released``)."""
        if self.released is None:
            return np.ones(len(self.positions), dtype=bool)
        return self.released

    @property
    def count(self) -> int:
        """Rows in the node (every feature's segment of ``counts`` sums to it)."""
        return int(np.rint(self.counts.sum() / max(1, len(self.positions))))

    @classmethod
    def from_full(
        cls, hist: np.ndarray, layout: HistLayout, positions: list[np.ndarray] | None = None
    ) -> NodeHist:
        """From a full (gradient, hessian, count) histogram ``(3, layout.size)``, kept at
        ``positions`` (default: every boundary)."""
        if positions is None:
            positions = [np.arange(m) for m in layout.n_cuts]
        cums, missing = [], np.zeros((2, len(layout.features)))
        for k, pos in enumerate(positions):
            bins, _ = layout.segment(hist[2], k)
            seg = hist[:2, layout.start[k] : layout.start[k] + len(bins)]
            cums.append(np.cumsum(seg, axis=1)[:, pos])
            if layout.has_missing[k]:
                missing[:, k] = hist[:2, layout.start[k] + layout.width[k] - 1]
        k0 = slice(layout.start[0], layout.start[0] + layout.width[0])
        return cls(hist[2].copy(), tuple(positions), tuple(cums), missing,
                   hist[:2, k0].sum(axis=1))

    def derive(self, sibling: NodeHist, counts: np.ndarray,
               positions: tuple[np.ndarray, ...]) -> NodeHist:
        """This (parent) node minus ``sibling``, kept at ``positions`` (subsets of both); the
        missing buckets released for ``sibling`` are released for the result."""
        cum = tuple(
            self.cum[k][:, np.searchsorted(self.positions[k], pos)]
            - sibling.cum[k][:, np.searchsorted(sibling.positions[k], pos)]
            for k, pos in enumerate(positions)
        )
        missing = np.where(sibling.missing_released, self.missing - sibling.missing, 0.0)
        return NodeHist(counts, positions, cum, missing, self.total - sibling.total,
                        sibling.released)


@dataclass(frozen=True)
class NodeStats:
    """Consortium-wide sums of one node: gradient, hessian, row count."""

    grad: float
    hess: float
    count: int


@dataclass(frozen=True)
class Split:
    """The best split of one node: rows with bin ``<= split_bin`` of ``feature`` go left."""

    feature: int
    split_bin: int
    default_left: bool
    loss_change: float
    left: NodeStats
    right: NodeStats


def candidate_positions(counts: np.ndarray, layout: HistLayout, min_rows: int) -> list[np.ndarray]:
    """Per sampled feature, the bins ``b`` whose boundary can split a node with ``counts``.

    ``counts`` is the node's full count histogram (length ``layout.size``).
    """
    out = []
    for k in range(len(layout.features)):
        bins, missing = layout.segment(counts, k)
        total = float(bins.sum()) + missing
        cum = np.cumsum(bins)[:-1]
        right_ok = (cum >= min_rows) & (total - cum >= min_rows)
        left_ok = (cum + missing >= min_rows) & (total - cum - missing >= min_rows)
        fresh = np.concatenate([[True], bins[1:-1] > 0]) if len(cum) else np.zeros(0, bool)
        out.append(np.flatnonzero((right_ok | left_ok) & fresh))
    return out


def leaf_weight(grad: np.ndarray | float, hess: np.ndarray | float, p: GBDTParams) -> np.ndarray:
    """XGBoost's ``CalcWeight`` (without the learning rate); 0 where hess < min_child_weight."""
    g = np.asarray(grad, dtype=np.float64)
    h = np.asarray(hess, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = -g / (h + p.reg_lambda)
    if p.max_delta_step > 0:
        w = np.clip(w, -p.max_delta_step, p.max_delta_step)
    return np.asarray(np.where((h < p.min_child_weight) | (h <= 0), 0.0, w))


def gain(grad: np.ndarray, hess: np.ndarray, p: GBDTParams) -> np.ndarray:
    """XGBoost's ``CalcGain``; 0 where hess < min_child_weight."""
    if p.max_delta_step > 0:
        w = leaf_weight(grad, hess, p)
        out = -(2.0 * grad * w + (hess + p.reg_lambda) * w * w)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = grad * grad / (hess + p.reg_lambda)
    return np.asarray(np.where((hess < p.min_child_weight) | (hess <= 0), 0.0, out))


def best_split(node: NodeHist, layout: HistLayout, p: GBDTParams) -> Split | None:
    """The best valid split of ``node``, or ``None``.

    Ties go to the lower feature, then the lower bin, then missing-goes-right.
    """
    feats, bins, stats, missing = [], [], [], []
    for k, pos in enumerate(node.positions):
        if len(pos) == 0:
            continue
        count_bins, count_missing = layout.segment(node.counts, k)
        if not node.missing_released[k]:
            count_missing = 0.0  # folded: missing rows go right with the rest
        cum_count = np.cumsum(count_bins)[pos]
        stats.append(np.vstack([node.cum[k], cum_count[None, :]]))
        missing.append(np.repeat([[node.missing[0, k]], [node.missing[1, k]], [count_missing]],
                                 len(pos), axis=1))
        feats.append(np.full(len(pos), k))
        bins.append(pos)
    if not feats:
        return None
    feat_k, split_bin = np.concatenate(feats), np.concatenate(bins)
    cum, miss = np.hstack(stats), np.hstack(missing)
    total = np.array([node.total[0], node.total[1], node.count], dtype=np.float64)[:, None]
    parent_gain = gain(total[0], total[1], p)
    losses = []
    for left in (cum, cum + miss):
        right = total - left
        ok = (
            (np.rint(left[2]) >= p.min_child_samples)
            & (np.rint(right[2]) >= p.min_child_samples)
            & (left[1] >= p.min_child_weight)
            & (right[1] >= p.min_child_weight)
        )
        loss = gain(left[0], left[1], p) + gain(right[0], right[1], p) - parent_gain
        losses.append(np.where(ok, loss, -np.inf))
    both = np.stack(losses, axis=1).ravel()  # candidate-major: (right, left) per candidate
    best = int(np.argmax(both))
    loss_change = float(both[best])
    if not (loss_change > _RT_EPS and loss_change >= p.min_split_loss):
        return None
    cand, go_left = divmod(best, 2)
    left_stats = (cum + miss if go_left else cum)[:, cand]
    right_stats = total[:, 0] - left_stats
    return Split(
        feature=int(layout.features[feat_k[cand]]),
        split_bin=int(split_bin[cand]),
        default_left=bool(go_left),
        loss_change=loss_change,
        left=_stats(left_stats),
        right=_stats(right_stats),
    )


def _stats(values: np.ndarray) -> NodeStats:
    return NodeStats(float(values[0]), float(values[1]), int(np.rint(values[2])))
