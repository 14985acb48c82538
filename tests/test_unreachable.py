"""An aggregator that is not running: the operator hears at once, banks log little, errors are
one line. Real gRPC against a real closed loopback port (bound by the OS, then released)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from harness import make_frames, new_consortium, write_job, write_tables

from fedtab.errors import PeerUnavailableError
from fedtab.transport.outage import OutageReporter, short_reason


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unreachable")
    contract, _ = write_tables(root / "data", make_frames(banks=("bank_a", "bank_b"), rows=60))
    return new_consortium(root / "consortium", contract, banks=("bank_a", "bank_b"),
                          key_bits=1024)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_against_a_stopped_aggregator(consortium: Path, tmp_path: Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    job = write_job(tmp_path / "job.toml")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "fedtab.cli.main", "run", str(consortium / "operator"), str(job),
         "--out", str(tmp_path / "out"), "--aggregator", address, "--timeout", "4"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert process.stderr is not None
    first = process.stderr.readline()
    first_after = time.monotonic() - started
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 8
    # the progress line comes right away (start-up included), not after the grace period
    assert first.strip() == (
        f"aggregator {address} unreachable (connection refused); retrying for up to 4 s"
    )
    assert first_after < 4.0
    lines = rest.splitlines()
    assert lines == [f"error: PeerUnavailableError: aggregator {address} unreachable "
                     f"(connection refused); gave up after {lines[0].split()[-2]} s"], rest
    assert 3 <= int(lines[0].split()[-2]) <= 6


def test_bank_logs_an_outage_once_with_a_short_reason(
    consortium: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bank_node.client import BankClient
    from fedtab.consortium import load_bank_bundle

    address = f"127.0.0.1:{_closed_port()}"
    bundle = load_bank_bundle(consortium / "banks" / "bank_a")
    client = BankClient(bundle.tls, address, "bank_a", give_up_after=3.0)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PeerUnavailableError) as raised:
        client.register("not-reached")
    client.close()
    message = str(raised.value)
    assert message.startswith(f"aggregator {address} unreachable (connection refused); "
                              "gave up after ")
    assert "\n" not in message and "failed to connect" not in message
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in shown] == [
        f"aggregator {address} unreachable (connection refused); retrying for up to 3 s"
    ]
    assert len([r for r in caplog.records if "retrying in" in r.getMessage()]) >= 2


def test_reporter_lines_over_a_long_outage() -> None:
    now = [0.0]
    lines: list[str] = []
    reporter = OutageReporter("agg:1", lines.append, every=60.0, clock=lambda: now[0])
    for t in range(0, 200, 5):  # an attempt every 5 s for 200 s
        now[0] = float(t)
        reporter.failed("connection refused")
    now[0] = 203.0
    reporter.answered()
    reporter.answered()
    assert lines == [
        "aggregator agg:1 unreachable (connection refused); retrying until it is back",
        "aggregator agg:1 still unreachable after 60 s (connection refused)",
        "aggregator agg:1 still unreachable after 120 s (connection refused)",
        "aggregator agg:1 still unreachable after 180 s (connection refused)",
        "aggregator agg:1 reachable again after 203 s",
    ]
    original = PeerUnavailableError("long")
    assert reporter.gave_up(original) is original  # nothing pending: the error as it was


@pytest.mark.parametrize(("details", "code", "reason"), [
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: Failed to "
     "connect to remote host: Connection refused", grpc.StatusCode.UNAVAILABLE,
     "connection refused"),
    ("DNS resolution failed for nowhere.invalid:1", grpc.StatusCode.UNAVAILABLE,
     "host name not resolved"),
    ("Deadline Exceeded", grpc.StatusCode.DEADLINE_EXCEEDED, "no answer in time"),
    ("failed to connect to all addresses; last error: something new", None, "something new"),
    ("x" * 200, None, "x" * 77 + "..."),
])
def test_short_reason(details: str, code: grpc.StatusCode | None, reason: str) -> None:
    assert short_reason(details, code) == reason
