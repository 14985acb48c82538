"""``fedtab run``: the operator submits a job file, follows it and saves its artifacts.

Option parsing and printing only: the work is :func:`fedtab.api.run_job` (and
:func:`fedtab.api.cancel_job`).
"""

from __future__ import annotations

from pathlib import Path

import click

from fedtab.api.jobs import cancel_job, prepared_spec, run_job, write_artifacts
from fedtab.cli.edge import reports_errors
from fedtab.cli.progress import print_progress
from fedtab.jobs import JobSpec
from fedtab.tracking import TrackingRequest, tracking_options

__all__ = ["prepared_spec", "run", "write_artifacts"]


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
    if cancel_id is not None:
        if job_file is not None:
            raise click.UsageError("give either JOB_FILE or --cancel JOB_ID, not both")
        status = cancel_job(operator_dir, cancel_id, reason, aggregator=address, timeout=timeout)
        click.echo(f"job {cancel_id} {status.state}: {status.message}", err=True)
        return
    if job_file is None:
        raise click.UsageError("missing argument JOB_FILE (or --cancel JOB_ID)")
    spec = JobSpec.load(job_file)  # for the progress lines; run_job checks it in full
    result = run_job(operator_dir, job_file, out=out, aggregator=address, timeout=timeout,
                     progress=print_progress(spec), say=_say, mlflow=mlflow)
    click.echo(f"job {result.job_id} done in {result.seconds:.1f}s "
               f"({result.status.step_index} steps); wrote "
               f"{', '.join(str(p) for p in result.paths)}", err=True)
    if "evaluation.txt" in result.artifacts:  # a kind that reports a table (evaluate)
        click.echo(result.artifacts["evaluation.txt"].decode(), nl=False)


def _say(message: str) -> None:
    click.echo(message, err=True)
