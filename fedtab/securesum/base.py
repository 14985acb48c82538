"""The secure-sum backend interface: what a bank and the aggregator do in one secure sum.

A step's secure sum has three exchanges, each relayed by the aggregator
(:class:`fedtab.protocol.step_state.StepState`):

1. *contribute*: every bank turns its float vector into an opaque contribution
   (:meth:`BankSide.contribute`); the aggregator validates each (:meth:`AggregatorSide.validate`)
   and adds them once all are in (:meth:`AggregatorSide.add`), giving the *aggregate*;
2. *decrypt*: every bank downloads the aggregate and uploads its *share* of the result
   (:meth:`BankSide.decrypt_share`); the aggregator checks each share's place
   (:meth:`AggregatorSide.check_share`) and, once all are in, relays them
   (:meth:`AggregatorSide.relay`);
3. *combine*: every bank turns all shares into the aggregate float vector
   (:meth:`BankSide.combine`), from which its trainer proposes.

A bank that rejoins mid-job re-derives the aggregates of the current segment (the replay
contract, :mod:`fedtab.protocol.steps`) alone, through :meth:`BankSide.open_aggregate`.

The two sides live in separate modules per backend: the aggregator's import closure never
contains decryption code. This module imports neither side and nothing from the protocol or
transport layers (they import it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fedtab.crypto.encoding import EncodingSpec


@dataclass(frozen=True)
class SumContext:
    """Identifies one secure sum: job, step, what is summed, over which banks, under which key.

    ``banks`` is sorted and identical everywhere; ``request_digest`` names the step's request
    (see :func:`fedtab.protocol.exchange.sum_context`).
    """

    job_id: str
    step_index: int
    step_id: str
    request_digest: str
    length: int
    encoding: EncodingSpec
    banks: tuple[str, ...]
    key_fingerprint: str


@dataclass(frozen=True)
class Share:
    """One bank's share of an aggregate: the part ``[start, stop)`` of it (in the backend's
    units, e.g. ciphertexts), as opaque bytes only banks can read."""

    bank: str
    start: int
    stop: int
    sealed: bytes


@dataclass(frozen=True)
class Aggregate:
    """The sum of all contributions as the aggregator holds it: the bytes every bank downloads
    and its size in the units shares are cut from."""

    data: bytes
    size: int


class BankSide(Protocol):
    """A bank's part of the secure sum (holds its keys; never runs at the aggregator)."""

    bank: str

    def contribute(self, ctx: SumContext, vector: np.ndarray) -> bytes:
        """This bank's float64 vector of shape ``(ctx.length,)`` as a contribution."""
        ...

    def decrypt_share(self, ctx: SumContext, aggregate: bytes) -> Share:
        """This bank's share of ``aggregate``, readable by the other banks only."""
        ...

    def combine(self, ctx: SumContext, aggregate: bytes, shares: Sequence[Share]) -> np.ndarray:
        """The aggregate float vector ``(ctx.length,)`` from every bank's share; ``aggregate``
        is the one this bank downloaded (shares made from another one are refused)."""
        ...

    def open_aggregate(self, ctx: SumContext, aggregate: bytes) -> np.ndarray:
        """The float vector of a committed step's aggregate, on this bank alone (replay)."""
        ...

    def close(self) -> None:
        """Release worker pools."""
        ...


class AggregatorSide(Protocol):
    """The aggregator's part of the secure sum (public material only)."""

    def validate(self, ctx: SumContext, contribution: bytes) -> object:
        """Parse and check one bank's contribution (no state); raises FedtabError."""
        ...

    def add(self, ctx: SumContext, contributions: Sequence[object]) -> Aggregate:
        """The aggregate of all banks' validated contributions (in ``ctx.banks`` order)."""
        ...

    def check_share(self, ctx: SumContext, aggregate: Aggregate, share: Share) -> None:
        """Raise ProtocolError unless ``share`` is the part of ``aggregate`` its bank owes."""
        ...

    def contribution_bytes(self, ctx: SumContext) -> int:
        """The largest contribution to ``ctx`` (uploads are read no further)."""
        ...

    def share_bytes(self, ctx: SumContext, aggregate: Aggregate, bank: str) -> int:
        """The exact size of ``bank``'s share of ``aggregate`` (read no further)."""
        ...

    def relay(self, ctx: SumContext, shares: Mapping[str, Share]) -> list[Share]:
        """What every bank downloads once all shares are in, in the order banks combine them."""
        ...
