"""Parameters of the ``logreg`` job, with scikit-learn's names and validation at the edge."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedtab.errors import ConfigError
from fedtab.profiling import DEFAULT_MAX_ROWS, parse_max_rows

ALLOWED = ("C", "class_weight", "tol", "max_iter", "max_rows_per_bank")


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name} must be positive and finite, got {value!r}")
    return number


def _class_weight(value: Any) -> str | tuple[float, float] | None:
    """``None``, ``"balanced"`` or a mapping ``{"0": w0, "1": w1}`` (int keys accepted)."""
    if value is None or value == "balanced":
        return value
    if isinstance(value, Mapping):
        weights: dict[int, float] = {}
        for key, weight in value.items():
            label = str(key)
            if label not in ("0", "1"):
                raise ConfigError(f"class_weight keys must be 0 and 1, got {key!r}")
            weights[int(label)] = _positive_float(f"class_weight[{label}]", weight)
        return (weights.get(0, 1.0), weights.get(1, 1.0))
    raise ConfigError(
        f"class_weight must be omitted, \"balanced\" or a table {{\"0\" = w0, \"1\" = w1}}, "
        f"got {value!r}"
    )


@dataclass(frozen=True)
class LogRegParams:
    """L2 logistic regression settings (scikit-learn ``LogisticRegression`` semantics).

    ``C`` is the inverse regularisation strength; ``class_weight`` is ``None``, ``"balanced"``
    (``n / (2 * n_class)``, from secure-summed label counts) or explicit ``(w0, w1)``; Newton
    stops when the largest component of the weight-normalised gradient (the gradient of the
    objective divided by the summed sample weights, as scikit-learn's lbfgs tests it) is at most
    ``tol``, or after ``max_iter`` Newton steps; ``max_rows_per_bank`` bounds any bank's row
    count for the encodings' clip bounds.
    """

    C: float = 1.0
    class_weight: str | tuple[float, float] | None = None
    tol: float = 1e-8
    max_iter: int = 25
    max_rows_per_bank: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> LogRegParams:
        """Parse ``ctx.params``; unknown keys and bad values raise :class:`ConfigError`."""
        unknown = set(params) - set(ALLOWED)
        if unknown:
            raise ConfigError(
                f"unknown logreg parameter(s) {sorted(unknown)}; allowed: {', '.join(ALLOWED)}"
            )
        max_iter = params.get("max_iter", 25)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or not 1 <= max_iter <= 1000:
            raise ConfigError(f"max_iter must be an integer in [1, 1000], got {max_iter!r}")
        return cls(
            C=_positive_float("C", params.get("C", 1.0)),
            class_weight=_class_weight(params.get("class_weight")),
            tol=_positive_float("tol", params.get("tol", 1e-8)),
            max_iter=max_iter,
            max_rows_per_bank=parse_max_rows(params.get("max_rows_per_bank", DEFAULT_MAX_ROWS)),
        )

    def weights(self, rows_total: int, positives_total: int) -> tuple[float, float]:
        """Class weights ``(w0, w1)`` for the consortium's label counts (both must be > 0)."""
        if self.class_weight is None:
            return (1.0, 1.0)
        if isinstance(self.class_weight, tuple):
            return self.class_weight
        negatives = rows_total - positives_total  # "balanced"
        return (rows_total / (2.0 * negatives), rows_total / (2.0 * positives_total))

    def to_dict(self) -> dict[str, Any]:
        weight: Any = self.class_weight
        if isinstance(weight, tuple):
            weight = {"0": weight[0], "1": weight[1]}
        return {
            "C": self.C,
            "class_weight": weight,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "max_rows_per_bank": self.max_rows_per_bank,
        }
