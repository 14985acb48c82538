"""An aggregator restored from an older backup: a bank that already committed a step the
aggregator no longer has fails the job with one line naming both steps (it used to busy-loop:
its long poll for a step the aggregator is not at returns at once, forever).

The bank's step loop (``bank_node.agent._JobRun``) runs against a real :class:`Coordinator`
through a client that calls it in-process (no network), with real Paillier keys.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_aggregator_coordinator import (
    BANKS,
    OPERATOR,
    Bank,
    FakeClock,
    banks,  # noqa: F401  (the module-scoped fixture)
    make_coordinator,
    request_for,
    run_step,
    start_job,
)

from aggregator.checkpoint import JobStore
from aggregator.coordinator import Coordinator
from bank_node.agent import BankAgent, _JobRun
from fedtab.errors import JobFailedError
from fedtab.protocol.exchange import StepStatus, Upload
from fedtab.protocol.steps import JobContext, SumRequest
from fedtab.transport.messages import Caller, DownloadKind, JobAssignment, UploadAck

MAX_POLLS = 200


class DirectClient:
    """The bank client's calls, answered by ``coord`` in this process; counts polls so a busy
    loop shows up as a test failure instead of a hang."""

    def __init__(self, coord: Coordinator, caller: Caller) -> None:
        self.coord = coord
        self.caller = caller
        self.polls = 0

    def poll_step(self, job_id: str, step_index: int, wait: float = 0.0) -> StepStatus:
        self.polls += 1
        if self.polls > MAX_POLLS:
            raise AssertionError(f"busy loop: {self.polls} polls for step {step_index}")
        return self.coord.poll_step(self.caller, job_id, step_index, wait)

    def download(self, kind: DownloadKind, job_id: str, step_index: int = 0,
                 from_index: int = 0) -> bytes:
        return self.coord.download(self.caller, kind, job_id, step_index, from_index)

    def upload(self, upload: Upload) -> UploadAck:
        return self.coord.upload(self.caller, upload)


class FollowingTrainer:
    """Asks for the same requests as the coordinator tests' banks (it never gets to act here)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def next_request(self) -> SumRequest | None:
        return request_for(self.index) if self.index < 2 else None


def test_bank_ahead_of_a_rolled_back_aggregator_fails_the_job(small_private_key,
                                                              banks: dict[str, Bank],  # noqa: F811
                                                              tmp_path: Path) -> None:
    clock = FakeClock()
    state = tmp_path / "state"
    coord = make_coordinator(small_private_key, state, clock=clock)
    job_id = start_job(coord)
    backup = tmp_path / "backup"
    shutil.copytree(state, backup)  # taken before step 0 was committed
    run_step(coord, banks, job_id, 0)  # every bank committed step 0
    # The old backup, served with a real clock: a poll that waits really waits.
    restored = Coordinator("c-1", BANKS, small_private_key.public, store=JobStore(backup),
                           bank_timeout=60.0)
    for name in BANKS:
        restored.register(banks[name].caller, name, restored.fingerprint)
    assert restored.job_status(OPERATOR, job_id, 0, -1).step_index == 0

    bank = banks["bank_a"]
    client = DirectClient(restored, bank.caller)
    agent = SimpleNamespace(name=bank.name, client=client, public_key=small_private_key.public,
                            poll_seconds=5.0, _stop=threading.Event(),
                            _progress=lambda line: None)
    assignment = JobAssignment(job_id, {}, BANKS)
    run = _JobRun(agent, assignment, JobContext(job_id, bank.name, BANKS),  # type: ignore[arg-type]
                  FollowingTrainer(1))  # type: ignore[arg-type]
    run.index = 1  # this bank's trainer has committed step 0
    with pytest.raises(JobFailedError) as caught:
        run.run()
    message = caught.value.one_line()
    assert "the aggregator is at step 0 but this bank already committed step 0" in message
    assert "rolled back" in message and client.polls <= 2
    # What the agent does with it (run_job): abort, and the operator sees why.
    BankAgent.abort(agent, job_id, message)  # type: ignore[arg-type]
    status = restored.job_status(OPERATOR, job_id, 0, -1)
    assert status.state == "failed" and "rolled back" in status.message
    assert "bank_a" in status.message
