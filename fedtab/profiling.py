"""The ``profile`` job: consortium row and label counts, per-feature means and std.

Two secure sums, the moments steps shared with logistic regression (:mod:`fedtab.moments`):
``moments`` (counts, label counts, range-normalised sums) and ``deviations`` (squared
deviations from the consortium means; skipped when the contract has no numeric feature).

Released results (the proposals, seen by the aggregator): total and positive row counts,
per-feature non-null counts, means, standard deviations (sample, ``ddof=1``, as pandas'
``.std()``) and per-category counts. These are the profile; nothing else leaves a bank.

Each figure covers at least ``min_group_rows`` rows (the job's floor, default 50) or is withheld, as
``null`` in ``result.json`` (:mod:`fedtab.rare`):

* a category with fewer rows (but some) is merged into the feature's ``"other"`` group, listed
  as ``{"categories": [...], "missing": bool, "count": n}`` (``missing``: rare missing rows
  joined it); ``count`` is at least ``min_group_rows``, because when the rare rows add up to fewer
  the smallest released category joins them too;
* a non-null ``count`` is withheld when the feature's present or missing rows are fewer than
  ``min_group_rows`` (but some): the difference from ``rows_total`` would give them;
* a numeric ``mean`` is withheld over fewer than ``min_group_rows`` present rows, and ``std``
  whenever the count or mean is (with logreg's released scale it would give the count).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedtab.data.contract import LocalTable
from fedtab.errors import ConfigError, ProtocolError
from fedtab.moments import DeviationsStep, Moments, MomentsStep, check_table, sample_std
from fedtab.protocol.step_machine import Step, StepMachine
from fedtab.protocol.steps import JobContext, JsonDict
from fedtab.rare import other_count

DEFAULT_MAX_ROWS = 2**24
DEFAULT_MIN_GROUP_ROWS = 50  # fedtab.profile_kind.DEFAULT_MIN_GROUP_ROWS


def parse_max_rows(value: Any) -> int:
    """Validate the ``max_rows_per_bank`` job parameter; raises :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**40:
        raise ConfigError(f"max_rows_per_bank must be an integer in [1, 2**40], got {value!r}")
    return value


@dataclass(frozen=True)
class ProfileParams:
    """Parameters of a ``profile`` job (``[params]`` of the job file; declared in
    :mod:`fedtab.profile_kind`)."""

    max_rows_per_bank: int = DEFAULT_MAX_ROWS
    min_group_rows: int = DEFAULT_MIN_GROUP_ROWS

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> ProfileParams:
        """Parse and validate; unknown keys and bad values raise :class:`ConfigError`."""
        from fedtab.profile_kind import PARAMETERS

        return cls(**PARAMETERS.validate(params))


class ProfileTrainer(StepMachine):
    """The ``profile`` job: consortium row/label counts and per-feature mean and std.

    Parameters (``ctx.params``): ``max_rows_per_bank`` (default 2**24), an upper bound on any
    bank's rows, used for the encodings' clip bounds; ``min_group_rows`` (default 50), the fewest
    rows behind a released figure (module docstring). Standard deviations are *sample* standard
    deviations (``ddof=1``, pandas' default) over non-null values; ``None`` when fewer than two.
    Raises :class:`ConfigError` for bad parameters and :class:`DataContractError` when the table
    breaks the contract (values outside declared ranges, bad category codes).
    """

    def __init__(self, ctx: JobContext, table: LocalTable) -> None:
        self._ctx = ctx
        self._table = table
        self._params = ProfileParams.from_mapping(ctx.params)
        self._contract = table.contract
        self._std: list[float | None] | None = None
        check_table(table, self._params.max_rows_per_bank)
        self._has_numeric = any(f.kind == "numeric" for f in self._contract.features)
        max_rows, n_banks = self._params.max_rows_per_bank, ctx.n_banks
        self._moments = MomentsStep(table, max_rows, n_banks, self._params.min_group_rows,
                                    on_commit=self._moments_committed)
        self._deviations = DeviationsStep(table, max_rows, n_banks, self._moments,
                                          propose=_std_proposal, commit=self._commit_std)

    def current_step(self) -> Step | None:
        if self._moments.value is None:
            return self._moments
        if self._std is None:
            return self._deviations
        return None

    def result(self) -> dict[str, bytes]:
        """``{"result.json": ...}`` with ``rows_total``, ``positives_total`` and ``features``."""
        if self._moments.value is None or self._std is None:
            raise ProtocolError("the profile job has not finished")
        m = self._moments.value
        features: dict[str, Any] = {}
        for j, spec in enumerate(self._contract.features):
            entry: dict[str, Any] = {"kind": spec.kind, "count": m.count[j]}
            if spec.kind == "numeric":
                entry["mean"] = m.mean[j]
                entry["std"] = self._std[j]
            else:
                counts = m.category_counts[j]
                entry["categories"] = dict(zip(spec.categories, counts, strict=True))
                merged = [c for c, n in zip(spec.categories, counts, strict=True) if n is None]
                if merged or m.count[j] is None:
                    entry["other"] = {"categories": merged, "missing": m.count[j] is None,
                                      "count": other_count(m.rows_total, m.count[j], counts)}
            features[spec.name] = entry
        doc = {
            "kind": "profile",
            "rows_total": m.rows_total,
            "positives_total": m.positives_total,
            "n_banks": self._ctx.n_banks,
            "std_ddof": 1,
            "min_group_rows": self._params.min_group_rows,
            "features": features,
        }
        return {"result.json": (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()}

    def _moments_committed(self, moments: Moments) -> None:
        if not self._has_numeric:  # no deviations step
            self._std = [None] * len(self._contract.features)

    def _commit_std(self, proposal: JsonDict) -> None:
        try:
            self._std = [None if s is None else float(s) for s in proposal["std"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed deviations proposal: {exc}") from exc


def _std_proposal(moments: Moments, deviations: list[float | None]) -> JsonDict:
    return {"std": sample_std(moments, deviations)}
