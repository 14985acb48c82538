"""Running raw Paillier work in-process or on a pool of worker processes.

Threat model: a pool is private to the process that created it (a bank, or any encrypting
party). Decryption and CRT-encryption workers receive the private key through the pool
initializer over a local pipe, so it stays inside the key holder's own process tree; nothing
leaves the machine. This module imports no private-key arithmetic itself: the CRT core is
imported only when a key holder asks for it, and :mod:`fedtab.crypto.decryptor` builds its own
decryption pool, so public-key processes never load :mod:`fedtab.crypto.crt`.

Workers are started with the ``spawn`` context, never ``fork``: the parent also runs gRPC,
whose threads do not survive a fork. Each worker builds its expensive state (the DJN fixed-base
table, the CRT constants) once, in its initializer, and keeps it in ``_WORKER_CORE``: this
module-level slot is the one piece of process state, and it only ever exists in pool workers.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, Protocol, Self

from fedtab.crypto.paillier import DjnEncryptCore
from fedtab.errors import ConfigError, FedtabError

_WORKER_CORE: dict[str, Any] = {}
# Tasks per worker per batch: small enough to balance load, large enough to amortise IPC.
_TASKS_PER_WORKER = 4


class EncryptCore(Protocol):
    """What an encryption core offers (DJN or CRT)."""

    def encrypt(self, plaintexts: Sequence[int], randoms: Sequence[int] | None) -> list[int]:
        """Encrypt plaintexts, with explicit random values or fresh ones."""
        ...


class DecryptCoreLike(Protocol):
    """What a decryption core offers (:class:`fedtab.crypto.crt.DecryptCore`)."""

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Decrypt validated ciphertexts into plaintexts."""
        ...


def make_encrypt_core(
    method: str, n: int, hs: int | None, p: int | None, q: int | None
) -> EncryptCore:
    """Build a :class:`DjnEncryptCore` (``hs`` given) or a CRT core (``p, q``; key holders)."""
    if method == "djn" and hs is not None:
        return DjnEncryptCore(n, hs)
    if method == "crt" and p is not None and q is not None:
        # Imported here, not at the top: only key holders reach this branch, and a process
        # with the public key alone must not load private-key arithmetic.
        from fedtab.crypto.crt import CrtEncryptCore

        return CrtEncryptCore(p, q)
    raise ConfigError(f"cannot build an encryption core for method {method!r}")


def init_worker(factory: Callable[..., object], args: tuple[Any, ...]) -> None:
    """Pool initializer: build this worker's core once as ``factory(*args)``."""
    _WORKER_CORE["core"] = factory(*args)


def _encrypt_task(plaintexts: list[int], randoms: list[int] | None) -> list[int]:
    core: EncryptCore = _WORKER_CORE["core"]
    return core.encrypt(plaintexts, randoms)


def _ping(pause: float) -> int:
    time.sleep(pause)
    return os.getpid()


def _decrypt_task(ciphertexts: list[int]) -> list[int]:
    core: DecryptCoreLike = _WORKER_CORE["core"]
    return core.decrypt(ciphertexts)


def check_workers(workers: int) -> int:
    """Validate the ``workers`` knob (a positive int); raises :class:`ConfigError`."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    return workers


def _broken(exc: BaseException) -> FedtabError:
    return FedtabError(
        f"a crypto worker process died ({exc}); note that programs using workers > 1 must "
        "guard their entry point with `if __name__ == '__main__':` (spawned workers re-import it)"
    )


def _chunks(items: Sequence[Any], parts: int) -> list[list[Any]]:
    size = max(1, -(-len(items) // parts))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class WorkerPool:
    """A spawn-context process pool whose workers each hold one core built by ``initializer``."""

    def __init__(
        self, workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
    ) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=initializer,
            initargs=initargs,
        )
        # Start every worker now (they build their tables in the background); the executor
        # otherwise spawns spawn-context workers one at a time, on demand.
        for _ in range(workers):
            self._executor.submit(_ping, 0.0)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every worker has started and built its core (for benchmarks).

        Raises :class:`ConfigError` if the workers are not all up within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while len(seen) < self.workers:
            if time.monotonic() > deadline:
                raise ConfigError(f"only {len(seen)} of {self.workers} workers started")
            futures = [self._live().submit(_ping, 0.05) for _ in range(self.workers)]
            seen.update(f.result(timeout=timeout) for f in futures)

    def _live(self) -> ProcessPoolExecutor:
        if self._executor is None:
            raise ConfigError("the worker pool has been closed")
        return self._executor

    def encrypt(self, plaintexts: Sequence[int], randoms: Sequence[int] | None) -> list[int]:
        """Encrypt on the workers, preserving order."""
        parts = self.workers * _TASKS_PER_WORKER
        pt_chunks = _chunks(plaintexts, parts)
        rand_chunks: list[list[int] | None] = (
            [None] * len(pt_chunks) if randoms is None else list(_chunks(randoms, parts))
        )
        out: list[int] = []
        try:
            for result in self._live().map(_encrypt_task, pt_chunks, rand_chunks):
                out.extend(result)
        except BrokenProcessPool as exc:
            raise _broken(exc) from exc
        return out

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Decrypt on the workers, preserving order."""
        out: list[int] = []
        chunks = _chunks(ciphertexts, self.workers * _TASKS_PER_WORKER)
        try:
            for result in self._live().map(_decrypt_task, chunks):
                out.extend(result)
        except BrokenProcessPool as exc:
            raise _broken(exc) from exc
        return out

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def encrypt_pool(
    workers: int, method: str, n: int, hs: int | None, p: int | None, q: int | None
) -> WorkerPool:
    """A pool of encryption workers (each builds its own table/constants once)."""
    return WorkerPool(workers, init_worker, (make_encrypt_core, (method, n, hs, p, q)))


class PoolOwner:
    """The life cycle :class:`~fedtab.crypto.Encryptor` and ``Decryptor`` share.

    Subclasses set ``_pool`` (a :class:`WorkerPool`, or None to work in-process) and ``_core``
    (the in-process state: precomputed tables or key material). :meth:`close` stops the pool
    and drops the core, so key material does not outlive its use.
    """

    _pool: WorkerPool | None
    _core: object | None

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every pool worker is up with its precomputed state (no-op in-process)."""
        if self._pool is not None:
            self._pool.wait_ready(timeout)

    def close(self) -> None:
        """Stop the worker pool and drop the in-process state (idempotent)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._core = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

