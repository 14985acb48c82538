"""The ``logreg`` job kind: L2 logistic regression under scikit-learn's names, declared once.

It releases the profile's moments (and shares their release check and floor ``min_group_rows``,
:mod:`fedtab.profile_kind`), the standardisation of every encoded column and the coefficients,
all computed over the whole consortium. Categories (and missing rows) rarer than ``min_group_rows``
share one ``<other>`` one-hot column, so no coefficient or column mean rests on fewer rows.
"""

from __future__ import annotations

from fedtab.jobs.constraints import Interval, NoneValue, Options, Param, Schema, Table
from fedtab.jobs.kind import EVERYONE, JobKind, Progress, Release
from fedtab.profile_kind import MAX_ROWS, MIN_GROUP_ROWS, MOMENT_RELEASES, check_moments

_POSITIVE = Interval(float, 0, None, closed="neither")

PARAMETERS = Schema("logreg", {
    "C": Param((_POSITIVE,), 1.0),
    "class_weight": Param((NoneValue(), Options(frozenset({"balanced"})),
                           Table(("0", "1"), _POSITIVE))),
    "tol": Param((_POSITIVE,), 1e-8),
    "max_iter": Param((Interval(int, 1, 1000),), 25),
    "max_rows_per_bank": MAX_ROWS,
    "min_group_rows": MIN_GROUP_ROWS,
})


def newton_round_of(step_id: str) -> int | None:
    """The Newton round of a ``newton/<k>`` step (0-based), None for other steps."""
    head, _, number = step_id.partition("/")
    return int(number) if head == "newton" and number.isdigit() else None


KIND = JobKind(
    name="logreg",
    schema=PARAMETERS,
    trainer="fedtab.logreg.trainer:LogRegTrainer",
    releases=(
        *MOMENT_RELEASES,
        Release("mean and scale of every encoded column (of one-hot columns: the per-category "
                "counts above, rare categories sharing one column); class weights", EVERYONE,
                "consortium-wide, per encoded column", floor="min_group_rows",
                consortium_rows=True),
        Release("coefficients, objective value and iteration count (the model)", EVERYONE,
                "consortium-wide", consortium_rows=True),
    ),
    progress=Progress("round", newton_round_of),
    baseline="fedtab.simulation.baselines:fit_logreg",
    simulation_params={"C": 1.0},
    check_proposal=check_moments,
)
