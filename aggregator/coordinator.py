"""The aggregator's protocol logic as plain Python: jobs, the step loop, identity checks.

The gRPC servicer (``aggregator.service``) only converts messages and calls these handlers, so
everything here is testable without a network. Each handler takes the verified :class:`Caller`
(from the mTLS certificate) and raises :class:`~fedtab.errors.FedtabError` subclasses, which
the servicer maps to gRPC status codes.

Threat model: honest-but-curious aggregator. It holds the consortium *public* key only: it can
validate and add ciphertexts, relay decryption shards sealed under a key it lacks, compare
proposals and store the committed model; it never holds a private key or a plaintext aggregate.
A bank is identified by its certificate; a message naming another bank, a wrong key fingerprint,
a replayed or future step, or a non-bank caller is rejected (and logged) without disturbing the
job for the honest banks. One process speaks for a bank at a time: its registration's session
(:mod:`aggregator.sessions`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from aggregator.checkpoint import JobStore
from aggregator.job import Job, write_error
from aggregator.observer import CoordinatorObserver
from aggregator.operator_handlers import OperatorHandlers
from aggregator.sessions import ATTACH_WINDOW_SECONDS, Sessions
from fedtab.crypto.keys import PublicKey
from fedtab.errors import (
    AuthenticationError,
    CheckpointError,
    ConfigError,
    FedtabError,
    JobFailedError,
    ProtocolError,
    ReplayError,
)
from fedtab.protocol.exchange import CommittedStep, PayloadKind, Phase, StepStatus, Upload
from fedtab.protocol.step_state import StepState, status_done_my_part
from fedtab.securesum.shared_key_aggregator import SharedKeyAggregator
from fedtab.transport import convert
from fedtab.transport.messages import (
    Caller,
    DownloadKind,
    JobAssignment,
    JobState,
    Registration,
    UploadAck,
)
from fedtab.transport.options import DEFAULT_BANK_TIMEOUT_SECONDS, UploadLimits

log = logging.getLogger("fedtab.aggregator")


class Coordinator(OperatorHandlers):
    """All aggregator state and handlers, guarded by one condition variable (the operator's
    handlers are in :mod:`aggregator.operator_handlers`)."""

    def __init__(
        self,
        consortium_id: str,
        banks: tuple[str, ...],
        public_key: PublicKey,
        *,
        store: JobStore | None = None,
        bank_timeout: float = DEFAULT_BANK_TIMEOUT_SECONDS,
        upload_limits: UploadLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        attach_window: float = ATTACH_WINDOW_SECONDS,
    ) -> None:
        self.consortium_id = consortium_id
        self.banks = tuple(sorted(banks))
        self.public_key = public_key
        self.fingerprint = public_key.fingerprint
        self.backend = SharedKeyAggregator(public_key)  # the secure sum's aggregator side
        self.bank_timeout = bank_timeout
        self.upload_limits = upload_limits or UploadLimits()  # what one upload may carry
        self._store = store
        self._clock = clock
        self._wall = wall_clock
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._last_seen: dict[str, float] = {}
        self.attach_window = attach_window
        self._sessions = Sessions(attach_window, clock)  # one process per bank
        self._version = 0
        self._born = clock()  # when this aggregator started (timeouts of resumed jobs)
        self.observer = CoordinatorObserver()  # monitoring hooks (aggregator.metrics)
        if store is not None:
            self._resume(store)

    # ----- identity -------------------------------------------------------------------------

    def _bank(self, caller: Caller, claimed: str | None = None, fingerprint: str | None = None
              ) -> str:
        """Check that ``caller`` is a consortium bank speaking for itself with our key, from
        the process of its current session."""
        if caller.role != "bank":
            raise AuthenticationError(f"{caller.role} {caller.name!r} may not call bank RPCs")
        if caller.name not in self.banks:
            raise AuthenticationError(f"certificate {caller.name!r} is not a consortium bank")
        if claimed is not None and claimed != caller.name:
            raise AuthenticationError(
                f"bank {caller.name!r} sent a message in the name of {claimed!r}"
            )
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise ProtocolError(
                f"bank {caller.name!r} used key {fingerprint[:16]}..., the consortium key is "
                f"{self.fingerprint[:16]}..."
            )
        self._sessions.check(caller.name, caller.session)
        self._last_seen[caller.name] = self._clock()
        return caller.name

    @staticmethod
    def _operator(caller: Caller) -> None:
        if caller.role != "operator":
            raise AuthenticationError(f"only the operator may do this, not {caller.role} "
                                      f"{caller.name!r}")

    def session_call(self, caller: Caller) -> AbstractContextManager[None]:
        """Wrap one RPC of ``caller``: while it runs, its session counts as attached (when its
        client is still connected; see :mod:`aggregator.sessions`)."""
        return self._sessions.call(caller.name, caller.session, caller.connected, self._cond)

    def check_bank(self, caller: Caller) -> None:
        """Raise AuthenticationError unless ``caller`` is a consortium bank."""
        with self._cond:
            self._bank(caller)

    # ----- bank handlers --------------------------------------------------------------------

    def register(self, caller: Caller, bank: str, fingerprint: str) -> Registration:
        """Attach a bank's process: a new session, or SessionError while another process's
        session is attached (waits up to the attach window when that is unsure)."""
        with self._cond:
            name = self._bank(caller, bank, fingerprint)
            session = self._sessions.admit(name, self._cond.wait)
            self._last_seen[name] = self._clock()
            log.info("bank %s registered", name)
            self._schedule()
            self._cond.notify_all()
            return Registration(self.consortium_id, self.banks, session)

    def detach(self, caller: Caller) -> None:
        """End the caller's session: its process stops, another may register at once."""
        with self._cond:
            name = self._bank(caller)
            if self._sessions.end(name, caller.session):
                log.info("bank %s detached", name)
            self._cond.notify_all()

    def next_task(self, caller: Caller, wait: float) -> JobAssignment | None:
        """The running job this bank takes part in, waiting up to ``wait`` seconds for one."""
        deadline = self._clock() + wait
        with self._cond:
            name = self._bank(caller)
            while True:
                self._last_seen[name] = self._clock()
                self._schedule()
                self._check_timeouts()
                job = self._active()
                if job is not None and job.state is JobState.RUNNING and name in job.banks:
                    return JobAssignment(job.job_id, job.spec.to_dict(), job.banks)
                remaining = deadline - self._clock()
                if remaining <= 0 or not caller.connected():
                    return None
                self._cond.wait(min(remaining, 1.0))

    def poll_step(self, caller: Caller, job_id: str, step_index: int, wait: float) -> StepStatus:
        """The job's current step as this bank sees it; waits while the bank has nothing to do."""
        deadline = self._clock() + wait
        with self._cond:
            name = self._bank(caller)
            job = self._job(job_id, name)
            while True:
                self._last_seen[name] = self._clock()
                self._schedule()
                self._check_timeouts()
                status = job.step_status(name)
                finished = status.job_state in (JobState.DONE.value, JobState.FAILED.value)
                busy = status.job_state == JobState.RUNNING.value and (
                    status.step_index != step_index or not status_done_my_part(status)
                )
                remaining = deadline - self._clock()
                if busy or finished or remaining <= 0 or not caller.connected():
                    return status
                self._cond.wait(min(remaining, 1.0))

    def upload_limit(self, caller: Caller, head: Upload) -> int:
        """The most payload bytes the upload whose header is ``head`` may carry (its payload is
        read no further): what the step's request and aggregate allow a contribution or share,
        else the declared limit. Refuses (FedtabError) what :meth:`upload` refuses on the
        header alone."""
        limits = self.upload_limits
        with self._cond:
            name, _, step = self._target(caller, head)
            if step is None:
                return limits.abort_bytes
            allowed = step.upload_bytes(name, head)
            if allowed is None:
                return (limits.proposal_bytes if head.kind is PayloadKind.PROPOSAL
                        else limits.result_bytes)
            if head.kind is PayloadKind.CONTRIBUTION and step.request is None:
                return min(allowed, limits.first_contribution_bytes)
            return allowed

    def _target(self, caller: Caller, upload: Upload) -> tuple[str, Job, StepState | None]:
        """The sender, job and current step of an upload (no step for an abort); a request
        showing that the banks diverged fails the job."""
        tag = upload.tag
        name = self._bank(caller, tag.bank, tag.key_fingerprint)
        job = self._job(tag.job_id, name)
        if upload.kind is PayloadKind.ABORT:
            return name, job, None
        step = job.current_step(tag.step_index, name)
        try:
            step.check_request(name, upload)
        except FedtabError as exc:
            if getattr(exc, "fails_job", False):
                self._fail(job, exc)
            log.warning("rejected %s from %s: %s", upload.kind.name, name, exc.one_line())
            raise
        return name, job, step

    def upload(self, caller: Caller, upload: Upload) -> UploadAck:
        """Accept a contribution, shard, proposal or result for the current step."""
        tag = upload.tag
        with self._cond:
            name, job, step = self._target(caller, upload)
            if step is None:
                reason = " ".join(upload.payload.decode("utf-8", "replace").split())[:500]
                self._fail(job, JobFailedError(
                    f"bank {name} cannot continue at step {len(job.committed)}: {reason}"
                ))
                return UploadAck(False)
        # Parsing and validating ciphertexts happens outside the lock.
        prepared = step.prepare(upload)
        with self._cond:
            if job.step is not step or job.state is not JobState.RUNNING:
                raise ReplayError(f"step {tag.step_index} of {job.job_id} is no longer current")
            try:
                duplicate, complete = step.accept(name, upload, prepared)
            except FedtabError as exc:
                if getattr(exc, "fails_job", False):
                    self._fail(job, exc)
                log.warning("rejected %s from %s: %s", upload.kind.name, name, exc.one_line())
                raise
            job.count(f"upload_{upload.kind.name.lower()}_bytes", len(upload.payload))
            if duplicate:
                log.info("harmless resend of %s from %s (step %d)", upload.kind.name, name,
                         tag.step_index)
            else:
                self.observer.upload_accepted(job.job_id, name, upload, prepared)
            if complete:
                self._advance(job, step)
                if step.phase is Phase.DECRYPT and step.index == len(job.committed):
                    job.count("ciphertexts_summed", step.aggregate_size)
            self._bump()
            return UploadAck(duplicate)

    def download(self, caller: Caller, kind: DownloadKind, job_id: str, step_index: int,
                 from_index: int) -> bytes:
        """The payload of an AGGREGATE, SHARDS, COMMITTED or ARTIFACTS download."""
        with self._cond:
            if kind is DownloadKind.ARTIFACTS:
                self._operator(caller)
                job = self._jobs.get(job_id)
                if job is None:
                    raise ConfigError(f"unknown job {job_id!r}")
                if job.state is not JobState.DONE or job.artifacts is None:
                    raise ProtocolError(f"job {job_id} is {job.state.value}, it has no artifacts")
                return convert.artifacts_to_bytes(job.artifacts)
            name = self._bank(caller)
            job = self._job(job_id, name)
            payload = self._download(job, name, kind, step_index, from_index)
            job.count(f"download_{kind.name.lower()}_bytes", len(payload))
            return payload

    def _download(self, job: Job, name: str, kind: DownloadKind, step_index: int,
                  from_index: int) -> bytes:
        if kind is DownloadKind.COMMITTED:
            if from_index < 0:
                raise ProtocolError("from_index must be >= 0")
            return convert.committed_to_bytes(job.committed[from_index:])
        if kind is DownloadKind.AGGREGATE and 0 <= step_index < len(job.committed):
            if step_index not in job.aggregates:
                raise ReplayError(f"the aggregate of step {step_index} is no longer kept")
            return job.aggregates[step_index]
        step = job.current_step(step_index, name)
        if kind is DownloadKind.AGGREGATE:
            return step.aggregate_payload()
        return convert.shards_to_bytes(step.shares())

    # ----- internals ------------------------------------------------------------------------

    def _bump(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def _active(self) -> Job | None:
        pending = [j for j in self._jobs.values()
                   if j.state in (JobState.QUEUED, JobState.WAITING, JobState.RUNNING)]
        return min(pending, key=lambda j: j.seq) if pending else None

    def _attached(self) -> set[str]:
        now = self._clock()
        return {b for b, t in self._last_seen.items() if now - t <= self.attach_window}

    def _schedule(self) -> None:
        """Start the oldest pending job once all its banks are attached."""
        job = self._active()
        if job is None or job.state is JobState.RUNNING:
            return
        missing = [b for b in job.banks if b not in self._attached()]
        if missing:
            if job.state is not JobState.WAITING:
                job.state = JobState.WAITING
                self._bump()
            return
        job.state = JobState.RUNNING
        job.started_at = job.started_at or self._wall()
        job.step = job.new_step(self.backend, self.fingerprint)
        self._save(job, required=False)  # a failing disk fails the job at its first commit
        log.info("job %s running with banks %s", job.job_id, ", ".join(job.banks))
        self._bump()

    def _check_timeouts(self) -> None:
        """Fail the active job if one of its banks has been silent for its bank timeout.

        Applies to a running job, and to a waiting job that had already started (resumed after
        an aggregator restart): its banks are expected back, and a bank that never returns must
        not block it and the queue behind it forever. A job that never ran waits for its banks
        without limit (they may not have been started yet).
        """
        job = self._active()
        if job is None:
            return
        late, where = job.late_banks(self._clock(), self._last_seen, self._born)
        if late:
            self._fail(job, JobFailedError(
                f"bank(s) {', '.join(late)} absent for more than {job.bank_timeout:.0f} s "
                f"(bank_timeout) {where}"
            ))

    def _job(self, job_id: str, bank: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ProtocolError(f"unknown job {job_id!r}")
        if bank not in job.banks:
            raise AuthenticationError(f"bank {bank!r} is not part of job {job_id}")
        return job

    def _advance(self, job: Job, step: StepState) -> None:
        """All banks delivered the phase's item: move on, commit, or finish.

        A commit or the finish is written to the checkpoint *before* memory changes, so memory
        never runs ahead of disk. A write that fails (disk full, I/O error) fails the job with
        a one-line CheckpointError (nothing half-committed; a restart resumes at the last step
        on disk): the job never hangs on a step that can no longer advance.
        """
        try:
            outcome = step.complete_phase()
        except FedtabError as exc:
            self._fail(job, exc)
            raise
        try:
            if isinstance(outcome, CommittedStep):
                job.apply_commit(self._store, outcome, step.aggregate_payload())
                log.info("job %s committed step %d (%s)", job.job_id, outcome.index,
                         outcome.request.step_id)
                self.observer.step_committed(job.job_id, outcome.index)
                job.step = job.new_step(self.backend, self.fingerprint)
            elif isinstance(outcome, dict):
                job.apply_finish(self._store, outcome)
                log.info("job %s done: %s", job.job_id, ", ".join(sorted(outcome)))
        except CheckpointError as exc:
            self._fail(job, exc)

    def _fail(self, job: Job, exc: FedtabError) -> None:
        if job.state in (JobState.DONE, JobState.FAILED):
            return
        job.state = JobState.FAILED
        # A plain JobFailedError needs no class prefix: the operator's error already says the
        # job failed. Specific causes (ProposalMismatchError, ...) keep their name.
        job.message = " ".join(str(exc).split()) if type(exc) is JobFailedError else exc.one_line()
        job.step = None
        self._save(job, required=False)
        log.error("job %s failed: %s", job.job_id, job.message)
        self._bump()

    def _save(self, job: Job, *, required: bool = True) -> None:
        """Write the job's record; raises CheckpointError if that fails and ``required``,
        else only logs (a failure or state change must not be lost for an unwritable disk)."""
        if self._store is None:
            return
        try:
            self._store.save_record(job.job_id, job.record())
        except OSError as exc:
            error = write_error(job, "its record", exc)
            if required:
                raise error from exc
            log.error("%s", error.one_line())

    def _resume(self, store: JobStore) -> None:
        for stored in store.load_all():
            job = Job.resume(stored)
            if job.state is JobState.QUEUED and (job.started_at or job.committed):
                log.info("resuming job %s at step %d", job.job_id, len(job.committed))
            self._jobs[job.job_id] = job
