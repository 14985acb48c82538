"""Parameters of the ``logreg`` job, with scikit-learn's names; declared in
:mod:`fedtab.logreg.kind`, validated once by its schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedtab.logreg.kind import PARAMETERS
from fedtab.profiling import DEFAULT_MAX_ROWS, DEFAULT_MIN_GROUP_ROWS


@dataclass(frozen=True)
class LogRegParams:
    """L2 logistic regression settings (scikit-learn ``LogisticRegression`` semantics).

    ``C`` is the inverse regularisation strength; ``class_weight`` is ``None``, ``"balanced"``
    (``n / (2 * n_class)``, from secure-summed label counts) or explicit ``(w0, w1)``; Newton
    stops when the largest component of the weight-normalised gradient (the gradient of the
    objective divided by the summed sample weights, as scikit-learn's lbfgs tests it) is at most
    ``tol``, or after ``max_iter`` Newton steps; ``max_rows_per_bank`` bounds any bank's row
    count for the encodings' clip bounds; ``min_group_rows`` is the fewest rows behind a released
    count, category column or mean (:mod:`fedtab.rare`).
    """

    C: float = 1.0
    class_weight: str | tuple[float, float] | None = None
    tol: float = 1e-8
    max_iter: int = 25
    max_rows_per_bank: int = DEFAULT_MAX_ROWS
    min_group_rows: int = DEFAULT_MIN_GROUP_ROWS

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> LogRegParams:
        """Parse ``ctx.params`` through the kind's schema (:mod:`fedtab.logreg.kind`); unknown
        keys (with a suggestion) and bad values raise :class:`ConfigError`."""
        return cls(**PARAMETERS.validate(params))

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
            "min_group_rows": self.min_group_rows,
        }
