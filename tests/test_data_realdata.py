"""Good-path checks on the real tables in ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fedtab.cli.main import cli
from fedtab.data.contract import DataContract
from fedtab.data.infer import infer_contract
from fedtab.data.tables import read_table
from fedtab.data.validate import load_table
from fedtab.errors import DataContractError

SHARED_DATA = Path(
    os.environ.get("FEDTAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ULB = SHARED_DATA / "ulb_creditcard" / "creditcard_union.csv"
TAIWAN = SHARED_DATA / "credit_default_taiwan"
TAIWAN_PARTS = ["guest", "host_1", "host_2", "test"]

pytestmark = pytest.mark.realdata


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FEDTAB_SHARED_DATA to ../shared/data)")
    return path


def taiwan(part: str) -> Path:
    return need(TAIWAN / f"default_credit_homo_{part}.csv")


def test_ulb_infer_load_and_parquet_agree(tmp_path: Path) -> None:
    path = need(ULB)
    raw = pd.read_csv(path)
    contract = infer_contract(read_table(path), "Class")
    assert contract.feature_names == [c for c in raw.columns if c != "Class"]
    assert all(f.kind == "numeric" and not f.nullable for f in contract.features)
    for spec in contract.features:
        assert spec.lower is not None and spec.upper is not None
        assert spec.lower <= raw[spec.name].min() and spec.upper >= raw[spec.name].max()
    local = load_table(path, contract)
    np.testing.assert_array_equal(local.X, raw[contract.feature_names].to_numpy(dtype=float))
    np.testing.assert_array_equal(local.y, raw["Class"].to_numpy(dtype=float))
    raw.to_parquet(tmp_path / "ulb.parquet")
    np.testing.assert_array_equal(load_table(tmp_path / "ulb.parquet", contract).X, local.X)


def test_ulb_cli_round_trip(tmp_path: Path) -> None:
    path = need(ULB)
    out = tmp_path / "ulb.json"
    runner = CliRunner()
    inferred = runner.invoke(
        cli, ["schema", "infer", str(path), "--label", "Class", "--out", str(out)]
    )
    assert inferred.exit_code == 0, inferred.output
    assert DataContract.load(out).label == "Class"
    checked = runner.invoke(cli, ["schema", "check", str(path), "--schema", str(out)])
    assert checked.exit_code == 0, checked.output
    raw = pd.read_csv(path)
    assert (
        checked.stdout == f"ok: {len(raw)} rows, 30 features, {int(raw['Class'].sum())} positives\n"
    )


def test_taiwan_split_follows_a_contract_inferred_from_one_bank(tmp_path: Path) -> None:
    out = tmp_path / "taiwan.json"
    runner = CliRunner()
    args = [
        "schema",
        "infer",
        str(taiwan("guest")),
        "--label",
        "y",
        "--id",
        "id",
        "--out",
        str(out),
    ]
    inferred = runner.invoke(cli, args)
    assert inferred.exit_code == 0, inferred.output
    document = json.loads(out.read_text())
    assert document["id_column"] == "id"
    assert [f["name"] for f in document["features"]] == [f"x{i}" for i in range(23)]
    for part in TAIWAN_PARTS:
        raw = pd.read_csv(taiwan(part))
        checked = runner.invoke(cli, ["schema", "check", str(taiwan(part)), "--schema", str(out)])
        assert checked.exit_code == 0, checked.output
        assert (
            checked.stdout == f"ok: {len(raw)} rows, 23 features, {int(raw['y'].sum())} positives\n"
        )


def test_taiwan_tails_exceed_one_banks_range_by_more_than_one_width() -> None:
    # Why the default range tolerance is 10 widths, not 1: heavy tails differ between banks.
    contract = infer_contract(read_table(taiwan("guest")), "y", "id")
    with pytest.raises(DataContractError, match="far outside the contract range"):
        load_table(taiwan("host_2"), contract, range_tolerance=1.0)
    assert load_table(taiwan("host_2"), contract).n_rows == len(pd.read_csv(taiwan("host_2")))
