"""Score a raw holdout with a fedtab GBDT model in stock XGBoost, the way the model was trained.

A fedtab ``model.json`` carries its data contract (learner attribute ``fedtab_contract``).
:func:`holdout_frame` validates a raw table (CSV/Parquet/DataFrame, categories as text) against
that contract and returns the feature columns in the contract's order: numeric as float64,
categorical as pandas ``category`` columns whose categories are the contract's, in its order, so
their codes are the codes the model splits on. XGBoost >= 2.1 reads it with
``enable_categorical=True``; XGBoost >= 3.1 would also re-code a frame in another category order
by the names recorded in the model, but older versions read codes as they are.

Typical use::

    booster = xgboost.Booster(model_file="model.json")
    scores = fedtab.gbdt.predict.predict(booster, "holdout.csv")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fedtab.data.contract import DataContract
from fedtab.data.tables import read_table
from fedtab.data.validate import encode_features
from fedtab.errors import ConfigError, DataContractError
from fedtab.gbdt.export import CONTRACT_ATTRIBUTE
from fedtab.scoring import holdout_labels

if TYPE_CHECKING:
    import xgboost as xgb


def holdout_frame(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The contract's feature columns of ``frame``, ready for ``xgboost.DMatrix``.

    Other columns (label, id, extras) are dropped. Categorical columns become pandas
    ``category`` columns with exactly the contract's categories in its order; missing values
    stay missing (NaN).

    Raises:
        DataContractError: a missing column or the first value that breaks the contract.
    """
    return contract_frame(encode_features(frame, contract), contract, index=frame.index)


def contract_frame(
    X: np.ndarray, contract: DataContract, index: pd.Index | None = None
) -> pd.DataFrame:
    """A matrix in the contract's layout (``LocalTable.X``: categorical columns hold the
    category's index, NaN for missing) as the DataFrame :func:`holdout_frame` returns.

    Raises:
        DataContractError: ``X`` is not ``(n_rows, n_features)`` or holds a code outside
            a categorical feature's categories.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(contract.features):
        raise DataContractError(
            f"expected a matrix with {len(contract.features)} feature columns, got {X.shape}"
        )
    columns: dict[str, pd.Categorical | np.ndarray] = {}
    for j, spec in enumerate(contract.features):
        if spec.kind == "numeric":
            columns[spec.name] = X[:, j]
            continue
        codes = np.where(np.isnan(X[:, j]), -1, X[:, j])
        if np.any((codes != np.floor(codes)) | (codes < -1) | (codes >= len(spec.categories))):
            raise DataContractError(f"column {spec.name!r}: a value is not a category code")
        columns[spec.name] = pd.Categorical.from_codes(
            codes.astype(np.int64), categories=list(spec.categories)
        )
    return pd.DataFrame(columns, index=index)


def booster_contract(booster: xgb.Booster) -> DataContract:
    """The data contract embedded in ``booster``'s ``fedtab_contract`` attribute.

    Raises:
        ConfigError: the booster has no such attribute (not a fedtab model).
        DataContractError: the attribute is not a valid contract.
    """
    raw = booster.attr(CONTRACT_ATTRIBUTE)
    if raw is None:
        raise ConfigError(
            f"the model has no '{CONTRACT_ATTRIBUTE}' attribute, so the columns it reads are "
            "unknown (is it a fedtab model?)"
        )
    try:
        return DataContract.from_dict(json.loads(raw))
    except ValueError as exc:
        raise DataContractError(f"'{CONTRACT_ATTRIBUTE}' is not JSON ({exc})") from exc


def to_dmatrix(
    booster: xgb.Booster, data: pd.DataFrame | Path | str, label: str | None = None
) -> xgb.DMatrix:
    """``data`` (a DataFrame or a .csv/.parquet path) as a DMatrix ``booster`` reads correctly.

    With ``label`` (a column name), the DMatrix carries that 0/1 column as its label, e.g. for
    ``xgboost.train(..., xgb_model=booster)`` on local rows.

    Raises:
        ConfigError: ``booster`` is not a fedtab model.
        DataContractError: the table is unreadable or breaks the model's contract.
    """
    import xgboost as xgb

    contract = booster_contract(booster)
    frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data))
    y = None if label is None else holdout_labels(frame, contract, label)
    return xgb.DMatrix(holdout_frame(frame, contract), label=y, enable_categorical=True)


def predict(
    model: xgb.Booster | Path | str, data: pd.DataFrame | Path | str
) -> np.ndarray:
    """Fraud probabilities, float64 ``(n_rows,)``, of a fedtab GBDT ``model`` on raw ``data``.

    ``model`` is a loaded ``xgboost.Booster`` or the path of ``model.json``; ``data`` a DataFrame
    or a .csv/.parquet path, categories as text.

    Raises:
        ConfigError: the model file cannot be loaded or is not a fedtab model.
        DataContractError: the table is unreadable or breaks the model's contract.
    """
    import xgboost as xgb

    if not isinstance(model, xgb.Booster):
        try:
            model = xgb.Booster(model_file=str(model))
        except xgb.core.XGBoostError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"{model}: XGBoost cannot load the model: {first}") from exc
    return np.asarray(model.predict(to_dmatrix(model, data)), dtype=np.float64)
