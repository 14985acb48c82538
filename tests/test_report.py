"""The HTML report: self-contained, two decodable PNG plots, renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedtab.errors import ConfigError
from fedtab.metrics import evaluate_scores
from fedtab.report import ReportEntry, format_table, write_report

MODEL_BLUE = (0x1F, 0x5F, 0xBF)
BASELINE_ORANGE = (0xD9, 0x73, 0x1A)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _entries() -> list[ReportEntry]:
    rng = np.random.default_rng(8)
    y = (rng.random(5_000) < 0.02).astype(float)
    out = []
    for name, strength in (("model", 3.0), ("baseline", 1.2)):
        scores = 1 / (1 + np.exp(-(rng.normal(-4, 1.2, y.size) + strength * y)))
        out.append(ReportEntry(name, f"/models/{name}.json", "xgboost", y, scores,
                               evaluate_scores(y, scores)))
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tmp_path_factory.mktemp("report"), _entries(), "/data/holdout<&>.csv")


def _embedded_pngs(page: str) -> list[Image.Image]:
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)
    assert len(sources) == 2 == page.count("<img")
    images = []
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(data))
        image.load()
        images.append(image.convert("RGB"))
    return images


def _near(pixels: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> int:
    """How many pixels are within ``tol`` of ``colour`` on every channel."""
    return int(np.all(np.abs(pixels.astype(int) - np.array(colour)) <= tol, axis=-1).sum())


def test_html_is_self_contained_with_two_png_plots(report: Path) -> None:
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "holdout&lt;&amp;&gt;.csv" in page  # paths are escaped
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loaded from elsewhere
    for image in _embedded_pngs(page):
        pixels = np.asarray(image)
        assert image.size[0] >= 400 and image.size[1] >= 300
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
        assert _near(pixels, MODEL_BLUE) > 200 and _near(pixels, BASELINE_ORANGE) > 200
    for name in ("roc.png", "pr.png"):
        assert (report.parent / name).read_bytes().startswith(b"\x89PNG")
    assert "0.1% FPR" in page and "PR-AUC" in page
    assert not list(report.parent.glob(".*tmp"))


def test_text_table_lines_up_models() -> None:
    entries = _entries()
    text = format_table([(e.name, e.metrics) for e in entries])
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "model", "baseline"]
    roc = next(line for line in lines if line.startswith("ROC-AUC"))
    assert roc.split()[1:] == [f"{e.metrics['roc_auc']:.4f}" for e in entries]
    assert len({len(line) for line in lines[:2]}) == 1


def test_write_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_report(tmp_path, [], "x.csv")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the report"):
        write_report(blocker, _entries(), "x.csv")


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (run scripts/install_chromium.sh as root; CI does)")
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,1600", report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1600, 1200, 3)
    # The plots sit side by side below the table: each half of the page must show both curves
    # (the model's blue and the baseline's orange) and the detail of a rendered chart.
    middle = pixels[:, :600], pixels[:, 600:]
    for half in middle:
        assert _near(half, MODEL_BLUE) > 300, "model curve not visible"
        assert _near(half, BASELINE_ORANGE) > 300, "baseline curve not visible"
        assert len(np.unique(half.reshape(-1, 3), axis=0)) > 150


def test_report_says_what_was_evaluated(tmp_path: Path) -> None:
    import json

    from fedtab.report import describe_model_file

    model = tmp_path / "model.json"
    meta = {"job_id": "job-0007-abc", "bank_names": ["metro_bank", "rural_bank"]}
    model.write_text(json.dumps({"learner": {"attributes": {"fedtab": json.dumps(meta)}}}))
    about = describe_model_file(model)
    assert about.startswith("job job-0007-abc, trained by metro_bank, rural_bank; file dated ")
    assert about.endswith(" UTC")
    logreg = tmp_path / "logreg.json"
    logreg.write_text(json.dumps({"kind": "logreg", "rows_total": 1200}))
    assert describe_model_file(logreg).startswith("trained on 1200 rows; file dated ")
    assert describe_model_file(tmp_path / "missing.json") == ""
    entries = [ReportEntry(**{**e.__dict__, "about": about}) for e in _entries()]
    page = write_report(tmp_path / "rep", entries, "h.csv", notes=["warning: few"]).read_text()
    assert "job-0007-abc" in page and "warning: few" in page
    n, frauds = entries[0].metrics["n_rows"], entries[0].metrics["n_positive"]
    assert f"{n} rows, {frauds} frauds" in page
