"""One bank's side of federated histogram gradient boosting, as a pure step machine.

Steps (each one secure sum, see :mod:`fedtab.protocol.steps`):

* ``bins``: fine per-feature count histograms (plus a missing bucket per feature) and the
  (rows, positives) pair. Every bank derives the global cut points (:mod:`fedtab.gbdt.binning`),
  which features have missing values, and the base score ``s P / (s P + N - P)``
  (``s = scale_pos_weight``, XGBoost's weighted prior).
* ``tree/t/depth/d``: (gradient, hessian, count) histograms of the nodes to expand at depth
  ``d`` of tree ``t``. Of each pair of siblings only the one with fewer consortium rows is summed;
  the other is its parent's aggregate minus it. Every bank finds the same best splits
  (:mod:`fedtab.gbdt.split`) and proposes them with the children's row counts, hessian sums and
  weights (model facts); committing routes the bank's rows to the children. A tree ends when no
  node can be expanded; its leaves' weights are already known from their parents' splits.

Privacy: proposals carry only model parts (cut points, base score, splits, node weights, covers,
gains and row counts of nodes that the floor allows), never a histogram. Nodes with fewer than
``2 * min_child_samples`` consortium rows are not expanded, so every revealed node histogram
covers at least ``min_child_samples`` rows (and the root covers all sampled rows).

Replay: the model state is a function of the table and the committed proposals. The one
exception is the subtraction trick: a level's derived histograms need the previous level's
aggregates, which are cached when :meth:`GBDTTrainer.propose` produces the proposal that is then
committed. A bank that restarts mid-tree must therefore replay that tree's steps through
``propose`` (with the re-decrypted aggregates) before ``commit``; replaying finished trees needs
only ``commit``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import LocalTable
from fedtab.errors import DataContractError, PrivacyError, ProtocolError
from fedtab.gbdt import binning
from fedtab.gbdt.export import model_to_xgboost_json
from fedtab.gbdt.model import GBDTModel, Tree, base_margin_of, sigmoid
from fedtab.gbdt.params import GBDTParams
from fedtab.gbdt.split import HistLayout, NodeStats, best_split, leaf_weight, node_totals
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest, proposal_digest

GRAD_FRAC_BITS = 24


@dataclass
class _TreeBuild:
    """The tree being grown: node arrays as lists, the open frontier, and what to sum next."""

    left: list[int]
    right: list[int]
    feature: list[int]
    split_bin: list[int]
    threshold: list[float]
    default_left: list[bool]
    value: list[float]
    loss_change: list[float]
    cover: list[float]
    count: list[int]
    depth: int
    frontier: list[int]  # nodes at ``depth`` that may split
    build: list[int]  # nodes whose histograms are summed at ``depth``
    derive: dict[int, tuple[int, int]]  # node -> (parent, built sibling)

    @classmethod
    def empty(cls) -> _TreeBuild:
        return cls([], [], [], [], [], [], [], [], [], [], 0, [0], [0], {})

    def add_node(self, value: float, cover: float, count: int) -> int:
        for ints in (self.left, self.right, self.feature, self.split_bin):
            ints.append(-1)
        self.threshold.append(0.0)
        self.default_left.append(False)
        self.loss_change.append(0.0)
        self.value.append(value)
        self.cover.append(cover)
        self.count.append(count)
        return len(self.value) - 1

    def freeze(self) -> Tree:
        return Tree(
            left=np.array(self.left, dtype=np.int64),
            right=np.array(self.right, dtype=np.int64),
            feature=np.array(self.feature, dtype=np.int64),
            split_bin=np.array(self.split_bin, dtype=np.int64),
            threshold=np.array(self.threshold, dtype=np.float32),
            default_left=np.array(self.default_left, dtype=bool),
            value=np.array(self.value, dtype=np.float64),
            loss_change=np.array(self.loss_change, dtype=np.float64),
            cover=np.array(self.cover, dtype=np.float64),
            count=np.array(self.count, dtype=np.int64),
        )


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
        self._tree = _TreeBuild.empty()
        self._layout: HistLayout | None = None
        self._local_idx = np.zeros((0, 0), dtype=np.int64)
        self._grad = np.zeros(0)
        self._hess = np.zeros(0)
        self._row_node = np.zeros(0, dtype=np.int64)
        self._hists: dict[int, np.ndarray] = {}  # aggregates of the current frontier's parents
        self._pending: tuple[str, str, dict[int, np.ndarray]] | None = None

    # ------------------------------------------------------------------ protocol
    def next_request(self) -> SumRequest | None:
        if self._cuts is None:
            length = sum(len(e) + 2 for e in self._fine) + 2
            return SumRequest("bins", length, self._count_spec, "fine count histograms")
        if len(self._trees) >= self.params.n_estimators:
            return None
        t, d = len(self._trees), self._tree.depth
        length = 3 * len(self._tree.build) * self._current_layout().size
        return SumRequest(
            f"tree/{t}/depth/{d}", length, self._hist_spec,
            f"tree {t} depth {d}: {len(self._tree.build)} node histogram(s)",
        )

    def contribution(self, request: SumRequest) -> np.ndarray:
        self._check_request(request)
        if request.step_id == "bins":
            return self._bins_contribution()
        layout = self._current_layout()
        build = self._tree.build
        slot = np.full(max(len(self._tree.value), max(build) + 1) + 1, -1, dtype=np.int64)
        slot[build] = np.arange(len(build))
        node_slot = slot[self._row_node]  # row_node == -1 (unsampled) maps to the last, -1
        rows = np.flatnonzero(node_slot >= 0)
        size = len(build) * layout.size
        flat = (node_slot[rows] * layout.size)[:, None] + self._local_idx[rows]
        k = flat.shape[1]
        out = np.empty((3, size))
        for i, weights in enumerate((self._grad[rows], self._hess[rows], None)):
            w = None if weights is None else np.repeat(weights, k)
            out[i] = np.bincount(flat.ravel(), weights=w, minlength=size)
        return out.reshape(3, len(build), layout.size).reshape(-1)

    def propose(self, request: SumRequest, aggregate: np.ndarray) -> JsonDict:
        self._check_request(request)
        values = np.asarray(aggregate, dtype=np.float64)
        if values.shape != (request.length,):
            raise ProtocolError(f"aggregate for {request.step_id!r} has shape {values.shape}")
        if request.step_id == "bins":
            return self._propose_bins(values)
        proposal, hists = self._propose_level(request, values)
        self._pending = (request.step_id, proposal_digest(proposal), hists)  # cache only
        return proposal

    def commit(self, request: SumRequest, proposal: JsonDict) -> None:
        self._check_request(request)
        if request.step_id == "bins":
            self._commit_bins(proposal)
            return
        pending, self._pending = self._pending, None
        hists: dict[int, np.ndarray] = {}
        if pending is not None and pending[:2] == (request.step_id, proposal_digest(proposal)):
            hists = pending[2]
        self._commit_level(proposal, hists)

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
        parts = []
        for j, edges in enumerate(self._fine):
            buckets = binning.assign_bins(self.table.X[:, j], edges)
            parts.append(np.bincount(buckets, minlength=len(edges) + 2).astype(np.float64))
        parts.append(np.array([self.table.n_rows, float(self._y.sum())]))
        return np.concatenate(parts)

    def _propose_bins(self, values: np.ndarray) -> JsonDict:
        p = self.params
        n_rows, n_pos = float(values[-2]), float(values[-1])
        if n_rows < 2 * p.min_child_samples:
            raise PrivacyError(
                f"the consortium has {n_rows:.0f} rows, fewer than 2 * min_child_samples"
            )
        cuts, has_missing, at = [], [], 0
        for edges in self._fine:
            counts = values[at : at + len(edges) + 2]
            at += len(edges) + 2
            cuts.append([float(c) for c in binning.select_cuts(edges, counts[:-1], p.max_bin)])
            has_missing.append(bool(counts[-1] > 0))
        weighted_pos = p.scale_pos_weight * n_pos
        prior = weighted_pos / (weighted_pos + n_rows - n_pos)
        base_score = float(np.float32(min(max(prior, 1e-6), 1.0 - 1e-6)))
        return {"step": "bins", "cuts": cuts, "has_missing": has_missing,
                "base_score": base_score}

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
    def _start_tree(self) -> None:
        p, t = self.params, len(self._trees)
        self._tree = _TreeBuild.empty()
        self._hists = {}
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
        self._local_idx = self._bins[:, cols].astype(np.int64) + self._layout.start[None, :]
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

    def _propose_level(
        self, request: SumRequest, values: np.ndarray
    ) -> tuple[JsonDict, dict[int, np.ndarray]]:
        layout, tree = self._current_layout(), self._tree
        built = values.reshape(3, len(tree.build), layout.size)
        hists = {node: built[:, i, :] for i, node in enumerate(tree.build)}
        for node, (parent, sibling) in tree.derive.items():
            if parent not in self._hists:
                raise ProtocolError(
                    f"{request.step_id}: parent histogram of node {node} unavailable (a bank "
                    "that restarts mid-tree must replay the tree's steps through propose())"
                )
            hists[node] = self._hists[parent] - hists[sibling]
        proposal: JsonDict = {"step": request.step_id, "splits": []}
        if tree.depth == 0:
            proposal["root"] = self._node_json(node_totals(hists[0], layout))
            if proposal["root"]["count"] < self.params.min_child_samples:
                raise PrivacyError(f"{request.step_id}: the root has too few rows")
        for node in tree.frontier:
            split = best_split(hists[node], layout, self.params)
            if split is None:
                continue
            proposal["splits"].append({
                "node": node,
                "feature": split.feature,
                "bin": split.split_bin,
                "threshold": float(self._cuts_or_fail()[split.feature][split.split_bin]),
                "default_left": split.default_left,
                "loss_change": split.loss_change,
                "left": self._node_json(split.left),
                "right": self._node_json(split.right),
            })
        return proposal, {node: hists[node] for node in tree.frontier}

    def _node_json(self, stats: NodeStats) -> JsonDict:
        weight = float(leaf_weight(stats.grad, stats.hess, self.params))
        value = float(np.float32(self.params.learning_rate * weight))
        return {"count": stats.count, "cover": stats.hess, "value": value}

    def _cuts_or_fail(self) -> list[np.ndarray]:
        if self._cuts is None:
            raise ProtocolError("cut points are not committed yet")
        return self._cuts

    def _commit_level(self, proposal: JsonDict, hists: dict[int, np.ndarray]) -> None:
        p, tree = self.params, self._tree
        if tree.depth == 0:
            root = proposal["root"]
            tree.add_node(float(root["value"]), float(root["cover"]), int(root["count"]))
        frontier, build, derive = [], [], {}
        for split in proposal["splits"]:
            node = int(split["node"])
            children = [
                tree.add_node(float(s["value"]), float(s["cover"]), int(s["count"]))
                for s in (split["left"], split["right"])
            ]
            tree.left[node], tree.right[node] = children
            tree.feature[node] = int(split["feature"])
            tree.split_bin[node] = int(split["bin"])
            tree.threshold[node] = float(split["threshold"])
            tree.default_left[node] = bool(split["default_left"])
            tree.loss_change[node] = float(split["loss_change"])
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
            self._trees.append(tree.freeze())
            finished = self._trees[-1]
            missing_bin = np.array([len(c) + 1 for c in self._cuts_or_fail()])
            self._margin += finished.value[finished.leaf_index_binned(self._bins, missing_bin)]
            self._start_tree()
            return
        tree.depth += 1
        tree.frontier, tree.build, tree.derive = frontier, build, derive
        self._hists = hists

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
