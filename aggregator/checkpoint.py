"""The aggregator's durable state: one folder per job with atomic JSON and artifact files.

Layout under the state directory::

    jobs/<job_id>/job.json            spec, banks, state, message, timings
    jobs/<job_id>/steps/000012.json   committed step 12: request and agreed proposal
    jobs/<job_id>/steps/000012.agg    its aggregate, while step 12 is in the current segment
    jobs/<job_id>/artifacts/<name>    the finished job's artifacts

Every file is written atomically (temp file in the same folder, fsync, ``os.replace``, fsync of
the folder), so a crash leaves either the old or the new version. Threat model: the state holds
only public material (job specs, committed proposals = the model, artifacts); never a key.
"""

from __future__ import annotations

import json
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtab.atomic import atomic_write_bytes
from fedtab.errors import CheckpointError
from fedtab.protocol.exchange import CommittedStep
from fedtab.protocol.steps import SumRequest, canonical_json


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :mod:`fedtab.atomic`)."""
    atomic_write_bytes(path, data)


@dataclass
class StoredJob:
    """What a checkpoint holds about one job."""

    record: dict[str, Any]
    committed: list[CommittedStep] = field(default_factory=list)
    aggregates: dict[int, bytes] = field(default_factory=dict)
    artifacts: dict[str, bytes] | None = None
    folder: str = ""  # the job's checkpoint folder name (for error messages)


class JobStore:
    """Reads and writes job checkpoints under ``root`` (see module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    def _dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def save_record(self, job_id: str, record: dict[str, Any]) -> None:
        atomic_write(self._dir(job_id) / "job.json", canonical_json(record) + b"\n")

    def save_step(self, job_id: str, step: CommittedStep) -> None:
        payload = {
            "index": step.index,
            "request": step.request.to_dict(),
            "proposal": step.proposal,
        }
        path = self._dir(job_id) / "steps" / f"{step.index:06d}.json"
        atomic_write(path, canonical_json(payload))

    def save_aggregate(self, job_id: str, index: int, aggregate: bytes) -> None:
        """Keep step ``index``'s aggregate (written before the step, so that a committed step
        of the current segment always has its aggregate on disk)."""
        atomic_write(self._dir(job_id) / "steps" / f"{index:06d}.agg", aggregate)

    def prune_aggregates(self, job_id: str, keep: Container[int]) -> None:
        """Drop the stored aggregates of steps not in ``keep`` (the current segment)."""
        steps = self._dir(job_id) / "steps"
        for old in steps.glob("*.agg"):
            if old.stem.isdigit() and int(old.stem) not in keep:
                old.unlink(missing_ok=True)

    def save_artifacts(self, job_id: str, artifacts: dict[str, bytes]) -> None:
        for name, content in artifacts.items():
            if "/" in name or name.startswith("."):
                raise CheckpointError(f"refusing artifact name {name!r}")
            atomic_write(self._dir(job_id) / "artifacts" / name, content)

    def load_all(self) -> list[StoredJob]:
        """Every stored job, in submission order; raises CheckpointError on inconsistency."""
        jobs = []
        for job_dir in sorted((self.root / "jobs").iterdir()):
            record_path = job_dir / "job.json"
            if not record_path.is_file():
                continue
            try:
                record = json.loads(record_path.read_text())
                committed = self._load_steps(job_dir)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"checkpoint of {job_dir.name} unreadable: {exc}") from exc
            artifacts = None
            if record.get("state") == "done":
                art_dir = job_dir / "artifacts"
                artifacts = {
                    p.name: p.read_bytes()
                    for p in sorted(art_dir.iterdir())
                    if p.is_file() and not p.name.startswith(".")
                }
            aggregates = {
                int(p.stem): p.read_bytes()
                for p in (job_dir / "steps").glob("*.agg")
                if p.stem.isdigit()
            }
            jobs.append(StoredJob(record, committed, aggregates, artifacts, job_dir.name))
        jobs.sort(key=lambda j: int(j.record.get("seq", 0)))
        return jobs

    @staticmethod
    def _load_steps(job_dir: Path) -> list[CommittedStep]:
        steps_dir = job_dir / "steps"
        if not steps_dir.is_dir():
            return []
        out = []
        for i, path in enumerate(sorted(steps_dir.glob("[0-9]*.json"))):
            try:
                data = json.loads(path.read_text())
                index = int(data["index"])
                step = CommittedStep(i, SumRequest.from_dict(data["request"]),
                                     dict(data["proposal"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"steps/{path.name}: {exc!s}") from exc
            if index != i:
                raise CheckpointError(f"{job_dir.name}: committed step {i} is missing")
            out.append(step)
        return out
