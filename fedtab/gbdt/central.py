"""Run the GBDT trainer centrally: one trainer holding the pooled table, sums in the clear.

This is fedtab's centralized reference: the federated model must equal it on the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedtab.data.contract import LocalTable
from fedtab.gbdt.model import GBDTModel
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext

CENTRAL_BANK = "central"


def train_central(
    table: LocalTable, params: Mapping[str, Any], *, seed: int = 0, job_id: str = "central"
) -> tuple[GBDTModel, bytes]:
    """Train on ``table`` alone; returns the model and its XGBoost JSON bytes.

    Raises :class:`ConfigError` for bad params (see :class:`GBDTParams`).
    """
    ctx = JobContext(job_id, CENTRAL_BANK, (CENTRAL_BANK,), seed=seed, params=dict(params))
    trainer = GBDTTrainer(ctx, table)
    outcome = run_plaintext({CENTRAL_BANK: trainer})
    return trainer.model(), outcome.artifacts["model.json"]
