"""`fedtab evaluate`: score a local holdout with a finished model (and optionally a baseline).

Prints a metrics table (or, with ``--json``, one JSON object) and with ``--report DIR`` writes
``DIR/report.html`` with the ROC and precision-recall curves embedded. Options can be set from
``FEDTAB_EVALUATE_*`` variables. Bad input prints one line and exits non-zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from fedtab.cli.edge import reports_errors
from fedtab.cli.table_options import DATA_HELP, database_options
from fedtab.data.sources import read_source, table_source, with_row_key
from fedtab.errors import DataContractError
from fedtab.metrics import describe_difference, holdout_uncertainty, with_intervals
from fedtab.report import ReportEntry, describe_model_file, format_table, write_report
from fedtab.scoring import Evaluation, evaluate_model, load_model
from fedtab.tracking import TrackingRequest, evaluate_tracking_options

_FILE = click.Path(dir_okay=False, path_type=Path)


def _summary(evaluation: Evaluation, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        **metrics,
        "model": str(evaluation.model.path),
        "model_kind": evaluation.model.kind,
    }


def _uncertainty(evaluations: list[tuple[str, Evaluation]]) -> dict[str, Any]:
    """Bootstrap intervals of every model and, with a baseline, of model minus baseline."""
    y = evaluations[0][1].y
    pairs = [("model", "baseline")] if len(evaluations) > 1 else []
    return holdout_uncertainty(
        y, {name: e.scores for name, e in evaluations},
        {name: e.metrics for name, e in evaluations}, pairs,
    )


def _notes(uncertainty: dict[str, Any]) -> list[str]:
    """Warning and paired-difference lines for the terminal and the HTML report."""
    notes = [f"warning: {uncertainty['warning']}"] if uncertainty["warning"] else []
    for pair, difference in uncertainty["differences"].items():
        a, _, b = pair.partition("_vs_")
        notes.append(f"{a} - {b}: {describe_difference(difference)}")
    boot = uncertainty["bootstrap"]
    notes.append(f"intervals: {boot['confidence']:.0%} percentile, {boot['resamples']} "
                 f"stratified bootstrap resamples of the holdout (seed {boot['seed']})")
    return notes


@click.command()
@click.option("--model", "model_path", type=_FILE, required=True,
              envvar="FEDTAB_EVALUATE_MODEL", show_envvar=True,
              help="model.json: fedtab logreg or XGBoost JSON with an embedded contract.")
@click.option("--data", default=None, show_envvar=True, metavar="PATH|URL",
              help="The holdout. " + DATA_HELP)
@database_options
@click.option("--label", default=None, show_envvar=True,
              help="The 0/1 label column [default: the model contract's label].")
@click.option("--baseline", "baseline_path", type=_FILE, default=None,
              envvar="FEDTAB_EVALUATE_BASELINE", show_envvar=True,
              help="A second model to compare with (e.g. one trained on local data only).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, envvar="FEDTAB_EVALUATE_REPORT", show_envvar=True,
              help="Write DIR/report.html (with roc.png and pr.png) comparing the models.")
@reports_errors
@evaluate_tracking_options
def evaluate(
    model_path: Path,
    data: str | None,
    label: str | None,
    baseline_path: Path | None,
    as_json: bool,
    report_dir: Path | None,
    mlflow: TrackingRequest,
    query: str | None = None,
    db_table: str | None = None,
    data_url_file: Path | None = None,
) -> None:
    """Evaluate MODEL on the holdout DATA: ROC-AUC, PR-AUC, recall at low FPR, Brier, ..."""
    source = table_source(data, query=query, table=db_table, url_file=data_url_file)
    data = source.describe()  # how the output names the holdout (a URL's password masked)
    model = load_model(model_path)
    baseline = None if baseline_path is None else load_model(baseline_path)
    frame = read_source(source)
    try:
        result = evaluate_model(model, frame, label, source=data)
        compared = None if baseline is None else evaluate_model(
            baseline, frame, result.label, source=data
        )
    except DataContractError as exc:
        raise DataContractError(with_row_key(str(exc), frame, model.contract.id_column)) from exc
    evaluations = [("model", result)] + ([] if compared is None else [("baseline", compared)])
    uncertainty = _uncertainty(evaluations)
    shown = {name: with_intervals(e.metrics, uncertainty, name) for name, e in evaluations}
    notes = _notes(uncertainty)

    report_path = None
    if report_dir is not None:
        entries = [
            ReportEntry(name, str(e.model.path), e.model.kind, e.y, e.scores, shown[name],
                        describe_model_file(e.model.path))
            for name, e in evaluations
        ]
        report_path = write_report(report_dir, entries, str(data), notes=notes)
    from fedtab.tracking.evaluation import log_evaluation

    log_evaluation(mlflow, evaluations, shown, notes, data, report_path)

    if as_json:
        doc: dict[str, Any] = {
            **_summary(result, shown["model"]), "data": str(data), "label": result.label,
            "bootstrap": uncertainty["bootstrap"], "warning": uncertainty["warning"],
        }
        if compared is not None:
            doc["baseline"] = _summary(compared, shown["baseline"])
            doc["model_vs_baseline"] = uncertainty["differences"]["model_vs_baseline"]
        if report_path is not None:
            doc["report"] = str(report_path)
        click.echo(json.dumps(doc, sort_keys=True))
        return
    for name, e in evaluations:
        click.echo(f"{name + ':':<10}{e.model.path} ({e.model.kind})")
    metrics = result.metrics
    click.echo(
        f"{'holdout:':<10}{data} ({metrics['n_rows']} rows, {metrics['n_positive']} "
        f"with {result.label!r} = 1)\n"
    )
    click.echo(format_table([(name, shown[name]) for name, _ in evaluations]))
    click.echo()
    for note in notes:
        click.echo(note)
    if report_path is not None:
        click.echo(f"\nreport: {report_path}")
