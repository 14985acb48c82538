"""Drive banks' step machines in one process: the in-memory counterpart of the gRPC service.

* :func:`run_plaintext` adds the float vectors in the clear. With a single trainer holding the
  pooled table this *is* fedtab's centralized trainer, the reference the federated model must
  equal.
* :func:`run_encrypted` runs the distributed protocol in one process: each bank's secure-sum
  bank side (:class:`~fedtab.securesum.shared_key_bank.SharedKeyBank`) encrypts its
  contribution; the aggregator's step state (:mod:`fedtab.protocol.step_state`, reached
  through :class:`~fedtab.protocol.inmemory.InMemoryGrid`) validates and adds them; each bank
  decrypts *its* shard of the aggregate and seals it; every bank opens all shards; the step
  state compares the proposals and commits. The same coordination, shard decryption and
  sealing as the gRPC path, with the same keys and encodings.

Threat model: this module runs every party in one process, so it holds the private key and
the shard key next to all banks' data. It exists for tests, benchmarks and the centralized
reference; the distributed system (``aggregator``, ``bank_node``) keeps the private key away
from the aggregator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from fedtab.crypto.encryptor import Encryptor
from fedtab.crypto.keys import PrivateKey
from fedtab.errors import ProposalMismatchError, ProtocolError
from fedtab.protocol.exchange import CommittedStep, PayloadKind
from fedtab.protocol.inmemory import InMemoryGrid, artifacts_to_json
from fedtab.protocol.steps import (
    BankTrainer,
    JsonDict,
    SumRequest,
    canonical_json,
    proposal_digest,
)
from fedtab.securesum.base import BankSide
from fedtab.securesum.sealing import generate_shard_key
from fedtab.securesum.shared_key_aggregator import SharedKeyAggregator

ProgressCallback = Callable[[int, SumRequest], None]
Summer = Callable[[SumRequest, Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class RunStats:
    """What a run cost: steps, ciphertexts, bytes on the wire, and time in crypto.

    Times are summed over all parties (every bank's encryption, the aggregator's validation and
    addition, every bank's shard decryption and combination); ``wire_bytes`` counts the secure
    sum's payloads: contributions up, the aggregate down to every bank, shards up and every
    bank's download of all shards. ``shards`` counts sealed shards made.
    """

    steps: int = 0
    values_summed: int = 0
    ciphertexts: int = 0
    wire_bytes: int = 0
    encrypt_seconds: float = 0.0
    add_seconds: float = 0.0
    decrypt_seconds: float = 0.0
    wall_seconds: float = 0.0
    shards: int = 0
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
            "shards": self.shards,
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
    shard_keys: Mapping[str, bytes] | None = None,
) -> JobOutcome:
    """Run a job through the distributed protocol in this process (see module docstring).

    Every bank holds ``private_key`` and one fresh consortium shard key, unless ``shard_keys``
    gives a bank its own (a bank with a wrong key cannot open the others' shards: the run
    fails with the authentication error, as the distributed run would).
    """
    # Decryption code is imported here, not with the module: modules that only need
    # run_plaintext (the centralized GBDT trainer) stay free of it.
    from fedtab.crypto.decryptor import Decryptor
    from fedtab.securesum.shared_key_bank import SharedKeyBank

    if not trainers:
        raise ProtocolError("a job needs at least one bank")
    public_key = private_key.public
    shard_key = generate_shard_key()
    keys = {name: (shard_keys or {}).get(name, shard_key) for name in trainers}
    with (
        Encryptor(public_key, workers=workers) as encryptor,
        Decryptor(private_key, workers=workers) as decryptor,
    ):
        sides: dict[str, BankSide] = {
            name: SharedKeyBank(name, public_key, encryptor, decryptor, keys[name])
            for name in trainers
        }
        grid = InMemoryGrid("in-process", tuple(trainers), SharedKeyAggregator(public_key),
                            public_key.fingerprint)
        return _run_grid(trainers, sides, grid, progress)


def _run_grid(
    trainers: Mapping[str, BankTrainer],
    sides: Mapping[str, BankSide],
    grid: InMemoryGrid,
    progress: ProgressCallback | None,
) -> JobOutcome:
    """The step loop through the in-memory grid: each step one secure sum, then the commit."""
    stats = RunStats()
    started = time.perf_counter()
    while True:
        requests = {name: trainer.next_request() for name, trainer in trainers.items()}
        live = [r for r in requests.values() if r is not None]
        if not live:
            artifacts = None
            for name, trainer in trainers.items():
                artifacts = grid.upload(name, PayloadKind.RESULT, None,
                                        artifacts_to_json(trainer.result()))
            if not isinstance(artifacts, dict):
                raise ProtocolError("internal: the banks' results were not compared")
            break
        if progress is not None:
            progress(stats.steps, live[0])
        step = _secure_step(trainers, sides, grid, requests, stats)
        for trainer in trainers.values():
            trainer.commit(step.request, step.proposal)
        stats.steps += 1
    stats.wall_seconds = time.perf_counter() - started
    stats.wire_bytes = grid.wire_bytes
    commits = [(step.request, step.proposal) for step in grid.committed]
    return JobOutcome(artifacts=artifacts, commits=commits, stats=stats)


def _secure_step(
    trainers: Mapping[str, BankTrainer],
    sides: Mapping[str, BankSide],
    grid: InMemoryGrid,
    requests: Mapping[str, SumRequest | None],
    stats: RunStats,
) -> CommittedStep:
    """One step: contribute, decrypt and seal shards, combine and propose; the step state
    validates, adds, relays and compares. Raises what the aggregator would."""
    times = {"encrypt": 0.0, "add": 0.0, "decrypt": 0.0}
    wire_before = grid.wire_bytes
    for name, trainer in trainers.items():
        mine = requests[name]
        if mine is None:  # finished while others are not: the step state refuses it
            grid.upload(name, PayloadKind.RESULT, None, artifacts_to_json(trainer.result()))
            continue
        vector = _contribution(name, trainer, mine)
        started = time.perf_counter()
        payload = sides[name].contribute(grid.context(mine), vector)
        encrypted = time.perf_counter()
        grid.upload(name, PayloadKind.CONTRIBUTION, mine, payload)
        times["encrypt"] += encrypted - started
        times["add"] += time.perf_counter() - encrypted
    request = next(r for r in requests.values() if r is not None)
    ctx = grid.context(request)
    size = grid.step.aggregate_size
    aggregates = {name: grid.aggregate() for name in trainers}
    for name in trainers:
        started = time.perf_counter()
        share = sides[name].decrypt_share(ctx, aggregates[name])
        times["decrypt"] += time.perf_counter() - started
        grid.upload(name, PayloadKind.SHARD, request, share.sealed, share)
    outcome = None
    for name, trainer in trainers.items():
        started = time.perf_counter()
        aggregate = sides[name].combine(ctx, aggregates[name], grid.shares())
        times["decrypt"] += time.perf_counter() - started
        proposal = trainer.propose(request, aggregate)
        outcome = grid.upload(name, PayloadKind.PROPOSAL, request, canonical_json(proposal))
    if not isinstance(outcome, CommittedStep):
        raise ProtocolError(f"internal: step {request.step_id!r} was not committed")
    cts = size * (len(trainers) + 1)  # every contribution and the aggregate
    _count(stats, request, cts, grid.wire_bytes - wire_before, times, len(trainers))
    return outcome


def _contribution(name: str, trainer: BankTrainer, request: SumRequest) -> np.ndarray:
    vector = np.asarray(trainer.contribution(request), dtype=np.float64)
    if vector.shape != (request.length,):
        raise ProtocolError(
            f"bank {name!r} contributed shape {vector.shape} to step "
            f"{request.step_id!r}, expected ({request.length},)"
        )
    return vector


def _count(stats: RunStats, request: SumRequest, cts: int, wire: int,
           times: Mapping[str, float], shards: int) -> None:
    stats.values_summed += request.length
    stats.ciphertexts += cts
    stats.shards += shards
    stats.encrypt_seconds += times["encrypt"]
    stats.add_seconds += times["add"]
    stats.decrypt_seconds += times["decrypt"]
    stats.per_step.append(
        {
            "step_id": request.step_id,
            "values": request.length,
            "ciphertexts": cts,
            "wire_bytes": wire,
            "encrypt_seconds": times["encrypt"],
            "decrypt_seconds": times["decrypt"],
        }
    )


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
        vectors = {name: _contribution(name, t, request) for name, t in trainers.items()}
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
