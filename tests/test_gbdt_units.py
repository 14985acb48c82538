"""Unit tests of the GBDT building blocks: params, binning, split search."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from fedtab.data.contract import FeatureSpec
from fedtab.errors import ConfigError, DataContractError
from fedtab.gbdt import binning
from fedtab.gbdt.params import GBDTParams
from fedtab.gbdt.split import (
    HistLayout,
    NodeHist,
    best_split,
    candidate_positions,
    gain,
    leaf_weight,
)


def test_params_defaults_follow_xgboost_and_aliases_parse() -> None:
    p = GBDTParams.from_mapping({}, default_seed=9)
    assert (p.n_estimators, p.max_depth, p.learning_rate, p.max_bin) == (100, 6, 0.3, 256)
    assert (p.reg_lambda, p.min_child_weight, p.min_child_samples, p.seed) == (1.0, 1.0, 50, 9)
    q = GBDTParams.from_mapping({"eta": 0.1, "gamma": 2, "lambda": 3, "seed": 4})
    assert (q.learning_rate, q.min_split_loss, q.reg_lambda, q.seed) == (0.1, 2.0, 3.0, 4)


@pytest.mark.parametrize(
    "params",
    [
        {"max_depth": 0},
        {"learning_rate": 0},
        {"subsample": 1.5},
        {"colsample_bytree": 0},
        {"max_bin": 1},
        {"min_child_samples": 0},
        {"n_estimators": 2.5},
        {"max_depth": "6"},
        {"reg_lambda": float("nan")},
        {"scale_pos_weight": -1},
        {"colsample_bylevel": 0.5},
        {"max_depth": True},
    ],
)
def test_bad_params_raise_config_error(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GBDTParams.from_mapping(params)


def test_fine_grid_is_increasing_float32_and_dense_near_zero_for_heavy_tails() -> None:
    amount = FeatureSpec("amount", "numeric", lower=0.0, upper=50_000.0)
    edges = binning.fine_edges(amount, 1024)
    assert edges.dtype == np.float32
    assert np.all(np.diff(edges) > 0)
    assert edges[0] < 1.0 and edges[-1] > 40_000.0
    assert (edges < 100).sum() > 150  # a uniform grid would put 2 of 1023 edges below 100
    cat = FeatureSpec("channel", "categorical", categories=("a", "b", "c"))
    np.testing.assert_array_equal(binning.fine_edges(cat, 1024), [1.0, 2.0])
    with pytest.raises(DataContractError):
        binning.fine_edges(FeatureSpec("x", "numeric"), 1024)


def test_bins_agree_with_xgboost_rule_in_float32() -> None:
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.normal(size=20)).astype(np.float32)
    x = np.concatenate([rng.normal(size=1000), cuts.astype(np.float64), [np.nan, -1e9, 1e9]])
    x[5] = np.nextafter(np.float64(cuts[3]), -np.inf)  # rounds to the cut in float32
    bins = binning.assign_bins(x, cuts)
    assert bins[-3] == len(cuts) + 1
    finite = ~np.isnan(x)
    for b in range(len(cuts)):
        # bin <= b  <=>  float32(x) < cuts[b], XGBoost's go-left test
        np.testing.assert_array_equal(bins[finite] <= b, x[finite].astype(np.float32) < cuts[b])


def test_select_cuts_gives_occupied_quantile_bins() -> None:
    rng = np.random.default_rng(1)
    spec = FeatureSpec("v", "numeric", lower=-10.0, upper=10.0)
    edges = binning.fine_edges(spec, 1024)
    x = rng.standard_t(3, size=20_000)
    counts = np.bincount(binning.assign_bins(x, edges), minlength=len(edges) + 2)[:-1]
    cuts = binning.select_cuts(edges, counts, 16, min_rows=1)
    assert 10 <= len(cuts) <= 15
    bins = binning.assign_bins(x, cuts)
    share = np.bincount(bins, minlength=len(cuts) + 1) / len(x)
    assert share.min() > 0.02 and share.max() < 0.13
    few = np.zeros(len(edges) + 1)
    few[[3, 7, 500]] = [5, 1, 2]
    small = binning.select_cuts(edges, few, 16, min_rows=1)
    assert len(small) == 2 and edges[3] <= small[0] < edges[6] and edges[7] <= small[1]
    assert len(binning.select_cuts(edges, np.eye(1, len(edges) + 1, 4)[0], 16, min_rows=1)) == 0


def _xgb_root_gain(x: np.ndarray, y: np.ndarray, params: dict[str, float]) -> float:
    """Loss change of the root split of a depth-1 XGBoost tree (base_score 0.5)."""
    booster = xgb.train(
        {"objective": "binary:logistic", "tree_method": "exact", "max_depth": 1,
         "base_score": 0.5, "eta": 1.0, "nthread": 1, **params},
        xgb.DMatrix(x[:, None], y), num_boost_round=1,
    )
    tree = booster.get_dump(with_stats=True)[0].splitlines()
    root_gain = float(tree[0].split("gain=")[1].split(",")[0])
    return root_gain


@pytest.mark.parametrize("params", [{}, {"max_delta_step": 0.3, "reg_lambda": 2.0}])
def test_gain_formulas_match_xgboost(params: dict[str, float]) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 4, size=400).astype(np.float64)
    y = (rng.random(400) < np.where(x >= 2, 0.8, 0.3)).astype(np.float64)
    p = GBDTParams(**params, min_child_samples=1)  # type: ignore[arg-type]
    g, h = 0.5 - y, np.full(400, 0.25)
    cuts = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    layout = HistLayout.build(np.array([0]), np.array([3]), np.array([False]))
    bins = binning.assign_bins(x, cuts)
    hist = np.stack([np.bincount(bins, weights=w, minlength=4) for w in (g, h, np.ones(400))])
    split = best_split(NodeHist.from_full(hist, layout), layout, p)
    assert split is not None and split.split_bin == 1  # x < 2 goes left
    xgb_gain = _xgb_root_gain(x, y, params)
    assert split.loss_change == pytest.approx(xgb_gain, rel=1e-4)
    w = float(leaf_weight(split.left.grad, split.left.hess, p))
    assert abs(w) <= (p.max_delta_step or np.inf)
    assert float(gain(np.array(1.0), np.array(0.5), p)) == 0.0  # below min_child_weight
    assert float(gain(np.array(1.0), np.array(2.0), p)) > 0.0


def test_split_respects_floor_weight_and_learns_missing_direction() -> None:
    layout = HistLayout.build(np.array([0]), np.array([2]), np.array([True]))
    # bins 0,1,2 then missing; missing rows look like bin 0 rows
    hist = np.array([
        [-30.0, 10.0, 10.0, -20.0],
        [10.0, 10.0, 10.0, 8.0],
        [40.0, 40.0, 40.0, 32.0],
    ])
    node = NodeHist.from_full(hist, layout)
    best = best_split(node, layout, GBDTParams(min_child_samples=10))
    assert best is not None and best.split_bin == 0 and best.default_left
    assert best.left.count == 72 and best.right.count == 80
    assert best_split(node, layout, GBDTParams(min_child_samples=77)) is None
    assert best_split(node, layout, GBDTParams(min_child_samples=1, min_child_weight=25)) is None
    assert best_split(node, layout, GBDTParams(min_child_samples=1, min_split_loss=1e6)) is None


@pytest.mark.parametrize("seed", range(8))
def test_candidate_positions_lose_nothing(seed: int) -> None:
    """Searching only the candidate positions finds the same split as searching every bin,
    and a child's candidates are a subset of its parent's (so subtraction works)."""
    rng = np.random.default_rng(seed)
    layout = HistLayout.build(np.arange(4), np.array([12, 5, 30, 0]),
                              np.array([True, False, True, False]))
    n = 400
    bins = np.stack([rng.integers(0, m + 2 if miss else m + 1, size=n) // (1 + (k == 2))
                     for k, (m, miss) in enumerate(zip(layout.n_cuts, layout.has_missing,
                                                       strict=True))], axis=1)
    g, h = rng.normal(size=n) + (bins[:, 0] > 6), rng.uniform(0.05, 0.25, size=n)
    in_child = rng.random(n) < 0.45

    def full(mask: np.ndarray) -> np.ndarray:
        idx = (bins[mask] + layout.start).ravel()
        k = bins.shape[1]
        return np.stack([np.bincount(idx, weights=np.repeat(w[mask], k), minlength=layout.size)
                         for w in (g, h, np.ones(n))])

    p = GBDTParams(min_child_samples=int(rng.integers(5, 60)))
    parent, child = full(np.ones(n, bool)), full(in_child)
    for hist in (parent, child):
        q = candidate_positions(hist[2], layout, p.min_child_samples)
        everywhere = best_split(NodeHist.from_full(hist, layout), layout, p)
        compressed = best_split(NodeHist.from_full(hist, layout, q), layout, p)
        assert everywhere == compressed
    q_parent = candidate_positions(parent[2], layout, p.min_child_samples)
    q_child = candidate_positions(child[2], layout, p.min_child_samples)
    for qp, qc in zip(q_parent, q_child, strict=True):
        assert set(qc) <= set(qp)
