"""Growing one tree of a :class:`~fedtab.gbdt.trainer.GBDTTrainer`: the two steps of a level.

At depth ``d`` of tree ``t`` a :class:`CountsStep` (``tree/t/depth/d/counts``) is followed by a
:class:`GradsStep` (``tree/t/depth/d/grads``); :mod:`fedtab.gbdt.trainer` says what each sums
and releases. Committing a step installs the next one in the :class:`TreeGrower`, or finishes
the tree.

A split's proposal carries what ``commit`` needs to schedule the next level without the
level's aggregates (which children are open, which one is smaller) instead of row counts, and
covers and gains rounded as ``model.json`` rounds them (:func:`fedtab.gbdt.export.coarse`):
every bank can commit a proposal it did not derive, and the aggregator learns no more than the
model.

Both steps name the segment ``tree/<t>``: a level's proposals need the previous level's and its
own count aggregates (the sibling subtraction, the candidate positions). ``propose`` derives
them without side effects beyond a :class:`~fedtab.protocol.step_machine.ProposalCache`, and
``commit`` hands them to the next step only when the committed proposal is the one derived.
A bank replaying by ``commit`` alone has no such cache; the next ``propose`` then raises
:class:`~fedtab.errors.ProtocolError` (replay the tree's steps through ``propose``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedtab.crypto.encoding import EncodingSpec
from fedtab.errors import PrivacyError, ProtocolError
from fedtab.gbdt import positions as positions_mod
from fedtab.gbdt import split
from fedtab.gbdt.export import coarse
from fedtab.gbdt.grad_layout import GradLayout
from fedtab.gbdt.model import Tree
from fedtab.gbdt.params import GBDTParams
from fedtab.gbdt.split import HistLayout, NodeHist, NodeStats
from fedtab.gbdt.tree_build import TreeBuild
from fedtab.protocol.step_machine import ProposalCache
from fedtab.protocol.steps import JsonDict, SumRequest

NO_CACHE = (
    "this level's aggregates are not cached (a bank that restarts mid-tree must replay the "
    "tree's steps through propose() before commit())"
)


@dataclass(frozen=True)
class TreeRows:
    """This bank's rows while tree ``index`` grows (never leaves the bank).

    ``bins``: committed bins of every feature, ``(n_rows, n_features)``; ``local_bins``: those
    of the tree's sampled columns (``layout``), int64; ``grad``, ``hess``: per row;
    ``row_node``: the node each row is in, ``-1`` for rows left out by ``subsample`` (updated
    as splits are committed).
    """

    index: int
    layout: HistLayout
    bins: np.ndarray
    local_bins: np.ndarray
    grad: np.ndarray
    hess: np.ndarray
    row_node: np.ndarray


class TreeGrower:
    """One tree as it grows: its committed nodes (:class:`TreeBuild`), this bank's rows, and
    the level step the trainer expects next (``step``).

    ``finish(tree)`` is called once the tree is complete; the trainer adds it to the model and
    starts the next tree.
    """

    def __init__(
        self,
        rows: TreeRows,
        cuts: list[np.ndarray],
        params: GBDTParams,
        encodings: tuple[EncodingSpec, EncodingSpec],
        finish: Callable[[Tree], None],
        *,
        thin: bool = True,
        exact: bool = False,
    ) -> None:
        self.rows = rows
        self.thin = thin  # False: the WEAKENED unthinned positions (fedtab.gbdt.positions)
        self.exact = exact  # True: the WEAKENED exact counts, covers and gains in proposals
        self.cuts = cuts
        self.params = params
        self.count_spec, self.hist_spec = encodings
        self.tree = TreeBuild()
        self._finish = finish
        self.step: CountsStep | GradsStep = CountsStep(self, parents={})

    def step_id(self, phase: str) -> str:
        return f"tree/{self.rows.index}/depth/{self.tree.depth}/{phase}"

    def request(self, phase: str, length: int, encoding: EncodingSpec,
                description: str) -> SumRequest:
        """A level's request; the segment ``tree/<t>`` ties it to the tree's other steps."""
        return SumRequest(self.step_id(phase), length, encoding, description,
                          f"tree/{self.rows.index}")

    def finish(self) -> None:
        self._finish(self.tree.freeze())

    def released(self, statistic: float) -> float:
        """A cover or gain as proposed: to two significant digits, as ``model.json`` has it
        (exact under the weakened rule)."""
        return statistic if self.exact else coarse(statistic)

    def node_json(self, stats: NodeStats) -> JsonDict:
        """A node's model facts as proposed: (scaled) weight and rounded cover, no row count
        (the weakened rule adds the exact count)."""
        weight = float(split.leaf_weight(stats.grad, stats.hess, self.params))
        value = float(np.float32(self.params.learning_rate * weight))
        node: JsonDict = {"cover": self.released(stats.hess), "value": value}
        if self.exact:
            node["count"] = stats.count
        return node

    def children_json(self, left: NodeStats, right: NodeStats) -> JsonDict:
        """What every bank needs to schedule the next level, and no more: which children can
        still split (depth and ``2 * min_child_samples`` rows) and, if one can, whether the
        left one has no more rows than the right (it is summed, the other derived)."""
        p = self.params
        deeper = self.tree.depth + 1 < p.max_depth
        open_ = [deeper and s.count >= 2 * p.min_child_samples for s in (left, right)]
        facts: JsonDict = {"open": open_}
        if any(open_):
            facts["left_smaller"] = left.count <= right.count
        return facts

    def route(self, node: int) -> None:
        """Move this bank's rows of ``node`` to its children."""
        tree, rows = self.tree, self.rows
        members = np.flatnonzero(rows.row_node == node)
        feature = tree.feature[node]
        b = rows.bins[members, feature]
        missing = b == len(self.cuts[feature]) + 1
        go_left = np.where(missing, tree.default_left[node], b <= tree.split_bin[node])
        rows.row_node[members] = np.where(go_left, tree.left[node], tree.right[node])


def _parent_hist(parents: dict[int, NodeHist], step: str, parent: int) -> NodeHist:
    if parent not in parents:
        raise ProtocolError(f"{step}: parent histogram of node {parent} missing; {NO_CACHE}")
    return parents[parent]


@dataclass(frozen=True)
class Level:
    """One level's consortium count histograms, candidate positions and gradient request
    layout (cached from the aggregate, not model state)."""

    counts: dict[int, np.ndarray]
    positions: dict[int, tuple[np.ndarray, ...]]
    grads: GradLayout


class CountsStep:
    """``tree/t/depth/d/counts``: count histograms of the level's smaller siblings.

    ``parents`` holds the previous level's histograms of the nodes that split (a cache, empty
    at the root or after a replay by ``commit`` alone).
    """

    def __init__(self, grower: TreeGrower, parents: dict[int, NodeHist]) -> None:
        self._grower = grower
        self._parents = parents
        self._cache: ProposalCache[Level] = ProposalCache()

    @property
    def request(self) -> SumRequest:
        g = self._grower
        build = g.tree.build
        return g.request("counts", len(build) * g.rows.layout.size, g.count_spec,
                         f"{len(build)} node count histogram(s)")

    def contribution(self) -> np.ndarray:
        tree, rows = self._grower.tree, self._grower.rows
        layout = rows.layout
        slot = np.full(max(len(tree.value), max(tree.build) + 1) + 1, -1, dtype=np.int64)
        slot[tree.build] = np.arange(len(tree.build))
        node_slot = slot[rows.row_node]  # row_node == -1 (unsampled) maps to the last, -1
        members = np.flatnonzero(node_slot >= 0)
        size = len(tree.build) * layout.size
        flat = ((node_slot[members] * layout.size)[:, None] + rows.local_bins[members]
                + layout.start)
        return np.bincount(flat.ravel(), minlength=size).astype(np.float64)

    def propose(self, aggregate: np.ndarray) -> JsonDict:
        g = self._grower
        tree, layout, step = g.tree, g.rows.layout, g.step_id("counts")
        built = aggregate.reshape(len(tree.build), layout.size)
        counts = {node: built[i] for i, node in enumerate(tree.build)}
        for node, (parent, sibling) in tree.derive.items():
            counts[node] = _parent_hist(self._parents, step, parent).counts - counts[sibling]
        mcs = g.params.min_child_samples
        larger = {sib: node for node, (_parent, sib) in tree.derive.items()}
        pairs = [(node, larger.get(node)) for node in tree.build]
        released: dict[int, np.ndarray] | None = None
        if g.thin:
            plans = self._pair_plans(counts)
            released = {node: plan.released for node, plan in plans.items()}
            plan_of = {n: plans[b] for b, d in pairs for n in (b, d) if n is not None}
            positions = {node: positions_mod.valid_positions(counts[node], layout,
                                                             plan_of[node], mcs)
                         for node in tree.frontier}
        else:
            positions = {node: tuple(split.candidate_positions(counts[node], layout, mcs))
                         for node in tree.frontier}
        is_open = [n for n in tree.frontier if any(len(q) for q in positions[n])]
        grads = GradLayout.plan(layout, pairs, is_open, counts, positions,
                                always=tree.depth == 0, released=released)
        # the next request's length is public anyway; carrying it lets a bank that replays
        # with commit() alone still name the next request
        proposal: JsonDict = {"step": step, "open": is_open, "grads_length": 2 * grads.size}
        self._cache.keep(proposal, Level(counts, positions, grads))
        return proposal

    def _pair_plans(self, counts: dict[int, np.ndarray]) -> dict[int, positions_mod.PairPlan]:
        """Each built node's released positions, thinned with its sibling (derived or not:
        a bank can subtract either from the parent) and within its parent's positions."""
        g = self._grower
        tree, layout, step = g.tree, g.rows.layout, g.step_id("counts")
        parent_of = {child: node for node, pair in enumerate(zip(tree.left, tree.right,
                                                                   strict=True))
                     for child in pair if child >= 0}
        plans = {}
        for node in tree.build:
            parent = sibling = None
            if node in parent_of:
                parent = _parent_hist(self._parents, step, parent_of[node])
                sibling = parent.counts - counts[node]
            plans[node] = positions_mod.plan_pair(layout, counts[node], sibling, parent,
                                                  g.params.min_child_samples)
        return plans

    def commit(self, proposal: JsonDict) -> None:
        level = self._cache.take(proposal)
        open_nodes = [int(n) for n in proposal["open"]]
        grads_length = int(proposal["grads_length"])
        if not open_nodes and self._grower.tree.depth > 0:
            self._grower.finish()
            return
        self._grower.step = GradsStep(self._grower, self._parents, open_nodes, grads_length,
                                      level)


class GradsStep:
    """``tree/t/depth/d/grads``: gradient sums of the level at the candidate positions.

    ``level`` is what the counts step derived (``None`` after a replay by ``commit`` alone);
    ``parents`` as for :class:`CountsStep`; ``open_nodes`` are the nodes that may split.
    """

    def __init__(self, grower: TreeGrower, parents: dict[int, NodeHist],
                 open_nodes: list[int], grads_length: int, level: Level | None) -> None:
        self._grower = grower
        self._parents = parents
        self._open = open_nodes
        self._length = grads_length
        self._level = level
        self._cache: ProposalCache[dict[int, NodeHist]] = ProposalCache()

    @property
    def request(self) -> SumRequest:
        g = self._grower
        return g.request("grads", self._length, g.hist_spec,
                         "node gradient sums at candidate positions")

    def contribution(self) -> np.ndarray:
        rows = self._grower.rows
        level = self._cached_level()
        return level.grads.contribution(rows.layout, rows.row_node, rows.local_bins,
                                        rows.grad, rows.hess)

    def propose(self, aggregate: np.ndarray) -> JsonDict:
        g, level = self._grower, self._cached_level()
        tree, step = g.tree, g.step_id("grads")
        hists = level.grads.decode(aggregate, level.counts)
        for node, (parent, sibling) in tree.derive.items():
            if node in self._open:
                hists[node] = _parent_hist(self._parents, step, parent).derive(
                    hists[sibling], level.counts[node], level.positions[node]
                )
        proposal: JsonDict = {"step": step, "splits": []}
        if tree.depth == 0:
            root = hists[0]
            if root.count < g.params.min_child_samples:
                raise PrivacyError(f"{step}: the root has too few rows")
            proposal["root"] = g.node_json(NodeStats(float(root.total[0]),
                                                     float(root.total[1]), root.count))
        for node in self._open:
            best = split.best_split(hists[node], g.rows.layout, g.params)
            if best is None:
                continue
            proposal["splits"].append({
                "node": node,
                "feature": best.feature,
                "bin": best.split_bin,
                "threshold": float(g.cuts[best.feature][best.split_bin]),
                "default_left": best.default_left,
                "loss_change": g.released(best.loss_change),
                "left": g.node_json(best.left),
                "right": g.node_json(best.right),
                "children": g.children_json(best.left, best.right),
            })
        self._cache.keep(proposal, {node: hists[node] for node in self._open})
        return proposal

    def commit(self, proposal: JsonDict) -> None:
        g, hists = self._grower, self._cache.take(proposal)
        tree = g.tree
        if tree.depth == 0:
            root = proposal["root"]
            tree.add_node(float(root["value"]), float(root["cover"]))
        frontier, build, derive = [], [], {}
        for item in proposal["splits"]:
            node = int(item["node"])
            children = [tree.add_node(float(s["value"]), float(s["cover"]))
                        for s in (item["left"], item["right"])]
            tree.left[node], tree.right[node] = children
            tree.feature[node] = int(item["feature"])
            tree.split_bin[node] = int(item["bin"])
            tree.threshold[node] = float(item["threshold"])
            tree.default_left[node] = bool(item["default_left"])
            tree.loss_change[node] = float(item["loss_change"])
            g.route(node)
            facts = item["children"]
            open_children = [c for c, is_open in zip(children, facts["open"], strict=True)
                             if is_open]
            if open_children:
                frontier.extend(open_children)
                small, large = children if facts["left_smaller"] else children[::-1]
                build.append(small)
                if large in open_children:
                    derive[large] = (node, small)
        if not frontier:
            g.finish()
            return
        tree.depth += 1
        tree.frontier, tree.build, tree.derive = frontier, build, derive
        g.step = CountsStep(g, parents=hists or {})

    @property
    def level(self) -> Level:
        """This level's counts, candidate positions and request layout (what every bank
        derives from the counts aggregate; raises :class:`ProtocolError` after a replay by
        ``commit`` alone)."""
        return self._cached_level()

    @property
    def tree(self) -> TreeBuild:
        """The tree's committed nodes so far."""
        return self._grower.tree

    @property
    def hist_layout(self) -> HistLayout:
        """Where each (feature, bin) lives in a node's count histogram (the tree's columns)."""
        return self._grower.rows.layout

    def _cached_level(self) -> Level:
        if self._level is None:
            raise ProtocolError(f"{self._grower.step_id('grads')}: {NO_CACHE}")
        return self._level
