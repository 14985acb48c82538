"""The human-readable table of an ``evaluate`` job's ``evaluation.json`` (printed by
``fedtab run`` and shipped as ``evaluation.txt``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (header, metric key, format)
    ("rows", "n_rows", "d"),
    ("frauds", "n_positive", "d"),
    ("ROC-AUC", "roc_auc", ".4f"),
    ("PR-AUC", "pr_auc", ".4f"),
    ("R@0.1%FPR", "recall_at_fpr_0_001", ".4f"),
    ("R@1%FPR", "recall_at_fpr_0_01", ".4f"),
    ("best F1", "best_f1", ".4f"),
    ("Brier", "brier", ".5f"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    return format(int(value) if fmt == "d" else float(value), fmt)


def format_table(doc: Mapping[str, Any]) -> str:
    """One row per bank (sorted) and a ``consortium`` row, plus a note on binning."""
    rows: list[tuple[str, Mapping[str, Any]]] = sorted(doc["per_bank"].items())
    rows.append(("consortium", doc["consortium"]))
    name_width = max(len(name) for name, _ in rows)
    widths = [max(len(header), 10) for header, _, _ in COLUMNS]
    lines = ["  ".join([" " * name_width] + [h.rjust(w) for (h, _, _), w in
                                            zip(COLUMNS, widths, strict=True)])]
    for name, metrics in rows:
        cells = [_cell(metrics.get(key), fmt).rjust(w)
                 for (_, key, fmt), w in zip(COLUMNS, widths, strict=True)]
        lines.append("  ".join([name.ljust(name_width), *cells]))
    model = doc.get("model", {})
    bound = doc["consortium"].get("roc_auc_binning_bound")
    lines.append(
        f"model {model.get('name', '?')} ({model.get('kind', '?')}); per-bank figures are "
        "exact; consortium ranking figures come from "
        f"{doc.get('score_bins')} score bins ({doc.get('binning', '')})"
        + (f", ROC-AUC within ±{bound:.2g}" if bound is not None else "")
        + "; Brier and counts exact"
    )
    return "\n".join(lines) + "\n"
