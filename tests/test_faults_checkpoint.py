"""A damaged checkpoint folder: ``fedtab aggregator serve --state`` refuses to start with one
line naming the job and the problem (exit 10), never a traceback, and leaves every file as it
was — it does not overwrite or "repair" the work it cannot read. Restoring the files lets it
start and serve the finished job again.

Atomic writes mean a crash leaves no half-written checkpoint file (torn temporary files are
ignored: ``test_faults_processes``); these cases are disk damage or hand edits.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import (
    InProcessConsortium,
    make_frames,
    new_consortium,
    run_fedtab,
    start_aggregator,
    stop_all,
    write_tables,
)

from fedtab.errors import CheckpointError
from fedtab.jobs import JobSpec


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A consortium and the checkpoint folder of one finished profile job."""
    root = tmp_path_factory.mktemp("checkpoint")
    contract, tables = write_tables(root / "data", make_frames(seed=2, rows=90))
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    state = root / "state"
    with InProcessConsortium(consortium, tables, state_dir=state) as cons, \
            cons.operator_client() as client:
        job_id = client.submit(JobSpec(kind="profile"))
        assert client.wait(job_id, timeout=60).state == "done"
        artifacts = client.fetch_artifacts(job_id)
    return {"consortium": consortium, "state": state, "job_id": job_id, "artifacts": artifacts}


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _truncate_step(job: Path) -> None:
    path = job / "steps" / "000001.json"
    path.write_bytes(path.read_bytes()[:20])


def _lose_step(job: Path) -> None:
    (job / "steps" / "000000.json").unlink()


def _empty_record(job: Path) -> None:
    (job / "job.json").write_text("{}\n")


def _unknown_state(job: Path) -> None:
    path = job / "job.json"
    path.write_text(path.read_text().replace('"state":"done"', '"state":"exploded"'))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated step file": (_truncate_step, "unreadable: steps/000001.json: "),
    "a committed step lost": (_lose_step, "committed step 0 is missing"),
    "job record without fields": (_empty_record, "unreadable"),
    "job record with an unknown state": (_unknown_state, "unreadable"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_is_refused_and_left_alone(finished: dict[str, Any], tmp_path: Path,
                                                      case: str) -> None:
    state = tmp_path / "state"
    shutil.copytree(finished["state"], state)
    damage, expect = DAMAGE[case]
    damage(state / "jobs" / finished["job_id"])
    before = digests(state)
    done = run_fedtab(["aggregator", "serve", str(finished["consortium"] / "aggregator"),
                       "--listen", "127.0.0.1:0", "--state", str(state)], timeout=60)
    assert done.returncode == CheckpointError.exit_code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CheckpointError: "), lines
    assert finished["job_id"] in lines[0] and expect in lines[0], lines[0]
    assert digests(state) == before
    print(f"\n{case}: {lines[0]}")


def test_intact_checkpoint_serves_the_finished_job(finished: dict[str, Any],
                                                   tmp_path: Path) -> None:
    from fedtab.consortium import load_operator_bundle
    from fedtab.transport.operator_client import OperatorClient

    state = tmp_path / "state"
    shutil.copytree(finished["state"], state)
    aggregator, address = start_aggregator(finished["consortium"], tmp_path / "logs", state)
    try:
        bundle = load_operator_bundle(finished["consortium"] / "operator")
        with OperatorClient(bundle, address, unavailable_grace=30) as client:
            assert client.status(finished["job_id"]).state == "done"
            assert client.fetch_artifacts(finished["job_id"]) == finished["artifacts"]
    finally:
        stop_all([aggregator])
