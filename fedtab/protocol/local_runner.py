"""Drive banks' step machines in one process: the in-memory counterpart of the gRPC service.

Two runners share one loop (:func:`_run_steps`), differing only in how a step's vectors are
summed:

* :func:`run_plaintext` adds the float vectors in the clear. With a single trainer holding the
  pooled table this *is* fedtab's centralized trainer, the reference the federated model must
  equal.
* :func:`run_encrypted` does the real secure sum: every bank's vector is encoded, packed and
  Paillier-encrypted, the ciphertexts are added homomorphically, and the aggregate is decrypted
  and decoded, with the same keys and encodings as the distributed system.

Threat model: this module runs every party in one process, so it holds the private key next to
all banks' data. It exists for tests, benchmarks and the centralized reference; the
distributed system (``aggregator``, ``bank_node``) keeps the private key away from the
aggregator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fedtab.crypto import EncryptedVector, Encryptor, add_encrypted, encrypted_vector_wire_size
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.keys import PrivateKey
from fedtab.errors import ProposalMismatchError, ProtocolError
from fedtab.protocol.steps import BankTrainer, JsonDict, SumRequest, proposal_digest

ProgressCallback = Callable[[int, SumRequest], None]
Summer = Callable[[SumRequest, Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class RunStats:
    """What a run cost: steps, ciphertexts, bytes on the wire, and time in crypto."""

    steps: int = 0
    values_summed: int = 0
    ciphertexts: int = 0
    wire_bytes: int = 0
    encrypt_seconds: float = 0.0
    add_seconds: float = 0.0
    decrypt_seconds: float = 0.0
    wall_seconds: float = 0.0
    per_step: list[dict[str, float | int | str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "values_summed": self.values_summed,
            "ciphertexts": self.ciphertexts,
            "wire_bytes": self.wire_bytes,
            "encrypt_seconds": self.encrypt_seconds,
            "add_seconds": self.add_seconds,
            "decrypt_seconds": self.decrypt_seconds,
            "wall_seconds": self.wall_seconds,
        }


@dataclass(frozen=True)
class JobOutcome:
    """The agreed artifacts of a finished job, the committed proposals, and the run's costs."""

    artifacts: dict[str, bytes]
    commits: list[tuple[SumRequest, JsonDict]]
    stats: RunStats


def run_plaintext(
    trainers: Mapping[str, BankTrainer], *, progress: ProgressCallback | None = None
) -> JobOutcome:
    """Run a job summing vectors in the clear (centralized reference; no privacy)."""
    stats = RunStats()

    def plain_sum(request: SumRequest, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        stats.values_summed += request.length
        return np.sum(np.stack(list(vectors.values())), axis=0)

    return _run_steps(trainers, plain_sum, stats, progress)


def run_encrypted(
    trainers: Mapping[str, BankTrainer],
    private_key: PrivateKey,
    *,
    workers: int = 1,
    progress: ProgressCallback | None = None,
) -> JobOutcome:
    """Run a job with real Paillier secure sums (encrypt, add homomorphically, decrypt)."""
    stats = RunStats()
    public_key = private_key.public
    with (
        Encryptor(public_key, workers=workers) as encryptor,
        Decryptor(private_key, workers=workers) as decryptor,
    ):

        def secure_sum(request: SumRequest, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
            started = time.perf_counter()
            encrypted: list[EncryptedVector] = [
                encryptor.encrypt(vector, request.encoding) for vector in vectors.values()
            ]
            encrypted_at = time.perf_counter()
            total = add_encrypted(encrypted, public_key)
            added_at = time.perf_counter()
            aggregate = decryptor.decrypt(total)
            decrypted_at = time.perf_counter()
            cts = sum(len(vector.ciphertexts) for vector in encrypted) + len(total.ciphertexts)
            # Contributions up, the aggregate down to every bank (sizes, not serialisations).
            wire = sum(encrypted_vector_wire_size(v) for v in encrypted)
            wire += encrypted_vector_wire_size(total) * len(encrypted)
            stats.values_summed += request.length
            stats.ciphertexts += cts
            stats.wire_bytes += wire
            stats.encrypt_seconds += encrypted_at - started
            stats.add_seconds += added_at - encrypted_at
            stats.decrypt_seconds += decrypted_at - added_at
            stats.per_step.append(
                {
                    "step_id": request.step_id,
                    "values": request.length,
                    "ciphertexts": cts,
                    "wire_bytes": wire,
                    "encrypt_seconds": encrypted_at - started,
                    "decrypt_seconds": decrypted_at - added_at,
                }
            )
            return aggregate

        return _run_steps(trainers, secure_sum, stats, progress)


def _run_steps(
    trainers: Mapping[str, BankTrainer],
    summer: Summer,
    stats: RunStats,
    progress: ProgressCallback | None,
) -> JobOutcome:
    """The step loop of ``fedtab.protocol.steps``: agree on a request, sum, agree, commit."""
    if not trainers:
        raise ProtocolError("a job needs at least one bank")
    started = time.perf_counter()
    commits: list[tuple[SumRequest, JsonDict]] = []
    while True:
        request = _agreed_request(trainers)
        if request is None:
            break
        if progress is not None:
            progress(stats.steps, request)
        vectors = {}
        for name, trainer in trainers.items():
            vector = np.asarray(trainer.contribution(request), dtype=np.float64)
            if vector.shape != (request.length,):
                raise ProtocolError(
                    f"bank {name!r} contributed shape {vector.shape} to step "
                    f"{request.step_id!r}, expected ({request.length},)"
                )
            vectors[name] = vector
        aggregate = summer(request, vectors)
        proposals = {name: t.propose(request, aggregate.copy()) for name, t in trainers.items()}
        proposal = _agreed_proposal(request, proposals)
        for trainer in trainers.values():
            trainer.commit(request, proposal)
        commits.append((request, proposal))
        stats.steps += 1
    stats.wall_seconds = time.perf_counter() - started
    return JobOutcome(artifacts=_agreed_result(trainers), commits=commits, stats=stats)


def _agreed_request(trainers: Mapping[str, BankTrainer]) -> SumRequest | None:
    requests = {name: trainer.next_request() for name, trainer in trainers.items()}
    distinct = {None if r is None else proposal_digest(r.to_dict()) for r in requests.values()}
    if len(distinct) != 1:
        raise ProtocolError(f"banks disagree on the next step: {_describe(requests)}")
    return next(iter(requests.values()))


def _agreed_proposal(request: SumRequest, proposals: Mapping[str, JsonDict]) -> JsonDict:
    digests = {name: proposal_digest(p) for name, p in proposals.items()}
    if len(set(digests.values())) != 1:
        groups: dict[str, list[str]] = {}
        for name, digest in digests.items():
            groups.setdefault(digest, []).append(name)
        raise ProposalMismatchError(
            f"step {request.step_id!r} not committed: proposals differ between banks "
            + " vs ".join(",".join(sorted(g)) for g in groups.values())
        )
    return next(iter(proposals.values()))


def _agreed_result(trainers: Mapping[str, BankTrainer]) -> dict[str, bytes]:
    results = {name: trainer.result() for name, trainer in trainers.items()}
    digests = {
        name: proposal_digest({k: v.hex() for k, v in sorted(r.items())})
        for name, r in results.items()
    }
    if len(set(digests.values())) != 1:
        raise ProposalMismatchError("banks' final artifacts differ; the job is not finished")
    return next(iter(results.values()))


def _describe(requests: Mapping[str, SumRequest | None]) -> str:
    return "; ".join(
        f"{name}: {'done' if r is None else r.step_id}" for name, r in sorted(requests.items())
    )
