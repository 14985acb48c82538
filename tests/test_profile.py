"""The ``profile`` job: consortium counts, means and standard deviations by secure sums."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedtab.crypto.keys import PrivateKey
from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.data.infer import infer_contract
from fedtab.data.validate import to_local_table
from fedtab.errors import ConfigError, DataContractError, ProtocolError
from fedtab.moments import hard_range
from fedtab.profiling import ProfileParams, ProfileTrainer
from fedtab.protocol.local_runner import run_encrypted, run_plaintext
from fedtab.protocol.steps import JobContext

BANKS = ("bank_a", "bank_b", "bank_c")
CHANNELS = np.array(["web", "pos", "atm", None], dtype=object)


def shared_data() -> Path:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("FEDTAB_SHARED_DATA", default))


def make_frames(seed: int = 7) -> dict[str, pd.DataFrame]:
    """Three banks' frames with numeric, missing and categorical values (label ``y``)."""
    rng = np.random.default_rng(seed)
    frames = {}
    for b, bank in enumerate(BANKS):
        n = 300 + 50 * b
        amount = rng.lognormal(3.0 + 0.3 * b, 1.0, n)
        amount[rng.random(n) < 0.1] = np.nan
        frames[bank] = pd.DataFrame(
            {
                "amount": amount,
                "age": rng.integers(18, 90, n).astype(float),
                "offset": 1e6 + rng.normal(0.0, 1e-2, n),  # large mean, tiny spread
                "channel": rng.choice(CHANNELS, n, p=[0.4, 0.4, 0.15, 0.05]),
                "y": (rng.random(n) < 0.2 + 0.05 * b).astype(int),
            }
        )
    return frames


def tables_for(frames: dict[str, pd.DataFrame]) -> tuple[DataContract, dict[str, LocalTable]]:
    contract = infer_contract(pd.concat(frames.values(), ignore_index=True), label="y")
    return contract, {bank: to_local_table(df, contract) for bank, df in frames.items()}


def trainers(tables: dict[str, LocalTable], params: dict[str, object] | None = None) -> dict:
    names = tuple(sorted(tables))
    return {
        bank: ProfileTrainer(JobContext("job-1", bank, names, 0, params or {}), table)
        for bank, table in tables.items()
    }


def check_against_pandas(result: dict, pooled: pd.DataFrame, contract: DataContract) -> None:
    assert result["rows_total"] == len(pooled)
    assert result["positives_total"] == int(pooled[contract.label].sum())
    for spec in contract.features:
        got = result["features"][spec.name]
        column = pooled[spec.name]
        assert got["count"] == int(column.notna().sum()), spec.name
        if spec.kind == "numeric":
            np.testing.assert_allclose(got["mean"], column.mean(), rtol=1e-9, err_msg=spec.name)
            np.testing.assert_allclose(got["std"], column.std(), rtol=1e-6, err_msg=spec.name)
        else:
            expected = column.value_counts().to_dict()
            assert got["categories"] == {c: int(expected.get(c, 0)) for c in spec.categories}


def test_profile_encrypted_equals_pandas(small_private_key: PrivateKey) -> None:
    frames = make_frames()
    contract, tables = tables_for(frames)
    outcome = run_encrypted(trainers(tables), small_private_key)
    result = json.loads(outcome.artifacts["result.json"])
    check_against_pandas(result, pd.concat(frames.values(), ignore_index=True), contract)
    assert result["std_ddof"] == 1
    assert outcome.stats.steps == 2
    # the std of a feature at 1e6 with spread 1e-2 survives: deviations are taken from the mean
    offset = pd.concat(frames.values())["offset"]
    np.testing.assert_allclose(result["features"]["offset"]["std"], offset.std(), rtol=1e-6)


def test_profile_proposals_are_the_released_results() -> None:
    frames = make_frames(3)
    _, tables = tables_for(frames)
    outcome = run_plaintext(trainers(tables))
    (first_req, first), (second_req, second) = outcome.commits
    assert (first_req.step_id, second_req.step_id) == ("moments", "deviations")
    assert set(first) == {"rows_total", "positives_total", "count", "mean", "category_counts"}
    assert set(second) == {"std"}
    result = json.loads(outcome.artifacts["result.json"])
    assert result["features"]["amount"]["std"] == second["std"][0]


def test_profile_encodings_do_not_depend_on_local_rows() -> None:
    frames = make_frames(5)
    contract, tables = tables_for(frames)
    small = {bank: LocalTable(contract, t.X[:10], t.y[:10]) for bank, t in tables.items()}
    big = trainers(tables, {"max_rows_per_bank": 4096})
    little = trainers(small, {"max_rows_per_bank": 4096})
    assert big["bank_a"].next_request() == little["bank_a"].next_request()
    assert big["bank_a"].next_request().encoding.clip == 4096.0


def test_profile_single_pooled_trainer_equals_federated() -> None:
    frames = make_frames(11)
    contract, tables = tables_for(frames)
    pooled = LocalTable(
        contract,
        np.vstack([t.X for t in tables.values()]),
        np.concatenate([t.y for t in tables.values()]),
    )
    central = run_plaintext({"all": ProfileTrainer(JobContext("j", "all", ("all",)), pooled)})
    federated = json.loads(run_plaintext(trainers(tables)).artifacts["result.json"])
    centralized = json.loads(central.artifacts["result.json"])
    for name, stats in federated["features"].items():
        for key, value in stats.items():
            if isinstance(value, float):
                np.testing.assert_allclose(value, centralized["features"][name][key], rtol=1e-12)
            else:
                assert value == centralized["features"][name][key]


def test_profile_replay_of_commits_restores_state() -> None:
    _, tables = tables_for(make_frames(13))
    outcome = run_plaintext(trainers(tables))
    fresh = trainers(tables)["bank_b"]
    for request, proposal in outcome.commits:
        assert fresh.next_request() == request
        fresh.commit(request, proposal)
    assert fresh.next_request() is None
    assert fresh.result() == outcome.artifacts


@pytest.mark.parametrize(
    "params",
    [{"max_rows_per_bank": 0}, {"max_rows_per_bank": "many"}, {"max_rows": 10},
     {"max_rows_per_bank": True}],
)
def test_profile_params_rejected(params: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ProfileParams.from_mapping(params)


def test_profile_rejects_more_rows_than_declared() -> None:
    _, tables = tables_for(make_frames())
    with pytest.raises(ConfigError, match="max_rows_per_bank"):
        trainers(tables, {"max_rows_per_bank": 100})


def test_profile_needs_declared_ranges_and_values_inside_them() -> None:
    spec = FeatureSpec("x", "numeric", lower=0.0, upper=1.0)
    contract = DataContract((spec,), label="y")
    lower, upper = hard_range(spec)
    assert lower < 0.0 and upper > 1.0
    far = LocalTable(contract, np.array([[0.5], [upper + 1.0]]), np.array([0.0, 1.0]))
    with pytest.raises(DataContractError, match="row 1"):
        trainers({"a": far})
    open_range = DataContract((FeatureSpec("x", "numeric"),), label="y")
    table = LocalTable(open_range, np.array([[0.5]]), np.array([1.0]))
    with pytest.raises(DataContractError, match="declared range"):
        trainers({"a": table})


def test_profile_rejects_out_of_order_steps() -> None:
    _, tables = tables_for(make_frames())
    trainer = trainers(tables)["bank_a"]
    request = trainer.next_request()
    assert request is not None
    trainer.commit(request, trainer.propose(request, trainer.contribution(request)))
    with pytest.raises(ProtocolError):
        trainer.contribution(request)
    with pytest.raises(ProtocolError):
        trainer.result()


@pytest.mark.realdata
def test_profile_taiwan_encrypted_equals_pandas(small_private_key: PrivateKey) -> None:
    folder = shared_data() / "credit_default_taiwan"
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} is absent (set FEDTAB_SHARED_DATA)")
    parts = ("guest", "host_1", "host_2")
    frames = {p: pd.read_csv(folder / f"default_credit_homo_{p}.csv") for p in parts}
    contract = infer_contract(frames["guest"], label="y", id_column="id")
    tables = {p: to_local_table(df, contract) for p, df in frames.items()}
    outcome = run_encrypted(trainers(tables), small_private_key)
    result = json.loads(outcome.artifacts["result.json"])
    check_against_pandas(result, pd.concat(frames.values(), ignore_index=True), contract)


def test_profile_of_categorical_only_contract_needs_one_sum() -> None:
    frames = make_frames(17)
    only_channel = {b: df[["channel", "y"]] for b, df in frames.items()}
    contract, tables = tables_for(only_channel)
    outcome = run_plaintext(trainers(tables))
    assert [r.step_id for r, _ in outcome.commits] == ["moments"]
    check_against_pandas(
        json.loads(outcome.artifacts["result.json"]),
        pd.concat(only_channel.values(), ignore_index=True),
        contract,
    )
