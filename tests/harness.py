"""Process and in-process harness for consortium tests: data, bundles, aggregator and banks.

Reusable by any test: ``make_frames`` / ``write_tables`` build small synthetic bank tables and
their contract; ``new_consortium`` creates bundles (keys generated at run time, never
committed); ``ServiceProcess`` / ``start_aggregator`` / ``start_bank`` / ``run_fedtab`` run the
real ``fedtab`` commands as processes on OS-chosen loopback ports; ``InProcessConsortium``
runs the gRPC server and bank agents as threads of the test process (fast, same code paths).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from fedtab.data.contract import DataContract
from fedtab.data.infer import infer_contract

REPO = Path(__file__).resolve().parents[1]
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "PYTHONUNBUFFERED": "1",
}
BANKS = ("bank_a", "bank_b", "bank_c")


def make_frames(seed: int = 11, banks: Sequence[str] = BANKS, rows: int = 200
                ) -> dict[str, pd.DataFrame]:
    """Small bank frames: numeric (with missing values), categorical, label ``y``."""
    rng = np.random.default_rng(seed)
    frames = {}
    for b, bank in enumerate(banks):
        n = rows + 37 * b
        amount = rng.lognormal(3.0 + 0.2 * b, 1.0, n)
        amount[rng.random(n) < 0.1] = np.nan
        frames[bank] = pd.DataFrame(
            {
                "amount": amount,
                "age": rng.integers(18, 90, n).astype(float),
                "channel": rng.choice(["web", "pos", "atm"], n),
                "y": (rng.random(n) < 0.15 + 0.05 * b).astype(int),
            }
        )
    return frames


def write_tables(folder: Path, frames: Mapping[str, pd.DataFrame], label: str = "y"
                 ) -> tuple[DataContract, dict[str, Path]]:
    """Write each frame as ``folder/<bank>.csv``; returns the contract inferred on the pool."""
    folder.mkdir(parents=True, exist_ok=True)
    contract = infer_contract(pd.concat(list(frames.values()), ignore_index=True), label=label)
    paths = {}
    for bank, frame in frames.items():
        paths[bank] = folder / f"{bank}.csv"
        frame.to_csv(paths[bank], index=False)
    return contract, paths


def new_consortium(folder: Path, contract: DataContract, banks: Sequence[str] = BANKS,
                   key_bits: int = 2048) -> Path:
    """Create a consortium in ``folder`` (keys generated now); returns ``folder``."""
    from fedtab.consortium import init_consortium

    init_consortium(folder, contract, list(banks), key_bits=key_bits,
                    allow_small_key_for_tests=key_bits < 2048)
    return folder


class ServiceProcess:
    """A ``python -m fedtab.cli.main ...`` process with its output in ``log``."""

    def __init__(self, name: str, args: Sequence[str], log_dir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.args = list(args)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"{name}.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fedtab.cli.main", *self.args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **SINGLE_THREAD_ENV, **(env or {})}, cwd=REPO,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.alive():
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> int:
        """SIGKILL at once (a crash)."""
        if self.alive():
            self.process.kill()
        return self.process.wait()


class LinkProxy:
    """A TCP relay from a loopback port to ``target`` (``HOST:PORT``) whose link can be cut.

    ``cut()`` drops every open connection and refuses new ones (as a network outage does to a
    process that stays alive); ``restore()`` lets connections through again. Point a bank's
    ``--aggregator`` at :attr:`address`. TLS passes through untouched.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.refused = 0  # connection attempts while cut
        self._up = threading.Event()
        self._up.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, name="link-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            if not self._up.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self._up.clear()
        with self._lock:
            dropped, self._open = self._open, []
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self.sock.close()


def stop_all(processes: Sequence[ServiceProcess | None], timeout: float = 10.0) -> None:
    """SIGTERM every process first, then wait for each (SIGKILL after ``timeout``)."""
    alive = [p for p in processes if p is not None]
    for process in alive:
        if process.alive():
            process.process.terminate()
    for process in alive:
        process.stop(timeout)


def wait_for_file(path: Path, process: ServiceProcess, timeout: float = 60.0) -> str:
    """Wait until ``process`` has written ``path`` (polls; fails fast if it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text().strip()
            if text:
                return text
        if not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.output()[-3000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"{process.name} did not write {path}:\n{process.output()[-3000:]}")


def start_aggregator(consortium: Path, log_dir: Path, state_dir: Path | None = None,
                     extra: Sequence[str] = (), name: str = "aggregator"
                     ) -> tuple[ServiceProcess, str]:
    """Start ``fedtab aggregator serve`` on an OS-chosen loopback port; returns the address."""
    port_file = log_dir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    args = ["aggregator", "serve", str(consortium / "aggregator"), "--listen", "127.0.0.1:0",
            "--port-file", str(port_file), *extra]
    if state_dir is not None:
        args += ["--state", str(state_dir)]
    process = ServiceProcess(name, args, log_dir)
    port = wait_for_file(port_file, process)
    return process, f"127.0.0.1:{port}"


def start_bank(consortium: Path, bank: str, data: Path, address: str, log_dir: Path
               ) -> ServiceProcess:
    """Start ``fedtab bank join`` for ``bank``."""
    return ServiceProcess(bank, ["bank", "join", str(consortium / "banks" / bank), "--data",
                                 str(data), "--aggregator", address], log_dir)


def run_fedtab(args: Sequence[str], timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Run a ``fedtab`` command to completion, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "fedtab.cli.main", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **SINGLE_THREAD_ENV}, cwd=REPO, check=False,
    )


def write_job(path: Path, kind: str = "profile", params: Mapping[str, Any] | None = None,
              extra_job: str = "") -> Path:
    """Write a minimal job TOML file."""
    lines = ["[job]", f'kind = "{kind}"', extra_job, "[params]"]
    for key, value in (params or {}).items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def local_reference(consortium: Path, tables: dict[str, Path], spec: Any, job_id: str
                    ) -> dict[str, bytes]:
    """The same job through the in-memory runner with real encryption (lead's local_runner)."""
    from fedtab.consortium import load_bank_bundle
    from fedtab.data.validate import load_table
    from fedtab.jobs import create_trainer
    from fedtab.protocol.local_runner import run_encrypted
    from fedtab.protocol.steps import JobContext

    bundles = {b: load_bank_bundle(consortium / "banks" / b) for b in tables}
    names = tuple(sorted(tables))
    trainers = {
        b: create_trainer(spec, JobContext(job_id, b, names, spec.seed, dict(spec.params)),
                          load_table(p, bundles[b].contract))
        for b, p in tables.items()
    }
    return run_encrypted(trainers, bundles[names[0]].private_key).artifacts


class InProcessConsortium:
    """The mTLS gRPC server and one :class:`BankAgent` thread per bank, in this process."""

    def __init__(self, consortium: Path, tables: Mapping[str, Path], *,
                 state_dir: Path | None = None, bank_timeout: float = 600.0,
                 poll_seconds: float = 1.0, start_banks: Sequence[str] | None = None,
                 on_agent: Callable[[Any], None] | None = None,
                 attach_window: float | None = None) -> None:
        from aggregator.service import build_coordinator, create_server
        from fedtab.consortium import load_aggregator_bundle, load_bank_bundle, load_operator_bundle
        from fedtab.data.validate import load_table

        self.consortium = consortium
        agg = load_aggregator_bundle(consortium / "aggregator")
        window = {} if attach_window is None else {"attach_window": attach_window}
        self.coordinator = build_coordinator(agg, state_dir=state_dir, bank_timeout=bank_timeout,
                                             **window)
        self.server, port = create_server(agg, coordinator=self.coordinator)
        self.address = f"127.0.0.1:{port}"
        self.operator = load_operator_bundle(consortium / "operator")
        self.bank_bundles = {b: load_bank_bundle(consortium / "banks" / b) for b in tables}
        self.tables = {b: load_table(p, self.bank_bundles[b].contract) for b, p in tables.items()}
        self.poll_seconds = poll_seconds
        self.on_agent = on_agent  # called with each new BankAgent before its thread starts
        self.start_banks = list(tables) if start_banks is None else list(start_banks)
        self.agents: dict[str, Any] = {}
        self.threads: dict[str, threading.Thread] = {}

    def __enter__(self) -> InProcessConsortium:
        self.server.start()
        for bank in self.start_banks:
            self.start_bank(bank)
        return self

    def start_bank(self, bank: str) -> None:
        from bank_node.agent import BankAgent

        agent = BankAgent(self.bank_bundles[bank], self.tables[bank], self.address,
                          poll_seconds=self.poll_seconds)
        if self.on_agent is not None:
            self.on_agent(agent)
        thread = threading.Thread(target=agent.run_forever, name=f"agent-{bank}", daemon=True)
        self.agents[bank] = agent
        self.threads[bank] = thread
        thread.start()

    def stop_bank(self, bank: str) -> None:
        self.agents[bank].stop()
        self.threads[bank].join(timeout=30)
        self.agents[bank].close()

    def operator_client(self) -> Any:
        from fedtab.transport.operator_client import OperatorClient

        return OperatorClient(self.operator, self.address)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for bank in list(self.agents):
            self.agents[bank].stop()
        for bank, thread in self.threads.items():
            thread.join(timeout=30)
            self.agents[bank].close()
        self.server.stop(grace=None).wait()
