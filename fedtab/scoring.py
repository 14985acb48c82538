"""Scoring a holdout with a finished model: fedtab logistic regression or XGBoost JSON.

A model file carries its data contract, so the holdout is validated and encoded exactly as the
model was trained: contract feature order, categorical features as their category index, NaN
for missing (fedtab's ``LocalTable`` layout). Both kinds load lazily: evaluating a logreg model
never imports xgboost and vice versa.

- logreg: JSON with ``"kind": "logreg"`` and a ``"contract"``; read by
  :class:`fedtab.logreg.model.LogRegModel`.
- XGBoost: a JSON model that stock ``xgboost.Booster`` loads, with the contract as a JSON
  string in the learner attribute ``fedtab_contract``.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedtab.data.contract import DataContract
from fedtab.data.validate import encode_features, encode_labels
from fedtab.errors import ConfigError, DataContractError, FedtabError
from fedtab.metrics import evaluate_scores

CONTRACT_ATTRIBUTE = "fedtab_contract"
PROBABILITY_OBJECTIVES = frozenset({"binary:logistic", "reg:logistic"})


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model that turns a holdout into fraud probabilities.

    ``kind`` is ``"logreg"`` or ``"xgboost"``; ``contract`` is the data contract the model was
    trained under.
    """

    kind: str
    path: Path
    contract: DataContract
    predict: Callable[[np.ndarray], np.ndarray]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Fraud probabilities, shape ``(n_rows,)``, for ``X`` in the contract's layout.

        Raises:
            DataContractError: ``X`` is not ``(n_rows, n_features)``.
            ConfigError: the model returns something other than one probability per row.
        """
        X = np.asarray(X, dtype=np.float64)
        n_features = len(self.contract.features)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise DataContractError(
                f"expected a matrix with {n_features} feature columns, got shape {X.shape}"
            )
        scores = np.asarray(self.predict(X), dtype=np.float64).reshape(-1)
        if scores.shape != (X.shape[0],):
            raise ConfigError(
                f"{self.path}: model returned {scores.shape[0]} scores for {X.shape[0]} rows"
            )
        if not np.all((scores >= 0.0) & (scores <= 1.0)):
            raise ConfigError(f"{self.path}: model returned scores outside [0, 1]")
        return scores

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Validate ``frame``'s feature columns against the contract and score every row.

        Other columns (ids, labels, extras) are ignored. Raises :class:`DataContractError`
        naming the column and first bad row.
        """
        return self.predict_proba(encode_features(frame, self.contract))


def load_model(path: Path) -> ScoringModel:
    """Load a logreg or XGBoost ``model.json`` together with its embedded data contract.

    Raises:
        ConfigError: missing or unreadable file, not JSON, neither kind, an XGBoost model
            without a ``fedtab_contract`` attribute, or one that does not output probabilities.
        DataContractError: the embedded contract is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: model file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read model file: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a JSON model file ({exc})") from exc
    if isinstance(doc, dict) and doc.get("kind") == "logreg":
        return _load_logreg(path, doc)
    if isinstance(doc, dict) and isinstance(doc.get("learner"), dict):
        return _load_xgboost(path)
    raise ConfigError(
        f'{path}: neither a fedtab logreg model ("kind": "logreg") nor an XGBoost JSON model'
    )



def load_model_text(text: str | bytes, name: str = "model.json", *,
                    shown_as: str | None = None) -> ScoringModel:
    """Load a logreg or XGBoost JSON model from its text, as :func:`load_model` loads a file.

    ``name`` is the file name the model is known by; errors name it (or ``shown_as``), never
    the temporary file it is parsed from. Raises ConfigError (not a model fedtab can score) or
    DataContractError (a malformed embedded contract).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    safe = Path(name).name or "model.json"
    with tempfile.TemporaryDirectory(prefix="fedtab-model-") as folder:
        path = Path(folder) / safe
        path.write_text(text, encoding="utf-8")
        try:
            model = load_model(path)
        except FedtabError as exc:
            raise type(exc)(str(exc).replace(str(path), shown_as or safe)) from exc
    return replace(model, path=Path(safe))

def _contract_from(path: Path, data: Any) -> DataContract:
    try:
        return DataContract.from_dict(data)
    except FedtabError as exc:
        raise DataContractError(f"{path}: embedded data contract: {exc}") from exc
    except AttributeError as exc:
        raise DataContractError(f"{path}: embedded data contract is not a JSON object") from exc


def _load_logreg(path: Path, doc: dict[str, Any]) -> ScoringModel:
    try:
        module = importlib.import_module("fedtab.logreg.model")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{path}: logreg models need fedtab.logreg.model, missing from this build"
        ) from exc
    try:
        model = module.LogRegModel.from_dict(doc)
    except FedtabError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return ScoringModel("logreg", path, model.contract, model.predict_proba)


def _load_xgboost(path: Path) -> ScoringModel:
    import xgboost as xgb

    try:
        booster = xgb.Booster(model_file=str(path))
    except xgb.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: XGBoost cannot load the model: {first}") from exc
    raw = booster.attr(CONTRACT_ATTRIBUTE)
    if raw is None:
        raise ConfigError(
            f"{path}: XGBoost model has no '{CONTRACT_ATTRIBUTE}' attribute, so the columns it "
            "reads are unknown (set it to the data contract JSON)"
        )
    try:
        contract = _contract_from(path, json.loads(raw))
    except json.JSONDecodeError as exc:
        raise DataContractError(f"{path}: '{CONTRACT_ATTRIBUTE}' is not JSON ({exc})") from exc
    names = contract.feature_names
    if booster.num_features() != len(names):
        raise ConfigError(
            f"{path}: model reads {booster.num_features()} features, its contract declares "
            f"{len(names)}"
        )
    if booster.feature_names is not None and list(booster.feature_names) != names:
        raise ConfigError(f"{path}: model feature names differ from its contract's features")
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective not in PROBABILITY_OBJECTIVES:
        raise ConfigError(
            f"{path}: objective {objective!r} does not predict probabilities "
            f"(expected one of {sorted(PROBABILITY_OBJECTIVES)})"
        )

    def predict(X: np.ndarray) -> np.ndarray:
        matrix = xgb.DMatrix(X, missing=np.nan, feature_names=names)
        return np.asarray(booster.predict(matrix, output_margin=False), dtype=np.float64)

    return ScoringModel("xgboost", path, contract, predict)


def holdout_labels(frame: pd.DataFrame, contract: DataContract, label: str) -> np.ndarray:
    """The 0/1 ``label`` column of ``frame`` (scored under ``contract``), float64 ``(n_rows,)``.

    Raises:
        DataContractError: the column is absent, or holds a missing or non-0/1 value.
    """
    if label not in frame.columns:
        shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:12])
        raise DataContractError(f"label column {label!r} is not in the table (columns: {shown})")
    return encode_labels(frame, replace(contract, label=label))


@dataclass(frozen=True)
class Evaluation:
    """A model's scores on a holdout and the metrics of :func:`fedtab.metrics.evaluate_scores`.

    ``y`` and ``scores`` have shape ``(n_rows,)``.
    """

    model: ScoringModel
    label: str
    y: np.ndarray
    scores: np.ndarray
    metrics: dict[str, Any]


def evaluate_model(
    model: ScoringModel, frame: pd.DataFrame, label: str | None = None, source: str = ""
) -> Evaluation:
    """Score ``frame`` with ``model`` and compute the holdout metrics.

    ``label`` defaults to the model contract's label; ``source`` (the holdout's path) prefixes
    error messages.

    Raises:
        DataContractError: the holdout breaks the model's contract, its label column is absent
            or not 0/1, or it holds a single class.
    """
    label = label or model.contract.label
    try:
        y = holdout_labels(frame, model.contract, label)
        scores = model.score_frame(frame)
        metrics = evaluate_scores(y, scores)
    except DataContractError as exc:
        raise DataContractError(f"{source}: {exc}" if source else str(exc)) from exc
    return Evaluation(model, label, y, scores, metrics)
