"""The synthetic consortium: determinism, contract validity, fraud rates, bank-specific patterns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from click.testing import CliRunner
from sklearn.metrics import average_precision_score

from fedtab.cli.main import cli
from fedtab.data.contract import DataContract
from fedtab.data.validate import load_table, to_local_table
from fedtab.errors import ConfigError
from fedtab.synthetic import PATTERNS, consortium_contract, generate_consortium, write_consortium

LABEL = "is_fraud"


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _datagen(out: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["datagen", "--out", str(out), *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def consortium_60k():  # type: ignore[no-untyped-def]
    return generate_consortium(3, 60_000, seed=0)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    _datagen(tmp_path / "a", "--banks", "3", "--rows", "6000", "--seed", "11")
    _datagen(tmp_path / "b", "--banks", "3", "--rows", "6000", "--seed", "11")
    _datagen(tmp_path / "c", "--banks", "3", "--rows", "6000", "--seed", "12")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    expected = {"contract.json", "manifest.json"} | {
        f"{bank}/{split}.csv"
        for bank in ("metro_bank", "rural_bank", "young_bank")
        for split in ("train", "holdout")
    }
    assert set(a) == expected
    assert a == b
    assert set(c) == set(a)
    assert all(c[k] != a[k] for k in a if k.endswith(".csv"))
    assert c["contract.json"] == a["contract.json"]  # the schema does not depend on the seed


def test_every_table_validates_against_the_written_contract(tmp_path: Path) -> None:
    _datagen(tmp_path, "--banks", "4", "--rows", "8000", "--seed", "5")
    contract = DataContract.load(tmp_path / "contract.json")
    assert contract == consortium_contract()
    assert (contract.label, contract.id_column) == (LABEL, "txn_id")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["banks"]) == 4
    ids: set[str] = set()
    for bank in manifest["banks"]:
        for split in ("train", "holdout"):
            path = tmp_path / bank["name"] / f"{split}.csv"
            table = load_table(path, contract)  # raises DataContractError on any violation
            assert table.n_rows == bank[f"{split}_rows"]
            assert int(table.y.sum()) == bank[f"{split}_frauds"]
            # Declared ranges hold exactly (not just within validation's tolerance).
            for j, spec in enumerate(contract.features):
                column = table.X[:, j]
                present = column[~np.isnan(column)]
                if spec.kind == "numeric":
                    assert spec.lower is not None and spec.upper is not None
                    assert present.min() >= spec.lower and present.max() <= spec.upper
                if not spec.nullable:
                    assert not np.isnan(column).any(), spec.name
            new_ids = {line.split(",", 1)[0] for line in path.read_text().splitlines()[1:]}
            assert not ids & new_ids
            ids |= new_ids


def test_fraud_rates_split_and_missing_values(consortium_60k) -> None:  # type: ignore[no-untyped-def]
    c = consortium_60k
    assert c.names == ["metro_bank", "rural_bank", "young_bank"]
    sizes = np.array([len(b.train) + len(b.holdout) for b in c.banks])
    assert sizes.sum() == 60_000
    np.testing.assert_allclose(sizes / 60_000, [0.60, 0.15, 0.25], atol=1e-3)
    for bank in c.banks:
        for frame in (bank.train, bank.holdout):
            assert 0.001 <= frame[LABEL].mean() <= 0.02, bank.name
        holdout_share = len(bank.holdout) / (len(bank.train) + len(bank.holdout))
        assert abs(holdout_share - 0.2) < 0.01
        both = np.concatenate([bank.train_patterns, bank.holdout_patterns])
        frauds = np.concatenate([bank.train[LABEL], bank.holdout[LABEL]])
        np.testing.assert_array_equal(both != "", frauds == 1)
        # Every holdout holds frauds of every pattern, the bank's own pattern most.
        counts = {p: int(np.sum(bank.holdout_patterns == p)) for p in PATTERNS}
        assert min(counts.values()) >= 1, (bank.name, counts)
        assert max(counts, key=counts.__getitem__) == bank.profile.primary_pattern
    assert len({b.profile.primary_pattern for b in c.banks}) == 3
    metro = c.bank("metro_bank").train
    assert 0.005 < metro["card_age_days"].isna().mean() < 0.015
    assert metro["customer_age"].isna().any() and metro["merchant_category"].isna().any()
    assert not metro["amount"].isna().any()
    # Heavy-tailed amounts: the mean is far above the median.
    assert metro["amount"].mean() > 1.5 * metro["amount"].median()
    with pytest.raises(ConfigError):
        c.bank("no_such_bank")


def test_extra_banks_are_variations_with_distinct_names() -> None:
    c = generate_consortium(6, 20_000, seed=2)
    assert len(set(c.names)) == 6
    assert c.names[:3] == ["metro_bank", "rural_bank", "young_bank"]
    assert sum(len(b.train) + len(b.holdout) for b in c.banks) == 20_000
    for bank in c.banks:
        to_local_table(bank.train, c.contract)
        assert 0.001 <= bank.train[LABEL].mean() <= 0.02
    # Extra bank 3 varies base bank 0 but is not a copy of it.
    assert c.banks[3].profile.primary_pattern == c.banks[0].profile.primary_pattern
    assert c.banks[3].profile != c.banks[0].profile


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rows", "500"], "rows"),
        (["--banks", "0"], "banks"),
        (["--holdout-fraction", "1.5"], "holdout-fraction"),
    ],
)
def test_bad_arguments_give_one_line_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(cli, ["datagen", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_library_rejects_bad_arguments() -> None:
    for kwargs in (
        {"n_banks": 3, "rows": 100, "seed": 0},
        {"n_banks": 3, "rows": 10_000, "seed": -1},
        {"n_banks": 3, "rows": 10_000, "seed": 0, "holdout_fraction": 0.0},
        {"n_banks": 65, "rows": 10**7, "seed": 0},
    ):
        with pytest.raises(ConfigError):
            generate_consortium(**kwargs)  # type: ignore[arg-type]


def test_interrupted_write_leaves_no_partial_files(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    consortium = generate_consortium(3, 3_000, seed=1)
    real_replace = os.replace
    calls = {"n": 0}

    def failing_replace(src: str, dst: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_consortium(consortium, tmp_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    # The first two tables are complete; nothing else exists: no temp file, no contract.
    assert names == ["metro_bank/holdout.csv", "metro_bank/train.csv"]
    monkeypatch.setattr(os, "replace", real_replace)
    write_consortium(consortium, tmp_path)
    assert (tmp_path / "contract.json").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def _fit(X: np.ndarray, y: np.ndarray) -> xgb.Booster:
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1, "seed": 0}
    return xgb.train(params, xgb.DMatrix(X, y), num_boost_round=40)


def _ap(booster: xgb.Booster, X: np.ndarray, y: np.ndarray) -> float:
    return float(average_precision_score(y, booster.predict(xgb.DMatrix(X))))


def test_fraud_patterns_differ_so_pooling_helps(consortium_60k) -> None:  # type: ignore[no-untyped-def]
    c = consortium_60k
    tables = {
        b.name: (to_local_table(b.train, c.contract), to_local_table(b.holdout, c.contract))
        for b in c.banks
    }
    models = {name: _fit(train.X, train.y) for name, (train, _) in tables.items()}
    metro_holdout = tables["metro_bank"][1]
    own = _ap(models["metro_bank"], metro_holdout.X, metro_holdout.y)
    foreign = _ap(models["rural_bank"], metro_holdout.X, metro_holdout.y)
    # rural_bank rarely sees card testing, metro_bank's main fraud: its model misses it.
    assert own > foreign + 0.2, (own, foreign)

    pooled = _fit(
        np.vstack([t.X for t, _ in tables.values()]),
        np.concatenate([t.y for t, _ in tables.values()]),
    )
    rural_holdout = tables["rural_bank"][1]
    local = _ap(models["rural_bank"], rural_holdout.X, rural_holdout.y)
    together = _ap(pooled, rural_holdout.X, rural_holdout.y)
    # The small bank gains from the consortium's examples of the other patterns.
    assert together > local, (together, local)
