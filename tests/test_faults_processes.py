"""Crashes of real processes mid-GBDT-job: the aggregator and three banks are ``fedtab``
processes on OS-chosen loopback ports (mTLS), the operator is ``fedtab run``; the test kills
(SIGKILL) and restarts only the PIDs it started.

- a bank killed mid-job: the job waits for it with a clear status (``waiting for bank_b``)
  within its ``[job] bank_timeout``, and finishes after the restart with the same model;
- the aggregator killed mid-job and restarted on the same ``--state``: the job resumes at the
  first uncommitted step (earlier checkpoint files untouched) and the model is the same;
- a bank's network link drops mid-job (the process stays up): the job waits, the bank
  retries, and after the link is back the job finishes with the same model;
- a bank that never comes back: ``fedtab run`` fails after the bank timeout with one line
  naming the bank (``aggregator serve --bank-timeout``; the other tests set ``[job]
  bank_timeout``); the checkpoint loads, a restarted aggregator serves it, the banks that
  stayed are unharmed and the consortium runs the next job.

"The same model" is byte-identical to the in-memory runner (``local_reference``), which the
uninterrupted distributed run equals (``test_transport_inprocess``,
``test_integration_processes``). 1024-bit keys: the claims are about processes, not key size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import (
    BANKS,
    LinkProxy,
    ServiceProcess,
    local_reference,
    make_frames,
    new_consortium,
    run_fedtab,
    start_aggregator,
    start_bank,
    stop_all,
    write_job,
    write_tables,
)

from fedtab.jobs import JobSpec

pytestmark = pytest.mark.slow

GBDT = {"n_estimators": 3, "max_depth": 3, "max_bin": 16}
SEED = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("faults")
    contract, tables = write_tables(root / "data", make_frames(seed=5, rows=300))
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    return {"consortium": consortium, "tables": tables}


class Run:
    """One consortium of processes for one test; ``close`` stops every process it started."""

    def __init__(self, world: dict[str, Any], tmp: Path, bank_timeout: float | None,
                 proxied: str | None = None, serve_args: tuple[str, ...] = ()) -> None:
        self.world = world
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.state = tmp / "state"
        self.processes: list[ServiceProcess | None] = []
        self.serve_args = serve_args
        self.aggregator, self.address = start_aggregator(world["consortium"], self.logs,
                                                         self.state, extra=serve_args)
        self.port = self.address.rsplit(":", 1)[1]
        self.proxy = LinkProxy(self.address) if proxied else None
        self.banks = {b: self.bank(b, self.proxy.address if self.proxy and b == proxied
                                   else None) for b in BANKS}
        timeout = "" if bank_timeout is None else f"\nbank_timeout = {bank_timeout}"
        job = write_job(tmp / "gbdt.toml", kind="gbdt", params=GBDT,
                        extra_job=f"seed = {SEED}{timeout}")
        self.operator = ServiceProcess("operator", [
            "run", str(world["consortium"] / "operator"), str(job), "--out", str(tmp / "out"),
            "--aggregator", self.address, "--timeout", "300"], self.logs)
        self.processes += [self.aggregator, self.operator]

    def bank(self, name: str, address: str | None = None) -> ServiceProcess:
        process = start_bank(self.world["consortium"], name, self.world["tables"][name],
                             address or self.address, self.logs)
        self.processes.append(process)
        return process

    def restart_aggregator(self, name: str) -> ServiceProcess:
        """A new aggregator on the same port and state (the banks and operator reconnect)."""
        port_file = self.logs / f"{name}.port"
        process = ServiceProcess(name, [
            "aggregator", "serve", str(self.world["consortium"] / "aggregator"), "--listen",
            f"127.0.0.1:{self.port}", "--state", str(self.state), "--port-file",
            str(port_file), *self.serve_args], self.logs)
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.alive() and time.monotonic() < deadline, process.output()
            time.sleep(0.05)
        return process

    def wait_committed(self, index: int, timeout: float = 120) -> Path:
        """Wait until step ``index`` is checkpointed; returns the job's checkpoint folder."""
        deadline = time.monotonic() + timeout
        while not list(self.state.glob(f"jobs/*/steps/{index:06d}.json")):
            assert self.operator.alive(), self.operator.output()
            assert time.monotonic() < deadline, self.aggregator.output()
            time.sleep(0.05)
        return next(self.state.glob("jobs/*"))

    def operator_client(self) -> Any:
        from fedtab.consortium import load_operator_bundle
        from fedtab.transport.operator_client import OperatorClient

        bundle = load_operator_bundle(self.world["consortium"] / "operator")
        return OperatorClient(bundle, self.address, unavailable_grace=30)

    def expected_model(self, job_id: str) -> bytes:
        spec = JobSpec(kind="gbdt", params=GBDT, seed=SEED)
        return local_reference(self.world["consortium"], self.world["tables"], spec,
                               job_id)["model.json"]

    def close(self) -> None:
        stop_all(self.processes)
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture()
def run_factory(world: dict[str, Any], tmp_path: Path) -> Any:
    runs: list[Run] = []

    def make(bank_timeout: float | None, proxied: str | None = None,
             serve_args: tuple[str, ...] = ()) -> Run:
        runs.append(Run(world, tmp_path, bank_timeout, proxied, serve_args))
        return runs[-1]

    yield make
    for run in runs:
        run.close()


def poll(client: Any, job_id: str, until: Callable[[Any], bool], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    status = client.status(job_id)
    while not until(status):
        assert status.state not in ("done", "failed"), status
        assert time.monotonic() < deadline, status
        status = client.status(job_id, wait=1.0, known_version=status.version)
    return status


def test_bank_killed_mid_job_is_waited_for_and_the_model_is_unchanged(run_factory: Any
                                                                       ) -> None:
    from fedtab.cli.progress import describe

    run = run_factory(bank_timeout=60)
    job_dir = run.wait_committed(3)
    run.banks["bank_b"].kill()
    killed = time.monotonic()
    with run.operator_client() as client:
        status = poll(client, job_dir.name, lambda s: s.waiting_for == ("bank_b",))
        line = describe(status)
        time.sleep(max(0.0, killed + 4 - time.monotonic()))  # absent for a while, not failed
        later = client.status(job_dir.name)
    assert status.state == "running" and "waiting for bank_b" in line, line
    assert later.state == "running" and later.waiting_for == ("bank_b",), later
    rejoined = run.bank("bank_b")
    assert run.operator.process.wait(timeout=300) == 0, run.operator.output()
    assert (run.tmp / "out" / "model.json").read_bytes() == run.expected_model(job_dir.name)
    assert "replayed" in rejoined.output(), rejoined.output()
    print(f"\nstatus while bank_b was down: {line}")


def test_aggregator_killed_mid_job_resumes_with_the_same_model(run_factory: Any) -> None:
    run = run_factory(bank_timeout=120)
    job_dir = run.wait_committed(4)
    run.aggregator.kill()  # crash: no clean shutdown
    before = {p.name: p.stat().st_mtime_ns for p in (job_dir / "steps").glob("*.json")}
    assert len(before) >= 5 and not (job_dir / "artifacts").exists()
    # What a crash in the middle of a checkpoint write leaves: torn temporary files.
    torn = [job_dir / "steps" / ".000099.json.x1.tmp", job_dir / ".job.json.x2.tmp",
            job_dir / "steps" / ".000099.agg.x3.tmp"]
    for path in torn:
        path.write_bytes(b'{"index": 99, "requ')
    restarted = run.restart_aggregator("aggregator2")
    assert run.operator.process.wait(timeout=300) == 0, run.operator.output() + \
        restarted.output()
    assert (run.tmp / "out" / "model.json").read_bytes() == run.expected_model(job_dir.name)
    resumed = [line for line in restarted.output().splitlines() if "resuming job" in line]
    assert resumed and f"resuming job {job_dir.name} at step" in resumed[0]
    # Steps committed before the crash were resumed from, not recomputed.
    after = {p.name: p.stat().st_mtime_ns for p in (job_dir / "steps").glob("*.json")}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert (job_dir / "artifacts" / "model.json").read_bytes() == \
        (run.tmp / "out" / "model.json").read_bytes()
    print(f"\n{resumed[0].split(' INFO ')[-1]}")


def test_bank_that_never_returns_fails_the_job_by_name(run_factory: Any) -> None:
    from aggregator.checkpoint import JobStore

    run = run_factory(bank_timeout=None, serve_args=("--bank-timeout", "4"))  # the CLI's knob
    job_dir = run.wait_committed(2)
    run.banks["bank_c"].kill()
    killed = time.monotonic()
    code = run.operator.process.wait(timeout=120)
    waited = time.monotonic() - killed
    lines = [line for line in run.operator.output().splitlines() if line.startswith("error:")]
    assert code == 9, run.operator.output()
    assert len(lines) == 1 and "Traceback" not in run.operator.output()
    message = lines[0]
    assert message.startswith(f"error: JobFailedError: job {job_dir.name} failed: "
                              "bank(s) bank_c absent for more than 4 s "
                              "(bank_timeout) at step "), message
    assert 2 <= waited < 60, waited  # the bank may have been silent a moment before the kill
    assert not (run.tmp / "out").exists()  # nothing half-written by the operator
    # The last committed checkpoint stays loadable and consistent with the message.
    (stored,) = JobStore(run.state).load_all()
    failed_at = int(message.rsplit(" ", 1)[1])
    assert stored.record["state"] == "failed" and "bank_c" in stored.record["message"]
    assert [s.index for s in stored.committed] == list(range(failed_at))
    assert stored.artifacts is None
    # The banks that stayed saw the failure and are still serving.
    for name in ("bank_a", "bank_b"):
        assert run.banks[name].alive(), run.banks[name].output()
    deadline = time.monotonic() + 30
    while not all("failed" in run.banks[b].output() for b in ("bank_a", "bank_b")):
        assert time.monotonic() < deadline, run.banks["bank_a"].output()
        time.sleep(0.1)
    # A restarted aggregator loads the checkpoint and reports the same failure ...
    run.aggregator.stop()
    run.restart_aggregator("aggregator2")
    with run.operator_client() as client:
        status = client.status(job_dir.name)
    assert status.state == "failed" and status.step_index == failed_at
    assert status.message in message
    # ... and once bank_c is back the consortium runs the next job.
    run.bank("bank_c")
    profile = write_job(run.tmp / "profile.toml")
    done = run_fedtab(["run", str(run.world["consortium"] / "operator"), str(profile), "--out",
                       str(run.tmp / "out2"), "--aggregator", run.address, "--timeout", "120"],
                      timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads((run.tmp / "out2" / "result.json").read_text())["rows_total"] == \
        sum(300 + 37 * i for i in range(3))
    print(f"\n{message} (after {waited:.1f}s)")


def test_link_dropped_mid_job_is_survived_without_restart(run_factory: Any) -> None:
    run = run_factory(bank_timeout=60, proxied="bank_b")
    job_dir = run.wait_committed(3)
    assert run.proxy is not None
    run.proxy.cut()
    cut = time.monotonic()
    with run.operator_client() as client:
        status = poll(client, job_dir.name, lambda s: s.waiting_for == ("bank_b",))
        time.sleep(max(0.0, cut + 4 - time.monotonic()))
        later = client.status(job_dir.name)
    assert status.state == later.state == "running" and later.waiting_for == ("bank_b",)
    assert run.banks["bank_b"].alive()
    run.proxy.restore()
    assert run.operator.process.wait(timeout=300) == 0, run.operator.output()
    assert (run.tmp / "out" / "model.json").read_bytes() == run.expected_model(job_dir.name)
    log = run.banks["bank_b"].output()
    retries = [line for line in log.splitlines() if "unreachable" in line]
    assert retries and "replayed" not in log, log[-3000:]
    print(f"\nbank_b while its link was down: {retries[0].split(' INFO ')[-1]}")
