"""The aggregator's gRPC service: a thin servicer over :class:`Coordinator`, and its server.

The servicer reads the caller's identity from the verified mTLS certificate, converts messages
(:mod:`fedtab.transport.convert`), calls one coordinator handler and maps
:class:`~fedtab.errors.FedtabError` to its gRPC status (:mod:`fedtab.transport.status`) with a
one-line message.

Threat model: the aggregator process loads only its own bundle (public key, its TLS key and
the consortium CA); no private Paillier key is ever read here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc

from aggregator.checkpoint import JobStore
from aggregator.coordinator import Coordinator
from aggregator.health import AggregatorHealth
from aggregator.sessions import ATTACH_WINDOW_SECONDS
from fedtab.consortium import AggregatorBundle
from fedtab.errors import ConfigError, FedtabError
from fedtab.jobs import JobSpec
from fedtab.transport import convert, tls
from fedtab.transport.generated import fedtab_pb2 as pb
from fedtab.transport.generated import fedtab_pb2_grpc as pb_grpc
from fedtab.transport.messages import Caller, DownloadKind
from fedtab.transport.options import DEFAULT_BANK_TIMEOUT_SECONDS, SERVER_OPTIONS
from fedtab.transport.status import abort_rpc

log = logging.getLogger("fedtab.aggregator")
T = TypeVar("T")
MAX_WAIT_SECONDS = 30.0


def _wait(value: float) -> float:
    return max(0.0, min(float(value), MAX_WAIT_SECONDS))


class AggregatorServicer(pb_grpc.AggregatorServicer):
    """Maps each RPC to one :class:`Coordinator` handler."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def _call(self, context: grpc.ServicerContext, rpc: str, fn: Callable[[Caller], T]) -> T:
        try:
            peer = tls.peer_identity(context)
            session = convert.session_from_metadata(context.invocation_metadata())
            caller = Caller(peer.name, peer.role, session, context.is_active)
            with self.coordinator.session_call(caller):
                return fn(caller)
        except FedtabError as exc:
            self.coordinator.observer.refused(rpc, exc)
            log.warning("%s from %s refused: %s", rpc, context.peer(), exc.one_line(),
                        extra={"rpc": rpc, "reason": type(exc).__name__})
            abort_rpc(context, exc)

    def Register(self, request: pb.RegisterRequest, context: grpc.ServicerContext) -> Any:
        reg = self._call(context, "Register", lambda c: self.coordinator.register(
            c, request.bank, request.key_fingerprint))
        return convert.registration_to_proto(reg)

    def Detach(self, request: pb.DetachRequest, context: grpc.ServicerContext) -> Any:
        self._call(context, "Detach", self.coordinator.detach)
        return pb.DetachReply()

    def NextTask(self, request: pb.NextTaskRequest, context: grpc.ServicerContext) -> Any:
        job = self._call(context, "NextTask", lambda c: self.coordinator.next_task(
            c, _wait(request.wait_seconds)))
        return convert.assignment_to_proto(job)

    def PollStep(self, request: pb.PollStepRequest, context: grpc.ServicerContext) -> Any:
        status = self._call(context, "PollStep", lambda c: self.coordinator.poll_step(
            c, request.job_id, int(request.step_index), _wait(request.wait_seconds)))
        return convert.step_status_to_proto(status)

    def Upload(self, request_iterator: Iterable[pb.UploadChunk],
               context: grpc.ServicerContext) -> Any:
        def handle(caller: Caller) -> Any:
            self.coordinator.check_bank(caller)  # refuse before reading a large stream
            # Read no more than the step allows this upload (its header says which it is).
            upload = convert.upload_from_proto(
                request_iterator, lambda head: self.coordinator.upload_limit(caller, head))
            return self.coordinator.upload(caller, upload)

        ack = self._call(context, "Upload", handle)
        return convert.ack_to_proto(ack)

    def Download(self, request: pb.DownloadRequest, context: grpc.ServicerContext
                 ) -> Iterator[pb.DataChunk]:
        def handle(caller: Caller) -> bytes:
            try:
                kind = DownloadKind(request.kind)
            except ValueError as exc:
                raise ConfigError(f"unknown download kind {request.kind}") from exc
            return self.coordinator.download(caller, kind, request.job_id,
                                             int(request.step_index), int(request.from_index))

        payload = self._call(context, "Download", handle)
        yield from convert.payload_to_chunks(payload)

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> Any:
        def handle(caller: Caller) -> str:
            spec = JobSpec.from_dict(convert.json_object(request.spec_json, "job spec"))
            return self.coordinator.submit(caller, spec)

        return pb.SubmitJobReply(job_id=self._call(context, "SubmitJob", handle))

    def GetJobStatus(self, request: pb.JobStatusRequest, context: grpc.ServicerContext) -> Any:
        status = self._call(context, "GetJobStatus", lambda c: self.coordinator.job_status(
            c, request.job_id, _wait(request.wait_seconds), int(request.known_version)))
        return convert.job_status_to_proto(status)

    def CancelJob(self, request: pb.CancelJobRequest, context: grpc.ServicerContext) -> Any:
        status = self._call(context, "CancelJob", lambda c: self.coordinator.cancel(
            c, request.job_id, request.reason))
        return convert.job_status_to_proto(status)


def build_coordinator(bundle: AggregatorBundle, *, state_dir: Path | None = None,
                      bank_timeout: float = DEFAULT_BANK_TIMEOUT_SECONDS,
                      attach_window: float = ATTACH_WINDOW_SECONDS) -> Coordinator:
    """A coordinator for an aggregator bundle (public key only), resuming from ``state_dir``."""
    store = JobStore(state_dir) if state_dir is not None else None
    return Coordinator(
        bundle.config.consortium_id,
        tuple(bundle.config.banks),
        bundle.public_key,
        store=store,
        bank_timeout=bank_timeout,
        attach_window=attach_window,
    )


def create_server(
    bundle: AggregatorBundle,
    address: str = "127.0.0.1:0",
    *,
    coordinator: Coordinator | None = None,
    state_dir: Path | None = None,
    bank_timeout: float = DEFAULT_BANK_TIMEOUT_SECONDS,
    max_workers: int = 32,
    health: AggregatorHealth | None = None,
    attach_window: float = ATTACH_WINDOW_SECONDS,
) -> tuple[grpc.Server, int]:
    """Build (not start) the mTLS gRPC server for ``bundle`` bound to ``address``.

    Returns ``(server, port)``; with port 0 the OS picks the port. Raises ConfigError when
    the address cannot be bound. With ``health``, the server also answers the standard gRPC
    health-checking service (:mod:`aggregator.health`).
    """
    coordinator = coordinator or build_coordinator(
        bundle, state_dir=state_dir, bank_timeout=bank_timeout, attach_window=attach_window
    )
    # Every bank holds one long poll open and may upload or download at the same time.
    workers = max(max_workers, 4 * len(coordinator.banks) + 8)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fedtab-rpc"),
        options=SERVER_OPTIONS,
    )
    pb_grpc.add_AggregatorServicer_to_server(AggregatorServicer(coordinator), server)
    if health is not None:
        health.add_to(server)
    try:
        port = server.add_secure_port(address, tls.server_credentials(bundle.tls))
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise ConfigError(f"cannot listen on {address}")
    return server, port


__all__ = ["AggregatorServicer", "build_coordinator", "create_server"]
