"""What the coordinator tells an observer (for monitoring), and what it lets one read.

The coordinator calls a :class:`CoordinatorObserver` at a few points (an upload accepted, a
step committed, a message refused at the servicer edge) and answers :class:`OpsSnapshot`
reads; :mod:`aggregator.metrics` turns both into Prometheus metrics. This module has no
dependencies so the coordinator stays free of any monitoring library; the base observer does
nothing, which is what a coordinator without ``--metrics`` uses.

Threat model: an observer sees what the aggregator already sees (job ids, bank names, sizes,
error classes), never a payload's content and never a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedtab.errors import FedtabError
from fedtab.protocol.exchange import Upload


@dataclass(frozen=True)
class JobView:
    """One job as monitoring sees it: its id, kind, state and current step index."""

    job_id: str
    kind: str
    state: str
    step_index: int  # the step in progress (= steps committed so far)


@dataclass(frozen=True)
class OpsSnapshot:
    """The coordinator's jobs and banks at one instant, read under its lock."""

    jobs: tuple[JobView, ...]
    banks: tuple[str, ...]  # the consortium's banks
    seen_seconds_ago: dict[str, float] = field(default_factory=dict)  # banks seen so far
    attached: frozenset[str] = frozenset()  # banks that polled within the attach window


class CoordinatorObserver:
    """Receives coordinator events; this base class ignores them all.

    Calls happen under the coordinator's lock or on an RPC thread, so implementations must be
    quick and must not call back into the coordinator.
    """

    def upload_accepted(self, job_id: str, bank: str, upload: Upload, prepared: object
                        ) -> None:
        """A new (not duplicate) upload was accepted; ``prepared`` is its parsed payload."""

    def step_committed(self, job_id: str, index: int) -> None:
        """Step ``index`` of ``job_id`` was committed (written to the checkpoint)."""

    def refused(self, rpc: str, error: FedtabError) -> None:
        """An RPC was refused with ``error`` (the servicer answers with its gRPC status)."""


__all__ = ["CoordinatorObserver", "JobView", "OpsSnapshot"]
