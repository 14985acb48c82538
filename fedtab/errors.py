"""fedtab's one error hierarchy.

Every error the library raises on purpose derives from :class:`FedtabError`. Each class
carries the exit code the CLI returns for it (:func:`fedtab.cli.edge.reports_errors`); the gRPC
status a servicer answers with, and the error a client rebuilds from a status, live at the
transport edge (:mod:`fedtab.transport.status`), so this module, and with it crypto, data and
the trainers, does not depend on gRPC. Library code raises these; it never calls ``sys.exit``
or uses ``assert`` for checks.
"""

from __future__ import annotations


class FedtabError(Exception):
    """Base class: a failure fedtab understands and can explain in one line."""

    exit_code: int = 1

    def one_line(self) -> str:
        """The message as a single line, for the CLI and gRPC status details."""
        text = " ".join(str(self).split())
        return f"{type(self).__name__}: {text}" if text else type(self).__name__


class ConfigError(FedtabError):
    """A configuration, job file or command-line value is invalid."""

    exit_code = 2


class DataLimitError(ConfigError):
    """This bank's data does not fit a job parameter (e.g. more rows than max_rows_per_bank).

    The message may carry figures about the bank's data and stays in its own log; what the
    bank tells the aggregator is rebuilt from ``parameter`` alone (a parameter name).
    """

    def __init__(self, message: str = "", parameter: str = "") -> None:
        super().__init__(message)
        self.parameter = parameter


class KeyMaterialError(FedtabError):
    """A key file is missing, of the wrong kind, or has the wrong fingerprint."""

    exit_code = 3


class EncodingError(FedtabError):
    """A value cannot be encoded (NaN, inf, outside the clip bound) or decoding overflowed."""

    exit_code = 4


class CiphertextError(FedtabError):
    """A ciphertext or ciphertext vector is invalid, tampered with, or mismatched."""

    exit_code = 4


class WireFormatError(FedtabError):
    """Bytes that do not parse as a fedtab message (truncated, corrupt, wrong version)."""

    exit_code = 4


class DataContractError(FedtabError):
    """A table violates the consortium's data contract (names the column and first bad row)."""

    exit_code = 5


class ProtocolError(FedtabError):
    """A protocol rule was broken: wrong step, replay, disagreeing proposals, bad identity."""

    exit_code = 6


class ReplayError(ProtocolError):
    """A message for a step that is already committed or not yet reached."""



class AuthenticationError(ProtocolError):
    """A peer's certificate or claimed identity is not acceptable."""



class SessionError(AuthenticationError):
    """A second process speaks for a bank whose session is attached, or a call carries a
    session that is no longer the bank's current one."""



class ProposalMismatchError(ProtocolError):
    """Banks proposed different model updates for the same step; nothing was committed."""



class PrivacyError(FedtabError):
    """A request would reveal more than the consortium allows (too few banks, tiny nodes)."""

    exit_code = 7


class PeerUnavailableError(FedtabError):
    """A peer (aggregator or bank) could not be reached or timed out."""

    exit_code = 8


class JobFailedError(FedtabError):
    """A federated job ended in failure; the message says which step and why."""

    exit_code = 9


class CheckpointError(FedtabError):
    """A checkpoint is missing, unreadable or inconsistent with the job."""

    exit_code = 10
