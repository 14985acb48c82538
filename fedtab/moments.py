"""Consortium-wide moments by secure sums: the steps the ``profile`` and ``logreg`` jobs share.

Two secure sums give every statistic the ``profile`` job releases and that logistic regression
needs for standardisation (:class:`MomentsStep`, :class:`DeviationsStep`):

1. ``moments``: ``[n, positives, non-null count per feature, sum of z per numeric feature,
   category counts per categorical feature]``, where ``z = (x - c) / h`` maps the range a value
   may take (the contract's declared ``[lower, upper]`` widened as validation allows, see
   :func:`hard_range`; centre ``c``, half-width ``h``) onto ``[-1, 1]``;
2. ``deviations``: per numeric feature, the sum over non-null rows of ``((x - mean) / h)**2``
   around the *consortium* mean from step 1. Summing squared deviations from the final mean
   (rather than raw second moments) avoids the cancellation of ``E[x^2] - E[x]^2``.

Every :class:`~fedtab.crypto.encoding.EncodingSpec` depends on shared facts only (the declared
``max_rows_per_bank``, the contract's ranges, the number of banks), never on a bank's row count.
With ``|z| <= 1`` the clip bounds are ``max_rows`` and ``4 * max_rows``. Every value is sent
as a hi/lo pair (:func:`split_hi_lo`) on a 40-bit grid, so sums carry 80 fractional bits and
keep float64's relative precision even for a tiny spread inside a wide declared range.

The ``moments`` proposal releases total and positive row counts, per-feature non-null counts,
means and per-category counts, each over at least the job's ``min_group_rows`` rows or withheld
(``None``; rare categories merged, :mod:`fedtab.rare`); what the ``deviations`` proposal
releases is the job's choice (the profile: sample standard deviations; logreg: its
standardisation). Proposals are computed with Python floats element by element (no BLAS, no
reductions whose order depends on the CPU), so every bank derives bit-identical proposals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import DataContract, FeatureSpec, LocalTable
from fedtab.data.validate import tolerated_range
from fedtab.errors import DataContractError, DataLimitError, ProtocolError
from fedtab.protocol.steps import JsonDict, SumRequest
from fedtab.rare import withhold_rare

MOMENT_FRAC_BITS = 40
MOMENTS_STEP = "moments"
DEVIATIONS_STEP = "deviations"


def split_hi_lo(values: np.ndarray, frac_bits: int) -> np.ndarray:
    """``[hi, lo]``: ``hi`` on the ``2**-frac_bits`` grid, ``values = hi + lo * 2**-frac_bits``.

    Both halves are encoded with the same spec, so a secure sum of the pair keeps ``2 *
    frac_bits`` fractional bits: small sums (a tiny spread inside a wide declared range, a mean
    near zero) keep their float64 relative precision. ``|lo| <= 1``; both steps are exact in
    float64. Shape ``(n,)`` -> ``(2n,)``.
    """
    unit = 2.0**frac_bits
    hi = np.round(values * unit) / unit
    return np.concatenate([hi, (values - hi) * unit])


def join_hi_lo(aggregate: np.ndarray, frac_bits: int) -> list[float]:
    """Inverse of :func:`split_hi_lo` on a summed vector, in Python floats."""
    values = [float(v) for v in aggregate.tolist()]
    half = len(values) // 2
    unit = 2.0**-frac_bits
    return [values[i] + values[half + i] * unit for i in range(half)]


def hard_range(spec: FeatureSpec) -> tuple[float, float]:
    """The bounds a numeric value may take: the declared range widened as validation allows.

    :func:`fedtab.data.validate.load_table` accepts values up to ``RANGE_TOLERANCE`` range
    widths beyond each end (:func:`~fedtab.data.validate.tolerated_range`; banks' data
    legitimately exceed an inferred range), so clip bounds use the widened range.
    Raises :class:`DataContractError` if no range is declared.
    """
    if spec.lower is None or spec.upper is None or not spec.lower <= spec.upper:
        raise DataContractError(
            f"feature {spec.name!r}: federated moments need a declared range lower <= upper, "
            f"got [{spec.lower}, {spec.upper}]"
        )
    return tolerated_range(spec)


def _range_of(spec: FeatureSpec) -> tuple[float, float]:
    """Centre and half-width of a numeric feature's :func:`hard_range`."""
    lower, upper = hard_range(spec)
    return (lower + upper) / 2.0, (upper - lower) / 2.0


def check_table(table: LocalTable, max_rows: int) -> None:
    """Check row count, numeric ranges and category codes against the job and contract.

    Raises :class:`DataLimitError` (a :class:`ConfigError` whose figures stay in this bank's
    log) for more rows than ``max_rows`` and :class:`DataContractError` naming the column and
    first bad row otherwise.
    """
    X = table.X
    if table.n_rows > max_rows:
        raise DataLimitError(
            f"this bank has {table.n_rows} rows but the job declares max_rows_per_bank="
            f"{max_rows}; raise it in the job's [params]", parameter="max_rows_per_bank"
        )
    if X.shape != (table.n_rows, len(table.contract.features)):
        raise DataContractError(f"table X has shape {X.shape}, contract has "
                                f"{len(table.contract.features)} features")
    for j, spec in enumerate(table.contract.features):
        col = X[:, j]
        present = ~np.isnan(col)
        if spec.kind == "numeric":
            lower, upper = hard_range(spec)
            bad = present & ((col < lower) | (col > upper))
            what = f"far outside the declared range [{spec.lower}, {spec.upper}]"
        else:
            k = len(spec.categories)
            bad = present & ((col < 0) | (col >= k) | (col != np.floor(col)))
            what = f"not a category code in [0, {k})"
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataContractError(f"column {spec.name!r} row {row}: {col[row]!r} is {what}")
    labels = table.y
    if labels.shape != (table.n_rows,) or not np.isin(labels, (0.0, 1.0)).all():
        raise DataContractError(f"label {table.contract.label!r} must be 0/1 for every row")


@dataclass(frozen=True)
class Moments:
    """Consortium-wide first moments, as committed (all lists in contract feature order).

    ``mean`` is ``None`` for categorical features and features with no non-null value;
    ``category_counts`` is empty for numeric features. Once committed, ``None`` also marks a
    figure withheld under the job's floor (:meth:`released`).
    """

    rows_total: int
    positives_total: int
    count: list[int | None]
    mean: list[float | None]
    category_counts: list[list[int | None]]

    def released(self, contract: DataContract, floor: int) -> Moments:
        """These exact moments with every figure over fewer than ``floor`` rows withheld or
        merged (:func:`fedtab.rare.withhold_rare`)."""
        count, mean, categories = withhold_rare(contract, self.rows_total, self.count,
                                                self.mean, self.category_counts, floor)
        return Moments(self.rows_total, self.positives_total, count, mean, categories)

    def to_proposal(self) -> JsonDict:
        return {
            "rows_total": self.rows_total,
            "positives_total": self.positives_total,
            "count": self.count,
            "mean": self.mean,
            "category_counts": self.category_counts,
        }

    @classmethod
    def from_proposal(cls, data: Mapping[str, Any]) -> Moments:
        try:
            return cls(
                rows_total=int(data["rows_total"]),
                positives_total=int(data["positives_total"]),
                count=[_count(c) for c in data["count"]],
                mean=[None if m is None else float(m) for m in data["mean"]],
                category_counts=[[_count(c) for c in cc] for cc in data["category_counts"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed moments proposal: {exc}") from exc


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def moments_request(contract: DataContract, max_rows: int, n_banks: int) -> SumRequest:
    """The first secure sum (see module docstring); its length follows from the contract."""
    n_num = sum(1 for f in contract.features if f.kind == "numeric")
    n_cat = sum(len(f.categories) for f in contract.features if f.kind == "categorical")
    return SumRequest(
        step_id=MOMENTS_STEP,
        length=2 * (2 + len(contract.features) + n_num + n_cat),
        encoding=EncodingSpec(MOMENT_FRAC_BITS, float(max_rows), n_banks),
        description="row, label and non-null counts; range-normalised feature sums",
    )


def moments_contribution(table: LocalTable) -> np.ndarray:
    """This bank's vector for :func:`moments_request`, shape ``(length,)``."""
    X, features = table.X, table.contract.features
    present = ~np.isnan(X)
    sums: list[float] = []
    cats: list[float] = []
    for j, spec in enumerate(features):
        col = X[present[:, j], j]
        if spec.kind == "numeric":
            centre, half = _range_of(spec)
            sums.append(float(np.sum((col - centre) / half)))
        else:
            codes = col.astype(np.int64)
            cats.extend(np.bincount(codes, minlength=len(spec.categories)).astype(float))
    head = [float(table.n_rows), float(np.sum(table.y))]
    counts = present.sum(axis=0).astype(float).tolist()
    vector = np.asarray(head + counts + sums + cats, dtype=np.float64)
    return split_hi_lo(vector, MOMENT_FRAC_BITS)


def moments_from_aggregate(contract: DataContract, aggregate: np.ndarray) -> Moments:
    """Decode the summed moments vector into :class:`Moments` (pure Python arithmetic)."""
    values = join_hi_lo(aggregate, MOMENT_FRAC_BITS)
    features = contract.features
    n_feat = len(features)
    counts: list[int] = [round(v) for v in values[2 : 2 + n_feat]]
    pos = 2 + n_feat
    means: list[float | None] = []
    category_counts: list[list[int | None]] = []
    numeric_sums: list[float] = []
    for spec in features:
        if spec.kind == "numeric":
            numeric_sums.append(values[pos])
            pos += 1
    for j, spec in enumerate(features):
        if spec.kind == "categorical":
            k = len(spec.categories)
            category_counts.append([round(v) for v in values[pos : pos + k]])
            pos += k
            means.append(None)
        else:
            category_counts.append([])
            centre, half = _range_of(spec)
            zsum = numeric_sums.pop(0)
            means.append(None if counts[j] == 0 else centre + half * (zsum / counts[j]))
    return Moments(round(values[0]), round(values[1]), list(counts), means, category_counts)


def deviations_request(contract: DataContract, max_rows: int, n_banks: int) -> SumRequest:
    """The second secure sum: squared range-normalised deviations from the consortium mean."""
    n_num = sum(1 for f in contract.features if f.kind == "numeric")
    return SumRequest(
        step_id=DEVIATIONS_STEP,
        length=2 * n_num,
        encoding=EncodingSpec(MOMENT_FRAC_BITS, 4.0 * max_rows, n_banks),
        description="sums of squared deviations from the consortium means",
    )


def deviations_contribution(table: LocalTable, moments: Moments) -> np.ndarray:
    """This bank's vector for :func:`deviations_request`, shape ``(n_numeric,)``."""
    out: list[float] = []
    for j, spec in enumerate(table.contract.features):
        if spec.kind != "numeric":
            continue
        col = table.X[:, j]
        col = col[~np.isnan(col)]
        mean = moments.mean[j]
        if mean is None or col.size == 0:
            out.append(0.0)
            continue
        _, half = _range_of(spec)
        out.append(float(np.sum(((col - mean) / half) ** 2)))
    return split_hi_lo(np.asarray(out, dtype=np.float64), MOMENT_FRAC_BITS)


def squared_deviations(contract: DataContract, aggregate: np.ndarray) -> list[float | None]:
    """Per feature, summed squared deviations in the feature's units (categorical: ``None``)."""
    values = [max(v, 0.0) for v in join_hi_lo(aggregate, MOMENT_FRAC_BITS)]
    out: list[float | None] = []
    for spec in contract.features:
        if spec.kind == "numeric":
            _, half = _range_of(spec)
            out.append(values.pop(0) * half * half)
        else:
            out.append(None)
    return out



def _nothing(moments: Moments) -> None:
    """The default check and commit hook of :class:`MomentsStep`: nothing to do."""


class MomentsStep:
    """The ``moments`` step (a :class:`~fedtab.protocol.step_machine.Step`).

    ``value`` holds the committed :class:`Moments` (``None`` before): what the floor
    ``min_group_rows`` lets out (:meth:`Moments.released`). ``check`` may refuse the derived moments
    before they are proposed (logreg needs both classes; it raises); ``on_commit`` runs once
    they are committed.
    """

    def __init__(
        self,
        table: LocalTable,
        max_rows: int,
        n_banks: int,
        min_group_rows: int,
        *,
        check: Callable[[Moments], None] = _nothing,
        on_commit: Callable[[Moments], None] = _nothing,
    ) -> None:
        self.request = moments_request(table.contract, max_rows, n_banks)
        self.value: Moments | None = None
        self._table = table
        self._min_group_rows = min_group_rows
        self._check = check
        self._on_commit = on_commit

    def committed(self) -> Moments:
        """The committed moments; :class:`ProtocolError` before the step is committed."""
        if self.value is None:
            raise ProtocolError("moments are not committed yet")
        return self.value

    def contribution(self) -> np.ndarray:
        return moments_contribution(self._table)

    def propose(self, aggregate: np.ndarray) -> JsonDict:
        moments = moments_from_aggregate(self._table.contract, aggregate)
        self._check(moments)
        return moments.released(self._table.contract, self._min_group_rows).to_proposal()

    def commit(self, proposal: JsonDict) -> None:
        self.value = Moments.from_proposal(proposal)
        self._on_commit(self.value)


class DeviationsStep:
    """The ``deviations`` step around the moments committed by ``moments``.

    The proposal is the job's: ``propose(moments, deviations)`` maps the summed squared
    deviations (per contract feature, in the feature's units; ``None`` for categorical
    features) to it, and ``commit(proposal)`` applies it.
    """

    def __init__(
        self,
        table: LocalTable,
        max_rows: int,
        n_banks: int,
        moments: MomentsStep,
        *,
        propose: Callable[[Moments, list[float | None]], JsonDict],
        commit: Callable[[JsonDict], None],
    ) -> None:
        self.request = deviations_request(table.contract, max_rows, n_banks)
        self._table = table
        self._moments = moments
        self._propose = propose
        self._commit = commit

    def contribution(self) -> np.ndarray:
        return deviations_contribution(self._table, self._moments.committed())

    def propose(self, aggregate: np.ndarray) -> JsonDict:
        deviations = squared_deviations(self._table.contract, aggregate)
        return self._propose(self._moments.committed(), deviations)

    def commit(self, proposal: JsonDict) -> None:
        self._commit(proposal)


def sample_std(moments: Moments, deviations: list[float | None]) -> list[float | None]:
    """Per feature, the sample standard deviation (``ddof=1``); ``None`` below two values and
    where the non-null count or the mean is withheld (with logreg's ``scale``, the released
    standard deviation would give the withheld count)."""
    std: list[float | None] = []
    for count, mean, ss in zip(moments.count, moments.mean, deviations, strict=True):
        if ss is None or count is None or mean is None or count < 2:
            std.append(None)
        else:
            std.append(math.sqrt(ss / (count - 1)))
    return std
