"""Progress lines for long jobs: state, step, round (tree i/N), elapsed time and ETA.

Shared by ``fedtab run`` and ``fedtab simulate``; lines go to stderr. Status updates reach
:class:`ProgressHook` objects through :class:`JobProgress` (the way XGBoost's
``TrainingCallback`` hears of every iteration), together with the job's round as the job's own
kind reads its step ids (:class:`fedtab.jobs.Progress`); nothing here knows any step id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import click

from fedtab.jobs import JobSpec, job_kind
from fedtab.transport.messages import JobStatus

PROGRESS_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class Round:
    """A job's round as text (``tree 3/100``; empty outside rounds) and the fraction done."""

    label: str = ""
    fraction: float | None = None


class ProgressHook(Protocol):
    """Told of every status update of a job, with its round."""

    def after_status(self, status: JobStatus, round_: Round) -> None:
        """Called for each status; must not raise."""
        ...


class JobProgress:
    """Feeds a job's status updates to ``hooks``; call it with each :class:`JobStatus` (it is
    the ``on_status`` callback of :meth:`OperatorClient.wait`)."""

    def __init__(self, spec: JobSpec | None, *hooks: ProgressHook) -> None:
        kind = job_kind(spec.kind) if spec is not None else None
        self.progress = kind.progress if kind is not None else None
        self.total = kind.total_rounds(spec.params) if kind and spec else None
        self.hooks = hooks

    def round_of(self, status: JobStatus) -> Round:
        """The round of ``status``'s step, as the job's kind reads it."""
        if self.progress is None:
            return Round()
        return Round(*self.progress.read(status.step_id, self.total))

    def __call__(self, status: JobStatus) -> None:
        round_ = self.round_of(status)
        for hook in self.hooks:
            hook.after_status(status, round_)


def describe(status: JobStatus, round_: Round | None = None) -> str:
    """One progress line: state, step, round, elapsed and (when the round count is known) ETA."""
    if status.state in ("queued", "waiting"):
        waiting = ", ".join(status.waiting_for)
        if waiting:
            return f"[{status.job_id}] waiting for banks: {waiting}"
        return f"[{status.job_id}] {status.state}"
    round_ = round_ or Round()
    parts = [f"[{status.job_id}] {status.state}", f"step {status.step_index}"]
    if status.step_id:
        parts.append(status.step_id)
    if round_.label:
        parts.append(round_.label)
    parts.append(f"elapsed {status.elapsed_seconds:.1f}s")
    if round_.fraction and status.state == "running":
        eta = status.elapsed_seconds / round_.fraction * (1 - round_.fraction)
        parts.append(f"ETA {eta:.0f}s")
    if status.waiting_for and status.state == "running":
        parts.append(f"({status.phase}, waiting for {', '.join(status.waiting_for)})")
    return " ".join(parts)


class ProgressPrinter:
    """A :class:`ProgressHook` printing a line when the state or round (tree, Newton round;
    else step) changes, and at most every ``every`` seconds in between."""

    def __init__(self, every: float = PROGRESS_EVERY_SECONDS) -> None:
        self.every = every
        self._last_key: tuple[str, str] | None = None
        self._last_time = 0.0

    def after_status(self, status: JobStatus, round_: Round) -> None:
        if status.state == "running" and not status.step_id:
            return  # a step that no bank has named yet: nothing new to show
        key = (status.state, round_.label or str(status.step_index))
        now = time.monotonic()
        if key != self._last_key or now - self._last_time >= self.every:
            click.echo(describe(status, round_), err=True)
            self._last_key = key
            self._last_time = now


def print_progress(spec: JobSpec | None) -> JobProgress:
    """The status callback of ``fedtab run`` and ``fedtab simulate``: progress lines."""
    return JobProgress(spec, ProgressPrinter())
