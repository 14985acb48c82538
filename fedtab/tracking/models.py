"""A fedtab ``model.json`` in MLflow's own flavours, and in the model registry.

- gbdt: the exported XGBoost JSON model loaded as an ``xgboost.Booster`` and saved with
  ``mlflow.xgboost`` (JSON format, so the ``fedtab_contract`` attribute travels with it).
  ``mlflow.xgboost.load_model(uri)`` returns that Booster; score a raw holdout with
  ``booster.predict(fedtab.gbdt.predict.to_dmatrix(booster, frame))``.
- logreg: :meth:`LogRegModel.to_sklearn_pipeline` saved with ``mlflow.sklearn``;
  ``mlflow.sklearn.load_model(uri).predict_proba(X)[:, 1]`` on the contract's layout
  (``fedtab.data.validate.encode_features(frame, contract)``) equals fedtab's scores.

Requirements are pinned to the installed versions instead of MLflow's inference, which would
load the model again in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedtab.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

MODEL_ARTIFACT = "model"
MODEL_SHA_TAG = "fedtab.model_sha256"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file: the tag that ties a model file to its run."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_flavour(model_path: Path, target: Path) -> str:
    """Save ``model_path`` as an MLflow model folder ``target``; returns the flavour name.

    Raises:
        ConfigError: the file is neither a fedtab logreg model nor an XGBoost JSON model.
    """
    try:
        doc = json.loads(model_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{model_path}: cannot read the model for MLflow: {exc}") from exc
    if isinstance(doc, dict) and doc.get("kind") == "logreg":
        _save_sklearn(doc, target)
        return "sklearn"
    if isinstance(doc, dict) and isinstance(doc.get("learner"), dict):
        _save_xgboost(model_path, target)
        return "xgboost"
    raise ConfigError(f"{model_path}: neither a fedtab logreg model nor an XGBoost JSON model")


def _save_xgboost(model_path: Path, target: Path) -> None:
    import mlflow.xgboost
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(model_path))
    mlflow.xgboost.save_model(booster, str(target), model_format="json",
                              pip_requirements=[f"xgboost=={xgb.__version__}"])


def _save_sklearn(doc: dict[str, Any], target: Path) -> None:
    import mlflow.sklearn
    import sklearn

    from fedtab.logreg.model import LogRegModel

    pipeline = LogRegModel.from_dict(doc).to_sklearn_pipeline()
    # skops (MLflow's safe default format) asks that non-estimator types be named as trusted:
    # the one-hot encoder's dtype parameter.
    mlflow.sklearn.save_model(pipeline, str(target), skops_trusted_types=["numpy.dtype"],
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}"])


def log_model(client: MlflowClient, run_id: str, model_path: Path) -> str:
    """Log ``model_path`` into the run under ``model`` in its flavour; returns the flavour."""
    with tempfile.TemporaryDirectory(prefix="fedtab-mlflow-") as tmp:
        folder = Path(tmp) / MODEL_ARTIFACT
        flavour = save_flavour(model_path, folder)
        client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT)
    return flavour


def register_model(client: MlflowClient, run_id: str, name: str) -> str:
    """A new version of registered model ``name`` (created if absent) from the run's
    ``model`` artifact; returns the version number."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
    version = client.create_model_version(name, source, run_id=run_id)
    return str(version.version)
