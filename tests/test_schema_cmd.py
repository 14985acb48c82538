"""`fedtab schema infer/check` through click's CliRunner, on a corpus of malformed tables.

Every malformed table is generated in tmp_path from one good table by a single edit, so each
case fails for exactly one reason; the test checks the exit code, that the error is exactly one
line naming the problem (and the column and row where there is one), that no traceback shows,
and that ``schema infer --out`` leaves no file behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from fedtab.cli.main import cli
from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.errors import DataContractError

N_ROWS = 30
HEADER = "txn_id,amount,channel,age,fraud"


def good_frame() -> pd.DataFrame:
    """30 rows that satisfy :func:`contract`."""
    rng = np.random.default_rng(7)
    age = rng.integers(18, 90, N_ROWS).astype(float)
    age[[4, 11]] = np.nan
    return pd.DataFrame(
        {
            "txn_id": np.arange(1000, 1000 + N_ROWS),
            "amount": np.round(rng.uniform(1.0, 900.0, N_ROWS), 2),
            "channel": rng.choice(["atm", "pos", "web"], N_ROWS),
            "age": age,
            "fraud": (np.arange(N_ROWS) % 5 == 0).astype(int),
        }
    )


def contract() -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", lower=0.0, upper=1000.0, nullable=False),
            FeatureSpec("channel", "categorical", categories=("atm", "pos", "web"), nullable=False),
            FeatureSpec("age", "numeric", lower=18.0, upper=100.0, nullable=True),
        ),
        label="fraud",
        id_column="txn_id",
    )


def csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.write_text(csv_text(frame), encoding="utf-8")
    return path


def edited(**edits: tuple[int, object]) -> pd.DataFrame:
    """The good frame with ``column=(data_row_1_based, value)`` edits (column cast to object)."""
    frame = good_frame()
    for column, (row, value) in edits.items():
        frame[column] = frame[column].astype(object)
        frame.loc[row - 1, column] = value
    return frame


# Each maker writes one malformed table into the folder it is given and returns its path.
Maker = Callable[[Path], Path]


def _lines_edit(edit: Callable[[list[str]], list[str]]) -> Maker:
    def make(folder: Path) -> Path:
        lines = csv_text(good_frame()).splitlines()
        path = folder / "t.csv"
        path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
        return path

    return make


def _frame(frame_fn: Callable[[], pd.DataFrame]) -> Maker:
    return lambda folder: write_csv(frame_fn(), folder / "t.csv")


def _bytes(name: str, data: Callable[[], bytes]) -> Maker:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data())
        return path

    return make


def _truncated_parquet(folder: Path) -> Path:
    path = folder / "t.parquet"
    good_frame().to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _duplicate_parquet(folder: Path) -> Path:
    frame = good_frame()
    arrays = [pa.array(frame[c]) for c in frame.columns] + [pa.array(frame["amount"])]
    path = folder / "t.parquet"
    pq.write_table(pa.table(arrays, names=[*frame.columns, "amount"]), path)
    return path


def _parquet(frame_fn: Callable[[], pd.DataFrame]) -> Maker:
    def make(folder: Path) -> Path:
        path = folder / "t.pq"
        frame_fn().to_parquet(path)
        return path

    return make


def _with_dates() -> pd.DataFrame:
    frame = good_frame()
    frame["age"] = pd.date_range("2024-01-01", periods=N_ROWS, freq="D")
    return frame


def _latin1_bytes() -> bytes:
    lines = csv_text(good_frame()).splitlines()
    lines[6] = lines[6].replace(",atm,", ",caf\u00e9,").replace(",pos,", ",caf\u00e9,")
    lines[6] = lines[6].replace(",web,", ",caf\u00e9,")
    return ("\n".join(lines) + "\n").encode("latin-1")


@dataclass(frozen=True)
class Case:
    name: str
    make: Maker
    expect: tuple[str, ...]  # substrings the one error line must contain
    infer_fails: bool  # whether `schema infer --label fraud --id txn_id` must fail too


CASES: list[Case] = [
    Case("missing_file", lambda d: d / "nope.csv", ("nope.csv", "file not found"), True),
    Case("empty_file", _bytes("t.csv", lambda: b""), ("file is empty",), True),
    Case("blank_lines_only", _bytes("t.csv", lambda: b"\n\n  \n"), ("no header line",), True),
    Case("header_only", _bytes("t.csv", lambda: (HEADER + "\n").encode()), ("no data rows",), True),
    Case(
        "unsupported_extension",
        _bytes("t.xlsx", lambda: b"PK\x03\x04"),
        ("unsupported file type '.xlsx'",),
        True,
    ),
    Case(
        "missing_column",
        _frame(lambda: good_frame().drop(columns=["age"])),
        ("missing column required by the contract: 'age'",),
        False,
    ),
    Case(
        "missing_label_column",
        _frame(lambda: good_frame().drop(columns=["fraud"])),
        ("'fraud'",),
        True,
    ),
    Case(
        "extra_column",
        _frame(lambda: good_frame().assign(notes="x")),
        ("unexpected column not in the contract: 'notes'",),
        False,
    ),
    Case(
        "duplicate_column_name",
        _lines_edit(lambda ls: [ls[0] + ",amount"] + [line + ",1.5" for line in ls[1:]]),
        ("duplicate column name 'amount' (columns 2 and 6)",),
        True,
    ),
    Case(
        "semicolon_delimiter",
        _lines_edit(lambda ls: [line.replace(",", ";") for line in ls]),
        ("one column", "';' separators"),
        True,
    ),
    Case(
        "tab_delimiter",
        _lines_edit(lambda ls: [line.replace(",", "\t") for line in ls]),
        ("one column", "tab separators"),
        True,
    ),
    Case(
        "utf16_encoding",
        _bytes("t.csv", lambda: csv_text(good_frame()).encode("utf-16")),
        ("UTF-16",),
        True,
    ),
    Case(
        "latin1_encoding",
        _bytes("t.csv", _latin1_bytes),
        ("line 7 is not valid UTF-8", "0xe9"),
        True,
    ),
    Case("truncated_parquet", _truncated_parquet, ("cannot read Parquet file",), True),
    Case(
        "csv_named_parquet",
        _bytes("t.parquet", lambda: csv_text(good_frame()).encode()),
        ("cannot read Parquet file",),
        True,
    ),
    Case("duplicate_parquet_column", _duplicate_parquet, ("duplicate column name 'amount'",), True),
    Case(
        "ragged_row",
        _lines_edit(lambda ls: [*ls[:11], ls[11] + ",7,8", *ls[12:]]),
        ("malformed CSV: line 12 (data row 11) has 7 fields, the header has 5",),
        True,
    ),
    Case(
        "text_in_numeric_column",
        _frame(lambda: edited(amount=(17, "abc"))),
        ("column 'amount', row 17: value 'abc' is not numeric",),
        False,
    ),
    Case(
        "text_in_numeric_parquet",
        _parquet(lambda: edited(age=(9, "old")).astype({"age": str})),
        ("column 'age', row 9: value 'old' is not numeric",),
        False,
    ),
    Case(
        "dates_in_numeric_parquet",
        _parquet(_with_dates),
        ("column 'age'", "datetime64"),
        True,
    ),
    Case(
        "label_not_binary",
        _frame(lambda: edited(fraud=(5, 2))),
        ("column 'fraud', row 5: label 2 is not 0 or 1",),
        True,
    ),
    Case(
        "label_text",
        _frame(lambda: edited(fraud=(3, "yes"))),
        ("column 'fraud', row 3: label 'yes' is not 0 or 1",),
        True,
    ),
    Case(
        "label_missing",
        _frame(lambda: edited(fraud=(8, None))),
        ("column 'fraud', row 8: label is missing",),
        True,
    ),
    Case(
        "positive_infinity",
        _frame(lambda: edited(amount=(3, np.inf))),
        ("column 'amount', row 3: value inf is not finite",),
        True,
    ),
    Case(
        "negative_infinity",
        _frame(lambda: edited(age=(21, -np.inf))),
        ("column 'age', row 21: value -inf is not finite",),
        True,
    ),
    Case(
        "far_above_range",
        _frame(lambda: edited(amount=(12, 1.0e9))),
        ("column 'amount', row 12: value 1e+09 is far outside the contract range [0, 1000]",),
        False,
    ),
    Case(
        "far_below_range",
        _frame(lambda: edited(age=(6, -5000.0))),
        ("column 'age', row 6: value -5000 is far outside the contract range [18, 100]",),
        False,
    ),
    Case(
        "unknown_category",
        _frame(lambda: edited(channel=(14, "branch"))),
        ("column 'channel', row 14: value 'branch' is not one of the contract's categories",),
        False,
    ),
    Case(
        "missing_in_non_nullable",
        _frame(lambda: edited(amount=(10, None))),
        ("column 'amount', row 10: value is missing",),
        False,
    ),
    Case(
        "duplicate_id",
        _frame(lambda: edited(txn_id=(9, 1001))),
        ("column 'txn_id', row 9: id 1001 repeats row 2",),
        True,
    ),
    Case(
        "missing_id",
        _frame(lambda: edited(txn_id=(4, None))),
        ("column 'txn_id', row 4: id is missing",),
        True,
    ),
]


def run(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=True)


def assert_one_line_error(result: Result, expect: tuple[str, ...]) -> str:
    """The run failed cleanly: non-zero exit, no traceback, one stderr line with ``expect``."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    for part in expect:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture()
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "contract.json"
    contract().save(path)
    return path


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


def test_good_table_passes(tmp_path: Path, schema_file: Path) -> None:
    data = write_csv(good_frame(), tmp_path / "good.csv")
    result = run(["schema", "check", str(data), "--schema", str(schema_file)])
    assert result.exit_code == 0, result.output
    positives = int(good_frame()["fraud"].sum())
    assert result.stdout == f"ok: {N_ROWS} rows, 3 features, {positives} positives\n"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_rejects_malformed_table(tmp_path: Path, schema_file: Path, case: Case) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = case.make(folder)
    result = run(["schema", "check", str(data), "--schema", str(schema_file)])
    line = assert_one_line_error(result, case.expect)
    assert line.startswith("error: DataContractError: ")
    assert result.exit_code == DataContractError.exit_code
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [] if case.name == "missing_file" else [data.name]
    )


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.infer_fails], ids=[c.name for c in CASES if c.infer_fails]
)
def test_infer_rejects_malformed_table_and_writes_nothing(tmp_path: Path, case: Case) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = case.make(folder)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "contract.json"
    args = ["schema", "infer", str(data), "--label", "fraud", "--id", "txn_id", "--out", str(out)]
    assert_one_line_error(run(args), ())
    assert list(out_dir.iterdir()) == []


def test_infer_failure_keeps_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "contract.json"
    out.write_text("previous\n")
    data = write_csv(edited(fraud=(2, 7)), tmp_path / "t.csv")
    result = run(["schema", "infer", str(data), "--label", "fraud", "--out", str(out)])
    assert_one_line_error(result, ("row 2", "label 7"))
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contract.json", "t.csv"]


def test_infer_then_check_round_trip(tmp_path: Path) -> None:
    data = write_csv(good_frame(), tmp_path / "good.csv")
    out = tmp_path / "c.json"
    result = run(
        ["schema", "infer", str(data), "--label", "fraud", "--id", "txn_id", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out}: 3 features (2 numeric, 1 categorical)")
    inferred = DataContract.load(out)
    assert inferred.feature_names == ["amount", "channel", "age"]
    assert inferred.features[1].categories == ("atm", "pos", "web")
    assert [f.nullable for f in inferred.features] == [False, False, True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "good.csv"]
    checked = run(["schema", "check", str(data), "--schema", str(out)])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith(f"ok: {N_ROWS} rows, 3 features")


def test_infer_prints_contract_without_out(tmp_path: Path) -> None:
    data = write_csv(good_frame(), tmp_path / "good.csv")
    result = run(["schema", "infer", str(data), "--label", "fraud"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["label"] == "fraud"
    assert document["id_column"] is None
    assert [f["name"] for f in document["features"]] == ["txn_id", "amount", "channel", "age"]
    assert list(tmp_path.iterdir()) == [data]


def test_infer_too_many_categories_names_the_option(tmp_path: Path) -> None:
    frame = good_frame()
    frame["channel"] = [f"c{i}" for i in range(N_ROWS)]
    data = write_csv(frame, tmp_path / "t.csv")
    result = run(["schema", "infer", str(data), "--label", "fraud", "--max-categories", "10"])
    assert_one_line_error(result, ("column 'channel'", "30 distinct", "max_categories=10"))
    ok = run(["schema", "infer", str(data), "--label", "fraud", "--max-categories", "30"])
    assert ok.exit_code == 0, ok.output


def test_options_from_environment(tmp_path: Path, schema_file: Path) -> None:
    data = write_csv(good_frame(), tmp_path / "good.csv")
    checked = run(
        ["schema", "check", str(data)], env={"FEDTAB_SCHEMA_CHECK_SCHEMA": str(schema_file)}
    )
    assert checked.exit_code == 0, checked.output
    inferred = run(
        ["schema", "infer", str(data)],
        env={"FEDTAB_SCHEMA_INFER_LABEL": "fraud", "FEDTAB_SCHEMA_INFER_ID": "txn_id"},
    )
    assert inferred.exit_code == 0, inferred.output
    assert json.loads(inferred.stdout)["id_column"] == "txn_id"


def test_extra_columns_allowed_with_flag(tmp_path: Path, schema_file: Path) -> None:
    data = write_csv(good_frame().assign(notes="x"), tmp_path / "t.csv")
    result = run(["schema", "check", str(data), "--schema", str(schema_file), "--allow-extra"])
    assert result.exit_code == 0, result.output


def test_range_tolerance_option(tmp_path: Path, schema_file: Path) -> None:
    # 1500 lies half a range width above [0, 1000]: fine by default, an error at tolerance 0.25.
    data = write_csv(edited(amount=(4, 1500.0)), tmp_path / "t.csv")
    base = ["schema", "check", str(data), "--schema", str(schema_file)]
    assert run(base).exit_code == 0
    strict = run([*base, "--range-tolerance", "0.25"])
    assert_one_line_error(strict, ("column 'amount', row 4: value 1500 is far outside",))


@pytest.mark.parametrize(
    "text, expect",
    [
        ("{not json", "cannot read data contract"),
        ('{"fedtab_contract_version": 99}', "unsupported contract version 99"),
        ('{"fedtab_contract_version": 1, "label": "fraud"}', "malformed data contract"),
        (
            '{"fedtab_contract_version": 1, "label": "fraud", "features": '
            '[{"name": "a", "kind": "numeric", "lower": 5, "upper": 1}]}',
            "lower 5.0 is above upper 1.0",
        ),
    ],
)
def test_bad_contract_file(tmp_path: Path, text: str, expect: str) -> None:
    data = write_csv(good_frame(), tmp_path / "good.csv")
    bad = tmp_path / "c.json"
    bad.write_text(text)
    result = run(["schema", "check", str(data), "--schema", str(bad)])
    assert_one_line_error(result, (expect,))


def test_missing_contract_file(tmp_path: Path) -> None:
    data = write_csv(good_frame(), tmp_path / "good.csv")
    result = run(["schema", "check", str(data), "--schema", str(tmp_path / "absent.json")])
    assert_one_line_error(result, ("cannot read data contract", "absent.json"))
