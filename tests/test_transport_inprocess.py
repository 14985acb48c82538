"""The gRPC service, bank agents and operator client in one process (mTLS on loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from harness import (
    BANKS,
    InProcessConsortium,
    local_reference,
    make_frames,
    new_consortium,
    write_tables,
)

from fedtab.jobs import JobSpec


@pytest.fixture(scope="module")
def small_consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path],
                                                                          dict[str, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("inproc")
    frames = make_frames()
    contract, tables = write_tables(root / "data", frames)
    consortium = new_consortium(root / "consortium", contract, key_bits=1024)
    return consortium, tables, frames


def expected_profile(frames: dict[str, pd.DataFrame]) -> dict[str, object]:
    pooled = pd.concat(list(frames.values()), ignore_index=True)
    return {
        "rows": len(pooled),
        "positives": int(pooled["y"].sum()),
        "amount": (pooled["amount"].mean(), pooled["amount"].std()),
        "age": (pooled["age"].mean(), pooled["age"].std()),
    }


def check_profile(result: dict, frames: dict[str, pd.DataFrame]) -> None:
    want = expected_profile(frames)
    assert result["rows_total"] == want["rows"]
    assert result["positives_total"] == want["positives"]
    for name in ("amount", "age"):
        mean, std = want[name]  # type: ignore[misc]
        assert result["features"][name]["mean"] == pytest.approx(mean, rel=1e-6)
        assert result["features"][name]["std"] == pytest.approx(std, rel=1e-6)


def test_profile_job_over_grpc(small_consortium, tmp_path: Path) -> None:
    consortium, tables, frames = small_consortium
    with InProcessConsortium(consortium, tables, state_dir=tmp_path / "state") as cons, \
            cons.operator_client() as client:
        job_id = client.submit(JobSpec(kind="profile"))
        seen = []
        final = client.wait(job_id, seen.append, timeout=120)
        artifacts = client.fetch_artifacts(job_id)
    assert final.state == "done"
    assert final.step_index == 2
    assert final.traffic["upload_contribution_bytes"] > 0
    assert final.traffic["download_shards_bytes"] > 0
    assert final.traffic["ciphertexts_summed"] >= 2
    assert any(s.state == "running" for s in seen)
    check_profile(json.loads(artifacts["result.json"]), frames)
    steps = sorted((tmp_path / "state" / "jobs" / job_id / "steps").glob("*.json"))
    assert [p.name for p in steps] == ["000000.json", "000001.json"]
    assert (tmp_path / "state" / "jobs" / job_id / "artifacts" / "result.json").read_bytes() \
        == artifacts["result.json"]


def test_job_waits_for_missing_bank_then_runs(small_consortium) -> None:
    consortium, tables, frames = small_consortium
    with InProcessConsortium(consortium, tables, start_banks=BANKS[:2]) as cons, \
            cons.operator_client() as client:
        job_id = client.submit(JobSpec(kind="profile"))
        deadline = time.monotonic() + 30
        status = client.status(job_id)
        while status.waiting_for != (BANKS[2],) and time.monotonic() < deadline:
            status = client.status(job_id, wait=1.0, known_version=status.version)
        assert status.state == "waiting"
        assert status.waiting_for == (BANKS[2],)
        cons.start_bank(BANKS[2])
        final = client.wait(job_id, timeout=120)
        assert final.state == "done"
        check_profile(json.loads(client.fetch_artifacts(job_id)["result.json"]), frames)


GBDT = {"n_estimators": 3, "max_depth": 3, "max_bin": 16, "learning_rate": 0.3}


def test_gbdt_job_equals_local_runner(small_consortium) -> None:
    consortium, tables, _ = small_consortium
    spec = JobSpec(kind="gbdt", params=GBDT, seed=3)
    with InProcessConsortium(consortium, tables) as cons, cons.operator_client() as client:
        job_id = client.submit(spec)
        client.wait(job_id, timeout=120)
        artifacts = client.fetch_artifacts(job_id)
    assert artifacts == local_reference(consortium, tables, spec, job_id)


def test_bank_restarting_mid_job_catches_up(small_consortium, tmp_path: Path) -> None:
    consortium, tables, _ = small_consortium
    spec = JobSpec(kind="gbdt", params=GBDT, seed=3)
    state = tmp_path / "state"
    with InProcessConsortium(consortium, tables, state_dir=state) as cons, \
            cons.operator_client() as client:
        job_id = client.submit(spec)
        status = client.status(job_id)
        while status.step_index < 3 and status.state not in ("done", "failed"):
            status = client.status(job_id, wait=2.0, known_version=status.version)
        assert status.state == "running"
        cons.stop_bank(BANKS[1])  # mid-tree: depth-1 histograms are cached by propose()
        cons.start_bank(BANKS[1])
        final = client.wait(job_id, timeout=120)
        artifacts = client.fetch_artifacts(job_id)
    assert final.state == "done"
    assert artifacts == local_reference(consortium, tables, spec, job_id)


def test_bank_rejoining_when_the_replay_window_starts_mid_tree(small_consortium,
                                                              tmp_path: Path) -> None:
    """A rejoin late in a long job: the replay window's first steps belong to an older tree."""
    consortium, tables, _ = small_consortium
    spec = JobSpec(kind="gbdt", params={**GBDT, "n_estimators": 12}, seed=5)
    with InProcessConsortium(consortium, tables, state_dir=tmp_path / "state") as cons, \
            cons.operator_client() as client:
        job_id = client.submit(spec)
        status = client.status(job_id)
        while status.step_index < 50 and status.state not in ("done", "failed"):
            status = client.status(job_id, wait=2.0, known_version=status.version)
        assert status.state == "running"
        cons.stop_bank(BANKS[2])
        cons.start_bank(BANKS[2])
        final = client.wait(job_id, timeout=180)
        artifacts = client.fetch_artifacts(job_id)
    assert final.state == "done"
    assert final.step_index > 50 + 5
    assert artifacts == local_reference(consortium, tables, spec, job_id)


def test_trainer_error_fails_the_job_with_its_reason(small_consortium) -> None:
    from fedtab.errors import JobFailedError

    consortium, tables, _ = small_consortium
    with InProcessConsortium(consortium, tables) as cons, cons.operator_client() as client:
        job_id = client.submit(JobSpec(kind="gbdt", params={"max_depth": -4}))
        with pytest.raises(JobFailedError, match=r"cannot continue.*max_depth"):
            client.wait(job_id, timeout=60)
        # The banks stay attached and serve the next job.
        job_id = client.submit(JobSpec(kind="profile"))
        assert client.wait(job_id, timeout=60).state == "done"


def test_operator_cancels_a_waiting_job_over_grpc_and_the_cli(small_consortium) -> None:
    from harness import run_fedtab

    from fedtab.errors import JobFailedError, ProtocolError

    consortium, tables, _ = small_consortium
    with InProcessConsortium(consortium, tables, start_banks=BANKS[:2]) as cons, \
            cons.operator_client() as client:
        stuck = client.submit(JobSpec(kind="profile"))
        behind = client.submit(JobSpec(kind="profile"))
        status = client.cancel(stuck, "bank maintenance")
        assert status.state == "failed" and status.message.endswith(": bank maintenance")
        with pytest.raises(JobFailedError, match="cancelled by the operator"):
            client.wait(stuck, timeout=10)
        done = run_fedtab(["run", str(consortium / "operator"), "--aggregator", cons.address,
                           "--cancel", behind, "--reason", "not today"], timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"job {behind} failed: cancelled by the operator at step 0: not today" \
            in done.stderr
        # The banks that are attached run the next job once the missing one joins.
        cons.start_bank(BANKS[2])
        job_id = client.submit(JobSpec(kind="profile"))
        assert client.wait(job_id, timeout=60).state == "done"
        with pytest.raises(ProtocolError, match="already done"):
            client.cancel(job_id)
