"""``fedtab run``: the operator submits a job file, follows it and saves its artifacts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fedtab.cli.edge import reports_errors
from fedtab.cli.progress import print_progress
from fedtab.jobs import JobSpec, job_kind
from fedtab.tracking import TrackingRequest, tracking_options

if TYPE_CHECKING:
    from fedtab.data.contract import DataContract


def write_artifacts(out: Path, artifacts: dict[str, bytes]) -> list[Path]:
    """Write each artifact atomically under ``out``; returns the paths."""
    from fedtab.atomic import atomic_write_bytes
    from fedtab.errors import ConfigError

    paths = []
    for name, content in sorted(artifacts.items()):
        if "/" in name or name.startswith("."):
            raise ConfigError(f"refusing artifact name {name!r}")
        path = out / name
        atomic_write_bytes(path, content)
        paths.append(path)
    return paths


def prepared_spec(job_file: Path, contract: DataContract | None = None) -> JobSpec:
    """The job as it will be submitted, checked in full before anything is sent: tables and
    ``[job]`` keys, the kind's spec preparation (``evaluate`` embeds its model file, which must
    be a model trained under the consortium's ``contract``), then ``[params]`` against the
    kind's schema, the one the banks use. Raises ConfigError."""
    spec = JobSpec.load(job_file)
    spec = job_kind(spec.kind).prepare_spec(spec, job_file, contract)
    spec.check_params()
    return spec


@click.command()
@click.argument("operator_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Folder for the job's artifacts.")
@click.option("--aggregator", "address", default=None, metavar="HOST:PORT",
              help="Aggregator address (default: the consortium's).")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@click.option("--cancel", "cancel_id", default=None, metavar="JOB_ID",
              help="Instead of submitting: cancel this queued, waiting or running job.")
@click.option("--reason", default="", help="With --cancel: why (shown in the job's message).")
@reports_errors
@tracking_options
def run(operator_dir: Path, job_file: Path | None, out: Path, address: str | None,
        timeout: float | None, cancel_id: str | None, reason: str,
        mlflow: TrackingRequest) -> None:
    """Submit JOB_FILE with the operator folder OPERATOR_DIR, wait, and save the artifacts.

    With --cancel JOB_ID (and no JOB_FILE) the job fails now and the queue moves on.
    """
    from fedtab.consortium import load_operator_bundle
    from fedtab.tracking.job_run import job_tracking
    from fedtab.transport.operator_client import OperatorClient

    if cancel_id is not None:
        if job_file is not None:
            raise click.UsageError("give either JOB_FILE or --cancel JOB_ID, not both")
        with OperatorClient(load_operator_bundle(operator_dir), address,
                            unavailable_grace=min(timeout or 60.0, 60.0)) as client:
            status = client.cancel(cancel_id, reason)
        click.echo(f"job {cancel_id} {status.state}: {status.message}", err=True)
        return
    if job_file is None:
        raise click.UsageError("missing argument JOB_FILE (or --cancel JOB_ID)")
    JobSpec.load(job_file).check_params()  # the job file alone, before the operator folder
    bundle = load_operator_bundle(operator_dir)
    spec = prepared_spec(job_file, bundle.contract)
    if spec.allow_two_banks and len(bundle.config.banks) == 2:
        click.echo("warning: two banks: each can deduce the other's contribution "
                   "(allow_two_banks = true)", err=True)
    tracking = job_tracking(mlflow, spec, bundle.config.banks, "run")
    started = time.monotonic()
    grace = min(timeout, 60.0) if timeout else 60.0
    with OperatorClient(bundle, address, unavailable_grace=grace) as client:
        job_id = client.submit(spec)
        click.echo(f"submitted {spec.kind} job {job_id} to {client.address}", err=True)
        final = client.wait(job_id, tracking.observing(print_progress(spec)), timeout)
        artifacts = client.fetch_artifacts(job_id)
    paths = write_artifacts(out, artifacts)
    tracking.finish(paths)
    click.echo(f"job {job_id} done in {time.monotonic() - started:.1f}s "
               f"({final.step_index} steps); wrote {', '.join(str(p) for p in paths)}", err=True)
    if "evaluation.txt" in artifacts:  # a kind that reports a table (evaluate)
        click.echo(artifacts["evaluation.txt"].decode(), nl=False)
