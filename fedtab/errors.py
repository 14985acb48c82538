"""fedtab's one error hierarchy.

Every error the library raises on purpose derives from :class:`FedtabError`. Each class knows
the gRPC status a servicer should answer with and the exit code the CLI should return, so the
edges (gRPC servicers, click commands) map errors in one place and never show a traceback for
bad input. Library code raises these; it never calls ``sys.exit`` or uses ``assert`` for checks.
"""

from __future__ import annotations

import grpc


class FedtabError(Exception):
    """Base class: a failure fedtab understands and can explain in one line."""

    grpc_status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    exit_code: int = 1

    def one_line(self) -> str:
        """The message as a single line, for the CLI and gRPC status details."""
        text = " ".join(str(self).split())
        return f"{type(self).__name__}: {text}" if text else type(self).__name__


class ConfigError(FedtabError):
    """A configuration, job file or command-line value is invalid."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 2


class KeyMaterialError(FedtabError):
    """A key file is missing, of the wrong kind, or has the wrong fingerprint."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 3


class EncodingError(FedtabError):
    """A value cannot be encoded (NaN, inf, outside the clip bound) or decoding overflowed."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 4


class CiphertextError(FedtabError):
    """A ciphertext or ciphertext vector is invalid, tampered with, or mismatched."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 4


class WireFormatError(FedtabError):
    """Bytes that do not parse as a fedtab message (truncated, corrupt, wrong version)."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 4


class DataContractError(FedtabError):
    """A table violates the consortium's data contract (names the column and first bad row)."""

    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 5


class ProtocolError(FedtabError):
    """A protocol rule was broken: wrong step, replay, disagreeing proposals, bad identity."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 6


class ReplayError(ProtocolError):
    """A message for a step that is already committed or not yet reached."""

    grpc_status = grpc.StatusCode.ALREADY_EXISTS


class AuthenticationError(ProtocolError):
    """A peer's certificate or claimed identity is not acceptable."""

    grpc_status = grpc.StatusCode.PERMISSION_DENIED


class ProposalMismatchError(ProtocolError):
    """Banks proposed different model updates for the same step; nothing was committed."""

    grpc_status = grpc.StatusCode.ABORTED


class PrivacyError(FedtabError):
    """A request would reveal more than the consortium allows (too few banks, tiny nodes)."""

    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 7


class PeerUnavailableError(FedtabError):
    """A peer (aggregator or bank) could not be reached or timed out."""

    grpc_status = grpc.StatusCode.UNAVAILABLE
    exit_code = 8


class JobFailedError(FedtabError):
    """A federated job ended in failure; the message says which step and why."""

    grpc_status = grpc.StatusCode.ABORTED
    exit_code = 9


class CheckpointError(FedtabError):
    """A checkpoint is missing, unreadable or inconsistent with the job."""

    grpc_status = grpc.StatusCode.DATA_LOSS
    exit_code = 10
