"""The Python API (``fedtab.api``): jobs on a real consortium, models on raw DataFrames,
evaluation, the README's notebook example end to end, doctests, ``fedtab --version``.

Models come from real jobs (1024-bit Paillier keys, mutual TLS gRPC on loopback, the
harness's in-process consortium); the simulation runs real processes.
"""

from __future__ import annotations

import doctest
import importlib
import json
import pickle
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from click.testing import CliRunner
from harness import (
    REPO,
    InProcessConsortium,
    local_reference,
    make_frames,
    new_consortium,
    write_tables,
)
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

import fedtab
from fedtab.api import Model, evaluate, load_model, run_job, simulate, simulation_job
from fedtab.cli.main import cli
from fedtab.data.validate import load_table
from fedtab.errors import ConfigError, DataContractError
from fedtab.gbdt.predict import predict as gbdt_predict
from fedtab.jobs import JobSpec
from fedtab.logreg.model import LogRegModel

GBDT = {"n_estimators": 3, "max_depth": 3, "max_bin": 16, "learning_rate": 0.3}
API_MODULES = ("fedtab.api", "fedtab.api.evaluation", "fedtab.api.examples", "fedtab.api.jobs",
               "fedtab.api.models", "fedtab.api.simulation")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A logreg and a gbdt job run with :func:`run_job` on one in-process consortium."""
    root = tmp_path_factory.mktemp("api")
    frames = make_frames()
    contract, tables = write_tables(root / "data", frames)
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    results, seen, notes = {}, [], []
    with InProcessConsortium(consortium, tables) as cons:
        for kind, params in (("logreg", {"C": 1.0}), ("gbdt", GBDT)):
            job = {"job": {"kind": kind, "seed": 3}, "params": params}
            results[kind] = run_job(consortium / "operator", job, out=root / f"out-{kind}",
                                    aggregator=cons.address, timeout=300,
                                    progress=seen.append, say=notes.append)
    return {"root": root, "frames": frames, "tables": tables, "consortium": consortium,
            "contract": contract, "results": results, "seen": seen, "notes": notes}


def test_run_job_writes_the_artifacts_of_the_job(trained: dict[str, Any]) -> None:
    for kind in ("logreg", "gbdt"):
        result = trained["results"][kind]
        out = trained["root"] / f"out-{kind}"
        assert result.paths == [out / "model.json"]
        assert (out / "model.json").read_bytes() == result.artifacts["model.json"]
        assert result.status.state == "done" and result.spec.kind == kind
        assert result.seconds > 0
        # The same job through the in-memory runner with real encryption: identical bytes.
        reference = local_reference(trained["consortium"], trained["tables"], result.spec,
                                    result.job_id)
        assert result.artifacts == reference
    assert any(line.startswith("submitted logreg job ") for line in trained["notes"])
    assert [s.state for s in trained["seen"]].count("done") == 2
    with pytest.raises(ConfigError, match=r"no artifact 'result\.json'"):
        trained["results"]["gbdt"].json("result.json")


def test_run_job_refuses_a_bad_job_before_connecting(trained: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="did you mean 'n_estimators'"):
        run_job(trained["consortium"] / "operator",
                {"job": {"kind": "gbdt"}, "params": {"n_estimator": 3}},
                aggregator="127.0.0.1:9")


def _raw(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a notebook has it: columns shuffled, categories as a pandas category
    column in another order, the label and an extra column left in."""
    raw = frame[["y", "channel", "age", "amount"]].copy()
    raw["channel"] = pd.Categorical(raw["channel"], categories=["web", "pos", "atm"])
    raw["note"] = "extra"
    return raw


def test_logreg_model_predicts_raw_frames_like_fedtab(trained: dict[str, Any]) -> None:
    result = trained["results"]["logreg"]
    model = load_model(result.paths[0])
    assert model.kind == "logreg" and model.feature_names == ["amount", "age", "channel"]
    own = LogRegModel.from_json(result.artifacts["model.json"])
    for bank, path in trained["tables"].items():
        table = load_table(path, trained["contract"])  # how the banks encode their rows
        expected = own.predict_proba(table.X)
        raw = _raw(trained["frames"][bank])
        np.testing.assert_allclose(model.predict(raw), expected, rtol=0, atol=1e-12)
        pipeline = model.to_sklearn()
        np.testing.assert_allclose(pipeline.predict_proba(raw)[:, 1], expected, atol=1e-12)
        np.testing.assert_allclose(result.model.predict(path), expected, atol=1e-12)
        # It pickles (as MLflow's scikit-learn flavour stores it) and still takes raw frames.
        restored = pickle.loads(pickle.dumps(pipeline))
        np.testing.assert_allclose(restored.predict_proba(raw)[:, 1], expected, atol=1e-12)
    with pytest.raises(ConfigError, match="no XGBoost booster"):
        model.to_booster()


def test_gbdt_model_predicts_raw_frames_like_fedtab(trained: dict[str, Any]) -> None:
    result = trained["results"]["gbdt"]
    model = result.model
    assert model.kind == "xgboost" and model.file is None
    booster = model.to_booster()
    assert isinstance(booster, xgb.Booster)
    assert booster.save_raw("json") == load_model(result.paths[0]).to_booster().save_raw("json")
    for bank, path in trained["tables"].items():
        table = load_table(path, trained["contract"])
        matrix = xgb.DMatrix(table.X, feature_names=table.feature_names)
        expected = np.asarray(booster.predict(matrix), dtype=np.float64)
        raw = _raw(trained["frames"][bank])
        np.testing.assert_allclose(model.predict(raw), expected, atol=1e-7)
        np.testing.assert_allclose(gbdt_predict(booster, raw), expected, atol=1e-7)
    with pytest.raises(ConfigError, match="no scikit-learn pipeline"):
        model.to_sklearn()


def test_model_errors_are_one_line(trained: dict[str, Any], tmp_path: Path) -> None:
    model = trained["results"]["gbdt"].model
    frame = trained["frames"]["bank_a"]
    with pytest.raises(DataContractError, match="'channel'"):
        model.predict(frame.drop(columns=["channel"]))
    bad = frame.assign(channel=["card", *frame["channel"][1:]])
    with pytest.raises(DataContractError, match="channel") as error:
        model.predict(bad)
    assert "\n" not in error.value.one_line()
    with pytest.raises(ConfigError, match="model file not found"):
        load_model(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="neither"):
        Model.from_json('{"kind": "other"}', "odd.json")


def test_evaluate_equals_scikit_learn_metrics(trained: dict[str, Any]) -> None:
    model = trained["results"]["logreg"].model
    baseline = trained["results"]["gbdt"].model
    frame = trained["frames"]["bank_c"]
    result = evaluate(model, frame, baseline=baseline)
    y, scores = frame["y"].to_numpy(), model.predict(frame)
    assert result.label == "y" and result.source == "DataFrame"
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert result.metrics["pr_auc"] == pytest.approx(average_precision_score(y, scores),
                                                     abs=1e-12)
    assert result.metrics["brier"] == pytest.approx(brier_score_loss(y, scores), abs=1e-12)
    low, high = result.metrics["intervals"]["pr_auc"]
    assert low <= result.metrics["pr_auc"] <= high
    doc = result.to_dict()
    assert doc["baseline"]["model_kind"] == "xgboost" and "model_vs_baseline" in doc
    table = result.to_frame()
    assert list(table.index) == ["model", "baseline"]
    assert table.loc["baseline", "roc_auc"] == pytest.approx(
        roc_auc_score(y, baseline.predict(frame)), abs=1e-12)
    with pytest.raises(DataContractError, match="label column 'fraud'"):
        evaluate(model, frame, label="fraud")


def test_the_evaluate_command_prints_what_the_api_returns(trained: dict[str, Any],
                                                          tmp_path: Path) -> None:
    model = trained["results"]["gbdt"].paths[0]
    baseline = trained["results"]["logreg"].paths[0]
    holdout = trained["tables"]["bank_b"]
    result = evaluate(model, holdout, baseline=baseline)
    args = ["evaluate", "--model", str(model), "--data", str(holdout), "--baseline",
            str(baseline)]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert text.output == result.format() + "\n"
    as_json = CliRunner().invoke(cli, [*args, "--json", "--report", str(tmp_path / "r")])
    doc = json.loads(as_json.output)
    assert doc.pop("report") == str(tmp_path / "r" / "report.html")
    assert doc == json.loads(json.dumps(result.to_dict(), sort_keys=True))
    page = result.to_html(tmp_path / "api")
    assert page == tmp_path / "api" / "report.html" and "<html" in page.read_text()


def test_simulate_refuses_bad_inputs_before_starting_anything(tmp_path: Path) -> None:
    frames = make_frames()
    with pytest.raises(ConfigError, match="label"):
        simulate(frames, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="holdouts need tables as a mapping"):
        simulate(frames["bank_a"], label="y", holdouts=frames, out=tmp_path / "b")
    with pytest.raises(ConfigError, match="either job or params"):
        simulate(frames, label="y", job=JobSpec("gbdt"), params={"n_estimators": 2})
    with pytest.raises(ConfigError, match="learning_rate"):
        simulation_job("gbdt", {"eta": 7})
    job = tmp_path / "job.toml"
    job.write_text('[job]\nkind = "logreg"\n')
    with pytest.raises(ConfigError, match="is a 'logreg' job but --model is 'gbdt'"):
        simulation_job("gbdt", job)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.slow
def test_readme_example_simulates_from_dataframes(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's notebook example as written, with a 1024-bit key instead of 2048."""
    api = importlib.import_module("fedtab.api.simulation")
    monkeypatch.setitem(api.simulate.__kwdefaults__, "key_bits", 1024)
    monkeypatch.setenv("FEDTAB_ALLOW_SMALL_KEYS", "1")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)
    result, holdouts = namespace["result"], namespace["holdouts"]
    assert result.report["key_bits"] == 1024 and result.report["job"]["params"]["n_estimators"] == 5
    metrics = result.metrics
    assert len(metrics) == 9 and set(metrics["model"]) == {"local_only", "federated", "pooled"}
    # The model scores a bank's raw holdout exactly as the simulation's comparison did.
    row = metrics[(metrics.bank == "metro_bank") & (metrics.model == "federated")].iloc[0]
    y = holdouts["metro_bank"]["is_fraud"].to_numpy()
    assert average_precision_score(y, namespace["scores"]) == pytest.approx(row["pr_auc"],
                                                                            abs=1e-9)
    assert row["pr_auc_low"] <= row["pr_auc"] <= row["pr_auc_high"]
    assert namespace["evaluation"].metrics["pr_auc"] == pytest.approx(row["pr_auc"], abs=1e-9)
    assert (tmp_path / "sim-report" / "report.html").exists()
    assert result.model_path == Path("sim-out") / "model.json"
    assert result.summary[0].startswith("Paillier key: 1024-bit modulus")


def test_docstring_examples_run() -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    attempted = 0
    for name in API_MODULES:
        outcome = doctest.testmod(importlib.import_module(name), optionflags=flags)
        assert outcome.failed == 0, name
        attempted += outcome.attempted
    assert attempted >= 20


def test_api_names_load_lazily_from_fedtab() -> None:
    api = importlib.import_module("fedtab.api")
    assert set(api.__all__) == set(api.EXPORTS) == fedtab.API_NAMES
    for name in api.__all__:
        assert getattr(fedtab, name) is getattr(api, name)
    with pytest.raises(AttributeError):
        fedtab.no_such_name  # noqa: B018
    probe = ("import sys, fedtab\n"
             "print(sorted(m for m in sys.modules if m.startswith('fedtab.api')\n"
             "             or m.split('.')[0] in ('pandas', 'sklearn', 'xgboost', 'grpc')))\n")
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout
    assert output.strip() == "[]"


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"fedtab {metadata.version('fedtab')}\n"
    assert fedtab.__version__ == metadata.version("fedtab")
