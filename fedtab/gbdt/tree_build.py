"""The tree being grown by a :class:`~fedtab.gbdt.trainer.GBDTTrainer`: committed node arrays
and the level's schedule (which nodes are open, which are summed, which are derived).

Node ids follow creation order (root 0, children appended as splits are committed), which is
also the order of XGBoost's node arrays in the exported model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedtab.gbdt.model import Tree


@dataclass
class TreeBuild:
    """Node arrays as lists plus the current level's schedule.

    ``frontier``: nodes at ``depth`` that may split; ``build``: nodes whose count histograms are
    summed (the smaller of each pair of siblings); ``derive``: node -> (parent, built sibling)
    for the larger siblings. Which nodes are open and the gradient layout belong to the level's
    steps (:mod:`fedtab.gbdt.grow`).
    """

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    feature: list[int] = field(default_factory=list)
    split_bin: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    default_left: list[bool] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    loss_change: list[float] = field(default_factory=list)
    cover: list[float] = field(default_factory=list)
    depth: int = 0
    frontier: list[int] = field(default_factory=lambda: [0])
    build: list[int] = field(default_factory=lambda: [0])
    derive: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add_node(self, value: float, cover: float) -> int:
        for ints in (self.left, self.right, self.feature, self.split_bin):
            ints.append(-1)
        self.threshold.append(0.0)
        self.default_left.append(False)
        self.loss_change.append(0.0)
        self.value.append(value)
        self.cover.append(cover)
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
        )
