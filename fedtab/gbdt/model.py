"""fedtab's own boosted-tree model and its pure-numpy predictor.

A :class:`Tree` is stored as parallel arrays indexed by node id (root 0), like XGBoost's JSON
model: internal nodes send ``float32(x) < threshold`` left, NaN to ``default_left``; a leaf's
``value`` already includes the learning rate and is float32-exact, so this predictor and stock
XGBoost (which loads the exported model) agree to float32 rounding of the running sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedtab.errors import ConfigError


@dataclass(frozen=True)
class Tree:
    """One regression tree; every array has shape ``(n_nodes,)``.

    ``left``/``right`` are child ids (-1 for leaves); ``feature``/``split_bin``/``threshold``/
    ``default_left`` describe internal nodes; ``value`` is the node's weight times the learning
    rate (the prediction at leaves); ``loss_change`` and ``cover`` (hessian sum) are the node
    statistics the model carries, to two significant digits (no row counts: see
    :mod:`fedtab.gbdt.grow`).
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    split_bin: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    value: np.ndarray
    loss_change: np.ndarray
    cover: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.left.shape[0])

    @property
    def is_leaf(self) -> np.ndarray:
        return np.asarray(self.left < 0)

    def depth(self) -> int:
        """Length of the longest root-to-leaf path (0 for a single leaf)."""
        depths = np.zeros(self.n_nodes, dtype=np.int64)
        for node in range(self.n_nodes):
            if self.left[node] >= 0:
                depths[self.left[node]] = depths[self.right[node]] = depths[node] + 1
        return int(depths.max())

    def leaf_index(self, X: np.ndarray) -> np.ndarray:
        """Leaf id reached by each row of ``X`` (float, shape ``(n, n_features)``)."""
        values = np.asarray(X, dtype=np.float32)
        rows = np.arange(values.shape[0])
        node = np.zeros(values.shape[0], dtype=np.int64)
        for _ in range(self.depth()):
            internal = self.left[node] >= 0
            x = values[rows, np.where(internal, self.feature[node], 0)]
            go_left = np.where(np.isnan(x), self.default_left[node], x < self.threshold[node])
            node = np.where(internal, np.where(go_left, self.left[node], self.right[node]), node)
        return node

    def leaf_index_binned(self, bins: np.ndarray, missing_bin: np.ndarray) -> np.ndarray:
        """Same as :meth:`leaf_index` on pre-binned rows (int ``(n, n_features)``).

        ``missing_bin[f]`` is the bin code of NaN for feature ``f``.
        """
        rows = np.arange(bins.shape[0])
        node = np.zeros(bins.shape[0], dtype=np.int64)
        for _ in range(self.depth()):
            internal = self.left[node] >= 0
            feat = np.where(internal, self.feature[node], 0)
            b = bins[rows, feat]
            go_left = np.where(
                b == missing_bin[feat], self.default_left[node], b <= self.split_bin[node]
            )
            node = np.where(internal, np.where(go_left, self.left[node], self.right[node]), node)
        return node


@dataclass(frozen=True)
class GBDTModel:
    """A fitted binary:logistic boosted-tree model.

    ``base_score`` is the float32 prior probability; its margin is the log-odds.
    """

    trees: tuple[Tree, ...]
    base_score: float
    feature_names: tuple[str, ...]

    @property
    def base_margin(self) -> float:
        return base_margin_of(self.base_score)

    def predict_margin(self, X: np.ndarray) -> np.ndarray:
        """Raw log-odds, float64 of shape ``(n,)``; raises :class:`ConfigError` on bad shape."""
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            raise ConfigError(
                f"expected X of shape (n, {len(self.feature_names)}), got {values.shape}"
            )
        margin = np.full(values.shape[0], self.base_margin)
        for tree in self.trees:
            margin += tree.value[tree.leaf_index(values)]
        return margin

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class, float64 of shape ``(n,)``."""
        return sigmoid(self.predict_margin(X))


def sigmoid(margin: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(margin, dtype=np.float64))))


def base_margin_of(base_score: float) -> float:
    """Log-odds of a probability (XGBoost's ``ProbToMargin`` for binary:logistic)."""
    return float(np.log(base_score) - np.log1p(-base_score))
