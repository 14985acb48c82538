"""read_table, validate_table, encode_features and load_table on in-memory and on-disk tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.data.tables import read_table
from fedtab.data.validate import (
    category_strings,
    encode_features,
    encode_labels,
    load_table,
    to_local_table,
    validate_table,
)
from fedtab.errors import DataContractError


def contract(nullable_amount: bool = False) -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", lower=0.0, upper=100.0, nullable=nullable_amount),
            FeatureSpec("kind", "categorical", categories=("a", "b", "c")),
        ),
        label="y",
        id_column="id",
    )


def table(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    kinds = rng.choice(np.array(["a", "b", "c", None], dtype=object), n)
    return pd.DataFrame(
        {
            # File column order differs from the contract's feature order on purpose.
            "kind": kinds,
            "y": np.arange(n) % 2,
            "amount": rng.uniform(0, 100, n),
            "id": np.arange(n) * 7,
        }
    )


def test_encode_features_order_values_codes_and_missing() -> None:
    df = table()
    X = encode_features(df, contract())
    assert X.dtype == np.float64 and X.shape == (len(df), 2)
    np.testing.assert_array_equal(X[:, 0], df["amount"].to_numpy())
    expected = df["kind"].map({"a": 0.0, "b": 1.0, "c": 2.0}).to_numpy(dtype=float)
    np.testing.assert_array_equal(X[:, 1], expected)  # NaN where missing (array_equal: NaN==NaN)
    assert np.isnan(X[:, 1]).sum() == df["kind"].isna().sum()


def test_encode_features_ignores_label_and_extra_columns_for_holdouts() -> None:
    holdout = table().drop(columns=["y", "id"]).assign(score=1.0)
    assert encode_features(holdout, contract()).shape == (8, 2)
    with pytest.raises(DataContractError, match="missing column required by the contract: 'kind'"):
        encode_features(holdout.drop(columns=["kind"]), contract())


def test_local_table_matches_inputs() -> None:
    df = table()
    local = to_local_table(df, contract())
    assert local.n_rows == 8 and local.feature_names == ["amount", "kind"]
    np.testing.assert_array_equal(local.y, (np.arange(8) % 2).astype(float))
    assert local.y.dtype == np.float64


@pytest.mark.parametrize(
    "labels",
    [
        [True, False, True],
        ["true", "FALSE", " 1 "],
        ["1.0", "0.0", "1"],
        [1.0, 0.0, 1.0],
    ],
)
def test_label_spellings(labels: list[object]) -> None:
    df = pd.DataFrame({"y": labels})
    np.testing.assert_array_equal(encode_labels(df, contract()), [1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "values, expected",
    [
        (pd.Series([1.0, 2.0, np.nan]), ["1", "2", None]),
        (pd.Series([1, 2, 3]), ["1", "2", "3"]),
        (pd.Series([True, False]), ["True", "False"]),
        (pd.Series([1.5, 2.0]), ["1.5", "2"]),
        (pd.Series(["x", None, 3], dtype=object), ["x", None, "3"]),
    ],
)
def test_category_strings_are_stable_across_dtypes(
    values: pd.Series, expected: list[object]
) -> None:
    texts, missing = category_strings(values)
    assert list(texts) == expected
    assert list(missing) == [e is None for e in expected]


def test_categories_named_by_numbers_match_int_and_float_columns() -> None:
    spec = DataContract((FeatureSpec("k", "categorical", categories=("1", "2")),), label="y")
    as_int = pd.DataFrame({"k": [1, 2, 2], "y": [0, 1, 0]})
    with_gap = pd.DataFrame({"k": [1.0, np.nan, 2.0], "y": [0, 1, 0]})
    np.testing.assert_array_equal(encode_features(as_int, spec)[:, 0], [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(encode_features(with_gap, spec)[:, 0], [0.0, np.nan, 1.0])


def test_range_tolerance_boundaries() -> None:
    df = table()
    # Width 100, tolerance 1 width: 200 and -100 are the outermost accepted values.
    df.loc[0, "amount"] = 200.0
    df.loc[1, "amount"] = -100.0
    validate_table(df, contract(), range_tolerance=1.0)
    df.loc[2, "amount"] = 200.5
    with pytest.raises(DataContractError, match=r"column 'amount', row 3: value 200\.5 is far"):
        validate_table(df, contract(), range_tolerance=1.0)
    validate_table(df, contract())  # default tolerance (10 widths) accepts it


def test_nullable_numeric_accepts_missing() -> None:
    df = table()
    df.loc[5, "amount"] = np.nan
    with pytest.raises(DataContractError, match="column 'amount', row 6: value is missing"):
        validate_table(df, contract())
    assert np.isnan(encode_features(df, contract(nullable_amount=True))[5, 0])


def test_first_bad_row_is_found_in_a_large_table() -> None:
    n = 200_000
    df = pd.DataFrame(
        {
            "kind": np.repeat(np.array(["a", "b"], dtype=object), n // 2),
            "y": np.zeros(n, dtype=int),
            "amount": np.linspace(0, 100, n),
            "id": np.arange(n),
        }
    )
    df["amount"] = df["amount"].astype(object)
    df.loc[n - 2, "amount"] = "12,5"
    df.loc[n - 1, "amount"] = "oops"
    with pytest.raises(DataContractError) as info:
        validate_table(df, contract())
    assert str(info.value) == f"column 'amount', row {n - 1}: value '12,5' is not numeric"


def test_load_table_csv_and_parquet_agree(tmp_path: Path) -> None:
    df = table(50)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    df.to_parquet(tmp_path / "t.PQ")
    a = load_table(tmp_path / "t.csv", contract())
    b = load_table(tmp_path / "t.parquet", contract())
    c = load_table(tmp_path / "t.PQ", contract())
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(b.X, c.X)
    np.testing.assert_array_equal(a.y, b.y)


def test_load_table_prefixes_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    table().assign(extra=1).to_csv(path, index=False)
    with pytest.raises(DataContractError, match=r"bank\.csv: unexpected column .*'extra'"):
        load_table(path, contract())
    assert load_table(path, contract(), allow_extra=True).n_rows == 8


def test_read_table_utf8_bom_and_quoted_header(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes('\ufeff"a,b",c\n1,2\n'.encode())
    assert list(read_table(path).columns) == ["a,b", "c"]


def test_read_table_keeps_blank_and_repeated_looking_names(tmp_path: Path) -> None:
    # A name like "x.1" is legitimate when "x" is not repeated.
    path = tmp_path / "t.csv"
    path.write_text("x.1,x\n1,2\n")
    assert list(read_table(path).columns) == ["x.1", "x"]


def test_read_table_directory_and_case(tmp_path: Path) -> None:
    folder = tmp_path / "d.csv"
    folder.mkdir()
    with pytest.raises(DataContractError, match="is a directory"):
        read_table(folder)
    path = tmp_path / "T.CSV"
    path.write_text("a,y\n1,0\n")
    assert read_table(path).shape == (1, 2)


def test_numeric_column_of_mixed_python_objects() -> None:
    # Booleans count as 0/1 and numeric text as its number, as in a bool or text column.
    df = table(3)
    df["amount"] = pd.Series([True, "12", 3.5], dtype=object)
    np.testing.assert_array_equal(encode_features(df, contract())[:, 0], [1.0, 12.0, 3.5])
