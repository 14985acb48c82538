"""Prometheus metrics of a running aggregator (``fedtab aggregator serve --metrics ADDR``).

Two sources: gauges read from :meth:`Coordinator.snapshot` at scrape time (jobs by state,
current step, banks attached and last seen), and counters and a histogram fed by the
:class:`~aggregator.observer.CoordinatorObserver` hooks (ciphertexts and bytes received,
commit-to-commit step latency, refused messages by error class). Every server owns its own
:class:`CollectorRegistry` (no process-global default registry), so tests can run several.

Threat model: the endpoint is plain HTTP without authentication; it exposes job ids, job kinds,
bank names, counts, sizes and timings, never a payload, a model or a key. Bind it to loopback
or a monitoring network (see the README's Operations section).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.coordinator import ATTACH_WINDOW_SECONDS, Coordinator
from aggregator.observer import CoordinatorObserver, OpsSnapshot
from fedtab.crypto.ciphertexts import EncryptedVector
from fedtab.errors import ConfigError, FedtabError
from fedtab.protocol.exchange import PayloadKind, Upload
from fedtab.transport.messages import JobState

PREFIX = "fedtab_aggregator"
# Commit-to-commit seconds: a profile step takes well under a second, a GBDT level with a
# 2048-bit key and many banks can take minutes.
STEP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
RECEIVED_KINDS = tuple(k.name.lower() for k in PayloadKind if k is not PayloadKind.ABORT)


class SnapshotCollector(Collector):
    """Gauges computed from the coordinator's snapshot at each scrape."""

    def __init__(self, snapshot: Callable[[], OpsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs known to the aggregator, by state.",
                                 labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], sum(j.state == state.value for j in snap.jobs))
        step = GaugeMetricFamily(
            f"{PREFIX}_job_current_step",
            "Index of the step in progress (= steps committed) of each running job.",
            labels=["job_id", "kind"])
        for job in snap.jobs:
            if job.state == JobState.RUNNING.value:
                step.add_metric([job.job_id, job.kind], job.step_index)
        banks = GaugeMetricFamily(f"{PREFIX}_banks", "Banks of the consortium.")
        banks.add_metric([], len(snap.banks))
        attached = GaugeMetricFamily(
            f"{PREFIX}_banks_attached",
            f"Banks that called the aggregator within the last {ATTACH_WINDOW_SECONDS:.0f} s.")
        attached.add_metric([], len(snap.attached))
        seen = GaugeMetricFamily(
            f"{PREFIX}_bank_last_seen_seconds",
            "Seconds since each bank last called the aggregator (banks seen since it started).",
            labels=["bank"])
        for bank, ago in sorted(snap.seen_seconds_ago.items()):
            seen.add_metric([bank], ago)
        yield from (jobs, step, banks, attached, seen)


class AggregatorMetrics(CoordinatorObserver):
    """The metrics of one coordinator, in a registry of their own."""

    def __init__(self, coordinator: Coordinator, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._last_commit: dict[str, float] = {}  # job id -> when its last step committed
        self.ciphertexts = Counter(
            f"{PREFIX}_received_ciphertexts", "Ciphertexts in accepted uploads, by message kind.",
            ["kind"], registry=self.registry)
        self.received_bytes = Counter(
            f"{PREFIX}_received_bytes", "Payload bytes of accepted uploads, by message kind.",
            ["kind"], registry=self.registry)
        self.step_seconds = Histogram(
            f"{PREFIX}_step_seconds", "Seconds from one committed step to the next (per job).",
            buckets=STEP_BUCKETS, registry=self.registry)
        self.refused_total = Counter(
            f"{PREFIX}_refused_messages", "RPCs refused, by RPC and reason (error class).",
            ["rpc", "reason"], registry=self.registry)
        for kind in RECEIVED_KINDS:  # present at 0 from the start, so rate() works at once
            self.received_bytes.labels(kind)
        self.ciphertexts.labels("contribution")  # the only uploads made of ciphertexts
        self.registry.register(SnapshotCollector(coordinator.snapshot))
        coordinator.observer = self

    def upload_accepted(self, job_id: str, bank: str, upload: Upload, prepared: object
                        ) -> None:
        kind = upload.kind.name.lower()
        self.received_bytes.labels(kind).inc(len(upload.payload))
        if isinstance(prepared, EncryptedVector):
            self.ciphertexts.labels(kind).inc(len(prepared.ciphertexts))

    def step_committed(self, job_id: str, index: int) -> None:
        now = self._clock()
        with self._lock:
            previous = self._last_commit.get(job_id)
            self._last_commit = {job_id: now}  # one job runs at a time: keep only its time
        if previous is not None:
            self.step_seconds.observe(now - previous)

    def refused(self, rpc: str, error: FedtabError) -> None:
        self.refused_total.labels(rpc, type(error).__name__).inc()


class MetricsEndpoint:
    """The HTTP endpoint serving one registry at ``/metrics`` (any path answers)."""

    def __init__(self, metrics: AggregatorMetrics, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            server, thread = start_http_server(int(port), host.strip("[]"), metrics.registry)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot serve metrics on {address}: {exc}") from exc
        self._server: WSGIServer = server
        self._thread = thread
        self.host = host
        self.port = int(server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


__all__ = ["AggregatorMetrics", "MetricsEndpoint", "SnapshotCollector"]
