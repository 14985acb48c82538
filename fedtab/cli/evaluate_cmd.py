"""`fedtab evaluate`: score a local holdout with a finished model (and optionally a baseline).

Prints a metrics table (or, with ``--json``, one JSON object) and with ``--report DIR`` writes
``DIR/report.html`` with the ROC and precision-recall curves embedded. Options can be set from
``FEDTAB_EVALUATE_*`` variables. Bad input prints one line and exits non-zero. Option parsing
and printing only: the work is :func:`fedtab.api.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fedtab.api.evaluation import evaluate as evaluate_holdout
from fedtab.api.models import load_model
from fedtab.cli.edge import reports_errors
from fedtab.cli.table_options import DATA_HELP, database_options
from fedtab.data.sources import table_source
from fedtab.tracking import TrackingRequest, evaluate_tracking_options

_FILE = click.Path(dir_okay=False, path_type=Path)


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
    model = load_model(model_path)
    baseline = None if baseline_path is None else load_model(baseline_path)
    result = evaluate_holdout(model, source, label=label, baseline=baseline)
    report_path = None if report_dir is None else result.to_html(report_dir)
    from fedtab.tracking.evaluation import log_evaluation

    log_evaluation(mlflow, list(result.scored.items()), result.shown, result.notes,
                   result.source, report_path)
    if as_json:
        doc = result.to_dict()
        if report_path is not None:
            doc["report"] = str(report_path)
        click.echo(json.dumps(doc, sort_keys=True))
        return
    click.echo(result.format())
    if report_path is not None:
        click.echo(f"\nreport: {report_path}")
