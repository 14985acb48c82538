"""Job files and job kinds.

* :mod:`fedtab.jobs.spec` — :class:`JobSpec`, a parsed job file;
* :mod:`fedtab.jobs.constraints` — declared parameter constraints and the one validator;
* :mod:`fedtab.jobs.kind` — :class:`JobKind`: schema, trainer, releases, progress, baseline;
* :mod:`fedtab.jobs.registry` — the one registry of kinds, loaded lazily by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedtab.jobs.kind import JobKind, Party, Progress, Release
from fedtab.jobs.registry import KINDS, Registry, job_kind, simulated_kinds
from fedtab.jobs.spec import MIN_BANKS, JobSpec
from fedtab.protocol.steps import BankTrainer, JobContext

if TYPE_CHECKING:
    from fedtab.data.contract import LocalTable

__all__ = ["KINDS", "MIN_BANKS", "JobKind", "JobSpec", "Party", "Progress", "Registry",
           "Release", "create_trainer", "job_kind", "simulated_kinds"]


def create_trainer(spec: JobSpec, ctx: JobContext, table: LocalTable,
                   holdout: LocalTable | None = None) -> BankTrainer:
    """Build this bank's trainer for a job of ``spec.kind``; raises :class:`ConfigError`.

    ``holdout`` (the bank's evaluation table, if it has one) is passed only to kinds that
    declare ``needs_holdout`` (``evaluate``).
    """
    return job_kind(spec.kind).create_trainer(ctx, table, holdout)
