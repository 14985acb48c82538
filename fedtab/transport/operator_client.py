"""The operator's client: submit a job, follow its progress, fetch its artifacts.

Threat model: the operator holds only its TLS identity and the consortium config; it sees job
progress and the finished artifacts (the model), never ciphertexts' plaintexts or keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from fedtab.errors import JobFailedError, PeerUnavailableError
from fedtab.jobs import JobSpec
from fedtab.protocol.steps import canonical_json
from fedtab.transport import convert
from fedtab.transport.client import aggregator_stub, call_with_retry, open_channel
from fedtab.transport.generated import fedtab_pb2 as pb
from fedtab.transport.messages import DownloadKind, JobState, JobStatus
from fedtab.transport.options import LONG_POLL_SECONDS, RPC_TIMEOUT_SECONDS
from fedtab.transport.outage import OutageReporter
from fedtab.transport.tls import TlsIdentity

ProgressCallback = Callable[[JobStatus], None]
T = TypeVar("T")
log = logging.getLogger("fedtab.operator")


class _AddressBook(Protocol):
    """The part of the consortium config the client reads."""

    @property
    def aggregator_address(self) -> str: ...


class OperatorCredentials(Protocol):
    """What the client reads from the operator's :class:`fedtab.consortium.OperatorBundle`.

    Named structurally so that transport does not import the consortium package (which
    imports transport for TLS).
    """

    @property
    def config(self) -> _AddressBook: ...

    @property
    def tls(self) -> TlsIdentity: ...


class OperatorClient:
    """Connection of the operator (``OperatorBundle``) to the aggregator at ``address``.

    An unreachable aggregator is retried for ``unavailable_grace`` seconds per call; ``notify``
    (default: a warning on the ``fedtab.operator`` logger, which reaches stderr even where
    logging is not configured) hears one line when it becomes unreachable, one a minute while
    it stays so, and one when it answers again.
    """

    def __init__(self, bundle: OperatorCredentials, address: str | None = None, *,
                 unavailable_grace: float = 120.0,
                 notify: Callable[[str], None] | None = None) -> None:
        self.address: str = address or bundle.config.aggregator_address
        self._channel = open_channel(bundle.tls, self.address)
        self._stub = aggregator_stub(self._channel)
        self.unavailable_grace = unavailable_grace
        self._outage = OutageReporter(self.address, notify or log.warning,
                                      give_up_after=unavailable_grace)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn`` retried while the aggregator is unreachable; raises PeerUnavailableError
        (one line: address, short reason, time waited) after ``unavailable_grace`` s."""
        try:
            return call_with_retry(self._outage.watch(fn), self.address,
                                   give_up_after=self.unavailable_grace)
        except PeerUnavailableError as exc:
            raise self._outage.gave_up(exc) from None

    def submit(self, spec: JobSpec) -> str:
        """Queue ``spec``; returns the job id. Raises PrivacyError for too few banks."""
        request = pb.SubmitJobRequest(spec_json=canonical_json(spec.to_dict()).decode())
        reply = self._call(
            lambda: self._stub.SubmitJob(request, timeout=RPC_TIMEOUT_SECONDS)
        )
        return str(reply.job_id)

    def status(self, job_id: str, *, wait: float = 0.0, known_version: int = -1) -> JobStatus:
        """The job's status, waiting up to ``wait`` s for a change after ``known_version``."""
        request = pb.JobStatusRequest(job_id=job_id, wait_seconds=wait,
                                      known_version=known_version)
        reply = self._call(
            lambda: self._stub.GetJobStatus(request, timeout=wait + 30)
        )
        return convert.job_status_from_proto(reply)

    def cancel(self, job_id: str, reason: str = "") -> JobStatus:
        """Fail ``job_id`` now (queued, waiting or running); returns its status. Raises
        ConfigError for an unknown job and ProtocolError for a finished one."""
        request = pb.CancelJobRequest(job_id=job_id, reason=reason)
        reply = self._call(
            lambda: self._stub.CancelJob(request, timeout=RPC_TIMEOUT_SECONDS)
        )
        return convert.job_status_from_proto(reply)

    def wait(self, job_id: str, progress: ProgressCallback | None = None,
             timeout: float | None = None) -> JobStatus:
        """Follow the job until it finishes; returns the final status.

        Raises JobFailedError (with the aggregator's reason) if it failed, and
        PeerUnavailableError after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        while True:
            wait = LONG_POLL_SECONDS
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            status = self.status(job_id, wait=wait, known_version=version)
            if progress is not None and status.version != version:
                progress(status)
            version = status.version
            if status.state == JobState.FAILED.value:
                raise JobFailedError(f"job {job_id} failed: {status.message}")
            if status.state == JobState.DONE.value:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise PeerUnavailableError(
                    f"job {job_id} not finished after {timeout:.0f} s (state {status.state}, "
                    f"step {status.step_index})"
                )

    def fetch_artifacts(self, job_id: str) -> dict[str, bytes]:
        """The finished job's artifacts, file name -> content."""
        request = pb.DownloadRequest(kind=DownloadKind.ARTIFACTS.name, job_id=job_id)

        def fetch() -> bytes:
            return convert.payload_from_chunks(
                self._stub.Download(request, timeout=RPC_TIMEOUT_SECONDS)
            )

        return convert.artifacts_from_bytes(
            self._call(fetch)
        )
