"""Consortium-wide metrics from secure-summed score histograms by label.

A bank never shares scores. It counts its holdout scores in ``n_bins`` bins per label
(:func:`score_histogram`); the secure sum of those counts is the consortium's histogram, from
which every bank derives the same metrics with pure-Python integer and float arithmetic
(:func:`binned_metrics`, no BLAS, so all banks agree bit for bit).

Bins are uniform in logit space over ``[-LOGIT_RANGE, LOGIT_RANGE]`` (bin 0 also takes every
score below ``sigmoid(-LOGIT_RANGE)``, the last bin every score above ``sigmoid(LOGIT_RANGE)``):
fraud models put most legitimate rows near 0 and the frauds they catch near 1, where uniform
bins over ``[0, 1]`` would lump thousands of rows into one bin. With the default 8192 bins a
bin is 0.0039 wide in logit, i.e. about 0.1% of a probability near 0 or 1 and 0.001 near 0.5.

Binned metrics treat every bin as one tied score, so they are exactly scikit-learn's metrics on
the scores replaced by their bin index:

- ROC-AUC: ties count half; the true AUC is within ``roc_auc_binning_bound`` = (pairs of a
  fraud and a legitimate row in the same bin) / (all such pairs) of the binned value;
- PR-AUC: average precision with one threshold per bin (scikit-learn's definition);
- recall at FPR: the largest recall at a bin edge whose false-positive rate is at most the
  target, a lower bound of the exact figure;
- best F1 over bin edges.

Brier score, row and fraud counts are exact (they come from the per-bank step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedtab.errors import ProtocolError
from fedtab.metrics import FPR_TARGETS

LOGIT_RANGE = 16.0
DEFAULT_BINS = 8192


def score_bins(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index in ``[0, n_bins)`` of each probability in ``scores`` (shape ``(n,)``)."""
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logit = np.log(s) - np.log1p(-s)
    position = np.floor((logit + LOGIT_RANGE) * (n_bins / (2.0 * LOGIT_RANGE)))
    return np.clip(position, 0, n_bins - 1).astype(np.int64)


def score_histogram(y: np.ndarray, scores: np.ndarray, n_bins: int) -> np.ndarray:
    """``[negatives per bin, positives per bin]`` as float64 counts, shape ``(2 * n_bins,)``."""
    index = score_bins(scores, n_bins)
    positive = np.asarray(y) == 1.0
    neg = np.bincount(index[~positive], minlength=n_bins)
    pos = np.bincount(index[positive], minlength=n_bins)
    return np.concatenate([neg, pos]).astype(np.float64)


def binned_metrics(neg: Sequence[int], pos: Sequence[int]) -> dict[str, Any]:
    """Ranking metrics of a score histogram (see module docstring); ints per bin, low to high.

    Returns ``roc_auc``, ``roc_auc_binning_bound``, ``pr_auc``, ``recall_at_fpr_*`` and
    ``best_f1``; ``None`` for each when either class is absent.
    """
    n_neg, n_pos = sum(neg), sum(pos)
    keys = ["roc_auc", "roc_auc_binning_bound", "pr_auc", "best_f1"]
    keys += [f"recall_at_fpr_{suffix}" for _, suffix in FPR_TARGETS]
    if n_neg == 0 or n_pos == 0:
        return dict.fromkeys(keys)
    tp = fp = 0
    auc_twice = 0  # integer: sum over bins of neg * (2 * positives above + positives here)
    ties = 0
    ap = 0.0
    best_f1 = 0.0
    recalls = {suffix: 0 for _, suffix in FPR_TARGETS}  # best tp so far, per target
    for k in range(len(neg) - 1, -1, -1):
        nk, pk = int(neg[k]), int(pos[k])
        if nk == 0 and pk == 0:
            continue
        auc_twice += nk * (2 * tp + pk)
        ties += nk * pk
        tp += pk
        fp += nk
        if pk:
            ap += (pk / n_pos) * (tp / (tp + fp))
        best_f1 = max(best_f1, 2 * tp / (tp + fp + n_pos))
        for target, suffix in FPR_TARGETS:
            if fp / n_neg <= target:
                recalls[suffix] = tp
    pairs = n_pos * n_neg
    out: dict[str, Any] = {
        "roc_auc": auc_twice / (2 * pairs),
        "roc_auc_binning_bound": ties / (2 * pairs),
        "pr_auc": ap,
        "best_f1": best_f1,
    }
    for _, suffix in FPR_TARGETS:
        out[f"recall_at_fpr_{suffix}"] = recalls[suffix] / n_pos
    return out


def counts_from_aggregate(aggregate: np.ndarray, n_bins: int) -> tuple[list[int], list[int]]:
    """Split a summed :func:`score_histogram` vector into negative and positive counts per bin.

    Raises :class:`ProtocolError` unless it holds ``2 * n_bins`` non-negative integers.
    """
    values = [float(v) for v in np.asarray(aggregate, dtype=np.float64).tolist()]
    if len(values) != 2 * n_bins or any(v < 0 or v != math.floor(v) for v in values):
        raise ProtocolError("the summed score histogram is not 2 * n_bins non-negative counts")
    counts = [int(v) for v in values]
    return counts[:n_bins], counts[n_bins:]
