"""A federated model with categorical features, scored by stock XGBoost the natural ways.

Real xgboost, plaintext training (the model is the same with or without encryption). The
contract's category order is deliberately not alphabetical, so a pandas ``category`` column in
its default (sorted) order has different codes than the model's: XGBoost must re-code it by
name (categories recorded in the model) or refuse, never silently score it differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.errors import ConfigError, DataContractError
from fedtab.gbdt.export import fmt_f32
from fedtab.gbdt.model import GBDTModel
from fedtab.gbdt.predict import contract_frame, holdout_frame, predict, to_dmatrix
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext
from fedtab.scoring import load_model

CHANNELS = ("web", "atm", "wire", "pos")
MCC = ("z_gaming", "cash", "groceries")
PARAMS = {"n_estimators": 8, "max_depth": 3, "max_bin": 16, "learning_rate": 0.3,
          "min_child_samples": 10}


def _contract() -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", lower=0.0, upper=1000.0),
            FeatureSpec("channel", "categorical", categories=CHANNELS, nullable=False),
            FeatureSpec("mcc", "categorical", categories=MCC),
        ),
        label="fraud",
    )


def _table(n: int, seed: int) -> LocalTable:
    rng = np.random.default_rng(seed)
    X = np.column_stack([
        rng.uniform(0, 1000, n),
        rng.integers(0, len(CHANNELS), n).astype(float),
        rng.integers(0, len(MCC), n).astype(float),
    ])
    X[rng.random(n) < 0.1, 2] = np.nan
    logit = -2.0 + 2.5 * (X[:, 1] == 0) - 1.5 * (X[:, 1] == 3) + 1.2 * (X[:, 2] == 0)
    logit += X[:, 0] / 500
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return LocalTable(_contract(), X, y)


def _raw(table: LocalTable) -> pd.DataFrame:
    """The table as a bank's CSV holds it: categories as text, missing as None."""
    def names(codes: np.ndarray, cats: tuple[str, ...]) -> list[str | None]:
        return [None if np.isnan(c) else cats[int(c)] for c in codes]

    return pd.DataFrame({
        "fraud": table.y.astype(int),
        "amount": table.X[:, 0],
        "mcc": names(table.X[:, 2], MCC),
        "channel": names(table.X[:, 1], CHANNELS),
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GBDTModel]:
    table = _table(3000, seed=1)
    names = ("bank_a", "bank_b")
    halves = {"bank_a": slice(0, 1800), "bank_b": slice(1800, 3000)}
    banks = {
        name: GBDTTrainer(
            JobContext("job-cat", name, names, seed=3, params=dict(PARAMS)),
            LocalTable(table.contract, table.X[halves[name]], table.y[halves[name]]),
        )
        for name in names
    }
    outcome = run_plaintext(banks)
    path = tmp_path_factory.mktemp("model") / "model.json"
    path.write_bytes(outcome.artifacts["model.json"])
    return path, banks["bank_a"].model()


@pytest.fixture(scope="module")
def holdout() -> LocalTable:
    return _table(1500, seed=2)


def test_model_declares_categorical_features(trained: tuple[Path, GBDTModel]) -> None:
    path, _ = trained
    learner = json.loads(path.read_bytes())["learner"]
    assert learner["feature_types"] == ["q", "c", "c"]
    trees = learner["gradient_booster"]["model"]["trees"]
    assert any(1 in tree["split_type"] for tree in trees)
    meta = json.loads(learner["attributes"]["fedtab"])
    assert "split numerically" not in meta["categorical_encoding"]
    booster = xgb.Booster(model_file=str(path))
    assert booster.feature_types == ["q", "c", "c"]


def test_fedtab_helper_scores_raw_holdout(
    trained: tuple[Path, GBDTModel], holdout: LocalTable, tmp_path: Path
) -> None:
    path, model = trained
    expected = model.predict_proba(holdout.X)
    raw = _raw(holdout)
    np.testing.assert_allclose(predict(path, raw), expected, atol=1e-6)
    csv = tmp_path / "holdout.csv"
    raw.to_csv(csv, index=False)
    booster = xgb.Booster(model_file=str(path))
    np.testing.assert_allclose(predict(booster, csv), expected, atol=1e-6)
    np.testing.assert_allclose(booster.predict(to_dmatrix(booster, csv)), expected, atol=1e-6)
    # fedtab evaluate's path (contract codes as numbers) scores the same
    np.testing.assert_allclose(load_model(path).score_frame(raw), expected, atol=1e-6)


@pytest.mark.parametrize("order", ["contract", "reversed", "pandas default"])
def test_pandas_category_columns_score_like_fedtab(
    trained: tuple[Path, GBDTModel], holdout: LocalTable, order: str
) -> None:
    path, model = trained
    raw = _raw(holdout)[["amount", "channel", "mcc"]]
    for column, cats in (("channel", CHANNELS), ("mcc", MCC)):
        if order == "contract":
            raw[column] = pd.Categorical(raw[column], categories=list(cats))
        elif order == "reversed":
            raw[column] = pd.Categorical(raw[column], categories=list(cats)[::-1])
        else:
            raw[column] = raw[column].astype("category")
    if order == "pandas default":
        assert list(raw["channel"].cat.categories) != list(CHANNELS)
    booster = xgb.Booster(model_file=str(path))
    scores = booster.predict(xgb.DMatrix(raw, enable_categorical=True))
    np.testing.assert_allclose(scores, model.predict_proba(holdout.X), atol=1e-6)


def test_subset_of_categories_in_the_holdout_scores_like_fedtab(
    trained: tuple[Path, GBDTModel], holdout: LocalTable
) -> None:
    path, model = trained
    keep = holdout.X[:, 1] != 0  # no 'web' rows: the dtype's codes all shift
    rows = LocalTable(holdout.contract, holdout.X[keep], holdout.y[keep])
    raw = _raw(rows)[["amount", "channel", "mcc"]].astype({"channel": "category",
                                                            "mcc": "category"})
    booster = xgb.Booster(model_file=str(path))
    scores = booster.predict(xgb.DMatrix(raw, enable_categorical=True))
    np.testing.assert_allclose(scores, model.predict_proba(rows.X), atol=1e-6)


def test_wrong_inputs_fail_loudly(trained: tuple[Path, GBDTModel], holdout: LocalTable) -> None:
    path, _ = trained
    booster = xgb.Booster(model_file=str(path))
    raw = _raw(holdout)[["amount", "channel", "mcc"]]
    # raw text columns: xgboost refuses them (use fedtab.gbdt.predict)
    with pytest.raises(ValueError, match="category"):
        booster.predict(xgb.DMatrix(raw, enable_categorical=True))
    typed = raw.astype({"channel": "category", "mcc": "category"})
    # columns out of the contract's order
    with pytest.raises(ValueError, match="feature_names mismatch"):
        booster.predict(xgb.DMatrix(typed[["amount", "mcc", "channel"]], enable_categorical=True))
    # a category the model never saw: XGBoost 3.2 refuses one that sorts after every known
    # name, but maps others (here 'branch') to a neighbour without a word; the helper refuses
    unseen = typed.assign(channel=pd.Categorical(["zz_branch"] * len(raw)))
    with pytest.raises(xgb.core.XGBoostError, match="not in the training set"):
        booster.predict(xgb.DMatrix(unseen, enable_categorical=True))
    unseen = typed.assign(channel=pd.Categorical(["branch"] * len(raw)))
    with pytest.raises(DataContractError, match="'channel', row 1: value 'branch'"):
        predict(booster, unseen.astype({"channel": str}))
    # continuing training on bare numbers is refused, on the helper's frame it works
    y = holdout.y
    with pytest.raises(xgb.core.XGBoostError, match="categorical"):
        xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(holdout.X, y,
                  feature_names=holdout.feature_names), 1, xgb_model=booster)
    dtrain = xgb.DMatrix(contract_frame(holdout.X, holdout.contract), y, enable_categorical=True)
    assert xgb.train({"objective": "binary:logistic"}, dtrain, 2,
                     xgb_model=booster).num_boosted_rounds() == PARAMS["n_estimators"] + 2


def test_helper_needs_a_fedtab_model(holdout: LocalTable) -> None:
    plain = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(holdout.X, holdout.y), 1)
    with pytest.raises(ConfigError, match="fedtab_contract"):
        predict(plain, _raw(holdout))


def test_holdout_frame_uses_contract_categories(holdout: LocalTable) -> None:
    frame = holdout_frame(_raw(holdout), holdout.contract)
    assert list(frame.columns) == ["amount", "channel", "mcc"]
    assert list(frame["channel"].cat.categories) == list(CHANNELS)
    np.testing.assert_array_equal(frame["channel"].cat.codes, holdout.X[:, 1])
    assert frame["mcc"].isna().sum() == np.isnan(holdout.X[:, 2]).sum()


@pytest.mark.parametrize("value", [0.5, 0.009641747, 0.417, 1e-7, 0.123456789, 0.1, 3e-45])
def test_base_score_is_written_with_the_shortest_float32_digits(value: float) -> None:
    """XGBoost 2.1 reads a parameter string of 10 significant digits as 0.5 (silently); the
    shortest float32 round-trip digits (at most 9) read back exactly in 2.1 and 3.x."""
    text = fmt_f32(value)
    assert np.float32(float(text)) == np.float32(value)
    mantissa = text.split("E")[0].replace(".", "").lstrip("-")
    assert len(mantissa) <= 9 and "E+" not in text


def test_stock_xgboost_reads_the_base_score(trained: tuple[Path, GBDTModel]) -> None:
    path, model = trained
    booster = xgb.Booster(model_file=str(path))
    config = json.loads(booster.save_config())["learner"]["learner_model_param"]
    assert np.float32(float(config["base_score"].strip("[]"))) == np.float32(model.base_score)
