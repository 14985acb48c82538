"""gRPC channel and server options, set in ONE place for every party.

Payloads above :data:`CHUNK_BYTES` are streamed in chunks, so the message limit only has to
cover one chunk plus its header; it is explicit rather than gRPC's 4 MiB default.
"""

from __future__ import annotations

CHUNK_BYTES = 1 << 20  # 1 MiB per streamed chunk
MAX_MESSAGE_BYTES = 8 << 20  # one chunk + header, with room to spare
LONG_POLL_SECONDS = 5.0  # server-side wait of NextTask / PollStep / GetJobStatus
MAX_PAYLOAD_BYTES = 1 << 30  # refuse larger uploads before reading them
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
