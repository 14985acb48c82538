"""The ``logreg`` job: federated L2 logistic regression equal to scikit-learn's on pooled data.

Steps (each one secure sum, see :mod:`fedtab.protocol.steps`):

1. ``moments`` and 2. ``deviations`` (shared with the profile job, :mod:`fedtab.moments`):
   consortium counts, label counts, feature means and squared deviations. The committed
   proposals release the counts and means, each over at least ``min_group_rows`` rows or withheld;
   what they withhold is merged in the encoding (rare categories share one ``<other>``
   column, :mod:`.design`). The second proposal releases the standardisation (``mean``,
   ``scale`` of every encoded column, ``StandardScaler`` semantics, ``ddof=0``) and the class
   weights (``"balanced"``: ``n / (2 n_c)``).
3. ``newton/<k>``: at the candidate coefficients, the summed gradient, Hessian upper triangle and
   loss of the weighted log-loss on the standardised encoded design (:mod:`.newton`). The
   proposal releases only the optimiser state: accepted and candidate coefficients (the model),
   the objective value and the iteration count, never the gradient or Hessian.

Encodings depend on shared facts only: ``max_rows_per_bank``, the contract's declared ranges
mapped through the committed standardisation (bounding every design entry), the class weights
and the candidate coefficients (bounding the per-row loss). Clip bounds are rounded up to powers
of two; 40 fractional bits make the fixed-point error negligible next to float64 rounding.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from fedtab.crypto.encoding import EncodingSpec
from fedtab.data.contract import LocalTable
from fedtab.errors import JobFailedError, ProtocolError
from fedtab.logreg.design import DesignEncoder, Grouping, encoded_moments
from fedtab.logreg.newton import NewtonState, newton_update
from fedtab.logreg.params import LogRegParams
from fedtab.moments import DeviationsStep, Moments, MomentsStep, check_table
from fedtab.protocol.step_machine import FnStep, Step, StepMachine
from fedtab.protocol.steps import JobContext, JsonDict, SumRequest

NEWTON_FRAC_BITS = 40
MAX_CLIP_LOG2 = 60
MODEL_FORMAT_VERSION = 1


class LogRegTrainer(StepMachine):
    """One bank's side of a ``logreg`` job (a :class:`~fedtab.protocol.steps.BankTrainer`).

    Raises :class:`~fedtab.errors.ConfigError` for bad ``ctx.params`` (see
    :class:`~fedtab.logreg.params.LogRegParams`), :class:`~fedtab.errors.DataContractError` when
    the table breaks the contract, and :class:`~fedtab.errors.JobFailedError` when the
    consortium has a single class.
    """

    def __init__(self, ctx: JobContext, table: LocalTable) -> None:
        self._ctx = ctx
        self._table = table
        self._contract = table.contract
        self._params = LogRegParams.from_mapping(ctx.params)
        check_table(table, self._params.max_rows_per_bank)
        self._has_numeric = any(f.kind == "numeric" for f in self._contract.features)
        self._scaler: JsonDict | None = None
        self._newton: NewtonState | None = None
        self._rounds = 0
        self._design: np.ndarray | None = None  # cached [1, standardised encoded X]
        max_rows, n_banks = self._params.max_rows_per_bank, ctx.n_banks
        self._moments = MomentsStep(table, max_rows, n_banks, self._params.min_group_rows,
                                    check=_both_classes, on_commit=self._moments_committed)
        self._deviations = DeviationsStep(table, max_rows, n_banks, self._moments,
                                          propose=self._scaler_proposal,
                                          commit=self._commit_scaler)

    # -- the step machine -------------------------------------------------------------------

    def current_step(self) -> Step | None:
        if self._moments.value is None:
            return self._moments
        if self._scaler is None:
            return self._deviations
        if self._newton is None or self._newton.done:
            return None
        spec, _ = self._newton_encoding(self._newton.candidate)
        dim = len(self._newton.candidate)
        request = SumRequest(
            step_id=f"newton/{self._rounds}",
            length=dim + dim * (dim + 1) // 2 + 1,
            encoding=spec,
            description="gradient, Hessian upper triangle and loss at the candidate",
        )
        return FnStep(request, self._newton_contribution, self._propose_newton,
                      self._commit_newton)

    def result(self) -> dict[str, bytes]:
        """``{"model.json": ...}``, read by :class:`~fedtab.logreg.model.LogRegModel`."""
        newton = self._newton
        if newton is None or not newton.done or newton.theta is None or self._scaler is None:
            raise ProtocolError("the logreg job has not finished")
        moments = self._moments.committed()
        encoder = self._encoder()
        doc: dict[str, Any] = {
            "kind": "logreg",
            "format_version": MODEL_FORMAT_VERSION,
            "features": self._contract.feature_names,
            "encoded_features": encoder.encoded_names,
            "mean": self._scaler["mean"],
            "scale": self._scaler["scale"],
            "coef": newton.theta[1:],
            "intercept": newton.theta[0],
            "n_iter": newton.n_iter,
            "converged": newton.converged,
            "objective": newton.loss,
            "rounds": self._rounds,
            "class_weight": self._scaler["class_weight"],
            "params": self._params.to_dict(),
            "rows_total": moments.rows_total,
            "positives_total": moments.positives_total,
            "contract": self._contract.to_dict(),
        }
        if encoder.grouping != Grouping():
            doc["merged"] = encoder.grouping.to_dict(self._contract)
        return {"model.json": (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()}

    # -- helpers ----------------------------------------------------------------------------

    def _newton_contribution(self) -> np.ndarray:
        newton = self._committed_newton()
        _, factor = self._newton_encoding(newton.candidate)
        return self._newton_terms(newton.candidate) / factor

    def _propose_newton(self, aggregate: np.ndarray) -> JsonDict:
        newton = self._committed_newton()
        _, factor = self._newton_encoding(newton.candidate)
        values = [float(v) * factor for v in aggregate.tolist()]
        dim = len(newton.candidate)
        w0, w1 = self._class_weights()
        moments = self._moments.committed()
        negatives = moments.rows_total - moments.positives_total
        updated = newton_update(
            newton,
            values[:dim],
            values[dim:-1],
            values[-1],
            C=self._params.C,
            weight_total=w0 * negatives + w1 * moments.positives_total,
            tol=self._params.tol,
            max_iter=self._params.max_iter,
        )
        return updated.to_proposal()

    def _commit_newton(self, proposal: JsonDict) -> None:
        self._newton = NewtonState.from_proposal(proposal)
        self._rounds += 1

    def _moments_committed(self, moments: Moments) -> None:
        if not self._has_numeric:  # no deviations step: the standardisation follows now
            no_deviations: list[float | None] = [None] * len(self._contract.features)
            self._commit_scaler(self._scaler_proposal(moments, no_deviations))

    def _committed_newton(self) -> NewtonState:
        if self._newton is None:
            raise ProtocolError("the Newton phase has not started")
        return self._newton

    def _committed_scaler(self) -> JsonDict:
        if self._scaler is None:
            raise ProtocolError("the standardisation is not committed yet")
        return self._scaler

    def _scaler_proposal(self, m: Moments, deviations: list[float | None]) -> JsonDict:
        mean, scale = encoded_moments(self._encoder(), m.rows_total, m.count, m.mean,
                                      m.category_counts, deviations)
        w0, w1 = self._params.weights(m.rows_total, m.positives_total)
        return {"mean": mean, "scale": scale, "class_weight": [w0, w1]}

    def _commit_scaler(self, proposal: JsonDict) -> None:
        try:
            scaler = {
                "mean": [float(v) for v in proposal["mean"]],
                "scale": [float(v) for v in proposal["scale"]],
                "class_weight": [float(v) for v in proposal["class_weight"]],
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed standardisation proposal: {exc}") from exc
        self._scaler = scaler
        m = self._moments.committed()
        w0, w1 = scaler["class_weight"]
        start = [math.log(w1 * m.positives_total / (w0 * (m.rows_total - m.positives_total)))]
        self._newton = NewtonState(candidate=start + [0.0] * len(scaler["mean"]))

    def _class_weights(self) -> tuple[float, float]:
        w0, w1 = self._committed_scaler()["class_weight"]
        return float(w0), float(w1)

    def _encoder(self) -> DesignEncoder:
        """Imputes numeric features with the committed consortium mean; merges what the
        committed moments withhold."""
        m = self._moments.committed()
        impute = tuple(
            0.0 if mean is None else mean for mean in encoded_numeric_impute(self._contract, m)
        )
        grouping = Grouping.from_moments(self._contract, m.count, m.mean, m.category_counts)
        return DesignEncoder(self._contract, impute, grouping)

    def _newton_encoding(self, theta: list[float]) -> tuple[EncodingSpec, float]:
        """Encoding of a Newton round and the power-of-two prescale ``factor`` (shared facts)."""
        scaler = self._committed_scaler()
        bounds = self._encoder().value_bounds()
        amax = [1.0]
        for (lower, upper), mean, scale in zip(bounds, scaler["mean"], scaler["scale"],
                                               strict=True):
            amax.append(max(abs(lower - mean), abs(upper - mean)) / scale)
        wmax = max(self._class_weights())
        largest = max(amax)
        margin = 0.0
        for t, a in zip(theta, amax, strict=True):
            margin += abs(t) * a
        per_row = wmax * max(largest, 0.25 * largest * largest, math.log(2.0) + margin)
        clip_log2 = math.ceil(math.log2(per_row * self._params.max_rows_per_bank * 1.000001))
        factor = 2.0 ** max(0, clip_log2 - MAX_CLIP_LOG2)
        clip = 2.0 ** min(clip_log2, MAX_CLIP_LOG2)
        return EncodingSpec(NEWTON_FRAC_BITS, clip, self._ctx.n_banks), factor

    def _newton_terms(self, theta: list[float]) -> np.ndarray:
        """Local ``[gradient, Hessian upper triangle, loss]`` of the weighted log-loss."""
        if self._design is None:
            scaler = self._committed_scaler()
            encoded = self._encoder().encode(self._table.X)
            standard = (encoded - np.asarray(scaler["mean"])) / np.asarray(scaler["scale"])
            self._design = np.hstack([np.ones((encoded.shape[0], 1)), standard])
        design, y = self._design, self._table.y
        w0, w1 = self._class_weights()
        weights = np.where(y == 1.0, w1, w0)
        z = design @ np.asarray(theta)
        p = np.exp(-np.logaddexp(0.0, -z))  # the logistic function, without overflow
        grad = design.T @ (weights * (p - y))
        hess = design.T @ (design * (weights * p * (1.0 - p))[:, None])
        loss = float(np.sum(weights * (np.logaddexp(0.0, z) - y * z)))
        upper = hess[np.triu_indices(design.shape[1])]
        return np.concatenate([grad, upper, [loss]])


def _both_classes(moments: Moments) -> None:
    """Refuse a consortium with a single class (the check on the moments proposal)."""
    positives, rows = moments.positives_total, moments.rows_total
    if positives == 0 or positives == rows:
        raise JobFailedError(
            f"logistic regression needs both classes; the consortium has {rows} rows "
            f"and {positives} positives"
        )


def encoded_numeric_impute(contract: Any, moments: Moments) -> list[float | None]:
    """Per contract feature: the consortium mean of a numeric feature (its imputation value).

    A numeric feature whose mean is withheld (no or fewer than ``min_group_rows`` non-null
    values) is imputed with the centre of its declared range;
    categorical entries are ``None`` (their imputation is the all-zero one-hot row).
    """
    out: list[float | None] = []
    for spec, mean in zip(contract.features, moments.mean, strict=True):
        if spec.kind != "numeric":
            out.append(None)
        elif mean is None:
            out.append(((spec.lower or 0.0) + (spec.upper or 0.0)) / 2.0)
        else:
            out.append(mean)
    return out
