"""Compare the federated model with local-only and pooled training on each bank's holdout.

This answers a risk team's question: "how much better is my fraud model, on my own holdout,
than the one I can train alone?". Pooled training is a reference only a simulation can compute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedtab.data.contract import DataContract, LocalTable
from fedtab.data.validate import load_table
from fedtab.metrics import Bootstrap, evaluate_scores, holdout_uncertainty
from fedtab.scoring import ScoringModel
from fedtab.simulation.baselines import fit_baseline
from fedtab.simulation.inputs import SimulationInputs

Scorer = Callable[[LocalTable], np.ndarray]
MODELS = ("local_only", "federated", "pooled")
HEADLINE = (("pr_auc", "PR-AUC"), ("recall_at_fpr_0_01", "recall@1%FPR"), ("roc_auc", "ROC-AUC"))
# Paired differences reported per bank: (model, minus model) and their row label in the table.
PAIRS = (("federated", "local_only"),)
PAIR_LABELS = {"federated_vs_local_only": "fed-local"}


@dataclass(frozen=True)
class BankComparison:
    """Holdout metrics of the three models for one bank.

    ``uncertainty`` is :func:`fedtab.metrics.holdout_uncertainty`'s dict: bootstrap intervals
    per model, the paired federated-minus-local-only difference, a few-frauds warning.
    """

    bank: str
    holdout_rows: int
    holdout_positives: int
    metrics: Mapping[str, Mapping[str, Any]]
    uncertainty: Mapping[str, Any]


@dataclass(frozen=True)
class BankTables:
    """Every simulated bank's loaded training table and (where it has one) holdout."""

    trains: Mapping[str, LocalTable]
    holdouts: Mapping[str, LocalTable]


def load_bank_tables(inputs: SimulationInputs) -> BankTables:
    """Load and validate each bank's files once, for the comparison and the report."""
    contract = inputs.contract
    return BankTables(
        trains={b.name: load_table(b.train_path, contract) for b in inputs.banks},
        holdouts={
            b.name: load_table(b.holdout_path, contract)
            for b in inputs.banks
            if b.holdout_path is not None
        },
    )


def compare_models(
    inputs: SimulationInputs,
    tables: BankTables,
    federated: ScoringModel,
    kind: str,
    params: Mapping[str, Any],
    seed: int,
) -> list[BankComparison]:
    """Train local-only and pooled baselines and score all three models on every holdout."""
    trains, holdouts = tables.trains, tables.holdouts
    if not holdouts:
        return []
    pooled = fit_baseline(kind, _concat(inputs.contract, list(trains.values())), params, seed)
    rows = []
    for name, holdout in holdouts.items():
        scorers: dict[str, Scorer] = {
            "local_only": fit_baseline(kind, trains[name], params, seed),
            "federated": lambda table: federated.predict_proba(table.X),
            "pooled": pooled,
        }
        scores = {model: scorers[model](holdout) for model in MODELS}
        metrics = {model: evaluate_scores(holdout.y, scores[model]) for model in MODELS}
        uncertainty = holdout_uncertainty(holdout.y, scores, metrics, PAIRS, Bootstrap(seed=seed))
        rows.append(
            BankComparison(name, holdout.n_rows, int(holdout.y.sum()), metrics, uncertainty)
        )
    return rows


def training_metrics(tables: BankTables, federated: ScoringModel) -> dict[str, Any]:
    """The federated model's metrics on each bank's own training rows (for the report)."""
    return {
        name: evaluate_scores(table.y, federated.predict_proba(table.X))
        for name, table in tables.trains.items()
    }


_LEFT = 29  # width of the bank / rows / frauds columns
_CELL = 24  # width of one metric column: value, interval and a one-character mark


def _cell(value: float, bounds: list[float] | None, *, signed: bool = False,
          mark: str = " ") -> str:
    sign = "+" if signed else ""
    text = f"{value:{sign}.3f}"
    if bounds is not None:
        text += f" [{bounds[0]:{sign}.3f},{bounds[1]:{sign}.3f}]"
    return f"{text}{mark}".rjust(_CELL)


def _legend(bootstrap: dict[str, Any]) -> list[str]:
    return [
        "",
        f"[low,high]: {bootstrap['confidence']:.0%} bootstrap interval "
        f"({bootstrap['resamples']} stratified resamples of each holdout).",
        "fed-local: the consortium model minus local-only, paired on the same resamples;",
        "  * = its interval excludes 0 (a real difference); no * = within noise.",
    ]


def format_table(rows: list[BankComparison]) -> str:
    """A fixed-width text table: per bank one line per model with each headline metric and its
    bootstrap interval, then the paired federated-minus-local-only difference (``*`` where its
    interval excludes 0), then a legend and any few-frauds warnings."""
    header = f"{'bank':<14}{'rows':>8}{'frauds':>7}  {'model':<11}" + "".join(
        f"{title:>{_CELL - 1}} " for _, title in HEADLINE
    )
    lines = [header.rstrip(), "-" * len(header)]
    warnings = []
    for row in rows:
        intervals = row.uncertainty.get("intervals", {})
        for i, model in enumerate(MODELS):
            left = (f"{row.bank:<14}{row.holdout_rows:>8}{row.holdout_positives:>7}"
                    if i == 0 else " " * _LEFT)
            values = "".join(
                _cell(row.metrics[model][key], intervals.get(model, {}).get(key))
                for key, _ in HEADLINE
            )
            lines.append(f"{left}  {model:<11}{values}".rstrip())
        for pair, label in PAIR_LABELS.items():
            difference = row.uncertainty.get("differences", {}).get(pair)
            if difference is not None:
                cells = "".join(
                    _cell(difference[key]["difference"], difference[key]["interval"],
                          signed=True, mark="*" if difference[key]["clear"] else " ")
                    for key, _ in HEADLINE
                )
                lines.append(f"{' ' * _LEFT}  {label:<11}{cells}".rstrip())
        if row.uncertainty.get("warning"):
            warnings.append(f"warning: {row.bank}: {row.uncertainty['warning']}")
    bootstrap = rows[0].uncertainty.get("bootstrap") if rows else None
    legend = _legend(bootstrap) if bootstrap else []
    return "\n".join(lines + legend + warnings)


def comparison_to_dict(rows: list[BankComparison]) -> list[dict[str, Any]]:
    """JSON-ready form for report.json."""
    return [
        {
            "bank": row.bank,
            "holdout_rows": row.holdout_rows,
            "holdout_positives": row.holdout_positives,
            "metrics": {model: dict(row.metrics[model]) for model in MODELS},
            "intervals": dict(row.uncertainty.get("intervals", {})),
            "differences": dict(row.uncertainty.get("differences", {})),
            "bootstrap": row.uncertainty.get("bootstrap"),
            "warning": row.uncertainty.get("warning"),
        }
        for row in rows
    ]


def _concat(contract: DataContract, tables: list[LocalTable]) -> LocalTable:
    return LocalTable(
        contract,
        np.concatenate([t.X for t in tables], axis=0),
        np.concatenate([t.y for t in tables], axis=0),
    )
