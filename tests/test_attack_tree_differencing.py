"""Attack 3 of issue 11: differencing across trees.

The attacker is the aggregator together with the operator: the committed proposals
(``JobOutcome.commits``) and ``model.json``. Every node covers at least ``min_child_samples``
rows, but tree 0's leaves give their rows different predictions, hence different hessians
``p (1 - p)`` in tree 1, so a tree-1 node's (row count, cover) pair is two equations in the
sizes of its intersections with the two tree-0 leaves: a *cell* of 2 rows is derived exactly
under a floor of 50.

The data is crafted for it: tree 0 splits on ``x1`` (62 rows at ``x1 = 1``, mostly frauds),
tree 1 on ``x0``, and only 2 of the 62 rows have ``x0 = 0``. Positive control: with exact
counts, covers and gains in the proposals (``GBDTTrainer(..., weakened_counts=True)``, the
pre-fix proposals) the solve returns every cell, the 2-row one included. Fixed: proposals carry
no row counts and the covers ``model.json`` has (two significant digits); the cover-only solve
leaves the small cell anywhere from 0 to well above the floor.

What stays open (and is asserted here, so that it is not forgotten): leaf values are exact (the
model needs them), and with integrality (a node's positive count ``k = sum p_i + w (H +
lambda)`` must be an integer) they pin the cells again in a setting this small. Only noise on
the released values closes that, which is the differential-privacy issue (13); see
``docs/SECURITY.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.gbdt.model import base_margin_of, sigmoid
from fedtab.gbdt.trainer import GBDTTrainer
from fedtab.protocol.local_runner import run_plaintext
from fedtab.protocol.steps import JobContext, JsonDict

BANKS = ("bank_a", "bank_b", "bank_c")
FLOOR = 50
PARAMS = {"n_estimators": 2, "max_depth": 1, "learning_rate": 1.0, "max_bin": 16,
          "min_child_samples": FLOOR}
REG_LAMBDA = 1.0  # the default


def make_tables() -> dict[str, LocalTable]:
    """150 rows per bank; ``x0`` is 1 for 4 rows in 9; ``x1`` is 1 for 20 rows with ``x0 = 1``
    per bank (90% frauds) and for 2 rows of bank_b with ``x0 = 0`` (the target cell)."""
    contract = DataContract(
        features=(FeatureSpec("x0", "numeric", lower=0.0, upper=1.0, nullable=False),
                  FeatureSpec("x1", "numeric", lower=0.0, upper=1.0, nullable=False)),
        label="fraud",
    )
    rng = np.random.default_rng(5)
    tables = {}
    for bank in BANKS:
        n = 150
        x0 = (np.arange(n) % 9 < 4).astype(float)
        rng.shuffle(x0)
        x1 = np.zeros(n)
        high = np.flatnonzero(x0 == 1.0)[:20]
        x1[high] = 1.0
        y = (rng.random(n) < np.where(x0 == 1.0, 0.4, 0.05)).astype(float)
        y[high] = rng.random(20) < 0.9
        if bank == "bank_b":
            target = np.flatnonzero(x0 == 0.0)[:2]
            x1[target], y[target] = 1.0, 1.0
        tables[bank] = LocalTable(contract, np.column_stack([x0, x1]), y)
    return tables


@dataclass(frozen=True)
class Node:
    """A tree-1 child as the attacker sees it: value and cover (``sum_hessian``) from
    ``model.json``, cover and, when there is one, row count from the proposal."""

    value: float
    model_cover: float
    cover: float
    count: int | None


@dataclass(frozen=True)
class View:
    """The attacker's view: the base score, tree 0's two leaf values and tree 1's children
    (from ``model.json``, row counts from the proposals), and every committed proposal."""

    base_score: float
    tree0_leaves: tuple[float, float]
    tree1: tuple[Node, Node]
    proposals: tuple[JsonDict, ...]

    def hessians(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Tree-1 (prediction, hessian) of the rows of each tree-0 leaf (the banks' formula)."""
        margin = base_margin_of(self.base_score)
        probs = [float(sigmoid(np.array(margin + v))) for v in self.tree0_leaves]
        return (probs[0], probs[0] * (1 - probs[0])), (probs[1], probs[1] * (1 - probs[1]))


def run_job(*, weakened: bool) -> tuple[View, dict[str, GBDTTrainer]]:
    tables = make_tables()
    trainers = {b: GBDTTrainer(JobContext("diff", b, BANKS, seed=1, params=PARAMS), tables[b],
                               weakened_counts=weakened) for b in BANKS}
    outcome = run_plaintext(trainers)
    model = json.loads(outcome.artifacts["model.json"])
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    steps = {request.step_id: proposal for request, proposal in outcome.commits}
    split = steps["tree/1/depth/0/grads"]["splits"][0]
    tree0, tree1 = trees
    leaves0 = [i for i, c in enumerate(tree0["left_children"]) if c < 0]
    children = (tree1["left_children"][0], tree1["right_children"][0])
    nodes = tuple(Node(tree1["base_weights"][c], tree1["sum_hessian"][c],
                       float(split[side]["cover"]), split[side].get("count"))
                  for c, side in zip(children, ("left", "right"), strict=True))
    view = View(float(model["learner"]["learner_model_param"]["base_score"]),
                (tree0["base_weights"][leaves0[0]], tree0["base_weights"][leaves0[1]]),
                (nodes[0], nodes[1]), tuple(p for _, p in outcome.commits))
    return view, trainers


def true_cells(trainers: dict[str, GBDTTrainer]) -> list[tuple[int, int]]:
    """Per tree-1 child, its rows in tree 0's (left, right) leaf, from the pooled table."""
    X = np.vstack([t.table.X for t in trainers.values()])
    tree0, tree1 = trainers["bank_a"].model().trees
    leaf0, leaf1 = tree0.leaf_index(X), tree1.leaf_index(X)
    return [(int(((leaf1 == c) & (leaf0 == tree0.left[0])).sum()),
             int(((leaf1 == c) & (leaf0 == tree0.right[0])).sum()))
            for c in (tree1.left[0], tree1.right[0])]


def cells_from_counts(view: View) -> list[tuple[int, int]]:
    """The issue's solve: ``n_l + n_r = count``, ``n_l h_l + n_r h_r = cover``."""
    (_, h_l), (_, h_r) = view.hessians()
    cells = []
    for node in view.tree1:
        if node.count is None:
            raise LookupError("the proposals carry no row counts")
        n_l = (node.cover - node.count * h_r) / (h_l - h_r)
        cells.append((round(n_l), round(node.count - n_l)))
    return cells


def cover_interval(cover: float) -> tuple[float, float]:
    """The covers that round to ``cover`` at two significant digits (float32 slack)."""
    ulp = 10.0 ** (np.floor(np.log10(cover)) - 1)
    return cover - ulp / 2 - 1e-4, cover + ulp / 2 + 1e-4


def feasible_cells(view: View, node: Node) -> Iterator[tuple[int, int]]:
    """Every (n_l, n_r) with at least ``FLOOR`` rows whose cover rounds to the released one."""
    (_, h_l), (_, h_r) = view.hessians()
    low, high = cover_interval(node.cover)
    for n_l in range(int(high / h_l) + 1):
        first = max(0, int(np.ceil((low - n_l * h_l) / h_r)), FLOOR - n_l)
        for n_r in range(first, int(np.floor((high - n_l * h_l) / h_r)) + 1):
            yield n_l, n_r


def cells_from_values(view: View, node: Node) -> list[tuple[int, int]]:
    """The stronger attack: the feasible cells for which the node's exact weight makes its
    positive count ``k = n_l p_l + n_r p_r + w (H + lambda)`` an integer in ``[0, n]``."""
    (p_l, h_l), (p_r, h_r) = view.hessians()
    weight = node.value / float(PARAMS["learning_rate"])
    found = []
    for n_l, n_r in feasible_cells(view, node):
        k = n_l * p_l + n_r * p_r + weight * (n_l * h_l + n_r * h_r + REG_LAMBDA)
        if abs(k - round(k)) < 1e-5 and 0 <= round(k) <= n_l + n_r:
            found.append((n_l, n_r))
    return found


def _keys(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield key
            yield from _keys(value)
    elif isinstance(data, list):
        for value in data:
            yield from _keys(value)


@pytest.fixture(scope="module")
def weakened() -> tuple[View, dict[str, GBDTTrainer]]:
    return run_job(weakened=True)


@pytest.fixture(scope="module")
def fixed() -> tuple[View, dict[str, GBDTTrainer]]:
    return run_job(weakened=False)


def test_the_setting_has_a_cell_below_the_floor(
    fixed: tuple[View, dict[str, GBDTTrainer]],
) -> None:
    view, trainers = fixed
    cells = true_cells(trainers)
    assert min(min(c) for c in cells) == 2 < FLOOR
    assert min(sum(c) for c in cells) >= FLOOR  # every node passes the floor
    (_, h_l), (_, h_r) = view.hessians()
    assert abs(h_l - h_r) > 0.03  # tree 0's leaves give their rows different hessians


def test_exact_counts_and_covers_give_the_cell_positive_control(
    weakened: tuple[View, dict[str, GBDTTrainer]],
) -> None:
    view, trainers = weakened
    cells = cells_from_counts(view)  # the proposals' exact counts and covers
    assert cells == true_cells(trainers)
    assert min(min(c) for c in cells) == 2  # derived exactly under a floor of 50


def test_fixed_proposals_carry_no_counts_and_no_more_than_the_model(
    fixed: tuple[View, dict[str, GBDTTrainer]],
) -> None:
    view, _ = fixed
    assert all("count" not in set(_keys(p)) for p in view.proposals)
    with pytest.raises(LookupError):
        cells_from_counts(view)
    for node in view.tree1:
        # the proposal's cover is model.json's (two significant digits), not the exact one
        assert np.float32(node.cover) == np.float32(node.model_cover)
        assert float(format(node.cover, ".2g")) == pytest.approx(node.cover, rel=1e-6)


def test_rounded_covers_leave_the_small_cell_undetermined(
    fixed: tuple[View, dict[str, GBDTTrainer]],
) -> None:
    view, trainers = fixed
    truth = true_cells(trainers)
    for node, cell in zip(view.tree1, truth, strict=True):
        feasible = list(feasible_cells(view, node))
        assert cell in feasible
        small = sorted({n_r for _, n_r in feasible})
        # the cell with tree 0's right leaf: from empty to far above the floor
        assert small[0] == 0 and small[-1] >= 2 * FLOOR
        assert len(feasible) > 1000


def test_exact_leaf_values_still_pin_the_cell_open_until_differential_privacy(
    fixed: tuple[View, dict[str, GBDTTrainer]],
) -> None:
    """What stays open (docs/SECURITY.md): exact weights plus integrality. Should this start
    failing because the cells are no longer pinned, update the docs with it."""
    view, trainers = fixed
    truth = true_cells(trainers)
    for node, cell in zip(view.tree1, truth, strict=True):
        assert cells_from_values(view, node) == [cell]
