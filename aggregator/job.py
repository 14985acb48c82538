"""One job as the aggregator keeps it: spec, banks, state, committed steps, traffic.

Threat model: holds only public material (the spec, committed proposals, aggregate
ciphertexts of the current segment's steps, artifacts); never a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aggregator.checkpoint import JobStore, StoredJob
from fedtab.errors import (
    CheckpointError,
    FedtabError,
    JobFailedError,
    PeerUnavailableError,
    ProtocolError,
    ReplayError,
)
from fedtab.jobs import JobSpec
from fedtab.protocol.exchange import CommittedStep, StepStatus
from fedtab.protocol.step_state import StepState
from fedtab.protocol.steps import replay_indices
from fedtab.securesum.base import AggregatorSide
from fedtab.transport import convert
from fedtab.transport.messages import JobState, JobStatus


def segment_indices(committed: Sequence[CommittedStep]) -> range:
    """The committed steps whose aggregates the aggregator keeps: the current segment (the
    steps a rejoining bank replays through ``propose``, :func:`replay_indices`)."""
    return replay_indices([step.request for step in committed])


@dataclass
class Job:
    """A job's state at the aggregator; :meth:`record` is what the checkpoint stores."""

    job_id: str
    seq: int
    spec: JobSpec
    banks: tuple[str, ...]
    bank_timeout: float
    state: JobState
    submitted_at: float
    started_at: float | None = None
    message: str = ""
    committed: list[CommittedStep] = field(default_factory=list)
    aggregates: dict[int, bytes] = field(default_factory=dict)  # the current segment's steps
    traffic: dict[str, float] = field(default_factory=dict)  # bytes by message kind
    step: StepState | None = None
    artifacts: dict[str, bytes] | None = None

    def record(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "seq": self.seq,
            "spec": self.spec.to_dict(),
            "banks": list(self.banks),
            "bank_timeout": self.bank_timeout,
            "state": self.state.value,
            "message": self.message,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "traffic": self.traffic,
        }

    def count(self, key: str, amount: float) -> None:
        self.traffic[key] = self.traffic.get(key, 0.0) + amount

    def new_step(self, backend: AggregatorSide, fingerprint: str) -> StepState:
        """A fresh state for the first uncommitted step."""
        return StepState(self.job_id, len(self.committed), self.banks, backend, fingerprint,
                         _WireArtifacts())

    def current_step(self, step_index: int, bank: str) -> StepState:
        """The running step, if ``bank``'s message for ``step_index`` belongs to it.

        Raises JobFailedError (failed job), ReplayError (finished job or committed step),
        PeerUnavailableError (not running yet: retry) or ProtocolError (future step).
        """
        if self.state is JobState.FAILED:
            raise JobFailedError(f"job {self.job_id} failed: {self.message}")
        if self.state is JobState.DONE:
            raise ReplayError(f"job {self.job_id} is already finished")
        if self.state is not JobState.RUNNING or self.step is None:
            # Retryable: the job resumes once every bank is attached again.
            raise PeerUnavailableError(f"job {self.job_id} is not running yet (waiting for banks)")
        current = self.step.index
        if step_index < current:
            raise ReplayError(
                f"replay rejected: step {step_index} of {self.job_id} is already committed "
                f"(bank {bank})"
            )
        if step_index > current:
            raise ProtocolError(
                f"step {step_index} of {self.job_id} not reached yet (current {current}, "
                f"bank {bank})"
            )
        return self.step

    def apply_commit(self, store: JobStore | None, outcome: CommittedStep,
                     aggregate: bytes) -> None:
        """Checkpoint a committed step, then apply it; keep the aggregates of the current
        segment (the replay contract of :mod:`fedtab.protocol.steps`), and no others.

        The aggregate is written before the step and the others pruned after it. Raises a
        one-line CheckpointError, with memory unchanged, when the checkpoint cannot be written.
        """
        kept = segment_indices([*self.committed, outcome])
        try:
            if store is not None:
                if outcome.index in kept:
                    store.save_aggregate(self.job_id, outcome.index, aggregate)
                store.save_step(self.job_id, outcome)
                store.prune_aggregates(self.job_id, kept)
        except OSError as exc:
            raise write_error(self, f"step {outcome.index}", exc) from exc
        self.committed.append(outcome)
        self.aggregates = {i: a for i, a in self.aggregates.items() if i in kept}
        if outcome.index in kept:
            self.aggregates[outcome.index] = aggregate

    def apply_finish(self, store: JobStore | None, artifacts: dict[str, bytes]) -> None:
        """Checkpoint the agreed artifacts, then mark the job done (CheckpointError as above)."""
        message = f"finished after {len(self.committed)} steps"
        try:
            if store is not None:
                store.save_artifacts(self.job_id, artifacts)
                store.save_record(self.job_id, {
                    **self.record(), "state": JobState.DONE.value, "message": message,
                })
        except OSError as exc:
            raise write_error(self, "the artifacts", exc) from exc
        self.artifacts = artifacts
        self.state = JobState.DONE
        self.aggregates.clear()
        self.message = message
        self.step = None

    def late_banks(self, now: float, last_seen: dict[str, float], born: float
                   ) -> tuple[list[str], str]:
        """Banks silent for longer than the bank timeout, and where the job is.

        Applies to a running job, and to a waiting job that had already started (resumed after
        an aggregator restart): its banks are expected back, and a bank that never returns must
        not block it and the queue behind it forever. A job that never ran waits for its banks
        without limit (they may not have been started yet).
        """
        if self.state is JobState.RUNNING:
            late = [b for b in self.banks if now - last_seen.get(b, now) > self.bank_timeout]
            return late, f"at step {len(self.committed)}"
        if self.state is JobState.WAITING and (self.started_at or self.committed):
            # Banks not seen since this aggregator started count from its start.
            late = [b for b in self.banks if now - last_seen.get(b, born) > self.bank_timeout]
            return late, f"while the resumed job waited for them at step {len(self.committed)}"
        return [], ""

    def step_status(self, bank: str) -> StepStatus:
        """The current step as ``bank`` sees it."""
        step = self.step
        if step is None or self.state is not JobState.RUNNING:
            return StepStatus(self.job_id, self.state.value, len(self.committed), "",
                              message=self.message)
        return step.status(self.job_id, bank)

    def status(self, version: int, attached: set[str], now: float) -> JobStatus:
        """The job's progress as the operator sees it (``now``: wall-clock time)."""
        step = self.step
        current = step.request if step is not None else None
        if self.state is JobState.DONE and self.committed:
            current = self.committed[-1].request
        waiting: tuple[str, ...] = ()
        if self.state is JobState.WAITING:
            waiting = tuple(b for b in self.banks if b not in attached)
        elif step is not None:
            waiting = step.waiting_for()
        return JobStatus(
            job_id=self.job_id,
            state=self.state.value,
            step_index=len(self.committed),
            step_id=current.step_id if current else "",
            description=current.description if current else "",
            phase=step.phase.value if step is not None else "",
            elapsed_seconds=now - self.started_at if self.started_at else 0.0,
            message=self.message,
            waiting_for=waiting,
            banks=self.banks,
            version=version,
            traffic=dict(self.traffic),
        )

    @classmethod
    def resume(cls, stored: StoredJob) -> Job:
        """A job from its checkpoint, ready to run again: a running or waiting job is queued
        (its uncommitted step restarts; banks resend idempotently). Raises CheckpointError."""
        try:
            job = cls.from_stored(stored)
        except (KeyError, TypeError, ValueError, FedtabError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise CheckpointError(f"checkpoint of {stored.folder} unreadable: {what}") from exc
        if job.state in (JobState.RUNNING, JobState.WAITING):
            job.state = JobState.QUEUED
        return job

    @classmethod
    def from_stored(cls, stored: StoredJob) -> Job:
        """Rebuild a job from its checkpoint."""
        rec = stored.record
        kept = segment_indices(stored.committed)
        return cls(
            job_id=str(rec["job_id"]),
            seq=int(rec["seq"]),
            spec=JobSpec.from_dict(rec["spec"]),
            banks=tuple(rec["banks"]),
            bank_timeout=float(rec["bank_timeout"]),
            state=JobState(rec["state"]),
            submitted_at=float(rec["submitted_at"]),
            started_at=rec.get("started_at"),
            message=str(rec.get("message", "")),
            committed=stored.committed,
            aggregates={i: a for i, a in stored.aggregates.items() if i in kept},
            traffic={str(k): float(v) for k, v in dict(rec.get("traffic") or {}).items()},
            artifacts=stored.artifacts,
        )


def write_error(job: Job, what: str, exc: Exception) -> CheckpointError:
    """A one-line CheckpointError for a failed checkpoint write (no local paths: banks see it)."""
    if isinstance(exc, CheckpointError):
        return exc
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return CheckpointError(f"cannot write the checkpoint of job {job.job_id} ({what}): {reason}")


class _WireArtifacts:
    """Decodes a RESULT payload as the gRPC transport carries it. An object rather than the
    function itself, so that the aggregator's state reaches no module globals (a test walks
    everything the coordinator references to show that no private key is among it)."""

    __slots__ = ()

    def __call__(self, data: bytes) -> dict[str, bytes]:
        return convert.artifacts_from_bytes(data)
