"""Write a :class:`GBDTModel` as an XGBoost JSON model (``binary:logistic``, ``gbtree``).

The file follows XGBoost's JSON model schema as written by XGBoost 2.1 (which 2.1 and later
load, including 3.x): ``learner`` with ``learner_model_param`` (``base_score`` as a probability),
``objective``, ``gradient_booster.model.trees`` as parallel per-node arrays, ``feature_names``
from the data contract, and string ``attributes`` that make the file self-describing
(``fedtab_contract``: the data contract JSON; ``fedtab``: job metadata such as the parameters and
the cut points). Thresholds and leaf values are float32-exact, and XGBoost's ``x < threshold``
goes-left rule equals fedtab's binning. Categorical features are fed as their integer category
codes and split numerically on those codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedtab.gbdt.model import GBDTModel, Tree

XGBOOST_FORMAT_VERSION = [2, 1, 0]
_ROOT_PARENT = 2147483647


def _f32(value: float) -> float:
    return float(np.float32(value))


def _fmt_f32(value: float) -> str:
    return format(np.float32(value), ".9E").replace("E+", "E").replace("E-0", "E-")


def tree_to_json(tree: Tree, tree_id: int, n_features: int) -> dict[str, Any]:
    """One tree in XGBoost's JSON layout (node ids are fedtab's, root 0)."""
    parents = np.full(tree.n_nodes, _ROOT_PARENT, dtype=np.int64)
    internal = np.flatnonzero(tree.left >= 0)
    parents[tree.left[internal]] = internal
    parents[tree.right[internal]] = internal
    leaf = tree.left < 0
    conditions = np.where(leaf, tree.value, tree.threshold.astype(np.float64))
    return {
        "base_weights": [_f32(v) for v in tree.value],
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": [int(d and not lf) for d, lf in zip(tree.default_left, leaf, strict=True)],
        "id": tree_id,
        "left_children": [int(v) for v in tree.left],
        "loss_changes": [_f32(v) for v in tree.loss_change],
        "parents": [int(v) for v in parents],
        "right_children": [int(v) for v in tree.right],
        "split_conditions": [_f32(v) for v in conditions],
        "split_indices": [int(f) if f >= 0 else 0 for f in tree.feature],
        "split_type": [0] * tree.n_nodes,
        "sum_hessian": [_f32(v) for v in tree.cover],
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(n_features),
            "num_nodes": str(tree.n_nodes),
            "size_leaf_vector": "1",
        },
    }


def model_to_xgboost_json(
    model: GBDTModel,
    *,
    scale_pos_weight: float,
    attributes: Mapping[str, str],
) -> bytes:
    """The model as XGBoost JSON bytes (deterministic: sorted keys, no spaces)."""
    n_features = len(model.feature_names)
    n_trees = len(model.trees)
    document = {
        "learner": {
            "attributes": dict(attributes),
            "feature_names": list(model.feature_names),
            "feature_types": [],
            "gradient_booster": {
                "model": {
                    "gbtree_model_param": {
                        "num_parallel_tree": "1",
                        "num_trees": str(n_trees),
                    },
                    "iteration_indptr": list(range(n_trees + 1)),
                    "tree_info": [0] * n_trees,
                    "trees": [tree_to_json(t, i, n_features) for i, t in enumerate(model.trees)],
                },
                "name": "gbtree",
            },
            "learner_model_param": {
                "base_score": _fmt_f32(model.base_score),
                "boost_from_average": "1",
                "num_class": "0",
                "num_feature": str(n_features),
                "num_target": "1",
            },
            "objective": {
                "name": "binary:logistic",
                "reg_loss_param": {"scale_pos_weight": repr(float(scale_pos_weight))},
            },
        },
        "version": XGBOOST_FORMAT_VERSION,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
