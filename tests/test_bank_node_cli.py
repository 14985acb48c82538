"""The ``bank join``, ``aggregator serve`` and ``run`` commands at the edge: bad input gives one
line and a non-zero exit; two-bank consortia need the override."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import InProcessConsortium, make_frames, new_consortium, write_job, write_tables

from fedtab.cli.main import cli


@pytest.fixture(scope="module")
def two_banks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    frames = make_frames(banks=("bank_a", "bank_b"), rows=120)
    contract, tables = write_tables(root / "data", frames)
    consortium = new_consortium(
        root / "consortium", contract, banks=("bank_a", "bank_b"), key_bits=1024
    )
    return {"consortium": consortium, "tables": tables, "root": root}


def test_bank_join_refuses_a_table_that_breaks_the_contract(
    two_banks: dict, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    text = two_banks["tables"]["bank_a"].read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[2], "teleport")  # unknown category
    bad.write_text("\n".join(text) + "\n")
    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        [
            "bank",
            "join",
            str(two_banks["consortium"] / "banks" / "bank_a"),
            "--data",
            str(bad),
            "--aggregator",
            "127.0.0.1:9",
        ],
    )
    assert result.exit_code == 5, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: DataContractError")
    assert "channel" in lines[0]
    assert time.monotonic() - started < 10  # nothing was sent: no connection attempts


def test_aggregator_serve_rejects_a_bad_listen_address(two_banks: dict) -> None:
    result = CliRunner().invoke(
        cli,
        ["aggregator", "serve", str(two_banks["consortium"] / "aggregator"), "--listen", "nowhere"],
    )
    assert result.exit_code == 2
    assert "error: ConfigError" in result.output


def test_aggregator_refuses_a_bank_folder(two_banks: dict) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "aggregator",
            "serve",
            str(two_banks["consortium"] / "banks" / "bank_a"),
            "--listen",
            "127.0.0.1:0",
        ],
    )
    assert result.exit_code != 0
    assert result.output.startswith("error: ")


def test_run_with_two_banks_needs_the_override(two_banks: dict, tmp_path: Path) -> None:
    consortium = two_banks["consortium"]

    def consent(agent) -> None:  # bank join --allow-two-banks
        agent.policy.allow_two_banks = True

    with InProcessConsortium(consortium, two_banks["tables"], on_agent=consent) as cons:
        plain = write_job(tmp_path / "plain.toml")
        result = CliRunner().invoke(
            cli,
            [
                "run",
                str(consortium / "operator"),
                str(plain),
                "--aggregator",
                cons.address,
                "--out",
                str(tmp_path / "out"),
            ],
        )
        assert result.exit_code == 7, result.output
        assert "allow_two_banks" in result.output
        override = write_job(tmp_path / "two.toml", extra_job="allow_two_banks = true")
        result = CliRunner().invoke(
            cli,
            [
                "run",
                str(consortium / "operator"),
                str(override),
                "--aggregator",
                cons.address,
                "--out",
                str(tmp_path / "out"),
                "--timeout",
                "60",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "warning: two banks" in result.output
        result_json = json.loads((tmp_path / "out" / "result.json").read_text())
        assert result_json["rows_total"] == 120 + 157


def test_progress_lines_show_round_and_eta() -> None:
    from fedtab.cli.progress import JobProgress, describe
    from fedtab.jobs import JobSpec
    from fedtab.transport.messages import JobStatus

    status = JobStatus(
        "job-1",
        "running",
        step_index=12,
        step_id="tree/4/depth/2/grads",
        phase="decrypt",
        elapsed_seconds=50.0,
        waiting_for=("bank_b",),
    )
    line = describe(status, JobProgress(JobSpec("gbdt", {"n_estimators": 10})).round_of(status))
    assert "step 12" in line and "tree 5/10" in line and "ETA 75s" in line
    assert "waiting for bank_b" in line
    waiting = JobStatus("job-1", "waiting", waiting_for=("bank_a", "bank_c"))
    assert describe(waiting).endswith("waiting for banks: bank_a, bank_c")


def test_progress_printer_prints_once_per_tree(capsys: pytest.CaptureFixture[str]) -> None:
    from fedtab.cli.progress import JobProgress, ProgressPrinter
    from fedtab.jobs import JobSpec
    from fedtab.transport.messages import JobStatus

    printer = JobProgress(JobSpec("gbdt", {"n_estimators": 2}), ProgressPrinter(every=3600.0))
    step_ids = ["bins", "", "tree/0/depth/0/counts", "", "tree/0/depth/0/grads", "",
                "tree/1/depth/0/counts", "tree/1/depth/0/grads"]
    for index, step_id in enumerate(step_ids):
        printer(JobStatus(job_id="j", state="running", step_index=index, step_id=step_id,
                          elapsed_seconds=float(index + 1)))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # bins, tree 1/2, tree 2/2
    assert "tree 2/2" in lines[-1] and "ETA" in lines[-1]


def test_join_gives_up_on_an_unreachable_aggregator(two_banks: dict) -> None:
    """An aggregator that never answers: one line, exit code 8, within the bound."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "fedtab.cli.main", "bank", "join",
         str(two_banks["consortium"] / "banks" / "bank_a"), "--data",
         str(two_banks["tables"]["bank_a"]), "--aggregator", f"127.0.0.1:{port}",
         "--give-up-after", "2"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert time.monotonic() - started < 60
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 8, result.stderr
    assert len(errors) == 1 and "unreachable" in errors[0]
    assert "Traceback" not in result.stderr
