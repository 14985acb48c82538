"""Reference models a simulation compares the federated model against.

* local-only: what each bank can train alone on its own rows;
* pooled: what one party holding every bank's rows would train (only a simulation can do this).

Both use stock tools (``xgboost`` hist, scikit-learn) with the same parameters as the job, on
the same model-ready matrices (:class:`~fedtab.data.contract.LocalTable`). Each job kind names
its baseline in its :class:`~fedtab.jobs.kind.JobKind` (``fit_xgboost``, ``fit_logreg``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedtab.data.contract import LocalTable
from fedtab.gbdt.kind import PARAMETERS as GBDT_PARAMETERS
from fedtab.jobs import job_kind
from fedtab.logreg.design import DesignEncoder, Grouping
from fedtab.logreg.kind import PARAMETERS as LOGREG_PARAMETERS

Scorer = Callable[[LocalTable], np.ndarray]

# fedtab (XGBoost scikit-learn names) -> xgboost.train parameter names.
_XGB_NAMES = {
    "learning_rate": "eta",
    "max_depth": "max_depth",
    "max_bin": "max_bin",
    "reg_lambda": "lambda",
    "min_split_loss": "gamma",
    "min_child_weight": "min_child_weight",
    "max_delta_step": "max_delta_step",
    "scale_pos_weight": "scale_pos_weight",
    "subsample": "subsample",
    "colsample_bytree": "colsample_bytree",
}


def xgboost_params(params: Mapping[str, Any], seed: int) -> tuple[dict[str, Any], int]:
    """Translate a gbdt job's ``[params]`` (aliases allowed) to ``xgboost.train`` params and a
    round count."""
    params = {GBDT_PARAMETERS.canonical(key): value for key, value in params.items()}
    out: dict[str, Any] = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "nthread": 1,
        "seed": seed,
        "eta": 0.3,
    }
    for ours, theirs in _XGB_NAMES.items():
        if ours in params:
            out[theirs] = params[ours]
    return out, int(params.get("n_estimators", 100))


def train_xgboost(table: LocalTable, params: Mapping[str, Any], seed: int) -> xgb.Booster:
    """Stock XGBoost (hist) on one table with the job's parameters."""
    xgb_params, rounds = xgboost_params(params, seed)
    dtrain = xgb.DMatrix(table.X, label=table.y, feature_names=table.feature_names)
    return xgb.train(xgb_params, dtrain, num_boost_round=rounds)


def predict_xgboost(booster: xgb.Booster, table: LocalTable) -> np.ndarray:
    """Positive-class probabilities of shape ``(n_rows,)``."""
    return np.asarray(
        booster.predict(xgb.DMatrix(table.X, feature_names=table.feature_names)),
        dtype=np.float64,
    )


def train_logreg(
    table: LocalTable, params: Mapping[str, Any]
) -> Callable[[LocalTable], np.ndarray]:
    """scikit-learn StandardScaler + LogisticRegression with the job's C and class weights.

    Features are encoded like the federated trainer does (one-hot categories), with missing
    values imputed by this table's own column means (the federated trainer uses the consortium
    means) and categories rarer than the job's ``min_group_rows`` in this table merged.
    Returns a scorer: LocalTable -> probabilities of shape ``(n_rows,)``.
    """
    floor = LOGREG_PARAMETERS.validate(params)["min_group_rows"]
    encoder = DesignEncoder(table.contract, tuple(_column_means(table.X)),
                            Grouping.of_table(table, floor))
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(
            C=float(params.get("C", 1.0)),
            class_weight=params.get("class_weight"),
            tol=1e-8,
            max_iter=1000,
        ),
    )
    model.fit(encoder.encode(table.X), table.y)

    def score(holdout: LocalTable) -> np.ndarray:
        return np.asarray(model.predict_proba(encoder.encode(holdout.X))[:, 1], dtype=np.float64)

    return score


def fit_xgboost(table: LocalTable, params: Mapping[str, Any], seed: int) -> Scorer:
    """The ``gbdt`` kind's baseline: stock XGBoost; returns a scorer."""
    booster = train_xgboost(table, params, seed)
    return lambda holdout: predict_xgboost(booster, holdout)


def fit_logreg(table: LocalTable, params: Mapping[str, Any], seed: int) -> Scorer:
    """The ``logreg`` kind's baseline: scikit-learn (``seed`` unused: the fit is deterministic)."""
    return train_logreg(table, params)


def fit_baseline(kind: str, table: LocalTable, params: Mapping[str, Any], seed: int) -> Scorer:
    """Train the stock-tool counterpart of a job of ``kind`` (its kind's baseline); returns a
    scorer. Raises :class:`~fedtab.errors.ConfigError` for a kind without a baseline."""
    return job_kind(kind).fit_baseline(table, params, seed)


def _column_means(X: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(X), axis=0)
        sums = np.nansum(X, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
