"""``--mlflow``: one MLflow run per job, the model in MLflow's flavours, evaluate in the same run.

Real jobs (in-process consortium over loopback mTLS gRPC, 1024-bit Paillier keys) run through
the real ``fedtab run`` / ``fedtab evaluate`` commands into a local sqlite store and into a real
``mlflow server`` that the test starts on a free loopback port and stops at the end. The
models MLflow hands back (``mlflow.xgboost.load_model``, ``mlflow.sklearn.load_model``) must
score a raw holdout like fedtab, to 1e-6.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from harness import (
    InProcessConsortium,
    make_frames,
    new_consortium,
    write_job,
    write_tables,
)

mlflow = pytest.importorskip("mlflow")  # the [mlflow] extra, pulled in by [dev]

from fedtab.cli.main import cli  # noqa: E402
from fedtab.data.validate import encode_features  # noqa: E402
from fedtab.gbdt.predict import predict as fedtab_gbdt_predict  # noqa: E402
from fedtab.gbdt.predict import to_dmatrix  # noqa: E402
from fedtab.scoring import load_model  # noqa: E402

GBDT = {"n_estimators": 3, "max_depth": 2, "max_bin": 16}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a temporary folder: MLflow's default artifact root is ./mlruns."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Three banks' tables, a holdout, a consortium and its aggregator and banks in-process."""
    root = tmp_path_factory.mktemp("mlflow")
    contract, tables = write_tables(root / "data", make_frames(seed=5, rows=300))
    holdout = root / "holdout.csv"
    make_frames(seed=99, banks=("bank_h",), rows=250)["bank_h"].to_csv(holdout, index=False)
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    with InProcessConsortium(consortium, tables, poll_seconds=0.2) as cons:
        yield {"root": root, "consortium": consortium, "address": cons.address,
               "holdout": holdout}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite backend, served artifacts) on a free loopback port."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError((root / "server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError((root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def run_job(world: dict[str, Any], name: str, kind: str, params: dict[str, Any],
            *mlflow_args: str) -> tuple[Path, str]:
    """``fedtab run`` a job with ``mlflow_args``; returns the output folder and the run id."""
    job = write_job(world["root"] / f"{name}.toml", kind=kind, params=params)
    out = world["root"] / name
    result = invoke("run", str(world["consortium"] / "operator"), str(job), "--aggregator",
                    world["address"], "--out", str(out), "--timeout", "300", *mlflow_args)
    run_line = next(line for line in result.stderr.splitlines()
                    if line.startswith("MLflow: run "))
    return out, run_line.split()[2]


def test_gbdt_job_into_a_sqlite_store(world: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{world['root'] / 'mlflow.db'}"
    out, run_id = run_job(world, "gbdt", "gbdt", GBDT, "--mlflow", uri,
                          "--register", "fraud-gbdt")
    world["gbdt"] = (out, run_id)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    data = run.data
    assert data.params["n_estimators"] == "3" and data.params["kind"] == "gbdt"
    assert data.params["learning_rate"] == "0.3"  # the kind's default, as the banks read it
    assert data.tags["fedtab.consortium"] == "bank_a,bank_b,bank_c"
    assert data.tags["fedtab.command"] == "run"
    assert data.tags["fedtab.privacy_cost"] == "none"
    assert data.tags["fedtab.job_id"] in run.info.run_name
    # Per-tree progress, as sampled by the operator's status polls: trees done go up to 3.
    done = client.get_metric_history(run_id, "rounds_done")
    assert [m.value for m in done] == sorted(m.value for m in done) and done[-1].value == 3
    assert [m.step for m in done] == [int(m.value) for m in done]
    seconds = client.get_metric_history(run_id, "round_seconds")
    assert seconds and seconds[-1].step == 3 and all(m.value >= 0 for m in seconds)
    assert data.metrics["steps"] > 3 and data.metrics["job_seconds"] > 0
    assert data.metrics["traffic.ciphertexts_summed"] > 0
    # The model in MLflow's XGBoost flavour predicts like fedtab's own scoring.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # where runs:/ and models:/ URIs resolve
    booster = mlflow.xgboost.load_model(f"runs:/{run_id}/model")
    frame = pd.read_csv(world["holdout"])
    want = fedtab_gbdt_predict(out / "model.json", frame)
    np.testing.assert_allclose(booster.predict(to_dmatrix(booster, frame)), want, atol=1e-6)
    versions = client.search_model_versions("name = 'fraud-gbdt'")
    assert [v.run_id for v in versions] == [run_id]
    registered = mlflow.xgboost.load_model("models:/fraud-gbdt/1")
    np.testing.assert_allclose(registered.predict(to_dmatrix(registered, frame)), want,
                               atol=1e-6)
    # evaluate --mlflow finds the run by the model file's SHA-256 and logs into it.
    result = invoke("evaluate", "--model", str(out / "model.json"), "--data",
                    str(world["holdout"]), "--label", "y", "--mlflow", uri)
    assert f"into run {run_id}" in result.stderr
    data = client.get_run(run_id).data
    scored = load_model(out / "model.json").score_frame(frame)
    from fedtab.metrics import evaluate_scores

    expected = evaluate_scores(frame["y"].to_numpy(dtype=float), scored)
    assert data.metrics["evaluate.roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-12)
    names = [a.path for a in client.list_artifacts(run_id, "evaluate/holdout")]
    assert "evaluate/holdout/report.html" in names
    assert {"fedtab/model.json"} <= {a.path for a in client.list_artifacts(run_id, "fedtab")}


def test_logreg_job_into_an_mlflow_server(world: dict[str, Any], server: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)  # --mlflow alone: MLflow's own rules
    out, run_id = run_job(world, "logreg", "logreg", {"C": 1.0}, "--register", "fraud-logreg",
                          "--mlflow")
    client = mlflow.MlflowClient(server)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "1.0"
    assert run.data.tags["fedtab.model_flavour"] == "sklearn"
    assert client.get_metric_history(run_id, "rounds_done")  # Newton rounds
    # The model in MLflow's scikit-learn flavour predicts like fedtab.
    frame = pd.read_csv(world["holdout"])
    fedtab_model = load_model(out / "model.json")
    pipeline = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    X = encode_features(frame, fedtab_model.contract)
    np.testing.assert_allclose(pipeline.predict_proba(X)[:, 1],
                               fedtab_model.score_frame(frame), atol=1e-6)
    # --register: a version of the registered model, loadable by its models:/ URI.
    registered = mlflow.sklearn.load_model("models:/fraud-logreg/1")
    np.testing.assert_allclose(registered.predict_proba(X)[:, 1],
                               fedtab_model.score_frame(frame), atol=1e-6)
    # evaluate with an HTML report folder of its own and the run named explicitly.
    report = world["root"] / "logreg-report"
    invoke("evaluate", "--model", str(out / "model.json"), "--data", str(world["holdout"]),
           "--report", str(report), "--json", "--mlflow", server, "--mlflow-run-id", run_id)
    data = client.get_run(run_id).data
    assert 0.0 <= data.metrics["evaluate.pr_auc"] <= 1.0
    paths = {a.path for a in client.list_artifacts(run_id, "evaluate/holdout")}
    assert "evaluate/holdout/report.html" in paths and "evaluate/holdout/roc.png" in paths


def test_mlflow_errors_are_one_line(world: dict[str, Any], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    job = write_job(tmp_path / "job.toml", kind="gbdt", params=GBDT)
    operator = str(world["consortium"] / "operator")
    result = CliRunner().invoke(cli, ["run", operator, str(job), "--register", "x"])
    assert result.exit_code == 2 and "--register needs --mlflow" in result.output
    # This MLflow refuses file stores unless told: one line saying what to do, before the job.
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    result = CliRunner().invoke(cli, ["run", operator, str(job), "--aggregator", "127.0.0.1:9",
                                      "--timeout", "1", "--mlflow", f"file:{tmp_path / 'mlruns'}"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ConfigError: MLflow at file:")
    assert "sqlite:///mlflow.db" in result.output
    assert len(result.output.strip().splitlines()) == 1
    # A job the banks refuse (privacy floor): its run ends FAILED with the job's message.
    refused = write_job(tmp_path / "refused.toml", kind="gbdt",
                        params={**GBDT, "min_child_samples": 5})
    uri = f"sqlite:///{tmp_path / 'refused.db'}"
    result = CliRunner().invoke(cli, ["run", operator, str(refused), "--aggregator",
                                      world["address"], "--timeout", "120", "--mlflow", uri])
    assert result.exit_code != 0 and "privacy floor" in result.output
    (run,) = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("fedtab").experiment_id])
    assert run.info.status == "FAILED" and "privacy floor" in run.data.tags["fedtab.message"]
    # evaluate --mlflow with a model no run logged.
    model = tmp_path / "model.json"
    if "gbdt" not in world:
        pytest.skip("needs the model of test_gbdt_job_into_a_sqlite_store")
    out, _ = world["gbdt"]
    model.write_bytes((out / "model.json").read_bytes() + b"\n")
    result = CliRunner().invoke(cli, [
        "evaluate", "--model", str(model), "--data", str(world["holdout"]), "--label", "y",
        "--mlflow", f"sqlite:///{tmp_path / 'empty.db'}"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: ConfigError: no MLflow run")


def test_without_mlflow_installed_the_error_says_how_to_install(
        world: dict[str, Any], tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.toml", kind="gbdt", params=GBDT)
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "from fedtab.cli.main import main\n"
            "sys.argv = ['fedtab', *sys.argv[1:]]\nmain()\n")
    done = subprocess.run(
        [sys.executable, "-c", code, "run", str(world["consortium"] / "operator"), str(job),
         "--aggregator", "127.0.0.1:9", "--mlflow"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: ConfigError: --mlflow needs MLflow: "
                                   "pip install 'fedtab[mlflow]'")


@pytest.mark.slow
def test_simulate_logs_its_comparison_timings_and_model(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "small.toml"
    params.write_text("[params]\nn_estimators = 3\nmax_depth = 3\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "fedtab.cli.main", "simulate", "--rows", "6000", "--params",
         str(params), "--key-bits", "1024", "--mlflow", uri, "--mlflow-experiment", "sims"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "FEDTAB_ALLOW_SMALL_KEYS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "fedtab-out" / "report.json").read_text())
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sims").experiment_id])
    data = run.data
    assert run.info.status == "FINISHED" and data.tags["fedtab.command"] == "simulate"
    assert data.tags["fedtab.consortium"] == ",".join(report["banks"])
    assert data.params["simulate.key_bits"] == "1024" and data.params["max_depth"] == "3"
    first = report["holdout_comparison"][0]
    key = f"holdout.{first['bank']}.federated.pr_auc"
    assert data.metrics[key] == pytest.approx(first["metrics"]["federated"]["pr_auc"])
    assert data.metrics["timings.training_seconds"] == pytest.approx(
        report["timings"]["training_seconds"])
    assert data.metrics["traffic.ciphertexts_summed"] == report["traffic"]["ciphertexts_summed"]
    assert data.metrics["steps"] == report["steps"]
    assert {"fedtab/model.json", "fedtab/report.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "fedtab")}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    booster = mlflow.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    holdout = pd.read_csv(tmp_path / "fedtab-out" / "data" / first["bank"] / "holdout.csv")
    np.testing.assert_allclose(
        booster.predict(to_dmatrix(booster, holdout)),
        fedtab_gbdt_predict(tmp_path / "fedtab-out" / "model.json", holdout), atol=1e-6)


def test_holdout_artifact_folder_names_files_and_tables_never_urls() -> None:
    from fedtab.tracking.evaluation import holdout_name

    assert holdout_name("data/metro bank/holdout.csv") == "holdout"
    assert holdout_name("postgresql://risk:***@db/cards table card_tx") == "card_tx"
    assert holdout_name("sqlite:///x.db query 'SELECT * FROM t'") == "query"
