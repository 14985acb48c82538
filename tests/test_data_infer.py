"""infer_contract and round_outward: kinds, categories, coarse ranges, label and id handling."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedtab.data.infer import infer_contract, round_outward
from fedtab.data.validate import validate_table
from fedtab.errors import DataContractError


def significant_digits(value: float) -> int:
    """How many significant decimal digits the shortest repr of ``value`` has (0 for zero)."""
    if value == 0:
        return 0
    return len(Decimal(repr(value)).normalize().as_tuple().digits)


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(finite, finite)
def test_round_outward_contains_range_with_two_digits(a: float, b: float) -> None:
    lower, upper = sorted((a, b))
    lo, hi = round_outward(lower, upper)
    assert lo <= lower and hi >= upper
    assert lo < hi
    assert significant_digits(lo) <= 2 and significant_digits(hi) <= 2
    if lower != upper:
        # Coarse, not wild: each bound moves by less than one step of its second digit.
        for raw, rounded in ((lower, lo), (upper, hi)):
            if raw != 0:
                step = 10.0 ** (math.floor(math.log10(abs(raw))) - 1)
                assert abs(rounded - raw) <= step * (1 + 1e-9)


@pytest.mark.parametrize(
    "lower, upper, expected",
    [
        (-56.4075, 25691.16, (-57.0, 26000.0)),
        (0.0, 1.0, (0.0, 1.0)),
        (0.0012345, 0.29, (0.0012, 0.29)),
        (-0.291, -0.0012345, (-0.3, -0.0012)),
        (5.0, 5.0, (0.0, 10.0)),
        (0.0, 0.0, (-1.0, 1.0)),
        (172792.0, 172792.0, (0.0, 350000.0)),
    ],
)
def test_round_outward_examples(lower: float, upper: float, expected: tuple[float, float]) -> None:
    assert round_outward(lower, upper) == expected


def frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(n)],
            "amount": rng.uniform(3.21, 987.6, n),
            "count": rng.integers(1, 9, n),
            "channel": rng.choice(["web", "atm", "pos"], n),
            "flag": rng.choice([True, False], n),
            "y": np.arange(n) % 2,
        }
    )


def test_kinds_ranges_categories_and_id_exclusion() -> None:
    df = frame()
    contract = infer_contract(df, "y", "id")
    assert contract.feature_names == ["amount", "count", "channel", "flag"]
    amount, count, channel, flag = contract.features
    assert amount.kind == "numeric" and count.kind == "numeric"
    assert amount.lower is not None and amount.upper is not None
    assert amount.lower <= df["amount"].min() and amount.upper >= df["amount"].max()
    assert amount.lower != df["amount"].min() and amount.upper != df["amount"].max()
    assert channel.categories == ("atm", "pos", "web")
    assert flag.kind == "categorical" and flag.categories == ("False", "True")
    assert not any(f.nullable for f in contract.features)
    validate_table(df, contract)


def test_missing_values_make_a_feature_nullable() -> None:
    df = frame()
    df.loc[3, "amount"] = np.nan
    df.loc[4, "channel"] = None
    contract = infer_contract(df, "y", "id")
    nullable = {f.name: f.nullable for f in contract.features}
    assert nullable == {"amount": True, "count": False, "channel": True, "flag": False}


@pytest.mark.parametrize(
    "labels",
    [[0, 1, 1, 0], [True, False, True, False], ["0", "1", "1", "0"], [0.0, 1.0, 1.0, 0.0]],
)
def test_label_spellings_accepted(labels: list[object]) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": labels})
    assert infer_contract(df, "y").feature_names == ["x"]


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 1, 2, 0], "column 'y', row 3: label 2 is not 0 or 1"),
        ([0, 1, None, 0], "column 'y', row 3: label is missing"),
        (["no", "yes", "no", "no"], "column 'y', row 1: label 'no' is not 0 or 1"),
        ([0.5, 1, 0, 0], "column 'y', row 1: label 0.5 is not 0 or 1"),
    ],
)
def test_bad_labels_rejected(labels: list[object], message: str) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": labels})
    with pytest.raises(DataContractError) as info:
        infer_contract(df, "y")
    assert str(info.value) == message


def test_too_many_categories_suggests_dropping() -> None:
    df = pd.DataFrame({"name": [f"n{i}" for i in range(60)], "y": [0, 1] * 30})
    with pytest.raises(DataContractError, match=r"60 distinct text values.*drop it or encode"):
        infer_contract(df, "y", max_categories=50)
    assert infer_contract(df, "y", max_categories=60).features[0].kind == "categorical"


def test_numbers_as_text_become_numeric_or_name_the_stray_value() -> None:
    values = [str(v) for v in np.linspace(0, 100, 80)]
    df = pd.DataFrame({"amount": values, "y": [0, 1] * 40})
    spec = infer_contract(df, "y", max_categories=10).features[0]
    assert spec.kind == "numeric" and (spec.lower, spec.upper) == (0.0, 100.0)
    values[16] = "abc"
    df = pd.DataFrame({"amount": values, "y": [0, 1] * 40})
    with pytest.raises(DataContractError) as info:
        infer_contract(df, "y", max_categories=10)
    assert str(info.value) == "column 'amount', row 17: value 'abc' is not numeric"


@pytest.mark.parametrize(
    "column, message",
    [
        ([1.0, np.inf, 2.0, 3.0], "column 'x', row 2: value inf is not finite"),
        ([np.nan] * 4, "column 'x': has no values at all"),
        (pd.date_range("2024-01-01", periods=4), "column 'x': holds datetime64"),
    ],
)
def test_unusable_feature_columns(column: object, message: str) -> None:
    df = pd.DataFrame({"x": column, "y": [0, 1, 0, 1]})
    with pytest.raises(DataContractError, match=message.replace("(", r"\(")):
        infer_contract(df, "y")


def test_structural_errors() -> None:
    df = frame(4)
    with pytest.raises(DataContractError, match="label column 'label' is not in the table"):
        infer_contract(df, "label")
    with pytest.raises(DataContractError, match="id column 'key' is not in the table"):
        infer_contract(df, "y", "key")
    with pytest.raises(DataContractError, match="no data rows"):
        infer_contract(df.iloc[:0], "y")
    with pytest.raises(DataContractError, match="no feature columns"):
        infer_contract(df[["id", "y"]], "y", "id")
    with pytest.raises(DataContractError, match="column 'id', row 3: id 't0' repeats row 1"):
        infer_contract(df.assign(id=["t0", "t1", "t0", "t3"]), "y", "id")
    twice = pd.concat([df[["amount"]], df[["amount"]], df[["y"]]], axis=1)
    with pytest.raises(DataContractError, match="duplicate column name 'amount'"):
        infer_contract(twice, "y")


def test_same_data_same_contract() -> None:
    shuffled = frame().sample(frac=1.0, random_state=5).reset_index(drop=True)
    assert infer_contract(frame(), "y", "id") == infer_contract(shuffled, "y", "id")
