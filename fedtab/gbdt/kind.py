"""The ``gbdt`` job kind: histogram gradient boosting (XGBoost names), declared once.

Parameters follow XGBoost where XGBoost has them (``learning_rate`` 0.3, ``max_depth`` 6,
``max_bin`` 256, ``reg_lambda`` 1, ...), with its aliases ``eta``, ``gamma``, ``lambda`` and
``num_boost_round``. ``min_child_samples`` is fedtab's privacy floor: every node and every bin
whose statistics are revealed covers at least that many consortium rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedtab.jobs.constraints import Closed, Interval, Param, Schema
from fedtab.jobs.kind import EVERYONE, JobKind, Party, Progress, Release


def _int(low: int, high: int, default: int, *aliases: str) -> Param:
    return Param((Interval(int, low, high),), default, aliases)


def _real(low: float, high: float | None, default: float, closed: Closed = "left",
          *aliases: str) -> Param:
    return Param((Interval(float, low, high, closed=closed),), default, aliases)


def _lambda_or_weight(values: Mapping[str, Any]) -> str | None:
    if values["reg_lambda"] == 0.0 and values["min_child_weight"] == 0.0:
        return "reg_lambda and min_child_weight cannot both be 0"
    return None


PARAMETERS = Schema("gbdt", {
    "n_estimators": _int(1, 100_000, 100, "num_boost_round"),
    "max_depth": _int(1, 16, 6),
    "learning_rate": _real(0.0, 1.0, 0.3, "right", "eta"),
    "max_bin": _int(2, 4096, 256),
    "reg_lambda": _real(0.0, None, 1.0, "left", "lambda"),
    "min_split_loss": _real(0.0, None, 0.0, "left", "gamma"),
    "min_child_weight": _real(0.0, None, 1.0),
    "max_delta_step": _real(0.0, None, 0.0),
    "scale_pos_weight": _real(0.0, 1e6, 1.0, "right"),
    "subsample": _real(0.0, 1.0, 1.0, "right"),
    "colsample_bytree": _real(0.0, 1.0, 1.0, "right"),
    "min_child_samples": Param((Interval(int, 1, None),), 50),
    "seed": Param((Interval(int, None, None),), 0),
    "max_rows_per_bank": _int(1, 2**32, 2**20),
}, rules=(_lambda_or_weight,))


def tree_of(step_id: str) -> int | None:
    """The tree of a ``tree/<t>/depth/<d>/...`` step (0-based), None for other steps."""
    parts = step_id.split("/")
    if len(parts) > 2 and parts[0] == "tree" and parts[1].isdigit():
        return int(parts[1])
    return None


KIND = JobKind(
    name="gbdt",
    schema=PARAMETERS,
    trainer="fedtab.gbdt.trainer:GBDTTrainer",
    releases=(
        Release("cut points of every feature (bin widths)", EVERYONE,
                "per bin of the consortium's rows", floor="min_child_samples"),
        Release("rows and positives of the consortium; the base score", EVERYONE,
                "consortium-wide", floor="min_child_samples"),
        Release("count histograms and (gradient, hessian) sums of tree nodes", (Party.BANKS,),
                "per node and bin", floor="min_child_samples"),
        Release("splits, leaf weights, and gains and covers to two significant digits, of "
                "tree nodes (the model; no row counts)", EVERYONE, "per tree node",
                floor="min_child_samples"),
    ),
    progress=Progress("tree", tree_of, total_param="n_estimators"),
    baseline="fedtab.simulation.baselines:fit_xgboost",
    simulation_params={
        "n_estimators": 100,
        "max_depth": 5,
        "learning_rate": 0.1,
        "max_bin": 64,
        "min_child_samples": 50,
    },
)
