"""Client side of the consortium protocol shared by banks and the operator: channels, calls
with retry; failed calls become fedtab errors (:mod:`fedtab.transport.status`).

Threat model: the channel uses mTLS with the consortium CA only; the party's TLS key stays in
memory. No Paillier key passes through here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from fedtab.errors import PeerUnavailableError
from fedtab.transport import tls
from fedtab.transport.generated import fedtab_pb2_grpc as pb_grpc
from fedtab.transport.options import GRPC_OPTIONS
from fedtab.transport.status import error_from_rpc

log = logging.getLogger("fedtab.transport")
T = TypeVar("T")


def open_channel(identity: tls.TlsIdentity, address: str) -> grpc.Channel:
    """An mTLS channel to the aggregator at ``HOST:PORT`` with the shared options."""
    return grpc.secure_channel(address, tls.channel_credentials(identity), options=GRPC_OPTIONS)


def aggregator_stub(channel: grpc.Channel) -> pb_grpc.AggregatorStub:
    return pb_grpc.AggregatorStub(channel)


def call_with_retry(
    fn: Callable[[], T],
    address: str,
    *,
    give_up_after: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; retry with backoff while the aggregator is unreachable.

    Other failures raise the matching :class:`FedtabError` at once. Raises
    :class:`PeerUnavailableError` after ``give_up_after`` seconds (``None``: keep trying until
    ``should_stop()``).
    """
    started = time.monotonic()
    delay = 0.2
    while True:
        try:
            return fn()
        except grpc.RpcError as exc:
            error = error_from_rpc(exc, address)
            if not isinstance(error, PeerUnavailableError):
                raise error from None
            waited = time.monotonic() - started
            if should_stop() or (give_up_after is not None and waited >= give_up_after):
                raise error from None
            log.debug("%s; retrying in %.1f s", error.one_line(), delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)
