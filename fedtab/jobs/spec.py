"""Job files: parsed and checked in full before anything is sent.

A job file is TOML::

    [job]
    kind = "gbdt"            # profile | gbdt | logreg | evaluate
    seed = 0                 # optional; drives all shared randomness
    allow_two_banks = false  # optional; two banks can deduce each other's contributions
    bank_timeout = 600       # optional; seconds a bank may be silent before the job fails

    [params]                 # kind-specific, XGBoost / scikit-learn names
    n_estimators = 100

Unknown tables, ``[job]`` keys and parameters are errors with a did-you-mean suggestion.
``[params]`` is checked against the kind's schema by :meth:`JobSpec.check_params`, which
``fedtab run`` calls before it connects and every bank calls before it computes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtab.errors import ConfigError, PrivacyError
from fedtab.jobs.constraints import Boolean, Interval, NoneValue, Param, Schema, String, suggestion
from fedtab.jobs.registry import KINDS, Registry, unknown_kind_message

MIN_BANKS = 3
TABLES = ("job", "params")
JOB_TABLE = Schema("[job]", {
    "kind": Param((String(),)),
    "seed": Param((Interval(int, None, None),), default=0),
    "allow_two_banks": Param((Boolean(),), default=False),
    "bank_timeout": Param((Interval(float, 0, None, closed="neither"), NoneValue())),
})


@dataclass(frozen=True)
class JobSpec:
    """A parsed job file (``params`` as written; :meth:`check_params` types them)."""

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
        """Parse a job document; raises :class:`ConfigError` (unknown kind, table or key)."""
        for table in data:
            if table not in TABLES:
                raise ConfigError(f"unknown table [{table}] in the job file; expected [job] "
                                  f"and [params]{suggestion(str(table), TABLES)}")
        job = data.get("job")
        if not isinstance(job, Mapping):
            raise ConfigError("job file has no [job] table")
        kind = job.get("kind")
        if kind not in KINDS:
            raise ConfigError(unknown_kind_message(kind, sorted(KINDS)))
        params = data.get("params", {})
        if not isinstance(params, Mapping):
            raise ConfigError("[params] must be a table")
        values = JOB_TABLE.validate(job)
        timeout = values["bank_timeout"]
        return cls(
            kind=str(kind),
            params=dict(params),
            seed=values["seed"],
            allow_two_banks=values["allow_two_banks"],
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

    def check_params(self, kinds: Registry | None = None) -> dict[str, Any]:
        """``[params]`` typed and complete under the kind's schema (the one validator).

        Raises :class:`ConfigError` naming the parameter (unknown names with a suggestion).
        """
        return (kinds or Registry()).get(self.kind).validate(self.params)

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
