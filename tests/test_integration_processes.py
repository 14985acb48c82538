"""The real consortium: aggregator and three banks as processes, a 2048-bit key, mTLS on
loopback ports chosen by the OS, and the operator's ``fedtab run``."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from harness import (
    BANKS,
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

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("processes")
    frames = make_frames(seed=5, rows=300)
    contract, tables = write_tables(root / "data", frames)
    consortium = new_consortium(root / "consortium", contract, key_bits=2048)
    return {"root": root, "frames": frames, "tables": tables, "consortium": consortium}


def check_profile(result: dict, frames: dict[str, pd.DataFrame]) -> None:
    pooled = pd.concat(list(frames.values()), ignore_index=True)
    assert result["rows_total"] == len(pooled)
    assert result["positives_total"] == int(pooled["y"].sum())
    for name in ("amount", "age"):
        feature = result["features"][name]
        assert feature["count"] == int(pooled[name].notna().sum())
        assert feature["mean"] == pytest.approx(pooled[name].mean(), rel=1e-6)
        assert feature["std"] == pytest.approx(pooled[name].std(), rel=1e-6)


def start_banks(world: dict, address: str, logs: Path) -> list[ServiceProcess]:
    return [start_bank(world["consortium"], b, world["tables"][b], address, logs) for b in BANKS]


def test_profile_job_with_fedtab_run(world: dict, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    aggregator, address = start_aggregator(world["consortium"], logs, tmp_path / "state")
    banks = start_banks(world, address, logs)
    try:
        job = write_job(tmp_path / "profile.toml")
        done = run_fedtab(["run", str(world["consortium"] / "operator"), str(job),
                           "--out", str(tmp_path / "out"), "--aggregator", address,
                           "--timeout", "300"])
        assert done.returncode == 0, done.stderr + aggregator.output()
        assert "step" in done.stderr and "done" in done.stderr
        check_profile(json.loads((tmp_path / "out" / "result.json").read_text()),
                      world["frames"])
        # The aggregator holds no private key: neither in its bundle nor in its memory.
        needles = assert_no_private_key(world["consortium"], aggregator.pid)
        # Positive control: the same scan finds the key in a bank process.
        assert scan_memory(banks[0].pid, needles, first_only=True)
        for bank in banks:
            assert bank.alive(), bank.output()
    finally:
        stop_all([*banks, aggregator])
    for bank in banks:
        assert "committed" in bank.output()


def int_needles(value: int) -> list[bytes]:
    """Byte patterns of ``value`` as it may sit in memory: hex/decimal text, big/little-endian
    bytes (gmpy2 limbs), CPython's 30-bit digits."""
    size = (value.bit_length() + 7) // 8
    digits = []
    rest = value
    while rest:
        digits.append(rest & ((1 << 30) - 1))
        rest >>= 30
    return [
        format(value, "x").encode(),
        str(value).encode(),
        value.to_bytes(size, "big"),
        value.to_bytes(size, "little"),
        b"".join(d.to_bytes(4, "little") for d in digits),
    ]


def assert_no_private_key(consortium: Path, pid: int) -> list[bytes]:
    """No file of the aggregator bundle holds a factor of n; nor does its process memory."""
    from fedtab.crypto.keys import load_private_key

    key_file = next((consortium / "banks" / BANKS[0]).glob("*private*"))
    private = load_private_key(key_file)
    needles = int_needles(private.p) + int_needles(private.q)
    for path in (consortium / "aggregator").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), f"{path} holds a private key factor"
            assert b"private" not in path.name.encode()
    found = scan_memory(pid, needles)
    assert not found, f"aggregator process memory holds a private key factor at {found}"
    return needles


def scan_memory(pid: int, needles: list[bytes], first_only: bool = False) -> list[str]:
    """Search the readable anonymous/heap mappings of ``pid`` for any of ``needles``."""
    pattern = re.compile(b"|".join(re.escape(n) for n in needles))
    hits: list[str] = []
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb")  # noqa: SIM115
    except (PermissionError, FileNotFoundError) as exc:  # pragma: no cover - hardened hosts
        pytest.skip(f"cannot read /proc/{pid}/mem: {exc}")
    with mem:
        for line in maps:
            parts = line.split()
            if len(parts) < 2 or "r" not in parts[1]:
                continue
            path = parts[5] if len(parts) > 5 else ""
            if path and not path.startswith("["):
                continue  # file-backed code and data of libraries
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            if pattern.search(chunk):
                hits.append(f"{parts[0]} {path}")
                if first_only:
                    break
    return hits


def test_aggregator_killed_mid_job_resumes_from_checkpoint(world: dict, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    state = tmp_path / "state"
    aggregator, address = start_aggregator(world["consortium"], logs, state)
    port = address.rsplit(":", 1)[1]
    banks = start_banks(world, address, logs)
    restarted: ServiceProcess | None = None
    operator = None
    try:
        # Freeze one bank so the job cannot get past its first step (a timing-free way to
        # crash the aggregator mid-job; crashes after committed steps are covered in
        # tests/test_faults_processes.py).
        os.kill(banks[2].pid, signal.SIGSTOP)
        job = write_job(tmp_path / "profile.toml")
        operator = ServiceProcess("operator", [
            "run", str(world["consortium"] / "operator"), str(job), "--out",
            str(tmp_path / "out"), "--aggregator", address, "--timeout", "300"], logs)
        deadline = time.monotonic() + 120
        # Wait for the operator to hear its job id too: killed between saving the job and
        # answering, the aggregator would leave the operator to resubmit (a second job).
        while not list(state.glob("jobs/*/job.json")) or "submitted" not in operator.output():
            assert time.monotonic() < deadline, aggregator.output() + operator.output()
            time.sleep(0.05)
        job_dir = next(state.glob("jobs/*"))
        assert not (job_dir / "artifacts").exists()
        aggregator.kill()  # crash: no clean shutdown
        os.kill(banks[2].pid, signal.SIGCONT)
        restarted = ServiceProcess("aggregator2", [
            "aggregator", "serve", str(world["consortium"] / "aggregator"), "--listen",
            f"127.0.0.1:{port}", "--state", str(state)], logs)
        code = operator.process.wait(timeout=300)
        assert code == 0, operator.output() + restarted.output()
        check_profile(json.loads((tmp_path / "out" / "result.json").read_text()),
                      world["frames"])
        # The restarted aggregator finished the job it found in its state (not a new one).
        assert f"job {job_dir.name} done" in restarted.output()
        assert len(list(state.glob("jobs/*"))) == 1
        steps = sorted(p.name for p in (job_dir / "steps").glob("*.json"))
        assert steps == ["000000.json", "000001.json"]
    finally:
        stop_all([*banks, aggregator, restarted, operator])


def test_bank_killed_mid_job_rejoins_and_the_model_is_unchanged(world: dict,
                                                                 tmp_path: Path) -> None:
    from fedtab.jobs import JobSpec

    params = {"n_estimators": 3, "max_depth": 3, "max_bin": 16}
    logs = tmp_path / "logs"
    state = tmp_path / "state"
    aggregator, address = start_aggregator(world["consortium"], logs, state)
    banks = start_banks(world, address, logs)
    rejoined: ServiceProcess | None = None
    operator = None
    try:
        job = write_job(tmp_path / "gbdt.toml", kind="gbdt", params=params,
                        extra_job="seed = 3")
        operator = ServiceProcess("operator", [
            "run", str(world["consortium"] / "operator"), str(job), "--out",
            str(tmp_path / "out"), "--aggregator", address, "--timeout", "300"], logs)
        deadline = time.monotonic() + 120
        while not list(state.glob("jobs/*/steps/000004.json")):
            assert time.monotonic() < deadline and operator.alive(), operator.output()
            time.sleep(0.05)
        banks[1].kill()
        rejoined = start_bank(world["consortium"], BANKS[1], world["tables"][BANKS[1]],
                              address, logs)
        assert operator.process.wait(timeout=300) == 0, operator.output()
        job_id = next(state.glob("jobs/*")).name
        expected = local_reference(world["consortium"], world["tables"],
                                   JobSpec(kind="gbdt", params=params, seed=3), job_id)
        assert (tmp_path / "out" / "model.json").read_bytes() == expected["model.json"]
        assert "committed" in rejoined.output()
    finally:
        stop_all([*banks, rejoined, aggregator, operator])
