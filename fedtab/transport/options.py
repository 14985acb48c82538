"""gRPC channel and server options, set in ONE place for every party.

Payloads above :data:`CHUNK_BYTES` are streamed in chunks, so the message limit only has to
cover one chunk plus its header; it is explicit rather than gRPC's 4 MiB default.

An upload is never read beyond what its step allows (:class:`UploadLimits`): a contribution's
size is bounded by the step's request and the key, a share's fixed by the aggregate; proposals,
results and abort reasons have declared bounds; :data:`MAX_PAYLOAD_BYTES` caps every upload.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_BYTES = 1 << 20  # 1 MiB per streamed chunk
MAX_MESSAGE_BYTES = 8 << 20  # one chunk + header, with room to spare
LONG_POLL_SECONDS = 5.0  # server-side wait of NextTask / PollStep / GetJobStatus
MAX_PAYLOAD_BYTES = 1 << 30  # refuse larger uploads before reading them
MAX_PROPOSAL_BYTES = 16 << 20  # a proposal's canonical JSON (split decisions, statistics)
MAX_RESULT_BYTES = 64 << 20  # a job's final artifacts (model.json and the like)
MAX_ABORT_BYTES = 1 << 20  # a bank's reason for giving up (the aggregator keeps 500 characters)
MAX_FIRST_CONTRIBUTION_BYTES = 256 << 20  # before any bank's contribution confirms the request
RPC_TIMEOUT_SECONDS = 120.0  # deadline of a single (non-poll) RPC
DEFAULT_BANK_TIMEOUT_SECONDS = 600.0  # a bank absent longer than this fails its job

GRPC_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]

SERVER_OPTIONS: list[tuple[str, int]] = [
    *GRPC_OPTIONS,
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class UploadLimits:
    """What the aggregator reads of one upload, at most (see the module docstring).

    ``first_contribution_bytes`` bounds the first contribution of a step, whose request only
    its sender vouches for (later ones must match the request already held, and their bound
    follows from it). :data:`MAX_PAYLOAD_BYTES` caps every upload on top of these.
    """

    proposal_bytes: int = MAX_PROPOSAL_BYTES
    result_bytes: int = MAX_RESULT_BYTES
    abort_bytes: int = MAX_ABORT_BYTES
    first_contribution_bytes: int = MAX_FIRST_CONTRIBUTION_BYTES
