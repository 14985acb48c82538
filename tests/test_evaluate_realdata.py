"""`fedtab evaluate` on real card-fraud rows (ULB credit-card data): figures equal scikit-learn's.

Skips when ../shared/data is absent (a fresh machine); set FEDTAB_SHARED_DATA to point at it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from click.testing import CliRunner
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from fedtab.cli.main import cli
from fedtab.data.infer import infer_contract
from fedtab.data.tables import read_table
from fedtab.data.validate import load_table

pytestmark = pytest.mark.realdata


def _creditcard() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get("FEDTAB_SHARED_DATA", default)) / "ulb_creditcard"
    path = path / "creditcard_union.csv"
    if not path.is_file():
        pytest.skip(f"real data not found at {path} (set FEDTAB_SHARED_DATA to ../shared/data)")
    return path


def test_evaluate_on_real_card_fraud(tmp_path: Path) -> None:
    frame = read_table(_creditcard())
    rng = np.random.default_rng(0)
    holdout_rows = rng.random(len(frame)) < 0.3
    train, holdout = frame[~holdout_rows], frame[holdout_rows]
    contract = infer_contract(train, label="Class")
    train.to_csv(tmp_path / "train.csv", index=False)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    table = load_table(tmp_path / "train.csv", contract)
    names = contract.feature_names
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(table.X, table.y, feature_names=names), 30)
    booster.set_attr(fedtab_contract=contract.to_json())
    booster.save_model(str(tmp_path / "model.json"))

    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "model.json"),
                                      "--data", str(tmp_path / "holdout.csv"), "--label",
                                      "Class", "--json", "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    test = load_table(tmp_path / "holdout.csv", contract)
    scores = booster.predict(xgb.DMatrix(test.X, feature_names=names))
    fpr, tpr, _ = roc_curve(test.y, scores)
    assert doc["roc_auc"] == pytest.approx(roc_auc_score(test.y, scores), abs=1e-9)
    assert doc["pr_auc"] == pytest.approx(average_precision_score(test.y, scores), abs=1e-9)
    assert doc["brier"] == pytest.approx(brier_score_loss(test.y, scores), abs=1e-9)
    assert doc["recall_at_fpr_0_001"] == pytest.approx(tpr[fpr <= 0.001].max(), abs=1e-12)
    assert doc["recall_at_fpr_0_01"] == pytest.approx(tpr[fpr <= 0.01].max(), abs=1e-12)
    assert doc["n_positive"] == int(test.y.sum()) > 100
    assert doc["roc_auc"] > 0.95  # real fraud is learnable from these PCA features
    assert (tmp_path / "report" / "report.html").is_file()
