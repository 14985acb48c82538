"""What a job kind is: one :class:`JobKind` declaration carries everything about it.

A kind's module (``fedtab/gbdt/kind.py`` and the like, listed in
:mod:`fedtab.jobs.registry`) declares its parameter :class:`~fedtab.jobs.constraints.Schema`,
its trainer, **what it releases and to whom** (:class:`Release`; the bank's policy refuses a
kind that declares nothing), how its step ids count rounds (:class:`Progress`), how ``fedtab
run`` prepares its spec, and its simulation baseline and default parameters. Heavy code
(trainers, xgboost baselines) is named as ``"module:attribute"`` and imported only when used,
so ``fedtab run`` loads no trainer.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedtab.errors import ConfigError
from fedtab.jobs.constraints import Schema
from fedtab.protocol.steps import BankTrainer, JobContext, JsonDict, SumRequest

if TYPE_CHECKING:
    from fedtab.data.contract import DataContract, LocalTable
    from fedtab.jobs.spec import JobSpec

ProposalCheck = Callable[[JobContext, SumRequest, JsonDict], None]
MAX_SCORED_MODEL_CHARS = 7 << 20  # a scored model travels in the job spec (8 MiB messages)
Scorer = Callable[["LocalTable"], np.ndarray]


class Party(StrEnum):
    """Who may see a released statistic."""

    BANKS = "banks"
    AGGREGATOR = "aggregator"
    OPERATOR = "operator"


EVERYONE = (Party.BANKS, Party.AGGREGATOR, Party.OPERATOR)


@dataclass(frozen=True)
class Release:
    """One statistic a kind releases: what, to whom, how finely, and what bounds its rows.

    ``floor`` names the parameter that bounds the rows behind each released figure (GBDT's
    ``min_child_samples``); the bank's policy refuses a job whose value is below its own
    privacy floor. ``consortium_rows``: each figure covers rows of the whole consortium, a
    count known only once summed, so the kind's ``check_proposal`` refuses at propose time
    when it is below the bank's floor (``JobContext.privacy_floor``). Neither: no floor (say
    so in ``what``; the policy lets it through as declared).
    """

    what: str
    to: tuple[Party, ...]
    granularity: str
    floor: str | None = None
    consortium_rows: bool = False


@dataclass(frozen=True)
class Progress:
    """How a kind counts rounds: the kind that names its step ids is the one that reads them.

    ``round_of(step_id)`` is the 0-based round of a step (``None`` outside rounds);
    ``total_param`` names the parameter holding the number of rounds, if there is one.
    """

    unit: str
    round_of: Callable[[str], int | None]
    total_param: str | None = None

    def read(self, step_id: str, total: int | None) -> tuple[str, float | None]:
        """The round as text (``tree 3/100``) and the fraction of rounds done, when known."""
        done = self.round_of(step_id)
        if done is None:
            return "", None
        if total:
            return f"{self.unit} {done + 1}/{total}", done / total
        return f"{self.unit} {done + 1}", None


@dataclass(frozen=True)
class JobKind:
    """Everything about one job kind (see module docstring).

    ``trainer``: ``"module:Class"`` built as ``cls(ctx, table)``, or ``cls(ctx, table,
    holdout)`` when ``needs_holdout``. ``prepare``: ``"module:function"`` turning a loaded
    spec into the one submitted (``(spec, job_file, contract) -> spec``; ``contract``: the
    consortium's, or None when not known yet). ``baseline``:
    ``"module:function"`` ``(table, params, seed) -> scorer`` the simulation compares with.
    ``scored_model``: the parameter carrying a model the banks score (the policy checks that
    the bank trained or approved it). ``check_proposal`` runs on every proposal before it
    leaves the bank (see :class:`Release`).
    """

    name: str
    schema: Schema
    trainer: str
    releases: tuple[Release, ...] = ()
    needs_holdout: bool = False
    progress: Progress | None = None
    prepare: str | None = None
    baseline: str | None = None
    simulation_params: Mapping[str, Any] = field(default_factory=dict)
    scored_model: str | None = None
    check_proposal: ProposalCheck | None = None

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The job's parameters, typed and complete; raises :class:`ConfigError`."""
        return self.schema.validate(params)

    def create_trainer(self, ctx: JobContext, table: LocalTable,
                       holdout: LocalTable | None = None) -> BankTrainer:
        """This bank's trainer; proposals pass ``check_proposal`` when the kind has one."""
        cls = load_reference(self.trainer, self.name)
        trainer: BankTrainer = cls(ctx, table, holdout) if self.needs_holdout else cls(ctx, table)
        if self.check_proposal is None:
            return trainer
        return CheckedTrainer(trainer, ctx, self.check_proposal)

    def prepare_spec(self, spec: JobSpec, job_file: Path,
                     contract: DataContract | None = None) -> JobSpec:
        """The spec as submitted (``evaluate`` embeds its model file, checked against the
        consortium's ``contract`` when given)."""
        if self.prepare is None:
            return spec
        prepared: JobSpec = load_reference(self.prepare, self.name)(spec, job_file, contract)
        return prepared

    def check_scored_model(self, params: Mapping[str, Any]) -> None:
        """Refuse an embedded scored model that is not the JSON text of a fedtab model (logreg,
        or XGBoost: an object with a ``learner``), by size and shape only: for parties without
        model code (the aggregator, at submission); banks load it in full before scoring.
        Raises :class:`ConfigError` quoting none of the text."""
        text = params.get(self.scored_model) if self.scored_model is not None else None
        if text is None:
            return
        what = f"{self.name} parameter {self.scored_model}"
        if not isinstance(text, str) or len(text) > MAX_SCORED_MODEL_CHARS:
            raise ConfigError(f"{what} must be a model's JSON text of at most "
                              f"{MAX_SCORED_MODEL_CHARS} characters")
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict) or not (doc.get("kind") == "logreg"
                                             or isinstance(doc.get("learner"), dict)):
            raise ConfigError(f"{what} is not the JSON text of a logreg or XGBoost model")

    def total_rounds(self, params: Mapping[str, Any]) -> int | None:
        """Number of rounds of a job with ``params``; None when unknown or params are bad."""
        if self.progress is None or self.progress.total_param is None:
            return None
        try:
            return int(self.validate(params)[self.progress.total_param])
        except ConfigError:
            return None  # the banks will report the bad parameter

    def fit_baseline(self, table: LocalTable, params: Mapping[str, Any], seed: int) -> Scorer:
        """The stock-tool counterpart of this kind trained on ``table`` (simulations only)."""
        if self.baseline is None:
            raise ConfigError(f"job kind {self.name!r} has no simulation baseline")
        scorer: Scorer = load_reference(self.baseline, self.name)(table, params, seed)
        return scorer


class CheckedTrainer:
    """A trainer whose proposals pass its kind's release check before they leave the bank."""

    def __init__(self, inner: BankTrainer, ctx: JobContext, check: ProposalCheck) -> None:
        self.inner = inner
        self._ctx = ctx
        self._check = check

    def next_request(self) -> SumRequest | None:
        return self.inner.next_request()

    def contribution(self, request: SumRequest) -> np.ndarray:
        return self.inner.contribution(request)

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        proposal = self.inner.propose(request, aggregate)
        self._check(self._ctx, request, proposal)
        return proposal

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        self.inner.commit(request, proposal)

    def result(self) -> dict[str, bytes]:
        return self.inner.result()

    def __getattr__(self, name: str) -> Any:  # the trainer's own attributes, for inspection
        return getattr(self.inner, name)


def load_reference(reference: str, kind: str) -> Any:
    """The attribute named by ``"module:attribute"``; raises :class:`ConfigError` when the
    module is not part of this build."""
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"job kind {kind!r} is not available in this build") from exc
    return getattr(module, attribute)
