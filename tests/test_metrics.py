"""Holdout metrics equal scikit-learn's figures and brute-force definitions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    roc_auc_score,
    roc_curve,
)

from fedtab.errors import DataContractError
from fedtab.metrics import curves, evaluate_scores


def _predictions(seed: int, n: int, rate: float, decimals: int | None = None):  # type: ignore[no-untyped-def]
    """Labels and informative probabilities; rounding creates many tied scores."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.float64)
    logits = rng.normal(-4.0, 1.5, n) + 3.0 * y
    scores = 1.0 / (1.0 + np.exp(-logits))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return y, scores


def _brute_recall_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> float:
    """Scan every threshold (flag score >= t) without scikit-learn."""
    best = 0.0
    pos, neg = y == 1, y == 0
    for t in np.unique(s):
        flagged = s >= t
        fpr = np.sum(flagged & neg) / neg.sum()
        if fpr <= max_fpr:
            best = max(best, np.sum(flagged & pos) / pos.sum())
    return float(best)


def _brute_best_f1(y: np.ndarray, s: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(s):
        flagged = s >= t
        tp = np.sum(flagged & (y == 1))
        fp = np.sum(flagged & (y == 0))
        fn = np.sum(~flagged & (y == 1))
        if tp:
            best = max(best, 2 * tp / (2 * tp + fp + fn))
    return float(best)


@pytest.mark.parametrize(("seed", "n", "rate", "decimals"), [
    (0, 6_000, 0.02, None),
    (1, 5_000, 0.05, 2),  # heavy ties
    (2, 3_000, 0.002, 3),
    (3, 80, 0.2, None),  # fewer rows than the top 100
])
def test_figures_equal_scikit_learn_and_brute_force(seed: int, n: int, rate: float,
                                                    decimals: int | None) -> None:
    y, s = _predictions(seed, n, rate, decimals)
    m = evaluate_scores(y, s)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    for target, key in ((0.001, "recall_at_fpr_0_001"), (0.01, "recall_at_fpr_0_01")):
        assert m[key] == pytest.approx(float(tpr[fpr <= target].max()), abs=1e-12)
        assert m[key] == pytest.approx(_brute_recall_at_fpr(y, s, target), abs=1e-12)
    assert m["best_f1"] == pytest.approx(_brute_best_f1(y, s), abs=1e-12)
    cm = m["confusion_at_best_f1"]
    assert cm["tp"] + cm["fp"] + cm["tn"] + cm["fn"] == n
    assert cm["tp"] + cm["fn"] == int(y.sum())
    assert 2 * cm["tp"] / (2 * cm["tp"] + cm["fp"] + cm["fn"]) == pytest.approx(m["best_f1"])
    assert cm["tp"] + cm["fp"] == int(np.sum(s >= m["best_f1_threshold"]))
    assert (m["n_rows"], m["n_positive"]) == (n, int(y.sum()))
    if n <= 100:
        assert m["precision_at_100"] == pytest.approx(y.mean())
    json.dumps(m, allow_nan=False)  # JSON-ready


def test_precision_at_top_k_without_ties() -> None:
    y, s = _predictions(4, 10_000, 0.02)
    assert len(np.unique(s)) == len(s)
    m = evaluate_scores(y, s)
    top100 = y[np.argsort(s)[::-1][:100]]
    top1pct = y[np.argsort(s)[::-1][: math.ceil(0.01 * len(s))]]
    assert m["precision_at_100"] == pytest.approx(top100.mean())
    assert m["precision_at_1pct"] == pytest.approx(top1pct.mean())
    assert m["top_1pct_rows"] == 100


def test_perfect_and_inverted_rankings() -> None:
    y = np.array([0.0] * 990 + [1.0] * 10)
    perfect = evaluate_scores(y, y * 0.9 + 0.05)
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == 1.0
    assert perfect["recall_at_fpr_0_001"] == 1.0 and perfect["best_f1"] == 1.0
    inverted = evaluate_scores(y, 1.0 - y)
    assert inverted["roc_auc"] == 0.0 and inverted["recall_at_fpr_0_01"] == 0.0


def test_brier_is_none_for_scores_outside_unit_interval() -> None:
    y, s = _predictions(5, 1_000, 0.1)
    m = evaluate_scores(y, np.log(s))  # log-probabilities rank the same
    assert m["brier"] is None
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))


@pytest.mark.parametrize(("y", "s", "needle"), [
    (np.zeros(50), np.linspace(0, 1, 50), "single class"),
    (np.ones(50), np.linspace(0, 1, 50), "single class"),
    (np.array([0.0, 1.0, 2.0]), np.array([0.1, 0.2, 0.3]), "0 or 1"),
    (np.array([0.0, 1.0]), np.array([0.1, np.nan]), "NaN"),
    (np.array([0.0, 1.0, 1.0]), np.array([0.1, 0.2]), "equal length"),
    (np.array([]), np.array([]), "no rows"),
])
def test_invalid_inputs_raise_clear_errors(y: np.ndarray, s: np.ndarray, needle: str) -> None:
    with pytest.raises(DataContractError, match=needle):
        evaluate_scores(y, s)
    with pytest.raises(DataContractError):
        curves(y, s)


def test_curves_match_roc_curve() -> None:
    y, s = _predictions(6, 2_000, 0.05)
    c = curves(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    np.testing.assert_array_equal(c.fpr, fpr)
    np.testing.assert_array_equal(c.tpr, tpr)
    assert c.positive_rate == pytest.approx(y.mean())
