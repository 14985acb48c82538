"""Run a job on a real consortium as its operator, from Python (what ``fedtab run`` does).

:func:`run_job` checks the job in full before anything is sent (tables, ``[job]`` keys, the
kind's preparation, ``[params]`` against the schema the banks use), submits it with the
operator's bundle (mutual TLS), follows it until it ends and fetches its artifacts, which it
writes under ``out`` when given. Progress reaches ``progress`` as
:class:`~fedtab.transport.messages.JobStatus` updates; a failed job raises
:class:`~fedtab.errors.JobFailedError`, an unreachable aggregator
:class:`~fedtab.errors.PeerUnavailableError`.

>>> from fedtab.api import prepared_spec
>>> spec = prepared_spec({"job": {"kind": "gbdt", "seed": 7}, "params": {"n_estimators": 5}})
>>> spec.kind, spec.seed, dict(spec.params)
('gbdt', 7, {'n_estimators': 5})
>>> prepared_spec({"job": {"kind": "gbdt"}, "params": {"n_estimator": 5}})
Traceback (most recent call last):
...
fedtab.errors.ConfigError: unknown gbdt parameter 'n_estimator'; did you mean 'n_estimators'?
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from fedtab.atomic import atomic_write_bytes
from fedtab.errors import ConfigError
from fedtab.jobs import JobSpec, job_kind
from fedtab.tracking import TrackingRequest

if TYPE_CHECKING:
    from fedtab.api.models import Model
    from fedtab.data.contract import DataContract
    from fedtab.transport.messages import JobStatus

Say = Callable[[str], None]
Progress: TypeAlias = Callable[["JobStatus"], None]
JobInput: TypeAlias = JobSpec | Mapping[str, Any] | str | Path


@dataclass(frozen=True)
class JobResult:
    """A finished job: its id and spec, final status, run time and artifacts (file name ->
    bytes), and the files written (empty without ``out``)."""

    job_id: str
    spec: JobSpec
    status: JobStatus
    seconds: float
    artifacts: dict[str, bytes]
    paths: list[Path] = field(default_factory=list)

    @property
    def model(self) -> Model:
        """The trained model (``model.json`` of a gbdt or logreg job).

        Raises:
            ConfigError: the job produced no model (a profile or evaluate job).
        """
        from fedtab.api.models import Model

        if "model.json" not in self.artifacts:
            raise ConfigError(f"job {self.job_id} ({self.spec.kind}) produced no model.json")
        return Model.from_json(self.artifacts["model.json"])

    def json(self, name: str) -> Any:
        """The JSON artifact ``name`` parsed (``result.json``, ``evaluation.json``, ...).

        Raises:
            ConfigError: no such artifact, or it is not JSON.
        """
        if name not in self.artifacts:
            raise ConfigError(f"job {self.job_id} has no artifact {name!r} "
                              f"(it has {sorted(self.artifacts)})")
        try:
            return json.loads(self.artifacts[name])
        except ValueError as exc:
            raise ConfigError(f"artifact {name!r} is not JSON: {exc}") from exc


def prepared_spec(job: JobInput, contract: DataContract | None = None) -> JobSpec:
    """The job as it will be submitted, checked in full before anything is sent: tables and
    ``[job]`` keys, the kind's spec preparation (``evaluate`` embeds its model file, a path
    in the job file's folder or below, or the current folder's for a mapping, which must be a
    model trained under the consortium's ``contract``), then ``[params]`` against the kind's
    schema, the one the banks use.

    ``job`` is a :class:`~fedtab.jobs.JobSpec`, a job document (``{"job": {...}, "params":
    {...}}``) or the path of a TOML job file. Raises :class:`ConfigError`.
    """
    spec, job_file = _loaded(job)
    return _prepared(spec, job_file, contract)


def _loaded(job: JobInput) -> tuple[JobSpec, Path]:
    """The job's spec as written and the file relative paths in it start from."""
    if isinstance(job, JobSpec):
        return job, Path.cwd() / "job.toml"
    if isinstance(job, Mapping):
        return JobSpec.from_dict(job), Path.cwd() / "job.toml"
    return JobSpec.load(Path(job)), Path(job)


def _prepared(spec: JobSpec, job_file: Path, contract: DataContract | None) -> JobSpec:
    spec = job_kind(spec.kind).prepare_spec(spec, job_file, contract)
    spec.check_params()
    return spec


def write_artifacts(out: Path, artifacts: Mapping[str, bytes]) -> list[Path]:
    """Write each artifact atomically under ``out``; returns the paths. Raises ConfigError for
    a name that is not a plain file name."""
    paths = []
    for name, content in sorted(artifacts.items()):
        if "/" in name or name.startswith("."):
            raise ConfigError(f"refusing artifact name {name!r}")
        path = Path(out) / name
        atomic_write_bytes(path, content)
        paths.append(path)
    return paths


def run_job(
    operator_dir: str | Path,
    job: JobInput,
    *,
    out: str | Path | None = None,
    aggregator: str | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
    say: Say | None = None,
    mlflow: TrackingRequest | None = None,
) -> JobResult:
    """Submit ``job`` with the operator folder ``operator_dir``, wait, fetch its artifacts.

    ``job`` as for :func:`prepared_spec` (checked against the consortium's contract from the
    operator folder). ``out``: folder to write the artifacts into.
    ``aggregator``: ``HOST:PORT`` (default: the consortium's). ``timeout``: seconds to wait
    for the job (also caps the 60 s the aggregator may be unreachable). ``progress`` receives
    every status change; ``say`` one-line notes (submitted, two-bank warning). ``mlflow``:
    track the job as an MLflow run (``fedtab run --mlflow``: parameters, progress, model).

    Raises:
        ConfigError: a bad job, or an unwritable artifact.
        KeyMaterialError: a bad operator folder.
        PrivacyError: too few banks for the job.
        JobFailedError: the job failed (its step and reason).
        PeerUnavailableError: the aggregator is unreachable, or ``timeout`` passed.
    """
    from fedtab.consortium import load_operator_bundle
    from fedtab.transport.operator_client import OperatorClient

    note = say or _quiet
    spec, job_file = _loaded(job)
    spec.check_params()  # the job alone, before the operator folder
    bundle = load_operator_bundle(Path(operator_dir))
    spec = _prepared(spec, job_file, bundle.contract)
    if spec.allow_two_banks and len(bundle.config.banks) == 2:
        note("warning: two banks: each can deduce the other's contribution "
             "(allow_two_banks = true)")
    progress, finish = tracked(mlflow, spec, bundle.config.banks, "run", progress)
    started = time.monotonic()
    grace = min(timeout, 60.0) if timeout else 60.0
    with OperatorClient(bundle, aggregator, unavailable_grace=grace) as client:
        job_id = client.submit(spec)
        note(f"submitted {spec.kind} job {job_id} to {client.address}")
        final = client.wait(job_id, progress, timeout)
        artifacts = client.fetch_artifacts(job_id)
    paths = [] if out is None else write_artifacts(Path(out), artifacts)
    finish(paths)
    seconds = time.monotonic() - started
    return JobResult(job_id, spec, final, seconds, artifacts, paths)


def cancel_job(
    operator_dir: str | Path,
    job_id: str,
    reason: str = "",
    *,
    aggregator: str | None = None,
    timeout: float | None = None,
) -> JobStatus:
    """Fail the queued, waiting or running job ``job_id`` now (the queue moves on); returns
    its status. Raises ConfigError for an unknown job, ProtocolError for a finished one."""
    from fedtab.consortium import load_operator_bundle
    from fedtab.transport.operator_client import OperatorClient

    with OperatorClient(load_operator_bundle(Path(operator_dir)), aggregator,
                        unavailable_grace=min(timeout or 60.0, 60.0)) as client:
        return client.cancel(job_id, reason)


def _quiet(message: str) -> None:
    """The default ``say``: notes are dropped."""


def tracked(
    mlflow: TrackingRequest | None,
    spec: JobSpec,
    banks: Sequence[str],
    command: str,
    progress: Progress | None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Progress | None, Callable[..., None]]:
    """With ``mlflow`` enabled: open the job's MLflow run, and return ``progress`` observed by
    it and the run's ``finish(files, report=None)``; else ``progress`` and a no-op.

    Raises:
        ConfigError: MLflow is not installed, or refuses the URI or experiment.
    """
    if mlflow is None or not mlflow.enabled:
        return progress, _no_finish
    from fedtab.tracking.job_run import job_tracking

    run = job_tracking(mlflow, spec, banks, command, extra)
    hooked = progress if hasattr(progress, "hooks") else _Hooked(progress)
    return run.observing(cast(Any, hooked)), run.finish


class _Hooked:
    """A progress callback with status hooks (what an MLflow run observes)."""

    def __init__(self, inner: Progress | None) -> None:
        self.inner = inner
        self.hooks: tuple[Any, ...] = ()

    def __call__(self, status: JobStatus) -> None:
        if self.inner is not None:
            self.inner(status)
        for hook in self.hooks:
            hook.after_status(status, None)


def _no_finish(*args: Any) -> None:
    """``finish`` without tracking."""
