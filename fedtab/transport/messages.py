"""Plain Python messages of the consortium service around the step loop (identity, jobs,
status), kept apart from protobuf (see convert.py).

The step loop's own messages (uploads, tags, step status, committed steps) are in
:mod:`fedtab.protocol.exchange`. The aggregator's coordinator, the bank agent and the operator
client speak these types; only :mod:`fedtab.transport.convert` knows the generated classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from fedtab.protocol.steps import JsonDict


class DownloadKind(Enum):
    """What a download returns."""

    AGGREGATE = 1
    SHARDS = 2
    COMMITTED = 3
    ARTIFACTS = 4


class JobState(StrEnum):
    """Life cycle of a job at the aggregator."""

    QUEUED = "queued"
    WAITING = "waiting"  # waiting for banks to attach
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _connected() -> bool:
    return True


@dataclass(frozen=True)
class Caller:
    """Who is calling, from the verified mTLS certificate: name and role; for a bank, the
    session it sent (None: none sent) and whether its client is still connected."""

    name: str
    role: str  # "aggregator" | "bank" | "operator"
    session: str | None = None
    connected: Callable[[], bool] = field(default=_connected, compare=False, repr=False)


@dataclass(frozen=True)
class UploadAck:
    """The aggregator's answer to an upload."""

    duplicate: bool  # the same content was already held: a harmless resend


@dataclass(frozen=True)
class JobAssignment:
    """The job a bank must work on."""

    job_id: str
    spec: JsonDict  # JobSpec.to_dict()
    banks: tuple[str, ...]


@dataclass(frozen=True)
class JobStatus:
    """Progress of a job as the operator sees it."""

    job_id: str
    state: str
    step_index: int = 0
    step_id: str = ""
    description: str = ""
    phase: str = ""
    elapsed_seconds: float = 0.0
    message: str = ""
    waiting_for: tuple[str, ...] = ()
    banks: tuple[str, ...] = ()
    version: int = 0
    traffic: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE.value, JobState.FAILED.value)


@dataclass(frozen=True)
class Registration:
    """The aggregator's answer to a bank's registration; ``session`` goes with every later
    call of that bank (see :mod:`aggregator.sessions`)."""

    consortium_id: str
    banks: tuple[str, ...] = field(default_factory=tuple)
    session: str = ""
