"""One bank's side of federated histogram gradient boosting, as a pure step machine.

Steps (each one secure sum, see :mod:`fedtab.protocol.steps`):

* ``bins``: fine per-feature count histograms (plus a missing bucket per feature) and the
  (rows, positives) pair. Every bank derives the global cut points (:mod:`fedtab.gbdt.binning`),
  which features have missing values, and the base score ``s P / (s P + N - P)``
  (``s = scale_pos_weight``, XGBoost's weighted prior). Every bin the cut points define holds at
  least ``min_child_samples`` non-missing consortium rows (end bins included); a feature too
  sparse for two such bins gets no cut.
* ``tree/t/depth/d/counts``: count histograms (all bins, integer encoding: narrow slots) of the
  nodes to expand at depth ``d`` of tree ``t``. Of each pair of siblings only the one with fewer
  consortium rows is summed; the other is its parent's aggregate minus it. From the counts every
  bank derives each node's *candidate positions* (:func:`fedtab.gbdt.split.candidate_positions`:
  occupied bins whose boundary leaves ``min_child_samples`` rows on both sides) and proposes
  which nodes can still split (``open``).
* ``tree/t/depth/d/grads``: (gradient, hessian) sums of the same nodes, grouped at the candidate
  positions only (:mod:`fedtab.gbdt.grad_layout`; typically a quarter fewer ciphertexts than full
  histograms, and the same model). Every bank finds the same best splits
  (:mod:`fedtab.gbdt.split`) and proposes them with the children's row counts, hessian sums and
  weights (model facts); committing routes the bank's rows to the children. A tree ends when no
  node can be expanded; its leaves' weights are already known from their parents' splits.

Privacy: proposals carry only model parts (cut points, base score, splits, node weights, covers,
gains and row counts of nodes that the floor allows) and the ids of open nodes, never a
histogram. Nodes with fewer than ``2 * min_child_samples`` consortium rows are not expanded, so
every revealed node histogram covers at least ``min_child_samples`` rows (and the root covers
all sampled rows); so does every bin between released cut points. The length of a ``grads``
request (seen by the aggregator) is the number of candidate positions of the level, a
count-derived figure; pad it if that matters.

Replay: the model state is a function of the table and the committed proposals, and
:meth:`GBDTTrainer.next_request` names every step after ``commit()``-only replay (a counts
proposal carries the next request's length). The exceptions are the subtraction trick and the
gradient layout: a level needs the previous level's and its own count aggregates, which are
cached when :meth:`GBDTTrainer.propose` produces the proposal that is then committed. So every
tree step names the segment ``tree/<t>``: a bank that restarts mid-tree replays the current
tree's steps through ``propose`` with the re-decrypted aggregates before ``commit``
(:func:`fedtab.protocol.steps.restore`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import LocalTable
from fedtab.errors import DataContractError, PrivacyError, ProtocolError
from fedtab.gbdt import binning, split
from fedtab.gbdt.export import model_to_xgboost_json
from fedtab.gbdt.grad_layout import GradLayout
from fedtab.gbdt.model import GBDTModel, Tree, base_margin_of, sigmoid
from fedtab.gbdt.params import GBDTParams
from fedtab.gbdt.split import HistLayout, NodeHist, NodeStats
from fedtab.gbdt.tree_build import TreeBuild
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest, proposal_digest

GRAD_FRAC_BITS = 24


class GBDTTrainer:
    """Federated XGBoost-style trainer for ``binary:logistic`` (see module docstring).

    Raises :class:`ConfigError` for bad params and :class:`DataContractError` for a table that
    does not fit the contract's binning.
    """

    def __init__(self, ctx: JobContext, table: LocalTable) -> None:
        self.ctx = ctx
        self.table = table
        self.params = GBDTParams.from_mapping(ctx.params, default_seed=ctx.seed)
        p = self.params
        if table.X.ndim != 2 or table.X.shape[1] != len(table.contract.features):
            raise DataContractError("table X does not match the contract's feature count")
        if table.n_rows > p.max_rows_per_bank:
            raise DataContractError(
                f"table has {table.n_rows} rows, above max_rows_per_bank={p.max_rows_per_bank}"
            )
        n_fine = binning.fine_grid_size(p.max_bin)
        self._fine = [binning.fine_edges(f, n_fine) for f in table.contract.features]
        self._y = np.asarray(table.y, dtype=np.float64)
        self._w = np.where(self._y > 0.5, p.scale_pos_weight, 1.0)
        self._count_spec = EncodingSpec(0, float(p.max_rows_per_bank), ctx.n_banks)
        clip = float(p.max_rows_per_bank) * max(1.0, p.scale_pos_weight)
        self._hist_spec = EncodingSpec(GRAD_FRAC_BITS, clip, ctx.n_banks)
        bank_digest = hashlib.sha256(ctx.bank_name.encode()).digest()
        self._bank_key = int.from_bytes(bank_digest[:8], "big")
        # committed state
        self._cuts: list[np.ndarray] | None = None
        self._has_missing = np.zeros(len(self._fine), dtype=bool)
        self._base_score = 0.5
        self._bins: np.ndarray = np.zeros((0, 0), dtype=np.int32)
        self._margin = np.zeros(table.n_rows)
        self._trees: list[Tree] = []
        self._tree = TreeBuild()
        self._layout: HistLayout | None = None
        self._local_bins = np.zeros((0, 0), dtype=np.int64)
        self._grad = np.zeros(0)
        self._hess = np.zeros(0)
        self._row_node = np.zeros(0, dtype=np.int64)
        # caches of aggregates (not model state; see the module docstring on replay)
        self._hists: dict[int, NodeHist] = {}  # the previous level's split nodes
        self._level: _Level | None = None  # this level's counts and candidate positions
        self._pending: tuple[str, str, object] | None = None

    # ------------------------------------------------------------------ protocol
    def next_request(self) -> SumRequest | None:
        if self._cuts is None:
            length = sum(len(e) + 2 for e in self._fine) + 2
            return SumRequest("bins", length, self._count_spec, "fine count histograms")
        if len(self._trees) >= self.params.n_estimators:
            return None
        tree = self._tree
        step = self._step_id()
        segment = f"tree/{len(self._trees)}"  # a level needs its tree's earlier aggregates
        if tree.phase == "counts":
            length = len(tree.build) * self._current_layout().size
            return SumRequest(step, length, self._count_spec,
                              f"{len(tree.build)} node count histogram(s)", segment)
        return SumRequest(step, tree.grads_length, self._hist_spec,
                          "node gradient sums at candidate positions", segment)

    def contribution(self, request: SumRequest) -> np.ndarray:
        self._check_request(request)
        if request.step_id == "bins":
            return self._bins_contribution()
        layout, tree = self._current_layout(), self._tree
        if tree.phase == "grads":
            if tree.grads is None:
                raise ProtocolError(f"{request.step_id}: {_NO_CACHE}")
            return tree.grads.contribution(layout, self._row_node, self._local_bins,
                                           self._grad, self._hess)
        slot = np.full(max(len(tree.value), max(tree.build) + 1) + 1, -1, dtype=np.int64)
        slot[tree.build] = np.arange(len(tree.build))
        node_slot = slot[self._row_node]  # row_node == -1 (unsampled) maps to the last, -1
        rows = np.flatnonzero(node_slot >= 0)
        size = len(tree.build) * layout.size
        flat = (node_slot[rows] * layout.size)[:, None] + self._local_bins[rows] + layout.start
        return np.bincount(flat.ravel(), minlength=size).astype(np.float64)

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        self._check_request(request)
        values = np.asarray(aggregate, dtype=np.float64)
        if values.shape != (request.length,):
            raise ProtocolError(f"aggregate for {request.step_id!r} has shape {values.shape}")
        if request.step_id == "bins":
            return self._propose_bins(values)
        proposal: JsonDict
        cache: object
        if self._tree.phase == "counts":
            proposal, cache = self._propose_counts(request, values)
        else:
            proposal, cache = self._propose_splits(request, values)
        self._pending = (request.step_id, proposal_digest(proposal), cache)  # cache only
        return proposal

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        if request.step_id != self._step_id():
            raise ProtocolError(f"cannot commit {request.step_id!r}: expected {self._step_id()!r}")
        if request.step_id == "bins":
            self._commit_bins(proposal)
            return
        pending, self._pending = self._pending, None
        cache = None
        if pending is not None and pending[:2] == (request.step_id, proposal_digest(proposal)):
            cache = pending[2]
        if self._tree.phase == "counts":
            self._commit_counts(proposal, cache)  # type: ignore[arg-type]
        else:
            self._commit_splits(proposal, cache)  # type: ignore[arg-type]

    def result(self) -> dict[str, bytes]:
        if self.next_request() is not None:
            raise ProtocolError("the gbdt job is not finished; no model yet")
        meta = {
            "format": "fedtab-gbdt/1",
            "params": self.params.to_dict(),
            "bank_names": list(self.ctx.bank_names),
            "job_id": self.ctx.job_id,
            "cuts": [[float(c) for c in cuts] for cuts in (self._cuts or [])],
            "categorical_encoding": "category codes 0..k-1, split numerically",
        }
        attributes = {
            "fedtab_contract": json.dumps(self.table.contract.to_dict(), sort_keys=True),
            "fedtab": json.dumps(meta, sort_keys=True),
        }
        data = model_to_xgboost_json(
            self.model(), scale_pos_weight=self.params.scale_pos_weight, attributes=attributes
        )
        return {"model.json": data}

    # ------------------------------------------------------------------ public extras
    def model(self) -> GBDTModel:
        """The committed trees so far as a :class:`GBDTModel`."""
        return GBDTModel(tuple(self._trees), self._base_score, tuple(self.table.feature_names))

    @property
    def histogram_encoding(self) -> EncodingSpec:
        """The encoding of every tree-level request (shared params and bank count only)."""
        return self._hist_spec

    @property
    def cuts(self) -> list[np.ndarray]:
        """Committed global cut points per feature (float32); empty before the bins step."""
        return list(self._cuts or [])

    @property
    def train_margin(self) -> np.ndarray:
        """This bank's current margins (log-odds) for its own rows."""
        return self._margin.copy()

    # ------------------------------------------------------------------ bins and base score
    def _bins_contribution(self) -> np.ndarray:
        totals = np.array([self.table.n_rows, float(self._y.sum())])
        return np.concatenate([binning.fine_counts(self.table.X, self._fine), totals])

    def _propose_bins(self, values: np.ndarray) -> JsonDict:
        p = self.params
        n_rows, n_pos = float(values[-2]), float(values[-1])
        if n_rows < 2 * p.min_child_samples:
            raise PrivacyError(
                f"the consortium has {n_rows:.0f} rows, fewer than 2 * min_child_samples"
            )
        cuts, has_missing = binning.cuts_from_counts(
            values[:-2], self._fine, p.max_bin, min_rows=p.min_child_samples
        )
        weighted_pos = p.scale_pos_weight * n_pos
        prior = weighted_pos / (weighted_pos + n_rows - n_pos)
        base_score = float(np.float32(min(max(prior, 1e-6), 1.0 - 1e-6)))
        return {"step": "bins", "cuts": [[float(c) for c in f] for f in cuts],
                "has_missing": has_missing, "base_score": base_score}

    def _commit_bins(self, proposal: JsonDict) -> None:
        self._cuts = [np.asarray(c, dtype=np.float32) for c in proposal["cuts"]]
        self._has_missing = np.asarray(proposal["has_missing"], dtype=bool)
        self._base_score = float(proposal["base_score"])
        columns = [binning.assign_bins(self.table.X[:, j], c) for j, c in enumerate(self._cuts)]
        self._bins = np.zeros((self.table.n_rows, len(columns)), dtype=np.int32)
        for j, column in enumerate(columns):
            self._bins[:, j] = column
        self._margin = np.full(self.table.n_rows, base_margin_of(self._base_score))
        self._start_tree()


    # ------------------------------------------------------------------ trees
    def _step_id(self) -> str:
        if self._cuts is None:
            return "bins"
        if len(self._trees) >= self.params.n_estimators:
            return "done"
        tree = self._tree
        return f"tree/{len(self._trees)}/depth/{tree.depth}/{tree.phase}"

    def _start_tree(self) -> None:
        p, t = self.params, len(self._trees)
        self._tree = TreeBuild()
        self._hists = {}
        self._level = None
        self._pending = None
        if t >= p.n_estimators or self._cuts is None:
            return
        n_features = len(self._cuts)
        n_cols = max(1, round(p.colsample_bytree * n_features))
        if n_cols < n_features:
            shared = np.random.default_rng([p.seed, t, 1])
            cols = np.sort(shared.choice(n_features, size=n_cols, replace=False))
        else:
            cols = np.arange(n_features)
        n_cuts = np.array([len(c) for c in self._cuts], dtype=np.int64)
        self._layout = HistLayout.build(cols, n_cuts, self._has_missing)
        self._local_bins = self._bins[:, cols].astype(np.int64)
        prob = sigmoid(self._margin)
        self._grad = (prob - self._y) * self._w
        self._hess = np.maximum(prob * (1.0 - prob), 1e-16) * self._w
        self._row_node = np.zeros(self.table.n_rows, dtype=np.int64)
        if p.subsample < 1.0:
            local = np.random.default_rng([p.seed, t, 0, self._bank_key])
            self._row_node[local.random(self.table.n_rows) >= p.subsample] = -1

    def _current_layout(self) -> HistLayout:
        if self._layout is None:
            raise ProtocolError("no tree is being grown")
        return self._layout

    def _parent_hist(self, step: str, parent: int) -> NodeHist:
        if parent not in self._hists:
            raise ProtocolError(f"{step}: parent histogram of node {parent} missing; {_NO_CACHE}")
        return self._hists[parent]

    def _propose_counts(self, request: SumRequest, values: np.ndarray) -> tuple[JsonDict, _Level]:
        layout, tree = self._current_layout(), self._tree
        built = values.reshape(len(tree.build), layout.size)
        counts = {node: built[i] for i, node in enumerate(tree.build)}
        for node, (parent, sibling) in tree.derive.items():
            counts[node] = self._parent_hist(request.step_id, parent).counts - counts[sibling]
        mcs = self.params.min_child_samples
        positions = {
            node: tuple(split.candidate_positions(counts[node], layout, mcs))
            for node in tree.frontier
        }
        is_open = [n for n in tree.frontier if any(len(q) for q in positions[n])]
        larger = {sib: node for node, (_parent, sib) in tree.derive.items()}
        pairs = [(node, larger.get(node)) for node in tree.build]
        grads = GradLayout.plan(layout, pairs, is_open, counts, positions,
                                always=tree.depth == 0)
        # the next request's length is public anyway; carrying it lets a bank that replays
        # with commit() alone still name the next request
        proposal = {"step": request.step_id, "open": is_open, "grads_length": 2 * grads.size}
        return proposal, _Level(counts, positions, grads)

    def _commit_counts(self, proposal: JsonDict, level: _Level | None) -> None:
        tree = self._tree
        tree.open = [int(n) for n in proposal["open"]]
        tree.grads_length = int(proposal["grads_length"])
        if not tree.open and tree.depth > 0:
            self._finish_tree()
            return
        tree.phase = "grads"
        self._level = level
        tree.grads = None if level is None else level.grads

    def _propose_splits(
        self, request: SumRequest, values: np.ndarray
    ) -> tuple[JsonDict, dict[int, NodeHist]]:
        layout, tree, level = self._current_layout(), self._tree, self._level
        if tree.grads is None or level is None:
            raise ProtocolError(f"{request.step_id}: {_NO_CACHE}")
        hists = tree.grads.decode(values, level.counts)
        for node, (parent, sibling) in tree.derive.items():
            if node in tree.open:
                hists[node] = self._parent_hist(request.step_id, parent).derive(
                    hists[sibling], level.counts[node], level.positions[node]
                )
        proposal: JsonDict = {"step": request.step_id, "splits": []}
        if tree.depth == 0:
            root = hists[0]
            if root.count < self.params.min_child_samples:
                raise PrivacyError(f"{request.step_id}: the root has too few rows")
            proposal["root"] = self._node_json(NodeStats(float(root.total[0]),
                                                         float(root.total[1]), root.count))
        cuts = self._cuts_or_fail()
        for node in tree.open:
            best = split.best_split(hists[node], layout, self.params)
            if best is None:
                continue
            proposal["splits"].append({
                "node": node,
                "feature": best.feature,
                "bin": best.split_bin,
                "threshold": float(cuts[best.feature][best.split_bin]),
                "default_left": best.default_left,
                "loss_change": best.loss_change,
                "left": self._node_json(best.left),
                "right": self._node_json(best.right),
            })
        return proposal, {node: hists[node] for node in tree.open}

    def _node_json(self, stats: NodeStats) -> JsonDict:
        weight = float(split.leaf_weight(stats.grad, stats.hess, self.params))
        value = float(np.float32(self.params.learning_rate * weight))
        return {"count": stats.count, "cover": stats.hess, "value": value}

    def _cuts_or_fail(self) -> list[np.ndarray]:
        if self._cuts is None:
            raise ProtocolError("cut points are not committed yet")
        return self._cuts

    def _commit_splits(self, proposal: JsonDict, hists: dict[int, NodeHist] | None) -> None:
        p, tree = self.params, self._tree
        if tree.depth == 0:
            root = proposal["root"]
            tree.add_node(float(root["value"]), float(root["cover"]), int(root["count"]))
        frontier, build, derive = [], [], {}
        for item in proposal["splits"]:
            node = int(item["node"])
            children = [
                tree.add_node(float(s["value"]), float(s["cover"]), int(s["count"]))
                for s in (item["left"], item["right"])
            ]
            tree.left[node], tree.right[node] = children
            tree.feature[node] = int(item["feature"])
            tree.split_bin[node] = int(item["bin"])
            tree.threshold[node] = float(item["threshold"])
            tree.default_left[node] = bool(item["default_left"])
            tree.loss_change[node] = float(item["loss_change"])
            self._route(node)
            open_children = [
                c for c in children
                if tree.depth + 1 < p.max_depth and tree.count[c] >= 2 * p.min_child_samples
            ]
            if open_children:
                frontier.extend(open_children)
                small, large = sorted(children, key=lambda c: (tree.count[c], c))
                build.append(small)
                if large in open_children:
                    derive[large] = (node, small)
        if not frontier:
            self._finish_tree()
            return
        tree.depth += 1
        tree.phase, tree.grads, tree.open = "counts", None, []
        tree.frontier, tree.build, tree.derive = frontier, build, derive
        self._hists = hists or {}
        self._level = None

    def _finish_tree(self) -> None:
        self._trees.append(self._tree.freeze())
        finished = self._trees[-1]
        missing_bin = np.array([len(c) + 1 for c in self._cuts_or_fail()])
        self._margin += finished.value[finished.leaf_index_binned(self._bins, missing_bin)]
        self._start_tree()

    def _route(self, node: int) -> None:
        """Move this bank's rows of ``node`` to its children."""
        tree = self._tree
        rows = np.flatnonzero(self._row_node == node)
        feature = tree.feature[node]
        b = self._bins[rows, feature]
        missing = b == len(self._cuts_or_fail()[feature]) + 1
        go_left = np.where(missing, tree.default_left[node], b <= tree.split_bin[node])
        self._row_node[rows] = np.where(go_left, tree.left[node], tree.right[node])

    def _check_request(self, request: SumRequest) -> None:
        expected = self.next_request()
        if expected is None or expected != request:
            raise ProtocolError(
                f"unexpected step {request.step_id!r}; this bank expects "
                f"{'none' if expected is None else expected.step_id!r}"
            )


_NO_CACHE = (
    "this level's aggregates are not cached (a bank that restarts mid-tree must replay the "
    "tree's steps through propose() before commit())"
)


@dataclass(frozen=True)
class _Level:
    """One level's consortium count histograms, candidate positions and gradient request
    layout (cached from the aggregate, not model state)."""

    counts: dict[int, np.ndarray]
    positions: dict[int, tuple[np.ndarray, ...]]
    grads: GradLayout
