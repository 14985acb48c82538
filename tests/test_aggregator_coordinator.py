"""The aggregator's Coordinator without a network: identities, replays, resends, agreement,
timeouts and checkpoints, with real Paillier keys and sealed shards."""

from __future__ import annotations

import errno
import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aggregator.checkpoint import JobStore
from aggregator.coordinator import Coordinator
from fedtab.crypto import EncodingSpec, Encryptor
from fedtab.crypto.decryptor import Decryptor
from fedtab.crypto.keys import PrivateKey
from fedtab.errors import (
    AuthenticationError,
    CiphertextError,
    ConfigError,
    JobFailedError,
    PrivacyError,
    ProposalMismatchError,
    ProtocolError,
    ReplayError,
)
from fedtab.jobs import JobSpec
from fedtab.protocol.exchange import (
    CommittedStep,
    PayloadKind,
    Tag,
    Upload,
    request_digest,
    sum_context,
)
from fedtab.protocol.steps import SumRequest, canonical_json
from fedtab.securesum.base import SumContext
from fedtab.securesum.sealing import generate_shard_key
from fedtab.securesum.shared_key_bank import SharedKeyBank
from fedtab.transport import convert
from fedtab.transport.messages import Caller, DownloadKind

BANKS = ("bank_a", "bank_b", "bank_c")
SPEC = EncodingSpec(frac_bits=20, clip=1000.0, max_summands=8)
OPERATOR = Caller("operator", "operator")


def request_for(k: int, segment: str = "sum") -> SumRequest:
    """Step ``k``'s request; its steps form one segment (their aggregates are kept)."""
    return SumRequest(step_id=f"step/{k}", length=5, encoding=SPEC, description=f"{k + 1}/2",
                      segment=segment)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bank:
    name: str
    encryptor: Encryptor
    decryptor: Decryptor
    shard_key: bytes

    @property
    def caller(self) -> Caller:
        return Caller(self.name, "bank")

    @property
    def side(self) -> SharedKeyBank:
        """This bank's side of the secure-sum backend."""
        return SharedKeyBank(self.name, self.encryptor.public_key, self.encryptor,
                             self.decryptor, self.shard_key)


@pytest.fixture(scope="module")
def banks(small_private_key: PrivateKey) -> dict[str, Bank]:
    shard_key = generate_shard_key()
    return {
        name: Bank(name, Encryptor(small_private_key.public), Decryptor(small_private_key),
                   shard_key)
        for name in BANKS
    }


def make_coordinator(key: PrivateKey, store: Path | None = None, clock: FakeClock | None = None,
                     banks: tuple[str, ...] = BANKS) -> Coordinator:
    return Coordinator("c-1", banks, key.public, store=JobStore(store) if store else None,
                       bank_timeout=60.0, clock=clock or FakeClock())


def start_job(coord: Coordinator) -> str:
    for name in coord.banks:
        coord.register(Caller(name, "bank"), name, coord.fingerprint)
    job_id = coord.submit(OPERATOR, JobSpec(kind="profile"))
    assert coord.job_status(OPERATOR, job_id, 0, -1).state == "running"
    return job_id


def tag(job_id: str, k: int, bank: str, request: SumRequest | None, fp: str) -> Tag:
    return Tag(job_id, k, request.step_id if request else "", bank, fp, request_digest(request))


def context(coord: Coordinator, job_id: str, k: int, request: SumRequest) -> SumContext:
    return sum_context(job_id, k, request, coord.banks, coord.fingerprint)


def encrypt_contribution(coord: Coordinator, bank: Bank, job_id: str, k: int,
                         request: SumRequest, values: np.ndarray) -> bytes:
    return bank.side.contribute(context(coord, job_id, k, request), values)


def vector(bank: str, k: int) -> np.ndarray:
    return np.arange(5, dtype=float) * (BANKS.index(bank) + 1) + k


def contribution(coord: Coordinator, bank: Bank, job_id: str, k: int) -> Upload:
    request = request_for(k)
    payload = encrypt_contribution(coord, bank, job_id, k, request, vector(bank.name, k))
    return Upload(PayloadKind.CONTRIBUTION, tag(job_id, k, bank.name, request, coord.fingerprint),
                  payload, request=request)


def run_step(coord: Coordinator, banks: dict[str, Bank], job_id: str, k: int,
             tamper: str | None = None, contributed: tuple[str, ...] = ()) -> np.ndarray:
    """Drive step ``k`` through all phases; ``tamper`` names a bank proposing differently;
    banks in ``contributed`` have already uploaded their contribution."""
    request = request_for(k)
    for bank in banks.values():
        if bank.name not in contributed:
            coord.upload(bank.caller, contribution(coord, bank, job_id, k))
    ctx = context(coord, job_id, k, request)
    aggregates = {}
    for bank in banks.values():
        t = tag(job_id, k, bank.name, request, coord.fingerprint)
        aggregates[bank.name] = coord.download(bank.caller, DownloadKind.AGGREGATE, job_id, k, 0)
        share = bank.side.decrypt_share(ctx, aggregates[bank.name])
        coord.upload(bank.caller, Upload(PayloadKind.SHARD, t, share.sealed,
                                         shard_start=share.start, shard_stop=share.stop))
    status = coord.poll_step(banks["bank_a"].caller, job_id, k, 0)
    assert status.phase == "propose"
    sums = []
    for bank in banks.values():
        t = tag(job_id, k, bank.name, request, coord.fingerprint)
        shards = convert.shards_from_bytes(
            coord.download(bank.caller, DownloadKind.SHARDS, job_id, k, 0))
        total = bank.side.combine(ctx, aggregates[bank.name], shards)
        sums.append(total)
        proposal = {"sum": [round(float(x), 6) for x in total]}
        if bank.name == tamper:
            proposal["sum"][0] += 1.0
        coord.upload(bank.caller, Upload(PayloadKind.PROPOSAL, t, canonical_json(proposal)))
    return sums[0]


def finish(coord: Coordinator, banks: dict[str, Bank], job_id: str, k: int) -> None:
    for bank in banks.values():
        artifacts = {"result.json": b'{"ok": true}'}
        coord.upload(bank.caller, Upload(PayloadKind.RESULT,
                                         tag(job_id, k, bank.name, None, coord.fingerprint),
                                         convert.artifacts_to_bytes(artifacts)))


def test_full_job_sums_correctly_and_checkpoints(small_private_key, banks, tmp_path) -> None:
    coord = make_coordinator(small_private_key, tmp_path)
    job_id = start_job(coord)
    for k in range(2):
        total = run_step(coord, banks, job_id, k)
        np.testing.assert_allclose(total, sum(vector(b, k) for b in BANKS), atol=1e-5)
    finish(coord, banks, job_id, 2)
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "done" and status.step_index == 2
    assert coord.download(OPERATOR, DownloadKind.ARTIFACTS, job_id, 0, 0)
    step0 = json.loads((tmp_path / "jobs" / job_id / "steps" / "000000.json").read_text())
    assert step0["request"]["step_id"] == "step/0"
    # A coordinator restarted on the same state serves the finished job's artifacts.
    again = make_coordinator(small_private_key, tmp_path)
    assert again.download(OPERATOR, DownloadKind.ARTIFACTS, job_id, 0, 0) == \
        coord.download(OPERATOR, DownloadKind.ARTIFACTS, job_id, 0, 0)


def test_identity_rules(small_private_key, banks) -> None:
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    bank_a = banks["bank_a"]
    upload = contribution(coord, bank_a, job_id, 0)
    with pytest.raises(AuthenticationError, match="in the name of"):
        coord.upload(Caller("bank_b", "bank"), upload)
    with pytest.raises(AuthenticationError, match="not a consortium bank"):
        coord.upload(Caller("mallory", "bank"), upload)
    with pytest.raises(AuthenticationError, match="may not call bank RPCs"):
        coord.upload(OPERATOR, upload)
    with pytest.raises(AuthenticationError, match="may not call bank RPCs"):
        coord.next_task(Caller("aggregator", "aggregator"), 0)
    with pytest.raises(AuthenticationError, match="only the operator"):
        coord.submit(bank_a.caller, JobSpec(kind="profile"))
    with pytest.raises(AuthenticationError, match="only the operator"):
        coord.download(bank_a.caller, DownloadKind.ARTIFACTS, job_id, 0, 0)
    wrong_fp = Upload(upload.kind, Tag(job_id, 0, "step/0", "bank_a", "ab" * 32,
                                       upload.tag.request_digest), upload.payload,
                      request=upload.request)
    with pytest.raises(ProtocolError, match="used key"):
        coord.upload(bank_a.caller, wrong_fp)
    # The honest banks are still served: the step goes on.
    assert coord.upload(bank_a.caller, upload).duplicate is False
    assert coord.job_status(OPERATOR, job_id, 0, -1).state == "running"


def test_resend_is_harmless_and_replay_rejected(small_private_key, banks) -> None:
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    bank_a = banks["bank_a"]
    first = contribution(coord, bank_a, job_id, 0)
    assert coord.upload(bank_a.caller, first).duplicate is False
    assert coord.upload(bank_a.caller, first).duplicate is True  # resend after a timeout
    with pytest.raises(ProtocolError, match="different content"):
        coord.upload(bank_a.caller, contribution(coord, bank_a, job_id, 0))  # re-encrypted
    with pytest.raises(ProtocolError, match="not reached"):
        coord.upload(bank_a.caller, contribution(coord, bank_a, job_id, 1))
    for name in ("bank_b", "bank_c"):
        coord.upload(banks[name].caller, contribution(coord, banks[name], job_id, 0))
    assert coord.upload(bank_a.caller, first).duplicate is True  # late resend, next phase
    coord2 = make_coordinator(small_private_key)
    job2 = start_job(coord2)
    run_step(coord2, banks, job2, 0)
    old = contribution(coord2, bank_a, job2, 0)
    with pytest.raises(ReplayError, match="already committed"):
        coord2.upload(bank_a.caller, old)
    assert coord2.job_status(OPERATOR, job2, 0, -1).state == "running"


def test_invalid_ciphertexts_rejected(small_private_key, banks) -> None:
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    good = contribution(coord, banks["bank_a"], job_id, 0)
    other = request_for(0)
    wrong_length = SumRequest(other.step_id, 6, SPEC)
    bad = Upload(PayloadKind.CONTRIBUTION,
                 tag(job_id, 0, "bank_a", wrong_length, coord.fingerprint), good.payload,
                 request=wrong_length)
    with pytest.raises(CiphertextError, match="values"):
        coord.upload(banks["bank_a"].caller, bad)


def test_disagreeing_requests_fail_the_job(small_private_key, banks) -> None:
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    coord.upload(banks["bank_a"].caller, contribution(coord, banks["bank_a"], job_id, 0))
    odd = SumRequest("step/other", 5, SPEC)
    upload = Upload(PayloadKind.CONTRIBUTION, tag(job_id, 0, "bank_b", odd, coord.fingerprint),
                    encrypt_contribution(coord, banks["bank_b"], job_id, 0, odd, np.zeros(5)),
                    request=odd)
    with pytest.raises(ProtocolError, match="disagree"):
        coord.upload(banks["bank_b"].caller, upload)
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed" and "bank_b" in status.message


def test_proposal_mismatch_commits_nothing(small_private_key, banks, tmp_path) -> None:
    coord = make_coordinator(small_private_key, tmp_path)
    job_id = start_job(coord)
    with pytest.raises(ProposalMismatchError, match="bank_a,bank_b vs bank_c"):
        run_step(coord, banks, job_id, 0, tamper="bank_c")
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed" and "ProposalMismatchError" in status.message
    assert status.step_index == 0
    assert not list((tmp_path / "jobs" / job_id).glob("steps/*.json"))


def test_absent_bank_fails_the_job_by_name(small_private_key, banks) -> None:
    clock = FakeClock()
    coord = make_coordinator(small_private_key, clock=clock)
    job_id = start_job(coord)
    clock.now += 30
    for name in ("bank_a", "bank_b"):
        coord.poll_step(banks[name].caller, job_id, 0, 0)
    clock.now += 40
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed"
    assert "bank_c" in status.message and "bank_a" not in status.message


def test_resume_after_restart_continues_at_the_uncommitted_step(small_private_key, banks,
                                                                 tmp_path) -> None:
    coord = make_coordinator(small_private_key, tmp_path)
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    half = contribution(coord, banks["bank_a"], job_id, 1)
    coord.upload(banks["bank_a"].caller, half)
    resumed = make_coordinator(small_private_key, tmp_path)
    status = resumed.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "waiting" and status.step_index == 1
    for name in BANKS:
        resumed.register(Caller(name, "bank"), name, resumed.fingerprint)
    assert resumed.job_status(OPERATOR, job_id, 0, -1).state == "running"
    committed = convert.committed_from_bytes(
        resumed.download(banks["bank_b"].caller, DownloadKind.COMMITTED, job_id, 0, 0))
    assert [c.request.step_id for c in committed] == ["step/0"]
    # The aggregate of the committed step is kept for banks that rejoin mid-job.
    assert resumed.download(banks["bank_b"].caller, DownloadKind.AGGREGATE, job_id, 0, 0)
    assert resumed.upload(banks["bank_a"].caller, half).duplicate is False  # resent
    total = run_step(resumed, banks, job_id, 1, contributed=("bank_a",))
    np.testing.assert_allclose(total, sum(vector(b, 1) for b in BANKS), atol=1e-5)
    finish(resumed, banks, job_id, 2)
    assert resumed.job_status(OPERATOR, job_id, 0, -1).state == "done"


def test_two_bank_consortium_needs_the_override(small_private_key) -> None:
    coord = make_coordinator(small_private_key, banks=("bank_a", "bank_b"))
    with pytest.raises(PrivacyError, match="allow_two_banks"):
        coord.submit(OPERATOR, JobSpec(kind="profile"))
    assert coord.submit(OPERATOR, JobSpec(kind="profile", allow_two_banks=True))


def test_coordinator_holds_no_private_key(small_private_key, banks, tmp_path) -> None:
    coord = make_coordinator(small_private_key, tmp_path)
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    seen: set[int] = set()
    stack: list[object] = [coord]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        assert not isinstance(obj, (PrivateKey, Decryptor)), "coordinator reaches a private key"
        if isinstance(obj, int):
            assert obj not in (small_private_key.p, small_private_key.q)
        stack.extend(gc.get_referents(obj))
    assert len(seen) > 100


def test_job_file_bank_timeout_overrides_the_default(small_private_key, banks) -> None:
    spec = JobSpec.from_dict({"job": {"kind": "profile", "bank_timeout": 20}})
    assert spec.bank_timeout == 20.0
    assert JobSpec.from_dict(spec.to_dict()) == spec
    clock = FakeClock()
    coord = make_coordinator(small_private_key, clock=clock)
    for name in BANKS:
        coord.register(Caller(name, "bank"), name, coord.fingerprint)
    job_id = coord.submit(OPERATOR, spec)
    assert coord.job_status(OPERATOR, job_id, 0, -1).state == "running"
    clock.now += 25
    coord.poll_step(banks["bank_a"].caller, job_id, 0, 0)
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed" and "bank_b, bank_c" in status.message


class FailingStore(JobStore):
    """A real JobStore whose writes fail like a full or broken disk: ``save_step`` of step
    ``step_fails`` once (ENOSPC), or every write once ``broken`` is set (EIO)."""

    def __init__(self, root: Path, step_fails: int | None = None) -> None:
        super().__init__(root)
        self.step_fails = step_fails
        self.broken = False

    def _check(self, what: str) -> None:
        if self.broken:
            raise OSError(errno.EIO, os.strerror(errno.EIO), what)

    def save_step(self, job_id: str, step: CommittedStep) -> None:
        self._check("step")
        if step.index == self.step_fails:
            self.step_fails = None
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"steps/{step.index:06d}")
        super().save_step(job_id, step)

    def save_aggregate(self, job_id: str, index: int, aggregate: bytes) -> None:
        self._check("aggregate")
        super().save_aggregate(job_id, index, aggregate)

    def save_record(self, job_id: str, record: dict[str, Any]) -> None:
        self._check("record")
        super().save_record(job_id, record)

    def save_artifacts(self, job_id: str, artifacts: dict[str, bytes]) -> None:
        self._check("artifacts")
        super().save_artifacts(job_id, artifacts)


def test_failed_step_checkpoint_fails_the_job_instead_of_wedging_it(small_private_key, banks,
                                                                    tmp_path) -> None:
    store = FailingStore(tmp_path, step_fails=1)
    coord = Coordinator("c-1", BANKS, small_private_key.public, store=store, bank_timeout=60.0,
                        clock=FakeClock())
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    run_step(coord, banks, job_id, 1)  # the commit of step 1 cannot be written: no exception
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed" and status.step_index == 1, status
    assert status.message.startswith("CheckpointError: cannot write the checkpoint of job ")
    assert "step 1" in status.message and "No space left on device" in status.message
    assert "\n" not in status.message and str(tmp_path) not in status.message
    for bank in banks.values():  # every bank sees the failure (and stops polling)
        seen = coord.poll_step(bank.caller, job_id, 1, 0)
        assert seen.job_state == "failed" and "No space left" in seen.message
    # Memory never ran ahead of the disk: step 1 is not committed anywhere.
    committed = convert.committed_from_bytes(
        coord.download(banks["bank_a"].caller, DownloadKind.COMMITTED, job_id, 0, 0))
    assert [c.index for c in committed] == [0]
    assert sorted(p.name for p in (tmp_path / "jobs" / job_id / "steps").glob("*.json")) \
        == ["000000.json"]
    again = make_coordinator(small_private_key, tmp_path)
    assert again.job_status(OPERATOR, job_id, 0, -1).state == "failed"


def test_broken_disk_at_the_finish_fails_the_job_and_a_restart_resumes(small_private_key,
                                                                        banks, tmp_path) -> None:
    store = FailingStore(tmp_path)
    coord = Coordinator("c-1", BANKS, small_private_key.public, store=store, bank_timeout=60.0,
                        clock=FakeClock())
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    run_step(coord, banks, job_id, 1)
    store.broken = True  # even the failure record cannot be written
    finish(coord, banks, job_id, 2)
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed" and "Input/output error" in status.message
    assert "the artifacts" in status.message
    with pytest.raises(ProtocolError, match="no artifacts"):
        coord.download(OPERATOR, DownloadKind.ARTIFACTS, job_id, 0, 0)
    # The disk still says "running at step 2": once it works again a restart resumes there.
    resumed = make_coordinator(small_private_key, tmp_path)
    for name in BANKS:
        resumed.register(Caller(name, "bank"), name, resumed.fingerprint)
    assert resumed.job_status(OPERATOR, job_id, 0, -1).step_index == 2
    finish(resumed, banks, job_id, 2)
    assert resumed.job_status(OPERATOR, job_id, 0, -1).state == "done"


def test_resumed_job_fails_when_a_bank_never_returns(small_private_key, banks,
                                                     tmp_path) -> None:
    clock = FakeClock()
    coord = make_coordinator(small_private_key, tmp_path, clock=clock)
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    next_job = coord.submit(OPERATOR, JobSpec(kind="profile"))
    resumed = make_coordinator(small_private_key, tmp_path, clock=clock)  # restart
    for name in ("bank_a", "bank_b"):
        resumed.register(banks[name].caller, name, resumed.fingerprint)
    for _ in range(5):  # bank_c never comes back; the others keep asking for work
        clock.now += 15
        for name in ("bank_a", "bank_b"):
            assert resumed.next_task(banks[name].caller, 0) is None
    status = resumed.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed", status
    assert "bank_c" in status.message and "bank_a" not in status.message
    assert "bank_timeout" in status.message and "step 1" in status.message
    # The queue moves on; a job that never ran waits for its banks without a limit.
    clock.now += 10 * 3600
    for name in ("bank_a", "bank_b"):
        resumed.next_task(banks[name].caller, 0)
    assert resumed.job_status(OPERATOR, next_job, 0, -1).state == "waiting"
    resumed.register(banks["bank_c"].caller, "bank_c", resumed.fingerprint)
    assert resumed.job_status(OPERATOR, next_job, 0, -1).state == "running"


def test_resumed_job_waits_within_the_bank_timeout(small_private_key, banks, tmp_path) -> None:
    clock = FakeClock()
    coord = make_coordinator(small_private_key, tmp_path, clock=clock)
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    resumed = make_coordinator(small_private_key, tmp_path, clock=clock)
    clock.now += 50  # all banks slow to come back, but within bank_timeout=60
    for name in BANKS:
        resumed.register(banks[name].caller, name, resumed.fingerprint)
    assert resumed.job_status(OPERATOR, job_id, 0, -1).state == "running"
    run_step(resumed, banks, job_id, 1)


def test_operator_cancels_a_running_job_and_the_queue_moves_on(small_private_key,
                                                              banks) -> None:
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    run_step(coord, banks, job_id, 0)
    next_job = coord.submit(OPERATOR, JobSpec(kind="profile"))
    with pytest.raises(AuthenticationError, match="only the operator"):
        coord.cancel(banks["bank_a"].caller, job_id)
    with pytest.raises(ConfigError, match="unknown job"):
        coord.cancel(OPERATOR, "job-9999-000000")
    status = coord.cancel(OPERATOR, job_id, "bank_c  is\n gone")
    assert status.state == "failed"
    assert status.message == "cancelled by the operator at step 1: bank_c is gone"
    assert coord.cancel(OPERATOR, job_id, "again").message == status.message  # idempotent
    seen = coord.poll_step(banks["bank_b"].caller, job_id, 1, 0)
    assert seen.job_state == "failed" and "cancelled" in seen.message
    with pytest.raises(JobFailedError, match="cancelled by the operator"):
        coord.upload(banks["bank_a"].caller, contribution(coord, banks["bank_a"], job_id, 1))
    assert coord.job_status(OPERATOR, next_job, 0, -1).state == "running"
    run_step(coord, banks, next_job, 0)
    run_step(coord, banks, next_job, 1)
    finish(coord, banks, next_job, 2)
    with pytest.raises(ProtocolError, match="already done"):
        coord.cancel(OPERATOR, next_job)
