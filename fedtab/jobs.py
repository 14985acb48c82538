"""Job files and the registry of job kinds.

A job file is TOML::

    [job]
    kind = "gbdt"            # profile | gbdt | logreg | evaluate
    seed = 0                 # optional; drives all shared randomness
    allow_two_banks = false  # optional; two banks can deduce each other's contributions
    bank_timeout = 600       # optional; seconds a bank may be silent before the job fails

    [params]                 # kind-specific, XGBoost / scikit-learn names
    n_estimators = 100

Each kind maps to a :class:`~fedtab.protocol.steps.BankTrainer` class constructed as
``cls(ctx, table)``, or ``cls(ctx, table, holdout)`` when the class sets ``needs_holdout =
True`` (``evaluate``); trainer modules are imported lazily.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtab.data.contract import LocalTable
from fedtab.errors import ConfigError, PrivacyError
from fedtab.protocol.steps import BankTrainer, JobContext

# kind -> "module:class"
TRAINERS: dict[str, str] = {
    "profile": "fedtab.profiling:ProfileTrainer",
    "gbdt": "fedtab.gbdt.trainer:GBDTTrainer",
    "logreg": "fedtab.logreg.trainer:LogRegTrainer",
    "evaluate": "fedtab.consortium_eval.trainer:EvaluateTrainer",
}

MIN_BANKS = 3


@dataclass(frozen=True)
class JobSpec:
    """A parsed, validated job file."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    allow_two_banks: bool = False
    bank_timeout: float | None = None  # None: the aggregator's default

    def to_dict(self) -> dict[str, Any]:
        job: dict[str, Any] = {
            "kind": self.kind,
            "seed": self.seed,
            "allow_two_banks": self.allow_two_banks,
        }
        if self.bank_timeout is not None:
            job["bank_timeout"] = self.bank_timeout
        return {"job": job, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        job = data.get("job")
        if not isinstance(job, Mapping):
            raise ConfigError("job file has no [job] table")
        kind = job.get("kind")
        if kind not in TRAINERS:
            raise ConfigError(f"unknown job kind {kind!r}; expected one of {sorted(TRAINERS)}")
        params = data.get("params", {})
        if not isinstance(params, Mapping):
            raise ConfigError("[params] must be a table")
        seed = job.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"[job] seed must be an integer, got {seed!r}")
        allow_two = job.get("allow_two_banks", False)
        if not isinstance(allow_two, bool):
            raise ConfigError(f"[job] allow_two_banks must be true or false, got {allow_two!r}")
        timeout = job.get("bank_timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ConfigError(f"[job] bank_timeout must be a positive number, got {timeout!r}")
        return cls(
            kind=str(kind),
            params=dict(params),
            seed=seed,
            allow_two_banks=allow_two,
            bank_timeout=None if timeout is None else float(timeout),
        )

    @classmethod
    def load(cls, path: Path) -> JobSpec:
        try:
            return cls.from_dict(tomllib.loads(Path(path).read_text()))
        except OSError as exc:
            raise ConfigError(f"cannot read job file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"job file {path} is not valid TOML: {exc}") from exc

    def check_bank_count(self, n_banks: int) -> None:
        """Refuse fewer than three banks unless the job explicitly allows two.

        Raises :class:`PrivacyError`.
        """
        if n_banks < 2:
            raise PrivacyError(f"a job needs at least 2 banks, got {n_banks}")
        if n_banks < MIN_BANKS and not self.allow_two_banks:
            raise PrivacyError(
                f"only {n_banks} banks: with two banks each can deduce the other's contribution; "
                "set allow_two_banks = true in [job] to proceed anyway"
            )


def create_trainer(spec: JobSpec, ctx: JobContext, table: LocalTable,
                   holdout: LocalTable | None = None) -> BankTrainer:
    """Build this bank's trainer for a job of ``spec.kind``; raises :class:`ConfigError`.

    ``holdout`` (the bank's evaluation table, if it has one) is passed only to kinds whose
    class sets ``needs_holdout = True``.
    """
    module_name, class_name = TRAINERS[spec.kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"job kind {spec.kind!r} is not available in this build") from exc
    trainer_class = getattr(module, class_name)
    if getattr(trainer_class, "needs_holdout", False):
        holder: BankTrainer = trainer_class(ctx, table, holdout)
        return holder
    trainer: BankTrainer = trainer_class(ctx, table)
    return trainer
