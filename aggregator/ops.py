"""The operations endpoints of ``aggregator serve``: the health service (always, on the mTLS
server), and on request the plaintext health probe port and the Prometheus metrics endpoint.

Threat model: see :mod:`aggregator.health` (the probe port answers only "serving or not") and
:mod:`aggregator.metrics` (the metrics endpoint shows ids, names, counts and timings, never a
payload or a key); neither endpoint authenticates, so the operator chooses where they bind.
"""

from __future__ import annotations

import grpc

from aggregator.coordinator import Coordinator
from aggregator.health import AggregatorHealth
from aggregator.metrics import AggregatorMetrics, MetricsEndpoint
from fedtab.errors import ConfigError


class OpsEndpoints:
    """The health service and, on request, the metrics endpoint and plaintext probe port."""

    def __init__(self, coordinator: Coordinator, metrics_address: str | None,
                 health_listen: str | None) -> None:
        """Bind the requested endpoints (addresses already validated ``HOST:PORT``); raises
        ConfigError when one cannot be bound, leaving nothing open."""
        self.health = AggregatorHealth()
        self.metrics: MetricsEndpoint | None = None
        self.probe: grpc.Server | None = None
        self.probe_port = 0
        if health_listen is not None:
            self.probe, self.probe_port = self.health.probe_server(health_listen)
            self.probe.start()
        if metrics_address is not None:
            try:
                self.metrics = MetricsEndpoint(AggregatorMetrics(coordinator), metrics_address)
            except ConfigError:
                self.close()
                raise

    def ports(self) -> dict[str, int]:
        """The bound ports, for the JSON startup record."""
        ports = {"health_port": self.probe_port} if self.probe is not None else {}
        if self.metrics is not None:
            ports["metrics_port"] = self.metrics.port
        return ports

    def describe(self) -> str:
        """The endpoints, for the human startup line."""
        text = f"; metrics at {self.metrics.url}" if self.metrics is not None else ""
        if self.probe is not None:
            text += f"; plaintext health checks on port {self.probe_port}"
        return text

    def close(self) -> None:
        """Stop the probe server and the metrics endpoint (the mTLS server is the caller's)."""
        if self.probe is not None:
            self.probe.stop(grace=1.0).wait()
        if self.metrics is not None:
            self.metrics.close()


__all__ = ["OpsEndpoints"]
