"""Federated GBDT end to end: lossless vs centralized, stock XGBoost compatibility, agreement.

Real Paillier keys (small, generated per test session), real xgboost; data is synthetic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from fedtab.crypto.keys import PrivateKey, generate_keypair
from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.errors import ConfigError, PrivacyError, ProposalMismatchError, ProtocolError
from fedtab.gbdt.central import train_central
from fedtab.gbdt.model import GBDTModel, Tree
from fedtab.gbdt.predict import contract_frame
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import JobOutcome, run_encrypted, run_plaintext
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

BANKS = ("bank_a", "bank_b", "bank_c")
PARAMS: dict[str, Any] = {
    "n_estimators": 4,
    "max_depth": 3,
    "max_bin": 16,
    "learning_rate": 0.3,
    "min_child_samples": 20,
}


def make_contract() -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("score", "numeric", lower=-6.0, upper=6.0),
            FeatureSpec("balance", "numeric", lower=-6.0, upper=6.0),
            FeatureSpec("amount", "numeric", lower=0.0, upper=50_000.0, nullable=False),
            FeatureSpec("channel", "categorical", categories=("atm", "pos", "web", "wire")),
            FeatureSpec("noise", "numeric", lower=-6.0, upper=6.0),
        ),
        label="fraud",
    )


def make_table(n: int, seed: int) -> LocalTable:
    """Rows with a signal in every feature kind; ``balance`` is 15% missing (NaN)."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 5))
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = rng.normal(size=n)
    X[:, 2] = np.round(rng.lognormal(3.0, 1.5, size=n), 2)
    X[:, 3] = rng.integers(0, 4, size=n)
    X[:, 4] = rng.normal(size=n)
    missing = rng.random(n) < 0.15
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.4 * np.log1p(X[:, 2]) + (X[:, 3] == 2) - 3.0
    logit[missing] += 1.5
    X[missing, 1] = np.nan
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    return LocalTable(make_contract(), X, y)


def split_banks(table: LocalTable, sizes: tuple[int, ...]) -> dict[str, LocalTable]:
    bounds = np.cumsum((0, *sizes))
    return {
        name: LocalTable(table.contract, table.X[lo:hi], table.y[lo:hi])
        for name, lo, hi in zip(BANKS, bounds[:-1], bounds[1:], strict=True)
    }


def trainers(
    tables: Mapping[str, LocalTable], params: Mapping[str, Any], seed: int = 7
) -> dict[str, GBDTTrainer]:
    names = tuple(sorted(tables))
    return {
        name: GBDTTrainer(JobContext("job-1", name, names, seed=seed, params=dict(params)), t)
        for name, t in tables.items()
    }


@pytest.fixture(scope="module")
def private_key() -> PrivateKey:
    return generate_keypair(512, allow_small_for_tests=True)


@pytest.fixture(scope="module")
def pooled() -> LocalTable:
    return make_table(1500, seed=1)


@pytest.fixture(scope="module")
def federated(pooled: LocalTable, private_key: PrivateKey) -> tuple[JobOutcome, GBDTTrainer]:
    banks = trainers(split_banks(pooled, (700, 500, 300)), PARAMS)
    outcome = run_encrypted(banks, private_key)
    return outcome, banks["bank_a"]


def assert_same_trees(a: GBDTModel, b: GBDTModel) -> None:
    assert len(a.trees) == len(b.trees)
    assert a.base_score == b.base_score
    for ta, tb in zip(a.trees, b.trees, strict=True):
        np.testing.assert_array_equal(ta.left, tb.left)
        np.testing.assert_array_equal(ta.feature, tb.feature)
        np.testing.assert_array_equal(ta.split_bin, tb.split_bin)
        np.testing.assert_array_equal(ta.threshold, tb.threshold)
        np.testing.assert_array_equal(ta.default_left, tb.default_left)
        np.testing.assert_allclose(ta.value, tb.value, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(ta.cover, tb.cover, rtol=1e-6)


def test_encrypted_federated_equals_centralized(
    federated: tuple[JobOutcome, GBDTTrainer], pooled: LocalTable
) -> None:
    outcome, bank = federated
    central, _ = train_central(pooled, PARAMS, seed=7)
    fed = bank.model()
    assert sum(t.n_nodes for t in fed.trees) > 4 * 3, "trees should actually split"
    assert_same_trees(fed, central)
    assert outcome.stats.ciphertexts > 0 and outcome.stats.decrypt_seconds > 0
    np.testing.assert_allclose(fed.predict_proba(pooled.X), central.predict_proba(pooled.X),
                               rtol=1e-6, atol=1e-9)


def test_every_bank_ends_with_the_same_model_file(
    federated: tuple[JobOutcome, GBDTTrainer],
) -> None:
    outcome, bank = federated
    assert outcome.artifacts == bank.result()
    assert set(outcome.artifacts) == {"model.json"}


def test_proposals_carry_model_parts_never_histograms(
    federated: tuple[JobOutcome, GBDTTrainer],
) -> None:
    outcome, _ = federated
    allowed = {"step", "cuts", "has_missing", "base_score", "root", "splits"}
    for request, proposal in outcome.commits:
        if request.step_id.endswith("/counts"):
            # which nodes of the level can still split, and the next request's (public) length
            assert set(proposal) == {"step", "open", "grads_length"}
            assert all(isinstance(n, int) for n in proposal["open"])
            continue
        assert set(proposal) <= allowed
        if request.step_id != "bins":
            # a few numbers per split (node, feature, bin, threshold, gain, children's count,
            # cover, value), however long the histogram vector that was summed
            assert _count_numbers(proposal) <= 3 + 11 * len(proposal["splits"])
            assert request.length >= 3 * 16


def _count_numbers(data: Any) -> int:
    if isinstance(data, dict):
        return sum(_count_numbers(v) for v in data.values())
    if isinstance(data, list):
        return sum(_count_numbers(v) for v in data)
    return int(isinstance(data, int | float) and not isinstance(data, bool))


def test_stock_xgboost_loads_and_predicts_identically(
    federated: tuple[JobOutcome, GBDTTrainer], pooled: LocalTable, tmp_path: Path
) -> None:
    outcome, bank = federated
    path = tmp_path / "model.json"
    path.write_bytes(outcome.artifacts["model.json"])
    booster = xgb.Booster(model_file=str(path))
    fresh = make_table(800, seed=99)  # unseen rows, with NaNs in `balance`
    assert np.isnan(fresh.X[:, 1]).any()
    dmatrix = xgb.DMatrix(fresh.X, feature_names=fresh.feature_names)
    model = bank.model()
    np.testing.assert_allclose(booster.predict(dmatrix), model.predict_proba(fresh.X), atol=1e-6)
    np.testing.assert_allclose(
        booster.predict(dmatrix, output_margin=True), model.predict_margin(fresh.X), atol=1e-5
    )
    # a learned default direction is used: some split sends missing values left
    assert any(t.default_left[t.left >= 0].any() for t in model.trees)
    # the training rows' margins kept by the trainer equal the predictor's
    np.testing.assert_allclose(
        bank.train_margin, model.predict_margin(bank.table.X), rtol=0, atol=1e-12
    )


def test_model_file_is_self_describing(
    federated: tuple[JobOutcome, GBDTTrainer], tmp_path: Path
) -> None:
    outcome, bank = federated
    path = tmp_path / "model.json"
    path.write_bytes(outcome.artifacts["model.json"])
    booster = xgb.Booster(model_file=str(path))
    assert booster.feature_names == make_contract().feature_names
    contract = DataContract.from_dict(json.loads(booster.attr("fedtab_contract") or "{}"))
    assert contract == make_contract()
    meta = json.loads(booster.attr("fedtab") or "{}")
    assert meta["params"]["max_depth"] == PARAMS["max_depth"]
    assert meta["bank_names"] == list(BANKS)
    assert [np.float32(c) for c in meta["cuts"][0]] == list(bank.cuts[0])


def test_continued_training_with_stock_xgboost(
    federated: tuple[JobOutcome, GBDTTrainer], tmp_path: Path
) -> None:
    outcome, _ = federated
    path = tmp_path / "model.json"
    path.write_bytes(outcome.artifacts["model.json"])
    local = make_table(600, seed=5)
    # categorical features are XGBoost categorical: train on category columns (contract order)
    frame = contract_frame(local.X, local.contract)
    dtrain = xgb.DMatrix(frame, local.y, enable_categorical=True)
    params = {"objective": "binary:logistic", "tree_method": "hist", "nthread": 1}
    before = xgb.Booster(model_file=str(path))
    after = xgb.train(params, dtrain, num_boost_round=3, xgb_model=str(path))
    assert after.num_boosted_rounds() == PARAMS["n_estimators"] + 3
    loss_before = _logloss(local.y, before.predict(dtrain))
    loss_after = _logloss(local.y, after.predict(dtrain))
    assert loss_after < loss_before


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_quality_close_to_xgboost_hist() -> None:
    train, test = make_table(6000, seed=11), make_table(4000, seed=12)
    params = {"n_estimators": 30, "max_depth": 4, "learning_rate": 0.2, "max_bin": 64,
              "min_child_samples": 20}
    banks = trainers(split_banks(train, (3000, 2000, 1000)), params)
    run_plaintext(banks)
    fed = banks["bank_a"].model()
    xgb_params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4,
                  "eta": 0.2, "max_bin": 64, "nthread": 1}
    reference = xgb.train(xgb_params, xgb.DMatrix(train.X, train.y), num_boost_round=30)
    auc_fed = roc_auc_score(test.y, fed.predict_proba(test.X))
    auc_xgb = roc_auc_score(test.y, reference.predict(xgb.DMatrix(test.X)))
    assert auc_fed > 0.75
    assert abs(auc_fed - auc_xgb) < 0.01


class TamperedTrainer(GBDTTrainer):
    """A bank that proposes a different leaf value at one level of the first tree."""

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        proposal = super().propose(request, aggregate)
        if request.step_id == "tree/0/depth/1/grads" and proposal["splits"]:
            proposal["splits"][0]["left"]["value"] += 0.5
        return proposal


@pytest.mark.parametrize("encrypted", [False, True])
def test_disagreeing_bank_is_detected_and_step_not_committed(
    pooled: LocalTable, private_key: PrivateKey, encrypted: bool
) -> None:
    tables = split_banks(pooled, (700, 500, 300))
    banks: dict[str, GBDTTrainer] = trainers(tables, PARAMS)
    names = tuple(sorted(tables))
    ctx = JobContext("job-1", "bank_c", names, seed=7, params=dict(PARAMS))
    banks["bank_c"] = TamperedTrainer(ctx, tables["bank_c"])
    with pytest.raises(ProposalMismatchError, match="tree/0/depth/1/grads"):
        if encrypted:
            run_encrypted(banks, private_key)
        else:
            run_plaintext(banks)
    for bank in banks.values():
        request = bank.next_request()
        assert request is not None and request.step_id == "tree/0/depth/1/grads"
    with pytest.raises(ProtocolError, match="not finished"):
        banks["bank_a"].result()


def test_min_child_samples_floor_is_enforced() -> None:
    """A signal carried by 30 rows is isolated with a floor of 10 but not with 50."""
    rng = np.random.default_rng(3)
    n = 900
    X = rng.normal(size=(n, 5))
    X[:, 2] = rng.uniform(0, 100, size=n)
    X[:, 3] = rng.integers(0, 4, size=n)
    X[:30, 0] = rng.uniform(4.0, 5.0, size=30)
    y = (rng.random(n) < 0.05).astype(np.float64)
    y[:30] = 1.0
    order = rng.permutation(n)
    table = LocalTable(make_contract(), X[order], y[order])
    counts = {}
    for floor in (10, 50):
        params = {"n_estimators": 3, "max_depth": 4, "max_bin": 32, "min_child_samples": floor}
        banks = trainers(split_banks(table, (300, 300, 300)), params)
        run_plaintext(banks)
        model = banks["bank_b"].model()
        least = []
        for tree in model.trees:
            internal = tree.left >= 0
            # the model carries no row counts: count the consortium's rows in every node
            paths = tree_node_counts(tree, table.X)
            assert (paths[1:] >= floor).all()
            assert (paths[internal] >= 2 * floor).all()
            least.append(int(paths[~internal].min()))
        counts[floor] = min(least)
    assert counts[10] < 50 <= counts[50]


def tree_node_counts(tree: Tree, X: np.ndarray) -> np.ndarray:
    """Rows of ``X`` passing through each node of ``tree`` (a leaf's own, an internal node's
    summed over its subtree)."""
    counts = np.bincount(tree.leaf_index(X), minlength=tree.n_nodes)
    for node in range(tree.n_nodes - 1, -1, -1):  # children come after their parents
        if tree.left[node] >= 0:
            counts[node] = counts[tree.left[node]] + counts[tree.right[node]]
    return counts


def test_too_few_rows_for_the_floor_is_refused() -> None:
    table = make_table(90, seed=4)
    banks = trainers(split_banks(table, (30, 30, 30)), {"min_child_samples": 50})
    with pytest.raises(PrivacyError):
        run_plaintext(banks)


def test_sampling_is_deterministic_and_differs_by_seed(pooled: LocalTable) -> None:
    params = dict(PARAMS, subsample=0.7, colsample_bytree=0.6)
    tables = split_banks(pooled, (700, 500, 300))
    first = trainers(tables, params, seed=1)
    again = trainers(tables, params, seed=1)
    other = trainers(tables, params, seed=2)
    results = [run_plaintext(t).artifacts for t in (first, again, other)]
    assert results[0] == results[1]
    assert results[0] != results[2]
    used = {int(f) for t in first["bank_a"].model().trees for f in t.feature[t.left >= 0]}
    assert len(used) >= 1


def test_replay_rebuilds_the_same_state(pooled: LocalTable) -> None:
    tables = split_banks(pooled, (700, 500, 300))
    outcome = run_plaintext(trainers(tables, PARAMS))
    replayed = trainers(tables, PARAMS)["bank_b"]
    for request, proposal in outcome.commits:
        assert replayed.next_request() == request  # commit() alone keeps naming the steps
        replayed.commit(request, proposal)
    assert replayed.next_request() is None
    assert replayed.result() == outcome.artifacts


def test_mid_tree_replay_needs_the_aggregates(pooled: LocalTable) -> None:
    """Committing without propose loses the parent histograms the next level subtracts from."""
    tables = split_banks(pooled, (700, 500, 300))
    live = trainers(tables, PARAMS)
    log: list[tuple[SumRequest, np.ndarray, JsonDict]] = []
    while (request := live["bank_a"].next_request()) is not None and len(log) < 5:
        total = np.sum([t.contribution(request) for t in live.values()], axis=0)
        proposals = [t.propose(request, total) for t in live.values()]
        for t in live.values():
            t.commit(request, proposals[0])
        log.append((request, total, proposals[0]))
    assert log[-1][0].step_id == "tree/0/depth/1/grads"
    request = live["bank_a"].next_request()
    assert request is not None and request.step_id == "tree/0/depth/2/counts"
    total = np.sum([t.contribution(request) for t in live.values()], axis=0)
    expected = live["bank_a"].propose(request, total)

    blind = trainers(tables, PARAMS)["bank_a"]
    informed = trainers(tables, PARAMS)["bank_a"]
    for step, aggregate, proposal in log:
        blind.commit(step, proposal)
        assert informed.propose(step, aggregate) == proposal
        informed.commit(step, proposal)
    assert informed.propose(request, total) == expected
    with pytest.raises(ProtocolError, match="restarts mid-tree"):
        blind.propose(request, total)


def test_bad_params_and_wrong_steps_are_rejected(pooled: LocalTable) -> None:
    ctx = JobContext("job-1", "bank_a", BANKS, params={"max_depth": 0})
    with pytest.raises(ConfigError, match="max_depth"):
        GBDTTrainer(ctx, pooled)
    bank = trainers({"bank_a": pooled}, PARAMS)["bank_a"]
    request = bank.next_request()
    assert request is not None and request.step_id == "bins"
    wrong = SumRequest("tree/0/depth/0/counts", request.length, request.encoding)
    with pytest.raises(ProtocolError, match="unexpected step"):
        bank.contribution(wrong)


def test_scale_pos_weight_matches_xgboost_prior_and_exports(tmp_path: Path) -> None:
    table = make_table(1200, seed=21)
    params = dict(PARAMS, scale_pos_weight=4.0, max_delta_step=0.7)
    model, data = train_central(table, params)
    positives, rows = float(table.y.sum()), float(table.n_rows)
    prior = 4.0 * positives / (4.0 * positives + rows - positives)
    assert model.base_score == pytest.approx(prior, rel=1e-6)
    reference = xgb.train(
        {"objective": "binary:logistic", "scale_pos_weight": 4.0, "nthread": 1},
        xgb.DMatrix(table.X, table.y), num_boost_round=1,
    )
    config = json.loads(reference.save_config())
    xgb_prior = float(config["learner"]["learner_model_param"]["base_score"].strip("[]"))
    # both use the weighted positive rate q: fedtab its exact log-odds (the loss optimum),
    # XGBoost one Newton step from margin 0, i.e. margin 4 (q - 1/2)
    assert 1.0 / (1.0 + np.exp(-4.0 * (prior - 0.5))) == pytest.approx(xgb_prior, rel=1e-5)
    path = tmp_path / "model.json"
    path.write_bytes(data)
    booster = xgb.Booster(model_file=str(path))
    dmatrix = xgb.DMatrix(table.X, feature_names=table.feature_names)
    np.testing.assert_allclose(booster.predict(dmatrix), model.predict_proba(table.X), atol=1e-6)
    # max_delta_step bounds every leaf weight (value = eta * weight)
    for tree in model.trees:
        assert np.all(np.abs(tree.value) <= PARAMS["learning_rate"] * 0.7 + 1e-6)
