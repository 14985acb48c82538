"""The standard gRPC health-checking service (``grpc.health.v1.Health``) of the aggregator.

One :class:`AggregatorHealth` holds the status of the server (``""``) and of the
``fedtab.Aggregator`` service: NOT_SERVING until the aggregator has loaded its state and its
server is accepting, SERVING then, NOT_SERVING for good once shutdown begins. It is added to
the mTLS server and, on request, to a separate *probe* server: a plaintext gRPC server that
serves only this health service, for load balancers and Kubernetes ``grpc`` probes, which
cannot present a consortium client certificate (``aggregator serve --health-listen``).

Threat model: the probe port is unauthenticated and unencrypted; it answers one question
(is the aggregator serving?) and exposes no job, bank, payload or key. The mTLS server's health
service requires a certificate from the consortium CA like every other RPC.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fedtab.errors import ConfigError
from fedtab.transport.generated import fedtab_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Aggregator"].full_name
SERVICES = ("", SERVICE_NAME)  # "" is the whole server, as probes ask by default


class AggregatorHealth:
    """Serving status shared by the mTLS server and the optional plaintext probe server."""

    def __init__(self) -> None:
        self.servicer = health.HealthServicer()
        self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    def _set(self, status: int) -> None:
        for service in SERVICES:
            self.servicer.set(service, status)

    def add_to(self, server: grpc.Server) -> None:
        """Serve the health service on ``server`` (before it starts)."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def serving(self) -> None:
        """The aggregator has loaded its state and accepts connections."""
        self._set(health_pb2.HealthCheckResponse.SERVING)

    def shutting_down(self) -> None:
        """NOT_SERVING from now on (later calls to :meth:`serving` are ignored)."""
        self.servicer.enter_graceful_shutdown()

    def probe_server(self, address: str) -> tuple[grpc.Server, int]:
        """Build (not start) a plaintext server on ``address`` serving only this health
        service; returns ``(server, port)``. Raises ConfigError when it cannot bind."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4,
                                                        thread_name_prefix="fedtab-health"))
        self.add_to(server)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot serve health checks on {address}: {exc}") from exc
        if port == 0:
            raise ConfigError(f"cannot serve health checks on {address}")
        return server, port


def check_health(channel: grpc.Channel, service: str = "", timeout: float = 5.0) -> str:
    """Ask a health service over ``channel``; returns the status name (e.g. ``"SERVING"``)."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


__all__ = ["SERVICES", "SERVICE_NAME", "AggregatorHealth", "check_health"]
