"""Start a consortium's processes on this machine: one aggregator and one process per bank.

The processes are the real commands (``fedtab aggregator serve``, ``fedtab bank join``) talking
mTLS gRPC over loopback, exactly as on separate machines. The aggregator binds a port chosen by
the OS and writes it to a port file, so nothing guesses ports or sleeps for a fixed time.
Each process gets one compute thread: several of them share the machine's cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from fedtab.errors import PeerUnavailableError

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}


class LocalCluster:
    """An aggregator and bank processes for one consortium folder (see ``init_consortium``).

    ``bank_data`` maps bank name -> table path. Logs go to ``log_dir/<process>.log``. Use as a
    context manager; :meth:`stop` terminates every process it started.
    """

    def __init__(
        self,
        consortium_dir: Path,
        bank_data: Mapping[str, Path],
        *,
        state_dir: Path,
        log_dir: Path,
        workers: int = 1,
        startup_timeout: float = 60.0,
    ) -> None:
        self.consortium_dir = consortium_dir
        self.bank_data = dict(bank_data)
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.address: str | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Start the aggregator, wait for its port, start the banks; returns ``HOST:PORT``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port_file = self.log_dir / "aggregator.port"
        port_file.unlink(missing_ok=True)
        self._spawn(
            "aggregator",
            [
                "aggregator",
                "serve",
                str(self.consortium_dir / "aggregator"),
                "--listen",
                "127.0.0.1:0",
                "--state",
                str(self.state_dir),
                "--port-file",
                str(port_file),
            ],
        )
        port = self._wait_for_port(port_file)
        self.address = f"127.0.0.1:{port}"
        for name, data in self.bank_data.items():
            self._spawn(
                name,
                [
                    "bank",
                    "join",
                    str(self.consortium_dir / "banks" / name),
                    "--data",
                    str(data),
                    "--aggregator",
                    self.address,
                    "--workers",
                    str(self.workers),
                ],
            )
        return self.address

    def check_alive(self) -> None:
        """Raise :class:`PeerUnavailableError` naming any process that has exited."""
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise PeerUnavailableError(
                    f"{name} exited with code {process.returncode}: {self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 1) -> str:
        """The last non-empty line(s) of a process's log, for one-line error messages."""
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        return " | ".join(text[-lines:]) if text else "(empty log)"

    def stop(self) -> None:
        """Stop the banks, then the aggregator; kill whatever ignores a terminate."""
        banks = [p for name, p in self._processes.items() if name != "aggregator"]
        aggregator = self._processes.get("aggregator")
        self._terminate(banks)
        self._terminate([aggregator] if aggregator is not None else [])
        self._processes.clear()

    @staticmethod
    def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10.0
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _spawn(self, name: str, args: list[str]) -> None:
        env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONUNBUFFERED": "1"}
        log = (self.log_dir / f"{name}.log").open("wb")
        self._processes[name] = subprocess.Popen(
            [sys.executable, "-m", "fedtab.cli.main", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()

    def _wait_for_port(self, port_file: Path) -> int:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if port_file.exists():
                text = port_file.read_text().strip()
                if text.isdigit():
                    return int(text)
            time.sleep(0.05)
        raise PeerUnavailableError(
            f"the aggregator did not start within {self.startup_timeout:.0f}s: "
            f"{self.log_tail('aggregator')}"
        )
