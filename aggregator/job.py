"""One job as the aggregator keeps it: spec, banks, state, committed steps, traffic.

Threat model: holds only public material (the spec, committed proposals, aggregate
ciphertexts of the current segment's steps, artifacts); never a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aggregator.checkpoint import StoredJob
from fedtab.jobs import JobSpec
from fedtab.protocol.exchange import CommittedStep
from fedtab.protocol.step_state import StepState
from fedtab.protocol.steps import replay_indices
from fedtab.transport.messages import JobState


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
