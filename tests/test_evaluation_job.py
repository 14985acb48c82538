"""The ``evaluate`` job: per-bank and consortium-wide holdout metrics through secure sums.

Per-bank metrics must equal :func:`fedtab.metrics.evaluate_scores` on each bank's own scores;
consortium metrics must equal scikit-learn on the pooled scores replaced by their bin index
(the binned definition) and stay within small, measured gaps of the exact pooled metrics;
nothing per-row reaches the aggregator or the operator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from harness import BANKS, InProcessConsortium, new_consortium

from bank_node.policy import model_digest
from fedtab.consortium_eval.binned import binned_metrics, score_bins, score_histogram
from fedtab.consortium_eval.model_param import embed_model
from fedtab.data.contract import DataContract, LocalTable
from fedtab.data.infer import infer_contract
from fedtab.data.validate import load_table
from fedtab.errors import ConfigError, JobFailedError, PrivacyError
from fedtab.jobs import JobSpec, create_trainer
from fedtab.metrics import evaluate_scores
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext
from fedtab.scoring import load_model

RANKING = ("roc_auc", "pr_auc", "recall_at_fpr_0_001", "recall_at_fpr_0_01", "best_f1")
HOLDOUT_ROWS = {"bank_a": 900, "bank_b": 1300, "bank_c": 1700}


def signal_frame(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    """Rows whose fraud probability depends on the features (so metrics are not chance)."""
    amount = rng.lognormal(3.0 + shift, 1.0, n)
    channel = rng.choice(["web", "pos", "atm"], n)
    age = rng.integers(18, 90, n).astype(float)
    logit = -3.2 + 1.1 * (np.log(amount) - 3.0) + 1.0 * (channel == "web") - 0.02 * (age - 50)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    amount[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"amount": amount, "age": age, "channel": channel, "y": y})


def write_frames(folder: Path, frames: Mapping[str, pd.DataFrame]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for bank, frame in frames.items():
        paths[bank] = folder / f"{bank}.csv"
        frame.to_csv(paths[bank], index=False)
    return paths


def train_model(kind: str, params: dict[str, Any], tables: Mapping[str, Path],
                contract: DataContract, out: Path) -> Path:
    names = tuple(sorted(tables))
    spec = JobSpec(kind=kind, params=params)
    trainers = {b: create_trainer(spec, JobContext("train", b, names, 0, params),
                                  load_table(p, contract)) for b, p in tables.items()}
    out.write_bytes(run_plaintext(trainers).artifacts["model.json"])
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(7)
    train = {b: signal_frame(rng, 600, 0.1 * i) for i, b in enumerate(BANKS)}
    hold = {b: signal_frame(rng, HOLDOUT_ROWS[b], 0.1 * i) for i, b in enumerate(BANKS)}
    contract = infer_contract(pd.concat([*train.values(), *hold.values()], ignore_index=True),
                              label="y")
    tables = write_frames(root / "train", train)
    holdouts = write_frames(root / "holdout", hold)
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    gbdt = train_model("gbdt", {"n_estimators": 12, "max_depth": 3, "max_bin": 32,
                                "learning_rate": 0.3}, tables, contract, root / "gbdt.json")
    logreg = train_model("logreg", {"C": 1.0}, tables, contract, root / "logreg.json")
    return {"root": root, "contract": contract, "tables": tables, "holdouts": holdouts,
            "consortium": consortium, "gbdt": gbdt, "logreg": logreg}


class EvalConsortium(InProcessConsortium):
    """The in-process consortium with each bank agent given its holdout (or none)."""

    def __init__(self, consortium: Path, tables: Mapping[str, Path],
                 holdouts: Mapping[str, Path], state_dir: Path | None = None,
                 approve: Sequence[Path] = ()) -> None:
        super().__init__(consortium, tables, state_dir=state_dir, on_agent=self._give_holdout)
        self.approved = {model_digest(path.read_bytes()) for path in approve}
        self.holdouts = {b: load_table(p, self.bank_bundles[b].contract)
                         for b, p in holdouts.items()}

    def _give_holdout(self, agent: Any) -> None:
        agent.holdout = self.holdouts.get(agent.name)
        # The test models were trained by the local runner, not by these agents: each bank
        # approves them explicitly, as `bank join --approve-model` does.
        agent.policy.approved_models |= self.approved


def lists_in(value: Any, where: str = "") -> list[str]:
    """Paths of every JSON array inside ``value`` (per-row data would need one)."""
    if isinstance(value, list):
        return [where or "/"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in lists_in(v, f"{where}/{k}")]
    return []


def eval_spec(model: Path, **params: Any) -> JobSpec:
    job = model.parent / "evaluate.toml"
    job.write_text(f'[job]\nkind = "evaluate"\n[params]\nmodel = "{model.name}"\n')
    spec = embed_model(JobSpec.load(job), job)
    return JobSpec(kind="evaluate", params={**spec.params, **params})


def holdout_scores(setup: dict[str, Any], model: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    scorer = load_model(model)
    out = {}
    for bank, path in setup["holdouts"].items():
        table = load_table(path, setup["contract"])
        out[bank] = (table.y, scorer.predict_proba(table.X))
    return out


def run_local(setup: dict[str, Any], spec: JobSpec,
              holdouts: Mapping[str, LocalTable | None]) -> dict[str, bytes]:
    names = tuple(sorted(setup["tables"]))
    trainers = {
        b: create_trainer(spec, JobContext("ev", b, names, 0, dict(spec.params)),
                          load_table(setup["tables"][b], setup["contract"]), holdout=holdouts[b])
        for b in names
    }
    return run_plaintext(trainers).artifacts


# ----- binned metrics ---------------------------------------------------------------------------


def test_binned_metrics_are_sklearn_on_bin_indices() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.03).astype(float)
    scores = np.clip(rng.beta(0.6 + 2 * y, 8.0), 0.0, 1.0)
    for n_bins in (64, 8192):
        hist = score_histogram(y, scores, n_bins).astype(int)
        got = binned_metrics(hist[:n_bins].tolist(), hist[n_bins:].tolist())
        want = evaluate_scores(y, score_bins(scores, n_bins).astype(float))
        for key in RANKING:
            assert got[key] == pytest.approx(want[key], abs=1e-12), (n_bins, key)
        exact = evaluate_scores(y, scores)
        assert abs(got["roc_auc"] - exact["roc_auc"]) <= got["roc_auc_binning_bound"] + 1e-15
        for key in ("recall_at_fpr_0_001", "recall_at_fpr_0_01"):
            assert got[key] <= exact[key] + 1e-12  # binned recall never overstates


def test_score_bins_cover_the_unit_interval_in_logit_steps() -> None:
    edges = np.array([0.0, 1e-300, 1.0 / (1.0 + np.exp(16.0)), 0.5, 1.0 - 1e-16, 1.0])
    assert score_bins(edges, 8192).tolist() == [0, 0, 0, 4096, 8191, 8191]
    logit = np.linspace(-15.9, 15.9, 50)
    index = score_bins(1.0 / (1.0 + np.exp(-logit)), 8192)
    assert np.all(np.diff(index) > 0)
    assert np.allclose(index, np.floor((logit + 16.0) * 8192 / 32.0), atol=1)


def test_binning_gap_to_exact_is_tiny_with_default_bins() -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(100_000) < 0.01).astype(float)
    margin = rng.normal(-5.0 + 3.0 * y, 1.5)
    scores = 1.0 / (1.0 + np.exp(-margin))
    hist = score_histogram(y, scores, 8192).astype(int)
    got = binned_metrics(hist[:8192].tolist(), hist[8192:].tolist())
    exact = evaluate_scores(y, scores)
    gaps = {key: abs(got[key] - exact[key]) for key in RANKING}
    print("binning gaps (8192 logit bins, 100k rows):", gaps)
    assert gaps["roc_auc"] < 1e-5 and got["roc_auc_binning_bound"] < 5e-4
    assert gaps["pr_auc"] < 1e-3
    assert gaps["recall_at_fpr_0_001"] < 5e-3 and gaps["recall_at_fpr_0_01"] < 5e-3
    assert gaps["best_f1"] < 1e-3


# ----- the job over gRPC --------------------------------------------------------------------------


def check_metrics(doc: dict[str, Any], scores: dict[str, tuple[np.ndarray, np.ndarray]],
                  n_bins: int, gap: float) -> None:
    for bank, (y, s) in scores.items():
        want = evaluate_scores(y, s)
        got = doc["per_bank"][bank]
        assert got["n_rows"] == HOLDOUT_ROWS[bank] == want["n_rows"]
        assert got["n_positive"] == want["n_positive"]
        for key, value in got.items():
            assert value == pytest.approx(want[key], abs=1e-9), (bank, key)
    y = np.concatenate([v[0] for v in scores.values()])
    s = np.concatenate([v[1] for v in scores.values()])
    pooled, cons = evaluate_scores(y, s), doc["consortium"]
    assert cons["n_rows"] == pooled["n_rows"] and cons["n_positive"] == pooled["n_positive"]
    assert cons["brier"] == pytest.approx(pooled["brier"], abs=1e-9)
    binned = evaluate_scores(y, score_bins(s, n_bins).astype(float))
    for key in RANKING:
        assert cons[key] == pytest.approx(binned[key], abs=1e-12), key
    assert abs(cons["roc_auc"] - pooled["roc_auc"]) <= cons["roc_auc_binning_bound"] + 1e-12
    gaps = {key: abs(cons[key] - pooled[key]) for key in RANKING}
    print(f"consortium binning gaps ({n_bins} bins, {len(y)} rows):", gaps)
    assert gaps["roc_auc"] < gap and gaps["pr_auc"] < gap and gaps["best_f1"] < gap


def test_evaluate_job_over_grpc(setup: dict[str, Any], tmp_path: Path) -> None:
    spec = eval_spec(setup["gbdt"])
    scores = holdout_scores(setup, setup["gbdt"])
    with EvalConsortium(setup["consortium"], setup["tables"], setup["holdouts"],
                        state_dir=tmp_path / "state", approve=[setup["gbdt"]]) as cons, \
            cons.operator_client() as client:
        job_id = client.submit(spec)
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)
    assert final.state == "done" and final.step_index == 2
    assert sorted(artifacts) == ["evaluation.json", "evaluation.txt"]
    doc = json.loads(artifacts["evaluation.json"])
    assert doc["model"]["kind"] == "xgboost" and doc["score_bins"] == 8192
    # 2e-3: the gap depends on how this small model's ~200 distinct scores fall into logit bins
    # (1.2e-3 for PR-AUC since cut points keep min_child_samples rows per bin; 2e-4 before)
    check_metrics(doc, scores, 8192, gap=2e-3)
    assert doc["per_bank"]["bank_a"]["roc_auc"] > 0.6  # the model learned something
    table = artifacts["evaluation.txt"].decode().splitlines()
    assert [line.split()[0] for line in table[1:5]] == [*BANKS, "consortium"]
    # What the operator and the aggregator see holds metrics only: no list anywhere.
    assert lists_in(doc) == []
    steps = sorted((tmp_path / "state" / "jobs" / job_id / "steps").glob("*.json"))
    assert len(steps) == 2
    for step in steps:
        assert lists_in(json.loads(step.read_text())["proposal"]) == []


def test_banks_refuse_to_score_a_model_they_neither_trained_nor_approved(
    setup: dict[str, Any],
) -> None:
    """A crafted model is a query interface on the holdouts: banks refuse unknown models."""
    with EvalConsortium(setup["consortium"], setup["tables"], setup["holdouts"],
                        approve=[setup["logreg"]]) as cons, cons.operator_client() as client:
        job_id = client.submit(eval_spec(setup["gbdt"]))
        with pytest.raises(JobFailedError, match=r"not trained by this consortium.*"
                                                 r"--approve-model"):
            client.wait(job_id, timeout=60)


def test_logreg_model_and_coarse_bins_in_process(setup: dict[str, Any]) -> None:
    spec = eval_spec(setup["logreg"], score_bins=256, min_rows=100)
    holdouts = {b: load_table(p, setup["contract"]) for b, p in setup["holdouts"].items()}
    doc = json.loads(run_local(setup, spec, holdouts)["evaluation.json"])
    assert doc["model"]["kind"] == "logreg" and doc["score_bins"] == 256
    check_metrics(doc, holdout_scores(setup, setup["logreg"]), 256, gap=2e-2)


def test_bank_without_holdout_fails_the_job(setup: dict[str, Any]) -> None:
    holdouts = {b: p for b, p in setup["holdouts"].items() if b != "bank_b"}
    with EvalConsortium(setup["consortium"], setup["tables"], holdouts,
                        approve=[setup["gbdt"]]) as cons, \
            cons.operator_client() as client:
        job_id = client.submit(eval_spec(setup["gbdt"]))
        with pytest.raises(JobFailedError, match=r"bank_b has no holdout.*--holdout"):
            client.wait(job_id, timeout=60)


def test_artifact_size_does_not_grow_with_holdout_rows(setup: dict[str, Any]) -> None:
    spec = eval_spec(setup["gbdt"])
    full = {b: load_table(p, setup["contract"]) for b, p in setup["holdouts"].items()}
    shapes, sizes = [], []
    for rows in (60, 800):
        cut = {b: LocalTable(t.contract, t.X[:rows], t.y[:rows]) for b, t in full.items()}
        text = run_local(setup, spec, cut)["evaluation.json"]
        doc = json.loads(text)
        assert doc["consortium"]["n_rows"] == 3 * rows
        sizes.append(len(text))
        shapes.append(re.sub(rb"-?[0-9][0-9.eE+-]*", b"N", text))
    # 13x more rows: the same document with other numbers, a few hundred bytes per bank.
    assert shapes[0] == shapes[1]
    assert max(sizes) < 2500


# ----- refusals -----------------------------------------------------------------------------------


def make_trainer(setup: dict[str, Any], spec: JobSpec, holdout: LocalTable | None) -> Any:
    names = tuple(sorted(setup["tables"]))
    table = load_table(setup["tables"]["bank_a"], setup["contract"])
    return create_trainer(spec, JobContext("ev", "bank_a", names, 0, dict(spec.params)), table,
                          holdout=holdout)


def test_privacy_floor_and_bad_parameters(setup: dict[str, Any]) -> None:
    hold = load_table(setup["holdouts"]["bank_a"], setup["contract"])
    spec = eval_spec(setup["gbdt"])
    with pytest.raises(PrivacyError, match=r"holdout has 40 rows, fewer than min_rows=50"):
        make_trainer(setup, spec, LocalTable(hold.contract, hold.X[:40], hold.y[:40]))
    negatives = hold.y == 0
    with pytest.raises(PrivacyError, match="no fraud rows"):
        make_trainer(setup, spec, LocalTable(hold.contract, hold.X[negatives],
                                             hold.y[negatives]))
    with pytest.raises(ConfigError, match="min_rows must be an integer in \\[20"):
        make_trainer(setup, eval_spec(setup["gbdt"], min_rows=1), hold)
    with pytest.raises(ConfigError, match="not embedded"):
        make_trainer(setup, JobSpec("evaluate", {"model": "gbdt.json"}), hold)
    tampered = dict(spec.params, model_json=spec.params["model_json"] + " ")
    with pytest.raises(ConfigError, match="model_sha256"):
        make_trainer(setup, JobSpec("evaluate", tampered), hold)


def test_model_under_another_contract_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    hold = load_table(setup["holdouts"]["bank_a"], setup["contract"])
    doc = json.loads(setup["logreg"].read_text())
    doc["contract"]["label"] = "is_fraud"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="another data contract"):
        make_trainer(setup, eval_spec(other), hold)
    with pytest.raises(ConfigError, match="neither a fedtab logreg model"):
        (tmp_path / "junk.json").write_text('{"hello": 1}')
        make_trainer(setup, eval_spec(tmp_path / "junk.json"), hold)


def test_embed_model_refuses_missing_and_huge_files(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('[job]\nkind = "evaluate"\n[params]\nmodel = "nope.json"\n')
    with pytest.raises(ConfigError, match="cannot read model file"):
        embed_model(JobSpec.load(job), job)
    (tmp_path / "nope.json").write_bytes(b" " * (8 << 20))
    with pytest.raises(ConfigError, match="limited to"):
        embed_model(JobSpec.load(job), job)
    # Under the file limit, but JSON escaping of the text makes the submitted spec too large.
    (tmp_path / "nope.json").write_text('"' * (4 << 20))
    with pytest.raises(ConfigError, match=r"makes a 83888\d\d-byte job spec"):
        embed_model(JobSpec.load(job), job)


# ----- CLI ----------------------------------------------------------------------------------------


def test_fedtab_run_prints_the_table_and_bank_join_checks_the_holdout(
        setup: dict[str, Any], tmp_path: Path) -> None:
    from fedtab.cli.main import cli

    job = tmp_path / "evaluate.toml"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.json").write_bytes(setup["logreg"].read_bytes())
    job.write_text('[job]\nkind = "evaluate"\n[params]\nmodel = "models/m.json"\n'
                   "score_bins = 1024\n")
    operator = str(setup["consortium"] / "operator")
    with EvalConsortium(setup["consortium"], setup["tables"], setup["holdouts"],
                        approve=[setup["logreg"]]) as cons:
        result = CliRunner().invoke(cli, ["run", operator, str(job), "--aggregator",
                                          cons.address, "--out", str(tmp_path / "out"),
                                          "--timeout", "120"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["rows", "frauds", "ROC-AUC", "PR-AUC"]
    assert [line.split()[0] for line in lines[1:5]] == [*BANKS, "consortium"]
    doc = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert doc["consortium"]["n_rows"] == sum(HOLDOUT_ROWS.values())
    assert doc["model"]["name"] == "m.json"

    missing = tmp_path / "missing.toml"
    missing.write_text('[job]\nkind = "evaluate"\n[params]\nmodel = "absent.json"\n')
    result = CliRunner().invoke(cli, ["run", operator, str(missing), "--aggregator",
                                      "127.0.0.1:9"])
    assert result.exit_code == 2 and result.output.startswith("error: ConfigError")
    assert len(result.output.strip().splitlines()) == 1

    bad = tmp_path / "bad_holdout.csv"
    frame = pd.read_csv(setup["holdouts"]["bank_a"])
    frame.loc[3, "channel"] = "teleport"
    frame.to_csv(bad, index=False)
    result = CliRunner().invoke(cli, ["bank", "join", str(setup["consortium"] / "banks" /
                                                           "bank_a"),
                                      "--data", str(setup["tables"]["bank_a"]),
                                      "--holdout", str(bad), "--aggregator", "127.0.0.1:9"])
    assert result.exit_code == 5, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad_holdout.csv" in errors[0] and "channel" in errors[0]
