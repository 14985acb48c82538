"""The secure-sum backend seam: the in-process run goes through the same shard decryption and
sealing as the gRPC path, shards are bound to the aggregate they decrypt, and the aggregator
keeps exactly the aggregates of the current segment (the replay contract), with real keys."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_aggregator_coordinator import (
    BANKS,
    SPEC,
    Bank,
    FakeClock,
    banks,  # noqa: F401  (the module-scoped fixture)
    context,
    make_coordinator,
    request_for,
    run_step,
    start_job,
    vector,
)

from aggregator.checkpoint import JobStore
from aggregator.coordinator import Coordinator
from bank_node.agent import _JobRun
from fedtab.errors import ProtocolError
from fedtab.protocol.local_runner import run_encrypted, run_plaintext
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest
from fedtab.securesum.sealing import generate_shard_key
from fedtab.transport.messages import DownloadKind, JobAssignment

STEPS = 3


class SumTrainer:
    """A job of ``STEPS`` secure sums of a bank's fixed vector; proposes the rounded sum."""

    def __init__(self, bank: str, segments: tuple[str, ...] = ("",) * STEPS) -> None:
        self.bank = bank
        self.segments = segments
        self.done: list[JsonDict] = []
        self.proposed: list[str] = []

    def next_request(self) -> SumRequest | None:
        k = len(self.done)
        if k >= len(self.segments):
            return None
        return request_for(k, self.segments[k])

    def contribution(self, request: SumRequest) -> np.ndarray:
        return vector(self.bank, len(self.done))

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        self.proposed.append(request.step_id)
        return {"sum": [round(float(x), 6) for x in aggregate]}

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        self.done.append(proposal)

    def result(self) -> dict[str, bytes]:
        return {"sums.txt": repr([p["sum"] for p in self.done]).encode()}


def test_in_process_run_decrypts_and_seals_one_shard_per_bank(small_private_key) -> None:
    outcome = run_encrypted({b: SumTrainer(b) for b in BANKS}, small_private_key)
    assert outcome.stats.steps == STEPS
    assert outcome.stats.shards == STEPS * len(BANKS)
    assert outcome.artifacts == run_plaintext({b: SumTrainer(b) for b in BANKS}).artifacts
    first = outcome.commits[0][1]["sum"]
    np.testing.assert_allclose(first, sum(vector(b, 0) for b in BANKS), atol=1e-5)


def test_a_bank_with_a_wrong_shard_key_fails_the_in_process_run(small_private_key) -> None:
    trainers = {b: SumTrainer(b) for b in BANKS}
    with pytest.raises(ProtocolError, match="sealed shard failed authentication"):
        run_encrypted(trainers, small_private_key, shard_keys={"bank_b": generate_shard_key()})
    assert all(t.done == [] for t in trainers.values())  # nothing was committed


def test_a_shard_is_bound_to_the_aggregate_it_decrypts(small_private_key, banks) -> None:  # noqa: F811
    """A shard made from one aggregate does not open against another (issue 11 item 9)."""
    coord = make_coordinator(small_private_key)
    job_id = start_job(coord)
    request = SumRequest("step/0", 5, SPEC, segment="sum")
    ctx = context(coord, job_id, 0, request)
    bank_a, bank_b = banks["bank_a"], banks["bank_b"]

    def aggregate(offset: float) -> bytes:
        sides = [banks[b].side for b in BANKS]
        parts = [coord.backend.validate(ctx, s.contribute(ctx, vector(s.bank, 0) + offset))
                 for s in sides]
        return coord.backend.add(ctx, parts).data

    honest, other = aggregate(0.0), aggregate(1.0)
    shares = [banks[b].side.decrypt_share(ctx, honest) for b in BANKS]
    np.testing.assert_allclose(bank_a.side.combine(ctx, honest, shares),
                               sum(vector(b, 0) for b in BANKS), atol=1e-5)
    swapped = [bank_b.side.decrypt_share(ctx, other) if s.bank == "bank_b" else s
               for s in shares]
    with pytest.raises(ProtocolError, match="failed authentication"):
        bank_a.side.combine(ctx, honest, swapped)


def segmented_run(coord: Coordinator, banks: dict[str, Bank],  # noqa: F811
                  segments: list[str] | tuple[str, ...]) -> str:
    """Run a job whose step k has ``segments[k]`` through the coordinator."""
    import test_aggregator_coordinator as unit

    with pytest.MonkeyPatch.context() as patch:
        original = unit.request_for
        patch.setattr(unit, "request_for", lambda k, segment="": original(k, segments[k]))
        job_id = start_job(coord)
        for k in range(len(segments)):
            run_step(coord, banks, job_id, k)
    return job_id


def kept(coord: Coordinator, state: Path, job_id: str) -> tuple[list[int], list[int]]:
    """The committed steps whose aggregates the coordinator keeps: in memory, on disk."""
    memory = sorted(coord._jobs[job_id].aggregates)
    disk = sorted(int(p.stem) for p in (state / "jobs" / job_id / "steps").glob("*.agg"))
    return memory, disk


@pytest.mark.parametrize(("segments", "expected"), [
    (["t0", "t0", "t1", "t1", "t1"], [2, 3, 4]),
    (["t0", "t0", "t1", ""], []),
    (["", "t0"], [1]),
    (["t0"] * 35, list(range(35))),  # a segment longer than any former window: no limit
])
def test_the_aggregator_keeps_exactly_the_current_segment(
        small_private_key, banks, tmp_path, segments, expected) -> None:  # noqa: F811
    coord = make_coordinator(small_private_key, tmp_path)
    job_id = segmented_run(coord, banks, segments)
    assert kept(coord, tmp_path, job_id) == (expected, expected)
    for index in range(len(segments)):
        if index in expected:
            assert coord.download(banks["bank_a"].caller, DownloadKind.AGGREGATE, job_id,
                                  index, 0)
    resumed = make_coordinator(small_private_key, tmp_path)
    assert sorted(resumed._jobs[job_id].aggregates) == expected


def test_a_rejoining_bank_replays_the_trailing_segment_only(small_private_key, banks,  # noqa: F811
                                                            tmp_path) -> None:
    segments = ("t0", "t0", "t1", "t1")
    coord = make_coordinator(small_private_key, tmp_path, clock=FakeClock())
    job_id = segmented_run(coord, banks, segments)
    bank = banks["bank_a"]
    client = SimpleNamespace(
        download=lambda kind, job, step_index=0, from_index=0: coord.download(
            bank.caller, kind, job, step_index, from_index))
    agent = SimpleNamespace(name=bank.name, client=client, public_key=small_private_key.public,
                            secure_sum=bank.side, poll_seconds=0.0, _stop=threading.Event(),
                            _progress=lambda line: None)
    trainer = SumTrainer(bank.name, segments)
    run = _JobRun(agent, JobAssignment(job_id, {}, BANKS),  # type: ignore[arg-type]
                  JobContext(job_id, bank.name, BANKS), trainer)  # type: ignore[arg-type]
    run.catch_up()
    assert run.index == len(segments)
    assert trainer.proposed == ["step/2", "step/3"]  # re-derived from re-decrypted aggregates
    assert len(trainer.done) == len(segments)
    # A re-derived proposal that differs from the committed one stops the bank.
    liar = SumTrainer(bank.name, segments)
    liar.propose = lambda request, aggregate: {"sum": []}  # type: ignore[method-assign]
    run = _JobRun(agent, JobAssignment(job_id, {}, BANKS),  # type: ignore[arg-type]
                  JobContext(job_id, bank.name, BANKS), liar)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="another proposal than the committed one"):
        run.catch_up()


def test_the_checkpoint_write_order_keeps_a_committed_segment_whole(small_private_key,
                                                                    banks, tmp_path) -> None:  # noqa: F811
    """The aggregate is written before its step, pruning after it."""
    calls: list[str] = []

    class Recording(JobStore):
        def save_aggregate(self, job_id: str, index: int, aggregate: bytes) -> None:
            calls.append(f"agg {index}")
            super().save_aggregate(job_id, index, aggregate)

        def save_step(self, job_id, step) -> None:  # type: ignore[no-untyped-def]
            calls.append(f"step {step.index}")
            super().save_step(job_id, step)

        def prune_aggregates(self, job_id, keep) -> None:  # type: ignore[no-untyped-def]
            calls.append(f"prune {list(keep)}")
            super().prune_aggregates(job_id, keep)

    coord = Coordinator("c-1", BANKS, small_private_key.public, store=Recording(tmp_path),
                        bank_timeout=60.0, clock=FakeClock())
    segmented_run(coord, banks, ["t0", ""])
    assert calls == ["agg 0", "step 0", "prune [0]", "step 1", "prune []"]


def test_the_aggregator_side_imports_no_decryption_code() -> None:
    """The backend's aggregator module and the step state do not import the decryptor
    directly (the fresh-interpreter check over all aggregator modules is in the layering
    tests)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    for module in ("fedtab/securesum/shared_key_aggregator.py", "fedtab/securesum/shards.py",
                   "fedtab/securesum/base.py", "fedtab/protocol/step_state.py",
                   "fedtab/protocol/exchange.py", "aggregator/coordinator.py"):
        tree = ast.parse((root / module).read_text())
        names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        names |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                  for a in node.names}
        assert not {n for n in names if n and ("decryptor" in n or "shared_key_bank" in n)}, \
            module
