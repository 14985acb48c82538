"""One bank's side of federated histogram gradient boosting, as a pure step machine.

Steps (each one secure sum, see :mod:`fedtab.protocol.steps`):

* ``bins``: fine per-feature count histograms (plus a missing bucket per feature) and the
  (rows, positives) pair. Every bank derives the global cut points (:mod:`fedtab.gbdt.binning`),
  which features have at least ``min_child_samples`` missing values (fewer are folded into the
  feature's last bin: nothing released tells them from none), and the base score
  ``s P / (s P + N - P)`` (``s = scale_pos_weight``, XGBoost's weighted prior). Every bin the
  cut points define holds at least ``min_child_samples`` consortium rows (end bins included); a
  feature too sparse for two such bins gets no cut.
* ``tree/t/depth/d/counts``: count histograms (all bins, integer encoding: narrow slots) of the
  nodes to expand at depth ``d`` of tree ``t``. Of each pair of siblings only the one with fewer
  consortium rows is summed; the other is its parent's aggregate minus it. From the counts every
  bank derives each pair of siblings' *released positions* (:mod:`fedtab.gbdt.positions`: within
  the parent's, thinned so that every group of bins between two positions, before the first and
  after the last holds none or at least ``min_child_samples`` rows of either sibling; missing
  buckets below the floor are folded and get no learned default direction) and proposes which
  nodes can still split there (``open``).
* ``tree/t/depth/d/grads``: (gradient, hessian) sums of the same nodes, grouped at the released
  positions only (:mod:`fedtab.gbdt.grad_layout`; far fewer ciphertexts than full histograms).
  Every bank finds the same best splits (:mod:`fedtab.gbdt.split`) and proposes them with the
  children's weights, covers and gains as ``model.json`` has them (two significant digits),
  which children can still split and which one is smaller (no row counts); committing routes
  the bank's rows to the children. A tree ends when no node can be expanded; its leaves'
  weights are already known from their parents' splits.

Privacy: proposals carry only model parts (cut points, base score, splits, node weights, and
covers and gains rounded as in ``model.json``), one bit per child (can it split) and per split
(which child is smaller), and the ids of open nodes, never a histogram or a row count: a tree-1
node's exact (count, cover) would split into its intersections with tree 0's leaves (issue 11,
item 3; exact leaf weights still pin them with integrality, see ``docs/SECURITY.md``). Nodes
with fewer than ``2 * min_child_samples`` consortium rows are not expanded, so every revealed
node histogram covers at least ``min_child_samples`` rows (and the root covers all sampled
rows); so does every bin between released cut points, and every difference of gradient sums a
bank can form within a level (:mod:`fedtab.gbdt.positions`). Row and column samples are keyed
with the job's sampling secrets (:mod:`fedtab.gbdt.sampling`), so no one else can tell which
rows a tree used. The length of a ``grads`` request (seen by the aggregator) is the number of
released positions of the level, a count-derived figure; pad it if that matters.

Replay: the model state is a function of the table and the committed proposals, and
:meth:`GBDTTrainer.next_request` names every step after ``commit()``-only replay (a counts
proposal carries the next request's length). The exceptions are the subtraction trick and the
gradient layout: a level needs the previous level's and its own count aggregates, which are
cached when ``propose`` produces the proposal that is then committed (:mod:`fedtab.gbdt.grow`,
where the level steps live). So every tree step names the segment ``tree/<t>``: a bank that
restarts mid-tree replays the current tree's steps through ``propose`` with the re-decrypted
aggregates before ``commit`` (:meth:`~fedtab.protocol.step_machine.StepMachine.restore`).
"""

from __future__ import annotations

import json

import numpy as np

from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import LocalTable
from fedtab.errors import DataContractError, PrivacyError, ProtocolError
from fedtab.gbdt import binning, sampling
from fedtab.gbdt.export import model_to_xgboost_json
from fedtab.gbdt.grow import TreeGrower, TreeRows
from fedtab.gbdt.model import GBDTModel, Tree, base_margin_of, sigmoid
from fedtab.gbdt.params import GBDTParams
from fedtab.gbdt.split import HistLayout
from fedtab.protocol.step_machine import FnStep, Step, StepMachine
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

GRAD_FRAC_BITS = 24


class GBDTTrainer(StepMachine):
    """Federated XGBoost-style trainer for ``binary:logistic`` (see module docstring).

    Raises :class:`ConfigError` for bad params and :class:`DataContractError` for a table that
    does not fit the contract's binning. The ``weakened_*`` flags restore old release rules, for
    the attack tests' positive controls only: ``weakened_positions`` the unthinned candidate
    positions (a bank reads another bank's row), ``weakened_counts`` exact row counts, covers
    and gains in proposals (differencing across trees), ``weakened_missing`` a missing flag
    for any missing value (one row's granularity).
    """

    def __init__(self, ctx: JobContext, table: LocalTable, *,
                 weakened_positions: bool = False, weakened_counts: bool = False,
                 weakened_missing: bool = False) -> None:
        self.ctx = ctx
        self._thin = not weakened_positions
        self._exact = weakened_counts
        self._weakened_missing = weakened_missing
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
        # committed state
        self._cuts: list[np.ndarray] | None = None
        self._has_missing = np.zeros(len(self._fine), dtype=bool)
        self._base_score = 0.5
        self._bins: np.ndarray = np.zeros((0, 0), dtype=np.int32)
        self._margin = np.zeros(table.n_rows)
        self._trees: list[Tree] = []
        self._grower: TreeGrower | None = None  # the tree being grown, its current step
        length = sum(len(e) + 2 for e in self._fine) + 2
        self._bins_step = FnStep(
            SumRequest("bins", length, self._count_spec, "fine count histograms"),
            self._bins_contribution, self._propose_bins, self._commit_bins,
        )

    # ------------------------------------------------------------------ protocol
    def current_step(self) -> Step | None:
        if self._cuts is None:
            return self._bins_step
        return None if self._grower is None else self._grower.step

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
            values[:-2], self._fine, p.max_bin, min_rows=p.min_child_samples,
            weakened_missing=self._weakened_missing,
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
        columns = [binning.assign_bins(self.table.X[:, j], c, has_missing=bool(m))
                   for j, (c, m) in enumerate(zip(self._cuts, self._has_missing, strict=True))]
        self._bins = np.zeros((self.table.n_rows, len(columns)), dtype=np.int32)
        for j, column in enumerate(columns):
            self._bins[:, j] = column
        self._margin = np.full(self.table.n_rows, base_margin_of(self._base_score))
        self._start_tree()

    # ------------------------------------------------------------------ trees
    def _start_tree(self) -> None:
        """Sample the next tree's columns and rows and compute its gradients (or finish)."""
        p, t = self.params, len(self._trees)
        self._grower = None
        if t >= p.n_estimators or self._cuts is None:
            return
        cols = sampling.sample_columns(self.ctx, p.seed, t, len(self._cuts), p.colsample_bytree)
        n_cuts = np.array([len(c) for c in self._cuts], dtype=np.int64)
        layout = HistLayout.build(cols, n_cuts, self._has_missing)
        prob = sigmoid(self._margin)
        row_node = np.zeros(self.table.n_rows, dtype=np.int64)
        row_node[sampling.sampled_out(self.ctx, p.seed, t, self.table.n_rows, p.subsample)] = -1
        rows = TreeRows(
            index=t,
            layout=layout,
            bins=self._bins,
            local_bins=self._bins[:, cols].astype(np.int64),
            grad=(prob - self._y) * self._w,
            hess=np.maximum(prob * (1.0 - prob), 1e-16) * self._w,
            row_node=row_node,
        )
        self._grower = TreeGrower(rows, self._cuts, p, (self._count_spec, self._hist_spec),
                                  self._finish_tree, thin=self._thin, exact=self._exact)

    def _finish_tree(self, finished: Tree) -> None:
        if self._cuts is None:
            raise ProtocolError("cut points are not committed yet")
        self._trees.append(finished)
        missing_bin = np.array([len(c) + 1 for c in self._cuts])
        self._margin += finished.value[finished.leaf_index_binned(self._bins, missing_bin)]
        self._start_tree()
