"""Run a whole consortium on this machine and compare its model with the alternatives.

``run_simulation`` creates a fresh consortium (CA, certificates, a real Paillier key), starts
the aggregator and one process per bank over loopback mTLS gRPC, submits the job as the
operator, waits with progress, writes ``model.json`` and ``report.json``, and scores the model
on every bank's holdout next to local-only and pooled training.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedtab.atomic import atomic_write_bytes, atomic_write_text
from fedtab.consortium import init_consortium, load_aggregator_bundle, load_operator_bundle
from fedtab.errors import ConfigError, JobFailedError, PeerUnavailableError
from fedtab.jobs import JobSpec
from fedtab.scoring import load_model
from fedtab.simulation.cluster import LocalCluster
from fedtab.simulation.comparison import (
    BankComparison,
    compare_models,
    comparison_to_dict,
    format_table,
    load_bank_tables,
    training_metrics,
)
from fedtab.simulation.inputs import SimulationInputs
from fedtab.transport.messages import JobState, JobStatus
from fedtab.transport.operator_client import OperatorClient

Say = Callable[[str], None]
STATUS_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class SimulationConfig:
    """How to run: where to write, which job, key size, per-process crypto workers."""

    out_dir: Path
    job: JobSpec
    key_bits: int = 2048
    workers: int = 1
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation wrote and the comparison table it printed."""

    model_path: Path
    report_path: Path
    report: dict[str, Any]
    table: str


def run_simulation(
    config: SimulationConfig,
    inputs: SimulationInputs,
    say: Say,
    on_status: Callable[[JobStatus], None] | None = None,
) -> SimulationResult:
    """Run ``config.job`` over ``inputs`` with real processes; see the module docstring.

    ``say`` receives narrative lines; ``on_status`` every job status change while training.

    Raises :class:`~fedtab.errors.FedtabError` subclasses with a one-line reason (a bank's
    table breaks the contract, a process died, the job failed or timed out).
    """
    config.job.check_bank_count(len(inputs.banks))
    started = time.perf_counter()
    consortium_dir = _fresh_consortium_dir(config.out_dir / "consortium")
    say(f"creating consortium: {len(inputs.banks)} banks, {config.key_bits}-bit Paillier key")
    init_consortium(
        consortium_dir,
        inputs.contract,
        inputs.bank_names,
        key_bits=config.key_bits,
        allow_small_key_for_tests=os.environ.get("FEDTAB_ALLOW_SMALL_KEYS") == "1",
    )
    setup_seconds = time.perf_counter() - started
    bank_data = {bank.name: bank.train_path for bank in inputs.banks}
    with LocalCluster(
        consortium_dir,
        bank_data,
        state_dir=config.out_dir / "state",
        log_dir=config.out_dir / "logs",
        workers=config.workers,
    ) as cluster:
        say(f"aggregator on {cluster.address}; banks: {', '.join(inputs.bank_names)}")
        operator = load_operator_bundle(consortium_dir / "operator")
        with OperatorClient(operator, cluster.address) as client:
            job_id = client.submit(config.job)
            training_started = time.perf_counter()
            final = _follow(client, job_id, cluster, on_status, config.timeout_seconds)
            artifacts = client.fetch_artifacts(job_id)
        training_seconds = time.perf_counter() - training_started
    for name, content in artifacts.items():
        atomic_write_bytes(config.out_dir / name, content)
    model_path = config.out_dir / "model.json"
    say(f"training finished in {training_seconds:.1f}s; model written to {model_path}")

    say("training local-only and pooled reference models, scoring holdouts")
    timings = {"setup_seconds": setup_seconds, "training_seconds": training_seconds}
    report, rows = _compare_and_report(config, inputs, job_id, final, timings, started)
    report_path = config.out_dir / "report.json"
    atomic_write_text(report_path, json.dumps(report, indent=2, default=float) + "\n")
    table = format_table(rows) if rows else ""
    return SimulationResult(model_path, report_path, report, table)


def _compare_and_report(
    config: SimulationConfig,
    inputs: SimulationInputs,
    job_id: str,
    final: JobStatus,
    timings: dict[str, float],
    started: float,
) -> tuple[dict[str, Any], list[BankComparison]]:
    """Score the written model next to the baselines; the report.json document and rows."""
    model = load_model(config.out_dir / "model.json")
    tables = load_bank_tables(inputs)
    rows = compare_models(
        inputs, tables, model, config.job.kind, config.job.params, config.job.seed
    )
    spec = config.job.to_dict()
    report = {
        "job": {**spec["job"], "params": spec["params"]},
        "job_id": job_id,
        "data": inputs.source,
        "banks": inputs.bank_names,
        "key_bits": config.key_bits,
        "timings": {**timings, "total_seconds": time.perf_counter() - started},
        "steps": final.step_index,
        "traffic": {k: round(v) for k, v in (getattr(final, "traffic", {}) or {}).items()},
        "aggregator_keys": aggregator_key_check(config.out_dir / "consortium" / "aggregator"),
        "training_metrics": training_metrics(tables, model),
        "holdout_comparison": comparison_to_dict(rows),
    }
    return report, rows


def aggregator_key_check(folder: Path) -> dict[str, Any]:
    """Check, after the run, what the aggregator was started with: its folder must load as an
    aggregator bundle, which refuses private Paillier keys, shard keys and CA keys (by file name
    and by key-file header). Returns what was checked, for report.json.

    Raises:
        KeyMaterialError: private key material is in the folder.
    """
    bundle = load_aggregator_bundle(folder)
    return {
        "folder": str(folder),
        "public_key_bits": bundle.public_key.bits,
        "private_key_material": False,
        "checked": "public key only: no private Paillier key, shard key or CA key in the "
        "folder the aggregator process was started from (file names and key-file headers "
        "checked after the run)",
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What a finished simulation did, in a few lines: key, traffic, steps, what was checked."""
    traffic = report.get("traffic", {})
    uploaded = sum(v for k, v in traffic.items() if k.startswith("upload_"))
    downloaded = sum(v for k, v in traffic.items() if k.startswith("download_"))
    keys = report["aggregator_keys"]
    return [
        f"Paillier key: {keys['public_key_bits']}-bit modulus (read from the aggregator's "
        "public key)",
        f"exchanged: {traffic.get('ciphertexts_summed', 0):,} aggregate ciphertexts summed by "
        f"the aggregator; {_megabytes(uploaded)} uploaded and {_megabytes(downloaded)} "
        "downloaded by the banks",
        f"steps: {report['steps']} committed ({len(report['banks'])} banks)",
        f"aggregator: {keys['checked']}: {keys['folder']}",
    ]


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


def _fresh_consortium_dir(path: Path) -> Path:
    """Remove a consortium a previous simulation left (only if it is one), return ``path``."""
    if path.exists():
        if not (path / "consortium.json").exists():
            raise ConfigError(
                f"{path} exists and is not a simulation's consortium; not touching it"
            )
        shutil.rmtree(path)
    return path


def _follow(
    client: OperatorClient,
    job_id: str,
    cluster: LocalCluster,
    on_status: Callable[[JobStatus], None] | None,
    timeout: float | None,
) -> JobStatus:
    """Long-poll the job until it ends, checking after every poll that no process died.

    Raises JobFailedError if the job failed, PeerUnavailableError if a process exited or the
    timeout passed.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    version = -1
    while True:
        status = client.status(job_id, wait=STATUS_POLL_SECONDS, known_version=version)
        if status.version != version and on_status is not None:
            on_status(status)
        version = status.version
        if status.state == JobState.FAILED.value:
            raise JobFailedError(f"job {job_id} failed: {status.message}")
        if status.state == JobState.DONE.value:
            return status
        cluster.check_alive()
        if deadline is not None and time.monotonic() > deadline:
            raise PeerUnavailableError(
                f"job {job_id} not finished after {timeout:.0f}s (step {status.step_index})"
            )
