"""The messages of the step loop between banks and the aggregator, as plain Python.

A bank *uploads* its contribution, share, proposal or result for a step (:class:`Upload`,
identified by its :class:`Tag`) and follows the step's phase (:class:`StepStatus`); a committed
step is a :class:`CommittedStep`. The aggregator's step state
(:mod:`fedtab.protocol.step_state`), the in-process runner and the gRPC transport
(:mod:`fedtab.transport.convert`) all speak these types; none of them knows protobuf.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum, StrEnum

from fedtab.protocol.steps import JsonDict, SumRequest, proposal_digest
from fedtab.securesum.base import SumContext


class PayloadKind(Enum):
    """What an upload carries."""

    CONTRIBUTION = 1
    SHARD = 2
    PROPOSAL = 3
    RESULT = 4
    ABORT = 5


class Phase(StrEnum):
    """Where the current step of a running job is."""

    CONTRIBUTE = "contribute"  # waiting for every bank's contribution
    DECRYPT = "decrypt"  # the aggregate exists; waiting for every bank's share
    PROPOSE = "propose"  # all shares are in; waiting for every bank's proposal
    FINISH = "finish"  # banks reported they are finished; waiting for every result


def sha256_hex(data: bytes) -> str:
    """SHA-256 hex digest of ``data`` (content digests of payloads)."""
    return hashlib.sha256(data).hexdigest()


def request_digest(request: SumRequest | None) -> str:
    """Digest identifying a step's request; ``""`` when the bank is finished."""
    return "" if request is None else proposal_digest(request.to_dict())


def artifacts_digest(artifacts: dict[str, bytes]) -> str:
    """Digest of a job's artifacts (equal digests: the banks agree on the result)."""
    return proposal_digest({k: v.hex() for k, v in sorted(artifacts.items())})


def sum_context(job_id: str, step_index: int, request: SumRequest, banks: tuple[str, ...],
                key_fingerprint: str) -> SumContext:
    """The secure-sum backend's view of step ``step_index`` of a job."""
    return SumContext(
        job_id=job_id,
        step_index=step_index,
        step_id=request.step_id,
        request_digest=request_digest(request),
        length=request.length,
        encoding=request.encoding,
        banks=tuple(sorted(banks)),
        key_fingerprint=key_fingerprint,
    )


@dataclass(frozen=True)
class Tag:
    """Identifies one bank message within a job's step loop."""

    job_id: str
    step_index: int
    step_id: str
    bank: str
    key_fingerprint: str
    request_digest: str


@dataclass(frozen=True)
class Upload:
    """One bank upload: header fields plus the payload bytes (joined from chunks)."""

    kind: PayloadKind
    tag: Tag
    payload: bytes
    request: SumRequest | None = None  # CONTRIBUTION (and RESULT: None)
    shard_start: int = 0
    shard_stop: int = 0

    @property
    def content_digest(self) -> str:
        return sha256_hex(self.payload)


@dataclass(frozen=True)
class CommittedStep:
    """A committed step: its index, request and the agreed proposal."""

    index: int
    request: SumRequest
    proposal: JsonDict


@dataclass(frozen=True)
class StepStatus:
    """The aggregator's view of a job's current step, as seen by one bank."""

    job_id: str
    job_state: str
    step_index: int
    phase: str
    have_contribution: bool = False
    have_shard: bool = False
    have_proposal: bool = False
    have_result: bool = False
    message: str = ""
