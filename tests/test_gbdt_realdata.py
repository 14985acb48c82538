"""GBDT on the real card-fraud table (skipped when ../shared/data is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

from fedtab.data.infer import infer_contract
from fedtab.data.validate import to_local_table
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext


def _data_file() -> Path:
    override = os.environ.get("FEDTAB_SHARED_DATA")
    root = Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / "ulb_creditcard" / "creditcard_union.csv"


@pytest.mark.realdata
def test_card_fraud_three_banks_close_to_central_xgboost() -> None:
    path = _data_file()
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FEDTAB_SHARED_DATA)")
    frame = pd.read_csv(path).sort_values("Time", kind="stable").reset_index(drop=True)
    contract = infer_contract(frame, "Class")
    fit, test = train_test_split(frame, test_size=0.25, stratify=frame["Class"], random_state=0)
    parts = np.array_split(np.arange(len(fit)), 3)
    names = ("bank_a", "bank_b", "bank_c")
    params = {"n_estimators": 15, "max_depth": 5, "learning_rate": 0.3, "max_bin": 64}
    banks = {
        name: GBDTTrainer(JobContext("real", name, names, params=params),
                          to_local_table(fit.iloc[rows], contract))
        for name, rows in zip(names, parts, strict=True)
    }
    run_plaintext(banks)
    holdout, pooled = to_local_table(test, contract), to_local_table(fit, contract)
    fed = banks["bank_a"].model().predict_proba(holdout.X)
    reference = xgb.train(
        {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 5, "eta": 0.3,
         "max_bin": 64, "nthread": 1},
        xgb.DMatrix(pooled.X, pooled.y), num_boost_round=15,
    ).predict(xgb.DMatrix(holdout.X))
    assert roc_auc_score(holdout.y, fed) > roc_auc_score(holdout.y, reference) - 0.01
    assert average_precision_score(holdout.y, fed) > (
        average_precision_score(holdout.y, reference) - 0.03
    )
