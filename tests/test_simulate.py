"""`fedtab simulate`: the zero-argument main job end to end, at a reduced size.

Runs the real console command in a fresh folder: synthetic data, a consortium with its CA,
the aggregator and one process per bank over loopback mTLS gRPC. Only the size is reduced, via
the FEDTAB_* environment variables click reads for every option.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from fedtab.data.contract import DataContract
from fedtab.data.validate import load_table

pytestmark = pytest.mark.slow


def _run_simulate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedtab.cli.main", "simulate", *args],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_zero_argument_simulate_trains_and_compares(tmp_path: Path) -> None:
    params = tmp_path / "small.toml"
    params.write_text("[params]\nn_estimators = 4\nmax_depth = 3\n")
    result = _run_simulate(
        tmp_path,
        FEDTAB_SIMULATE_ROWS="8000",
        FEDTAB_SIMULATE_PARAMS=str(params),
        FEDTAB_SIMULATE_KEY_BITS="1024",
        FEDTAB_ALLOW_SMALL_KEYS="1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "fedtab-out"
    report = json.loads((out / "report.json").read_text())
    banks = report["banks"]
    assert len(banks) == 3
    # The printed table has a line per bank and model.
    for bank in banks:
        assert bank in result.stdout
    assert result.stdout.count("federated") == 3
    assert "pooled" in result.stdout and "local_only" in result.stdout
    # Progress reached stderr while it ran.
    assert "step" in result.stderr
    # Stock xgboost loads the model, and its scores match the report's federated metrics.
    booster = xgb.Booster(model_file=str(out / "model.json"))
    contract = DataContract.from_dict(json.loads(booster.attr("fedtab_contract") or "{}"))
    first = report["holdout_comparison"][0]
    holdout = load_table(out / "data" / first["bank"] / "holdout.csv", contract)
    scores = booster.predict(xgb.DMatrix(holdout.X, feature_names=holdout.feature_names))
    from fedtab.metrics import evaluate_scores

    metrics = evaluate_scores(holdout.y, np.asarray(scores, dtype=np.float64))
    assert metrics["pr_auc"] == pytest.approx(first["metrics"]["federated"]["pr_auc"], abs=1e-9)
    assert report["steps"] > 3
    # No private Paillier key in the aggregator's bundle.
    aggregator_files = list((out / "consortium" / "aggregator").iterdir())
    assert not any("private" in path.name for path in aggregator_files)
    # Each metric has its interval; the paired difference is printed; stdout ends with what
    # the run did, and says only what was checked.
    low, high = first["intervals"]["federated"]["pr_auc"]
    assert low <= first["metrics"]["federated"]["pr_auc"] <= high
    assert set(first["differences"]["federated_vs_local_only"]) >= {"pr_auc", "roc_auc"}
    assert result.stdout.count("fed-local") >= 3
    summary = result.stdout.split("What this run did:")[1].splitlines()[1:]
    assert summary[0] == "  Paillier key: 1024-bit modulus (read from the aggregator's public key)"
    assert f"{report['traffic']['ciphertexts_summed']:,} aggregate ciphertexts" in summary[1]
    assert summary[2].startswith(f"  steps: {report['steps']} committed")
    assert summary[3].startswith("  aggregator: public key only: no private Paillier key")
    assert report["aggregator_keys"]["private_key_material"] is False
    # report.json: the job is flat, counters are integers
    assert report["job"]["kind"] == "gbdt" and "job" not in report["job"]
    assert report["job"]["params"]["n_estimators"] == 4
    assert all(type(v) is int for v in report["traffic"].values())


def test_simulate_two_banks_needs_override(tmp_path: Path) -> None:
    result = _run_simulate(
        tmp_path,
        "--banks",
        "2",
        "--rows",
        "4000",
        FEDTAB_SIMULATE_KEY_BITS="1024",
        FEDTAB_ALLOW_SMALL_KEYS="1",
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "allow_two_banks" in lines[0]
    assert "Traceback" not in result.stderr


def test_simulate_rejects_bad_bank_file(tmp_path: Path) -> None:
    result = _run_simulate(tmp_path, "--bank-file", "a=/nonexistent.csv", "--label", "y")
    assert result.returncode != 0
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def _pooled_csv(tmp_path: Path) -> Path:
    """One table to split: a small synthetic consortium's training rows, pooled."""
    import pandas as pd

    from fedtab.synthetic import generate_consortium

    consortium = generate_consortium(3, 6000, seed=11)
    path = tmp_path / "pooled.csv"
    pd.concat([bank.train for bank in consortium.banks]).to_csv(path, index=False)
    return path


def test_simulate_splits_a_table_and_matches_pooled_logreg(tmp_path: Path) -> None:
    data = _pooled_csv(tmp_path)
    result = _run_simulate(
        tmp_path,
        "--data",
        str(data),
        "--label",
        "is_fraud",
        "--id",
        "txn_id",
        "--split",
        "by-column:hour",
        "--model",
        "logreg",
        "--key-bits",
        "1024",
        FEDTAB_ALLOW_SMALL_KEYS="1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "fedtab-out" / "report.json").read_text())
    assert report["banks"] == ["bank_1", "bank_2", "bank_3"]
    for row in report["holdout_comparison"]:
        federated, pooled = row["metrics"]["federated"], row["metrics"]["pooled"]
        # Secure-sum Newton reaches the pooled optimum: same holdout ranking quality.
        assert federated["roc_auc"] == pytest.approx(pooled["roc_auc"], abs=2e-4)


def test_simulate_with_one_file_per_bank(tmp_path: Path) -> None:
    from fedtab.synthetic import generate_consortium, write_consortium

    write_consortium(generate_consortium(3, 6000, seed=12), tmp_path / "data")
    files = [
        f"{b}={tmp_path / 'data' / b / 'train.csv'}"
        for b in ("metro_bank", "rural_bank", "young_bank")
    ]
    args = [arg for pair in files for arg in ("--bank-file", pair)]
    result = _run_simulate(
        tmp_path,
        *args,
        "--label",
        "is_fraud",
        "--id",
        "txn_id",
        "--model",
        "logreg",
        "--key-bits",
        "1024",
        FEDTAB_ALLOW_SMALL_KEYS="1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "fedtab-out" / "report.json").read_text())
    assert sorted(report["training_metrics"]) == ["metro_bank", "rural_bank", "young_bank"]
    assert report["holdout_comparison"] == []  # bank files carry no holdout
    assert report["traffic"], "the aggregator's traffic counters reach the report"
