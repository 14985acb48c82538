"""The operator's handlers of the aggregator's :class:`~aggregator.coordinator.Coordinator`.

Submit, follow and cancel jobs, and the monitoring snapshot. They are a mixin of the
coordinator: they share its lock, jobs and clocks, and call its scheduling and checkpoint
methods. Threat model: the operator's certificate is checked first (:meth:`_operator`); the
operator sees job metadata and progress, never a key or a plaintext aggregate.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from aggregator.job import Job
from aggregator.observer import JobView, OpsSnapshot
from fedtab.errors import ConfigError, FedtabError, JobFailedError, ProtocolError
from fedtab.jobs import JobSpec, job_kind
from fedtab.transport.messages import Caller, JobState, JobStatus

log = logging.getLogger("fedtab.aggregator")


class OperatorHandlers:
    """Operator RPC handlers (mixed into the coordinator, which provides the state below)."""

    if TYPE_CHECKING:
        banks: tuple[str, ...]
        bank_timeout: float
        _cond: threading.Condition
        _jobs: dict[str, Job]
        _last_seen: dict[str, float]
        _version: int
        _clock: Callable[[], float]
        _wall: Callable[[], float]

        def _operator(self, caller: Caller) -> None: ...
        def _save(self, job: Job, *, required: bool = True) -> None: ...
        def _schedule(self) -> None: ...
        def _bump(self) -> None: ...
        def _check_timeouts(self) -> None: ...
        def _attached(self) -> set[str]: ...
        def _fail(self, job: Job, exc: FedtabError) -> None: ...

    def submit(self, caller: Caller, spec: JobSpec) -> str:
        """Queue a job over all consortium banks; raises PrivacyError for too few banks."""
        self._operator(caller)
        spec.check_bank_count(len(self.banks))
        job_kind(spec.kind).check_scored_model(spec.params)  # an embedded model: shape only
        with self._cond:
            seq = 1 + max((j.seq for j in self._jobs.values()), default=0)
            job_id = f"job-{seq:04d}-{secrets.token_hex(3)}"
            timeout = spec.bank_timeout or self.bank_timeout
            job = Job(job_id, seq, spec, self.banks, timeout, JobState.QUEUED, self._wall())
            self._save(job)  # first: a job the disk cannot hold is refused, not half-queued
            self._jobs[job_id] = job
            log.info("job %s submitted: %s over %s", job_id, spec.kind, ", ".join(self.banks))
            self._schedule()
            self._bump()
            return job_id

    def job_status(self, caller: Caller, job_id: str, wait: float, known_version: int
                   ) -> JobStatus:
        """The job's progress; waits up to ``wait`` s for a change after ``known_version``."""
        self._operator(caller)
        deadline = self._clock() + wait
        with self._cond:
            while True:
                self._schedule()
                self._check_timeouts()
                job = self._jobs.get(job_id)
                if job is None:
                    raise ConfigError(f"unknown job {job_id!r}")
                remaining = deadline - self._clock()
                if self._version != known_version or remaining <= 0:
                    return job.status(self._version, self._attached(), self._wall())
                self._cond.wait(min(remaining, 1.0))

    def cancel(self, caller: Caller, job_id: str, reason: str = "") -> JobStatus:
        """Fail a queued, waiting or running job at the operator's request (the queue moves on;
        banks see it failed on their next poll). Cancelling a failed job changes nothing;
        raises ConfigError for an unknown job, ProtocolError for a finished one."""
        self._operator(caller)
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                raise ConfigError(f"unknown job {job_id!r}")
            if job.state is JobState.DONE:
                raise ProtocolError(f"job {job_id} is already done, it cannot be cancelled")
            why = " ".join(reason.split())[:500]
            self._fail(job, JobFailedError(
                f"cancelled by the operator at step {len(job.committed)}"
                + (f": {why}" if why else "")
            ))
            self._schedule()
            self._bump()
            return job.status(self._version, self._attached(), self._wall())

    def snapshot(self) -> OpsSnapshot:
        """Jobs and banks as monitoring sees them (read-only, under the lock)."""
        with self._cond:
            now = self._clock()
            jobs = tuple(JobView(j.job_id, j.spec.kind, j.state.value, len(j.committed))
                         for j in sorted(self._jobs.values(), key=lambda j: j.seq))
            seen = {b: max(0.0, now - t) for b, t in self._last_seen.items()}
            return OpsSnapshot(jobs, self.banks, seen, frozenset(self._attached()))
