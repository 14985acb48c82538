"""A trained fedtab model in a notebook: score raw DataFrames, hand it to XGBoost or scikit-learn.

:class:`Model` wraps a ``model.json`` written by a GBDT job (XGBoost JSON with the data
contract in its ``fedtab_contract`` attribute) or a logreg job (fedtab's JSON with a
``contract``). Everything goes through that contract, as ``fedtab evaluate`` does: a raw table
(categories as text, in any column order, extra columns ignored) is validated and encoded into
the layout the model was trained on, so :meth:`Model.predict` equals fedtab's own scoring for
both kinds. A category outside the contract, or a missing column, is a one-line
:class:`~fedtab.errors.DataContractError` naming the column and the row.

>>> from fedtab.api import load_model
>>> from fedtab.api.examples import tiny_frame, tiny_logreg_model
>>> model = load_model(tiny_logreg_model())           # a hand-made logreg model.json
>>> model.kind, model.feature_names, model.contract.label
('logreg', ['amount', 'channel'], 'is_fraud')
>>> frame = tiny_frame()                              # channel as text, columns reordered
>>> model.predict(frame).round(3).tolist()
[0.06, 0.789]
>>> pipeline = model.to_sklearn()                     # takes the same raw DataFrame
>>> pipeline.predict_proba(frame)[:, 1].round(3).tolist()
[0.06, 0.789]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pandas as pd

from fedtab.data.contract import DataContract
from fedtab.data.tables import read_table
from fedtab.data.validate import encode_features
from fedtab.errors import ConfigError
from fedtab.scoring import ScoringModel, load_model_text
from fedtab.scoring import load_model as load_scoring_model

if TYPE_CHECKING:
    import xgboost as xgb
    from sklearn.pipeline import Pipeline

Table: TypeAlias = pd.DataFrame | str | Path


@dataclass(frozen=True)
class Model:
    """A trained model and the data contract it was trained under.

    ``kind`` is ``"xgboost"`` (a GBDT job's model, read by stock XGBoost) or ``"logreg"``;
    ``text`` is the ``model.json`` content; ``scoring`` is the loaded model ``fedtab
    evaluate`` uses; ``file`` the file it was read from (None when built from text). Build
    one with :func:`load_model` or :meth:`from_json`.
    """

    text: str
    scoring: ScoringModel
    file: Path | None = None

    @classmethod
    def from_json(cls, text: str | bytes, name: str = "model.json") -> Model:
        """The model whose ``model.json`` content is ``text`` (``name`` appears in errors).

        Raises:
            ConfigError: not a model fedtab can score.
            DataContractError: its embedded contract is malformed.
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return cls(text, load_model_text(text, name))

    @property
    def kind(self) -> str:
        """``"xgboost"`` or ``"logreg"``."""
        return self.scoring.kind

    @property
    def path(self) -> Path:
        """The file the model was read from (only its name when built from text)."""
        return self.scoring.path

    @property
    def contract(self) -> DataContract:
        """The data contract: feature columns, their kinds and categories, the label."""
        return self.scoring.contract

    @property
    def feature_names(self) -> list[str]:
        """The input columns the model reads, in the contract's order."""
        return self.contract.feature_names

    def predict(self, data: Table) -> np.ndarray:
        """Fraud probabilities, float64 ``(n_rows,)``, for a raw table.

        ``data`` is a DataFrame or a .csv/.parquet path with the contract's feature columns
        (categories as text); other columns are ignored.

        Raises:
            DataContractError: a column is missing or a value breaks the contract.
        """
        frame = data if isinstance(data, pd.DataFrame) else read_table(Path(data))
        return self.scoring.score_frame(frame)

    def to_booster(self) -> xgb.Booster:
        """The model as a stock ``xgboost.Booster`` (GBDT models only).

        Feed it ``fedtab.gbdt.predict.to_dmatrix(booster, frame)`` to score a raw table.

        Raises:
            ConfigError: a logreg model.
        """
        if self.kind != "xgboost":
            raise ConfigError(f"{self.path}: a {self.kind} model has no XGBoost booster; "
                              "use to_sklearn()")
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(self.text.encode("utf-8")))
        return booster

    def to_sklearn(self) -> Pipeline:
        """The model as a fitted scikit-learn ``Pipeline`` (logreg models only).

        Its first step, ``contract``, validates and encodes a raw DataFrame exactly as
        :meth:`predict` does (categories by name, contract column order); the remaining steps
        are :meth:`fedtab.logreg.model.LogRegModel.to_sklearn_pipeline`'s ``encode``, ``scale``
        and ``logreg``, so ``predict_proba(frame)[:, 1]`` equals :meth:`predict`.

        Raises:
            ConfigError: an XGBoost model.
        """
        if self.kind != "logreg":
            raise ConfigError(f"{self.path}: an {self.kind} model has no scikit-learn pipeline; "
                              "use to_booster()")
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        from fedtab.logreg.model import LogRegModel

        inner = LogRegModel.from_json(self.text).to_sklearn_pipeline()
        contract = FunctionTransformer(
            contract_matrix, kw_args={"contract": self.contract}, validate=False
        )
        return Pipeline([("contract", contract), *inner.steps])


def contract_matrix(frame: pd.DataFrame, contract: DataContract) -> np.ndarray:
    """``frame``'s feature columns in ``contract``'s layout (category index, NaN for missing).

    The first step of :meth:`Model.to_sklearn`; raises
    :class:`~fedtab.errors.DataContractError` naming the column and row.
    """
    return encode_features(frame, contract)


def load_model(path: str | Path) -> Model:
    """Load a GBDT (XGBoost JSON) or logreg ``model.json`` written by fedtab.

    Raises:
        ConfigError: missing or unreadable file, or not a model fedtab can score.
        DataContractError: its embedded contract is malformed.
    """
    path = Path(path)
    scoring = load_scoring_model(path)
    return Model(path.read_text(encoding="utf-8"), scoring, path)

