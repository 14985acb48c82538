"""Experiment tracking in MLflow: one run per job, the model in MLflow's own flavours.

``fedtab run ... --mlflow [URI]`` and ``fedtab simulate --mlflow [URI]`` open one MLflow run per
job (:class:`~fedtab.tracking.job_run.JobRun`): the job's parameters, the consortium's bank
names (never data), per-round progress metrics, timings and traffic, then the model in MLflow's
``xgboost`` (gbdt) or ``sklearn`` (logreg) flavour under the artifact path ``model``; with
``--register NAME`` a version of registered model NAME. ``fedtab evaluate --mlflow`` logs its
metrics and HTML report into the run whose tag ``fedtab.model_sha256`` is the evaluated model
file's SHA-256 (or the run given with ``--mlflow-run-id``).

MLflow is an optional extra (``pip install 'fedtab[mlflow]'``): nothing here imports it until a
command is given ``--mlflow``.
"""

from __future__ import annotations

from fedtab.tracking.options import TrackingRequest, evaluate_tracking_options, tracking_options

__all__ = ["TrackingRequest", "evaluate_tracking_options", "tracking_options"]
