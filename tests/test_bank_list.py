"""Issue 11 item 6: a bank checks the job's bank list against its own bundle and policy.

The attacker is the aggregator: it names the banks of a job, and a bank used to take that list
on trust. Here the attacker runs a real coordinator over mTLS gRPC (with the consortium's
aggregator certificate) that sends a job over a bank list of its choosing, fakes the other
banks' attachment, and records every upload it receives. A refusing bank uploads nothing but
its one-line ABORT: its trainer never produced a contribution. Positive control: the same
attacker code runs a two-bank job when the job allows it and both banks agreed
(``bank join --allow-two-banks``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from harness import make_frames, new_consortium, write_tables

from aggregator.coordinator import Coordinator
from aggregator.service import create_server
from bank_node.agent import BankAgent
from bank_node.policy import BankPolicy
from fedtab.consortium import load_aggregator_bundle, load_bank_bundle
from fedtab.data.validate import load_table
from fedtab.jobs import JobSpec
from fedtab.protocol.exchange import PayloadKind, Upload
from fedtab.transport.messages import Caller, JobAssignment, UploadAck

OPERATOR = Caller("operator", "operator")


class RecordingCoordinator(Coordinator):
    """The attacker's aggregator: any bank list, and a record of every upload received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, PayloadKind]] = []

    def upload(self, caller: Caller, upload: Upload) -> UploadAck:
        self.received.append((caller.name, upload.kind))
        return super().upload(caller, upload)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("banklist")
    contract, tables = write_tables(root / "data", make_frames(rows=120))
    return {"consortium": new_consortium(root / "consortium", contract, key_bits=1024),
            "tables": tables}


@contextmanager
def attacker(world: dict[str, Any], job_banks: Sequence[str], agents: Sequence[str],
             allow_two_banks: bool = False, fake_others: bool = True,
             ) -> Iterator[tuple[RecordingCoordinator, str]]:
    """A coordinator sending jobs over ``job_banks``, with real agents for ``agents``; yields
    it and its address."""
    folder = world["consortium"]
    agg = load_aggregator_bundle(folder / "aggregator")
    coord = RecordingCoordinator(agg.config.consortium_id, tuple(job_banks), agg.public_key)
    server, port = create_server(agg, coordinator=coord)
    server.start()
    running: dict[str, tuple[BankAgent, threading.Thread]] = {}
    try:
        for name in agents:
            bundle = load_bank_bundle(folder / "banks" / name)
            agent = BankAgent(bundle, load_table(world["tables"][name], bundle.contract),
                              f"127.0.0.1:{port}", poll_seconds=0.5,
                              policy=BankPolicy(allow_two_banks=allow_two_banks))
            thread = threading.Thread(target=agent.run_forever, daemon=True)
            thread.start()
            running[name] = (agent, thread)
        for name in set(job_banks) - set(agents) if fake_others else ():  # fake attachments
            coord.register(Caller(name, "bank"), name, coord.fingerprint)
        yield coord, f"127.0.0.1:{port}"
    finally:
        for agent, thread in running.values():
            agent.stop()
            thread.join(timeout=30)
            agent.close()
        server.stop(grace=None).wait()


def finished(coord: Coordinator, job_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    status = coord.job_status(OPERATOR, job_id, 0, -1)
    while not status.finished:
        assert time.monotonic() < deadline, status
        status = coord.job_status(OPERATOR, job_id, 1.0, status.version)
    return status


@pytest.mark.parametrize(("job_banks", "agents", "consent", "refusal"), [
    (("bank_a", "bank_b", "mallory"), ("bank_a", "bank_b"), False,
     "the job lists 'mallory', not a member of this consortium"),
    (("bank_a", "mallory"), ("bank_a",), True,
     "the job lists 'mallory', not a member of this consortium"),
    (("bank_a", "bank_b"), ("bank_a", "bank_b"), False,
     "the job has only two banks and this bank does not allow two-bank jobs"),
    (("bank_a", "bank_a", "bank_b"), ("bank_a", "bank_b"), True,
     "the job lists a bank more than once"),
])
def test_a_bank_refuses_a_bank_list_it_did_not_agree_to(
    world: dict[str, Any], job_banks: tuple[str, ...], agents: tuple[str, ...], consent: bool,
    refusal: str,
) -> None:
    with attacker(world, job_banks, agents, allow_two_banks=consent) as (coord, _):
        job_id = coord.submit(OPERATOR, JobSpec(kind="profile", allow_two_banks=True))
        status = finished(coord, job_id)
    assert status.state == "failed" and refusal in status.message, status.message
    assert len(status.message.splitlines()) == 1
    # Nothing computed: the only upload any bank sent is its ABORT.
    assert coord.received and {kind for _, kind in coord.received} == {PayloadKind.ABORT}


def test_two_consenting_banks_run_a_two_bank_job(world: dict[str, Any]) -> None:
    """Positive control: the same attacker code, a job allowing two banks, both consenting."""
    with attacker(world, ("bank_a", "bank_b"), ("bank_a", "bank_b"),
                  allow_two_banks=True) as (coord, _):
        job_id = coord.submit(OPERATOR, JobSpec(kind="profile", allow_two_banks=True))
        status = finished(coord, job_id)
    assert status.state == "done", status.message
    assert (("bank_a", PayloadKind.CONTRIBUTION) in coord.received
            and ("bank_b", PayloadKind.CONTRIBUTION) in coord.received)


def test_a_tampered_assignment_is_refused_before_any_computation(world: dict[str, Any]) -> None:
    """Assignments a coordinator would never send (a list without this bank; two banks for a
    job that does not allow two), fed straight to ``run_job``: refused before a trainer is
    built, so the aggregator receives nothing but the ABORT."""
    with attacker(world, ("bank_a", "bank_b", "bank_c"), (), fake_others=False) as (
            coord, address):
        folder = world["consortium"]
        bundle = load_bank_bundle(folder / "banks" / "bank_a")
        lines: list[str] = []
        agent = BankAgent(bundle, load_table(world["tables"]["bank_a"], bundle.contract),
                          address, progress=lines.append,
                          policy=BankPolicy(allow_two_banks=True))
        try:
            agent.register()
            spec = JobSpec(kind="profile").to_dict()
            assert agent.run_job(JobAssignment("job-x", spec, ("bank_b", "bank_c"))) == "failed"
            assert agent.run_job(JobAssignment("job-y", spec, ("bank_a", "bank_b"))) == "failed"
        finally:
            agent.close()
    refusals = [line for line in lines if "failed here" in line]
    assert "does not list this bank ('bank_a')" in refusals[0], lines
    assert "the job does not set allow_two_banks" in refusals[1], lines
    assert {kind for _, kind in coord.received} <= {PayloadKind.ABORT}

