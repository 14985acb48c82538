"""``fedtab evaluate --mlflow``: the holdout metrics and HTML report into the model's own run.

"The same run" is the run tagged ``fedtab.model_sha256`` with the SHA-256 of the evaluated model
file (``fedtab run/simulate --mlflow`` set it when they logged the model), in any experiment of
the tracking server, the most recent when several carry it (a deterministic job run twice);
``--mlflow-run-id`` names a run instead. A bank that received ``model.json`` by other means
finds the run all the same, since the file's bytes are the model's identity.

Metrics are ``evaluate.<metric>`` (and ``evaluate.baseline.<metric>`` with ``--baseline``);
the report (``report.html``, ``roc.png``, ``pr.png``) goes under ``evaluate/<holdout name>/``
(:func:`holdout_name`: the file name without suffix, or the database table).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fedtab.errors import ConfigError
from fedtab.report import ReportEntry, describe_model_file, write_report
from fedtab.tracking.client import mlflow_errors, open_client
from fedtab.tracking.models import MODEL_SHA_TAG, sha256_of
from fedtab.tracking.options import TrackingRequest

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from fedtab.scoring import Evaluation


def log_evaluation(request: TrackingRequest, evaluations: Sequence[tuple[str, Evaluation]],
                   shown: Mapping[str, Mapping[str, Any]], notes: Sequence[str], data: str,
                   report_path: Path | None) -> str | None:
    """Log an evaluation into its model's run when ``request`` asks for it; returns the run id.

    ``evaluations`` are ``(name, Evaluation)`` with ``"model"`` first; ``shown`` their metrics
    with intervals; ``data`` the holdout as ``evaluate`` names it (a path, or a database URL
    with its password masked and the table or query); ``report_path`` the HTML report already
    written, if any (else one is written to a temporary folder for the run).

    Raises:
        ConfigError: MLflow is missing or refuses, or no run holds the model.
    """
    if not request.enabled:
        return None
    client, uri = open_client(request.uri or "")
    model_path = evaluations[0][1].model.path
    with mlflow_errors(uri):
        run_id = request.run_id or find_model_run(client, model_path, uri)
        metrics = {}
        for name, evaluation in evaluations:
            prefix = "evaluate." if name == "model" else f"evaluate.{name}."
            metrics.update({prefix + k: float(v) for k, v in evaluation.metrics.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)})
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        where = f"evaluate/{holdout_name(data)}"
        client.log_dict(run_id, {name: dict(m) for name, m in shown.items()},
                        f"{where}/evaluation.json")
        if report_path is not None:
            client.log_artifacts(run_id, str(report_path.parent), where)
        else:
            with tempfile.TemporaryDirectory(prefix="fedtab-report-") as tmp:
                _write_report(Path(tmp), evaluations, shown, notes, data)
                client.log_artifacts(run_id, tmp, where)
    click.echo(f"MLflow: evaluation logged into run {run_id} at {uri}", err=True)
    return run_id


def find_model_run(client: MlflowClient, model_path: Path, uri: str) -> str:
    """The id of the latest run tagged with ``model_path``'s SHA-256.

    Raises:
        ConfigError: no run carries it.
    """
    from mlflow.entities import ViewType

    sha = sha256_of(model_path)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{MODEL_SHA_TAG}` = '{sha}'",
        run_view_type=ViewType.ALL, max_results=1, order_by=["attributes.start_time DESC"],
    ) if experiments else []
    if not runs:
        raise ConfigError(
            f"no MLflow run at {uri} logged model {model_path} (sha256 {sha[:12]}...); "
            "give the run with --mlflow-run-id"
        )
    return str(runs[0].info.run_id)


def _write_report(folder: Path, evaluations: Sequence[tuple[str, Evaluation]],
                  shown: Mapping[str, Mapping[str, Any]], notes: Sequence[str],
                  data: str) -> Path:
    entries = [
        ReportEntry(name, str(e.model.path), e.model.kind, e.y, e.scores, shown[name],
                    describe_model_file(e.model.path))
        for name, e in evaluations
    ]
    return write_report(folder, entries, data, notes=notes)


def holdout_name(data: str) -> str:
    """The artifact folder name of a holdout: a file's name without suffix, a database
    table's name, or ``query``."""
    location, _, rest = data.partition(" ")
    if "://" not in location:
        return _safe(Path(data).stem)
    kind, _, name = rest.partition(" ")
    return _safe(name) if kind == "table" else "query"


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned.strip(".") or "holdout"
