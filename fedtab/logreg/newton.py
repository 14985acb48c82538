"""Damped Newton–Raphson for L2 logistic regression, as a deterministic update of shared state.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", fit_intercept=True)``::

    L(b, w) = sum_i s_i * logloss(y_i, b + z_i . w) + ||w||^2 / (2 C)

with sample weights ``s_i`` from the class weights and the intercept ``b`` not penalised. Each
round the banks secure-sum, at the *candidate* point, the data part of the gradient, of the
Hessian (upper triangle) and of the loss; :func:`newton_update` then either accepts the
candidate (its loss is not above the accepted loss, up to rounding slack) and proposes the next
full Newton step from it, or rejects it and proposes a shorter step (backtracking line search,
safeguarded quadratic interpolation: the step shrinks by a factor in ``[0.1, 0.5]``).
Stopping: the largest component of ``gradient / sum(s_i)`` is at most ``tol`` (what
scikit-learn's lbfgs tests), or ``max_iter`` accepted Newton steps.

Everything here is pure Python float arithmetic in a fixed order (no BLAS or LAPACK, whose
results can differ by CPU), so every bank derives bit-identical proposals from the identical
decrypted aggregate. Dimensions are small (encoded features + 1), so this is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedtab.errors import JobFailedError, ProtocolError
from fedtab.protocol.steps import JsonDict

MAX_HALVINGS = 30  # rejected trials per Newton step before giving up


def upper_to_full(values: Sequence[float], dim: int) -> list[list[float]]:
    """The symmetric ``dim x dim`` matrix from its upper triangle (``numpy.triu_indices`` order)."""
    if len(values) != dim * (dim + 1) // 2:
        raise ProtocolError(f"{len(values)} Hessian values for dimension {dim}")
    full = [[0.0] * dim for _ in range(dim)]
    pos = 0
    for i in range(dim):
        for j in range(i, dim):
            full[i][j] = full[j][i] = float(values[pos])
            pos += 1
    return full


def cholesky_solve(matrix: Sequence[Sequence[float]], rhs: Sequence[float]) -> list[float]:
    """Solve ``matrix @ x = rhs`` for symmetric positive definite ``matrix``.

    Raises :class:`JobFailedError` when the matrix is not positive definite (e.g. a class is
    absent, so the intercept is unbounded).
    """
    n = len(rhs)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        row_i = low[i]
        for j in range(i + 1):
            row_j = low[j]
            acc = matrix[i][j]
            for k in range(j):
                acc -= row_i[k] * row_j[k]
            if i == j:
                if not acc > 0.0:
                    raise JobFailedError(
                        "the Newton Hessian is not positive definite; check that both classes "
                        "are present and C is finite"
                    )
                row_i[i] = math.sqrt(acc)
            else:
                row_i[j] = acc / row_j[j]
    forward = [0.0] * n
    for i in range(n):
        acc = rhs[i]
        for k in range(i):
            acc -= low[i][k] * forward[k]
        forward[i] = acc / low[i][i]
    solution = [0.0] * n
    for i in reversed(range(n)):
        acc = forward[i]
        for k in range(i + 1, n):
            acc -= low[k][i] * solution[k]
        solution[i] = acc / low[i][i]
    return solution


@dataclass(frozen=True)
class NewtonState:
    """The committed optimiser state; ``theta`` and ``candidate`` are ``[intercept, *coef]``.

    ``theta``/``loss`` are the accepted point and its objective (``None`` before the first
    round); ``candidate`` is the point the next round evaluates, ``theta + step * d`` for the
    Newton direction ``d``; ``slope`` is the objective's derivative along ``d`` at ``theta``
    (``g . d = -d' H d``, a scalar, used by the line search).
    """

    candidate: list[float]
    theta: list[float] | None = None
    loss: float | None = None
    n_iter: int = 0
    halvings: int = 0
    done: bool = False
    converged: bool = False
    step: float = 1.0
    slope: float | None = None

    def to_proposal(self) -> JsonDict:
        return {
            "candidate": self.candidate,
            "theta": self.theta,
            "loss": self.loss,
            "n_iter": self.n_iter,
            "halvings": self.halvings,
            "done": self.done,
            "converged": self.converged,
            "step": self.step,
            "slope": self.slope,
        }

    @classmethod
    def from_proposal(cls, data: Mapping[str, Any]) -> NewtonState:
        try:
            theta = data["theta"]
            return cls(
                candidate=[float(v) for v in data["candidate"]],
                theta=None if theta is None else [float(v) for v in theta],
                loss=None if data["loss"] is None else float(data["loss"]),
                n_iter=int(data["n_iter"]),
                halvings=int(data["halvings"]),
                done=bool(data["done"]),
                converged=bool(data["converged"]),
                step=float(data["step"]),
                slope=None if data["slope"] is None else float(data["slope"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed Newton proposal: {exc}") from exc


def objective_parts(
    theta: Sequence[float],
    grad_data: Sequence[float],
    hess_upper: Sequence[float],
    loss_data: float,
    C: float,
) -> tuple[list[float], list[list[float]], float]:
    """Add the L2 penalty (not on the intercept ``theta[0]``) to the summed data terms."""
    dim = len(theta)
    grad = [float(grad_data[0])] + [float(grad_data[i]) + theta[i] / C for i in range(1, dim)]
    hess = upper_to_full(hess_upper, dim)
    for i in range(1, dim):
        hess[i][i] += 1.0 / C
    penalty = 0.0
    for i in range(1, dim):
        penalty += theta[i] * theta[i]
    return grad, hess, float(loss_data) + penalty / (2.0 * C)


def newton_update(
    state: NewtonState,
    grad_data: Sequence[float],
    hess_upper: Sequence[float],
    loss_data: float,
    *,
    C: float,
    weight_total: float,
    tol: float,
    max_iter: int,
) -> NewtonState:
    """The next state after evaluating ``state.candidate`` (see module docstring)."""
    point = state.candidate
    grad, hess, loss = objective_parts(point, grad_data, hess_upper, loss_data, C)
    if not math.isfinite(loss):
        raise JobFailedError("the logistic loss is not finite")
    if state.theta is not None and state.loss is not None:
        slack = 1e-12 * abs(state.loss) + 1e-9
        if loss > state.loss + slack:
            if state.halvings >= MAX_HALVINGS:
                return NewtonState(point, state.theta, state.loss, state.n_iter, state.halvings,
                                   done=True, converged=False)
            shrink = _backtrack(state.loss, loss, state.slope, state.step)
            shorter = [t + (c - t) * shrink for t, c in zip(state.theta, point, strict=True)]
            return NewtonState(shorter, state.theta, state.loss, state.n_iter,
                               state.halvings + 1, step=state.step * shrink, slope=state.slope)
    n_iter = state.n_iter if state.theta is None else state.n_iter + 1
    grad_max = max(abs(g) for g in grad) / weight_total
    if grad_max <= tol:
        return NewtonState(point, point, loss, n_iter, 0, done=True, converged=True)
    if n_iter >= max_iter:
        return NewtonState(point, point, loss, n_iter, 0, done=True, converged=False)
    step = cholesky_solve(hess, [-g for g in grad])
    size = max(abs(s) for s in step)
    if size <= 1e-15 * (1.0 + max(abs(t) for t in point)):
        return NewtonState(point, point, loss, n_iter, 0, done=True, converged=True)
    candidate = [t + s for t, s in zip(point, step, strict=True)]
    slope = 0.0
    for g, s in zip(grad, step, strict=True):
        slope += g * s
    return NewtonState(candidate, point, loss, n_iter, 0, slope=slope)


def _backtrack(loss: float, trial_loss: float, slope: float | None, step: float) -> float:
    """Factor in ``[0.1, 0.5]`` shrinking a rejected step (safeguarded quadratic interpolation).

    Fits ``phi(s) = loss + slope * s + a * s**2`` through the trial ``phi(step) = trial_loss``
    and moves to its minimiser; plain halving without a usable slope.
    """
    if slope is None or not slope < 0.0:
        return 0.5
    curvature = (trial_loss - loss - slope * step) / (step * step)
    if not curvature > 0.0:
        return 0.5
    best = -slope / (2.0 * curvature)
    return min(0.5, max(0.1, best / step))
