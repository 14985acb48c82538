"""The bank's RPC calls to the aggregator, in plain message types, with retry on outages.

Threat model: sends only ciphertexts, sealed shards, proposals and results; authenticates with
the bank's mTLS certificate. No key material passes through here. Every call after
``register`` carries this process's session (``aggregator.sessions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import grpc

from fedtab.errors import PeerUnavailableError
from fedtab.protocol.exchange import StepStatus, Upload
from fedtab.transport import convert
from fedtab.transport.client import aggregator_stub, call_with_retry, open_channel
from fedtab.transport.generated import fedtab_pb2 as pb
from fedtab.transport.messages import (
    DownloadKind,
    JobAssignment,
    Registration,
    UploadAck,
)
from fedtab.transport.options import LONG_POLL_SECONDS, RPC_TIMEOUT_SECONDS
from fedtab.transport.outage import OutageReporter
from fedtab.transport.tls import TlsIdentity

T = TypeVar("T")
log = logging.getLogger("fedtab.bank")
OUTAGE_LOG_EVERY = 60.0  # seconds between "still unreachable" lines during one outage


class BankClient:
    """One bank's connection to the aggregator at ``address``."""

    def __init__(self, identity: TlsIdentity, address: str, bank: str,
                 should_stop: Callable[[], bool] = lambda: False,
                 give_up_after: float | None = None) -> None:
        """``give_up_after``: seconds an unreachable aggregator is retried (None: forever).

        An outage is logged once when it starts (with a short reason), then every
        ``OUTAGE_LOG_EVERY`` s, and once when the aggregator answers again.
        """
        self.address = address
        self.bank = bank
        self.give_up_after = give_up_after
        self._identity = identity
        self._channel = open_channel(identity, address)
        self._stub = aggregator_stub(self._channel)
        self._should_stop = should_stop
        self._outage = OutageReporter(address, log.warning, give_up_after=give_up_after,
                                      every=OUTAGE_LOG_EVERY)
        self.session: str | None = None  # from register; sent with every later call

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return call_with_retry(self._outage.watch(fn), self.address,
                                   should_stop=self._should_stop,
                                   give_up_after=self.give_up_after)
        except PeerUnavailableError as exc:
            raise self._outage.gave_up(exc) from None
        except ValueError as exc:  # grpc: "Cannot invoke RPC on closed channel" after stop()
            if self._should_stop():
                raise PeerUnavailableError(f"{self.bank}: stopped ({exc})") from None
            raise

    def register(self, fingerprint: str) -> Registration:
        request = pb.RegisterRequest(bank=self.bank, key_fingerprint=fingerprint)
        reply = self._call(lambda: self._stub.Register(request, timeout=RPC_TIMEOUT_SECONDS))
        registration = convert.registration_from_proto(reply)
        self.session = registration.session or None
        return registration

    def _meta(self) -> tuple[tuple[str, str], ...]:
        return convert.session_metadata(self.session)

    def detach(self, timeout: float = 2.0) -> bool:
        """End this process's session (it stops), on a channel of its own (``close`` may have
        closed the main one); one attempt, failures ignored. Returns whether it was ended."""
        if self.session is None:
            return False
        channel = open_channel(self._identity, self.address)
        try:
            aggregator_stub(channel).Detach(pb.DetachRequest(), timeout=timeout,
                                            metadata=self._meta())
            return True
        except grpc.RpcError:
            return False
        finally:
            channel.close()

    def next_task(self, wait: float = LONG_POLL_SECONDS) -> JobAssignment | None:
        request = pb.NextTaskRequest(wait_seconds=wait)
        reply = self._call(lambda: self._stub.NextTask(request, timeout=wait + 30,
                                                         metadata=self._meta()))
        return convert.assignment_from_proto(reply)

    def poll_step(self, job_id: str, step_index: int, wait: float = LONG_POLL_SECONDS
                  ) -> StepStatus:
        request = pb.PollStepRequest(job_id=job_id, step_index=step_index, wait_seconds=wait)
        reply = self._call(lambda: self._stub.PollStep(request, timeout=wait + 30,
                                                         metadata=self._meta()))
        return convert.step_status_from_proto(reply)

    def upload(self, upload: Upload) -> UploadAck:
        reply = self._call(lambda: self._stub.Upload(convert.upload_to_proto(upload),
                                                     timeout=RPC_TIMEOUT_SECONDS,
                                                     metadata=self._meta()))
        return convert.ack_from_proto(reply)

    def download(self, kind: DownloadKind, job_id: str, step_index: int = 0,
                 from_index: int = 0) -> bytes:
        request = pb.DownloadRequest(kind=kind.name, job_id=job_id, step_index=step_index,
                                     from_index=from_index)

        def fetch() -> bytes:
            stream = self._stub.Download(request, timeout=RPC_TIMEOUT_SECONDS,
                                         metadata=self._meta())
            return convert.payload_from_chunks(stream)

        return self._call(fetch)


__all__ = ["BankClient"]
