"""The data contract: the schema every bank's table must follow, and a bank's loaded table.

The contract is public within the consortium (the aggregator may hold it). Its value ranges are
rounded outward when inferred so they do not reveal exact extremes of any bank's data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fedtab.atomic import atomic_write_text
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

    def __post_init__(self) -> None:
        """Reject specs no table could satisfy; normalise categories to a tuple of str.

        Raises:
            DataContractError: empty name, unknown kind, non-finite or inverted range, or a
                categorical feature without categories or with repeated ones.
        """
        if not self.name:
            raise DataContractError("a feature has an empty name")
        if self.kind not in ("numeric", "categorical"):
            raise DataContractError(f"feature {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "numeric":
            for bound in (self.lower, self.upper):
                if bound is not None and not math.isfinite(bound):
                    raise DataContractError(
                        f"feature {self.name!r}: range bound {bound} is not finite"
                    )
            if self.lower is not None and self.upper is not None and self.lower > self.upper:
                raise DataContractError(
                    f"feature {self.name!r}: lower {self.lower} is above upper {self.upper}"
                )
        else:
            categories = tuple(str(c) for c in self.categories)
            if not categories:
                raise DataContractError(f"feature {self.name!r}: categorical without categories")
            if len(set(categories)) != len(categories):
                raise DataContractError(f"feature {self.name!r}: categories repeat")
            object.__setattr__(self, "categories", categories)

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

    def __post_init__(self) -> None:
        """Reject contracts with no features, repeated names, or a label/id that is a feature.

        Raises:
            DataContractError: naming the offending column.
        """
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features:
            raise DataContractError("the data contract has no features")
        if not self.label:
            raise DataContractError("the data contract has an empty label column name")
        seen: set[str] = set()
        for name in self.feature_names:
            if name in seen:
                raise DataContractError(f"feature {name!r} appears twice in the data contract")
            seen.add(name)
        if self.label in seen:
            raise DataContractError(f"label column {self.label!r} is also a feature")
        if self.id_column is not None:
            if self.id_column in seen:
                raise DataContractError(f"id column {self.id_column!r} is also a feature")
            if self.id_column == self.label:
                raise DataContractError(f"column {self.label!r} is both the label and the id")

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def required_columns(self) -> list[str]:
        """Every column a table must have: features in order, then the label, then the id."""
        extra = [self.label] if self.id_column is None else [self.label, self.id_column]
        return self.feature_names + extra

    def to_json(self) -> str:
        """The contract document as indented JSON text (ends with a newline)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

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
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataContractError(f"malformed data contract: {exc!r}") from exc

    def save(self, path: Path) -> None:
        """Write the contract atomically; raises :class:`DataContractError` if it cannot."""
        try:
            atomic_write_text(Path(path), self.to_json())
        except OSError as exc:
            raise DataContractError(f"cannot write {path}: {exc.strerror}") from exc

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
