"""Small inputs for the API's examples (and for trying the API in a notebook).

Nothing here is trained: :func:`tiny_logreg_model` writes a hand-made two-feature logreg
``model.json`` so examples that load, score or evaluate a model run in milliseconds;
:func:`bank_tables` is the synthetic consortium of ``fedtab datagen`` as DataFrames.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedtab.data.contract import CONTRACT_VERSION


def tiny_logreg_model(folder: Path | None = None) -> Path:
    """Write a two-feature logreg ``model.json`` (``amount``; ``channel`` in atm/pos/web,
    label ``is_fraud``) into ``folder`` (default: a new temporary folder); returns its path."""
    contract = {
        "fedtab_contract_version": CONTRACT_VERSION,
        "label": "is_fraud",
        "id_column": None,
        "features": [
            {"name": "amount", "kind": "numeric", "lower": 0.0, "upper": 10000.0},
            {"name": "channel", "kind": "categorical", "categories": ["atm", "pos", "web"]},
        ],
    }
    doc: dict[str, Any] = {
        "kind": "logreg",
        "contract": contract,
        "features": ["amount", "channel"],
        "encoded_features": ["amount", "channel=atm", "channel=pos", "channel=web"],
        "mean": [100.0, 0.2, 0.5, 0.3],
        "scale": [50.0, 0.4, 0.5, 0.46],
        "coef": [0.8, -0.3, -0.5, 0.9],
        "intercept": -1.5,
    }
    folder = Path(tempfile.mkdtemp(prefix="fedtab-example-")) if folder is None else folder
    path = Path(folder) / "model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def tiny_frame(rows: int = 2, seed: int = 0) -> pd.DataFrame:
    """Raw rows for :func:`tiny_logreg_model`: columns in another order, categories as text,
    an extra column, and ``is_fraud``. The first two rows are fixed; more rows are random."""
    frame = pd.DataFrame({"channel": ["pos", "web"], "amount": [80.0, 150.0],
                          "note": ["a", "b"], "is_fraud": [0, 1]})
    if rows <= 2:
        return frame.head(rows)
    rng = np.random.default_rng(seed)
    n = rows - 2
    amount = rng.lognormal(4.5, 0.6, n)
    channel = rng.choice(["atm", "pos", "web"], n)
    logit = -1.5 + 0.8 * (amount - 100.0) / 50.0 + np.where(channel == "web", 1.5, 0.0)
    extra = pd.DataFrame({
        "channel": channel, "amount": amount.round(2), "note": "x",
        "is_fraud": (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int),
    })
    return pd.concat([frame, extra], ignore_index=True)


def bank_tables(banks: int = 3, rows: int = 6000, seed: int = 0
                ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """A synthetic consortium (as ``fedtab datagen``): per bank, its training rows and its
    holdout, label ``is_fraud``, row id ``txn_id``."""
    from fedtab.synthetic import generate_consortium

    consortium = generate_consortium(banks, rows, seed)
    return ({bank.name: bank.train for bank in consortium.banks},
            {bank.name: bank.holdout for bank in consortium.banks})
