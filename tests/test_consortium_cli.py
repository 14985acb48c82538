"""`fedtab consortium init/show` through click's CliRunner, as an operator would run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fedtab.cli.main import cli
from fedtab.consortium import load_aggregator_bundle, load_bank_bundle
from fedtab.data.contract import DataContract, FeatureSpec


@pytest.fixture
def schema(tmp_path: Path) -> Path:
    path = tmp_path / "schema.json"
    DataContract(
        features=(FeatureSpec("amount", "numeric", lower=0.0, upper=500.0),), label="fraud"
    ).save(path)
    return path


def _init(tmp_path: Path, schema: Path, *extra: str, small_keys: bool = True) -> Result:
    args = ["consortium", "init", str(tmp_path / "c"), "--schema", str(schema), *extra]
    env: dict[str, str | None] = {"FEDTAB_ALLOW_SMALL_KEYS": "1" if small_keys else None}
    return CliRunner().invoke(cli, args, env=env)


def test_init_and_show(tmp_path: Path, schema: Path) -> None:
    result = _init(
        tmp_path,
        schema,
        *("--bank", "a", "--bank", "b", "--bank", "c", "--key-bits", "512"),
        "--aggregator-address",
        "agg.example.org:7000",
    )
    assert result.exit_code == 0, result.output
    bank = load_bank_bundle(tmp_path / "c" / "banks" / "b")
    out = result.stdout
    assert bank.config.key_fingerprint in out
    assert str(tmp_path / "c" / "aggregator") in out and "bank 'c'" in out
    assert "keep offline" in out
    assert "fewer than 3" not in result.stderr
    assert "INSECURE" in result.stderr
    assert load_aggregator_bundle(tmp_path / "c" / "aggregator").config.aggregator_address == (
        "agg.example.org:7000"
    )

    shown = CliRunner().invoke(cli, ["consortium", "show", str(tmp_path / "c" / "banks" / "b")])
    assert shown.exit_code == 0, shown.output
    assert "bank bundle" in shown.stdout and "bank 'b'" in shown.stdout
    assert bank.config.consortium_id in shown.stdout
    assert format(bank.private_key.p, "x") not in shown.output
    assert bank.shard_key.hex() not in shown.output
    root = CliRunner().invoke(cli, ["consortium", "show", str(tmp_path / "c")])
    assert root.exit_code == 0 and "consortium root" in root.stdout


def test_warns_with_fewer_than_three_banks(tmp_path: Path, schema: Path) -> None:
    result = _init(tmp_path, schema, "--bank", "a", "--bank", "b", "--key-bits", "512")
    assert result.exit_code == 0, result.output
    assert "only 2 bank(s)" in result.stderr


def test_small_key_refused_without_test_flag(tmp_path: Path, schema: Path) -> None:
    result = _init(tmp_path, schema, "--bank", "a", "--key-bits", "512", small_keys=False)
    assert result.exit_code == 3
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: KeyMaterialError: key size 512")
    assert not (tmp_path / "c").exists()


def test_bad_schema_path_is_one_line(tmp_path: Path) -> None:
    result = _init(tmp_path, tmp_path / "nope.json", "--bank", "a", "--key-bits", "512")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.json" in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in result.output
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("address", ["localhost", "0.0.0.0:1", "h:99999", "bad_host:80"])
def test_bad_address_is_a_usage_error(tmp_path: Path, schema: Path, address: str) -> None:
    result = _init(tmp_path, schema, "--bank", "a", "--aggregator-address", address)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--aggregator-address" in errors[0] and address in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "c").exists()


def test_bad_bank_name_and_existing_dir(tmp_path: Path, schema: Path) -> None:
    bad = _init(tmp_path, schema, "--bank", "a/../../x", "--key-bits", "512")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ConfigError: bank name")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    exists = _init(tmp_path, schema, "--bank", "a", "--key-bits", "512")
    assert exists.exit_code == 2 and "not empty" in exists.stderr
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"


def test_show_on_non_consortium_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["consortium", "show", str(tmp_path)])
    assert result.exit_code == 2 and "consortium.json is missing" in result.stderr


def test_show_reports_corrupt_config(tmp_path: Path) -> None:
    (tmp_path / "consortium.json").write_text(json.dumps({"banks": []}))
    result = CliRunner().invoke(cli, ["consortium", "show", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: ConfigError:")


def test_options_from_environment(tmp_path: Path, schema: Path) -> None:
    env = {
        "FEDTAB_ALLOW_SMALL_KEYS": "1",
        "FEDTAB_CONSORTIUM_INIT_KEY_BITS": "512",
        "FEDTAB_CONSORTIUM_INIT_AGGREGATOR_ADDRESS": "[::1]:9000",
        "FEDTAB_CONSORTIUM_INIT_BANK": "x y z",
        "FEDTAB_CONSORTIUM_INIT_SCHEMA": str(schema),
    }
    args = ["consortium", "init", str(tmp_path / "c")]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    bundle = load_aggregator_bundle(tmp_path / "c" / "aggregator")
    assert bundle.config.banks == ("x", "y", "z") and bundle.config.key_bits == 512
    assert bundle.config.aggregator_address == "[::1]:9000"
