"""Splitting payloads into byte chunks and joining them back, with size and digest checks.

Threat model: the sender of a stream may lie about its size. :func:`receive` never holds more
than the size the receiver allows: a larger declared size is refused before any chunk is
read, a stream longer than declared as soon as the excess arrives.
"""

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


def receive(pieces: Iterable[bytes], total_bytes: int, content_digest: str, limit: int) -> bytes:
    """Read a payload declared as ``total_bytes`` bytes from ``pieces``, holding at most
    ``limit`` bytes: a larger declaration is refused before reading, a longer stream as soon as
    it overflows. Checks size and SHA-256 like :func:`join`; raises WireFormatError."""
    if not 0 <= total_bytes <= limit:
        raise WireFormatError(
            f"upload of {total_bytes} bytes refused: this step allows at most {limit}"
        )
    buffer = bytearray()
    digest = hashlib.sha256()
    for piece in pieces:
        if len(buffer) + len(piece) > total_bytes:
            raise WireFormatError("upload stream is longer than its header says")
        buffer += piece
        digest.update(piece)
    if len(buffer) != total_bytes:
        raise WireFormatError(f"payload truncated: got {len(buffer)} of {total_bytes} bytes")
    if digest.hexdigest() != content_digest:
        raise WireFormatError("payload digest mismatch (corrupted in transit)")
    return bytes(buffer)
