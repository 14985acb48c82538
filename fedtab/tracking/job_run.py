"""One MLflow run for one fedtab job, fed by the job's status updates.

:func:`job_tracking` opens the run before the job is submitted (so a wrong URI fails before any
bank works): tags name the job kind, the command and the consortium's banks (names only, never
data), params are the job's ``[job]`` keys and its parameters as the kind reads them (defaults
included). As a :class:`~fedtab.cli.progress.ProgressHook` the run then logs, at each new step,
``elapsed_seconds`` and the traffic counters (``traffic.*``), and, as rounds (trees, Newton
rounds: as the job's kind reads its step ids) finish, ``rounds_done`` and ``round_seconds``.
:meth:`JobRun.finish` logs the final figures, the job's files, the model in its MLflow
flavour (:mod:`fedtab.tracking.models`) and, with ``--register``, a model version.

Privacy cost: fedtab's jobs release exact secure sums (no differential-privacy noise), so no
job has a privacy cost yet and none is invented: the run is tagged ``fedtab.privacy_cost =
none``. :func:`privacy_cost` is the one place to read a cost from once a kind reports one
(a ``privacy`` mapping of numbers in the job's report), logged as ``privacy.*`` metrics.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from fedtab.errors import ConfigError
from fedtab.jobs import JobSpec, job_kind
from fedtab.tracking.client import Say, mlflow_errors, open_client
from fedtab.tracking.models import MODEL_ARTIFACT, MODEL_SHA_TAG, log_model, register_model
from fedtab.tracking.options import TrackingRequest
from fedtab.transport.messages import JobStatus

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_PARAM_CHARS = 500  # MLflow caps a param at 6000 characters; an embedded model is longer


class JobProgress(Protocol):
    """:class:`fedtab.cli.progress.JobProgress` as seen from here: its status hooks."""

    hooks: tuple[Any, ...]


P = TypeVar("P", bound=JobProgress)


def job_tracking(request: TrackingRequest, spec: JobSpec, banks: Sequence[str], command: str,
                 extra_params: Mapping[str, Any] | None = None) -> JobRun | NoTracking:
    """The job's MLflow run when ``request`` asks for one, else a :class:`NoTracking`.

    Raises:
        ConfigError: MLflow is not installed, or refuses the URI or experiment.
    """
    if not request.enabled:
        return NoTracking()
    client, uri = open_client(request.uri or "")
    with mlflow_errors(uri):
        experiment = client.get_experiment_by_name(request.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else client.create_experiment(request.experiment))
        tags = {"fedtab.command": command, "fedtab.kind": spec.kind,
                "fedtab.consortium": ",".join(banks), "fedtab.banks": str(len(banks)),
                "fedtab.privacy_cost": "none"}
        run = client.create_run(experiment_id, tags=tags, run_name=f"{spec.kind} job")
        run_id = run.info.run_id
        from mlflow.entities import Param

        params = {**job_params(spec), **(extra_params or {})}
        client.log_batch(run_id, params=[Param(k, _param_text(v)) for k, v in params.items()])
        client.log_dict(run_id, {"banks": list(banks)}, "consortium.json")
    _stderr(f"MLflow: run {run_id} in experiment {request.experiment!r} at {uri}")
    return JobRun(client, run_id, spec, request.register, _stderr)


def job_params(spec: JobSpec) -> dict[str, Any]:
    """The job's ``[job]`` keys and its parameters as the kind reads them (with defaults)."""
    document = spec.to_dict()
    params = dict(document["params"])
    with contextlib.suppress(ConfigError):  # the banks report bad parameters: log as written
        params = job_kind(spec.kind).validate(params)
    job = {f"job.{k}": v for k, v in document["job"].items() if k != "kind"}
    return {"kind": spec.kind, **job, **params}


def privacy_cost(report: Mapping[str, Any] | None) -> dict[str, float]:
    """The job's privacy cost as metrics (``privacy.epsilon`` and the like); empty when the job
    reports none, as every fedtab job does today (see the module docstring)."""
    cost = (report or {}).get("privacy")
    if not isinstance(cost, Mapping):
        return {}
    return {f"privacy.{k}": float(v) for k, v in cost.items() if isinstance(v, int | float)}


class NoTracking:
    """What the commands hold when ``--mlflow`` was not given: does nothing."""

    def observing(self, progress: P) -> P:
        return progress

    def finish(self, files: Sequence[Path], report: Mapping[str, Any] | None = None) -> None:
        return None


class JobRun:
    """The open MLflow run of one job (see the module docstring)."""

    def __init__(self, client: MlflowClient, run_id: str, spec: JobSpec, register: str | None,
                 say: Say) -> None:
        self.client = client
        self.run_id = run_id
        self.register = register
        self.say = say
        self.kind = spec.kind
        progress = job_kind(spec.kind).progress
        self._round_of = progress.round_of if progress is not None else None
        self._started = time.time()
        self._last: JobStatus | None = None
        self._step = -1
        self._total = job_kind(spec.kind).total_rounds(spec.params)
        self._rounds_done: int | None = None
        self._rounds_elapsed = 0.0
        self._warned = False
        self._ended = False
        atexit.register(self._abandon)

    def observing(self, progress: P) -> P:
        """``progress`` with this run among its hooks."""
        progress.hooks = (*progress.hooks, self)
        return progress

    def after_status(self, status: JobStatus, round_: object) -> None:
        """Log the progress of a new step; end the run as FAILED when the job failed. A
        tracking server that stops answering costs one warning line, never the job."""
        if self._ended:
            return
        try:
            self._observe(status)
        except Exception as exc:  # tracking must never stop the job
            if not self._warned:
                self.say(f"warning: MLflow: cannot log progress: {exc}".splitlines()[0])
                self._warned = True

    def _observe(self, status: JobStatus) -> None:
        if self._last is None:  # the first status: the job now has its id
            self.client.set_tag(self.run_id, "fedtab.job_id", status.job_id)
            self.client.set_tag(self.run_id, "mlflow.runName", f"{self.kind} {status.job_id}")
        self._last = status
        if status.state == "failed":
            self.client.set_tag(self.run_id, "fedtab.message", status.message[:5000])
            self._end("FAILED")
            return
        finished = status.state == "done"
        if status.state != "running" and not finished:
            return
        if status.step_index != self._step:
            self._step = status.step_index
            metrics = {"elapsed_seconds": status.elapsed_seconds, **_traffic(status)}
            self._log(metrics, status.step_index)
        self._count_rounds(status, finished)

    def _count_rounds(self, status: JobStatus, finished: bool) -> None:
        """``rounds_done`` (step = rounds done) and ``round_seconds``: the mean time of the
        rounds finished since the previous status that moved the count (the operator sees
        sampled statuses, so a fast round may pass unseen)."""
        current = self._round_of(status.step_id) if self._round_of and status.step_id else None
        done = current  # rounds before the current one are done
        if finished:
            last = self._rounds_done if current is None else current + 1
            done = self._total or last
        if done is None or done == self._rounds_done:
            return
        metrics = {"rounds_done": float(done)}
        if self._rounds_done is not None and done > self._rounds_done:
            metrics["round_seconds"] = ((status.elapsed_seconds - self._rounds_elapsed)
                                        / (done - self._rounds_done))
        self._log(metrics, done)
        self._rounds_done, self._rounds_elapsed = done, status.elapsed_seconds

    def finish(self, files: Sequence[Path], report: Mapping[str, Any] | None = None) -> None:
        """Log the final figures, ``files`` (the job's outputs), the model in its MLflow
        flavour when ``model.json`` is among them, and register it; ends the run."""
        with mlflow_errors(self.client.tracking_uri):
            metrics = self._final_metrics(report)
            self._log(metrics, self._step if self._step >= 0 else 0)
            if any(key.startswith("privacy.") for key in metrics):
                self.client.set_tag(self.run_id, "fedtab.privacy_cost", "privacy.* metrics")
            for path in files:
                self.client.log_artifact(self.run_id, str(path), "fedtab")
            model = next((p for p in files if p.name == "model.json"), None)
            try:
                if model is not None:
                    self._log_model(model)
            except Exception:
                self._abandon()
                raise
            self._end("FINISHED")

    def _final_metrics(self, report: Mapping[str, Any] | None) -> dict[str, float]:
        metrics = {"wall_seconds": time.time() - self._started}
        if self._last is not None:
            metrics.update({"job_seconds": self._last.elapsed_seconds,
                            "steps": float(self._last.step_index), **_traffic(self._last)})
        if report is not None:
            metrics.update({f"timings.{k}": float(v)
                            for k, v in report.get("timings", {}).items()})
            metrics.update(comparison_metrics(report.get("holdout_comparison", [])))
        metrics.update(privacy_cost(report))
        return metrics

    def _log_model(self, model: Path) -> None:
        from fedtab.tracking.models import sha256_of

        self.client.set_tag(self.run_id, MODEL_SHA_TAG, sha256_of(model))
        flavour = log_model(self.client, self.run_id, model)
        self.client.set_tag(self.run_id, "fedtab.model_flavour", flavour)
        where = f"runs:/{self.run_id}/{MODEL_ARTIFACT}"
        self.say(f"MLflow: model logged as {where} (mlflow.{flavour}.load_model)")
        if self.register:
            version = register_model(self.client, self.run_id, self.register)
            self.say(f"MLflow: registered as models:/{self.register}/{version}")

    def _log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):  # MLflow's per-request limit
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])

    def _end(self, state: str) -> None:
        self._ended = True
        atexit.unregister(self._abandon)
        self.client.set_terminated(self.run_id, state)

    def _abandon(self) -> None:
        """At exit with the run still open (the job failed or was interrupted): FAILED, with
        one quick try, not MLflow's minutes of retries against a server that may be gone."""
        if not self._ended:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
            with contextlib.suppress(Exception):  # the process is exiting anyway
                self._end("FAILED")


def comparison_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``holdout.<bank>.<model>.<metric>`` from a simulation's holdout comparison."""
    out = {}
    for row in rows:
        for model, metrics in row.get("metrics", {}).items():
            for name, value in metrics.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[f"holdout.{row['bank']}.{model}.{name}"] = float(value)
    return out


def _traffic(status: JobStatus) -> dict[str, float]:
    return {f"traffic.{k}": float(v) for k, v in (status.traffic or {}).items()}


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else f"<{len(text)} characters, not logged>"


def _stderr(message: str) -> None:
    click.echo(message, err=True)
