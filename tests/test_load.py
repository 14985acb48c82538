"""Load, reduced for the suite: ``scripts/bench_load.py`` with 10 bank processes (2,000 rows
each, 1024-bit key, a small GBDT job) completes and reports time and peak memory per process.

The full figure (10 banks x 50,000 rows, 2048-bit key) is ``python scripts/bench_load.py``;
see ``docs/SECURITY.md`` for the measured numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from harness import REPO, SINGLE_THREAD_ENV

pytestmark = pytest.mark.slow


def test_ten_banks_complete_and_report_memory() -> None:
    import os

    params = '{"n_estimators": 2, "max_depth": 2, "max_bin": 16}'
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_load.py"), "--json", "--banks", "10",
         "--rows", "2000", "--key-bits", "1024", "--params", params, "--timeout", "300"],
        capture_output=True, text=True, timeout=600, cwd=REPO, check=False,
        env={**os.environ, **SINGLE_THREAD_ENV},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["state"] == "done" and figures["steps"] > 0
    assert figures["rows_total"] == 20_000
    assert figures["artifacts"]["model.json"] > 0
    peaks = figures["peak_rss_mib"]
    assert sorted(peaks) == sorted(["aggregator", "operator (this process)",
                                    *(f"bank_{i:02d}" for i in range(10))])
    assert all(30 < value < 4096 for value in peaks.values()), peaks
    assert figures["job_seconds"] > 0 and figures["startup_seconds"] > 0
    # The aggregator holds no table, key or histogram: it stays well below a bank.
    assert peaks["aggregator"] < figures["bank_peak_rss_mib_max"]
