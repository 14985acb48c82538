"""The layout of one level's (gradient, hessian) request: grouped bins at candidate positions.

For each node whose gradients are summed, the vector holds, per channel (gradient, then hessian):
the node's total, then per sampled feature ``k`` one group per requested position ``R[j]``
(the sum over bins ``R[j-1] < b <= R[j]``; bins above the last position are not needed), then
the missing bucket when the node has missing values in that feature. Cumulative sums of the
groups give the statistics at each position, which is all the split search needs
(:class:`~fedtab.gbdt.split.NodeHist`). The layout derives from the consortium's count
histograms only, so every bank builds the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedtab.gbdt.split import HistLayout, NodeHist


@dataclass(frozen=True)
class GradLayout:
    """Positions and missing flags of each built node; ``2 * size`` values in the request."""

    nodes: tuple[int, ...]
    positions: tuple[tuple[np.ndarray, ...], ...]  # [node][feature k] -> bins
    missing: tuple[np.ndarray, ...]  # [node] -> bool (K,)
    start: np.ndarray  # first slot of each node
    released: tuple[np.ndarray | None, ...] = ()  # [node] -> NodeHist.released

    @classmethod
    def build(
        cls,
        nodes: list[int],
        positions: list[tuple[np.ndarray, ...]],
        missing: list[np.ndarray],
        released: list[np.ndarray | None] | None = None,
    ) -> GradLayout:
        sizes = [
            1 + sum(len(p) for p in pos) + int(np.sum(miss))
            for pos, miss in zip(positions, missing, strict=True)
        ]
        start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        flags = tuple(released) if released is not None else (None,) * len(nodes)
        return cls(tuple(nodes), tuple(positions), tuple(missing), start, flags)

    @classmethod
    def plan(
        cls,
        layout: HistLayout,
        pairs: list[tuple[int, int | None]],
        open_nodes: list[int],
        counts: dict[int, np.ndarray],
        positions: dict[int, tuple[np.ndarray, ...]],
        *,
        always: bool = False,
        released: dict[int, np.ndarray] | None = None,
    ) -> GradLayout:
        """The level's request: for each (built node, derived sibling or None), the built node
        is summed at the union of the open ones' candidate positions (skipped when neither is
        open, unless ``always``), with a missing slot where the built node has missing rows
        and, if ``released`` (built node -> bool per feature) is given, its bucket is released."""
        n_feat = len(layout.features)
        nodes, kept, missing, flags = [], [], [], []
        for built, derived in pairs:
            wanted = [n for n in (built, derived) if n is not None and n in open_nodes]
            if not wanted and not always:
                continue
            kept.append(tuple(
                np.unique(np.concatenate([positions[n][k] for n in wanted] or [np.zeros(0)]))
                .astype(np.int64)
                for k in range(n_feat)
            ))
            has = np.array([layout.segment(counts[built], k)[1] > 0 for k in range(n_feat)],
                           dtype=bool)
            flag = None if released is None else released[built]
            missing.append(has if flag is None else has & flag)
            flags.append(flag)
            nodes.append(built)
        return cls.build(nodes, kept, missing, flags)

    @property
    def size(self) -> int:
        return int(self.start[-1])

    def _lookup(self, layout: HistLayout) -> np.ndarray:
        """Slot of (built node i, feature k, bin b) or -1; b = n_cuts + 1 is missing."""
        n_feat = len(layout.features)
        width = int(layout.n_cuts.max()) + 2 if n_feat else 1
        table = np.full((len(self.nodes), max(1, n_feat), width), -1, dtype=np.int64)
        for i, (pos, miss) in enumerate(zip(self.positions, self.missing, strict=True)):
            at = int(self.start[i]) + 1
            for k in range(n_feat):
                bins = np.arange(int(layout.n_cuts[k]) + 1)
                group = np.searchsorted(pos[k], bins, side="left")
                table[i, k, : len(bins)] = np.where(group < len(pos[k]), at + group, -1)
                at += len(pos[k])
                if miss[k]:
                    table[i, k, layout.n_cuts[k] + 1] = at
                    at += 1
        return table

    def contribution(
        self,
        layout: HistLayout,
        row_node: np.ndarray,
        local_bins: np.ndarray,
        grad: np.ndarray,
        hess: np.ndarray,
    ) -> np.ndarray:
        """One bank's request vector, float64 ``(2 * size,)``.

        ``row_node`` (n,) is each row's node (-1 for rows not in this tree's sample);
        ``local_bins`` (n, K) are the rows' bins of the layout's features.
        """
        node_index = np.full(int(max(row_node.max(initial=0), max(self.nodes))) + 2, -1)
        node_index[list(self.nodes)] = np.arange(len(self.nodes))
        which = node_index[row_node]
        rows = np.flatnonzero(which >= 0)
        which = which[rows]
        slots = self._lookup(layout)[which[:, None], np.arange(local_bins.shape[1])[None, :],
                                     local_bins[rows]]
        keep = slots >= 0
        flat = slots[keep]
        totals = self.start[which]
        out = np.empty((2, self.size))
        for c, values in enumerate((grad[rows], hess[rows])):
            spread = np.broadcast_to(values[:, None], slots.shape)[keep]
            out[c] = np.bincount(flat, weights=spread, minlength=self.size)
            out[c] += np.bincount(totals, weights=values, minlength=self.size)
        return out.reshape(-1)

    def decode(self, values: np.ndarray, counts: dict[int, np.ndarray]) -> dict[int, NodeHist]:
        """Each built node's :class:`NodeHist` from the aggregate ``(2 * size,)``."""
        grid = values.reshape(2, self.size)
        out = {}
        for i, node in enumerate(self.nodes):
            at = int(self.start[i])
            total = grid[:, at].copy()
            at += 1
            cums, missing = [], np.zeros((2, len(self.positions[i])))
            for k, pos in enumerate(self.positions[i]):
                cums.append(np.cumsum(grid[:, at : at + len(pos)], axis=1))
                at += len(pos)
                if self.missing[i][k]:
                    missing[:, k] = grid[:, at]
                    at += 1
            out[node] = NodeHist(counts[node], self.positions[i], tuple(cums), missing, total,
                                 self.released[i])
        return out
