"""The trained logistic regression: read ``model.json``, predict, rebuild a scikit-learn pipeline.

``model.json`` (written by :class:`~fedtab.logreg.trainer.LogRegTrainer`) is plain JSON, so no
pickle crosses the network: ``features`` (input columns in contract order), ``encoded_features``
(numeric columns, then ``"<feature>=<category>"`` one-hot columns in place), ``mean`` and
``scale`` (StandardScaler of the encoded columns; a numeric column's mean is also its imputation
value), ``coef`` (on the standardised scale) and ``intercept``, plus ``contract``, ``n_iter``,
``converged`` and training metadata. When the job's floor merged rare categories, ``merged``
says how (:class:`~fedtab.logreg.design.Grouping`: each feature's ``<other>`` column, numeric
features held constant); a model without it encodes every category on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from fedtab.data.contract import DataContract
from fedtab.errors import ConfigError, FedtabError
from fedtab.logreg.design import DesignEncoder, Grouping, group_codes


@dataclass(frozen=True)
class LogRegModel:
    """A fitted model: ``P(y=1 | x) = sigmoid(intercept + ((encode(x) - mean) / scale) . coef)``.

    Arrays have shape ``(n_encoded,)``.
    """

    contract: DataContract
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    n_iter: int = 0
    converged: bool = True
    C: float = 1.0
    grouping: Grouping = field(default_factory=Grouping)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogRegModel:
        """Build from the parsed JSON; raises :class:`ConfigError` if it is not a logreg model."""
        if not isinstance(data, dict) or data.get("kind") != "logreg":
            raise ConfigError("not a fedtab logistic regression model (kind != 'logreg')")
        try:
            contract = DataContract.from_dict(data["contract"])
            model = cls(
                contract=contract,
                mean=np.asarray(data["mean"], dtype=np.float64),
                scale=np.asarray(data["scale"], dtype=np.float64),
                coef=np.asarray(data["coef"], dtype=np.float64),
                intercept=float(data["intercept"]),
                n_iter=int(data.get("n_iter", 0)),
                converged=bool(data.get("converged", True)),
                C=float(data.get("params", {}).get("C", 1.0)),
                grouping=Grouping.from_dict(contract, data.get("merged", {})),
            )
        except FedtabError as exc:
            raise ConfigError(f"invalid logreg model: {exc.one_line()}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid logreg model: missing or bad field {exc}") from exc
        d = len(model.encoder.encoded_names)
        if not model.mean.shape == model.scale.shape == model.coef.shape == (d,):
            raise ConfigError(
                f"invalid logreg model: mean/scale/coef must have {d} entries (encoded features)"
            )
        if "features" in data and list(data["features"]) != contract.feature_names:
            raise ConfigError("invalid logreg model: 'features' disagree with the contract")
        if not np.all(model.scale > 0):
            raise ConfigError("invalid logreg model: every scale must be positive")
        return model

    @classmethod
    def from_json(cls, text: bytes | str) -> LogRegModel:
        """Parse ``model.json`` content; raises :class:`ConfigError`."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"model file is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> LogRegModel:
        """Read a ``model.json`` file; raises :class:`ConfigError`."""
        try:
            content = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read model file {path}: {exc.strerror}") from exc
        return cls.from_json(content)

    @property
    def encoder(self) -> DesignEncoder:
        """The input encoding, imputing numeric features with their training mean."""
        layout = DesignEncoder(self.contract, (0.0,) * len(self.contract.features), self.grouping)
        impute: list[float] = []
        column = 0
        for j, spec in enumerate(self.contract.features):
            if spec.kind == "numeric":
                impute.append(float(self.mean[column]) if column < self.mean.size else 0.0)
            else:
                impute.append(0.0)
            column += len(layout.block_names(j))
        return DesignEncoder(self.contract, tuple(impute), self.grouping)

    @property
    def encoded_features(self) -> list[str]:
        return self.encoder.encoded_names

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Impute and one-hot encode LocalTable-style ``X`` ``(n, n_features)`` -> ``(n, d)``.

        Raises :class:`~fedtab.errors.DataContractError` on a wrong shape or category code.
        """
        return self.encoder.encode(X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class, shape ``(n,)``."""
        standard = (self.encode(X) - self.mean) / self.scale
        return np.asarray(standard @ self.coef + self.intercept, dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probabilities for LocalTable-style ``X`` (NaN = missing), ``(n,)``."""
        z = self.decision_function(X)
        return np.asarray(np.exp(-np.logaddexp(0.0, -z)), dtype=np.float64)

    def to_sklearn_pipeline(self, *, include_encoding: bool = True) -> Pipeline:
        """A fitted scikit-learn pipeline whose positive-class probability equals ours.

        With ``include_encoding`` (default) it takes LocalTable-style ``X`` (``n_features``
        columns, category codes as floats, NaN for missing) and its steps are ``encode`` (a
        ``ColumnTransformer`` of ``SimpleImputer(constant=mean)`` per numeric feature and
        ``OneHotEncoder(handle_unknown="ignore")`` per categorical feature; where the floor
        merged rare categories, a ``FunctionTransformer(group_codes)`` maps codes to columns
        before it, and a constant numeric feature is ``FunctionTransformer(np.full_like)``),
        ``scale`` (``StandardScaler``) and ``logreg`` (``LogisticRegression``). Without it, it
        takes the already encoded matrix (:meth:`encode`) and has only the last two steps.
        """
        d = self.coef.size
        scaler = StandardScaler()
        scaler.mean_ = self.mean.copy()
        scaler.scale_ = self.scale.copy()
        scaler.var_ = self.scale**2
        scaler.n_features_in_ = d
        scaler.n_samples_seen_ = 1
        logreg = LogisticRegression(C=self.C)
        logreg.coef_ = self.coef.reshape(1, d).copy()
        logreg.intercept_ = np.array([self.intercept])
        logreg.classes_ = np.array([0, 1])
        logreg.n_features_in_ = d
        logreg.n_iter_ = np.array([self.n_iter], dtype=np.int32)
        steps: list[tuple[str, Any]] = [("scale", scaler), ("logreg", logreg)]
        if include_encoding:
            steps.insert(0, ("encode", self._sklearn_encoder()))
        return Pipeline(steps)

    def _sklearn_encoder(self) -> ColumnTransformer:
        transformers: list[tuple[str, Any, list[int]]] = []
        encoder = self.encoder
        for j, spec in enumerate(self.contract.features):
            step: Any
            if j in self.grouping.constant:
                step = FunctionTransformer(np.full_like, kw_args={"fill_value": encoder.impute[j]})
            elif spec.kind == "numeric":
                step = SimpleImputer(
                    strategy="constant", fill_value=encoder.impute[j], keep_empty_features=True
                )
            elif j in self.grouping.other:
                columns, missing = encoder.category_columns(j)
                width = len(encoder.block_names(j))
                step = Pipeline([
                    ("group", FunctionTransformer(group_codes, kw_args={
                        "columns": columns, "missing": missing})),
                    ("onehot", OneHotEncoder(categories=[[float(c) for c in range(width)]],
                                             handle_unknown="ignore", sparse_output=False)),
                ])
            else:
                codes = [float(c) for c in range(len(spec.categories))]
                step = OneHotEncoder(
                    categories=[codes], handle_unknown="ignore", sparse_output=False
                )
            transformers.append((f"f{j}", step, [j]))
        encoder = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
        encoder.fit(np.zeros((1, len(self.contract.features))))
        return encoder
