"""Parameters of the federated GBDT job, under XGBoost's names, parsed and validated once.

Defaults follow XGBoost where XGBoost has the parameter (``learning_rate`` 0.3, ``max_depth``
6, ``max_bin`` 256, ``reg_lambda`` 1, ...). ``min_child_samples`` is fedtab's privacy floor:
every node whose statistics are revealed, even as a consortium-wide aggregate, covers at least
that many rows. ``max_rows_per_bank`` is a *declared* bound that fixes the encoding clip range;
it never depends on any bank's actual row count, so every bank derives identical encodings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fedtab.errors import ConfigError

# XGBoost aliases accepted in job files -> fedtab's canonical name.
_ALIASES = {
    "eta": "learning_rate",
    "gamma": "min_split_loss",
    "lambda": "reg_lambda",
    "num_boost_round": "n_estimators",
}

_INT_FIELDS = ("n_estimators", "max_depth", "max_bin", "min_child_samples", "seed",
               "max_rows_per_bank")


@dataclass(frozen=True)
class GBDTParams:
    """Validated hyper-parameters (see module docstring); build with :meth:`from_mapping`."""

    n_estimators: int = 100
    max_depth: int = 6
    learning_rate: float = 0.3
    max_bin: int = 256
    reg_lambda: float = 1.0
    min_split_loss: float = 0.0
    min_child_weight: float = 1.0
    max_delta_step: float = 0.0
    scale_pos_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    min_child_samples: int = 50
    seed: int = 0
    max_rows_per_bank: int = 2**20

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (1 <= self.n_estimators <= 100_000, "n_estimators must be in [1, 100000]"),
            (1 <= self.max_depth <= 16, "max_depth must be in [1, 16]"),
            (0.0 < self.learning_rate <= 1.0, "learning_rate must be in (0, 1]"),
            (2 <= self.max_bin <= 4096, "max_bin must be in [2, 4096]"),
            (self.reg_lambda >= 0.0, "reg_lambda must be >= 0"),
            (self.min_split_loss >= 0.0, "min_split_loss must be >= 0"),
            (self.min_child_weight >= 0.0, "min_child_weight must be >= 0"),
            (self.max_delta_step >= 0.0, "max_delta_step must be >= 0"),
            (0.0 < self.scale_pos_weight <= 1e6, "scale_pos_weight must be in (0, 1e6]"),
            (0.0 < self.subsample <= 1.0, "subsample must be in (0, 1]"),
            (0.0 < self.colsample_bytree <= 1.0, "colsample_bytree must be in (0, 1]"),
            (self.min_child_samples >= 1, "min_child_samples must be >= 1"),
            (1 <= self.max_rows_per_bank <= 2**32, "max_rows_per_bank must be in [1, 2**32]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"gbdt params: {message}")
        if self.reg_lambda == 0.0 and self.min_child_weight == 0.0:
            raise ConfigError("gbdt params: reg_lambda and min_child_weight cannot both be 0")

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any], *, default_seed: int = 0) -> GBDTParams:
        """Parse job-file params (XGBoost names and common aliases).

        Raises :class:`ConfigError` for unknown names, wrong types or out-of-range values.
        """
        known = set(cls.__dataclass_fields__)
        values: dict[str, Any] = {"seed": default_seed}
        for raw_key, raw in params.items():
            key = _ALIASES.get(raw_key, raw_key)
            if key not in known:
                raise ConfigError(f"gbdt params: unknown parameter {raw_key!r}")
            values[key] = _coerce(key, raw)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(key: str, raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ConfigError(f"gbdt params: {key} must be a number, got {raw!r}")
    if key in _INT_FIELDS:
        if isinstance(raw, float) and not raw.is_integer():
            raise ConfigError(f"gbdt params: {key} must be an integer, got {raw!r}")
        return int(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ConfigError(f"gbdt params: {key} must be finite, got {raw!r}")
    return value
