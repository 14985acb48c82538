"""fedtab: secure federated gradient boosting and logistic regression for bank tables.

The Python API (:mod:`fedtab.api`: ``simulate``, ``run_job``, ``load_model``, ``evaluate``,
...) is available here too; it is imported on first use, so ``import fedtab`` stays light.
"""

import importlib as _importlib
from importlib import metadata as _metadata
from typing import Any as _Any

try:
    __version__ = _metadata.version("fedtab")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# fedtab.api's public names (its __all__; a test keeps the two equal). Only these import it.
API_NAMES = frozenset({
    "Evaluation", "JobResult", "Model", "SimulationResult", "cancel_job", "evaluate",
    "load_model", "prepared_spec", "run_job", "simulate", "simulation_job",
})


def __getattr__(name: str) -> _Any:
    if name in API_NAMES:
        return getattr(_importlib.import_module("fedtab.api"), name)
    raise AttributeError(f"module 'fedtab' has no attribute {name!r}")


def __dir__() -> list[str]:
    public = {name for name in globals() if not name.startswith("_")}
    return sorted(public | API_NAMES | {"__version__"})
