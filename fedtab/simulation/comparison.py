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
from fedtab.metrics import evaluate_scores
from fedtab.scoring import ScoringModel
from fedtab.simulation.baselines import fit_baseline
from fedtab.simulation.inputs import SimulationInputs

Scorer = Callable[[LocalTable], np.ndarray]
MODELS = ("local_only", "federated", "pooled")
HEADLINE = (("pr_auc", "PR-AUC"), ("recall_at_fpr_0_01", "recall@1%FPR"), ("roc_auc", "ROC-AUC"))


@dataclass(frozen=True)
class BankComparison:
    """Holdout metrics of the three models for one bank (``None``: no holdout)."""

    bank: str
    holdout_rows: int
    holdout_positives: int
    metrics: Mapping[str, Mapping[str, Any]]


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
        metrics = {model: evaluate_scores(holdout.y, scorers[model](holdout)) for model in MODELS}
        rows.append(BankComparison(name, holdout.n_rows, int(holdout.y.sum()), metrics))
    return rows


def training_metrics(tables: BankTables, federated: ScoringModel) -> dict[str, Any]:
    """The federated model's metrics on each bank's own training rows (for the report)."""
    return {
        name: evaluate_scores(table.y, federated.predict_proba(table.X))
        for name, table in tables.trains.items()
    }


def format_table(rows: list[BankComparison]) -> str:
    """A fixed-width text table: one line per bank and model, headline metrics as columns."""
    header = f"{'bank':<14}{'holdout rows':>13}{'frauds':>8}  {'model':<11}" + "".join(
        f"{title:>14}" for _, title in HEADLINE
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        for i, model in enumerate(MODELS):
            left = (
                f"{row.bank:<14}{row.holdout_rows:>13}{row.holdout_positives:>8}"
                if i == 0
                else " " * 35
            )
            values = "".join(f"{row.metrics[model][key]:>14.4f}" for key, _ in HEADLINE)
            lines.append(f"{left}  {model:<11}{values}")
    return "\n".join(lines)


def comparison_to_dict(rows: list[BankComparison]) -> list[dict[str, Any]]:
    """JSON-ready form for report.json."""
    return [
        {
            "bank": row.bank,
            "holdout_rows": row.holdout_rows,
            "holdout_positives": row.holdout_positives,
            "metrics": {model: dict(row.metrics[model]) for model in MODELS},
        }
        for row in rows
    ]


def _concat(contract: DataContract, tables: list[LocalTable]) -> LocalTable:
    return LocalTable(
        contract,
        np.concatenate([t.X for t in tables], axis=0),
        np.concatenate([t.y for t in tables], axis=0),
    )
