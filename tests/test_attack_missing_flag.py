"""Issue 11, item 2 for gbdt: the ``has_missing`` flag at one row's granularity.

The attacker is the aggregator or the operator: the bins proposal carries ``has_missing`` per
feature, and ``model.json`` the default directions. Under the old rule (``GBDTTrainer(...,
weakened_missing=True)``, the positive control) one missing value anywhere in the consortium
sets the flag: the attacker learns that some bank holds a row without that value. Fixed
(:mod:`fedtab.gbdt.binning`): a feature needs at least ``min_child_samples`` missing values for
a missing bucket; fewer are folded into its last bin, so every committed proposal and the model
file are byte for byte those of the same rows with the value set to the feature's largest one.
The folded rows go right at every split, as stock XGBoost sends a missing value of such a
feature (``default_left = 0``), so the model predicts them the same way in both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.gbdt.central import train_central
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import JobOutcome, run_plaintext
from fedtab.protocol.steps import JobContext

BANKS = ("bank_a", "bank_b", "bank_c")
FLOOR = 20
PARAMS = {"n_estimators": 4, "max_depth": 3, "max_bin": 16, "min_child_samples": FLOOR}
CONTRACT = DataContract(
    features=(FeatureSpec("amount", "numeric", lower=0.0, upper=100.0, nullable=True),
              FeatureSpec("x1", "numeric", lower=-5.0, upper=5.0, nullable=False)),
    label="fraud",
)


def make_tables(missing: dict[str, int]) -> dict[str, LocalTable]:
    """100 rows per bank, frauds mostly at large ``amount``; ``missing[bank]`` rows of that
    bank have ``amount`` missing."""
    rng = np.random.default_rng(11)
    tables = {}
    for bank in BANKS:
        amount = rng.uniform(0.0, 100.0, 100)
        x1 = rng.normal(size=100)
        y = (rng.random(100) < np.where(amount > 70.0, 0.6, 0.05)).astype(float)
        amount[: missing.get(bank, 0)] = np.nan
        tables[bank] = LocalTable(CONTRACT, np.column_stack([amount, x1]), y)
    return tables


def imputed(tables: dict[str, LocalTable]) -> dict[str, LocalTable]:
    """The same rows with every missing ``amount`` set to the consortium's largest one."""
    largest = max(float(np.nanmax(t.X[:, 0])) for t in tables.values())
    out = {}
    for bank, table in tables.items():
        X = table.X.copy()
        X[np.isnan(X[:, 0]), 0] = largest
        out[bank] = LocalTable(CONTRACT, X, table.y)
    return out


def run(tables: dict[str, LocalTable], *, weakened: bool = False) -> JobOutcome:
    trainers = {b: GBDTTrainer(JobContext("miss", b, BANKS, seed=3, params=PARAMS), tables[b],
                               weakened_missing=weakened) for b in BANKS}
    return run_plaintext(trainers)


def flags(outcome: JobOutcome) -> list[bool]:
    return [bool(f) for f in dict((r.step_id, p) for r, p in outcome.commits)["bins"]
            ["has_missing"]]


def test_one_missing_value_sets_the_flag_under_the_old_rule_positive_control() -> None:
    one = run(make_tables({"bank_c": 1}), weakened=True)
    none = run(imputed(make_tables({"bank_c": 1})), weakened=True)
    assert flags(one) == [True, False] and flags(none) == [False, False]


@pytest.mark.parametrize("missing", [{"bank_c": 1}, {"bank_a": 1, "bank_b": FLOOR - 3}])
def test_fewer_missing_values_than_the_floor_release_nothing(missing: dict[str, int]) -> None:
    tables = make_tables(missing)
    with_missing, without = run(tables), run(imputed(tables))
    assert flags(with_missing) == [False, False]
    assert with_missing.commits == without.commits
    assert with_missing.artifacts == without.artifacts
    model = json.loads(with_missing.artifacts["model.json"])
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    on_amount = [t["default_left"][i] for t in trees for i, f in enumerate(t["split_indices"])
                 if t["left_children"][i] >= 0 and f == 0]
    assert on_amount and not any(on_amount)  # amount is split on; missing goes right


def test_as_many_missing_values_as_the_floor_get_a_bucket() -> None:
    assert flags(run(make_tables({"bank_b": FLOOR}))) == [True, False]
    assert flags(run(make_tables({"bank_a": FLOOR - 1, "bank_c": 1}))) == [True, False]


def test_folded_rows_train_as_centrally_and_predict_as_stock_xgboost(tmp_path: Path) -> None:
    tables = make_tables({"bank_a": 2, "bank_c": 1})
    trainers = {b: GBDTTrainer(JobContext("miss", b, BANKS, seed=3, params=PARAMS), tables[b])
                for b in BANKS}
    outcome = run_plaintext(trainers)
    pooled = LocalTable(CONTRACT, np.vstack([t.X for t in tables.values()]),
                        np.concatenate([t.y for t in tables.values()]))
    _, central = train_central(pooled, PARAMS, seed=3, job_id="miss")
    fed = json.loads(outcome.artifacts["model.json"])["learner"]["gradient_booster"]
    assert fed == json.loads(central)["learner"]["gradient_booster"]
    # the bank's training margins (folded rows in the last bin) are the model's predictions
    model = trainers["bank_a"].model()
    np.testing.assert_allclose(trainers["bank_a"].train_margin,
                               model.predict_margin(tables["bank_a"].X), rtol=0, atol=1e-9)
    path = tmp_path / "model.json"
    path.write_bytes(outcome.artifacts["model.json"])
    booster = xgb.Booster(model_file=str(path))
    dmatrix = xgb.DMatrix(pooled.X, feature_names=list(pooled.feature_names))
    np.testing.assert_allclose(booster.predict(dmatrix), model.predict_proba(pooled.X),
                               rtol=1e-5, atol=1e-6)
