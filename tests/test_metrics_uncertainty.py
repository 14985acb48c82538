"""Bootstrap intervals: exact against scikit-learn on every resample, paired, seeded, fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fedtab.metrics import (
    Bootstrap,
    bootstrap_samples,
    describe_difference,
    evaluate_scores,
    few_frauds_warning,
    holdout_uncertainty,
    percentile_interval,
)


def _holdout(n: int, rate: float, seed: int, decimals: int = 3) -> tuple[np.ndarray, ...]:
    """Labels and two models' scores; rounding makes ties (fedtab models tie a lot)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(float)
    y[:2] = (0.0, 1.0)
    good = np.round(1 / (1 + np.exp(-(rng.normal(-3, 1, n) + 2.5 * y))), decimals)
    weak = np.round(1 / (1 + np.exp(-(rng.normal(-3, 1, n) + 0.8 * y))), decimals)
    return y, good, weak


@pytest.mark.parametrize(("n", "rate", "decimals"), [(400, 0.05, 2), (1500, 0.02, 3),
                                                     (300, 0.3, 1)])
def test_every_resample_equals_scikit_learn(n: int, rate: float, decimals: int) -> None:
    y, good, weak = _holdout(n, rate, seed=n, decimals=decimals)
    boot = Bootstrap(resamples=40, seed=5)
    samples = bootstrap_samples(y, {"good": good, "weak": weak}, boot)
    # the same draws, done one resample at a time with scikit-learn
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng = np.random.default_rng(boot.seed)
    pos = rng.integers(0, len(positives), size=(boot.resamples, len(positives)))
    neg = rng.integers(0, len(negatives), size=(boot.resamples, len(negatives)))
    for b in range(boot.resamples):
        rows = np.concatenate([positives[pos[b]], negatives[neg[b]]])
        for name, scores in (("good", good), ("weak", weak)):
            yb, sb = y[rows], scores[rows]
            fpr, tpr, _ = roc_curve(yb, sb, drop_intermediate=False)
            got = samples[name]
            assert got["roc_auc"][b] == pytest.approx(roc_auc_score(yb, sb), abs=1e-12)
            assert got["pr_auc"][b] == pytest.approx(average_precision_score(yb, sb), abs=1e-12)
            assert got["recall_at_fpr_0_01"][b] == pytest.approx(tpr[fpr <= 0.01].max(),
                                                                 abs=1e-12)


def test_intervals_are_seeded_and_hold_the_estimate() -> None:
    y, good, weak = _holdout(3000, 0.02, seed=1)
    metrics = {"good": evaluate_scores(y, good), "weak": evaluate_scores(y, weak)}
    first = holdout_uncertainty(y, {"good": good, "weak": weak}, metrics, [("good", "weak")])
    again = holdout_uncertainty(y, {"good": good, "weak": weak}, metrics, [("good", "weak")])
    other = holdout_uncertainty(y, {"good": good, "weak": weak}, metrics, [("good", "weak")],
                                Bootstrap(seed=1))
    assert first == again and first != other
    assert first["bootstrap"] == {"method": "stratified bootstrap, percentile interval",
                                  "resamples": 1000, "confidence": 0.95, "seed": 0}
    for model in ("good", "weak"):
        for key in ("pr_auc", "roc_auc", "recall_at_fpr_0_01"):
            low, high = first["intervals"][model][key]
            assert low <= metrics[model][key] <= high
        assert first["intervals"][model]["pr_auc"][1] > first["intervals"][model]["pr_auc"][0]
    difference = first["differences"]["good_vs_weak"]["pr_auc"]
    assert difference["difference"] == pytest.approx(
        metrics["good"]["pr_auc"] - metrics["weak"]["pr_auc"])
    assert difference["clear"] and difference["interval"][0] > 0
    assert "PR-AUC +" in describe_difference(first["differences"]["good_vs_weak"])


def test_a_model_against_itself_is_within_noise() -> None:
    y, good, _ = _holdout(2000, 0.02, seed=2)
    m = evaluate_scores(y, good)
    result = holdout_uncertainty(y, {"a": good, "b": good.copy()}, {"a": m, "b": m}, [("a", "b")])
    for d in result["differences"]["a_vs_b"].values():
        assert d["interval"] == [0.0, 0.0] and not d["clear"]
    assert "within noise" in describe_difference(result["differences"]["a_vs_b"])


def test_few_frauds_warning() -> None:
    assert few_frauds_warning(30) is None
    warning = few_frauds_warning(14)
    assert warning is not None and "only 14 frauds" in warning
    y, good, _ = _holdout(500, 0.01, seed=3)
    result = holdout_uncertainty(y, {"m": good}, {"m": evaluate_scores(y, good)})
    assert result["warning"] == few_frauds_warning(int(y.sum()))


def test_percentile_interval() -> None:
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx([5.0, 95.0])


def test_fast_enough_for_the_main_job() -> None:
    """Three models on a 10,000-row holdout, 1000 resamples: well under the budget."""
    y, good, weak = _holdout(10_000, 0.01, seed=4)
    started = time.perf_counter()
    bootstrap_samples(y, {"a": good, "b": weak, "c": (good + weak) / 2})
    assert time.perf_counter() - started < 3.0
