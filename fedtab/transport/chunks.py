"""Splitting payloads into byte chunks and joining them back, with size and digest checks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from fedtab.errors import WireFormatError
from fedtab.transport.options import CHUNK_BYTES


def split(payload: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield ``payload`` in pieces of at most ``chunk_bytes`` (at least one, maybe empty)."""
    if not payload:
        yield b""
        return
    view = memoryview(payload)
    for start in range(0, len(payload), chunk_bytes):
        yield bytes(view[start : start + chunk_bytes])


def join(pieces: Iterable[bytes], total_bytes: int, content_digest: str) -> bytes:
    """Concatenate chunks and check their total size and SHA-256; raises WireFormatError."""
    payload = b"".join(pieces)
    if len(payload) != total_bytes:
        raise WireFormatError(f"payload truncated: got {len(payload)} of {total_bytes} bytes")
    if hashlib.sha256(payload).hexdigest() != content_digest:
        raise WireFormatError("payload digest mismatch (corrupted in transit)")
    return payload
