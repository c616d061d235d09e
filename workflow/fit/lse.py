"""The one log-sum-exp / Huber fitter behind every saturating law (docs/methods.md, "The fitter").

A law with m power-law terms and an offset,

    log L = LSE(a_1 - alpha_1 log x_1, ..., a_m - alpha_m log x_m, e),

has the parameter vector theta = [a_1..a_m, e, alpha_1..alpha_m]: m = 2 is
Approach 3's (a, b, e, alpha, beta), m = 1 a Kaplan law's (a, e, alpha). The
objective is the sum of Huber losses of log-loss residuals. ``fit_lse`` scores
every start at once (one vectorised pass), runs L-BFGS with the analytic
gradient from the best-ranked ones and keeps the distinct optima it reaches.

A constrained form (tied exponents, fixed values: variant.py) passes a
reparametrisation: starts are then in its free coordinates, the objective's
gradient is mapped back to them, and every result's ``x`` is the full theta.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import OptimizeResult, minimize

LBFGS_OPTIONS = {"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15}


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    small = np.abs(r) <= delta
    return np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(r, -delta, delta)


def log_sum_exp(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(sum(exp(terms))) over axis 0 and the softmax weights, computed stably.

    Hand-written rather than scipy.special's logsumexp and softmax: those
    validate and dispatch on every call, which cost most of the time of an
    L-BFGS refit on a few hundred runs."""
    peak = terms.max(axis=0)
    weights = np.exp(terms - peak)
    total = weights.sum(axis=0)
    return peak + np.log(total), weights / total


def objective(theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber losses of log-loss residuals at theta, and its exact gradient.

    ``log_x`` holds one row of log values per power-law term (m rows). The
    derivative of LSE by term k is its softmax weight w_k, so d/d a_k = sum g w_k,
    d/d e = sum g w_e and d/d alpha_k = -sum g w_k log x_k (g: Huber derivative).

    Written for speed, as L-BFGS calls it ten thousand times in a fit: in place,
    and with the Huber loss as g (r - g/2), g = clip(r, -delta, delta), which is
    r^2/2 inside delta and delta (|r| - delta/2) outside."""
    m = len(log_x)
    terms = np.empty((m + 1, log_x.shape[1]))
    np.multiply(theta[m + 1 :, None], log_x, out=terms[:m])
    np.subtract(theta[:m, None], terms[:m], out=terms[:m])
    terms[m] = theta[m]
    peak = terms.max(axis=0)
    np.subtract(terms, peak, out=terms)
    np.exp(terms, out=terms)
    total = terms.sum(axis=0)
    residual = np.log(total)
    residual += peak
    residual -= log_loss
    g = np.clip(residual, -delta, delta)
    value = float(g @ (residual - 0.5 * g))
    terms *= g / total  # g times the softmax weights
    grad = np.empty(2 * m + 1)
    grad[: m + 1] = terms.sum(axis=1)
    grad[m + 1 :] = -np.einsum("kn,kn->k", terms[:m], log_x)
    return value, grad


def objective_at_starts(starts: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float) -> np.ndarray:
    """The objective at every start (one row of theta each) in one vectorised pass."""
    m = len(log_x)
    terms = [starts[:, k : k + 1] - starts[:, m + 1 + k : m + 2 + k] * log_x[k] for k in range(m)]
    terms = np.stack(np.broadcast_arrays(*terms, starts[:, m : m + 1]))
    peak = terms.max(axis=0)
    residual = peak + np.log(np.exp(terms - peak).sum(axis=0)) - log_loss
    return huber(residual, delta).sum(axis=1)


def objective_free(free: np.ndarray, reparam, log_x, log_loss, delta: float) -> tuple[float, np.ndarray]:
    """``objective`` in a reparametrisation's free coordinates (chain rule: matrix.T @ gradient)."""
    value, grad = objective(reparam.theta(free), log_x, log_loss, delta)
    return value, reparam.matrix.T @ grad


def best_starts(starts: np.ndarray, refine: int | None, log_x, log_loss, delta: float, reparam=None) -> np.ndarray:
    """The ``refine`` starts of lowest objective (all of them when refine is None)."""
    if refine is None or refine >= len(starts):
        return starts
    full = starts if reparam is None else reparam.theta(starts)
    ranked = np.argsort(objective_at_starts(full, log_x, log_loss, delta), kind="stable")
    return starts[ranked[:refine]]


def minimise_all(starts: np.ndarray, log_x, log_loss, delta: float, reparam=None) -> list:
    """L-BFGS from each start; every result (``x``: the full theta). With every parameter fixed there is
    nothing to minimise: the one result is the objective at the fixed values."""
    if reparam is not None and reparam.matrix.shape[1] == 0:
        theta = reparam.theta(np.empty(0))
        return [OptimizeResult(x=theta, fun=objective(theta, log_x, log_loss, delta)[0], success=True, nit=0)]
    fun, args = (
        (objective, (log_x, log_loss, delta))
        if reparam is None
        else (objective_free, (reparam, log_x, log_loss, delta))
    )
    results = [minimize(fun, start, args=args, jac=True, method="L-BFGS-B", options=LBFGS_OPTIONS) for start in starts]
    if reparam is not None:
        for result in results:
            result.x = reparam.theta(result.x)
    return results


def minimise_from(starts: np.ndarray, log_x, log_loss, delta: float, reparam=None):
    """L-BFGS from each start; the result of lowest objective."""
    return min(minimise_all(starts, log_x, log_loss, delta, reparam), key=lambda r: r.fun)


def distinct_optima(results: list, keep: int = 3) -> list:
    """The best result of each distinct objective value (relative 1e-6), best first, at most ``keep``."""
    chosen: list = []
    for result in sorted(results, key=lambda r: r.fun):
        if all(abs(result.fun - c.fun) > 1e-6 * abs(c.fun) + 1e-12 for c in chosen):
            chosen.append(result)
        if len(chosen) == keep:
            break
    return chosen


def fit_lse(
    log_x: np.ndarray,
    log_loss: np.ndarray,
    starts: np.ndarray,
    *,
    refine: int | None,
    delta: float,
    reparam=None,
    keep: int = 3,
) -> tuple[list, int]:
    """The distinct optima (best first, at most ``keep``) of L-BFGS from the ``refine`` best starts,
    and how many ran."""
    chosen = best_starts(starts, refine, log_x, log_loss, delta, reparam)
    return distinct_optima(minimise_all(chosen, log_x, log_loss, delta, reparam), keep), len(chosen)
