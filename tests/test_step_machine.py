"""The step-machine base: request check, dispatch, shape check, and the replay contract."""

from __future__ import annotations

import numpy as np
import pytest

from fedtab.consortium_eval.trainer import EvaluateTrainer
from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.errors import ProtocolError
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.logreg.trainer import LogRegTrainer
from fedtab.profiling import ProfileTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.step_machine import FnStep, ProposalCache, Step, StepMachine
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest, replay_indices

ENCODING = EncodingSpec(16, 1000.0, 2)
CHAIN = 3


class ChainTrainer(StepMachine):
    """A toy job: ``setup`` (no segment), then ``chain/0..2`` in segment ``chain``.

    A chain step's proposal depends on the previous chain step's aggregate, which is not in
    any proposal: it is kept by a :class:`ProposalCache`, as GBDT keeps its histograms.
    """

    def __init__(self, bank: int, *, bad_length: bool = False) -> None:
        self.bank = bank
        self.bad_length = bad_length
        self.offset: float | None = None
        self.done: list[float] = []
        self.previous: np.ndarray | None = None
        self.cache: ProposalCache[np.ndarray] = ProposalCache()
        self.proposed: list[str] = []

    def current_step(self) -> Step | None:
        if self.offset is None:
            setup = SumRequest("setup", 1, ENCODING, "an offset")
            return FnStep(setup, self._setup_vector, self._propose_setup, self._commit_setup)
        if len(self.done) < CHAIN:
            request = SumRequest(f"chain/{len(self.done)}", 2, ENCODING, "a pair", "chain")
            return FnStep(request, self._chain_vector, self._propose_chain, self._commit_chain)
        return None

    def result(self) -> dict[str, bytes]:
        return {"done.txt": repr(self.done).encode()}

    def _setup_vector(self) -> np.ndarray:
        return np.array([float(self.bank)])

    def _propose_setup(self, aggregate: np.ndarray) -> JsonDict:
        self.proposed.append("setup")
        return {"offset": float(aggregate[0])}

    def _commit_setup(self, proposal: JsonDict) -> None:
        self.offset = float(proposal["offset"])

    def _chain_vector(self) -> np.ndarray:
        k = len(self.done)
        vector = np.array([self.bank + k, 2.0 * self.bank - k])
        return vector[:1] if self.bad_length else vector

    def _propose_chain(self, aggregate: np.ndarray) -> JsonDict:
        assert aggregate.dtype == np.float64
        if self.done and self.previous is None:
            raise ProtocolError("the previous aggregate is not cached")
        self.proposed.append(f"chain/{len(self.done)}")
        previous = 0.0 if self.previous is None else float(self.previous.max())
        value = float(aggregate.sum()) + previous + (self.offset or 0.0)
        proposal: JsonDict = {"value": value}
        self.cache.keep(proposal, aggregate.copy())
        return proposal

    def _commit_chain(self, proposal: JsonDict) -> None:
        self.previous = self.cache.take(proposal)
        self.done.append(float(proposal["value"]))


class Recorder(ChainTrainer):
    """Keeps every aggregate it is asked to propose from (the aggregator's store)."""

    def __init__(self, bank: int) -> None:
        super().__init__(bank)
        self.aggregates: list[np.ndarray] = []

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        self.aggregates.append(np.array(aggregate, dtype=np.float64))
        return super().propose(request, aggregate)


def live_run() -> tuple[list[tuple[SumRequest, JsonDict]], list[np.ndarray], ChainTrainer]:
    recorder, other = Recorder(1), ChainTrainer(2)
    outcome = run_plaintext({"a": recorder, "b": other})
    return outcome.commits, recorder.aggregates, other


def test_requests_come_from_the_current_step_and_the_check_is_once_for_all() -> None:
    trainer = ChainTrainer(1)
    request = trainer.next_request()
    assert request == SumRequest("setup", 1, ENCODING, "an offset")
    wrong = SumRequest("chain/0", 2, ENCODING, "a pair", "chain")
    for call in (lambda: trainer.contribution(wrong),
                 lambda: trainer.propose(wrong, np.zeros(2)),
                 lambda: trainer.commit(wrong, {"value": 1.0})):
        with pytest.raises(ProtocolError, match=r"unexpected step 'chain/0'.*expects 'setup'"):
            call()
    # same step id, other length: still not the expected request
    with pytest.raises(ProtocolError, match="unexpected step 'setup'"):
        trainer.contribution(SumRequest("setup", 3, ENCODING, "an offset"))
    assert trainer.offset is None and trainer.proposed == []


def test_dispatch_goes_to_the_current_step_and_a_finished_job_refuses_steps() -> None:
    trainer = ChainTrainer(3)
    setup = trainer.next_request()
    assert setup is not None
    vector = trainer.contribution(setup)
    assert vector.dtype == np.float64 and vector.tolist() == [3.0]
    proposal = trainer.propose(setup, np.array([7]))  # integers arrive as float64
    assert proposal == {"offset": 7.0} and trainer.offset is None  # propose changes nothing
    trainer.commit(setup, proposal)
    assert trainer.offset == 7.0
    chain0 = trainer.next_request()
    assert chain0 is not None and (chain0.step_id, chain0.segment) == ("chain/0", "chain")
    assert trainer.contribution(chain0).tolist() == [3.0, 6.0]
    commits, _, finished = live_run()
    assert finished.next_request() is None
    assert finished.done == [float(p["value"]) for _, p in commits[1:]]
    with pytest.raises(ProtocolError, match=r"expects none \(finished\)"):
        finished.commit(commits[-1][0], commits[-1][1])


def test_contribution_and_aggregate_must_have_the_request_length() -> None:
    trainer = ChainTrainer(1, bad_length=True)
    setup = trainer.next_request()
    assert setup is not None
    with pytest.raises(ProtocolError, match=r"aggregate for 'setup' has shape \(2,\)"):
        trainer.propose(setup, np.zeros(2))
    trainer.commit(setup, {"offset": 0.0})
    chain0 = trainer.next_request()
    assert chain0 is not None
    with pytest.raises(ProtocolError, match=r"contribution for 'chain/0' has shape \(1,\), "
                                            r"expected \(2,\)"):
        trainer.contribution(chain0)
    with pytest.raises(ProtocolError, match="has shape"):
        trainer.propose(chain0, np.zeros((1, 2)))


@pytest.mark.parametrize("upto", [1, 2, 3, 4])
def test_restore_replays_the_trailing_segment_then_continues_like_the_live_run(
    upto: int,
) -> None:
    commits, aggregates, live = live_run()
    asked: list[int] = []

    def aggregate_of(index: int) -> np.ndarray:
        asked.append(index)
        return aggregates[index]

    fresh = ChainTrainer(2)
    fresh.restore(commits[:upto], aggregate_of)
    trailing = list(replay_indices([r for r, _ in commits[:upto]]))
    assert asked == trailing == ([] if upto == 1 else list(range(1, upto)))
    assert fresh.proposed == [commits[i][0].step_id for i in trailing]
    assert fresh.done == live.done[: upto - 1]
    request = fresh.next_request()
    if upto == len(commits):
        assert request is None and fresh.result() == live.result()
        return
    assert request == commits[upto][0]
    assert fresh.propose(request, aggregates[upto]) == commits[upto][1]


def test_restore_by_commit_alone_loses_the_cache_of_the_segment() -> None:
    commits, aggregates, _ = live_run()
    blind = ChainTrainer(2)
    for request, proposal in commits[:2]:
        blind.commit(request, proposal)
    request = blind.next_request()
    assert request is not None
    with pytest.raises(ProtocolError, match="not cached"):
        blind.propose(request, aggregates[2])


def test_restore_skips_propose_for_steps_the_trainer_proposed_itself() -> None:
    commits, aggregates, _ = live_run()
    fresh = ChainTrainer(2)
    fresh.restore(commits[:2], lambda i: aggregates[i])
    proposal = fresh.propose(commits[2][0], aggregates[2])  # this bank's own proposal
    fresh.restore(commits[2:3], lambda i: aggregates[i], first_index=2,
                  skip_propose=lambda index: index == 2)
    assert proposal == commits[2][1] and fresh.proposed.count("chain/1") == 1
    assert fresh.done[-1] == commits[2][1]["value"]
    assert fresh.previous is not None  # the cache of its own proposal survived


def test_restore_refuses_a_differing_proposal_and_an_unexpected_step() -> None:
    commits, aggregates, _ = live_run()
    tampered = list(commits)
    request, proposal = tampered[2]
    tampered[2] = (request, {"value": float(proposal["value"]) + 1.0})
    with pytest.raises(ProtocolError, match=r"replaying step 2 \(chain/1\) gives another"):
        ChainTrainer(2).restore(tampered[:3], lambda i: aggregates[i])
    # outside the trailing segment nothing is re-derived: commit alone
    early = list(commits)
    early[0] = (early[0][0], {"offset": 99.0})
    restored = ChainTrainer(2)
    restored.restore(early[:1], lambda i: aggregates[i])
    assert restored.offset == 99.0
    with pytest.raises(ProtocolError, match=r"committed step 5 \(chain/0\) is not what"):
        ChainTrainer(2).restore(commits[1:2], lambda i: aggregates[i], first_index=5)


def test_proposal_cache_gives_back_only_what_the_committed_proposal_was_derived_with() -> None:
    cache: ProposalCache[str] = ProposalCache()
    assert cache.take({"a": 1}) is None
    cache.keep({"a": 1.0}, "derived")
    assert cache.take({"a": 2.0}) is None
    assert cache.take({"a": 1.0}) is None  # taken once: a mismatch clears it too
    cache.keep({"a": 1.0}, "derived")
    assert cache.take({"a": 1.0}) == "derived"


@pytest.mark.parametrize("trainer", [ProfileTrainer, LogRegTrainer, GBDTTrainer,
                                     EvaluateTrainer])
def test_every_job_kind_is_a_step_machine(trainer: type) -> None:
    assert issubclass(trainer, StepMachine)
    for name in ("next_request", "contribution", "propose", "commit", "restore"):
        assert getattr(trainer, name) is getattr(StepMachine, name)


class RecordingGBDT(GBDTTrainer):
    """A GBDT bank that keeps every aggregate it proposes from."""

    def __init__(self, ctx: JobContext, table: LocalTable) -> None:
        super().__init__(ctx, table)
        self.aggregates: list[np.ndarray] = []

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        self.aggregates.append(np.array(aggregate, dtype=np.float64))
        return super().propose(request, aggregate)


def test_gbdt_restored_mid_tree_proposes_the_rest_of_the_job_identically() -> None:
    rng = np.random.default_rng(5)
    contract = DataContract(
        features=(FeatureSpec("x", "numeric", lower=-5.0, upper=5.0),
                  FeatureSpec("z", "numeric", lower=-5.0, upper=5.0),
                  FeatureSpec("c", "categorical", categories=("a", "b", "c"))),
        label="y",
    )
    n = 900
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, n)])
    X[rng.random(n) < 0.1, 1] = np.nan
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-2.0 * X[:, 0] + X[:, 2] - 1.0))).astype(float)
    tables = {"a": LocalTable(contract, X[:500], y[:500]),
              "b": LocalTable(contract, X[500:], y[500:])}
    params = {"n_estimators": 3, "max_depth": 3, "max_bin": 16, "min_child_samples": 20,
              "subsample": 0.8, "colsample_bytree": 0.7}

    def bank(name: str) -> RecordingGBDT:
        return RecordingGBDT(JobContext("job", name, ("a", "b"), 7, dict(params)), tables[name])

    live = {name: bank(name) for name in tables}
    outcome = run_plaintext(live)
    commits, aggregates = outcome.commits, live["b"].aggregates
    segments = [request.segment for request, _ in commits]
    upto = segments.index("tree/1") + 2  # two steps into the second tree
    assert segments[upto] == "tree/1"
    restored = bank("b")
    restored.restore(commits[:upto], lambda index: aggregates[index])
    assert len(restored.aggregates) == 2  # only the trailing segment was re-proposed
    for index in range(upto, len(commits)):
        request, proposal = commits[index]
        assert restored.next_request() == request
        assert restored.propose(request, aggregates[index]) == proposal
        restored.commit(request, proposal)
    assert restored.next_request() is None
    assert restored.result() == outcome.artifacts
