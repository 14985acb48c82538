"""Fraud-model metrics on one holdout: ranking, low false-positive-rate recall, calibration.

All figures come from scikit-learn's own functions (``roc_auc_score``,
``average_precision_score``, ``roc_curve``, ``precision_recall_curve``, ``brier_score_loss``)
so they match what a bank's analysts compute themselves. ``scores`` are probabilities of fraud
(any real scores work for the ranking metrics; the Brier score is then ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from fedtab.errors import DataContractError

# False-positive rates at which recall is reported, with their key suffixes.
FPR_TARGETS: tuple[tuple[float, str], ...] = ((0.001, "0_001"), (0.01, "0_01"))
TOP_K = 100
TOP_FRACTION = 0.01


@dataclass(frozen=True)
class Curves:
    """ROC and precision-recall curves as scikit-learn returns them (1-D float arrays)."""

    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    positive_rate: float


def check_inputs(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` and ``scores`` as 1-D float arrays of equal length, both classes present.

    Raises:
        DataContractError: shapes differ or are not 1-D, labels other than 0/1, non-finite
            scores, no rows, or a single class (ROC-AUC and PR-AUC need both).
    """
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise DataContractError(
            f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}"
        )
    if len(y) == 0:
        raise DataContractError("the holdout has no rows")
    if not np.all((y == 0.0) | (y == 1.0)):
        raise DataContractError("labels must be 0 or 1")
    if not np.all(np.isfinite(s)):
        raise DataContractError(f"{int(np.sum(~np.isfinite(s)))} scores are NaN or infinite")
    n_positive = int(y.sum())
    if n_positive in (0, len(y)):
        only = "positive" if n_positive else "negative"
        raise DataContractError(
            f"the holdout has a single class (all {len(y)} rows are {only}); ROC-AUC and "
            "PR-AUC need both frauds and legitimate rows"
        )
    return y, s


def recall_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The largest true-positive rate among ROC points whose false-positive rate <= max_fpr."""
    return float(np.max(tpr[fpr <= max_fpr]))  # roc_curve always starts at (0, 0)


def _confusion(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, int]:
    flagged = s >= threshold
    positive = y == 1.0
    return {
        "tp": int(np.sum(flagged & positive)),
        "fp": int(np.sum(flagged & ~positive)),
        "tn": int(np.sum(~flagged & ~positive)),
        "fn": int(np.sum(~flagged & positive)),
    }


def _precision_at(y: np.ndarray, order: np.ndarray, k: int) -> float:
    """Share of frauds among the ``k`` highest scores (ties broken by row order)."""
    return float(np.mean(y[order[:k]]))


def evaluate_scores(y_true: Any, scores: Any) -> dict[str, Any]:
    """All holdout metrics of one model as a JSON-ready dict.

    ``y_true`` are 0/1 labels and ``scores`` fraud probabilities, both of shape ``(n_rows,)``.
    Keys: ``roc_auc``, ``pr_auc`` (average precision), ``recall_at_fpr_0_001``,
    ``recall_at_fpr_0_01``, ``precision_at_100``, ``precision_at_1pct`` (top ``ceil(1%)`` of
    rows), ``best_f1``, ``best_f1_threshold`` and ``confusion_at_best_f1`` (rows with score >=
    the threshold are flagged), ``brier`` (``None`` unless every score is in [0, 1]),
    ``n_rows``, ``n_positive``, ``positive_rate``.

    Raises:
        DataContractError: see :func:`check_inputs` (notably a single-class holdout).
    """
    y, s = check_inputs(y_true, scores)
    n = len(y)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The last PR point (precision 1, recall 0) has no threshold.
    p, r = precision[:-1], recall[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    best = int(np.argmax(f1))
    order = np.argsort(-s, kind="stable")
    top_k = min(TOP_K, n)
    top_share = max(1, math.ceil(TOP_FRACTION * n))
    in_unit = bool(np.all((s >= 0.0) & (s <= 1.0)))
    out: dict[str, Any] = {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
    }
    for target, suffix in FPR_TARGETS:
        out[f"recall_at_fpr_{suffix}"] = recall_at_fpr(fpr, tpr, target)
    out.update(
        {
            "precision_at_100": _precision_at(y, order, top_k),
            "precision_at_1pct": _precision_at(y, order, top_share),
            "top_k_rows": top_k,
            "top_1pct_rows": top_share,
            "best_f1": float(f1[best]),
            "best_f1_threshold": float(thresholds[best]),
            "confusion_at_best_f1": _confusion(y, s, float(thresholds[best])),
            "brier": float(brier_score_loss(y, s)) if in_unit else None,
            "n_rows": n,
            "n_positive": int(y.sum()),
            "positive_rate": float(y.mean()),
        }
    )
    return out


def curves(y_true: Any, scores: Any) -> Curves:
    """The ROC and precision-recall curves, for plotting.

    Raises:
        DataContractError: see :func:`check_inputs`.
    """
    y, s = check_inputs(y_true, scores)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return Curves(fpr=fpr, tpr=tpr, precision=precision, recall=recall,
                  positive_rate=float(y.mean()))


# ---------------------------------------------------------------- uncertainty (bootstrap)
# Metrics given with an interval, and the fraud count below which a holdout gets a warning.
INTERVAL_METRICS: tuple[tuple[str, str], ...] = (
    ("pr_auc", "PR-AUC"), ("roc_auc", "ROC-AUC"), ("recall_at_fpr_0_01", "recall@1%FPR"),
)
MIN_FRAUDS = 30
_CHUNK_CELLS = 4_000_000  # resamples x rows drawn per vectorised block (~8 bytes per cell)


@dataclass(frozen=True)
class Bootstrap:
    """A seeded stratified bootstrap with percentile intervals.

    Each resample draws the holdout's frauds and its legitimate rows separately, with
    replacement, keeping both counts, so every resample has both classes. The resamples depend
    only on the labels and the seed: models scored on one holdout are compared pairwise on the
    same resamples.
    """

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "stratified bootstrap, percentile interval",
            "resamples": self.resamples,
            "confidence": self.confidence,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class _Blocks:
    """One model's ranking reduced to what the curve metrics need.

    Sorting rows by decreasing score, ``K`` runs of tied scores hold at least one fraud. A
    fraud's block is the index ``k`` of its run; a legitimate row's block is ``2k`` if it sits
    between runs ``k-1`` and ``k``, ``2k+1`` if it is tied with run ``k``, and ``2K`` after the
    last one. Summing resampled rows per block gives every ROC/PR point that can matter.
    """

    pos_block: np.ndarray
    neg_block: np.ndarray
    n_runs: int

    @classmethod
    def of(cls, y: np.ndarray, s: np.ndarray) -> _Blocks:
        order = np.argsort(-s, kind="stable")
        s_sorted, y_sorted = s[order], y[order]
        run = np.concatenate([[0], np.cumsum(np.diff(s_sorted) != 0)])  # tied-run id per row
        fraud_runs = np.unique(run[y_sorted == 1.0])
        k = np.searchsorted(fraud_runs, run)  # first fraud run at or after the row's run
        tied = (k < len(fraud_runs)) & (fraud_runs[np.minimum(k, len(fraud_runs) - 1)] == run)
        block = np.where(tied, 2 * k + 1, 2 * k)
        rows = np.empty(len(s), dtype=np.int64)
        rows[order] = np.arange(len(s))
        return cls(
            pos_block=k[rows[y == 1.0]],
            neg_block=block[rows[y == 0.0]],
            n_runs=len(fraud_runs),
        )


def _counts(block_of: np.ndarray, draws: np.ndarray, n_blocks: int) -> np.ndarray:
    """Resampled rows per block: float ``(resamples, n_blocks)`` from row draws ``(B, m)``."""
    resamples = draws.shape[0]
    flat = block_of[draws] + n_blocks * np.arange(resamples)[:, None]
    return np.bincount(flat.ravel(), minlength=resamples * n_blocks).reshape(
        resamples, n_blocks
    ).astype(np.float64)


def _curve_metrics(
    blocks: _Blocks, pos_draws: np.ndarray, neg_draws: np.ndarray
) -> dict[str, np.ndarray]:
    """ROC-AUC, average precision and recall at 1% FPR on each resample.

    Same definitions as scikit-learn's: tied scores form one ROC step (half credit), AP is the
    sum of precision times recall gained at each threshold.
    """
    n_pos, n_neg, K = pos_draws.shape[1], neg_draws.shape[1], blocks.n_runs
    tp = np.cumsum(_counts(blocks.pos_block, pos_draws, K), axis=1)
    neg = _counts(blocks.neg_block, neg_draws, 2 * K + 1)
    fp_at = np.cumsum(neg, axis=1)[:, 1::2]  # legitimate rows ranked at or above run k
    tpr = tp / n_pos
    tpr_before = np.hstack([np.zeros((len(tpr), 1)), tpr[:, :-1]])
    heights = np.empty_like(neg)
    heights[:, 0:-1:2] = tpr_before
    heights[:, 1::2] = (tpr_before + tpr) / 2.0
    heights[:, -1] = 1.0
    roc_auc = np.sum(neg * heights, axis=1) / n_neg
    flagged = tp + fp_at
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    pr_auc = np.sum((tpr - tpr_before) * precision, axis=1)
    within = np.sum(fp_at / n_neg <= 0.01, axis=1)  # fpr rises with k: a prefix qualifies
    recall = np.where(within > 0, tpr[np.arange(len(tpr)), np.maximum(within - 1, 0)], 0.0)
    return {"pr_auc": pr_auc, "roc_auc": roc_auc, "recall_at_fpr_0_01": recall}


def bootstrap_samples(
    y_true: Any, scores: Mapping[str, Any], bootstrap: Bootstrap = Bootstrap()
) -> dict[str, dict[str, np.ndarray]]:
    """Each model's :data:`INTERVAL_METRICS` on every resample: ``{model: {metric: (B,)}}``.

    All models see the same resamples (paired). Raises :class:`DataContractError` as
    :func:`check_inputs` does.
    """
    checked = {name: check_inputs(y_true, s) for name, s in scores.items()}
    if not checked:
        return {}
    y = next(iter(checked.values()))[0]
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    blocks = {name: _Blocks.of(y, s) for name, (_, s) in checked.items()}
    rng = np.random.default_rng(bootstrap.seed)
    chunk = max(1, min(bootstrap.resamples, _CHUNK_CELLS // len(y)))
    parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in checked}
    for start in range(0, bootstrap.resamples, chunk):
        size = min(chunk, bootstrap.resamples - start)
        pos_draws = rng.integers(0, n_pos, size=(size, n_pos))
        neg_draws = rng.integers(0, n_neg, size=(size, n_neg))
        for name, model_blocks in blocks.items():
            parts[name].append(_curve_metrics(model_blocks, pos_draws, neg_draws))
    return {
        name: {key: np.concatenate([p[key] for p in chunks]) for key, _ in INTERVAL_METRICS}
        for name, chunks in parts.items()
    }


def percentile_interval(samples: np.ndarray, confidence: float) -> list[float]:
    """The central ``confidence`` percentile interval of ``samples``, as ``[low, high]``."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.asarray(samples, dtype=np.float64), [tail, 1.0 - tail])
    return [float(low), float(high)]


def few_frauds_warning(n_positive: int, minimum: int = MIN_FRAUDS) -> str | None:
    """A one-line warning when a holdout has fewer than ``minimum`` frauds, else None."""
    if n_positive >= minimum:
        return None
    return (
        f"only {n_positive} frauds in the holdout (< {minimum}): PR-AUC and recall at low FPR "
        "are very uncertain; read them with their intervals"
    )


def holdout_uncertainty(
    y_true: Any,
    scores: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Any]],
    pairs: Sequence[tuple[str, str]] = (),
    bootstrap: Bootstrap = Bootstrap(),
) -> dict[str, Any]:
    """Intervals for each model's headline metrics, and paired differences between models.

    ``metrics[model]`` is that model's :func:`evaluate_scores` dict (the point estimates);
    each ``(a, b)`` in ``pairs`` adds ``differences["a_vs_b"][metric]`` = ``{"difference":
    a - b, "interval": [low, high], "clear": the interval excludes 0}``. Also returns the
    bootstrap settings and a few-frauds ``warning`` (or None).
    """
    samples = bootstrap_samples(y_true, scores, bootstrap)
    level = bootstrap.confidence
    intervals = {
        model: {key: percentile_interval(values[key], level) for key, _ in INTERVAL_METRICS}
        for model, values in samples.items()
    }
    differences: dict[str, dict[str, Any]] = {}
    for a, b in pairs:
        differences[f"{a}_vs_{b}"] = {}
        for key, _ in INTERVAL_METRICS:
            low, high = percentile_interval(samples[a][key] - samples[b][key], level)
            differences[f"{a}_vs_{b}"][key] = {
                "difference": float(metrics[a][key]) - float(metrics[b][key]),
                "interval": [low, high],
                "clear": bool(low > 0.0 or high < 0.0),
            }
    n_positive = int(np.sum(np.asarray(y_true, dtype=np.float64)))
    return {
        "bootstrap": bootstrap.to_dict(),
        "intervals": intervals,
        "differences": differences,
        "warning": few_frauds_warning(n_positive),
    }


def with_intervals(
    metrics: Mapping[str, Any], uncertainty: Mapping[str, Any], model: str
) -> dict[str, Any]:
    """``metrics`` plus ``intervals`` (``{metric: [low, high]}``) and ``interval_confidence``
    for ``model`` from a :func:`holdout_uncertainty` result."""
    return {
        **metrics,
        "intervals": uncertainty["intervals"][model],
        "interval_confidence": uncertainty["bootstrap"]["confidence"],
    }


def describe_difference(difference: Mapping[str, Mapping[str, Any]]) -> str:
    """One pair's differences as text, e.g. ``PR-AUC +0.031 [-0.020, +0.080] within noise``.

    "clear" means the paired interval excludes 0; "within noise" that it does not.
    """
    parts = []
    for key, title in INTERVAL_METRICS:
        d = difference[key]
        low, high = d["interval"]
        verdict = "clear" if d["clear"] else "within noise"
        parts.append(f"{title} {d['difference']:+.3f} [{low:+.3f}, {high:+.3f}] {verdict}")
    return "; ".join(parts)
