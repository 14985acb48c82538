"""Inferring a data contract from one bank's table.

The contract is shared with the consortium (and the aggregator), so numeric ranges are rounded
outward to two significant digits: ``[-56.41, 25691.16]`` becomes ``[-57, 26000]``. That keeps
binning ranges useful while not revealing any customer's exact extreme value. Categories are
listed sorted, so the same data always gives the same contract.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.data.validate import category_strings, check_ids, encode_labels, numeric_values
from fedtab.errors import DataContractError

DEFAULT_MAX_CATEGORIES = 50
SIGNIFICANT_DIGITS = 2


def infer_contract(
    df: pd.DataFrame,
    label: str,
    id_column: str | None = None,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> DataContract:
    """Infer the contract of ``df``: every column but the label and id is a feature.

    Numeric columns get a range rounded outward (:func:`round_outward`); text and boolean
    columns with at most ``max_categories`` distinct values become categorical with sorted
    categories. A feature is nullable when ``df`` has a missing value in it.

    Raises:
        DataContractError: no data rows, repeated column names, label or id column absent,
            labels not 0/1, repeated ids, a column without any value, infinite values, a text
            column with too many distinct values, or a numeric-looking column with stray text.
    """
    if max_categories < 1:
        raise DataContractError(f"max_categories must be at least 1, got {max_categories}")
    names = [str(c) for c in df.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataContractError(f"duplicate column name {repeated[0]!r}")
    for role, name in (("label", label), ("id", id_column)):
        if name is not None and name not in names:
            raise DataContractError(f"{role} column {name!r} is not in the table")
    if id_column is not None and id_column == label:
        raise DataContractError(f"column {label!r} cannot be both the label and the id")
    if len(df) == 0:
        raise DataContractError("the table has no data rows (header only)")
    feature_columns = [n for n in names if n not in (label, id_column)]
    if not feature_columns:
        raise DataContractError("the table has no feature columns besides the label and id")
    # A stub contract lets the label and id checks share validation's code and messages.
    stub = DataContract(
        features=(FeatureSpec(name=feature_columns[0], kind="numeric"),),
        label=label,
        id_column=id_column,
    )
    encode_labels(df, stub)
    check_ids(df, stub)
    features = tuple(_infer_feature(df[name], name, max_categories) for name in feature_columns)
    return DataContract(features=features, label=label, id_column=id_column)


def round_outward(
    lower: float, upper: float, digits: int = SIGNIFICANT_DIGITS
) -> tuple[float, float]:
    """Round ``lower`` down and ``upper`` up to ``digits`` significant digits.

    A degenerate range (a constant column) is widened by ``max(|v|, 1)`` on each side first,
    so the contract admits other banks' values. The result always contains the input.
    """
    if not (math.isfinite(lower) and math.isfinite(upper)) or lower > upper:
        raise DataContractError(f"cannot round the range [{lower}, {upper}]")
    if lower == upper:
        pad = max(abs(lower), 1.0)
        lower, upper = lower - pad, upper + pad
    return _round_sig(lower, digits, up=False), _round_sig(upper, digits, up=True)


def _round_sig(value: float, digits: int, *, up: bool) -> float:
    """Round in decimal (exact), then back to the nearest float, which stays outward because
    rounding to nearest is monotone and ``value`` is itself a float."""
    if value == 0.0:
        return 0.0
    exact = Decimal(repr(value))
    step = Decimal(1).scaleb(exact.adjusted() - (digits - 1))
    rounded = float(exact.quantize(step, rounding=ROUND_CEILING if up else ROUND_FLOOR))
    return rounded if math.isfinite(rounded) else value


def _infer_feature(column: pd.Series, name: str, max_categories: int) -> FeatureSpec:
    missing = column.isna().to_numpy()
    if missing.all():
        raise DataContractError(f"column {name!r}: has no values at all (drop it)")
    nullable = bool(missing.any())
    textual = not (ptypes.is_numeric_dtype(column) and not ptypes.is_bool_dtype(column))
    if ptypes.is_datetime64_any_dtype(column) or ptypes.is_timedelta64_dtype(column):
        raise DataContractError(
            f"column {name!r}: holds {column.dtype} values; fedtab takes numbers and "
            "categories (convert it to a number or drop it)"
        )
    if textual:
        texts, _ = category_strings(column)
        distinct = pd.unique(texts[~missing])
        if len(distinct) <= max_categories:
            return FeatureSpec(
                name=name,
                kind="categorical",
                categories=tuple(sorted(str(c) for c in distinct)),
                nullable=nullable,
            )
        numeric_share = pd.to_numeric(column, errors="coerce").notna().sum() / (~missing).sum()
        if numeric_share < 0.5:
            raise DataContractError(
                f"column {name!r}: {len(distinct)} distinct text values, more than "
                f"max_categories={max_categories}; drop it or encode it as numbers"
            )
        # Mostly numbers written as text: numeric, unless a stray value (named here) is not.
    values = numeric_values(column, name)
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.argmax(infinite))
        raise DataContractError(
            f"column {name!r}, row {row + 1}: value {values[row]:g} is not finite"
        )
    lower, upper = round_outward(float(np.nanmin(values)), float(np.nanmax(values)))
    return FeatureSpec(name=name, kind="numeric", lower=lower, upper=upper, nullable=nullable)
