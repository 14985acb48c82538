"""`fedtab evaluate` and model scoring: figures equal scikit-learn's, errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from fedtab.cli.main import cli
from fedtab.data.contract import DataContract, LocalTable
from fedtab.data.validate import load_table
from fedtab.errors import ConfigError
from fedtab.logreg.model import LogRegModel
from fedtab.scoring import load_model
from fedtab.synthetic import generate_consortium, write_consortium

JSON_KEYS = {"roc_auc", "pr_auc", "recall_at_fpr_0_001", "recall_at_fpr_0_01", "brier",
             "n_rows", "n_positive"}


def train_xgboost(table: LocalTable, path: Path, rounds: int = 25,
                  objective: str = "binary:logistic", contract_attr: bool = True) -> xgb.Booster:
    """A stock-xgboost model on ``table`` saved as JSON with the contract attribute fedtab sets."""
    params = {"objective": objective, "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}
    names = table.contract.feature_names
    booster = xgb.train(params, xgb.DMatrix(table.X, table.y, feature_names=names), rounds)
    if contract_attr:
        booster.set_attr(fedtab_contract=table.contract.to_json())
    booster.save_model(str(path))
    return booster


def train_logreg(table: LocalTable, path: Path) -> LogRegModel:
    """Fit scikit-learn on fedtab's logreg design matrix and write fedtab's logreg model.json."""
    contract = table.contract
    probe = LogRegModel(contract, np.zeros(1), np.ones(1), np.zeros(1), 0.0)
    d = len(probe.encoded_features)
    # Impute with the column means (the model imputes a numeric feature with its mean).
    zero = LogRegModel(contract, np.zeros(d), np.ones(d), np.zeros(d), 0.0)
    numeric = np.array([f.kind == "numeric" for f in contract.features])
    fill = np.where(numeric, np.nanmean(table.X, axis=0), np.nan)
    raw = zero.encode(np.where(np.isnan(table.X), fill, table.X))
    mean, scale = raw.mean(axis=0), raw.std(axis=0)
    scale[scale == 0] = 1.0
    fitted = LogisticRegression(C=1.0, max_iter=2000).fit((raw - mean) / scale, table.y)
    doc = {
        "kind": "logreg",
        "features": contract.feature_names,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": fitted.coef_[0].tolist(),
        "intercept": float(fitted.intercept_[0]),
        "params": {"C": 1.0},
        "contract": contract.to_dict(),
    }
    path.write_text(json.dumps(doc))
    return LogRegModel.load(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    write_consortium(generate_consortium(3, 20_000, seed=4), data)
    contract = DataContract.load(data / "contract.json")
    metro = load_table(data / "metro_bank" / "train.csv", contract)
    rural = load_table(data / "rural_bank" / "train.csv", contract)
    train_xgboost(metro, root / "metro.json")
    train_xgboost(rural, root / "rural.json")
    train_logreg(metro, root / "logreg.json")
    return {"root": root, "data": data, "holdout": data / "metro_bank" / "holdout.csv",
            "metro": root / "metro.json", "rural": root / "rural.json",
            "logreg": root / "logreg.json"}


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["evaluate", *map(str, args)])
    return result.exit_code, result.output


def _expected(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "roc_auc": roc_auc_score(y, s),
        "pr_auc": average_precision_score(y, s),
        "brier": brier_score_loss(y, s),
        "recall_at_fpr_0_001": float(tpr[fpr <= 0.001].max()),
        "recall_at_fpr_0_01": float(tpr[fpr <= 0.01].max()),
    }


def test_xgboost_scores_equal_stock_booster(world: dict[str, Path]) -> None:
    model = load_model(world["metro"])
    assert model.kind == "xgboost"
    assert model.contract == DataContract.load(world["data"] / "contract.json")
    holdout = load_table(world["holdout"], model.contract)
    booster = xgb.Booster(model_file=str(world["metro"]))
    expected = booster.predict(xgb.DMatrix(holdout.X, feature_names=model.contract.feature_names))
    np.testing.assert_allclose(model.score_frame(pd.read_csv(world["holdout"])), expected,
                               rtol=0, atol=1e-7)


def test_json_figures_equal_scikit_learn_with_baseline(world: dict[str, Path]) -> None:
    code, out = _run("--model", world["metro"], "--data", world["holdout"], "--label",
                     "is_fraud", "--baseline", world["rural"], "--json")
    assert code == 0, out
    doc = json.loads(out)  # exactly one JSON object
    assert set(doc) >= JSON_KEYS
    assert set(doc["baseline"]) >= JSON_KEYS
    holdout = load_table(world["holdout"], load_model(world["metro"]).contract)
    for report, path in ((doc, world["metro"]), (doc["baseline"], world["rural"])):
        booster = xgb.Booster(model_file=str(path))
        scores = booster.predict(xgb.DMatrix(holdout.X, feature_names=holdout.feature_names))
        for key, value in _expected(holdout.y, scores).items():
            assert report[key] == pytest.approx(value, abs=1e-9), key
        assert report["n_rows"] == holdout.n_rows
        assert report["n_positive"] == int(holdout.y.sum())
        assert report["model"] == str(path)
    # The rural bank's model misses metro_bank's card-testing fraud.
    assert doc["pr_auc"] > doc["baseline"]["pr_auc"]


def test_logreg_model_json(world: dict[str, Path]) -> None:
    code, out = _run("--model", world["logreg"], "--data", world["holdout"], "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["model_kind"] == "logreg" and doc["label"] == "is_fraud"
    model = LogRegModel.load(world["logreg"])
    holdout = load_table(world["holdout"], model.contract)
    scores = model.predict_proba(holdout.X)
    for key, value in _expected(holdout.y, scores).items():
        assert doc[key] == pytest.approx(value, abs=1e-9), key
    # ...and equal to scikit-learn's own pipeline rebuilt from the model file.
    pipeline = model.to_sklearn_pipeline()
    np.testing.assert_allclose(pipeline.predict_proba(holdout.X)[:, 1], scores, atol=1e-9)


def test_table_output_shows_model_and_baseline(world: dict[str, Path], tmp_path: Path) -> None:
    code, out = _run("--model", world["metro"], "--data", world["holdout"],
                     "--baseline", world["logreg"], "--report", tmp_path / "rep")
    assert code == 0, out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "model", "baseline"]
    assert any(line.startswith("ROC-AUC") and len(line.split()) == 3 for line in out.splitlines())
    assert (tmp_path / "rep" / "report.html").is_file()
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"report.html", "roc.png", "pr.png"}


def _bad_holdouts(world: dict[str, Path], tmp: Path) -> dict[str, Path]:
    frame = pd.read_csv(world["holdout"])
    out = {}
    out["single_class"] = tmp / "legit.csv"
    frame[frame["is_fraud"] == 0].to_csv(out["single_class"], index=False)
    out["unknown_category"] = tmp / "unknown.csv"
    bad = frame.copy()
    bad.loc[3, "channel"] = "telepathy"
    bad.to_csv(out["unknown_category"], index=False)
    out["no_label"] = tmp / "nolabel.csv"
    frame.drop(columns=["is_fraud"]).to_csv(out["no_label"], index=False)
    out["text_in_numbers"] = tmp / "text.csv"
    bad = frame.astype({"amount": object})
    bad.loc[5, "amount"] = "12,50"
    bad.to_csv(out["text_in_numbers"], index=False)
    out["label_2"] = tmp / "label2.csv"
    frame.assign(flag=[0, 2] + [1] * (len(frame) - 2)).to_csv(out["label_2"], index=False)
    return out


def test_bad_inputs_fail_with_one_line(world: dict[str, Path], tmp_path: Path) -> None:
    holdouts = _bad_holdouts(world, tmp_path)
    no_attr = tmp_path / "no_attr.json"
    table = load_table(world["holdout"], load_model(world["metro"]).contract)
    train_xgboost(table, no_attr, rounds=2, contract_attr=False)
    regression = tmp_path / "regression.json"
    train_xgboost(table, regression, rounds=2, objective="reg:squarederror")
    not_json = tmp_path / "model.json"
    not_json.write_text("{ not json")
    metro, data = world["metro"], world["holdout"]
    cases = [
        (["--model", tmp_path / "missing.json", "--data", world["holdout"]], "not found", 2),
        (["--model", not_json, "--data", world["holdout"]], "not a JSON model", 2),
        (["--model", no_attr, "--data", world["holdout"]], "fedtab_contract", 2),
        (["--model", regression, "--data", world["holdout"]], "probabilities", 2),
        (["--model", world["metro"], "--data", tmp_path / "none.csv"], "not found", 5),
        (["--model", world["metro"], "--data", holdouts["single_class"]], "single class", 5),
        (["--model", metro, "--data", holdouts["unknown_category"]], "'channel', row 4", 5),
        (["--model", world["metro"], "--data", holdouts["no_label"]], "'is_fraud'", 5),
        (["--model", metro, "--data", holdouts["text_in_numbers"]], "'amount', row 6", 5),
        (["--model", metro, "--data", data, "--label", "channel"],
         "also a feature", 5),
        (["--model", world["metro"], "--data", holdouts["label_2"], "--label", "flag"],
         "'flag', row 2: label 2 is not 0 or 1", 5),
        (["--model", metro, "--data", data, "--baseline", not_json],
         "not a JSON model", 2),
    ]
    for args, needle, exit_code in cases:
        code, out = _run(*args, "--json")
        assert code == exit_code, (args, out)
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, out)
        assert needle in lines[0], (args, lines[0])


def test_load_model_rejects_other_json(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"kind": "forest"}))
    with pytest.raises(ConfigError, match="neither"):
        load_model(path)
    path.write_text(json.dumps({"kind": "logreg", "contract": {"bad": 1}}))
    with pytest.raises(ConfigError, match="invalid logreg model"):
        load_model(path)


def test_metrics_come_with_intervals_and_a_paired_difference(
    world: dict[str, Path], tmp_path: Path
) -> None:
    code, out = _run("--model", world["metro"], "--data", world["holdout"], "--baseline",
                     world["rural"], "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["bootstrap"]["resamples"] == 1000 and doc["bootstrap"]["confidence"] == 0.95
    for key in ("pr_auc", "roc_auc", "recall_at_fpr_0_01"):
        for figures in (doc, doc["baseline"]):
            low, high = figures["intervals"][key]
            assert low <= figures[key] <= high
        difference = doc["model_vs_baseline"][key]
        assert difference["difference"] == pytest.approx(doc[key] - doc["baseline"][key])
        low, high = difference["interval"]
        assert difference["clear"] == (low > 0 or high < 0)
    assert (doc["warning"] is None) == (doc["n_positive"] >= 30)
    # the same in the table and the HTML report
    code, out = _run("--model", world["metro"], "--data", world["holdout"], "--baseline",
                     world["rural"], "--report", tmp_path / "rep")
    assert code == 0, out
    lines = out.splitlines()
    pr_row = next(i for i, line in enumerate(lines) if line.startswith("PR-AUC"))
    low, high = doc["intervals"]["pr_auc"]
    assert lines[pr_row + 1].split()[:3] == ["95%", "interval", f"[{low:.3f},"]
    assert any(line.startswith("model - baseline: PR-AUC ") for line in lines)
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "95% interval" in page and "model - baseline: PR-AUC" in page
    assert f"{doc['n_rows']} rows, {doc['n_positive']} frauds" in page


def test_few_frauds_warning(world: dict[str, Path], tmp_path: Path) -> None:
    frame = pd.read_csv(world["holdout"])
    frauds = frame.index[frame["is_fraud"] == 1]
    small = tmp_path / "small.csv"
    frame.drop(index=frauds[4:]).to_csv(small, index=False)
    code, out = _run("--model", world["metro"], "--data", small)
    assert code == 0, out
    assert "warning: only 4 frauds in the holdout (< 30)" in out
    code, out = _run("--model", world["metro"], "--data", small, "--json")
    assert json.loads(out)["warning"].startswith("only 4 frauds")
