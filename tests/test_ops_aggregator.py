"""An aggregator operations can run: gRPC health checks (over mTLS and on the plaintext probe
port), Prometheus metrics scraped while a real GBDT job runs, and JSON log lines.

The process test runs ``fedtab aggregator serve --metrics --health-listen --log-format json``
and three ``fedtab bank join --log-format json`` processes on OS-chosen loopback ports with a
1024-bit key, polls the metrics endpoint during the job, and parses every log line.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from harness import (
    BANKS,
    ServiceProcess,
    make_frames,
    new_consortium,
    run_fedtab,
    start_aggregator,
    stop_all,
    write_tables,
)
from prometheus_client.parser import text_string_to_metric_families

from aggregator.health import SERVICE_NAME, AggregatorHealth, check_health
from aggregator.metrics import AggregatorMetrics, MetricsEndpoint
from aggregator.service import build_coordinator, create_server
from fedtab.cli.logfmt import JsonFormatter
from fedtab.consortium import load_aggregator_bundle, load_bank_bundle, load_operator_bundle
from fedtab.jobs import JobSpec
from fedtab.protocol.exchange import PayloadKind, Tag, Upload
from fedtab.transport import convert
from fedtab.transport.client import aggregator_stub, open_channel
from fedtab.transport.generated import fedtab_pb2 as pb
from fedtab.transport.operator_client import OperatorClient

SPEC = JobSpec(kind="gbdt", params={"n_estimators": 3, "max_depth": 2, "max_bin": 8,
                                    "learning_rate": 0.3}, seed=3)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ops")
    contract, tables = write_tables(root / "data", make_frames(seed=17, rows=150))
    return {"path": new_consortium(root / "consortium", contract, key_bits=1024),
            "tables": tables}


def scrape(url: str) -> Samples:
    """Every sample of the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object (fails on any other)."""
    lines = [line for line in process.output().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def startup_record(process: ServiceProcess, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in process.output().splitlines():
            if '"metrics_port"' in line and line.rstrip().endswith("}"):  # a complete line
                return dict(json.loads(line))
        time.sleep(0.05)
    raise TimeoutError(process.output())


def bad_upload(bank_tls: Any, address: str, fingerprint: str) -> grpc.StatusCode:
    """An authenticated bank uploads a proposal for a job that does not exist."""
    tag = Tag("job-9999-abcdef", 0, "s0", "bank_a", fingerprint, "0" * 64)
    item = Upload(PayloadKind.PROPOSAL, tag, b"{}")
    with open_channel(bank_tls, address) as channel, pytest.raises(grpc.RpcError) as info:
        aggregator_stub(channel).Upload(convert.upload_to_proto(item), timeout=10)
    return info.value.code()


@pytest.mark.slow
def test_health_metrics_and_json_logs_during_a_job(consortium: dict[str, Any],
                                                   tmp_path: Path) -> None:
    cons, logs = consortium["path"], tmp_path / "logs"
    aggregator, address = start_aggregator(cons, logs, extra=[
        "--metrics", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--log-format", "json"])
    banks: list[ServiceProcess] = []
    try:
        started = startup_record(aggregator)
        url = f"http://127.0.0.1:{started['metrics_port']}/metrics"
        operator = load_operator_bundle(cons / "operator")
        with open_channel(operator.tls, address) as channel:  # mTLS, operator certificate
            assert check_health(channel) == "SERVING"
            assert check_health(channel, SERVICE_NAME) == "SERVING"
        with grpc.insecure_channel(f"127.0.0.1:{started['health_port']}") as probe:
            assert check_health(probe) == "SERVING"
            with pytest.raises(grpc.RpcError) as info:  # the probe port serves health only
                aggregator_stub(probe).Register(pb.RegisterRequest(bank="bank_a"), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        before = scrape(url)
        assert value(before, "fedtab_aggregator_banks") == 3
        assert value(before, "fedtab_aggregator_banks_attached") == 0

        banks = [ServiceProcess(b, ["bank", "join", str(cons / "banks" / b), "--data",
                                    str(consortium["tables"][b]), "--aggregator", address,
                                    "--log-format", "json"], logs) for b in BANKS]
        bank_a = load_bank_bundle(cons / "banks" / "bank_a")
        with OperatorClient(operator, address) as client:
            job_id = client.submit(SPEC)
            steps, during = poll_metrics(url, client, job_id)
            code = bad_upload(bank_a.tls, address, bank_a.public_key.fingerprint)
            assert code is grpc.StatusCode.FAILED_PRECONDITION
            assert client.wait(job_id, timeout=300).state == "done"
        after = scrape(url)
    finally:
        stop_all([*banks, aggregator])

    assert steps == sorted(steps) and len(set(steps)) >= 3, steps  # the step moves forward
    assert value(during, "fedtab_aggregator_banks_attached") == 3
    for bank in BANKS:
        assert 0 <= value(during, "fedtab_aggregator_bank_last_seen_seconds", bank=bank) < 30
    assert value(after, "fedtab_aggregator_jobs", state="done") == 1
    assert value(after, "fedtab_aggregator_jobs", state="running") == 0
    contributions = value(after, "fedtab_aggregator_received_ciphertexts_total",
                          kind="contribution")
    assert contributions > 0
    assert value(after, "fedtab_aggregator_received_bytes_total", kind="contribution") > \
        contributions * 128  # 1024-bit key: 256-byte ciphertexts, packed
    assert value(after, "fedtab_aggregator_received_bytes_total", kind="shard") > 0
    assert value(after, "fedtab_aggregator_step_seconds_count") >= len(set(steps)) - 1
    assert value(after, "fedtab_aggregator_refused_messages_total", rpc="Upload",
                 reason="ProtocolError") == 1
    check_json_logs(aggregator, banks, job_id)


def poll_metrics(url: str, client: OperatorClient, job_id: str
                 ) -> tuple[list[float], Samples]:
    """Scrape every 0.1 s while the job runs; returns the current steps seen and the last
    scrape taken while it was running."""
    steps: list[float] = []
    during: Samples = {}
    deadline = time.monotonic() + 300
    while client.status(job_id).state not in ("done", "failed"):
        assert time.monotonic() < deadline
        samples = scrape(url)
        current = [v for (name, _), v in samples.items()
                   if name == "fedtab_aggregator_job_current_step"]
        if current:
            steps.append(current[0])
            during = samples
        time.sleep(0.1)
    return steps, during


def check_json_logs(aggregator: ServiceProcess, banks: list[ServiceProcess], job_id: str
                    ) -> None:
    records = json_lines(aggregator)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["time"].endswith("Z")
    messages = [r["message"] for r in records]
    assert any("listening on port" in m for m in messages), messages
    assert any(r.get("job_id") == job_id and "committed step" in r["message"]
               for r in records)
    refused = [r for r in records if r.get("rpc") == "Upload"]
    assert refused and refused[0]["reason"] == "ProtocolError" and refused[0]["level"] == \
        "WARNING"
    assert records[-1]["message"] == "aggregator stopped"
    for bank in banks:
        bank_records = json_lines(bank)
        assert bank_records and all(r["bank"] == bank.name for r in bank_records)
        assert any("matches the contract" in r["message"] for r in bank_records)
        assert any(r.get("job_id") == job_id for r in bank_records)


def test_health_turns_not_serving_on_shutdown(consortium: dict[str, Any]) -> None:
    bundle = load_aggregator_bundle(consortium["path"] / "aggregator")
    operator = load_operator_bundle(consortium["path"] / "operator")
    health = AggregatorHealth()
    server, port = create_server(bundle, health=health)
    probe, probe_port = health.probe_server("127.0.0.1:0")
    server.start()
    probe.start()
    try:
        with open_channel(operator.tls, f"127.0.0.1:{port}") as channel, \
                grpc.insecure_channel(f"127.0.0.1:{probe_port}") as plain:
            assert check_health(channel) == "NOT_SERVING"  # state not declared loaded yet
            health.serving()
            assert check_health(channel) == check_health(plain) == "SERVING"
            health.shutting_down()
            health.serving()  # ignored once shutdown has begun
            assert check_health(channel, SERVICE_NAME) == check_health(plain) == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as info:
                check_health(plain, "no.such.Service")
            assert info.value.code() is grpc.StatusCode.NOT_FOUND
        with grpc.insecure_channel(f"127.0.0.1:{port}") as no_tls, \
                pytest.raises(grpc.RpcError):  # the main port never answers without mTLS
            check_health(no_tls, timeout=3)
    finally:
        server.stop(grace=None).wait()
        probe.stop(grace=None).wait()


def test_two_servers_have_separate_registries(consortium: dict[str, Any]) -> None:
    """No process-global registry: two aggregators in one process each count their own."""
    bundle = load_aggregator_bundle(consortium["path"] / "aggregator")
    first, second = (AggregatorMetrics(build_coordinator(bundle)) for _ in range(2))
    endpoints = [MetricsEndpoint(m, "127.0.0.1:0") for m in (first, second)]
    try:
        from fedtab.errors import ProtocolError

        first.refused("Upload", ProtocolError("x"))
        first.step_committed("job-0001-aaaaaa", 0)
        first.step_committed("job-0001-aaaaaa", 1)
        one, two = (scrape(e.url) for e in endpoints)
        assert value(one, "fedtab_aggregator_refused_messages_total", rpc="Upload",
                     reason="ProtocolError") == 1
        assert value(two, "fedtab_aggregator_refused_messages_total", rpc="Upload",
                     reason="ProtocolError") == 0
        assert value(one, "fedtab_aggregator_step_seconds_count") == 1
        assert value(two, "fedtab_aggregator_jobs", state="queued") == 0
        assert endpoints[0].port != endpoints[1].port
    finally:
        for endpoint in endpoints:
            endpoint.close()


def test_json_formatter_fields() -> None:
    formatter = JsonFormatter({"consortium": "c1"})
    record = logging.LogRecord("fedtab.aggregator", logging.WARNING, __file__, 1,
                               "job %s failed: %s", ("job-0003-0a1b2c", "boom"), None)
    record.rpc = "Upload"
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "job job-0003-0a1b2c failed: boom"
    assert (entry["level"], entry["logger"], entry["consortium"], entry["rpc"],
            entry["job_id"]) == ("WARNING", "fedtab.aggregator", "c1", "Upload",
                                 "job-0003-0a1b2c")
    assert "\n" not in formatter.format(logging.LogRecord(
        "x", logging.INFO, __file__, 1, "two\nlines", (), None))


def test_bad_ops_options_are_one_line_errors(consortium: dict[str, Any]) -> None:
    bundle = str(consortium["path"] / "aggregator")
    for option, text in (("--metrics", "--metrics must be HOST:PORT"),
                         ("--health-listen", "--health-listen must be HOST:PORT")):
        done = run_fedtab(["aggregator", "serve", bundle, "--listen", "127.0.0.1:0",
                           option, "9100"], timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines()[-1] == f"error: ConfigError: {text} " \
            "(PORT 0-65535), got '9100'"
