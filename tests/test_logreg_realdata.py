"""Federated logistic regression on the FATE horizontal split of the Taiwan credit-default data.

Three banks (``default_credit_homo_{guest,host_1,host_2}``), encrypted secure sums; the result
must equal scikit-learn fitted on the pooled, identically standardised rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from fedtab.crypto.keys import PrivateKey
from fedtab.data.contract import LocalTable
from fedtab.data.infer import infer_contract
from fedtab.data.validate import to_local_table
from fedtab.logreg.model import LogRegModel
from fedtab.logreg.trainer import LogRegTrainer
from fedtab.protocol.local_runner import run_encrypted
from fedtab.protocol.steps import JobContext

pytestmark = pytest.mark.realdata
PARTS = ("guest", "host_1", "host_2")


def taiwan_folder() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("FEDTAB_SHARED_DATA", default)) / "credit_default_taiwan"


@pytest.fixture(scope="module")
def taiwan() -> tuple[dict[str, LocalTable], LocalTable]:
    folder = taiwan_folder()
    if not (folder / "default_credit_homo_guest.csv").is_file():
        pytest.skip(f"real data folder {folder} is absent (set FEDTAB_SHARED_DATA)")
    frames = {p: pd.read_csv(folder / f"default_credit_homo_{p}.csv") for p in PARTS}
    contract = infer_contract(frames["guest"], label="y", id_column="id")
    tables = {p: to_local_table(df, contract) for p, df in frames.items()}
    holdout = to_local_table(pd.read_csv(folder / "default_credit_homo_test.csv"), contract)
    return tables, holdout


def train(tables: dict[str, LocalTable], params: dict[str, Any], key: PrivateKey) -> bytes:
    names = tuple(sorted(tables))
    trainers = {
        p: LogRegTrainer(JobContext("taiwan-lr", p, names, 0, params), t) for p, t in tables.items()
    }
    return run_encrypted(trainers, key).artifacts["model.json"]


def check_equal_to_sklearn(
    model_json: bytes, tables: dict[str, LocalTable], holdout: LocalTable, C: float,
    class_weight: str | None,
) -> None:
    X = np.vstack([t.X for t in tables.values()])
    y = np.concatenate([t.y for t in tables.values()])
    scaler = StandardScaler().fit(X)
    reference = LogisticRegression(C=C, tol=1e-8, max_iter=10_000, class_weight=class_weight)
    reference.fit(scaler.transform(X), y)
    model = LogRegModel.from_json(model_json)
    doc = json.loads(model_json)
    assert doc["converged"] and doc["features"] == [f"x{i}" for i in range(23)]
    np.testing.assert_allclose(model.mean, scaler.mean_, atol=1e-10)
    np.testing.assert_allclose(model.scale, scaler.scale_, rtol=1e-9)
    np.testing.assert_allclose(model.coef, reference.coef_[0], atol=1e-4)
    assert model.intercept == pytest.approx(reference.intercept_[0], abs=1e-4)
    ours = roc_auc_score(holdout.y, model.predict_proba(holdout.X))
    theirs = roc_auc_score(holdout.y, reference.predict_proba(scaler.transform(holdout.X))[:, 1])
    assert ours == pytest.approx(theirs, abs=1e-4)
    assert ours > 0.7  # the data carry signal: a broken model would sit near 0.5
    pipeline = model.to_sklearn_pipeline()
    np.testing.assert_allclose(
        pipeline.predict_proba(holdout.X)[:, 1], model.predict_proba(holdout.X), atol=1e-12
    )


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_taiwan_federated_equals_sklearn(
    taiwan: tuple[dict[str, LocalTable], LocalTable],
    small_private_key: PrivateKey,
    class_weight: str | None,
) -> None:
    tables, holdout = taiwan
    params: dict[str, Any] = {"C": 1.0}
    if class_weight is not None:
        params["class_weight"] = class_weight
    model_json = train(tables, params, small_private_key)
    check_equal_to_sklearn(model_json, tables, holdout, 1.0, class_weight)


@pytest.mark.slow
def test_taiwan_federated_equals_sklearn_2048_bit_key(
    taiwan: tuple[dict[str, LocalTable], LocalTable], private_key_2048: PrivateKey
) -> None:
    tables, holdout = taiwan
    model_json = train(tables, {"C": 0.1}, private_key_2048)
    check_equal_to_sklearn(model_json, tables, holdout, 0.1, None)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_ulb_time_split_federated_equals_sklearn(
    small_private_key: PrivateKey, class_weight: str | None
) -> None:
    """Card fraud split by contiguous Time ranges: heavy tails and rare positives."""
    path = taiwan_folder().parent / "ulb_creditcard" / "creditcard_union.csv"
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (set FEDTAB_SHARED_DATA)")
    frame = pd.read_csv(path).sort_values("Time", kind="stable")
    bounds = np.linspace(0, len(frame), 4).astype(int)
    parts = {p: frame.iloc[bounds[i] : bounds[i + 1]] for i, p in enumerate(PARTS)}
    contract = infer_contract(frame, label="Class")
    tables = {p: to_local_table(df, contract) for p, df in parts.items()}
    params: dict[str, Any] = {"C": 0.5}
    if class_weight is not None:
        params["class_weight"] = class_weight
    model = LogRegModel.from_json(train(tables, params, small_private_key))
    X = np.vstack([t.X for t in tables.values()])
    y = np.concatenate([t.y for t in tables.values()])
    scaler = StandardScaler().fit(X)
    reference = LogisticRegression(C=0.5, class_weight=class_weight, tol=1e-10,
                                   solver="newton-cholesky", max_iter=100)
    reference.fit(scaler.transform(X), y)
    np.testing.assert_allclose(model.coef, reference.coef_[0], atol=1e-6)
    assert model.intercept == pytest.approx(reference.intercept_[0], abs=1e-6)
