"""Histogram layout and XGBoost's split search on aggregate (gradient, hessian, count) histograms.

Every bank runs this on the same decrypted aggregate with the same deterministic numpy code, so
every bank proposes the same split. Formulas are XGBoost's (``reg_alpha`` = 0):
``weight = -G / (H + lambda)`` clamped to ``max_delta_step``; gain ``G^2 / (H + lambda)`` (or
``-(2 G w + (H + lambda) w^2)`` when ``max_delta_step`` > 0); a split's loss change is
``gain(L) + gain(R) - gain(parent)``. Each candidate is tried with missing values going right
and left (XGBoost's learned default direction). A split is valid when both children hold at least
``min_child_samples`` consortium rows and ``min_child_weight`` hessian, and its loss change
exceeds 1e-6 and is at least ``min_split_loss`` (fedtab applies gamma while growing; XGBoost
prunes afterwards, which only differs when a weak split has a strong descendant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedtab.gbdt.params import GBDTParams

_RT_EPS = 1e-6


@dataclass(frozen=True)
class HistLayout:
    """Where each (feature, bin) lives in one node's histogram vector of length ``size``.

    ``features`` are the tree's sampled feature ids; feature ``features[k]`` occupies
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


def node_totals(hist: np.ndarray, layout: HistLayout) -> NodeStats:
    """A node's (G, H, count) from its histogram ``(3, layout.size)`` (first feature's slots)."""
    seg = hist[:, layout.start[0] : layout.start[0] + layout.width[0]].sum(axis=1)
    return NodeStats(float(seg[0]), float(seg[1]), int(np.rint(seg[2])))


def best_split(hist: np.ndarray, layout: HistLayout, p: GBDTParams) -> Split | None:
    """The best valid split of a node with histogram ``hist`` of shape ``(3, layout.size)``.

    Ties go to the lower feature, then the lower bin, then missing-goes-right. Returns ``None``
    when no candidate is valid.
    """
    feat_k = np.repeat(np.arange(len(layout.features)), layout.n_cuts)
    if feat_k.size == 0:
        return None
    offset = np.arange(feat_k.size) - np.repeat(np.cumsum(layout.n_cuts) - layout.n_cuts,
                                                layout.n_cuts)
    pos = layout.start[feat_k] + offset
    cs = np.cumsum(hist, axis=1)
    before = np.where(layout.start > 0, cs[:, np.maximum(layout.start - 1, 0)], 0.0)
    total = cs[:, layout.start + layout.width - 1] - before
    miss_pos = layout.start + layout.width - 1
    missing = np.where(layout.has_missing, hist[:, miss_pos], 0.0)
    cum = cs[:, pos] - before[:, feat_k]
    left_r = cum
    left_l = cum + missing[:, feat_k]
    tot = total[:, feat_k]
    parent_gain = gain(tot[0], tot[1], p)
    losses = []
    for left in (left_r, left_l):
        right = tot - left
        count_l, count_r = np.rint(left[2]), np.rint(right[2])
        ok = (
            (count_l >= p.min_child_samples)
            & (count_r >= p.min_child_samples)
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
    chosen = left_l if go_left else left_r
    left_stats = chosen[:, cand]
    right_stats = tot[:, cand] - left_stats
    k = int(feat_k[cand])
    return Split(
        feature=int(layout.features[k]),
        split_bin=int(offset[cand]),
        default_left=bool(go_left),
        loss_change=loss_change,
        left=NodeStats(float(left_stats[0]), float(left_stats[1]), int(np.rint(left_stats[2]))),
        right=NodeStats(
            float(right_stats[0]), float(right_stats[1]), int(np.rint(right_stats[2]))
        ),
    )
