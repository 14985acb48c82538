"""Parameters of the federated GBDT job, under XGBoost's names, parsed and validated once.

The declarations (ranges, defaults, XGBoost aliases) live in :mod:`fedtab.gbdt.kind`;
:class:`GBDTParams` is their typed result. ``min_child_samples`` is fedtab's privacy floor:
every node whose statistics are revealed, even as a consortium-wide aggregate, covers at least
that many rows. ``max_rows_per_bank`` is a *declared* bound that fixes the encoding clip range;
it never depends on any bank's actual row count, so every bank derives identical encodings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fedtab.gbdt.kind import PARAMETERS


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
        PARAMETERS.check(asdict(self))  # also when built directly, not from a job file

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any], *, default_seed: int = 0) -> GBDTParams:
        """Parse job-file params (XGBoost names and common aliases).

        Raises :class:`ConfigError` for unknown names (with a suggestion), wrong types or
        out-of-range values.
        """
        return cls(**PARAMETERS.validate(params, defaults={"seed": default_seed}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
