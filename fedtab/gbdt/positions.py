"""Which split positions of a level have their gradient sums released: thinned so that no
difference of released sums covers fewer than ``min_child_samples`` consortium rows.

Threat model: every bank decrypts a level's gradient sums. Two sums at adjacent positions of
one node and feature differ by the rows in the bins between them; if that is one row, a bank
that subtracts its own rows reads another bank's row's gradient, which in tree 0 is
``p0 - y``: its label (``tests/test_attack_adjacent_positions.py``). A bank also knows the
parent's sums (previous level), so the sibling that is derived by subtraction is released at
the same positions as the node that is summed.

Rule (every bank applies it to the consortium counts, which every bank knows identically): for
the pair of siblings ``(B, D)`` of a parent ``P`` (just the root at depth 0), per feature, the
released positions are a subset of ``P``'s and are chosen greedily from the left so that, for
``B`` and for ``D``, the rows in the bins up to the first position, between consecutive
positions, and after the last one are each either none or at least ``min_child_samples``.
The missing bucket is summed separately only when it holds none or at least
``min_child_samples`` rows in both siblings (and was released in ``P``); otherwise it is
*folded*: its rows count with the last group, the node offers no learned default direction for
that feature (missing values go right, as XGBoost's ``default_left = 0``), and the split search
stays exact. Every released position then leaves at least ``min_child_samples`` rows of ``B``
and of ``D`` on each side, or none.

Unthinned positions (:func:`fedtab.gbdt.split.candidate_positions` alone, every missing bucket
released) are the WEAKENED setting the attack test's positive control uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedtab.gbdt.split import HistLayout, NodeHist


@dataclass(frozen=True)
class PairPlan:
    """Released positions (per sampled feature, increasing bins) and missing flags of a pair."""

    positions: tuple[np.ndarray, ...]
    released: np.ndarray  # bool per sampled feature: missing bucket summed separately


def _fine(rows: list[int], min_rows: int) -> bool:
    """True when every group may be released: none or at least ``min_rows`` rows each."""
    return all(r == 0 or r >= min_rows for r in rows)


def plan_pair(layout: HistLayout, built: np.ndarray, sibling: np.ndarray | None,
              parent: NodeHist | None, min_rows: int) -> PairPlan:
    """The released positions of built node ``built`` (count histogram) and its derived
    ``sibling`` (``None`` at the root), children of ``parent`` (``None`` at the root)."""
    nodes = [built] if sibling is None else [built, sibling]
    positions, released = [], np.zeros(len(layout.features), dtype=bool)
    for k in range(len(layout.features)):
        segments = [layout.segment(c, k) for c in nodes]
        missing = [int(np.rint(m)) for _, m in segments]
        parent_ok = parent is None or bool(parent.missing_released[k])
        released[k] = parent_ok and sum(missing) > 0 and _fine(missing, min_rows)
        cums = np.rint([np.cumsum(bins) for bins, _ in segments]).astype(np.int64)
        # rows up to the end of the last group (a folded missing bucket belongs to it)
        ends = [int(c[-1]) + (0 if released[k] else m) for c, m in zip(cums, missing, strict=True)]
        eligible = (parent.positions[k] if parent is not None
                    else np.arange(int(layout.n_cuts[k])))
        at = cums[:, eligible].T.tolist()  # per eligible position, each node's rows up to it
        kept: list[int] = []
        last = [0] * len(nodes)
        for j, here in enumerate(at):
            step = [h - lo for h, lo in zip(here, last, strict=True)]
            if any(step) and _fine(step, min_rows):
                kept.append(j)
                last = here
        while kept and not _fine([e - h for e, h in zip(ends, at[kept[-1]], strict=True)],
                                 min_rows):
            kept.pop()
        positions.append(np.asarray(eligible, dtype=np.int64)[kept])
    return PairPlan(tuple(positions), released)


def valid_positions(counts: np.ndarray, layout: HistLayout, plan: PairPlan,
                    min_rows: int) -> tuple[np.ndarray, ...]:
    """The plan's positions at which a node with ``counts`` can split: both children hold at
    least ``min_rows`` rows with missing values going right, or left where released."""
    out = []
    for k, pos in enumerate(plan.positions):
        bins, missing = layout.segment(counts, k)
        total = float(bins.sum()) + missing
        cum = np.cumsum(bins)[pos]
        ok = (cum >= min_rows) & (total - cum >= min_rows)
        if plan.released[k]:
            ok |= (cum + missing >= min_rows) & (total - cum - missing >= min_rows)
        out.append(pos[ok])
    return tuple(out)
