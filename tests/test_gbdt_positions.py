"""Thinned release positions (fedtab.gbdt.positions): the floor holds for every group of both
siblings, missing buckets below the floor are folded, and the split search stays valid."""

from __future__ import annotations

import numpy as np
import pytest

from fedtab.gbdt.params import GBDTParams
from fedtab.gbdt.positions import plan_pair, valid_positions
from fedtab.gbdt.split import HistLayout, NodeHist, best_split


def groups(bins: np.ndarray, missing: float, pos: np.ndarray, released: bool) -> list[float]:
    cum = np.cumsum(bins)
    edges = np.concatenate([[0.0], cum[pos]])
    out = [*np.diff(edges), cum[-1] + (0.0 if released else missing) - edges[-1]]
    return out + ([missing] if released else [])


def test_a_missing_bucket_below_the_floor_is_folded() -> None:
    layout = HistLayout.build(np.array([0]), np.array([3]), np.array([True]))
    for missing, released in ((3.0, False), (0.0, False), (12.0, True)):
        counts = np.array([20.0, 1.0, 20.0, 20.0, missing])
        plan = plan_pair(layout, counts, None, None, min_rows=10)
        assert bool(plan.released[0]) is released
        # bin 1 holds one row: the boundary after it is not released next to bin 0's
        assert list(plan.positions[0]) == [0, 2]
    # folded: the split search offers no learned default direction
    hist = np.array([[-15.0, 1.0, 5.0, 5.0, -3.0], [5.0, 0.2, 5.0, 5.0, 0.75],
                     [20.0, 1.0, 20.0, 20.0, 3.0]])
    plan = plan_pair(layout, hist[2], None, None, min_rows=10)
    node = NodeHist.from_full(hist, layout, list(plan.positions))
    node = NodeHist(node.counts, node.positions, node.cum, np.zeros((2, 1)), node.total,
                    plan.released)
    best = best_split(node, layout, GBDTParams(min_child_samples=10))
    assert best is not None and not best.default_left
    assert best.left.count + best.right.count == 64


@pytest.mark.parametrize("seed", range(6))
def test_every_group_of_both_siblings_meets_the_floor(seed: int) -> None:
    rng = np.random.default_rng(seed)
    floor = int(rng.integers(5, 30))
    layout = HistLayout.build(np.arange(3), np.array([12, 30, 6]), np.array([True, False, True]))
    n = 600
    bins = np.stack([rng.integers(0, m + 2 if miss else m + 1, size=n)
                     for m, miss in zip(layout.n_cuts, layout.has_missing, strict=True)], axis=1)
    left = rng.random(n) < rng.uniform(0.1, 0.5)

    def counts(mask: np.ndarray) -> np.ndarray:
        return np.bincount((bins[mask] + layout.start).ravel(), minlength=layout.size).astype(float)

    root = plan_pair(layout, counts(np.ones(n, bool)), None, None, floor)
    parent = NodeHist(counts(np.ones(n, bool)), root.positions,
                      tuple(np.zeros((2, len(p))) for p in root.positions), np.zeros((2, 3)),
                      np.zeros(2), root.released)
    built, sibling = counts(left), counts(~left)
    plan = plan_pair(layout, built, sibling, parent, floor)
    for k, pos in enumerate(plan.positions):
        assert set(pos) <= set(root.positions[k])
        for c in (built, sibling):
            b, m = layout.segment(c, k)
            for rows in np.rint(groups(b, m, pos, bool(plan.released[k]))):
                assert rows == 0 or rows >= floor
        b, m = layout.segment(counts(np.ones(n, bool)), k)
        for rows in np.rint(groups(b, m, root.positions[k], bool(root.released[k]))):
            assert rows == 0 or rows >= floor
    for c in (built, sibling):
        for k, pos in enumerate(valid_positions(c, layout, plan, floor)):
            b, m = layout.segment(c, k)
            left_rows = np.cumsum(b)[pos]
            assert (left_rows >= floor).all() or plan.released[k]
            assert set(pos) <= set(plan.positions[k])
