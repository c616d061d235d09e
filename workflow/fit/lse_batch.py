"""Approach 3's objective minimised for many weightings of the same runs at once (docs/methods.md,
"The study simulator").

A bootstrap resample of a study's runs is a weighting of them: each run counted as many times as it was
drawn. Written so, every resample shares one array of runs, and a damped Gauss-Newton iteration on the
Huber loss (iteratively reweighted: weight 1 inside delta, delta/|r| outside) moves all of them at once in
a few array operations per step. It minimises the objective of ``lse.objective`` (the sum of Huber losses
of log-loss residuals of log L = LSE(a - alpha log N, b - beta log D, e)), and a test holds it to
L-BFGS's optima; it is what lets the study simulator fit hundreds of simulated studies, each with its
bootstrap, in minutes.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.lse import huber

MAX_STEPS = 200
STEP_TOLERANCE = 1e-10


def residuals(theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-loss residuals (B, n) of each row of theta (B, 5), and their Jacobian (B, n, 5)."""
    a, b, e, alpha, beta = (theta[:, k : k + 1] for k in range(5))
    terms = np.stack([a - alpha * log_x[0], b - beta * log_x[1], np.broadcast_to(e, a.shape[:1] + log_x[0].shape)])
    peak = terms.max(axis=0)
    weights = np.exp(terms - peak)
    total = weights.sum(axis=0)
    weights /= total
    r = peak + np.log(total) - log_loss
    jac = np.stack([weights[0], weights[1], weights[2], -weights[0] * log_x[0], -weights[1] * log_x[1]], axis=-1)
    return r, jac


def objective(theta: np.ndarray, log_x, log_loss, counts: np.ndarray, delta: float) -> np.ndarray:
    r, _ = residuals(theta, log_x, log_loss)
    return (counts * huber(r, delta)).sum(axis=1)


def fit_many(
    starts: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, counts: np.ndarray, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """theta (B, 5) minimising each weighting's objective from its start, and the objectives (B,).

    ``starts`` (B, 5) and ``counts`` (B, n): row i is one problem."""
    theta = np.array(starts, float)
    damping = np.full(len(theta), 1e-3)
    value = objective(theta, log_x, log_loss, counts, delta)
    for _ in range(MAX_STEPS):
        r, jac = residuals(theta, log_x, log_loss)
        weight = counts * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
        gradient = np.einsum("bn,bn,bnk->bk", weight, r, jac)
        hessian = np.einsum("bn,bnk,bnl->bkl", weight, jac, jac)
        # Marquardt's scaling by the diagonal, plus a floor that keeps a direction the data do not
        # constrain (a resample with one N drawn leaves alpha free) from making the system singular.
        scale = np.einsum("bkk->bk", hessian) + 1e-9
        system = hessian + (damping[:, None] * scale)[:, :, None] * np.eye(5) + 1e-12 * np.eye(5)
        step = np.linalg.solve(system, -gradient[..., None])
        trial = theta + step[..., 0]
        trial_value = objective(trial, log_x, log_loss, counts, delta)
        better = trial_value <= value
        theta[better], value[better] = trial[better], trial_value[better]
        damping = np.where(better, damping / 3, damping * 4)
        if np.all(np.abs(step[..., 0]).max(axis=1)[better] < STEP_TOLERANCE) and better.all():
            break
        if np.all(damping > 1e12):
            break
    return theta, value


def best_of(starts: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float) -> tuple[np.ndarray, float]:
    """The lowest optimum reached from any of ``starts`` on the unweighted runs: (theta, objective)."""
    thetas, values = fit_many(starts, log_x, log_loss, np.ones((len(starts), len(log_loss))), delta)
    best = int(np.argmin(values))
    return thetas[best], float(values[best])


def refit_many(start: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, rows: list, delta: float) -> np.ndarray:
    """theta of each resample (``rows``: index arrays into the runs), all from one start."""
    counts = np.stack([np.bincount(r, minlength=len(log_loss)) for r in rows]).astype(float)
    thetas, _ = fit_many(np.tile(start, (len(rows), 1)), log_x, log_loss, counts, delta)
    return thetas
