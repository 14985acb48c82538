"""One job as the aggregator keeps it: spec, banks, state, committed steps, traffic.

Threat model: holds only public material (the spec, committed proposals, aggregate
ciphertexts of recent steps, artifacts); never a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aggregator.checkpoint import StoredJob
from aggregator.step_state import StepState
from fedtab.jobs import JobSpec
from fedtab.transport.messages import CommittedStep, JobState


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
    aggregates: dict[int, bytes] = field(default_factory=dict)  # recent committed steps
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

    @classmethod
    def from_stored(cls, stored: StoredJob) -> Job:
        """Rebuild a job from its checkpoint."""
        rec = stored.record
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
            aggregates=stored.aggregates,
            traffic={str(k): float(v) for k, v in dict(rec.get("traffic") or {}).items()},
            artifacts=stored.artifacts,
        )
