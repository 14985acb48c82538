"""The in-memory transport: banks' uploads go straight to the aggregator's step state.

The counterpart of the gRPC service (the way Flower's ``InMemoryGrid`` and ``GrpcGrid`` sit
behind one ``Grid``): an upload is the same :class:`~fedtab.protocol.exchange.Upload` the gRPC
servicer hands the coordinator, checked, validated, accepted and completed by the same
:class:`~fedtab.protocol.step_state.StepState`; downloads return what the coordinator would
serve. What the coordinator adds around it (identity, timeouts, checkpoints, several jobs) has
no meaning in one process.

Threat model: no key; carries only what crosses the network in the distributed system.
"""

from __future__ import annotations

import json

from fedtab.errors import ProtocolError, WireFormatError
from fedtab.protocol.exchange import (
    CommittedStep,
    PayloadKind,
    Tag,
    Upload,
    request_digest,
    sum_context,
)
from fedtab.protocol.step_state import StepState
from fedtab.protocol.steps import SumRequest
from fedtab.securesum.base import AggregatorSide, Share, SumContext

Outcome = CommittedStep | dict[str, bytes] | None


def artifacts_to_json(artifacts: dict[str, bytes]) -> bytes:
    """The in-memory encoding of a RESULT payload (the wire uses protobuf instead)."""
    return json.dumps({k: v.hex() for k, v in sorted(artifacts.items())}).encode()


def artifacts_from_json(data: bytes) -> dict[str, bytes]:
    try:
        return {str(k): bytes.fromhex(v) for k, v in json.loads(data).items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise WireFormatError(f"malformed in-memory artifacts: {exc}") from exc


class InMemoryGrid:
    """One job's step loop in this process over ``banks`` (sorted) with the backend's
    aggregator side; counts the bytes that would cross the network (``wire_bytes``)."""

    def __init__(self, job_id: str, banks: tuple[str, ...], backend: AggregatorSide,
                 fingerprint: str) -> None:
        self.job_id = job_id
        self.banks = tuple(sorted(banks))
        self.backend = backend
        self.fingerprint = fingerprint
        self.committed: list[CommittedStep] = []
        self.step = self._new_step()
        self.wire_bytes = 0

    def _new_step(self) -> StepState:
        return StepState(self.job_id, len(self.committed), self.banks, self.backend,
                         self.fingerprint, artifacts_from_json)

    def context(self, request: SumRequest) -> SumContext:
        """The secure-sum context of the current step, as a bank derives it."""
        return sum_context(self.job_id, len(self.committed), request, self.banks,
                           self.fingerprint)

    def upload(self, bank: str, kind: PayloadKind, request: SumRequest | None, payload: bytes,
               share: Share | None = None) -> Outcome:
        """Deliver one bank's upload; returns the committed step or the final artifacts when
        this upload completes them, else None. Raises what the coordinator would refuse."""
        tag = Tag(self.job_id, len(self.committed), request.step_id if request else "", bank,
                  self.fingerprint, request_digest(request))
        upload = Upload(kind, tag, payload,
                        request=request if kind is PayloadKind.CONTRIBUTION else None,
                        shard_start=share.start if share else 0,
                        shard_stop=share.stop if share else 0)
        step = self.step
        step.check_request(bank, upload)
        duplicate, complete = step.accept(bank, upload, step.prepare(upload))
        if duplicate:
            raise ProtocolError(f"internal: bank {bank} delivered {kind.name} twice")
        self.wire_bytes += len(payload) if kind in (PayloadKind.CONTRIBUTION,
                                                    PayloadKind.SHARD) else 0
        if not complete:
            return None
        outcome = step.complete_phase()
        if isinstance(outcome, CommittedStep):
            self.committed.append(outcome)
            self.step = self._new_step()
        return outcome

    def aggregate(self) -> bytes:
        """What a bank downloads in the decrypt phase (counted once per download)."""
        data = self.step.aggregate_payload()
        self.wire_bytes += len(data)
        return data

    def shares(self) -> list[Share]:
        """What a bank downloads in the propose phase (counted once per download)."""
        shares = self.step.shares()
        self.wire_bytes += sum(len(s.sealed) for s in shares)
        return shares
