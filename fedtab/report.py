"""Presenting holdout evaluations: a text table for the terminal and a self-contained HTML page.

The HTML report (``report.html``) compares a model with an optional baseline: a metrics table
(with bootstrap intervals where the metrics dict carries ``intervals``, and notes such as a
few-frauds warning or a paired difference) and the ROC and precision-recall curves as PNG
images embedded as base64 data URIs, so the one file can be mailed or archived. The PNGs are
also written beside it. Plots use matplotlib's Agg canvas directly (no pyplot state, no
display needed). Every file is written atomically.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedtab.atomic import atomic_write_bytes, atomic_write_text
from fedtab.errors import ConfigError
from fedtab.metrics import INTERVAL_METRICS, curves

# (key, label, format); "confusion" is rendered from confusion_at_best_f1.
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("roc_auc", "ROC-AUC", ".4f"),
    ("pr_auc", "PR-AUC (average precision)", ".4f"),
    ("recall_at_fpr_0_001", "recall at 0.1% FPR", ".4f"),
    ("recall_at_fpr_0_01", "recall at 1% FPR", ".4f"),
    ("precision_at_100", "precision in top 100", ".4f"),
    ("precision_at_1pct", "precision in top 1%", ".4f"),
    ("best_f1", "best F1", ".4f"),
    ("best_f1_threshold", "best-F1 threshold", ".4g"),
    ("confusion", "TP / FP / FN / TN at best F1", ""),
    ("brier", "Brier score (lower is better)", ".5f"),
    ("n_rows", "rows", "d"),
    ("n_positive", "frauds", "d"),
)
STYLES: tuple[tuple[str, str], ...] = (("#1f5fbf", "-"), ("#d9731a", "--"), ("#3a9a3a", ":"))
MIN_LOG_FPR = 1e-4


@dataclass(frozen=True)
class ReportEntry:
    """One evaluated model: its name in the report, source file, labels, scores and metrics.

    ``y`` and ``scores`` have shape ``(n_rows,)``; ``metrics`` is
    :func:`fedtab.metrics.evaluate_scores`' dict.
    """

    name: str
    source: str
    kind: str
    y: np.ndarray
    scores: np.ndarray
    metrics: Mapping[str, Any]
    about: str = ""


def describe_model_file(path: Path) -> str:
    """Where a model file comes from, as far as it says: the fedtab job and its banks (GBDT
    models record them), the rows it was trained on (logreg) and the file's date (UTC)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        stamp = Path(path).stat().st_mtime
    except (OSError, ValueError):
        return ""
    doc = doc if isinstance(doc, dict) else {}
    learner = doc.get("learner")
    learner = learner if isinstance(learner, dict) else {}
    try:
        meta = json.loads((learner.get("attributes") or {}).get("fedtab") or "{}")
    except (ValueError, AttributeError):
        meta = {}
    parts = []
    if isinstance(meta, dict) and meta.get("job_id"):
        banks = ", ".join(str(b) for b in meta.get("bank_names", [])) or "unknown banks"
        parts.append(f"job {meta['job_id']}, trained by {banks}")
    if doc.get("rows_total"):
        parts.append(f"trained on {doc['rows_total']} rows")
    when = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    parts.append(f"file dated {when:%Y-%m-%d %H:%M} UTC")
    return "; ".join(parts)


def format_value(metrics: Mapping[str, Any], key: str, fmt: str) -> str:
    """One metric as text ("-" when absent or None)."""
    if key == "confusion":
        cm = metrics.get("confusion_at_best_f1")
        return "-" if cm is None else f"{cm['tp']} / {cm['fp']} / {cm['fn']} / {cm['tn']}"
    value = metrics.get(key)
    return "-" if value is None else format(value, fmt)


def format_interval(metrics: Mapping[str, Any], key: str) -> str:
    """``metrics['intervals'][key]`` as ``[low, high]`` text ("-" when absent)."""
    bounds = (metrics.get("intervals") or {}).get(key)
    return "-" if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def interval_label(columns: Sequence[Mapping[str, Any]]) -> str | None:
    """The row label of intervals (e.g. ``"  95% interval"``), None if no column has any."""
    for metrics in columns:
        level = metrics.get("interval_confidence")
        if metrics.get("intervals") and level is not None:
            return f"  {level:.0%} interval"
    return None


def metric_rows(columns: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Label and per-column text of every table row, an interval row under metrics that have
    one."""
    label_of_intervals = interval_label(columns)
    with_interval = {key for key, _ in INTERVAL_METRICS}
    rows = []
    for key, label, fmt in METRIC_ROWS:
        rows.append([label, *[format_value(m, key, fmt) for m in columns]])
        if label_of_intervals is not None and key in with_interval:
            rows.append([label_of_intervals, *[format_interval(m, key) for m in columns]])
    return rows


def format_table(columns: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The metrics of one or more models side by side, as aligned plain text."""
    header = ["metric", *[name for name, _ in columns]]
    rows = metric_rows([m for _, m in columns])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0]), *[c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                           strict=True)]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def roc_png(entries: Sequence[ReportEntry]) -> bytes:
    """ROC curves on a log false-positive-rate axis (fraud teams work at FPR <= 1%)."""
    figure = Figure(figsize=(5.6, 4.4))
    ax = figure.add_subplot()
    for entry, (colour, style) in zip(entries, STYLES, strict=False):
        c = curves(entry.y, entry.scores)
        fpr = np.maximum(c.fpr, MIN_LOG_FPR)
        auc = entry.metrics.get("roc_auc", float("nan"))
        ax.plot(fpr, c.tpr, color=colour, linestyle=style, linewidth=2,
                label=f"{entry.name} (AUC {auc:.3f})")
    for target in (0.001, 0.01):
        ax.axvline(target, color="#999999", linewidth=0.8, linestyle=":")
    grid = np.logspace(np.log10(MIN_LOG_FPR), 0, 100)
    ax.plot(grid, grid, color="#bbbbbb", linewidth=1, label="random")
    ax.set_xscale("log")
    ax.set_xlim(MIN_LOG_FPR, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false-positive rate (log scale)")
    ax.set_ylabel("recall (true-positive rate)")
    ax.set_title("ROC curve")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right")
    figure.tight_layout()
    return _png(figure)


def pr_png(entries: Sequence[ReportEntry]) -> bytes:
    """Precision-recall curves with the fraud base rate as the no-skill line."""
    figure = Figure(figsize=(5.6, 4.4))
    ax = figure.add_subplot()
    base_rate = 0.0
    for entry, (colour, style) in zip(entries, STYLES, strict=False):
        c = curves(entry.y, entry.scores)
        base_rate = c.positive_rate
        ap = entry.metrics.get("pr_auc", float("nan"))
        ax.plot(c.recall, c.precision, color=colour, linestyle=style, linewidth=2,
                drawstyle="steps-post", label=f"{entry.name} (AP {ap:.3f})")
    ax.axhline(base_rate, color="#bbbbbb", linewidth=1, label=f"fraud rate {base_rate:.2%}")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curve")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    figure.tight_layout()
    return _png(figure)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 16px 0; }
th, td { padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f3f8; }
ul.notes li { color: #8a4b00; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots figure { margin: 0; }
.plots img { width: 560px; height: auto; border: 1px solid #ddd; }
"""


def render_html(
    entries: Sequence[ReportEntry], data_source: str, roc: bytes, pr: bytes, title: str,
    notes: Sequence[str] = (),
) -> str:
    """The report page: metadata, the metrics table, ``notes`` (warnings, differences) and both
    plots embedded as data URIs."""
    esc = html.escape
    head = "".join(f"<th>{esc(e.name)}</th>" for e in entries)
    body = "\n".join(
        "<tr><td>" + esc(row[0]) + "</td>" + "".join(f"<td>{esc(c)}</td>" for c in row[1:])
        + "</tr>"
        for row in metric_rows([e.metrics for e in entries])
    )
    first = entries[0].metrics
    counts = (f" &middot; {first.get('n_rows', '?')} rows, {first.get('n_positive', '?')} "
              "frauds" if entries else "")
    remarks = "".join(f"<li>{esc(note)}</li>" for note in notes)
    sources = "".join(
        f"<li><b>{esc(e.name)}</b>: {esc(e.kind)} model <code>{esc(e.source)}</code>"
        + (f" ({esc(e.about)})" if e.about else "") + "</li>"
        for e in entries
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">Holdout <code>{esc(data_source)}</code>{counts}</p>
<ul>{sources}</ul>
<ul class="notes">{remarks}</ul>
<table>
<thead><tr><th>metric</th>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
<div class="plots">
<figure><img id="roc" alt="ROC curve" src="{_data_uri(roc)}"></figure>
<figure><img id="pr" alt="Precision-recall curve" src="{_data_uri(pr)}"></figure>
</div>
</body>
</html>
"""


def write_report(
    out_dir: Path,
    entries: Sequence[ReportEntry],
    data_source: str,
    title: str = "fedtab holdout evaluation",
    notes: Sequence[str] = (),
) -> Path:
    """Write ``roc.png``, ``pr.png`` and ``report.html`` into ``out_dir``; return the HTML path.

    ``notes`` are one-line remarks shown above the table (e.g. few-frauds warnings).

    Raises:
        ConfigError: no entries, or ``out_dir`` cannot be written.
    """
    if not entries:
        raise ConfigError("nothing to report: no evaluated model")
    out_dir = Path(out_dir)
    roc, pr = roc_png(entries), pr_png(entries)
    page = render_html(entries, data_source, roc, pr, title, notes)
    target = out_dir / "report.html"
    try:
        atomic_write_bytes(out_dir / "roc.png", roc)
        atomic_write_bytes(out_dir / "pr.png", pr)
        atomic_write_text(target, page)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from exc
    return target
