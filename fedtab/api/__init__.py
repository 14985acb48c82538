"""fedtab's Python API: simulate a consortium, run a job, load, score and evaluate a model.

The ``fedtab`` commands are thin wrappers over these functions (option parsing and printing);
errors are the same one-line :class:`~fedtab.errors.FedtabError` subclasses the commands print,
raised rather than turned into an exit code. The names load lazily, so ``import fedtab`` stays
light; ``from fedtab import simulate`` works as well as ``from fedtab.api import simulate``.

- :func:`simulate` -> :class:`SimulationResult`: a whole consortium on this machine (real
  processes, keys and TLS) from DataFrames, files or synthetic data (``fedtab simulate``).
- :func:`run_job` -> :class:`JobResult`: submit a job as the operator and wait for its
  artifacts (``fedtab run``); :func:`cancel_job`.
- :func:`load_model` -> :class:`Model`: score raw DataFrames, ``.to_booster()`` (XGBoost),
  ``.to_sklearn()`` (scikit-learn pipeline).
- :func:`evaluate` -> :class:`Evaluation`: holdout metrics with bootstrap intervals, against a
  baseline, as text, a DataFrame or an HTML report (``fedtab evaluate``).

>>> import fedtab
>>> from fedtab.api.examples import tiny_frame, tiny_logreg_model
>>> model = fedtab.load_model(tiny_logreg_model())
>>> result = fedtab.evaluate(model, tiny_frame(rows=400))
>>> sorted(result.metrics)[:3]
['best_f1', 'best_f1_threshold', 'brier']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedtab.api.evaluation import Evaluation, evaluate
    from fedtab.api.jobs import JobResult, cancel_job, prepared_spec, run_job
    from fedtab.api.models import Model, load_model
    from fedtab.api.simulation import SimulationResult, simulate, simulation_job

# public name -> the module defining it (imported on first use)
EXPORTS = {
    "Evaluation": "fedtab.api.evaluation",
    "evaluate": "fedtab.api.evaluation",
    "JobResult": "fedtab.api.jobs",
    "cancel_job": "fedtab.api.jobs",
    "prepared_spec": "fedtab.api.jobs",
    "run_job": "fedtab.api.jobs",
    "Model": "fedtab.api.models",
    "load_model": "fedtab.api.models",
    "SimulationResult": "fedtab.api.simulation",
    "simulate": "fedtab.api.simulation",
    "simulation_job": "fedtab.api.simulation",
}

__all__ = [
    "Evaluation", "JobResult", "Model", "SimulationResult", "cancel_job", "evaluate",
    "load_model", "prepared_spec", "run_job", "simulate", "simulation_job",
]


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fedtab.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
