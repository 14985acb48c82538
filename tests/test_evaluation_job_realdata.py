"""The ``evaluate`` job on the real card-fraud table (skipped when ../shared/data is absent):
binned consortium metrics against the exact pooled metrics at a realistic fraud rate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from test_evaluation_job import RANKING, eval_spec

from fedtab.crypto.keys import PrivateKey
from fedtab.data.infer import infer_contract
from fedtab.data.validate import to_local_table
from fedtab.jobs import JobSpec, create_trainer
from fedtab.metrics import evaluate_scores
from fedtab.protocol.local_runner import run_encrypted, run_plaintext
from fedtab.protocol.steps import JobContext
from fedtab.scoring import load_model

NAMES = ("bank_a", "bank_b", "bank_c")


def _data_file() -> Path:
    override = os.environ.get("FEDTAB_SHARED_DATA")
    root = Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / "ulb_creditcard" / "creditcard_union.csv"


@pytest.mark.realdata
def test_card_fraud_consortium_metrics_match_pooled(tmp_path: Path,
                                                    small_private_key: PrivateKey) -> None:
    path = _data_file()
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FEDTAB_SHARED_DATA)")
    frame = pd.read_csv(path).sort_values("Time", kind="stable").reset_index(drop=True)
    contract = infer_contract(frame, "Class")
    fit, test = train_test_split(frame, test_size=0.4, stratify=frame["Class"], random_state=0)
    fits = dict(zip(NAMES, np.array_split(np.arange(len(fit)), 3), strict=True))
    tests = dict(zip(NAMES, np.array_split(np.arange(len(test)), 3), strict=True))
    tables = {b: to_local_table(fit.iloc[rows], contract) for b, rows in fits.items()}
    holdouts = {b: to_local_table(test.iloc[rows], contract) for b, rows in tests.items()}

    params = {"n_estimators": 30, "max_depth": 5, "learning_rate": 0.3, "max_bin": 64}
    gbdt = JobSpec("gbdt", params)
    trainers = {b: create_trainer(gbdt, JobContext("fit", b, NAMES, 0, params), tables[b])
                for b in NAMES}
    model = tmp_path / "model.json"
    model.write_bytes(run_plaintext(trainers).artifacts["model.json"])

    spec = eval_spec(model)
    evaluators = {b: create_trainer(spec, JobContext("ev", b, NAMES, 0, dict(spec.params)),
                                    tables[b], holdout=holdouts[b]) for b in NAMES}
    doc = json.loads(run_encrypted(evaluators, small_private_key).artifacts["evaluation.json"])

    scorer = load_model(model)
    scores = {b: scorer.predict_proba(holdouts[b].X) for b in NAMES}
    for b in NAMES:
        want = evaluate_scores(holdouts[b].y, scores[b])
        for key, value in doc["per_bank"][b].items():
            assert value == pytest.approx(want[key], abs=1e-9), (b, key)
    pooled = evaluate_scores(np.concatenate([holdouts[b].y for b in NAMES]),
                             np.concatenate([scores[b] for b in NAMES]))
    cons = doc["consortium"]
    gaps = {key: abs(cons[key] - pooled[key]) for key in RANKING}
    print(f"card fraud, {pooled['n_rows']} holdout rows, {pooled['n_positive']} frauds; "
          f"pooled {({k: round(pooled[k], 5) for k in RANKING})}; binning gaps {gaps}; "
          f"AUC bound {cons['roc_auc_binning_bound']:.2g}")
    assert cons["n_rows"] == pooled["n_rows"] and cons["n_positive"] == pooled["n_positive"]
    assert cons["brier"] == pytest.approx(pooled["brier"], abs=1e-9)
    assert gaps["roc_auc"] <= cons["roc_auc_binning_bound"] + 1e-12
    assert gaps["roc_auc"] < 1e-3 and gaps["pr_auc"] < 5e-3
    assert gaps["recall_at_fpr_0_001"] < 0.02 and gaps["recall_at_fpr_0_01"] < 0.02
