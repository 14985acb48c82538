"""Attack 4 of issue 11: a curious bank reads another bank's row from adjacent candidate positions.

The attacker is ``bank_a``, honest but curious: its view is its own table and the aggregates it
decrypts (in process: what its trainer's ``propose`` receives). Subtracting its own contribution
from a level's gradient aggregate leaves the other banks' sums per group of bins between two
released positions; in tree 0 every row's hessian is ``p0 (1 - p0)`` and its gradient
``p0 - y``, so a group holding one row of another bank gives that row's label.

The data is crafted so that, inside the node ``x0 = 1``, one row of ``bank_b`` lies alone in the
bins of ``x1`` between two candidate positions. Positive control: with the unthinned positions
(``weakened_positions=True``, the pre-fix behaviour) the attack reads that row's label, whatever
it is. Fixed (:mod:`fedtab.gbdt.positions`): every released group of every node, the sibling
derived by subtraction included, holds none or at least ``min_child_samples`` rows, and the same
attack code reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.gbdt.grow import GradsStep
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

BANKS = ("bank_a", "bank_b", "bank_c")
FLOOR = 20
PARAMS = {"n_estimators": 3, "max_depth": 3, "max_bin": 16, "min_child_samples": FLOOR}


def make_tables(target_label: float) -> dict[str, LocalTable]:
    """``x0`` is 0 or 1 (frauds mostly at 1); at ``x0 = 1``, ``x1`` avoids (0.4, 0.6) except for
    one row of bank_b at 0.5 (``target_label``); at ``x0 = 0``, ``x1`` is uniform."""
    contract = DataContract(
        features=(FeatureSpec("x0", "numeric", lower=0.0, upper=1.0, nullable=False),
                  FeatureSpec("x1", "numeric", lower=0.0, upper=1.0, nullable=False)),
        label="fraud",
    )
    rng = np.random.default_rng(3)
    tables = {}
    for bank in BANKS:
        n = 80
        x0 = (rng.random(n) < 0.4).astype(float)
        x1 = rng.uniform(0.0, 1.0, n)
        high = x0 == 1.0
        x1[high] = np.where(rng.random(high.sum()) < 0.5, rng.uniform(0.0, 0.4, high.sum()),
                            rng.uniform(0.6, 1.0, high.sum()))
        y = (rng.random(n) < np.where(high, 0.8, 0.05)).astype(float)
        if bank == "bank_b":
            x0[0], x1[0], y[0] = 1.0, 0.5, target_label
        tables[bank] = LocalTable(contract, np.column_stack([x0, x1]), y)
    return tables


@dataclass
class Spy:
    """Wraps the attacker's trainer; keeps what its ``propose`` receives and reads single rows
    of other banks out of tree 0's gradient aggregates."""

    trainer: GBDTTrainer
    found: list[tuple[int, int, float]] = field(default_factory=list)  # node, feature, label
    steps: list[tuple[GradsStep, np.ndarray]] = field(default_factory=list)

    def next_request(self) -> SumRequest | None:
        return self.trainer.next_request()

    def contribution(self, request: SumRequest) -> np.ndarray:
        return self.trainer.contribution(request)

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        self.trainer.commit(request, proposal)

    def result(self) -> dict[str, bytes]:
        return self.trainer.result()

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        step = self.trainer.current_step()
        if isinstance(step, GradsStep):
            self.steps.append((step, aggregate))
            if request.step_id.startswith("tree/0/"):
                self.read_rows(step, aggregate - self.trainer.contribution(request))
        return self.trainer.propose(request, aggregate)

    def read_rows(self, step: GradsStep, others: np.ndarray) -> None:
        """Every released group (between positions, after the last, the missing bucket) whose
        others' hessian is one row's: its gradient is ``p0 - y``."""
        p0 = self.trainer.model().base_score
        one_row = p0 * (1.0 - p0)
        level = step.level
        for node, hist in level.grads.decode(others, level.counts).items():
            for k, cum in enumerate(hist.cum):
                edges = np.hstack([np.zeros((2, 1)), cum])
                groups = [*np.diff(edges, axis=1).T, hist.total - edges[:, -1] - hist.missing[:, k],
                          hist.missing[:, k]]
                for grad, hess in groups:
                    if abs(hess - one_row) < 1e-6:
                        self.found.append((node, k, float(round(p0 - grad))))


def run(tables: Mapping[str, LocalTable], *, weakened: bool) -> Spy:
    def trainer(bank: str) -> GBDTTrainer:
        ctx = JobContext("job-adjacent", bank, BANKS, seed=1, params=dict(PARAMS))
        return GBDTTrainer(ctx, tables[bank], weakened_positions=weakened)

    spy = Spy(trainer("bank_a"))
    others: dict[str, Any] = {b: trainer(b) for b in BANKS[1:]}
    run_plaintext({"bank_a": spy, **others})
    return spy


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_positive_control_unthinned_positions_give_away_a_row(label: float) -> None:
    spy = run(make_tables(label), weakened=True)
    assert [found[2] for found in spy.found] == [label]  # that row, its label, nothing else
    with pytest.raises(AssertionError):  # the floor check below has teeth
        released_groups_respect_the_floor(spy)


def released_groups_respect_the_floor(spy: Spy) -> int:
    """Checks every group of every built node and of its sibling (derived, or closed) at the
    released positions; returns the number of groups checked."""
    checked = 0
    counts_of: dict[tuple[int, int], np.ndarray] = {}
    for tree, (step, _aggregate) in enumerate_trees(spy.steps):
        level, build = step.level, step.tree
        counts_of.update({(tree, n): c for n, c in level.counts.items()})
        parent_of = {c: n for n, pair in enumerate(zip(build.left, build.right, strict=True))
                     for c in pair if c >= 0}
        for i, node in enumerate(level.grads.nodes):
            family = [level.counts[node]]
            if node in parent_of:
                family.append(counts_of[(tree, parent_of[node])] - level.counts[node])
            for counts in family:
                checked += check_groups(step, counts, level.grads.positions[i],
                                        level.grads.released[i])
    return checked


def enumerate_trees(steps: list[tuple[GradsStep, np.ndarray]]) -> list[tuple[int, tuple[
        GradsStep, np.ndarray]]]:
    out, tree = [], 0
    for item in steps:
        if item[0].tree.depth == 0 and out:
            tree += 1
        out.append((tree, item))
    return out


def check_groups(step: GradsStep, counts: np.ndarray, positions: tuple[np.ndarray, ...],
                 released: np.ndarray | None) -> int:
    layout = step.hist_layout
    checked = 0
    for k, pos in enumerate(positions):
        bins, missing = layout.segment(counts, k)
        cum = np.cumsum(bins)
        edges = np.concatenate([[0.0], cum[pos]])
        folded = 0.0 if released is not None and released[k] else missing
        groups = [*np.diff(edges), cum[-1] + folded - edges[-1]]
        if released is not None and released[k]:
            groups.append(missing)
        for rows in np.rint(groups):
            assert rows == 0 or rows >= FLOOR, (k, pos, groups)
            checked += 1
    return checked


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_thinned_positions_isolate_no_row(label: float) -> None:
    spy = run(make_tables(label), weakened=False)
    assert spy.found == []
    assert released_groups_respect_the_floor(spy) > 50
