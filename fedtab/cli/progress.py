"""Progress lines for long jobs: state, step, round (tree i/N), elapsed time and ETA.

Shared by ``fedtab run`` and ``fedtab simulate``; lines go to stderr.
"""

from __future__ import annotations

import re
import time

import click

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
    """Prints a line when the state or round (tree, Newton round; else step) changes, and at
    most every ``every`` seconds in between."""

    def __init__(self, total_rounds: int | None, every: float = PROGRESS_EVERY_SECONDS) -> None:
        self.total_rounds = total_rounds
        self.every = every
        self._last_key: tuple[str, str] | None = None
        self._last_time = 0.0

    def __call__(self, status: JobStatus) -> None:
        if status.state == "running" and not status.step_id:
            return  # a step that no bank has named yet: nothing new to show
        label, _ = round_of(status, self.total_rounds)
        key = (status.state, label or str(status.step_index))
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
