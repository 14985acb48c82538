"""Issue 11 item 10: one process speaks for a bank; a second one under its identity is refused.

The attack, as a new user would make it: while ``bank_a`` is attached and training, a second
process joins from the same bank folder with other data (here bank_c's table). It used to be
accepted, the aggregator registered the bank twice and a race decided which table trained.
Now the duplicate is refused at registration (one line, non-zero exit for ``bank join``), the
original keeps training and the model equals the in-memory reference over the original tables.
Positive control: after the first process goes silent (frozen, not disconnected) for the
attach window (2 s here), a new process takes over and trains; a call carrying the old
session is then refused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from harness import (
    InProcessConsortium,
    local_reference,
    make_frames,
    new_consortium,
    run_fedtab,
    write_tables,
)

from bank_node.agent import BankAgent
from bank_node.client import BankClient
from fedtab.consortium import load_bank_bundle
from fedtab.data.validate import load_table
from fedtab.errors import SessionError
from fedtab.jobs import JobSpec

SPEC = JobSpec(kind="gbdt", params={"n_estimators": 3, "max_depth": 2, "max_bin": 8}, seed=7)
DUPLICATE = "bank 'bank_a' is already attached from another process; stop it first"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("identity")
    contract, tables = write_tables(root / "data", make_frames(seed=5, rows=150))
    return {"consortium": new_consortium(root / "consortium", contract, key_bits=1024),
            "tables": tables}


def wait_step(client: Any, job_id: str, index: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    status = client.status(job_id)
    while status.step_index < index:
        assert status.state not in ("done", "failed") and time.monotonic() < deadline, status
        status = client.status(job_id, wait=1.0, known_version=status.version)


def test_a_second_process_under_an_attached_identity_is_refused(world: dict[str, Any]) -> None:
    folder, tables = world["consortium"], world["tables"]
    bundle = load_bank_bundle(folder / "banks" / "bank_a")
    other_data = load_table(tables["bank_c"], bundle.contract)
    with InProcessConsortium(folder, tables) as cons, cons.operator_client() as client:
        job_id = client.submit(SPEC)
        wait_step(client, job_id, 2)
        # In process: a second agent for bank_a, with other data, is refused at registration.
        duplicate = BankAgent(bundle, other_data, cons.address, poll_seconds=1.0)
        try:
            with pytest.raises(SessionError, match=DUPLICATE):
                duplicate.run_forever()
        finally:
            duplicate.close()  # it holds no session: detaching ends nothing
        # As a user would: `fedtab bank join` a second time prints one line and exits 6.
        result = run_fedtab(["bank", "join", str(folder / "banks" / "bank_a"), "--data",
                             str(tables["bank_c"]), "--aggregator", cons.address], timeout=120)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 6 and errors == [f"error: SessionError: {DUPLICATE}"], \
            result.stderr
        assert "finished" not in result.stderr and "attached to" not in result.stderr
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)
    assert final.state == "done"
    assert artifacts == local_reference(folder, tables, SPEC, job_id)


def test_a_silent_session_is_taken_over_after_the_attach_window(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    folder, tables = world["consortium"], world["tables"]
    caplog.set_level(logging.INFO, logger="fedtab.aggregator")
    bundle = load_bank_bundle(folder / "banks" / "bank_a")
    fingerprint = bundle.public_key.fingerprint
    with InProcessConsortium(folder, tables, attach_window=2.0,
                             start_banks=("bank_b", "bank_c")) as cons, \
            cons.operator_client() as client:
        first = BankClient(bundle.tls, cons.address, "bank_a")
        first.register(fingerprint)
        polling = threading.Thread(target=first.next_task, args=(3.0,), daemon=True)
        polling.start()  # attached: a long poll open, its client connected
        time.sleep(0.5)
        second = BankClient(bundle.tls, cons.address, "bank_a")
        started = time.monotonic()
        with pytest.raises(SessionError, match=DUPLICATE):
            second.register(fingerprint)
        assert time.monotonic() - started < 1.5  # refused at once, not after a wait
        second.close()
        polling.join()
        silent_since = time.time()  # `first` now freezes: connected, but silent
        cons.start_bank("bank_a")  # waits out the attach window, then takes over
        job_id = client.submit(SPEC)
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)
        took_over = [r for r in caplog.records if "takes over from a silent one" in r.message]
        assert len(took_over) == 1 and took_over[0].created - silent_since >= 1.5
        # The frozen process wakes up: its session is no longer current.
        with pytest.raises(SessionError, match="no longer current"):
            first.next_task(0.0)
        first.close()
    assert final.state == "done"
    assert artifacts == local_reference(folder, tables, SPEC, job_id)


def test_a_stopped_bank_frees_its_name_at_once(world: dict[str, Any]) -> None:
    """A bank that stops (SIGTERM in ``bank join``) detaches: a restart attaches at once."""
    folder, tables = world["consortium"], world["tables"]
    with InProcessConsortium(folder, tables, attach_window=30.0) as cons:
        time.sleep(0.5)
        cons.stop_bank("bank_a")
        bundle = load_bank_bundle(folder / "banks" / "bank_a")
        again = BankClient(bundle.tls, cons.address, "bank_a")
        started = time.monotonic()
        again.register(bundle.public_key.fingerprint)
        assert time.monotonic() - started < 5.0  # not the 30 s attach window
        again.close()
