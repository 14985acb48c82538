"""The ``evaluate`` job: every bank scores the model on its own holdout; only metrics leave.

Two secure sums:

1. ``evaluate/per_bank``: a vector of ``n_banks * K`` slots; each bank fills only its own
   segment (banks in sorted order) with :data:`PER_BANK_KEYS` of
   :func:`fedtab.metrics.evaluate_scores` on its holdout, and zeros elsewhere. The sum therefore
   *reveals each bank's metrics* (ROC-AUC, PR-AUC, recall at 0.1%/1% FPR, precision at the top,
   best F1, Brier, rows, frauds) to every bank, the aggregator and the operator, by design: they
   are the job's output. Values are on a 2**-40 grid (error < 1e-12).
2. ``evaluate/score_histogram``: per-label counts of the holdout scores in ``score_bins`` logit
   bins (:mod:`fedtab.consortium_eval.binned`). Banks decrypt the consortium-wide histogram and
   propose only the metrics derived from it (binned approximations; see that module); the
   consortium Brier score is exact (row-weighted mean of the banks' Brier scores).

No score, row or histogram leaves a bank in the clear: proposals (seen by the aggregator) and
the artifacts (seen by the operator) hold metrics only. Banks see the summed histogram, i.e. the
consortium's score distribution by label; with two banks (``allow_two_banks``) each can deduce
the other's. Privacy floor: a bank refuses (:class:`PrivacyError`) when its holdout has fewer
than ``min_rows`` rows (default 50, at least 20) or lacks frauds or legitimate rows.

Parameters (``[params]``): ``model_json`` (embedded by ``fedtab run`` from ``model = PATH``),
``model_name``, ``model_sha256``, ``score_bins`` (default 8192), ``min_rows`` (default 50),
``max_rows_per_bank`` (default 2**24, the encodings' clip bound).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedtab.consortium_eval.binned import (
    DEFAULT_BINS,
    LOGIT_RANGE,
    binned_metrics,
    counts_from_aggregate,
    score_histogram,
)
from fedtab.consortium_eval.kind import DEFAULT_MIN_ROWS, PARAMETERS
from fedtab.consortium_eval.model_param import load_model_text
from fedtab.consortium_eval.report import format_table
from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import LocalTable
from fedtab.errors import ConfigError, DataLimitError, PrivacyError, ProtocolError
from fedtab.metrics import evaluate_scores
from fedtab.profiling import DEFAULT_MAX_ROWS
from fedtab.protocol.step_machine import FnStep, Step, StepMachine
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

PER_BANK_STEP = "evaluate/per_bank"
HISTOGRAM_STEP = "evaluate/score_histogram"
PER_BANK_FRAC_BITS = 40
PER_BANK_KEYS: tuple[str, ...] = (
    "roc_auc", "pr_auc", "recall_at_fpr_0_001", "recall_at_fpr_0_01", "precision_at_100",
    "precision_at_1pct", "best_f1", "brier", "n_rows", "n_positive",
)
COUNT_KEYS = frozenset({"n_rows", "n_positive"})


@dataclass(frozen=True)
class EvaluateParams:
    """Parsed ``[params]`` of an ``evaluate`` job (see module docstring; declared in
    :mod:`fedtab.consortium_eval.kind`)."""

    model_json: str
    model_name: str
    model_sha256: str
    score_bins: int = DEFAULT_BINS
    min_rows: int = DEFAULT_MIN_ROWS
    max_rows_per_bank: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> EvaluateParams:
        """Parse and validate through the kind's schema; raises :class:`ConfigError`."""
        if "model" in params and "model_json" not in params:
            raise ConfigError("the evaluate job's model was not embedded: submit it with "
                              "`fedtab run`, which reads [params] model = PATH")
        values = PARAMETERS.validate(params)
        text = values["model_json"]
        if not text:
            raise ConfigError('an evaluate job needs [params] model = "path/to/model.json"')
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if values["model_sha256"] not in (None, digest):
            raise ConfigError("the embedded model does not match its model_sha256")
        return cls(
            model_json=text,
            model_name=values["model_name"],
            model_sha256=digest,
            score_bins=values["score_bins"],
            min_rows=values["min_rows"],
            max_rows_per_bank=values["max_rows_per_bank"],
        )


class EvaluateTrainer(StepMachine):
    """One bank's side of an ``evaluate`` job (see module docstring).

    Built by :func:`fedtab.jobs.create_trainer` with the bank's holdout (``needs_holdout``).
    Scores and metrics are computed once here; the steps only release them.

    Raises:
        ConfigError: bad parameters, no holdout, a model fedtab cannot score, or a model
            trained under another data contract.
        PrivacyError: the holdout is below the privacy floor (``min_rows``, both classes).
        DataContractError: the holdout breaks the contract.
    """

    needs_holdout = True

    def __init__(self, ctx: JobContext, table: LocalTable,
                 holdout: LocalTable | None = None) -> None:
        self._ctx = ctx
        self._params = EvaluateParams.from_mapping(ctx.params)
        if holdout is None:
            raise ConfigError(f"bank {ctx.bank_name} has no holdout for evaluate jobs; "
                              "restart it with `fedtab bank join ... --holdout PATH`")
        self._model = load_model_text(self._params.model_json, self._params.model_name)
        if self._model.contract.to_dict() != holdout.contract.to_dict():
            raise ConfigError(f"the model {self._params.model_name} was trained under another "
                              "data contract than this consortium's")
        if holdout.n_rows > self._params.max_rows_per_bank:
            raise DataLimitError(f"bank {ctx.bank_name}'s holdout has {holdout.n_rows} rows but "
                                 "the job declares max_rows_per_bank="
                                 f"{self._params.max_rows_per_bank}", "max_rows_per_bank")
        n_pos = int(np.sum(holdout.y))
        if holdout.n_rows < self._params.min_rows:
            raise PrivacyError(f"bank {ctx.bank_name}'s holdout has {holdout.n_rows} rows, "
                               f"fewer than min_rows={self._params.min_rows}")
        if n_pos in (0, holdout.n_rows):
            raise PrivacyError(f"bank {ctx.bank_name}'s holdout has no "
                               f"{'fraud' if n_pos == 0 else 'legitimate'} rows; its metrics "
                               "would be undefined")
        scores = self._model.predict_proba(holdout.X)
        metrics = evaluate_scores(holdout.y, scores)
        self._own = np.asarray([float(metrics[k]) for k in PER_BANK_KEYS], dtype=np.float64)
        self._histogram = score_histogram(holdout.y, scores, self._params.score_bins)
        self._per_bank: dict[str, dict[str, Any]] | None = None
        self._consortium: dict[str, Any] | None = None

    # ----- step machine -----------------------------------------------------------------------

    def current_step(self) -> Step | None:
        p, n_banks = self._params, self._ctx.n_banks
        if self._per_bank is None:
            per_bank = SumRequest(
                step_id=PER_BANK_STEP,
                length=n_banks * len(PER_BANK_KEYS),
                encoding=EncodingSpec(PER_BANK_FRAC_BITS, float(p.max_rows_per_bank), n_banks),
                description="each bank's holdout metrics in its own segment",
            )
            return FnStep(per_bank, self._own_segment, self._propose_per_bank,
                          self._commit_per_bank)
        if self._consortium is None:
            histogram = SumRequest(
                step_id=HISTOGRAM_STEP,
                length=2 * p.score_bins,
                encoding=EncodingSpec(0, float(p.max_rows_per_bank), n_banks),
                description=f"holdout score counts by label in {p.score_bins} logit bins",
            )
            return FnStep(histogram, self._histogram.copy, self._propose_consortium,
                          self._commit_consortium)
        return None

    def result(self) -> dict[str, bytes]:
        """``evaluation.json`` (per-bank and consortium metrics) and ``evaluation.txt``."""
        if self._per_bank is None or self._consortium is None:
            raise ProtocolError("the evaluate job has not finished")
        doc = {
            "kind": "evaluate",
            "model": {"name": self._params.model_name, "kind": self._model.kind,
                      "sha256": self._params.model_sha256},
            "n_banks": self._ctx.n_banks,
            "score_bins": self._params.score_bins,
            "binning": f"uniform in logit over [-{LOGIT_RANGE:g}, {LOGIT_RANGE:g}]",
            "min_rows": self._params.min_rows,
            "per_bank": self._per_bank,
            "consortium": self._consortium,
        }
        text = json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
        return {"evaluation.json": text.encode(), "evaluation.txt": format_table(doc).encode()}

    # ----- helpers ----------------------------------------------------------------------------

    def _own_segment(self) -> np.ndarray:
        """This bank's metrics in its own segment of the per-bank vector, zeros elsewhere."""
        k = len(PER_BANK_KEYS)
        vector = np.zeros(self._ctx.n_banks * k, dtype=np.float64)
        position = self._ctx.bank_names.index(self._ctx.bank_name)
        vector[position * k : (position + 1) * k] = self._own
        return vector

    def _propose_per_bank(self, aggregate: np.ndarray) -> JsonDict:
        return {"per_bank": self._per_bank_from(aggregate)}

    def _commit_per_bank(self, proposal: JsonDict) -> None:
        try:
            per_bank = proposal["per_bank"]
            if sorted(per_bank) != sorted(self._ctx.bank_names):
                raise ProtocolError("the per-bank proposal does not name every bank")
            self._per_bank = {str(b): dict(m) for b, m in per_bank.items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"malformed evaluate proposal: {exc!r}") from exc

    def _propose_consortium(self, aggregate: np.ndarray) -> JsonDict:
        per_bank = self._committed_per_bank()
        neg, pos = counts_from_aggregate(aggregate, self._params.score_bins)
        rows = sum(int(m["n_rows"]) for m in per_bank.values())
        frauds = sum(int(m["n_positive"]) for m in per_bank.values())
        if sum(neg) + sum(pos) != rows or sum(pos) != frauds:
            raise ProtocolError("the summed score histogram does not match the banks' row and "
                                "fraud counts")
        brier = sum(float(m["brier"]) * int(m["n_rows"]) for m in per_bank.values())
        out: dict[str, Any] = binned_metrics(neg, pos)
        out.update(brier=brier / rows, n_rows=rows, n_positive=frauds,
                   positive_rate=frauds / rows)
        return {"consortium": out}

    def _commit_consortium(self, proposal: JsonDict) -> None:
        try:
            self._consortium = dict(proposal["consortium"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"malformed evaluate proposal: {exc!r}") from exc

    def _committed_per_bank(self) -> dict[str, dict[str, Any]]:
        if self._per_bank is None:
            raise ProtocolError("the per-bank metrics are not committed yet")
        return self._per_bank

    def _per_bank_from(self, aggregate: np.ndarray) -> dict[str, dict[str, Any]]:
        k = len(PER_BANK_KEYS)
        values = [float(v) for v in np.asarray(aggregate, dtype=np.float64).tolist()]
        if len(values) != k * self._ctx.n_banks:
            raise ProtocolError(f"per-bank aggregate has {len(values)} values, expected "
                                f"{k * self._ctx.n_banks}")
        out: dict[str, dict[str, Any]] = {}
        for b, bank in enumerate(self._ctx.bank_names):
            seg = values[b * k : (b + 1) * k]
            metrics: dict[str, Any] = {
                key: round(v) if key in COUNT_KEYS else v
                for key, v in zip(PER_BANK_KEYS, seg, strict=True)
            }
            rows = metrics["n_rows"]
            if rows < 1:
                raise ProtocolError(f"bank {bank} contributed no metrics")
            metrics["positive_rate"] = metrics["n_positive"] / rows
            out[bank] = metrics
        return out
