"""Evaluate a model on a holdout, as ``fedtab evaluate`` does, from a notebook.

:func:`evaluate` scores a raw table (DataFrame or file) with a model and, optionally, a
baseline to compare with; the :class:`Evaluation` holds each model's metrics with 95% bootstrap
intervals (stratified resamples of the holdout), the paired model-minus-baseline difference,
and renders as the command's text, its JSON document, a DataFrame or the HTML report.

>>> from fedtab.api import evaluate
>>> from fedtab.api.examples import tiny_frame, tiny_logreg_model
>>> result = evaluate(tiny_logreg_model(), tiny_frame(rows=400))
>>> result.label, result.metrics["n_rows"], result.metrics["n_positive"]
('is_fraud', 400, 122)
>>> round(result.metrics["roc_auc"], 3)
0.778
>>> result.to_frame()[["roc_auc", "pr_auc"]].round(3)
       roc_auc  pr_auc
model    0.778   0.652
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedtab.api.models import Model, Table, load_model
from fedtab.data.sources import TableSource, read_source, table_source, with_row_key
from fedtab.errors import DataContractError
from fedtab.metrics import describe_difference, holdout_uncertainty, with_intervals
from fedtab.report import ReportEntry, describe_model_file, format_table, write_report
from fedtab.scoring import Evaluation as Scored
from fedtab.scoring import evaluate_model


@dataclass(frozen=True)
class Evaluation:
    """The evaluated models (``"model"``, then ``"baseline"`` if any) on one holdout.

    ``scored`` maps each name to its :class:`fedtab.scoring.Evaluation` (labels ``y``,
    ``scores``, raw metrics); ``uncertainty`` is
    :func:`fedtab.metrics.holdout_uncertainty`'s result; ``source`` names the holdout.
    """

    models: dict[str, Model]
    scored: dict[str, Scored]
    uncertainty: dict[str, Any]
    source: str

    @property
    def label(self) -> str:
        """The label column the holdout was scored against."""
        return self.scored["model"].label

    @property
    def shown(self) -> dict[str, dict[str, Any]]:
        """Each model's metrics plus ``intervals`` and ``interval_confidence``."""
        return {name: with_intervals(e.metrics, self.uncertainty, name)
                for name, e in self.scored.items()}

    @property
    def metrics(self) -> dict[str, Any]:
        """The model's metrics (ROC-AUC, PR-AUC, recall at 0.1%/1% FPR, Brier, ...) with
        their ``intervals``."""
        return self.shown["model"]

    @property
    def scores(self) -> np.ndarray:
        """The model's fraud probability for every holdout row."""
        return self.scored["model"].scores

    @property
    def notes(self) -> list[str]:
        """Warning and paired-difference lines (shown in the text and the HTML report)."""
        uncertainty = self.uncertainty
        notes = [f"warning: {uncertainty['warning']}"] if uncertainty["warning"] else []
        for pair, difference in uncertainty["differences"].items():
            a, _, b = pair.partition("_vs_")
            notes.append(f"{a} - {b}: {describe_difference(difference)}")
        boot = uncertainty["bootstrap"]
        notes.append(f"intervals: {boot['confidence']:.0%} percentile, {boot['resamples']} "
                     f"stratified bootstrap resamples of the holdout (seed {boot['seed']})")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``fedtab evaluate --json`` prints (without ``report``)."""
        shown = self.shown
        doc: dict[str, Any] = {
            **_summary(self.models["model"], shown["model"]), "data": self.source,
            "label": self.label, "bootstrap": self.uncertainty["bootstrap"],
            "warning": self.uncertainty["warning"],
        }
        if "baseline" in self.scored:
            doc["baseline"] = _summary(self.models["baseline"], shown["baseline"])
            doc["model_vs_baseline"] = self.uncertainty["differences"]["model_vs_baseline"]
        return doc

    def to_frame(self) -> pd.DataFrame:
        """One row per model, one column per scalar metric."""
        rows = {name: {k: v for k, v in metrics.items() if isinstance(v, int | float)}
                for name, metrics in self.shown.items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def format(self) -> str:
        """The text ``fedtab evaluate`` prints: models, holdout, metrics table, notes."""
        lines = [f"{name + ':':<10}{m.path} ({m.kind})" for name, m in self.models.items()]
        metrics = self.scored["model"].metrics
        lines.append(f"{'holdout:':<10}{self.source} ({metrics['n_rows']} rows, "
                     f"{metrics['n_positive']} with {self.label!r} = 1)")
        shown = self.shown
        table = format_table([(name, shown[name]) for name in self.scored])
        return "\n".join([*lines, "", table, "", *self.notes])

    def to_html(self, folder: str | Path) -> Path:
        """Write ``folder/report.html`` (with ``roc.png`` and ``pr.png``) comparing the models;
        returns the HTML file's path. Raises :class:`~fedtab.errors.ConfigError` if it cannot."""
        shown = self.shown
        entries = [
            ReportEntry(name, str(self.models[name].path), e.model.kind, e.y, e.scores,
                        shown[name], _provenance(self.models[name]))
            for name, e in self.scored.items()
        ]
        return write_report(Path(folder), entries, self.source, notes=self.notes)


def evaluate(
    model: Model | str | Path,
    data: Table | TableSource,
    *,
    label: str | None = None,
    baseline: Model | str | Path | None = None,
    source: str | None = None,
) -> Evaluation:
    """Score the holdout ``data`` (a DataFrame, a .csv/.parquet path, or a database
    :class:`~fedtab.data.sources.TableSource`) with ``model`` and, if given, ``baseline``; both
    are :class:`Model` objects or ``model.json`` paths.

    ``label`` defaults to the model contract's label; ``source`` names the holdout in the text,
    the report and error messages (default: the path or masked URL, or ``"DataFrame"``).

    Raises:
        ConfigError: a model cannot be loaded.
        DataContractError: the table is unreadable, breaks the contract, or its label is
            absent, not 0/1 or a single class.
    """
    models = {"model": _model(model)}
    if baseline is not None:
        models["baseline"] = _model(baseline)
    if isinstance(data, pd.DataFrame):
        frame, where = data, source or ""
    else:
        table = data if isinstance(data, TableSource) else table_source(data)
        frame, where = read_source(table), source or table.describe()
    try:
        result = evaluate_model(models["model"].scoring, frame, label, source=where)
        scored = {"model": result}
        if baseline is not None:
            scored["baseline"] = evaluate_model(models["baseline"].scoring, frame, result.label,
                                                source=where)
    except DataContractError as exc:  # name the bad row's key, as the file and SQL readers do
        key = models["model"].contract.id_column
        raise DataContractError(with_row_key(str(exc), frame, key)) from exc
    pairs = [("model", "baseline")] if baseline is not None else []
    uncertainty = holdout_uncertainty(
        result.y, {name: e.scores for name, e in scored.items()},
        {name: e.metrics for name, e in scored.items()}, pairs,
    )
    return Evaluation(models, scored, uncertainty, where or "DataFrame")


def _model(model: Model | str | Path) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def _summary(model: Model, metrics: dict[str, Any]) -> dict[str, Any]:
    return {**metrics, "model": str(model.path), "model_kind": model.kind}


def _provenance(model: Model) -> str:
    """Where the model file comes from (job, banks, date), when it was read from a file."""
    return describe_model_file(model.file) if model.file is not None else ""
