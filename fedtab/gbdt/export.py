"""Write a :class:`GBDTModel` as an XGBoost JSON model (``binary:logistic``, ``gbtree``).

The file follows XGBoost's JSON model schema as written by XGBoost 2.1 (which 2.1 and later
load, including 3.x): ``learner`` with ``learner_model_param`` (``base_score`` as a probability),
``objective``, ``gradient_booster.model.trees`` as parallel per-node arrays, ``feature_names``
from the data contract, and string ``attributes`` that make the file self-describing
(``fedtab_contract``: the data contract JSON; ``fedtab``: job metadata such as the parameters and
the cut points). Thresholds and leaf values are float32-exact, and XGBoost's ``x < threshold``
goes-left rule equals fedtab's binning.

Categorical features (from the embedded contract) are exported the way XGBoost's native
categorical support writes them, so stock XGBoost reads them as categories, not as numbers:

- ``feature_types`` is ``"q"`` (numeric) or ``"c"`` (categorical) per feature;
- a split on a categorical feature has ``split_type`` 1 and lists, in ``categories`` (segmented by
  ``categories_nodes``/``categories_segments``/``categories_sizes``), the category codes that go
  right; XGBoost sends every other category left and a missing value to ``default_left``. fedtab's
  own rule (code ``< threshold`` goes left) is the same partition of the contract's codes; the
  threshold stays in ``split_conditions`` for reference;
- ``gradient_booster.model.cats`` records each feature's category names in the contract's order
  (XGBoost >= 3.1's category container: UTF-8 bytes with byte offsets, ``feature_segments``,
  and per-feature ``sorted_idx``), so XGBoost >= 3.1 re-codes a pandas ``category`` column by
  name whatever the order of its categories (XGBoost 3.2 refuses a category it never saw only
  when that sorts after every known name: :mod:`fedtab.gbdt.predict` validates fully).

Codes are the category's index in the contract. :mod:`fedtab.gbdt.predict` turns a raw holdout
into a frame any XGBoost >= 2.1 reads correctly (fedtab itself requires >= 3.1).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.errors import ConfigError, DataContractError
from fedtab.gbdt.model import GBDTModel, Tree

XGBOOST_FORMAT_VERSION = [2, 1, 0]
_ROOT_PARENT = 2147483647
CONTRACT_ATTRIBUTE = "fedtab_contract"
META_ATTRIBUTE = "fedtab"
CATEGORICAL_ENCODING = (
    "XGBoost categorical splits on category codes 0..k-1 in the contract's order "
    "(feature_types 'c'; category names recorded in the model)"
)


def _f32(value: float) -> float:
    return float(np.float32(value))


def coarse(value: float) -> float:
    """``value`` to two significant digits, for node statistics prediction does not use.

    ``sum_hessian``: in tree 0 a node's cover is its row count times ``p0 (1 - p0)``, so an
    exact cover is an exact row count; ``loss_changes`` would give covers back. XGBoost needs
    both arrays to load a model; SHAP values (``pred_contribs``) and gain importance stay
    approximately right. Idempotent: trainers already propose rounded values.
    """
    return _f32(float(format(float(value), ".2g")))


def fmt_f32(value: float) -> str:
    """A float32 as XGBoost writes parameter strings: the shortest digits that read back as
    the same float32 (``9.641747E-3``, ``5E-1``). XGBoost 2.1 silently reads a longer string
    (10 significant digits) as the default 0.5, so the digits must stay this short."""
    text = np.format_float_scientific(np.float32(value), unique=True, trim="-", exp_digits=1)
    return text.upper().replace("E+", "E")


def tree_to_json(
    tree: Tree, tree_id: int, n_features: int, n_categories: tuple[int, ...] = ()
) -> dict[str, Any]:
    """One tree in XGBoost's JSON layout (node ids are fedtab's, root 0).

    ``n_categories[f]`` is feature ``f``'s category count (0 for numeric; all numeric when
    empty); splits on categorical features become XGBoost categorical splits.
    """
    parents = np.full(tree.n_nodes, _ROOT_PARENT, dtype=np.int64)
    internal = np.flatnonzero(tree.left >= 0)
    parents[tree.left[internal]] = internal
    parents[tree.right[internal]] = internal
    leaf = tree.left < 0
    conditions = np.where(leaf, tree.value, tree.threshold.astype(np.float64))
    split_type, categorical = _categorical_splits(tree, n_categories)
    return {
        "base_weights": [_f32(v) for v in tree.value],
        **categorical,
        "default_left": [int(d and not lf) for d, lf in zip(tree.default_left, leaf, strict=True)],
        "id": tree_id,
        "left_children": [int(v) for v in tree.left],
        "loss_changes": [coarse(v) for v in tree.loss_change],
        "parents": [int(v) for v in parents],
        "right_children": [int(v) for v in tree.right],
        "split_conditions": [_f32(v) for v in conditions],
        "split_indices": [int(f) if f >= 0 else 0 for f in tree.feature],
        "split_type": split_type,
        "sum_hessian": [coarse(v) for v in tree.cover],
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(n_features),
            "num_nodes": str(tree.n_nodes),
            "size_leaf_vector": "1",
        },
    }


def _categorical_splits(
    tree: Tree, n_categories: tuple[int, ...]
) -> tuple[list[int], dict[str, list[int]]]:
    """``split_type`` and the ``categories*`` arrays of one tree.

    A categorical node lists the codes ``c`` in ``0..k-1`` with ``float32(c) >= threshold``:
    those go right in fedtab, and XGBoost sends the listed categories right.
    """
    split_type = [0] * tree.n_nodes
    arrays: dict[str, list[int]] = {
        "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
    }
    for node in range(tree.n_nodes):
        feature = int(tree.feature[node])
        if tree.left[node] < 0 or feature >= len(n_categories) or n_categories[feature] == 0:
            continue
        codes = np.arange(n_categories[feature], dtype=np.float32)
        right = [int(c) for c in np.flatnonzero(codes >= np.float32(tree.threshold[node]))]
        split_type[node] = 1
        arrays["categories_nodes"].append(node)
        arrays["categories_segments"].append(len(arrays["categories"]))
        arrays["categories_sizes"].append(len(right))
        arrays["categories"].extend(right)
    return split_type, arrays


def category_container(features: tuple[FeatureSpec, ...]) -> dict[str, Any]:
    """XGBoost's ``cats`` object: every feature's category names, in the contract's order.

    Names are UTF-8 bytes (stored as signed 8-bit integers) with byte offsets; numeric features
    hold none. ``sorted_idx`` is, per feature, the order that sorts its names bytewise.
    """
    enc: list[dict[str, list[int]]] = []
    segments, sorted_idx = [0], []
    for spec in features:
        names = [c.encode("utf-8") for c in spec.categories]
        offsets = [0]
        for name in names:
            offsets.append(offsets[-1] + len(name))
        raw = b"".join(names)
        enc.append({
            "offsets": offsets if names else [],
            "values": [int(v) for v in np.frombuffer(raw, dtype=np.int8)],
        })
        segments.append(segments[-1] + len(names))
        sorted_idx.extend(sorted(range(len(names)), key=names.__getitem__))
    return {"enc": enc, "feature_segments": segments, "sorted_idx": sorted_idx}


def embedded_contract(attributes: Mapping[str, str]) -> DataContract | None:
    """The data contract in ``attributes['fedtab_contract']``, or None when there is none.

    Raises:
        ConfigError: the attribute is there but is not a valid contract.
    """
    raw = attributes.get(CONTRACT_ATTRIBUTE)
    if raw is None:
        return None
    try:
        return DataContract.from_dict(json.loads(raw))
    except (ValueError, DataContractError) as exc:
        raise ConfigError(f"'{CONTRACT_ATTRIBUTE}' is not a data contract: {exc}") from exc


def _with_encoding_note(attributes: Mapping[str, str]) -> dict[str, str]:
    """The attributes, with the job metadata's ``categorical_encoding`` describing this file."""
    out = dict(attributes)
    raw = out.get(META_ATTRIBUTE)
    if raw is not None:
        meta = json.loads(raw)
        if isinstance(meta, dict) and "categorical_encoding" in meta:
            meta["categorical_encoding"] = CATEGORICAL_ENCODING
            out[META_ATTRIBUTE] = json.dumps(meta, sort_keys=True)
    return out


def _feature_layout(
    model: GBDTModel, contract: DataContract | None
) -> tuple[list[str], tuple[int, ...]]:
    """``feature_types`` and per-feature category counts, checked against the model."""
    if contract is None:
        return ["q"] * len(model.feature_names), ()
    if tuple(contract.feature_names) != tuple(model.feature_names):
        raise ConfigError("the embedded contract's features differ from the model's features")
    types = ["c" if f.kind == "categorical" else "q" for f in contract.features]
    return types, tuple(len(f.categories) for f in contract.features)


def model_to_xgboost_json(
    model: GBDTModel,
    *,
    scale_pos_weight: float,
    attributes: Mapping[str, str],
) -> bytes:
    """The model as XGBoost JSON bytes (deterministic: sorted keys, no spaces).

    Feature types and categories come from the contract in ``attributes['fedtab_contract']``
    (all features numeric without one).

    Raises:
        ConfigError: that contract is malformed or names other features than the model.
    """
    contract = embedded_contract(attributes)
    feature_types, n_categories = _feature_layout(model, contract)
    n_features = len(model.feature_names)
    n_trees = len(model.trees)
    booster: dict[str, Any] = {
        "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(n_trees)},
        "iteration_indptr": list(range(n_trees + 1)),
        "tree_info": [0] * n_trees,
        "trees": [
            tree_to_json(t, i, n_features, n_categories) for i, t in enumerate(model.trees)
        ],
    }
    if contract is not None and "c" in feature_types:
        booster["cats"] = category_container(contract.features)
    document = {
        "learner": {
            "attributes": _with_encoding_note(attributes),
            "feature_names": list(model.feature_names),
            "feature_types": feature_types,
            "gradient_booster": {"model": booster, "name": "gbtree"},
            "learner_model_param": {
                "base_score": fmt_f32(model.base_score),
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
