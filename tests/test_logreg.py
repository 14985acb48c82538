"""Federated L2 logistic regression: equality with scikit-learn, step machine, model file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from fedtab.crypto.keys import PrivateKey
from fedtab.data.contract import DataContract, LocalTable
from fedtab.data.infer import infer_contract
from fedtab.data.validate import to_local_table
from fedtab.errors import ConfigError, JobFailedError, ProtocolError
from fedtab.logreg.model import LogRegModel
from fedtab.logreg.newton import NewtonState, cholesky_solve, newton_update
from fedtab.logreg.params import LogRegParams
from fedtab.logreg.trainer import LogRegTrainer
from fedtab.protocol.local_runner import run_encrypted, run_plaintext
from fedtab.protocol.steps import JobContext

BANKS = ("bank_a", "bank_b", "bank_c")


def make_frames(seed: int = 1) -> dict[str, pd.DataFrame]:
    """Three banks with numeric features (some missing) and a categorical one (some missing)."""
    rng = np.random.default_rng(seed)
    frames = {}
    for b, bank in enumerate(BANKS):
        n = 400 + 100 * b
        amount = rng.lognormal(3.0 + 0.2 * b, 1.0, n)
        age = rng.integers(18, 90, n).astype(float)
        velocity = rng.normal(b, 2.0, n)
        channel = rng.choice(["atm", "pos", "web"], n, p=[0.2, 0.5, 0.3]).astype(object)
        logit = -2.0 + 0.02 * (amount - 20) - 0.03 * (age - 50) + 0.5 * velocity
        logit = logit + np.where(channel == "web", 1.0, 0.0)
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
        amount[rng.random(n) < 0.1] = np.nan
        channel[rng.random(n) < 0.05] = None
        frames[bank] = pd.DataFrame(
            {"amount": amount, "age": age, "velocity": velocity, "channel": channel, "y": y}
        )
    return frames


def tables_for(frames: dict[str, pd.DataFrame]) -> tuple[DataContract, dict[str, LocalTable]]:
    contract = infer_contract(pd.concat(frames.values(), ignore_index=True), label="y")
    return contract, {bank: to_local_table(df, contract) for bank, df in frames.items()}


def trainers(tables: dict[str, LocalTable], params: dict[str, Any] | None = None) -> dict:
    names = tuple(sorted(tables))
    return {
        bank: LogRegTrainer(JobContext("job-lr", bank, names, 0, params or {}), table)
        for bank, table in tables.items()
    }


def pooled(tables: dict[str, LocalTable]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.vstack([t.X for t in tables.values()]),
        np.concatenate([t.y for t in tables.values()]),
    )


def reference_pipeline(contract: DataContract, C: float, class_weight: Any) -> Pipeline:
    """scikit-learn on the pooled LocalTable X: mean imputation, one-hot, scaling, L2 logreg."""
    parts: list[tuple[str, Any, list[int]]] = []
    for j, spec in enumerate(contract.features):
        if spec.kind == "numeric":
            parts.append((spec.name, SimpleImputer(strategy="mean"), [j]))
        else:
            codes = [float(c) for c in range(len(spec.categories))]
            encoder = OneHotEncoder(categories=[codes], handle_unknown="ignore",
                                    sparse_output=False)
            parts.append((spec.name, encoder, [j]))
    return Pipeline(
        [
            ("encode", ColumnTransformer(parts, sparse_threshold=0.0)),
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=C, class_weight=class_weight, tol=1e-10,
                                          solver="newton-cholesky", max_iter=1000)),
        ]
    )


@pytest.mark.parametrize(
    ("C", "class_weight"),
    [(1.0, None), (0.05, "balanced"), (20.0, {"0": 1.0, "1": 3.0})],
)
def test_encrypted_training_equals_sklearn_pipeline(
    small_private_key: PrivateKey, C: float, class_weight: Any
) -> None:
    contract, tables = tables_for(make_frames())
    params = {"C": C} if class_weight is None else {"C": C, "class_weight": class_weight}
    outcome = run_encrypted(trainers(tables, params), small_private_key)
    model = LogRegModel.from_json(outcome.artifacts["model.json"])
    doc = json.loads(outcome.artifacts["model.json"])
    assert doc["converged"] and doc["n_iter"] <= 10
    X, y = pooled(tables)
    sk_weight = None if class_weight is None else (
        class_weight if class_weight == "balanced" else {0: 1.0, 1: 3.0}
    )
    reference = reference_pipeline(contract, C, sk_weight).fit(X, y)
    np.testing.assert_allclose(model.mean, reference["scale"].mean_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.scale, reference["scale"].scale_, rtol=1e-10)
    np.testing.assert_allclose(model.coef, reference["logreg"].coef_[0], atol=1e-7)
    assert model.intercept == pytest.approx(reference["logreg"].intercept_[0], abs=1e-7)
    np.testing.assert_allclose(
        model.predict_proba(X), reference.predict_proba(X)[:, 1], atol=1e-8
    )
    assert doc["encoded_features"] == [
        "amount", "age", "velocity", "channel=atm", "channel=pos", "channel=web"
    ]


def test_federated_equals_single_pooled_trainer() -> None:
    contract, tables = tables_for(make_frames(2))
    X, y = pooled(tables)
    central = run_plaintext(
        {"all": LogRegTrainer(JobContext("j", "all", ("all",)), LocalTable(contract, X, y))}
    )
    federated = run_plaintext(trainers(tables))
    a = LogRegModel.from_json(central.artifacts["model.json"])
    b = LogRegModel.from_json(federated.artifacts["model.json"])
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-10)
    np.testing.assert_allclose(a.scale, b.scale, rtol=1e-12)


def test_proposals_carry_model_not_gradients() -> None:
    _, tables = tables_for(make_frames())
    outcome = run_plaintext(trainers(tables))
    steps = [request.step_id for request, _ in outcome.commits]
    assert steps[:2] == ["moments", "deviations"]
    assert all(s == f"newton/{k}" for k, s in enumerate(steps[2:]))
    dim = 1 + 6
    for request, proposal in outcome.commits[2:]:
        assert request.length == dim + dim * (dim + 1) // 2 + 1
        assert set(proposal) == {
            "candidate", "theta", "loss", "n_iter", "halvings", "done", "converged", "step",
            "slope",
        }
        assert len(proposal["candidate"]) == dim
    assert set(outcome.commits[1][1]) == {"mean", "scale", "class_weight"}


def test_replay_of_commits_restores_state() -> None:
    _, tables = tables_for(make_frames(4))
    outcome = run_plaintext(trainers(tables, {"class_weight": "balanced"}))
    fresh = trainers(tables, {"class_weight": "balanced"})["bank_c"]
    for request, proposal in outcome.commits:
        assert fresh.next_request() == request
        fresh.commit(request, proposal)
    assert fresh.next_request() is None
    assert fresh.result() == outcome.artifacts
    with pytest.raises(ProtocolError):
        fresh.contribution(outcome.commits[0][0])


def test_max_iter_stops_unconverged() -> None:
    _, tables = tables_for(make_frames())
    doc = json.loads(run_plaintext(trainers(tables, {"max_iter": 1})).artifacts["model.json"])
    assert doc["n_iter"] == 1 and doc["converged"] is False


def test_single_class_consortium_fails_clearly() -> None:
    contract, tables = tables_for(make_frames())
    one_class = {b: LocalTable(contract, t.X, np.zeros_like(t.y)) for b, t in tables.items()}
    with pytest.raises(JobFailedError, match="both classes"):
        run_plaintext(trainers(one_class))


def test_newton_update_backtracks_when_the_loss_rises() -> None:
    kwargs: dict[str, Any] = {"C": 1.0, "weight_total": 10.0, "tol": 1e-8, "max_iter": 10}
    state = NewtonState(candidate=[2.0, 4.0], theta=[0.0, 0.0], loss=10.0, n_iter=1, slope=-4.0)
    # data loss 3 + penalty 4**2 / 2 = 11 at the trial point:
    # phi(s) = 10 - 4 s + a s^2 through phi(1) = 11 gives a = 5, minimiser s = 0.4
    rejected = newton_update(state, [1.0, 1.0], [1.0, 0.0, 1.0], 3.0, **kwargs)
    assert rejected.candidate == pytest.approx([0.8, 1.6]) and rejected.theta == [0.0, 0.0]
    assert rejected.step == pytest.approx(0.4) and rejected.halvings == 1 and not rejected.done
    # a far worse trial is cut by at most 10x; without a slope the step is halved
    assert newton_update(state, [1.0, 1.0], [1.0, 0.0, 1.0], 1e6, **kwargs).step == 0.1
    no_slope = NewtonState(candidate=[2.0, 4.0], theta=[0.0, 0.0], loss=10.0, n_iter=1)
    assert newton_update(no_slope, [1.0, 1.0], [1.0, 0.0, 1.0], 3.0, **kwargs).step == 0.5
    # loss lower: accepted, and the next candidate is the full Newton step from it
    accepted = newton_update(rejected, [1.0, 2.0], [2.0, 0.0, 1.0], 1.0, **kwargs)
    assert accepted.theta == pytest.approx([0.8, 1.6]) and accepted.n_iter == 2
    assert accepted.halvings == 0 and accepted.step == 1.0
    # gradient with penalty [1, 2 + 1.6 / C]; Hessian [[2, 0], [0, 1 + 1 / C]]
    step = [-1.0 / 2.0, -3.6 / 2.0]
    assert accepted.candidate == pytest.approx([0.8 + step[0], 1.6 + step[1]])
    assert accepted.slope == pytest.approx(1.0 * step[0] + 3.6 * step[1])


def test_cholesky_solve_matches_numpy_and_rejects_indefinite() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    spd = a @ a.T + 0.1 * np.eye(6)
    b = rng.normal(size=6)
    np.testing.assert_allclose(cholesky_solve(spd.tolist(), b.tolist()),
                               np.linalg.solve(spd, b), rtol=1e-9)
    with pytest.raises(JobFailedError):
        cholesky_solve([[1.0, 2.0], [2.0, 1.0]], [1.0, 1.0])


@pytest.mark.parametrize(
    "params",
    [
        {"C": 0}, {"C": -1.0}, {"C": "one"}, {"C": True}, {"C": float("inf")},
        {"class_weight": "auto"}, {"class_weight": {"2": 1.0}}, {"class_weight": {"0": -1}},
        {"class_weight": 3}, {"tol": 0.0}, {"max_iter": 0}, {"max_iter": 2.5},
        {"max_rows_per_bank": -5}, {"penalty": "l1"},
    ],
)
def test_params_rejected(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        LogRegParams.from_mapping(params)


def test_params_accepted() -> None:
    assert LogRegParams.from_mapping({}) == LogRegParams()
    parsed = LogRegParams.from_mapping({"C": 2, "class_weight": {0: 1, "1": 4.5}, "max_iter": 7})
    assert parsed.C == 2.0 and parsed.class_weight == (1.0, 4.5) and parsed.max_iter == 7
    assert parsed.weights(100, 20) == (1.0, 4.5)
    balanced = LogRegParams.from_mapping({"class_weight": "balanced"})
    assert balanced.weights(100, 20) == (100 / 160, 100 / 40)


def test_bad_params_raise_at_trainer_construction() -> None:
    _, tables = tables_for(make_frames())
    with pytest.raises(ConfigError, match="C must be"):
        trainers(tables, {"C": -1})


def test_model_file_and_sklearn_pipeline_agree(tmp_path: Path) -> None:
    _, tables = tables_for(make_frames(5))
    outcome = run_plaintext(trainers(tables, {"C": 0.3}))
    path = tmp_path / "model.json"
    path.write_bytes(outcome.artifacts["model.json"])
    model = LogRegModel.load(path)
    X = np.vstack([t.X for t in tables.values()])
    X[:5, 0] = np.nan  # missing numeric
    X[5:10, 3] = np.nan  # missing category
    ours = model.predict_proba(X)
    assert ours.shape == (X.shape[0],) and np.all((ours > 0) & (ours < 1))
    full = model.to_sklearn_pipeline()
    np.testing.assert_allclose(full.predict_proba(X)[:, 1], ours, rtol=0, atol=1e-13)
    encoded_only = model.to_sklearn_pipeline(include_encoding=False)
    encoded = model.encode(X)
    assert encoded.shape == (X.shape[0], 6)
    assert np.all(encoded[5:10, 3:] == 0.0)
    np.testing.assert_allclose(encoded_only.predict_proba(encoded)[:, 1], ours, atol=1e-13)
    assert encoded_only["logreg"].C == 0.3


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"kind": "gbdt"}', b'{"kind": "logreg"}'],
)
def test_bad_model_files_raise_config_error(content: bytes, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        LogRegModel.from_json(content)
    with pytest.raises(ConfigError):
        LogRegModel.load(tmp_path / "absent.json")


def test_model_with_wrong_coefficient_count_is_rejected() -> None:
    _, tables = tables_for(make_frames())
    doc = json.loads(run_plaintext(trainers(tables)).artifacts["model.json"])
    doc["coef"] = doc["coef"][:-1]
    with pytest.raises(ConfigError, match="entries"):
        LogRegModel.from_dict(doc)
