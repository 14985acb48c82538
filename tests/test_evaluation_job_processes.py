"""An ``evaluate`` job between real processes: aggregator, three ``fedtab bank join --holdout``
and ``fedtab run`` with a 100-tree model embedded in the job (2048-bit key, mTLS, loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from harness import (
    BANKS,
    ServiceProcess,
    new_consortium,
    run_fedtab,
    start_aggregator,
    stop_all,
)
from test_evaluation_job import signal_frame, train_model, write_frames

from fedtab.data.infer import infer_contract
from fedtab.data.validate import load_table
from fedtab.metrics import evaluate_scores
from fedtab.scoring import load_model


@pytest.mark.slow
def test_evaluate_job_between_processes(tmp_path: Path) -> None:
    rng = np.random.default_rng(17)
    train = {b: signal_frame(rng, 1500, 0.1 * i) for i, b in enumerate(BANKS)}
    hold = {b: signal_frame(rng, 800 + 200 * i, 0.1 * i) for i, b in enumerate(BANKS)}
    contract = infer_contract(pd.concat([*train.values(), *hold.values()], ignore_index=True),
                              label="y")
    tables = write_frames(tmp_path / "train", train)
    holdouts = write_frames(tmp_path / "holdout", hold)
    consortium = new_consortium(tmp_path / "consortium", contract)
    (tmp_path / "jobs").mkdir()
    model = train_model("gbdt", {"n_estimators": 100, "max_depth": 6, "max_bin": 64,
                                 "min_child_samples": 20}, tables, contract,
                        tmp_path / "jobs" / "model.json")
    job = tmp_path / "jobs" / "evaluate.toml"
    job.write_text('[job]\nkind = "evaluate"\n[params]\nmodel = "model.json"\n')
    logs = tmp_path / "logs"
    processes: list[ServiceProcess | None] = []
    try:
        aggregator, address = start_aggregator(consortium, logs)
        processes.append(aggregator)
        for bank in BANKS:
            processes.append(ServiceProcess(bank, [
                "bank", "join", str(consortium / "banks" / bank), "--data", str(tables[bank]),
                "--holdout", str(holdouts[bank]), "--aggregator", address,
                # trained in-process by this test, not by these banks: approved explicitly
                "--approve-model", str(model)], logs))
        result = run_fedtab(["run", str(consortium / "operator"), str(job), "--aggregator",
                             address, "--out", str(tmp_path / "out"), "--timeout", "300"],
                            timeout=360)
    finally:
        stop_all(processes)
    outputs = "\n".join(p.output()[-2000:] for p in processes if p is not None)
    assert result.returncode == 0, result.stderr + outputs
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:5]] == [*BANKS, "consortium"]
    doc = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert model.stat().st_size > 200_000  # a sizeable model travelled inside the job spec
    scorer = load_model(model)
    ys, ss = [], []
    for bank in BANKS:
        table = load_table(holdouts[bank], contract)
        scores = scorer.predict_proba(table.X)
        ys.append(table.y)
        ss.append(scores)
        want = evaluate_scores(table.y, scores)
        for key, value in doc["per_bank"][bank].items():
            assert value == pytest.approx(want[key], abs=1e-9), (bank, key)
        assert f"holdout {holdouts[bank]} matches the contract" in processes[
            1 + BANKS.index(bank)].output()  # type: ignore[union-attr]
    pooled = evaluate_scores(np.concatenate(ys), np.concatenate(ss))
    cons = doc["consortium"]
    assert cons["n_rows"] == pooled["n_rows"] and cons["n_positive"] == pooled["n_positive"]
    assert cons["brier"] == pytest.approx(pooled["brier"], abs=1e-9)
    assert abs(cons["roc_auc"] - pooled["roc_auc"]) <= cons["roc_auc_binning_bound"] + 1e-12
    assert abs(cons["pr_auc"] - pooled["pr_auc"]) < 1e-3
