"""The privacy floor on released cut points: every bin holds ``min_child_samples`` rows.

Cut points go to the aggregator (the ``bins`` proposal) and into model.json, so a bin of one row
would locate that row's value. These tests check the floor on the trainer's released cuts (the
security review's reproduction: a small consortium with an outlier amount), on categorical codes
(rare codes merge with neighbours in code order), and as a property over random histograms.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.errors import ConfigError
from fedtab.gbdt import binning
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext

BANKS = ("bank_a", "bank_b", "bank_c")
OUTLIER, NEXT_LARGEST = 41234.56, 491.01


def _contract() -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", lower=0.0, upper=50_000.0, nullable=False),
            FeatureSpec("score", "numeric", lower=-6.0, upper=6.0),
            FeatureSpec("channel", "categorical", categories=("a", "b", "c", "d", "e", "f")),
            FeatureSpec("rare", "numeric", lower=-6.0, upper=6.0),
        ),
        label="fraud",
    )


def _review_table(seed: int = 5) -> LocalTable:
    """150 rows: amounts up to 491.01 plus one outlier of 41234.56 (the review's repro)."""
    rng = np.random.default_rng(seed)
    n = 150
    X = np.empty((n, 4))
    X[:, 0] = np.minimum(np.round(rng.lognormal(3.5, 1.0, size=n), 2), 480.0)
    X[7, 0], X[99, 0] = NEXT_LARGEST, OUTLIER
    X[:, 1] = rng.normal(size=n)
    X[:, 2] = rng.choice(6, size=n, p=[0.45, 0.02, 0.3, 0.01, 0.2, 0.02])  # rare codes b, d, f
    X[:, 3] = np.nan
    X[:12, 3] = rng.normal(size=12)  # 12 non-missing rows: too few for two bins of 10
    y = (rng.random(n) < 0.2).astype(np.float64)
    y[99] = 1.0
    return LocalTable(_contract(), X, y)


def _bin_counts(column: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Rows per bin under XGBoost's rule (float32 ``x < cut`` goes left), missing excluded."""
    values = column[~np.isnan(column)].astype(np.float32)
    edges = np.concatenate([[-np.inf], cuts.astype(np.float32), [np.inf]])
    return np.array([((lo <= values) & (values < hi)).sum()
                     for lo, hi in itertools.pairwise(edges)])


def _train(table: LocalTable, params: dict[str, Any]) -> tuple[GBDTTrainer, bytes]:
    bounds = (0, 50, 100, 150)
    banks = {
        name: GBDTTrainer(
            JobContext("floor", name, BANKS, seed=3, params=params),
            LocalTable(table.contract, table.X[lo:hi], table.y[lo:hi]),
        )
        for name, lo, hi in zip(BANKS, bounds[:-1], bounds[1:], strict=True)
    }
    outcome = run_plaintext(banks)
    return banks["bank_a"], outcome.artifacts["model.json"]


@pytest.mark.parametrize("floor", [10, 50])
def test_review_repro_outlier_gets_no_small_bin(floor: int) -> None:
    table = _review_table()
    params: dict[str, Any] = {"n_estimators": 3, "max_depth": 3, "min_child_samples": floor}
    bank, model_json = _train(table, params)
    cuts = bank.cuts
    for j, feature_cuts in enumerate(cuts):
        assert np.all(np.diff(feature_cuts) > 0)
        if len(feature_cuts):
            counts = _bin_counts(table.X[:, j], feature_cuts)
            assert counts.sum() == (~np.isnan(table.X[:, j])).sum()
            assert counts.min() >= floor, (j, counts)
    amount = cuts[0]
    assert 1 <= len(amount) <= 150 // floor - 1
    # the top bin holds the outlier with at least floor - 1 other rows: no cut near 491 or above
    assert amount[-1] < np.sort(table.X[:, 0])[-floor]
    assert len(cuts[3]) == 0  # 12 non-missing rows cannot fill two bins of 10
    # the released copies agree: model.json's `fedtab` attribute and every split threshold
    booster = xgb.Booster(model_file=bytearray(model_json))
    meta = json.loads(booster.attr("fedtab") or "{}")
    assert [np.asarray(c, dtype=np.float32).tolist() for c in meta["cuts"]] == [
        c.tolist() for c in cuts
    ]
    trees = json.loads(model_json)["learner"]["gradient_booster"]["model"]["trees"]
    for tree in trees:
        for node, feature in enumerate(tree["split_indices"]):
            if tree["left_children"][node] >= 0:
                assert np.float32(tree["split_conditions"][node]) in cuts[feature]


def test_rare_categories_merge_with_neighbours_in_code_order() -> None:
    edges = binning.fine_edges(
        FeatureSpec("c", "categorical", categories=tuple("abcdef")), 1024
    )
    # codes 0..5; code 2 (5 rows) and code 4 (1 row) cannot stand alone with a floor of 50
    cuts = binning.select_cuts(edges, np.array([30, 30, 5, 60, 1, 80]), 256, min_rows=50)
    np.testing.assert_array_equal(cuts, np.array([2.0, 4.0], dtype=np.float32))
    # bins {a, b} = 60, {c, d} = 65, {e, f} = 81 rows
    np.testing.assert_array_equal(
        np.bincount(binning.assign_bins(np.arange(6.0), cuts), weights=[30, 30, 5, 60, 1, 80]),
        [60, 65, 81],
    )
    # every code its own bin once each has enough rows (the floor is not binding)
    counts = np.array([60, 70, 55, 90, 51, 80])
    np.testing.assert_array_equal(
        binning.select_cuts(edges, counts, 256, min_rows=50), edges
    )
    # one dominant code: the only two-bin split puts it alone
    np.testing.assert_array_equal(
        binning.select_cuts(edges, np.array([100, 3, 0, 40, 2, 60]), 256, min_rows=50), [1.0]
    )


def test_non_binding_floor_keeps_the_quantile_cuts() -> None:
    rng = np.random.default_rng(1)
    edges = binning.fine_edges(FeatureSpec("v", "numeric", lower=-10.0, upper=10.0), 1024)
    x = rng.standard_t(3, size=20_000)
    counts = np.bincount(binning.assign_bins(x, edges), minlength=len(edges) + 2)[:-1]
    quantile = binning.select_cuts(edges, counts, 16, min_rows=1)
    np.testing.assert_array_equal(binning.select_cuts(edges, counts, 16, min_rows=50), quantile)
    floored = binning.select_cuts(edges, counts, 16, min_rows=2_000)
    share = np.bincount(binning.assign_bins(x, floored)) / len(x)
    assert len(floored) >= 5 and share.min() >= 0.1
    with pytest.raises(ConfigError):
        binning.select_cuts(edges, counts, 16, min_rows=0)


@st.composite
def _histograms(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts): a code grid or an asinh grid, counts sparse with some heavy buckets."""
    n_buckets = draw(st.integers(2, 400))
    counts = draw(arrays(np.int64, n_buckets, elements=st.integers(0, 60)))
    zeros = draw(arrays(np.bool_, n_buckets))
    counts[zeros] = 0
    heavy = draw(st.lists(st.integers(0, n_buckets - 1), max_size=3))
    counts[heavy] += draw(st.integers(0, 2_000))
    if draw(st.booleans()):
        edges = np.arange(1, n_buckets, dtype=np.float32)
    else:
        spec = FeatureSpec("v", "numeric", lower=-50.0, upper=1_000.0)
        edges = binning.fine_edges(spec, n_buckets)
    return edges, counts.astype(np.float64)


@settings(max_examples=300, deadline=None)
@given(_histograms(), st.integers(2, 64), st.integers(1, 120))
def test_every_bin_holds_the_floor(
    histogram: tuple[np.ndarray, np.ndarray], max_bin: int, floor: int
) -> None:
    edges, counts = histogram
    assert len(edges) + 1 == len(counts)
    cuts = binning.select_cuts(edges, counts, max_bin, min_rows=floor)
    assert cuts.dtype == np.float32
    assert np.all(np.diff(cuts) > 0) and np.isin(cuts, edges).all()
    total = counts.sum()
    # bucket k holds edges[k-1] <= x < edges[k]: its lower edge stands for all of its rows
    lower = np.concatenate([[-np.inf], edges.astype(np.float64)])
    per_bin = np.bincount(binning.assign_bins(lower, cuts), weights=counts,
                          minlength=len(cuts) + 1)
    assert len(per_bin) == len(cuts) + 1 and per_bin.sum() == total
    if len(cuts):
        assert per_bin.min() >= floor
        assert len(cuts) <= max_bin - 1 and len(cuts) + 1 <= total // floor
    else:
        # no cut only when no boundary leaves the floor on both sides
        cum = np.cumsum(counts)[:-1]
        assert not np.any((cum >= floor) & (total - cum >= floor))
    assert np.array_equal(cuts, binning.select_cuts(edges, counts, max_bin, min_rows=floor))
