"""Fraud-model metrics on one holdout: ranking, low false-positive-rate recall, calibration.

All figures come from scikit-learn's own functions (``roc_auc_score``,
``average_precision_score``, ``roc_curve``, ``precision_recall_curve``, ``brier_score_loss``)
so they match what a bank's analysts compute themselves. ``scores`` are probabilities of fraud
(any real scores work for the ranking metrics; the Brier score is then ``None``).
"""

from __future__ import annotations

import math
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
