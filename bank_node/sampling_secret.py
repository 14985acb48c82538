"""The secrets a bank keys its jobs' random draws with (see :mod:`fedtab.gbdt.sampling`).

Threat model: the aggregator and the operator see every job file and every released model. If
they could recompute which rows a tree sampled, the model's per-tree sums would become equations
about known rows (``tests/test_attack_sampling_seeds.py`` recovers every label that way). So:

* ``consortium_secret = HMAC-SHA256(shard key, "fedtab-sampling|" + job_id)``: the same on every
  bank (each holds the shard key), unknown to the aggregator and the operator, who never hold
  it. Whoever ran ``fedtab consortium init`` saw the shard key (the key ceremony limit in
  ``docs/SECURITY.md``), so column draws are hidden from the running operator only if that
  staging copy was deleted.
* ``bank_secret = HMAC-SHA256(bank sampling key, "fedtab-sampling|" + job_id)``, where the bank
  sampling key is 32 random bytes created by the bank itself at its first job, in its own folder
  (``sampling_secret.key``, mode 0600, never sent anywhere, never created by ``consortium
  init``). Only that bank can recompute its row samples; a restart reuses the file, so a bank
  that replays a job draws the same rows. Losing the file only matters for a job in flight
  (its replay would draw other rows and the job fails; the next job is fine).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from fedtab.errors import KeyMaterialError
from fedtab.jobs import JobSpec
from fedtab.protocol.steps import JobContext

SECRET_FILE = "sampling_secret.key"
SECRET_KIND = "fedtab-bank-sampling-key"
SECRET_BYTES = 32
_CONTEXT = b"fedtab-sampling|"


def bank_sampling_key(folder: Path) -> bytes:
    """This bank's sampling key from ``folder``, created (atomically, 0600) if absent.

    Raises :class:`KeyMaterialError` if the file is unreadable, malformed or cannot be written.
    """
    path = Path(folder) / SECRET_FILE
    if not path.exists():
        _create(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key = bytes.fromhex(str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyMaterialError(f"{path} is not a readable sampling key: {exc}") from exc
    if data.get("kind") != SECRET_KIND or len(key) != SECRET_BYTES:
        raise KeyMaterialError(f"{path} is not a {SECRET_BYTES}-byte sampling key")
    return key


def _create(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place only if ``path`` is still
    absent, so two processes starting at once end up with the same key."""
    body = json.dumps({"kind": SECRET_KIND, "key": secrets.token_bytes(SECRET_BYTES).hex()})
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise KeyMaterialError(f"cannot create {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as exc:
        raise KeyMaterialError(f"cannot create {path}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def with_sampling_secrets(ctx: JobContext, shard_key: bytes, folder: Path) -> JobContext:
    """``ctx`` with both sampling secrets of job ``ctx.job_id`` set (see module docstring).

    ``shard_key`` is the consortium's shard key; ``folder`` the bank's own folder.
    """
    if not shard_key:
        raise KeyMaterialError("the shard key is empty; cannot derive the sampling secrets")
    message = _CONTEXT + ctx.job_id.encode()
    return replace(
        ctx,
        consortium_secret=hmac.new(shard_key, message, hashlib.sha256).digest(),
        bank_secret=hmac.new(bank_sampling_key(folder), message, hashlib.sha256).digest(),
    )


def bank_job_context(job_id: str, bank: str, banks: Sequence[str], spec: JobSpec,
                     shard_key: bytes, folder: Path, privacy_floor: int = 1) -> JobContext:
    """The :class:`JobContext` a bank's trainer of job ``job_id`` runs with (the agent's, and
    the attack tests', single way of building one): sorted bank names, the job's seed and
    params, this bank's privacy floor, and both sampling secrets."""
    ctx = JobContext(job_id, bank, tuple(sorted(banks)), seed=spec.seed, params=dict(spec.params),
                     privacy_floor=privacy_floor)
    return with_sampling_secrets(ctx, shard_key, folder)
