"""The bank agent: stays attached to the aggregator and drives its trainers' step machines.

For each step ``k`` of a job the agent follows the aggregator's phase of that step (polled with
a server-side wait, no busy loop): *contribute* (turn ``trainer.contribution`` into a
contribution and upload it), *decrypt* (upload this bank's share of the aggregate), *propose*
(combine all shares into the aggregate, upload ``trainer.propose``), then fetch the committed
proposal and ``trainer.commit`` it. The cryptography is the secure-sum backend's bank side
(:mod:`fedtab.securesum`). Finished trainers upload their ``result()``. Uploads are cached per
step and resent unchanged, so a resend after a timeout or an aggregator restart is harmless. A
bank that (re)joins a running job restores a fresh trainer from the committed steps first (the
replay contract, :func:`fedtab.protocol.steps.restore`).

Threat model: the agent holds this bank's table, the consortium private key and the shard key;
it sends the aggregator only ciphertexts, sealed shards, proposals and results.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import numpy as np

from bank_node.client import BankClient
from bank_node.policy import BankPolicy, PolicyRefusal
from bank_node.sampling_secret import bank_job_context
from fedtab.consortium import BankBundle
from fedtab.data.contract import LocalTable
from fedtab.errors import (
    ConfigError,
    DataLimitError,
    FedtabError,
    JobFailedError,
    PeerUnavailableError,
    PrivacyError,
    ReplayError,
    SessionError,
)
from fedtab.jobs import JobSpec, create_trainer
from fedtab.protocol.exchange import (
    PayloadKind,
    Phase,
    StepStatus,
    Tag,
    Upload,
    request_digest,
    sum_context,
)
from fedtab.protocol.steps import (
    BankTrainer,
    JobContext,
    SumRequest,
    canonical_json,
    restore,
)
from fedtab.securesum.base import SumContext
from fedtab.securesum.shared_key_bank import SharedKeyBank
from fedtab.transport import convert
from fedtab.transport.messages import DownloadKind, JobAssignment, JobState
from fedtab.transport.options import LONG_POLL_SECONDS

log = logging.getLogger("fedtab.bank")
MAX_REJECTIONS = 5
_PARAMETER = re.compile(r"[a-z_]{1,40}")  # a parameter name: letters and underscores only


class BankAgent:
    """One bank's long-running participant (see module docstring).

    ``bundle`` is a :class:`fedtab.consortium.BankBundle`; ``table`` the bank's validated
    table; ``address`` overrides the bundle's aggregator address; ``holdout`` (optional) is the
    bank's validated evaluation table, handed only to job kinds that score one (``evaluate``);
    ``give_up_after`` bounds how long an unreachable aggregator is retried (None: forever);
    ``policy`` is what this bank agrees to compute (privacy floor, models it will score).
    """

    def __init__(
        self,
        bundle: BankBundle,
        table: LocalTable,
        address: str | None = None,
        *,
        workers: int = 1,
        poll_seconds: float = LONG_POLL_SECONDS,
        progress: Callable[[str], None] | None = None,
        holdout: LocalTable | None = None,
        give_up_after: float | None = None,
        policy: BankPolicy | None = None,
    ) -> None:
        self.bundle = bundle
        self.holdout = holdout
        self.policy = policy or BankPolicy()
        self.name: str = bundle.name
        self.table = table
        self.public_key = bundle.public_key
        self.address = address or bundle.config.aggregator_address
        self.poll_seconds = poll_seconds
        self._progress = progress or (lambda line: log.info("%s", line))
        self._stop = threading.Event()
        self.client = BankClient(bundle.tls, self.address, self.name,
                                 should_stop=self._stop.is_set, give_up_after=give_up_after)
        # The secure sum's bank side: holds the private key and the shard key.
        self.secure_sum = SharedKeyBank.open(self.name, bundle.private_key, bundle.shard_key,
                                             workers=workers)

    # ----- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release everything; the aggregator frees this bank's name for another process."""
        self._stop.set()
        self.client.detach()
        self.secure_sum.close()
        self.client.close()

    def stop(self) -> None:
        """Make :meth:`run_forever` / :meth:`run_until` return now: in-flight calls are
        cancelled (the aggregator treats the bank as absent until it comes back)."""
        self._stop.set()
        self.client.close()

    def register(self) -> None:
        reg = self.client.register(self.public_key.fingerprint)
        self._progress(f"{self.name}: attached to {self.address} (consortium "
                       f"{reg.consortium_id}, banks {', '.join(reg.banks)})")

    def run_forever(self) -> None:
        """Serve jobs until :meth:`stop` is called."""
        self.run_until(None)

    def run_until(self, job_id: str | None, timeout: float | None = None) -> str:
        """Serve jobs until job ``job_id`` has finished (any job if None: forever).

        Returns the job's final state (``done`` / ``failed``), or ``stopped``.
        """
        try:
            return self._serve(job_id, timeout)
        except FedtabError:
            if self._stop.is_set():
                return "stopped"
            raise

    def _serve(self, job_id: str | None, timeout: float | None) -> str:
        self.register()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return "timeout"
            job = self.client.next_task(self.poll_seconds)
            if job is None:
                continue
            try:
                state = self.run_job(job)
            except FedtabError as exc:
                self._progress(f"{self.name}: cannot take part in job {job.job_id}: "
                               f"{exc.one_line()}")
                self._stop.wait(self.poll_seconds)
                continue
            if job_id is not None and job.job_id == job_id:
                return state
        return "stopped"

    # ----- one job ----------------------------------------------------------------------------

    def run_job(self, job: JobAssignment) -> str:
        """Take part in ``job`` until it is done or failed; returns the final state."""
        try:
            spec = JobSpec.from_dict(job.spec)
            # The bank list comes from the aggregator: checked against this bank's own bundle.
            self.policy.check_banks(spec, job.banks, self.bundle.config.banks, self.name)
            self.policy.check(spec)  # validates [params] with the kind's schema, as the trainer
            ctx = bank_job_context(job.job_id, self.name, job.banks, spec, self.bundle.shard_key,
                                   self.bundle.directory, self.policy.privacy_floor)
            trainer = create_trainer(spec, ctx, self.table, holdout=self.holdout)
            return _JobRun(self, job, ctx, trainer).run()
        except FedtabError as exc:
            if self._stop.is_set():
                return "stopped"
            if isinstance(exc, PeerUnavailableError | SessionError):
                raise  # unreachable, or another process now speaks for this bank
            self._progress(f"{self.name}: job {job.job_id} failed here: {exc.one_line()}")
            reason = _shareable_reason(exc, self.name)
        except Exception as exc:  # a bug: keep the traceback in the log, fail the job
            log.exception("%s: job %s crashed", self.name, job.job_id)
            reason = f"internal error {type(exc).__name__} at bank {self.name}"
        self.abort(job.job_id, reason)
        return JobState.FAILED.value

    def abort(self, job_id: str, reason: str) -> None:
        """Tell the aggregator this bank cannot continue ``job_id`` (the job fails at once)."""
        tag = Tag(job_id, 0, "", self.name, self.public_key.fingerprint, "")
        try:
            self.client.upload(Upload(PayloadKind.ABORT, tag, reason.encode()))
        except FedtabError as exc:
            log.warning("%s: could not report the failure: %s", self.name, exc.one_line())


def _shareable_reason(exc: FedtabError, bank: str) -> str:
    """What the aggregator and operator may read of why this bank cannot run a job.

    Parameter errors and this bank's own refusals name parameters only and are shared as they
    are; anything about the bank's data (row counts, values) stays in the bank's log: its
    class is shared, and for a :class:`DataLimitError` the parameter its data does not fit
    (a name from the kind's schema, rebuilt here, never the message).
    """
    if isinstance(exc, DataLimitError):
        parameter = exc.parameter if _PARAMETER.fullmatch(exc.parameter) else "parameters"
        return (f"DataLimitError at bank {bank}: its data does not fit the job's {parameter} "
                "(details in that bank's log)")
    if isinstance(exc, ConfigError | PolicyRefusal):
        return exc.one_line()
    return f"{type(exc).__name__} at bank {bank} (details in that bank's log)"


class _JobRun:
    """The state of one bank in one job: its trainer, step index and cached uploads."""

    def __init__(self, agent: BankAgent, job: JobAssignment, ctx: JobContext,
                 trainer: BankTrainer) -> None:
        self.agent = agent
        self.client = agent.client
        self.job = job
        self.banks = ctx.bank_names
        self.trainer = trainer
        self.index = 0
        self.cache: dict[tuple[int, PayloadKind], Upload] = {}
        self.rejections = 0
        self.proposed: set[int] = set()
        self.aggregates: dict[int, bytes] = {}  # this step's aggregate, as downloaded here

    def run(self) -> str:
        agent = self.agent
        self.catch_up()
        if self.index:
            agent._progress(f"{agent.name}: job {self.job.job_id}: replayed {self.index} "
                            "committed steps")
        while not agent._stop.is_set():
            request = self.trainer.next_request()
            status = self.client.poll_step(self.job.job_id, self.index, 0.0)
            while not agent._stop.is_set():
                if status.job_state in (JobState.DONE.value, JobState.FAILED.value):
                    verb = "finished" if status.job_state == JobState.DONE.value else "failed"
                    if status.job_state == JobState.DONE.value:
                        agent.policy.record_result(self.trainer.result())
                    agent._progress(f"{agent.name}: job {self.job.job_id} {verb}"
                                    + (f": {status.message}" if status.message else ""))
                    return status.job_state
                if status.step_index < self.index:
                    # The aggregator was restored from an older backup: the poll returns at once
                    # forever (a busy loop), and the steps it lost cannot be re-agreed.
                    raise JobFailedError(
                        f"the aggregator is at step {status.step_index} but this bank already "
                        f"committed step {self.index - 1}: its state was rolled back"
                    )
                if status.step_index > self.index:
                    self.catch_up()
                    break
                if status.step_index == self.index and status.job_state == "running":
                    try:
                        self.act(request, status)
                    except (JobFailedError, PeerUnavailableError, PrivacyError, SessionError):
                        raise  # PrivacyError: this bank refuses to release (its floor)
                    except FedtabError as exc:
                        self.refused(exc)
                status = self.client.poll_step(self.job.job_id, self.index,
                                               agent.poll_seconds)
        return "stopped"

    def catch_up(self) -> None:
        """Fetch the steps committed since ``self.index`` and restore the trainer with them.

        The replay contract (:func:`fedtab.protocol.steps.restore`): steps of the trailing
        segment that this process did not propose itself go through ``propose`` with their
        aggregate, decrypted here, and must give the committed proposal; every step is then
        committed. Raises ProtocolError when this bank's trainer cannot follow the job (a step
        it does not expect, a re-derived proposal that differs, an aggregate no longer kept).
        """
        payload = self.client.download(DownloadKind.COMMITTED, self.job.job_id,
                                       from_index=self.index)
        steps = convert.committed_from_bytes(payload)
        if not steps:
            return
        requests = {step.index: step.request for step in steps}
        restore(
            self.trainer,
            [(step.request, step.proposal) for step in steps],
            lambda index: self.replay_aggregate(index, requests[index]),
            first_index=self.index,
            skip_propose=lambda index: index in self.proposed,
        )
        for step in steps:
            self.agent._progress(
                f"{self.agent.name}: step {step.index} committed: {step.request.step_id}"
            )
        self.index = steps[-1].index + 1

    def replay_aggregate(self, index: int, request: SumRequest) -> np.ndarray:
        """A committed step's aggregate, downloaded again and decrypted by this bank alone."""
        data = self.client.download(DownloadKind.AGGREGATE, self.job.job_id, index)
        return self.agent.secure_sum.open_aggregate(self.context(request, index), data)

    def context(self, request: SumRequest, index: int | None = None) -> SumContext:
        """The secure-sum backend's view of step ``index`` (default: the current step)."""
        return sum_context(self.job.job_id, self.index if index is None else index, request,
                           self.banks, self.agent.public_key.fingerprint)

    def tag(self, request: SumRequest | None) -> Tag:
        return Tag(
            job_id=self.job.job_id,
            step_index=self.index,
            step_id=request.step_id if request else "",
            bank=self.agent.name,
            key_fingerprint=self.agent.public_key.fingerprint,
            request_digest=request_digest(request),
        )

    def act(self, request: SumRequest | None, status: StepStatus) -> None:
        """Deliver what this bank owes in the step's current phase (if anything)."""
        phase = status.phase
        if request is None:
            if not status.have_result and phase in (Phase.CONTRIBUTE.value, Phase.FINISH.value):
                self.send(PayloadKind.RESULT, lambda: Upload(
                    PayloadKind.RESULT, self.tag(None),
                    convert.artifacts_to_bytes(self.trainer.result())))
            return
        if phase == Phase.CONTRIBUTE.value and not status.have_contribution:
            self.send(PayloadKind.CONTRIBUTION, lambda: Upload(
                PayloadKind.CONTRIBUTION, self.tag(request),
                self.agent.secure_sum.contribute(self.context(request),
                                                 self.trainer.contribution(request)),
                request=request))
        elif phase == Phase.DECRYPT.value and not status.have_shard:
            self.send(PayloadKind.SHARD, lambda: self.make_shard(request))
        elif phase == Phase.PROPOSE.value and not status.have_proposal:
            self.send(PayloadKind.PROPOSAL, lambda: self.make_proposal(request))
        elif phase == Phase.FINISH.value:
            # The others are finished and this bank is not: the aggregator fails the job.
            self.send(PayloadKind.CONTRIBUTION, lambda: Upload(
                PayloadKind.CONTRIBUTION, self.tag(request), b"", request=request))

    def aggregate(self) -> bytes:
        """The current step's aggregate as this bank downloaded it (once per step: the shares
        it combines must be made from the same aggregate)."""
        data = self.aggregates.get(self.index)
        if data is None:
            data = self.client.download(DownloadKind.AGGREGATE, self.job.job_id, self.index)
            self.aggregates = {self.index: data}
        return data

    def make_shard(self, request: SumRequest) -> Upload:
        share = self.agent.secure_sum.decrypt_share(self.context(request), self.aggregate())
        return Upload(PayloadKind.SHARD, self.tag(request), share.sealed,
                      shard_start=share.start, shard_stop=share.stop)

    def make_proposal(self, request: SumRequest) -> Upload:
        payload = self.client.download(DownloadKind.SHARDS, self.job.job_id, self.index)
        aggregate = self.agent.secure_sum.combine(
            self.context(request), self.aggregate(), convert.shards_from_bytes(payload))
        proposal = self.trainer.propose(request, aggregate)
        self.proposed.add(self.index)
        return Upload(PayloadKind.PROPOSAL, self.tag(request), canonical_json(proposal))

    def refused(self, exc: FedtabError) -> None:
        """Count a refused action; give up on the job after repeated refusals."""
        self.rejections += 1
        log.warning("%s: refused: %s", self.agent.name, exc.one_line())
        if self.rejections >= MAX_REJECTIONS:
            raise JobFailedError(f"the aggregator keeps refusing this bank: {exc.one_line()}")

    def send(self, kind: PayloadKind, build: Callable[[], Upload]) -> None:
        """Upload (building once per step, then resending the cached bytes)."""
        key = (self.index, kind)
        upload = self.cache.get(key)
        if upload is None:
            upload = build()
            self.cache = {k: v for k, v in self.cache.items() if k[0] == self.index}
            self.cache[key] = upload
        try:
            ack = self.client.upload(upload)
        except ReplayError as exc:
            log.info("%s: %s", self.agent.name, exc.one_line())
            return
        except (JobFailedError, SessionError):
            raise  # SessionError: another process speaks for this bank now
        except FedtabError as exc:
            self.refused(exc)
            return
        self.rejections = 0
        if kind is PayloadKind.CONTRIBUTION and not ack.duplicate:
            desc = upload.request.description if upload.request else ""
            self.agent._progress(f"{self.agent.name}: step {self.index} "
                                 f"{upload.tag.step_id} contributed {desc}".rstrip())
