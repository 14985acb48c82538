"""``fedtab run``: the operator submits a job file, follows it and saves its artifacts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from fedtab.cli.edge import reports_errors
from fedtab.jobs import JobSpec
from fedtab.transport.messages import JobStatus

_TREE = re.compile(r"^tree/(\d+)/")
_ROUND = re.compile(r"^newton/(\d+)")
PROGRESS_EVERY_SECONDS = 10.0


def round_of(status: JobStatus, total_rounds: int | None) -> tuple[str, float | None]:
    """The job's round as text (``tree 3/100``) and the fraction done, when known."""
    tree = _TREE.match(status.step_id)
    if tree:
        done = int(tree.group(1))
        if total_rounds:
            return f"tree {done + 1}/{total_rounds}", done / total_rounds
        return f"tree {done + 1}", None
    newton = _ROUND.match(status.step_id)
    if newton:
        return f"round {int(newton.group(1)) + 1}", None
    return "", None


def describe(status: JobStatus, total_rounds: int | None = None) -> str:
    """One progress line: state, step, round, elapsed and (when the round count is known) ETA."""
    if status.state in ("queued", "waiting"):
        waiting = ", ".join(status.waiting_for)
        if waiting:
            return f"[{status.job_id}] waiting for banks: {waiting}"
        return f"[{status.job_id}] {status.state}"
    parts = [f"[{status.job_id}] {status.state}", f"step {status.step_index}"]
    if status.step_id:
        parts.append(status.step_id)
    label, fraction = round_of(status, total_rounds)
    if label:
        parts.append(label)
    parts.append(f"elapsed {status.elapsed_seconds:.1f}s")
    if fraction and status.state == "running":
        eta = status.elapsed_seconds / fraction * (1 - fraction)
        parts.append(f"ETA {eta:.0f}s")
    if status.waiting_for and status.state == "running":
        parts.append(f"({status.phase}, waiting for {', '.join(status.waiting_for)})")
    return " ".join(parts)


class ProgressPrinter:
    """Prints a line when the state or step changes, else at most every few seconds."""

    def __init__(self, total_rounds: int | None, every: float = PROGRESS_EVERY_SECONDS) -> None:
        self.total_rounds = total_rounds
        self.every = every
        self._last_key: tuple[str, int] | None = None
        self._last_time = 0.0

    def __call__(self, status: JobStatus) -> None:
        key = (status.state, status.step_index)
        now = time.monotonic()
        if key != self._last_key or now - self._last_time >= self.every:
            click.echo(describe(status, self.total_rounds), err=True)
            self._last_key = key
            self._last_time = now


def total_rounds(spec: JobSpec) -> int | None:
    """Number of trees of a GBDT job (for the ETA); None for other kinds or bad params."""
    if spec.kind != "gbdt":
        return None
    from fedtab.errors import FedtabError
    from fedtab.gbdt.params import GBDTParams

    try:
        return GBDTParams.from_mapping(spec.params).n_estimators
    except FedtabError:
        return None  # the banks will report the bad parameter


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


@click.command()
@click.argument("operator_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Folder for the job's artifacts.")
@click.option("--aggregator", "address", default=None, metavar="HOST:PORT",
              help="Aggregator address (default: the consortium's).")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@reports_errors
def run(operator_dir: Path, job_file: Path, out: Path, address: str | None,
        timeout: float | None) -> None:
    """Submit JOB_FILE with the operator folder OPERATOR_DIR, wait, and save the artifacts."""
    from fedtab.consortium import load_operator_bundle
    from fedtab.transport.operator_client import OperatorClient

    spec = JobSpec.load(job_file)
    bundle = load_operator_bundle(operator_dir)
    if spec.allow_two_banks and len(bundle.config.banks) == 2:
        click.echo("warning: two banks: each can deduce the other's contribution "
                   "(allow_two_banks = true)", err=True)
    started = time.monotonic()
    grace = min(timeout, 60.0) if timeout else 60.0
    with OperatorClient(bundle, address, unavailable_grace=grace) as client:
        job_id = client.submit(spec)
        click.echo(f"submitted {spec.kind} job {job_id} to {client.address}", err=True)
        final = client.wait(job_id, ProgressPrinter(total_rounds(spec)), timeout)
        artifacts = client.fetch_artifacts(job_id)
    paths = write_artifacts(out, artifacts)
    click.echo(f"job {job_id} done in {time.monotonic() - started:.1f}s "
               f"({final.step_index} steps); wrote {', '.join(str(p) for p in paths)}", err=True)
