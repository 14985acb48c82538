"""The data contract: the schema every bank's table must follow, and a bank's loaded table.

The contract is public within the consortium (the aggregator may hold it). Its value ranges are
rounded outward when inferred so they do not reveal exact extremes of any bank's data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedtab.errors import DataContractError

FeatureKind = Literal["numeric", "categorical"]
CONTRACT_VERSION = 1


@dataclass(frozen=True)
class FeatureSpec:
    """One input column: numeric with a declared range, or categorical with its categories."""

    name: str
    kind: FeatureKind
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] = ()
    nullable: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "nullable": self.nullable}
        if self.kind == "numeric":
            out["lower"] = self.lower
            out["upper"] = self.upper
        else:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        kind = data.get("kind")
        if kind not in ("numeric", "categorical"):
            raise DataContractError(f"feature {data.get('name')!r}: unknown kind {kind!r}")
        return cls(
            name=str(data["name"]),
            kind=kind,
            lower=None if data.get("lower") is None else float(data["lower"]),
            upper=None if data.get("upper") is None else float(data["upper"]),
            categories=tuple(str(c) for c in data.get("categories", ())),
            nullable=bool(data.get("nullable", True)),
        )


@dataclass(frozen=True)
class DataContract:
    """The consortium's shared schema: features in order, the 0/1 label, an optional id."""

    features: tuple[FeatureSpec, ...]
    label: str
    id_column: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fedtab_contract_version": CONTRACT_VERSION,
            "label": self.label,
            "id_column": self.id_column,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataContract:
        try:
            if int(data.get("fedtab_contract_version", -1)) != CONTRACT_VERSION:
                raise DataContractError(
                    f"unsupported contract version {data.get('fedtab_contract_version')!r}"
                )
            return cls(
                features=tuple(FeatureSpec.from_dict(f) for f in data["features"]),
                label=str(data["label"]),
                id_column=None if data.get("id_column") is None else str(data["id_column"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataContractError(f"malformed data contract: {exc}") from exc

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> DataContract:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataContractError(f"cannot read data contract {path}: {exc}") from exc


@dataclass(frozen=True)
class LocalTable:
    """A bank's validated table in model-ready form.

    ``X`` is float64 of shape ``(n_rows, n_features)`` in contract order; categorical features
    hold their category index (0..k-1) as a float; missing values are NaN. ``y`` is float64 0/1
    of shape ``(n_rows,)``.
    """

    contract: DataContract
    X: np.ndarray
    y: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def feature_names(self) -> list[str]:
        return self.contract.feature_names
