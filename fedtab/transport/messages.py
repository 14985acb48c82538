"""Plain Python messages of the consortium protocol, kept apart from protobuf (see convert.py).

The aggregator's :class:`~aggregator.coordinator.Coordinator`, the bank agent and the operator
client speak these types; only :mod:`fedtab.transport.convert` knows the generated classes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from fedtab.protocol.steps import JsonDict, SumRequest, proposal_digest


class PayloadKind(Enum):
    """What an upload carries."""

    CONTRIBUTION = 1
    SHARD = 2
    PROPOSAL = 3
    RESULT = 4
    ABORT = 5


class DownloadKind(Enum):
    """What a download returns."""

    AGGREGATE = 1
    SHARDS = 2
    COMMITTED = 3
    ARTIFACTS = 4


class Phase(StrEnum):
    """Where the current step of a running job is."""

    CONTRIBUTE = "contribute"  # waiting for every bank's encrypted contribution
    DECRYPT = "decrypt"  # the aggregate exists; waiting for every bank's sealed shard
    PROPOSE = "propose"  # all shards are in; waiting for every bank's proposal
    FINISH = "finish"  # banks reported they are finished; waiting for every result


class JobState(StrEnum):
    """Life cycle of a job at the aggregator."""

    QUEUED = "queued"
    WAITING = "waiting"  # waiting for banks to attach
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def sha256_hex(data: bytes) -> str:
    """SHA-256 hex digest of ``data`` (content digests of payloads)."""
    return hashlib.sha256(data).hexdigest()


def request_digest(request: SumRequest | None) -> str:
    """Digest identifying a step's request; ``""`` when the bank is finished."""
    return "" if request is None else proposal_digest(request.to_dict())


def artifacts_digest(artifacts: dict[str, bytes]) -> str:
    """Digest of a job's artifacts, as the in-memory runner computes it."""
    return proposal_digest({k: v.hex() for k, v in sorted(artifacts.items())})


@dataclass(frozen=True)
class Caller:
    """Who is calling, from the verified mTLS certificate: name and role."""

    name: str
    role: str  # "aggregator" | "bank" | "operator"


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
class UploadAck:
    duplicate: bool
    phase: str


@dataclass(frozen=True)
class SealedShard:
    """Plaintexts of ciphertexts ``[start, stop)`` of an aggregate, sealed by ``bank``."""

    bank: str
    start: int
    stop: int
    sealed: bytes


@dataclass(frozen=True)
class CommittedStep:
    """A committed step: its index, request and the agreed proposal."""

    index: int
    request: SumRequest
    proposal: JsonDict


@dataclass(frozen=True)
class JobAssignment:
    """The job a bank must work on."""

    job_id: str
    spec: JsonDict  # JobSpec.to_dict()
    banks: tuple[str, ...]
    committed_steps: int
    bank_timeout: float


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
    n_ciphertexts: int = 0


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
    consortium_id: str
    banks: tuple[str, ...] = field(default_factory=tuple)


def shard_range(n_ciphertexts: int, banks: tuple[str, ...], bank: str) -> tuple[int, int]:
    """The contiguous ciphertext range ``[start, stop)`` of an aggregate that ``bank`` decrypts.

    Banks are taken in sorted order; ranges cover ``0..n_ciphertexts`` without overlap.
    """
    i = banks.index(bank)
    n = len(banks)
    return n_ciphertexts * i // n, n_ciphertexts * (i + 1) // n


def shard_aad(tag: Tag, start: int, stop: int) -> bytes:
    """Associated data binding a sealed shard to job, step, bank, range and key."""
    return (
        f"fedtab-shard|{tag.job_id}|{tag.step_index}|{tag.step_id}|{tag.bank}|{start}-{stop}|"
        f"{tag.key_fingerprint}"
    ).encode()
