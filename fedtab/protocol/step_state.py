"""The aggregator's state of one uncommitted step: who delivered what, and the phase rules.

Phases: ``contribute`` (contributions, validated and added by the secure-sum backend when all
are in) -> ``decrypt`` (each bank uploads its share of the aggregate, checked by the backend)
-> ``propose`` (each bank uploads its proposal; committed when all digests agree). A step whose
banks report they are finished (no request) is in ``finish`` and collects the banks' results.

This is the one copy of the step coordination: the aggregator's coordinator (jobs, identity,
timeouts, checkpoints) and the in-process runner (:mod:`fedtab.protocol.inmemory`) both drive
it. Threat model: sees contributions (ciphertexts), shares it cannot open, proposals and
results — all of which the aggregator may see. Holds no key: the backend's aggregator side
holds the public key only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fedtab.errors import (
    FedtabError,
    ProposalMismatchError,
    ProtocolError,
    WireFormatError,
)
from fedtab.protocol.exchange import (
    CommittedStep,
    PayloadKind,
    Phase,
    StepStatus,
    Upload,
    artifacts_digest,
    request_digest,
    sum_context,
)
from fedtab.protocol.steps import SumRequest, proposal_digest
from fedtab.securesum.base import Aggregate, AggregatorSide, Share, SumContext

ArtifactsDecoder = Callable[[bytes], dict[str, bytes]]

_PHASE_OF = {
    PayloadKind.CONTRIBUTION: Phase.CONTRIBUTE,
    PayloadKind.SHARD: Phase.DECRYPT,
    PayloadKind.PROPOSAL: Phase.PROPOSE,
    PayloadKind.RESULT: Phase.FINISH,
}
_ORDER = [Phase.CONTRIBUTE, Phase.DECRYPT, Phase.PROPOSE, Phase.FINISH]


def _fatal(exc: FedtabError) -> FedtabError:
    """Mark an error as failing the whole job (banks diverged), not just one message."""
    exc.fails_job = True  # type: ignore[attr-defined]
    return exc


class StepState:
    """Deliveries of step ``index`` of job ``job_id`` over ``banks`` (sorted).

    ``backend`` is the secure sum's aggregator side, ``fingerprint`` the consortium key's;
    ``decode_artifacts`` turns a RESULT payload into the artifacts it carries.
    """

    def __init__(self, job_id: str, index: int, banks: tuple[str, ...],
                 backend: AggregatorSide, fingerprint: str,
                 decode_artifacts: ArtifactsDecoder) -> None:
        self.job_id = job_id
        self.index = index
        self.banks = banks
        self.backend = backend
        self.fingerprint = fingerprint
        self._decode_artifacts = decode_artifacts
        self.phase = Phase.CONTRIBUTE
        self.request: SumRequest | None = None
        self.request_digest: str | None = None  # "" once banks said they are finished
        self.received: dict[Phase, dict[str, tuple[str, Any]]] = {p: {} for p in _ORDER}
        self.aggregate: Aggregate | None = None

    def context(self, request: SumRequest) -> SumContext:
        """The secure-sum backend's view of this step for ``request``."""
        return sum_context(self.job_id, self.index, request, self.banks, self.fingerprint)

    @property
    def aggregate_size(self) -> int:
        """The aggregate's size in the backend's units (ciphertexts); 0 before it exists."""
        return self.aggregate.size if self.aggregate is not None else 0

    # ----- validation outside the lock -------------------------------------------------------

    def prepare(self, upload: Upload) -> Any:
        """Parse and validate an upload's payload (no state change); raises FedtabError."""
        tag = upload.tag
        if upload.kind in (PayloadKind.CONTRIBUTION, PayloadKind.RESULT):
            if request_digest(upload.request) != tag.request_digest:
                raise WireFormatError("request digest does not match the request sent")
            if upload.kind is PayloadKind.RESULT and upload.request is not None:
                raise ProtocolError("a result upload must not carry a step request")
            if upload.kind is PayloadKind.CONTRIBUTION and upload.request is None:
                raise ProtocolError("a contribution must carry its step request")
        if upload.kind is PayloadKind.CONTRIBUTION:
            request = upload.request
            if request is None or request.step_id != tag.step_id:
                raise ProtocolError("tag step_id does not match the request")
            return self.backend.validate(self.context(request), upload.payload)
        if upload.kind is PayloadKind.PROPOSAL:
            try:
                proposal = json.loads(upload.payload.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise WireFormatError(f"proposal is not JSON: {exc}") from exc
            if not isinstance(proposal, dict):
                raise WireFormatError("a proposal must be a JSON object")
            return proposal
        if upload.kind is PayloadKind.RESULT:
            return self._decode_artifacts(upload.payload)
        return Share(upload.tag.bank, upload.shard_start, upload.shard_stop, upload.payload)

    def upload_bytes(self, bank: str, head: Upload) -> int | None:
        """The payload size this step allows for ``head`` (an upload's header, payload not
        read yet): a contribution's follows from the step's request (the sender's own while no
        contribution has been accepted) and the key, a share's from the aggregate and the
        bank's range. None for proposals, results and aborts (bounded by the caller's limits).
        Call after :meth:`check_request`; raises FedtabError."""
        if head.kind is PayloadKind.CONTRIBUTION:
            request = self.request if self.request is not None else head.request
            if request is None:
                raise ProtocolError("a contribution must carry its step request")
            return int(self.backend.contribution_bytes(self.context(request)))
        if head.kind is PayloadKind.SHARD:
            if self.aggregate is None or self.request is None:
                raise ProtocolError(f"shard from {bank} not expected: step {self.index} is in "
                                    f"phase {self.phase.value}")
            return int(self.backend.share_bytes(self.context(self.request), self.aggregate, bank))
        return None

    # ----- state changes under the coordinator's lock ------------------------------------------

    def accept(self, bank: str, upload: Upload, prepared: Any) -> tuple[bool, bool]:
        """Record a delivery; returns ``(duplicate, phase_complete)``; raises FedtabError."""
        target = _PHASE_OF[upload.kind]
        digest = _digest(upload, prepared)
        held = self.received[target].get(bank)
        if held is not None:
            if held[0] == digest:
                return True, False
            raise ProtocolError(
                f"bank {bank} sent different content for the same {upload.kind.name.lower()} "
                f"of step {self.index}"
            )
        if upload.kind in (PayloadKind.CONTRIBUTION, PayloadKind.RESULT):
            self.check_request(bank, upload)  # again: another bank may have been accepted
            if self.request_digest is None:
                self.request_digest = upload.tag.request_digest
                self.request = upload.request
        if upload.kind is PayloadKind.RESULT and self.phase is Phase.CONTRIBUTE:
            self.phase = Phase.FINISH
        if target is not self.phase:
            raise ProtocolError(
                f"{upload.kind.name.lower()} from {bank} not expected: step {self.index} is in "
                f"phase {self.phase.value}"
            )
        if upload.kind is PayloadKind.SHARD:
            if self.aggregate is None or self.request is None:
                raise ProtocolError("internal: decrypt phase without an aggregate")
            self.backend.check_share(self.context(self.request), self.aggregate, prepared)
        self.received[target][bank] = (digest, prepared)
        return False, len(self.received[target]) == len(self.banks)

    def check_request(self, bank: str, upload: Upload) -> None:
        """Check the request the upload is for (recorded by :meth:`accept` on the first
        delivery that passes validation, so a refused upload cannot fix the step's request).

        Banks asking for different requests have diverged: that error fails the job.
        """
        digest = upload.tag.request_digest
        if upload.kind in (PayloadKind.CONTRIBUTION, PayloadKind.RESULT):
            if self.request_digest is not None and digest != self.request_digest:
                mine = upload.request.step_id if upload.request else "finished"
                theirs = self.request.step_id if self.request else "finished"
                others = ", ".join(sorted(self.received[Phase.CONTRIBUTE] or
                                          self.received[Phase.FINISH]))
                raise _fatal(ProtocolError(
                    f"banks disagree on step {self.index}: {bank} asks for {mine!r}, "
                    f"{others} asked for {theirs!r}"
                ))
        elif digest != self.request_digest or upload.tag.step_id != (
            self.request.step_id if self.request else ""
        ):
            raise ProtocolError(f"bank {bank}'s {upload.kind.name.lower()} names another request")

    def complete_phase(self) -> CommittedStep | dict[str, bytes] | None:
        """Advance after all banks delivered; a commit or the final artifacts, else None.

        Raises ProposalMismatchError (job-fatal) when proposals or results disagree.
        """
        if self.phase is Phase.CONTRIBUTE:
            if self.request is None:
                raise ProtocolError("internal: contribute phase without a request")
            contributions = [self.received[Phase.CONTRIBUTE][b][1] for b in self.banks]
            self.aggregate = self.backend.add(self.context(self.request), contributions)
            self.phase = Phase.DECRYPT
            return None
        if self.phase is Phase.DECRYPT:
            self.phase = Phase.PROPOSE
            return None
        got = self.received[self.phase]
        groups: dict[str, list[str]] = {}
        for bank in self.banks:
            groups.setdefault(got[bank][0], []).append(bank)
        what = "proposals" if self.phase is Phase.PROPOSE else "final artifacts"
        if len(groups) != 1:
            step = self.request.step_id if self.request else "finish"
            raise ProposalMismatchError(
                f"step {self.index} ({step}) not committed: {what} differ between banks "
                + " vs ".join(",".join(g) for g in groups.values())
            )
        value = got[self.banks[0]][1]
        if self.phase is Phase.PROPOSE:
            if self.request is None:
                raise ProtocolError("internal: proposal phase without a request")
            return CommittedStep(self.index, self.request, dict(value))
        return dict(value)

    # ----- read-only views ----------------------------------------------------------------------

    def aggregate_payload(self) -> bytes:
        """The aggregate's bytes, as every bank downloads them."""
        if self.aggregate is None:
            raise ProtocolError(f"step {self.index}: the aggregate is not ready yet")
        return self.aggregate.data

    def shares(self) -> list[Share]:
        """Every bank's share, as the backend relays them, once all are in."""
        if self.phase is not Phase.PROPOSE or self.request is None:
            raise ProtocolError(f"step {self.index}: shards are not all in yet")
        held = {bank: value[1] for bank, value in self.received[Phase.DECRYPT].items()}
        return self.backend.relay(self.context(self.request), held)

    def status(self, job_id: str, bank: str) -> StepStatus:
        return StepStatus(
            job_id=job_id,
            job_state="running",
            step_index=self.index,
            phase=self.phase.value,
            have_contribution=bank in self.received[Phase.CONTRIBUTE],
            have_shard=bank in self.received[Phase.DECRYPT],
            have_proposal=bank in self.received[Phase.PROPOSE],
            have_result=bank in self.received[Phase.FINISH],
        )

    def waiting_for(self) -> tuple[str, ...]:
        return tuple(b for b in self.banks if b not in self.received[self.phase])


def _digest(upload: Upload, prepared: Any) -> str:
    if upload.kind is PayloadKind.PROPOSAL:
        return proposal_digest(prepared)
    if upload.kind is PayloadKind.RESULT:
        return artifacts_digest(prepared)
    return upload.content_digest


def status_done_my_part(status: StepStatus) -> bool:
    """Whether the bank has nothing to do in the step's current phase."""
    return {
        Phase.CONTRIBUTE.value: status.have_contribution or status.have_result,
        Phase.DECRYPT.value: status.have_shard,
        Phase.PROPOSE.value: status.have_proposal,
        Phase.FINISH.value: status.have_result,
    }.get(status.phase, True)

