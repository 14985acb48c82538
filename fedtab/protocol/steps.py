"""The step-machine contract every federated job kind implements.

A job is a deterministic sequence of steps. Each step is one *secure sum* followed by one
*agreed update*:

1. every bank's trainer says what it wants summed next (:meth:`BankTrainer.next_request`); the
   coordinator checks that all banks asked for the same :class:`SumRequest`;
2. every bank computes its local float vector (:meth:`BankTrainer.contribution`), which is
   encoded, packed, encrypted and summed homomorphically; the banks decrypt the aggregate;
3. every bank derives a proposal from the aggregate (:meth:`BankTrainer.propose`, no side
   effects); the coordinator commits the step only when all proposals are identical
   (:func:`proposal_digest`), and checkpoints the committed proposal;
4. every bank applies the committed proposal (:meth:`BankTrainer.commit`).

A trainer's state is therefore a function of its data and the list of committed proposals, so a
bank that restarts catches up with :func:`restore` (the replay contract, below), and an
aggregator that restarts resumes from its checkpoint. Trainers never touch the
network or keys (Flower's ``Strategy`` shape): the in-memory runner and the gRPC service drive
the same objects.

Proposals are seen by the aggregator. They may contain the model (splits, leaf values,
coefficients) and released results, never an aggregate histogram or gradient vector.

**Replay contract.** Some trainers keep caches derived from aggregates (GBDT keeps a tree's
parent histograms for the sibling subtraction); ``commit`` alone cannot rebuild them. A request
names its *segment*: consecutive steps with the same non-empty ``segment`` depend on each
other's aggregates (GBDT: one tree). A bank that restores a trainer from committed steps
re-derives, through ``propose`` with the re-decrypted aggregates, exactly the committed steps of
the trailing segment (:func:`replay_indices`), and commits every step; steps with an empty
segment need ``commit`` only. The aggregator keeps the aggregates of the current segment, and
no more: no window constant, no depth limit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fedtab.crypto.encoding import EncodingSpec

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class SumRequest:
    """What the banks secure-sum in one step.

    ``step_id`` names the step uniquely within the job (e.g. ``"tree/3/level/2"``); ``length``
    is the number of float64 values each bank contributes; ``encoding`` declares the fixed-point
    scale and clip bound every bank must use; ``description`` is for progress logs;
    ``segment`` groups consecutive steps whose proposals depend on each other's aggregates
    (see the replay contract in the module docstring; ``""``: none).
    """

    step_id: str
    length: int
    encoding: EncodingSpec
    description: str = ""
    segment: str = ""

    def to_dict(self) -> JsonDict:
        data: JsonDict = {
            "step_id": self.step_id,
            "length": self.length,
            "encoding": self.encoding.to_dict(),
            "description": self.description,
        }
        if self.segment:
            data["segment"] = self.segment
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SumRequest:
        return cls(
            step_id=str(data["step_id"]),
            length=int(data["length"]),
            encoding=EncodingSpec.from_dict(dict(data["encoding"])),
            description=str(data.get("description", "")),
            segment=str(data.get("segment", "")),
        )


@dataclass(frozen=True)
class JobContext:
    """Facts every bank's trainer of one job shares.

    ``bank_names`` is sorted and identical on every bank; ``bank_name`` is this bank's own name;
    ``seed`` drives all shared randomness (feature subsampling and the like);
    ``privacy_floor`` is this bank's own floor on the rows behind a released figure, checked by
    kinds whose figures cover the whole consortium (1: none, for in-process runs).

    Sampling secrets (set by the bank agent, :mod:`bank_node.sampling_secret`):
    ``consortium_secret`` is the same on every bank of the job and unknown to the aggregator
    and operator (draws the banks must agree on, e.g. GBDT column sampling);
    ``bank_secret`` is known to this bank alone (its own row sampling). Empty (the default,
    in-process runs) means the WEAKENED public derivation from ``seed``: anyone who knows the
    job can recompute the draws (see :mod:`fedtab.gbdt.sampling`).
    """

    job_id: str
    bank_name: str
    bank_names: tuple[str, ...]
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    privacy_floor: int = 1
    bank_secret: bytes = field(default=b"", repr=False)
    consortium_secret: bytes = field(default=b"", repr=False)

    @property
    def n_banks(self) -> int:
        return len(self.bank_names)


class BankTrainer(Protocol):
    """One bank's side of a federated job, as a pure step machine (see module docstring).

    Job kinds implement it with :class:`fedtab.protocol.step_machine.StepMachine`, which
    derives these methods from the trainer's current step.
    """

    def next_request(self) -> SumRequest | None:
        """The next secure sum this job needs, or ``None`` when the job is finished."""
        ...

    def contribution(self, request: SumRequest) -> np.ndarray:
        """This bank's float64 vector of shape ``(request.length,)`` for ``request``."""
        ...

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        """The update derived from the decrypted consortium-wide sum; must not change state."""
        ...

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        """Apply an update that all banks agreed on (also used to replay after a restart)."""
        ...

    def result(self) -> dict[str, bytes]:
        """The job's artifacts once finished, as file name -> content (e.g. ``model.json``).

        Must be identical on every bank (it is derived from committed proposals only); the
        coordinator checks that and hands it to the operator.
        """
        ...


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces); floats keep their exact repr."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def proposal_digest(proposal: JsonDict) -> str:
    """SHA-256 hex digest of a proposal's canonical JSON: equal digests mean agreement."""
    return hashlib.sha256(canonical_json(proposal)).hexdigest()


def replay_indices(requests: Sequence[SumRequest]) -> range:
    """Positions in ``requests`` (committed steps, in order) to replay through ``propose``.

    The trailing run of steps sharing the last step's non-empty segment; empty when the last
    step has no segment. The aggregator keeps exactly these aggregates.
    """
    if not requests or not requests[-1].segment:
        return range(len(requests), len(requests))
    segment = requests[-1].segment
    start = len(requests) - 1
    while start > 0 and requests[start - 1].segment == segment:
        start -= 1
    return range(start, len(requests))


def restore(
    trainer: BankTrainer,
    steps: Sequence[tuple[SumRequest, JsonDict]],
    aggregate_of: Callable[[int], np.ndarray],
    *,
    first_index: int = 0,
    skip_propose: Callable[[int], bool] = lambda index: False,
) -> None:
    """Bring ``trainer`` up to date with committed ``steps`` (the replay contract).

    ``steps[i]`` is step ``first_index + i``; ``aggregate_of(index)`` returns the decrypted
    aggregate of a step in the trailing segment (:func:`replay_indices`), whose proposal is
    re-derived and must equal the committed one; ``skip_propose(index)`` is true for steps this
    trainer already proposed itself (its caches hold them). Every step is then committed.
    Raises :class:`~fedtab.errors.ProtocolError` when a step is not the one the trainer
    expects or a re-derived proposal differs (the bank cannot follow this job).
    """
    from fedtab.errors import ProtocolError

    again = set(replay_indices([request for request, _ in steps]))
    for offset, (request, proposal) in enumerate(steps):
        index = first_index + offset
        mine = trainer.next_request()
        if mine is None or mine != request:
            raise ProtocolError(
                f"committed step {index} ({request.step_id}) is not what this bank's trainer "
                f"expects ({mine.step_id if mine else 'finished'})"
            )
        if offset in again and not skip_propose(index):
            derived = trainer.propose(request, aggregate_of(index))
            if proposal_digest(derived) != proposal_digest(proposal):
                raise ProtocolError(
                    f"replaying step {index} ({request.step_id}) gives another proposal than "
                    "the committed one"
                )
        trainer.commit(request, proposal)
