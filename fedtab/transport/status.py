"""fedtab errors at the gRPC edge: the status a servicer answers with, and the error a client
rebuilds from a failed call.

:mod:`fedtab.errors` knows nothing of gRPC; this module is the one place that maps between
the two, so servicers (:mod:`aggregator.service`) and clients (:mod:`fedtab.transport.client`)
agree. A servicer sends ``FedtabError.one_line()`` ("ClassName: message") as the status
details; the client rebuilds that class when it is one of :mod:`fedtab.errors`, and otherwise
falls back on the status code.

Threat model: only error class names and one-line messages cross the wire here; messages never
carry key material or plaintexts (the library's errors do not include them).
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from fedtab import errors
from fedtab.errors import (
    AuthenticationError,
    CheckpointError,
    CiphertextError,
    ConfigError,
    DataContractError,
    DataLimitError,
    EncodingError,
    FedtabError,
    JobFailedError,
    KeyMaterialError,
    PeerUnavailableError,
    PrivacyError,
    ProposalMismatchError,
    ProtocolError,
    ReplayError,
    SessionError,
    WireFormatError,
)

# The status a servicer answers each error class with (a subclass not listed uses its nearest
# listed base class).
STATUS_OF_ERROR: dict[type[FedtabError], grpc.StatusCode] = {
    FedtabError: grpc.StatusCode.INTERNAL,
    ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    KeyMaterialError: grpc.StatusCode.FAILED_PRECONDITION,
    EncodingError: grpc.StatusCode.INVALID_ARGUMENT,
    CiphertextError: grpc.StatusCode.INVALID_ARGUMENT,
    WireFormatError: grpc.StatusCode.INVALID_ARGUMENT,
    DataContractError: grpc.StatusCode.INVALID_ARGUMENT,
    DataLimitError: grpc.StatusCode.INVALID_ARGUMENT,
    ProtocolError: grpc.StatusCode.FAILED_PRECONDITION,
    ReplayError: grpc.StatusCode.ALREADY_EXISTS,
    AuthenticationError: grpc.StatusCode.PERMISSION_DENIED,
    SessionError: grpc.StatusCode.PERMISSION_DENIED,
    ProposalMismatchError: grpc.StatusCode.ABORTED,
    PrivacyError: grpc.StatusCode.FAILED_PRECONDITION,
    PeerUnavailableError: grpc.StatusCode.UNAVAILABLE,
    JobFailedError: grpc.StatusCode.ABORTED,
    CheckpointError: grpc.StatusCode.DATA_LOSS,
}

# The error a client raises for a status whose details do not name a fedtab error class.
ERROR_OF_STATUS: dict[grpc.StatusCode, type[FedtabError]] = {
    grpc.StatusCode.UNAVAILABLE: PeerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: PeerUnavailableError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.ALREADY_EXISTS: ReplayError,
    grpc.StatusCode.ABORTED: JobFailedError,
    grpc.StatusCode.INVALID_ARGUMENT: ConfigError,
    grpc.StatusCode.DATA_LOSS: CheckpointError,
}

UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def status_of(error: FedtabError) -> grpc.StatusCode:
    """The gRPC status for ``error``: that of its class or of its nearest listed base class."""
    for cls in type(error).__mro__:
        status = STATUS_OF_ERROR.get(cls)
        if status is not None:
            return status
    return grpc.StatusCode.INTERNAL


def abort_rpc(context: grpc.ServicerContext, error: FedtabError) -> NoReturn:
    """End the RPC with ``error``'s status and its one-line message (``context.abort`` raises)."""
    context.abort(status_of(error), error.one_line())
    raise error  # unreachable: grpc's abort raises; keeps the NoReturn promise for type checkers


def error_from_status(code: grpc.StatusCode, details: str, peer: str) -> FedtabError:
    """The fedtab error for a failed call to ``peer`` with ``code`` and ``details``.

    Unreachable peers give :class:`PeerUnavailableError`; details of the form "ClassName:
    message" naming a :mod:`fedtab.errors` class rebuild that class; anything else (details from
    gRPC itself, an unknown class) falls back on :data:`ERROR_OF_STATUS`, then
    :class:`ProtocolError`.
    """
    details = details or str(code)
    if code in UNREACHABLE:
        return PeerUnavailableError(f"aggregator {peer} unreachable: {details}")
    name, sep, message = details.partition(": ")
    named = getattr(errors, name, None) if sep else None
    if isinstance(named, type) and issubclass(named, FedtabError):
        return named(message)
    error_class = ERROR_OF_STATUS.get(code, ProtocolError)
    return error_class(message if sep else details)


def error_from_rpc(exc: grpc.RpcError, peer: str) -> FedtabError:
    """The fedtab error matching a failed call's status, with the server's one-line reason."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else ""
    return error_from_status(code, details or "", peer)
