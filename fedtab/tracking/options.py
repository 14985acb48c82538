"""The ``--mlflow`` options of ``fedtab run``, ``simulate`` and ``evaluate``.

Each decorator adds its options and hands the command one ``mlflow`` argument, a
:class:`TrackingRequest`, so a command's own signature grows by one parameter only. Put them
under ``reports_errors``: with ``--mlflow`` and no MLflow installed they raise the one-line
:class:`ConfigError` saying how to install it, before the command does any work.
``--mlflow`` takes an optional value: ``--mlflow`` alone uses MLflow's own default tracking URI
(``MLFLOW_TRACKING_URI``, else MLflow's default store), ``--mlflow URI`` that URI. Since the
value is optional, put ``--mlflow`` after the command's arguments or write ``--mlflow=URI``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

DEFAULT_EXPERIMENT = "fedtab"


@dataclass(frozen=True)
class TrackingRequest:
    """What the command line asked of MLflow.

    ``uri``: ``None`` when ``--mlflow`` was not given; ``""`` for MLflow's default URI.
    ``register``: registered-model name for the job's model. ``run_id``: the run ``evaluate``
    logs into (else found by the model's SHA-256).
    """

    uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    register: str | None = None
    run_id: str | None = None

    @property
    def enabled(self) -> bool:
        return self.uri is not None


def _require_mlflow(uri: str | None) -> None:
    if uri is not None:
        from fedtab.tracking.client import import_mlflow

        import_mlflow()


_MLFLOW = click.option(
    "--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]",
    help="Track the job in MLflow at URI (alone: MLFLOW_TRACKING_URI or MLflow's default; "
    "needs pip install 'fedtab[mlflow]').",
)


def tracking_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--mlflow [URI]``, ``--mlflow-experiment`` and ``--register NAME`` to a job
    command; it receives them as ``mlflow: TrackingRequest``."""

    @functools.wraps(func)
    def wrapper(*args: Any, mlflow_uri: str | None, mlflow_experiment: str,
                register: str | None, **kwargs: Any) -> Any:
        if register is not None and mlflow_uri is None:
            raise click.UsageError("--register needs --mlflow")
        _require_mlflow(mlflow_uri)
        kwargs["mlflow"] = TrackingRequest(mlflow_uri, mlflow_experiment, register)
        return func(*args, **kwargs)

    wrapper = click.option(
        "--register", default=None, metavar="NAME",
        help="With --mlflow: add the model to the MLflow model registry as NAME.",
    )(wrapper)
    wrapper = click.option(
        "--mlflow-experiment", default=DEFAULT_EXPERIMENT, show_default=True,
        help="MLflow experiment of the job's run.",
    )(wrapper)
    return _MLFLOW(wrapper)


def evaluate_tracking_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--mlflow [URI]`` and ``--mlflow-run-id`` to ``evaluate``; it receives them as
    ``mlflow: TrackingRequest``."""

    @functools.wraps(func)
    def wrapper(*args: Any, mlflow_uri: str | None, mlflow_run_id: str | None,
                **kwargs: Any) -> Any:
        if mlflow_run_id is not None and mlflow_uri is None:
            raise click.UsageError("--mlflow-run-id needs --mlflow")
        _require_mlflow(mlflow_uri)
        kwargs["mlflow"] = TrackingRequest(mlflow_uri, run_id=mlflow_run_id)
        return func(*args, **kwargs)

    wrapper = click.option(
        "--mlflow-run-id", default=None, metavar="RUN_ID",
        help="With --mlflow: the run to log into [default: the run whose model has this "
        "model file's SHA-256].",
    )(wrapper)
    return _MLFLOW(wrapper)
