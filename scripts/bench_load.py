"""Load: one job over many bank processes with large tables; time and peak memory per process.

Usage: python scripts/bench_load.py [--json] [--banks 10] [--rows 50000] [--key-bits 2048]
       [--kind gbdt] [--params '{"n_estimators": 5, ...}'] [--seed 0] [--timeout 3600]

Synthetic transaction tables (``fedtab.synthetic``; every bank gets exactly ``--rows`` rows,
drawn without replacement from a larger generated pool) are written to a temporary folder, a
fresh consortium is created (new keys), and the real processes are started on loopback: one
``fedtab aggregator serve`` and one ``fedtab bank join`` per bank (one compute thread each,
one crypto worker). The operator client (this process) submits the job and waits.

Figures: data generation, key generation, start-up (spawn until the job runs), job wall time
(submit to artifacts), steps, traffic, and the peak resident memory (``VmHWM``) of every
process — the aggregator, each bank (plus any crypto worker children it started), and this
operator process. Peaks are read from ``/proc`` just before the processes are stopped
(children are sampled while they run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedtab.consortium import init_consortium, load_operator_bundle
from fedtab.jobs import JobSpec
from fedtab.synthetic.consortium import generate_consortium
from fedtab.transport.operator_client import OperatorClient

DEFAULT_PARAMS = '{"n_estimators": 5, "max_depth": 3, "max_bin": 32, "learning_rate": 0.3}'
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "PYTHONUNBUFFERED": "1",
}
MIB = 1 << 20


def bank_tables(n_banks: int, rows: int, seed: int, folder: Path) -> tuple[Any, dict[str, Path]]:
    """Write ``bank_NN.csv`` with exactly ``rows`` rows each; returns (contract, paths)."""
    pool = generate_consortium(n_banks, rows * n_banks * 4, seed)
    rng = np.random.default_rng(seed)
    paths = {}
    for i, bank in enumerate(pool.banks):
        frame = pd.concat([bank.train, bank.holdout], ignore_index=True)
        pick = rng.choice(len(frame), size=rows, replace=len(frame) < rows)
        frame = frame.iloc[np.sort(pick)].reset_index(drop=True)
        frame["txn_id"] = [f"b{i:02d}-{k:07d}" for k in range(rows)]
        paths[f"bank_{i:02d}"] = folder / f"bank_{i:02d}.csv"
        frame.to_csv(paths[f"bank_{i:02d}"], index=False, float_format="%.2f")
    return pool.contract, paths


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


class PeakMemory:
    """Samples the peak RSS (VmHWM) of processes and of their children, every ``every`` s."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.pids: dict[str, int] = {}
        self.peak_kib: dict[str, int] = {}
        self.children_kib: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def sample(self) -> None:
        for name, pid in list(self.pids.items()):
            self.peak_kib[name] = max(self.peak_kib.get(name, 0), _status_kib(pid, "VmHWM"))
            kids = sum(_status_kib(c, "VmHWM") for c in _children(pid))
            self.children_kib[name] = max(self.children_kib.get(name, 0), kids)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def spawn(args: list[str], log: Path, small_key: bool = False) -> subprocess.Popen[bytes]:
    """Start a ``fedtab`` command; ``small_key``: opt in to a key under 2048 bits."""
    extra = {"FEDTAB_ALLOW_SMALL_KEYS": "1"} if small_key else {}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "fedtab.cli.main", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **SINGLE_THREAD_ENV, **extra})


def wait_port(port_file: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the aggregator exited with code {process.returncode}")
        if port_file.exists() and port_file.read_text().strip().isdigit():
            return int(port_file.read_text())
        time.sleep(0.05)
    raise RuntimeError("the aggregator did not start")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = JobSpec(kind=args.kind, params=json.loads(args.params), seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="fedtab-load-") as tmp:
        root = Path(tmp)
        logs = root / "logs"
        logs.mkdir()
        t0 = time.perf_counter()
        contract, tables = bank_tables(args.banks, args.rows, args.seed, root)
        t_data = time.perf_counter()
        init_consortium(root / "consortium", contract, list(tables), key_bits=args.key_bits,
                        allow_small_key_for_tests=args.key_bits < 2048)
        t_keys = time.perf_counter()
        processes: list[subprocess.Popen[bytes]] = []
        memory = PeakMemory()
        try:
            port_file = logs / "aggregator.port"
            aggregator = spawn(["aggregator", "serve", str(root / "consortium" / "aggregator"),
                                "--listen", "127.0.0.1:0", "--state", str(root / "state"),
                                "--port-file", str(port_file)], logs / "aggregator.log",
                               small_key=args.key_bits < 2048)
            processes.append(aggregator)
            memory.watch("aggregator", aggregator.pid)
            address = f"127.0.0.1:{wait_port(port_file, aggregator)}"
            for bank, path in tables.items():
                process = spawn(["bank", "join", str(root / "consortium" / "banks" / bank),
                                 "--data", str(path), "--aggregator", address, "--workers", "1"],
                                logs / f"{bank}.log", small_key=args.key_bits < 2048)
                processes.append(process)
                memory.watch(bank, process.pid)
            operator = load_operator_bundle(root / "consortium" / "operator")
            with memory, OperatorClient(operator, address) as client:
                job_id = client.submit(spec)
                submitted = time.perf_counter()
                status = client.status(job_id)
                while status.state in ("queued", "waiting"):
                    for process in processes:
                        if process.poll() is not None:
                            raise RuntimeError(f"a process exited early; logs in {logs}")
                    status = client.status(job_id, wait=1.0, known_version=status.version)
                running = time.perf_counter()
                final = client.wait(job_id, timeout=args.timeout)
                artifacts = client.fetch_artifacts(job_id)
                done = time.perf_counter()
                memory.sample()
        finally:
            stop(processes)
    banks = [b for b in tables]
    bank_peaks = [memory.peak_kib[b] / 1024 for b in banks]
    return {
        "kind": spec.kind,
        "params": dict(spec.params),
        "banks": args.banks,
        "rows_per_bank": args.rows,
        "rows_total": args.banks * args.rows,
        "key_bits": args.key_bits,
        "data_seconds": round(t_data - t0, 2),
        "keygen_seconds": round(t_keys - t_data, 2),
        "startup_seconds": round(running - t_keys, 2),
        "job_seconds": round(done - running, 2),
        "submit_to_artifacts_seconds": round(done - submitted, 2),
        "state": final.state,
        "steps": final.step_index,
        "traffic_bytes": {k: int(v) for k, v in sorted(final.traffic.items())},
        "artifacts": {name: len(content) for name, content in sorted(artifacts.items())},
        "peak_rss_mib": {
            "aggregator": round(memory.peak_kib["aggregator"] / 1024, 1),
            **{b: round(memory.peak_kib[b] / 1024, 1) for b in banks},
            "operator (this process)": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
        "peak_rss_children_mib": {k: round(v / 1024, 1) for k, v in
                                  memory.children_kib.items() if v},
        "bank_peak_rss_mib_max": round(max(bank_peaks), 1),
        "bank_peak_rss_mib_mean": round(sum(bank_peaks) / len(bank_peaks), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--banks", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50_000, help="Rows per bank.")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--kind", default="gbdt")
    parser.add_argument("--params", default=DEFAULT_PARAMS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for name, item in value.items():
                    print(f"  {name:28s} {item}")
            else:
                print(f"{key:30s} {value}")
    return 0 if figures["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
