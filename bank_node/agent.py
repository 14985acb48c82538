"""The bank agent: stays attached to the aggregator and drives its trainers' step machines.

For each step ``k`` of a job the agent follows the aggregator's phase of that step (polled with
a server-side wait, no busy loop): *contribute* (encrypt ``trainer.contribution`` and upload),
*decrypt* (decrypt this bank's shard of the aggregate and upload it sealed), *propose* (unseal
all shards, decode, upload ``trainer.propose``), then fetch the committed proposal and
``trainer.commit`` it. Finished trainers upload their ``result()``. Uploads are cached per step
and resent unchanged, so a resend after a timeout or an aggregator restart is harmless. A bank
that (re)joins a running job replays the committed proposals on a fresh trainer first.

Threat model: the agent holds this bank's table, the consortium private key and the shard key;
it sends the aggregator only ciphertexts, sealed shards, proposals and results.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bank_node.client import BankClient
from bank_node.policy import BankPolicy, PolicyRefusal
from bank_node.shares import decrypt_shard, encrypt_contribution, open_shards
from fedtab.consortium import BankBundle
from fedtab.crypto import Encryptor, encrypted_vector_from_bytes
from fedtab.crypto.decryptor import Decryptor
from fedtab.data.contract import LocalTable
from fedtab.errors import (
    ConfigError,
    FedtabError,
    JobFailedError,
    PeerUnavailableError,
    PrivacyError,
    ProtocolError,
    ReplayError,
)
from fedtab.jobs import JobSpec, create_trainer
from fedtab.protocol.steps import (
    BankTrainer,
    JobContext,
    SumRequest,
    canonical_json,
    proposal_digest,
)
from fedtab.transport import convert
from fedtab.transport.messages import (
    CommittedStep,
    DownloadKind,
    JobAssignment,
    JobState,
    PayloadKind,
    Phase,
    StepStatus,
    Tag,
    Upload,
    request_digest,
)
from fedtab.transport.options import LONG_POLL_SECONDS, REPLAY_WINDOW

log = logging.getLogger("fedtab.bank")
MAX_REJECTIONS = 5


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
        self._encryptor = Encryptor(self.public_key, workers=workers)
        self._decryptor = Decryptor(bundle.private_key, workers=workers)
        self._shard_key: bytes = bundle.shard_key

    # ----- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        self._encryptor.close()
        self._decryptor.close()
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
            self.policy.check(spec)  # validates [params] with the kind's schema, as the trainer
            ctx = JobContext(job.job_id, self.name, tuple(sorted(job.banks)), seed=spec.seed,
                             params=dict(spec.params), privacy_floor=self.policy.privacy_floor)
            trainer = create_trainer(spec, ctx, self.table, holdout=self.holdout)
            return _JobRun(self, job, ctx, trainer).run()
        except FedtabError as exc:
            if self._stop.is_set():
                return "stopped"
            if isinstance(exc, PeerUnavailableError):
                raise
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

    Parameter errors and this bank's own refusals name parameters only; anything about the
    bank's data (row counts, values) stays in the bank's log.
    """
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
                    except (JobFailedError, PeerUnavailableError, PrivacyError):
                        raise  # PrivacyError: this bank refuses to release (its floor)
                    except FedtabError as exc:
                        self.refused(exc)
                status = self.client.poll_step(self.job.job_id, self.index,
                                               agent.poll_seconds)
        return "stopped"

    def catch_up(self) -> None:
        """Fetch and replay the steps committed since ``self.index``.

        Steps this process did not propose itself and that are among the last
        ``REPLAY_WINDOW`` go through ``propose`` with the re-decrypted aggregate first (so
        trainer caches such as GBDT parent histograms are rebuilt); the proposal must equal the
        committed one.
        """
        payload = self.client.download(DownloadKind.COMMITTED, self.job.job_id,
                                       from_index=self.index)
        steps = convert.committed_from_bytes(payload)
        last = steps[-1].index if steps else -1
        for step in steps:
            mine = self.trainer.next_request()
            if mine is None or request_digest(mine) != request_digest(step.request):
                raise JobFailedError(
                    f"committed step {step.index} ({step.request.step_id}) is not what this "
                    f"bank's trainer expects ({mine.step_id if mine else 'finished'})"
                )
            if step.index not in self.proposed and step.index > last - REPLAY_WINDOW:
                self.replay_propose(step)
            self.trainer.commit(step.request, step.proposal)
            self.index = step.index + 1
            self.agent._progress(
                f"{self.agent.name}: step {step.index} committed: {step.request.step_id}"
            )

    def replay_propose(self, step: CommittedStep) -> None:
        """Re-derive a committed step's proposal from its aggregate (decrypted here in full)."""
        data = self.client.download(DownloadKind.AGGREGATE, self.job.job_id, step.index)
        vector = encrypted_vector_from_bytes(data, self.agent.public_key)
        aggregate = self.agent._decryptor.decrypt(vector)
        try:
            proposal = self.trainer.propose(step.request, aggregate)
        except ProtocolError as exc:
            # The window can start inside an earlier tree (or another dependency segment)
            # whose first steps it no longer holds; those steps need commit() only. A step the
            # live job depends on always re-proposes, as the window spans a whole segment.
            self.agent._progress(
                f"{self.agent.name}: step {step.index} replayed by commit only ({exc})"
            )
            return
        if proposal_digest(proposal) != proposal_digest(step.proposal):
            raise JobFailedError(
                f"replaying step {step.index} ({step.request.step_id}) gives another proposal "
                "than the committed one"
            )

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
                encrypt_contribution(self.agent._encryptor, request,
                                     self.trainer.contribution(request)),
                request=request))
        elif phase == Phase.DECRYPT.value and not status.have_shard:
            self.send(PayloadKind.SHARD, lambda: self.make_shard(request))
        elif phase == Phase.PROPOSE.value and not status.have_proposal:
            self.send(PayloadKind.PROPOSAL, lambda: self.make_proposal(request, status))
        elif phase == Phase.FINISH.value:
            # The others are finished and this bank is not: the aggregator fails the job.
            self.send(PayloadKind.CONTRIBUTION, lambda: Upload(
                PayloadKind.CONTRIBUTION, self.tag(request), b"", request=request))

    def make_shard(self, request: SumRequest) -> Upload:
        agent = self.agent
        tag = self.tag(request)
        aggregate = self.client.download(DownloadKind.AGGREGATE, self.job.job_id, self.index)
        start, stop, sealed = decrypt_shard(agent._decryptor, agent.public_key,
                                            agent._shard_key, tag, self.banks, aggregate,
                                            request)
        return Upload(PayloadKind.SHARD, tag, sealed, shard_start=start, shard_stop=stop)

    def make_proposal(self, request: SumRequest, status: StepStatus) -> Upload:
        agent = self.agent
        tag = self.tag(request)
        payload = self.client.download(DownloadKind.SHARDS, self.job.job_id, self.index)
        aggregate = open_shards(agent.public_key, agent._shard_key, tag, self.banks,
                                convert.shards_from_bytes(payload), request,
                                status.n_ciphertexts)
        proposal = self.trainer.propose(request, aggregate)
        self.proposed.add(self.index)
        return Upload(PayloadKind.PROPOSAL, tag, canonical_json(proposal))

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
        except JobFailedError:
            raise
        except FedtabError as exc:
            self.refused(exc)
            return
        self.rejections = 0
        if kind is PayloadKind.CONTRIBUTION and not ack.duplicate:
            desc = upload.request.description if upload.request else ""
            self.agent._progress(f"{self.agent.name}: step {self.index} "
                                 f"{upload.tag.step_id} contributed {desc}".rstrip())
