"""A base for :class:`~fedtab.protocol.steps.BankTrainer`: a trainer as a table of steps.

A trainer says which :class:`Step` comes next (:meth:`StepMachine.current_step`, derived from
its committed state only); the base turns that into the four protocol methods. It checks once,
for all job kinds, that a request is the one the trainer expects, that a contribution and an
aggregate have the request's length, and hands the call to the step. No trainer dispatches on
``step_id`` strings: each step object carries its own request, contribution, proposal and commit.

A step is any object with a ``request`` and ``contribution()`` / ``propose(aggregate)`` /
``commit(proposal)``: a small class when steps share state (GBDT's tree levels, the moments steps
of :mod:`fedtab.moments`), or a :class:`FnStep` of the trainer's bound methods.

Replay after a restart goes through :meth:`StepMachine.restore`, the replay contract of
:func:`fedtab.protocol.steps.restore`. A step whose next step needs what its ``propose`` derived
from the aggregate (beyond the proposal) keeps it in a :class:`ProposalCache` until ``commit``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from fedtab.errors import ProtocolError
from fedtab.protocol import steps as protocol_steps
from fedtab.protocol.steps import JsonDict, SumRequest, proposal_digest

T = TypeVar("T")


class Step(Protocol):
    """One secure sum of a trainer and the agreed update that follows it."""

    @property
    def request(self) -> SumRequest:
        """What the banks sum in this step."""
        ...

    def contribution(self) -> np.ndarray:
        """This bank's float64 vector, shape ``(request.length,)``."""
        ...

    def propose(self, aggregate: np.ndarray) -> JsonDict:
        """The update derived from the summed vector (float64, checked length); no side effects
        beyond a :class:`ProposalCache`."""
        ...

    def commit(self, proposal: JsonDict) -> None:
        """Apply the agreed update (the trainer then names its next step)."""
        ...


@dataclass(frozen=True)
class FnStep:
    """A :class:`Step` made of a request and three functions (typically bound methods)."""

    request: SumRequest
    contribution: Callable[[], np.ndarray]
    propose: Callable[[np.ndarray], JsonDict]
    commit: Callable[[JsonDict], None]


class StepMachine(ABC):
    """Implements ``next_request`` / ``contribution`` / ``propose`` / ``commit`` from steps.

    Subclasses implement :meth:`current_step` and ``result``. Every call with a request that is
    not the current step's raises :class:`~fedtab.errors.ProtocolError`, as does a contribution
    or aggregate whose shape is not ``(request.length,)``.
    """

    @abstractmethod
    def current_step(self) -> Step | None:
        """The step this trainer expects next, or ``None`` when the job is finished.

        A function of the table and the committed proposals (and caches of the current
        segment), never of a proposal that was not committed.
        """

    @abstractmethod
    def result(self) -> dict[str, bytes]:
        """The job's artifacts once finished (see :class:`~fedtab.protocol.steps.BankTrainer`)."""

    def next_request(self) -> SumRequest | None:
        step = self.current_step()
        return None if step is None else step.request

    def contribution(self, request: SumRequest) -> np.ndarray:
        step = self._step_for(request)
        vector = np.asarray(step.contribution(), dtype=np.float64)
        _check_shape(request, vector, "contribution")
        return vector

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        step = self._step_for(request)
        values = np.asarray(aggregate, dtype=np.float64)
        _check_shape(request, values, "aggregate")
        return step.propose(values)

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        self._step_for(request).commit(proposal)

    def restore(
        self,
        steps: Sequence[tuple[SumRequest, JsonDict]],
        aggregate_of: Callable[[int], np.ndarray],
        *,
        first_index: int = 0,
        skip_propose: Callable[[int], bool] = lambda index: False,
    ) -> None:
        """Catch up with committed ``steps`` (:func:`fedtab.protocol.steps.restore`).

        The trailing segment's steps are re-proposed from their aggregates and must give the
        committed proposals; every step is committed. Raises
        :class:`~fedtab.errors.ProtocolError` when this bank cannot follow the job.
        """
        protocol_steps.restore(self, steps, aggregate_of, first_index=first_index,
                               skip_propose=skip_propose)

    def _step_for(self, request: SumRequest) -> Step:
        """The current step, if ``request`` is its request; else :class:`ProtocolError`."""
        step = self.current_step()
        expected = None if step is None else step.request
        if step is None or expected != request:
            raise ProtocolError(
                f"unexpected step {request.step_id!r}; this bank expects "
                f"{'none (finished)' if expected is None else repr(expected.step_id)}"
            )
        return step


def _check_shape(request: SumRequest, vector: np.ndarray, what: str) -> None:
    if vector.shape != (request.length,):
        raise ProtocolError(
            f"{what} for {request.step_id!r} has shape {vector.shape}, expected "
            f"({request.length},)"
        )


class ProposalCache(Generic[T]):
    """What ``propose`` derived besides a proposal, kept until that proposal is committed.

    ``propose`` has no side effects on the model; a step whose successor needs more of the
    aggregate than the proposal (GBDT's histograms) :meth:`keep` s it here, and ``commit``
    :meth:`take` s it only if the committed proposal is the one it derived. A bank that commits
    without proposing (replay by ``commit`` alone) gets ``None``.
    """

    def __init__(self) -> None:
        self._kept: tuple[str, T] | None = None

    def keep(self, proposal: JsonDict, derived: T) -> None:
        self._kept = (proposal_digest(proposal), derived)

    def take(self, proposal: JsonDict) -> T | None:
        kept, self._kept = self._kept, None
        if kept is None or kept[0] != proposal_digest(proposal):
            return None
        return kept[1]
