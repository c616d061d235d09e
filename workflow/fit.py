"""Fit stage: scaling laws fitted to the table of runs (and to the training curves).

Notation: N parameters, D training tokens, C training compute in FLOPs (the
column ``flops``, under the configured convention; C = 6 N D when the table
has none), L validation loss in nats per token. log is the natural log.

Approach 3 (Hoffmann et al. 2022, "Chinchilla"), as re-examined by Besiroglu
et al. 2024 (Epoch AI)
------------------------------------------------------------------------------
    L(N, D) = E + A / N**alpha + B / D**beta

is fitted in log space. With a = log A, b = log B, e = log E the model is

    log L_hat = LSE(a - alpha log N,  b - beta log D,  e)

(LSE = log-sum-exp), and the objective is the sum over runs of
Huber_delta(log L_hat - log L), delta = 1e-3, minimised with L-BFGS from every
start of Hoffmann's grid: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5,
..., 1}, a, b in {0, 5, ..., 25} (4500 starts). The best optimum is kept.
Gradients are analytic: d LSE / d(term k) is the softmax weight w_k of term k.

Pruning: the objective is first evaluated at all starts at once (one
vectorised pass), and L-BFGS runs from the ``refine`` best of them. On Epoch
AI's 240 Chinchilla points about half of all starts reach the global optimum,
the best-ranked ones among them, so the result equals the full grid's at a
fraction of the time; ``refine=None`` runs every start. The distinct local
optima reached (by objective value, best first) are kept as ``local_optima``.

Derived quantities. Minimising L(N, D) subject to C = 6 N D (Hoffmann et al.,
eq. 4) gives

    N_opt(C) = G (C/6)**a,   D_opt(C) = G**-1 (C/6)**b,
    a = beta / (alpha + beta),   b = alpha / (alpha + beta),
    G = (alpha A / (beta B))**(1 / (alpha + beta)),

the loss L(N_opt, D_opt) reached there, and D_opt / N_opt tokens per
parameter. These are reported at the prediction budgets (``--predict``).
Identification: ``warnings`` says when E goes to ~0 (below 5% of the lowest
loss), or when a term A N**-alpha (B D**-beta) changes by less than 0.1% of
the loss across the data's range of N (D), so that its constant and exponent
are not determined by the data.

Compute frontier (Kaplan et al. 2020's L(C))
--------------------------------------------
The frontier: runs whose loss is below that of every run with less compute.
On it, L(C) = A_C * C**(-gamma) is fitted by least squares in log-log space
(``frontier``), and the saturating form L(C) = E + A C**-alpha as below
(``kaplan.L_C``).

Kaplan-style laws (``kaplan``)
------------------------------
L(N) = E + A N**-alpha on the runs "trained long enough": for each distinct N
its run with the largest D (the longest-trained one in the grid). L(D) = E +
B D**-beta likewise: for each distinct D its run with the largest N. Each is
fitted like Approach 3: log L_hat = LSE(a - alpha log x, e), Huber loss
(delta 1e-3), analytic gradient, a vectorised ranking of a grid of starts
(a in 0..30 by 2.5, e in -1..2 by 0.5, alpha in 0.05..2) and L-BFGS from the
20 best. The pure power law L = A x**-alpha (no offset) is fitted too. E is
reported as not identified (``E_identified: false`` and a note) when the fit
sends it below 5% of the lowest loss, puts it at the lowest loss (above 99%
of it: the data do not show where the loss levels off), or when the offset
lowers the objective by less than 5% against the pure power law. Each law
needs at least 4 distinct values of its variable (3 parameters plus one).

Approach 1 (training-curve envelope)
------------------------------------
Every run's training curve (``train_loss`` against ``flops`` from the curves
table) is smoothed by a centred moving average over ``smooth`` logged steps,
its first ``skip_fraction`` of tokens (warmup) dropped, and interpolated
linearly in log C at ``points`` = 1500 log-spaced values of C between the
smallest and largest compute of all curves, each curve only inside its own
range of C. At each C the lowest loss across curves gives N_opt (that run's
N) and D_opt (its tokens at that C). With a finite set of model sizes the
envelope is pinned to the smallest size below the first crossover and to the
last winner after the last one, where the true optimum may lie outside the
sampled sizes; so the power laws N_opt = k_N C**a and D_opt = k_D C**b are
fitted (log-log least squares) over the C from the first change of the
winning N to the last. This needs at least 2 crossovers (3 model sizes on
the envelope).

Approach 2 (IsoFLOP profiles)
-----------------------------
Runs are grouped by ``compute_budget`` (studies without budgets skip
Approach 2 and say so). For each budget, a parabola of L against log N is
fitted by least squares, and one against log D; the vertices give N_opt and
D_opt. A budget with fewer than 3 distinct N, a parabola opening downward
(no minimum), or a vertex outside the sampled range of N (or D) is flagged
with a message and left out. N_opt = k_N C**a and D_opt = k_D C**b are then
fitted over the kept budgets (log-log least squares, C = the budget), which
must number at least 2.

Uncertainty (``bootstrap``)
---------------------------
Runs are resampled with replacement (``samples`` resamples, seeded), every
fit is redone on each resample, and 95% percentile intervals (2.5th and
97.5th percentiles) are reported for every parameter and derived quantity.
Approach 3 and the frontier use the resampled rows. Approach 2 resamples runs
within each budget (stratified, so every budget keeps its size). Approach 1
resamples the training curves (a resampled curve set is its distinct
members: a duplicate does not change the envelope). Each Approach-3 refit
runs L-BFGS from the full fit's distinct local optima (its global optimum
first): these lie next to a resample's optima and converge in a few dozen
iterations. The first ``verify`` (10) resamples are also refitted from
Hoffmann's grid (ranked on that resample, its ``verify_refine`` = 25 best
refined, as in the full fit); ``verified`` says
how often both found the same optimum (the better is kept). A resample that
cannot be fitted (FitError: e.g. a single N drawn, or non-positive exponents)
is skipped and counted per approach in ``resamples_skipped``. Refits run in
``workers`` fresh Python processes (not forks), each holding BLAS to one
thread; the resamples are drawn beforehand, so the result does not depend on
the number of workers.

Extrapolation check (``extrapolation``)
---------------------------------------
Approach 3 is refitted without the runs of the largest compute and asked to
predict them. Held out: with 2 or more IsoFLOP budgets, every run with at
least the compute of the smallest run of the largest budget (the whole
largest budget, and any other run of as much compute); otherwise the 20% of
runs with the largest compute (at least one), ties included. Reported per
held-out run: predicted and actual loss, absolute and relative error; and
their mean and maximum, beside the errors of the full fit on the same runs.

Published references (``references``)
------------------------------------
Hoffmann et al. 2022's Approach-3 law and Epoch AI's refit of it; Kaplan et
al. 2020's frontier L(C) = (C / C_c)**-0.050 with C_c = 2.3e8 PF-days (their
Figure 1; eq. 1.3 gives 3.1e8), C in PF-days of non-embedding compute
(1 PF-day = 8.64e19 FLOPs), and the allocation exponents a (N_opt ∝ C**a):
Kaplan 0.73; Chinchilla Approach 1 0.50, Approach 2 0.49, Approach 3 0.46.

CLI: ``python -m workflow.fit TABLE --out FITS.json`` with TABLE a CSV or
parquet file holding columns ``params``, ``tokens``, ``loss`` and optionally
``flops`` (else C = 6 N D, and the output says so), ``status``, ``run_id``,
``compute_budget``; ``--curves`` enables Approach 1, ``--bootstrap`` (with
``--seed``) the intervals, ``--predict C1,C2`` the predictions. A fit other
than Approach 3 and the frontier that cannot be made records why under
``skipped``; Approach 3 failing exits 1 with the message.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from workflow.io import write_json_atomic

HUBER_DELTA = 1e-3
PARAM_NAMES = ("a", "b", "e", "alpha", "beta")
LBFGS_OPTIONS = {"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15}


class FitError(ValueError):
    """Data that cannot support the requested fit; the message says what is missing."""


# --------------------------------------------------------------------------- Approach 3


def hoffmann_grid() -> np.ndarray:
    """Hoffmann et al.'s 4500 starts, as rows (a, b, e, alpha, beta)."""
    alphas = betas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = bs = np.arange(0.0, 25.1, 5.0)
    return np.array([(a, b, e, al, be) for a, b, e, al, be in itertools.product(abs_, bs, es, alphas, betas)])


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    small = np.abs(r) <= delta
    return np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(r, -delta, delta)


def objective_at_starts(
    starts: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float
) -> np.ndarray:
    """The objective at every start (rows a, b, e, alpha, beta) in one vectorised pass."""
    a, b, e, alpha, beta = (starts[:, i : i + 1] for i in range(5))
    terms = np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e))
    peak = terms.max(axis=0)
    residual = peak + np.log(np.exp(terms - peak).sum(axis=0)) - log_loss
    return huber(residual, delta).sum(axis=1)


def log_sum_exp(terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(sum(exp(terms))) over axis 0 and the softmax weights, computed stably.

    Hand-written rather than scipy.special's logsumexp and softmax: those
    validate and dispatch on every call, which cost most of the time of an
    L-BFGS refit on a few hundred runs."""
    peak = terms.max(axis=0)
    weights = np.exp(terms - peak)
    total = weights.sum(axis=0)
    return peak + np.log(total), weights / total


def approach3_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Sum of Huber losses of log-loss residuals, and its exact gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    lse, weights = log_sum_exp(terms)
    residual = lse - log_loss
    g = huber_grad(residual, delta)
    grad = np.array(
        [
            np.sum(g * weights[0]),
            np.sum(g * weights[1]),
            np.sum(g * weights[2]),
            -np.sum(g * weights[0] * log_n),
            -np.sum(g * weights[1] * log_d),
        ]
    )
    return float(np.sum(huber(residual, delta))), grad


def best_starts(starts: np.ndarray, refine: int | None, log_n, log_d, log_loss, delta: float) -> np.ndarray:
    """The ``refine`` starts of lowest objective (all of them when refine is None)."""
    if refine is None or refine >= len(starts):
        return starts
    ranked = np.argsort(objective_at_starts(starts, log_n, log_d, log_loss, delta), kind="stable")
    return starts[ranked[:refine]]


def minimise_all(starts: np.ndarray, log_n, log_d, log_loss, delta: float) -> list:
    """L-BFGS from each start; every result."""
    return [
        minimize(
            approach3_objective,
            start,
            args=(log_n, log_d, log_loss, delta),
            jac=True,
            method="L-BFGS-B",
            options=LBFGS_OPTIONS,
        )
        for start in starts
    ]


def minimise_from(starts: np.ndarray, log_n, log_d, log_loss, delta: float):
    """L-BFGS from each start; the result of lowest objective."""
    return min(minimise_all(starts, log_n, log_d, log_loss, delta), key=lambda r: r.fun)


def distinct_optima(results: list, keep: int = 3) -> list:
    """The best result of each distinct objective value (relative 1e-6), best first, at most ``keep``."""
    chosen: list = []
    for result in sorted(results, key=lambda r: r.fun):
        if all(abs(result.fun - c.fun) > 1e-6 * abs(c.fun) + 1e-12 for c in chosen):
            chosen.append(result)
        if len(chosen) == keep:
            break
    return chosen


def derived(alpha: float, beta: float, A: float, B: float) -> dict:
    """Hoffmann et al.'s eq. 4 exponents and constant G."""
    return {
        "a_exponent": float(beta / (alpha + beta)),
        "b_exponent": float(alpha / (alpha + beta)),
        "G": float((alpha * A / (beta * B)) ** (1 / (alpha + beta))),
    }


def identification_warnings(fit: dict, params: np.ndarray, tokens: np.ndarray, loss: np.ndarray) -> list[str]:
    warnings = []
    if fit["E"] < 0.05 * loss.min():
        warnings.append(
            f"E is not identified: the fit sends it to {fit['E']:.3g}, below 5% of the lowest loss "
            f"({loss.min():.3g}); the data show no levelling-off"
        )
    for name, constant, exponent, values in (("N", "A", "alpha", params), ("D", "B", "beta", tokens)):
        term = fit[constant] * np.array([values.min(), values.max()]) ** -fit[exponent]
        if abs(term[0] - term[1]) < 1e-3 * loss.mean():
            warnings.append(
                f"{constant} and {exponent} are not identified: {constant}/{name}^{exponent} changes by "
                f"{abs(term[0] - term[1]):.2g} across the runs' range of {name}, under 0.1% of the loss"
            )
    return warnings


def fit_approach3(
    params: np.ndarray,
    tokens: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    starts: np.ndarray | None = None,
    refine: int | None = 100,
) -> dict:
    params, tokens, loss = (np.asarray(v, dtype=np.float64) for v in (params, tokens, loss))
    check_fit_data(params, tokens, loss, minimum_runs=6)
    log_n, log_d, log_loss = np.log(params), np.log(tokens), np.log(loss)
    starts = hoffmann_grid() if starts is None else starts
    t0 = time.perf_counter()
    chosen = best_starts(starts, refine, log_n, log_d, log_loss, delta)
    optima = distinct_optima(minimise_all(chosen, log_n, log_d, log_loss, delta))
    best = optima[0]
    a, b, e, alpha, beta = best.x
    if not (alpha > 0 and beta > 0):
        raise FitError(
            f"Approach 3 found non-positive exponents (alpha={alpha:.3g}, beta={beta:.3g}): "
            f"loss does not fall with both N and D in these runs"
        )
    fit = {
        "E": float(np.exp(e)),
        "A": float(np.exp(a)),
        "B": float(np.exp(b)),
        "alpha": float(alpha),
        "beta": float(beta),
        "log_params": dict(zip(PARAM_NAMES, map(float, best.x))),
        "objective": float(best.fun),
        "huber_delta": delta,
        "starts": int(len(starts)),
        "starts_refined": int(len(chosen)),
        "runs": int(len(loss)),
        "local_optima": [
            {"objective": float(r.fun), "log_params": dict(zip(PARAM_NAMES, map(float, r.x)))} for r in optima
        ],
        "seconds": time.perf_counter() - t0,
    }
    # Compute-optimal allocation under C = 6 N D (Hoffmann et al., eq. 4):
    # N_opt = G (C/6)^a_exp, D_opt = G^-1 (C/6)^b_exp.
    fit.update(derived(alpha, beta, fit["A"], fit["B"]))
    fit["warnings"] = identification_warnings(fit, params, tokens, loss)
    return fit


def predict_approach3(fit: dict, params, tokens) -> np.ndarray:
    return (
        fit["E"]
        + fit["A"] / np.asarray(params, float) ** fit["alpha"]
        + fit["B"] / np.asarray(tokens, float) ** fit["beta"]
    )


def optimal_allocation(a3: dict, flops) -> dict[str, np.ndarray]:
    """N_opt, D_opt (Hoffmann et al. eq. 4, C = 6 N D) and the loss they reach."""
    flops = np.asarray(flops, float)
    n_opt = a3["G"] * (flops / 6.0) ** a3["a_exponent"]
    d_opt = flops / (6.0 * n_opt)
    return {"n_opt": n_opt, "d_opt": d_opt, "loss": predict_approach3(a3, n_opt, d_opt)}


# --------------------------------------------------------------------------- frontier and small fits


def compute_frontier(flops: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of runs with lower loss than every run of less compute, by compute."""
    order = np.argsort(flops, kind="stable")
    frontier, best = [], np.inf
    for i in order:
        if loss[i] < best:
            frontier.append(int(i))
            best = loss[i]
    return np.array(frontier, dtype=int)


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y on x, in closed form.

    Hand-written rather than np.polyfit: polyfit calls LAPACK, whose thread
    pool spins against the bootstrap's worker processes on a small machine."""
    dx = x - x.mean()
    slope = float(np.sum(dx * (y - y.mean())) / np.sum(dx * dx))
    return slope, float(y.mean() - slope * x.mean())


def parabola_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares y = c2 x^2 + c1 x + c0 (normal equations, centred for conditioning)."""
    centre = x.mean()
    u = x - centre
    moments = [np.sum(u**k) for k in range(5)]
    matrix = np.array(
        [
            [moments[4], moments[3], moments[2]],
            [moments[3], moments[2], moments[1]],
            [moments[2], moments[1], moments[0]],
        ]
    )
    rhs = np.array([np.sum(y * u**2), np.sum(y * u), np.sum(y)])
    q2, q1, q0 = np.linalg.solve(matrix, rhs)
    # Back from u = x - centre to x.
    return float(q2), float(q1 - 2 * q2 * centre), float(q0 - q1 * centre + q2 * centre**2)


def fit_frontier(flops: np.ndarray, loss: np.ndarray) -> dict:
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    idx = compute_frontier(flops, loss)
    if len(idx) < 2 or np.ptp(np.log(flops[idx])) == 0:
        raise FitError(
            f"the compute frontier holds {len(idx)} distinct compute value(s); a power law in C needs at least 2"
        )
    slope, intercept = line_fit(np.log(flops[idx]), np.log(loss[idx]))
    return {
        "A_C": float(np.exp(intercept)),
        "gamma": float(-slope),
        "frontier_runs": idx.tolist(),
        "form": "L(C) = A_C * C^-gamma",
    }


def power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """y = k x^p by least squares in log-log space; returns (k, p)."""
    p, log_k = line_fit(np.log(x), np.log(y))
    return float(np.exp(log_k)), float(p)


def allocation_laws(flops: np.ndarray, n_opt: np.ndarray, d_opt: np.ndarray) -> dict:
    n_coefficient, a = power_law(flops, n_opt)
    d_coefficient, b = power_law(flops, d_opt)
    return {
        "a": a,
        "b": b,
        "n_coefficient": n_coefficient,
        "d_coefficient": d_coefficient,
        "form": "N_opt = n_coefficient * C^a, D_opt = d_coefficient * C^b",
    }


# --------------------------------------------------------------------------- Kaplan-style laws

SATURATING_GRID = np.array(
    list(
        itertools.product(
            np.arange(0.0, 30.1, 2.5), np.arange(-1.0, 2.01, 0.5), (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
        )
    )
)
SATURATING_REFINE = 20


def saturating_objective(
    theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber objective of log L = LSE(a - alpha log x, e), L = E + A x^-alpha, and its gradient."""
    a, e, alpha = theta
    terms = np.stack([a - alpha * log_x, np.full_like(log_x, e)])
    lse, weights = log_sum_exp(terms)
    residual = lse - log_loss
    g = huber_grad(residual, delta)
    grad = np.array([np.sum(g * weights[0]), np.sum(g * weights[1]), -np.sum(g * weights[0] * log_x)])
    return float(np.sum(huber(residual, delta))), grad


def saturating_at_starts(starts: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float) -> np.ndarray:
    """The saturating objective at every start (rows a, e, alpha) in one vectorised pass."""
    power = starts[:, :1] - starts[:, 2:3] * log_x
    e = starts[:, 1:2]
    peak = np.maximum(power, e)
    residual = peak + np.log(np.exp(power - peak) + np.exp(e - peak)) - log_loss
    return huber(residual, delta).sum(axis=1)


def pure_power_objective(
    theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber objective of log L = a - alpha log x (no offset) and its gradient."""
    residual = theta[0] - theta[1] * log_x - log_loss
    g = huber_grad(residual, delta)
    return float(np.sum(huber(residual, delta))), np.array([np.sum(g), -np.sum(g * log_x)])


def fit_saturating(x: np.ndarray, loss: np.ndarray, *, variable: str, delta: float = HUBER_DELTA) -> dict:
    """L(x) = E + A x^-alpha (Kaplan et al. 2020's form with an offset), fitted like Approach 3;
    the pure power law beside it, and whether E is identified (module docstring)."""
    x, loss = np.asarray(x, float), np.asarray(loss, float)
    distinct = len(np.unique(x))
    if distinct < 4:
        raise FitError(
            f"L({variable}) has 3 parameters and needs runs at 4 or more distinct values of {variable}; got {distinct}"
        )
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0) and np.all(x > 0)):
        raise FitError(f"L({variable}) needs positive, finite {variable} and loss")
    log_x, log_loss = np.log(x), np.log(loss)
    ranked = np.argsort(saturating_at_starts(SATURATING_GRID, log_x, log_loss, delta), kind="stable")
    best = min(
        (
            minimize(
                saturating_objective,
                start,
                args=(log_x, log_loss, delta),
                jac=True,
                method="L-BFGS-B",
                options=LBFGS_OPTIONS,
            )
            for start in SATURATING_GRID[ranked[:SATURATING_REFINE]]
        ),
        key=lambda r: r.fun,
    )
    a, e, alpha = best.x
    slope, intercept = line_fit(log_x, log_loss)
    pure = minimize(
        pure_power_objective,
        np.array([intercept, -slope]),
        args=(log_x, log_loss, delta),
        jac=True,
        method="L-BFGS-B",
        options=LBFGS_OPTIONS,
    )
    E, lowest = float(np.exp(e)), float(loss.min())
    improvement = 1.0 - best.fun / pure.fun if pure.fun > 0 else 0.0
    note = None
    if E < 0.05 * lowest:
        note = f"E is not identified: the fit sends it to {E:.3g}, below 5% of the lowest loss ({lowest:.4g})"
    elif E > 0.99 * lowest:
        note = (
            f"E is not identified: the fit puts it at the lowest loss ({E:.4g} against {lowest:.4g}); "
            f"the data do not show where the loss levels off"
        )
    elif improvement < 0.05:
        note = (
            f"E is weakly identified: the offset lowers the objective by only {100 * improvement:.1f}% "
            f"against the pure power law"
        )
    if note:
        note += f"; pure power law: L = {np.exp(pure.x[0]):.4g} * {variable}^-{pure.x[1]:.4f}"
    return {
        "E": E,
        "A": float(np.exp(a)),
        "alpha": float(alpha),
        "objective": float(best.fun),
        "E_identified": note is None,
        "E_note": note,
        "power_law": {
            "A": float(np.exp(pure.x[0])),
            "alpha": float(pure.x[1]),
            "objective": float(pure.fun),
            "form": f"L({variable}) = A * {variable}^-alpha",
        },
        "points": int(len(x)),
        "form": f"L({variable}) = E + A * {variable}^-alpha",
    }


def kaplan_laws(table: pl.DataFrame, delta: float = HUBER_DELTA) -> dict:
    """L(N) on each N's longest-trained run, L(D) on each D's largest model (the runs 'trained
    long enough' / 'large enough' within the grid), and L(C) = E + A C^-alpha on the compute
    frontier. A law that cannot be fitted records why."""
    out: dict = {}
    for variable, column, other in (("N", "params", "tokens"), ("D", "tokens", "params")):
        chosen = table.sort(other).group_by(column, maintain_order=True).last().sort(column)
        try:
            law = fit_saturating(chosen[column].to_numpy(), chosen["loss"].to_numpy(), variable=variable, delta=delta)
            law["selection"] = (
                f"for each distinct {variable}, its run with the largest {'D' if variable == 'N' else 'N'}"
            )
            law["run_ids"] = chosen["run_id"].to_list() if "run_id" in chosen.columns else None
            out[f"L_{variable}"] = law
        except FitError as e:
            out[f"L_{variable}"] = {"skipped": str(e)}
    flops, loss = table["flops"].to_numpy().astype(float), table["loss"].to_numpy().astype(float)
    idx = compute_frontier(flops, loss)
    try:
        law = fit_saturating(flops[idx], loss[idx], variable="C", delta=delta)
        law["selection"] = "the compute frontier (runs below every run of less compute)"
        out["L_C"] = law
    except FitError as e:
        out["L_C"] = {"skipped": str(e)}
    return out


# --------------------------------------------------------------------------- Approach 1


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` points, shorter at the ends."""
    if window <= 1 or len(values) < 2:
        return values
    half = window // 2
    sums = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    return (sums[hi] - sums[lo]) / (hi - lo)


def curve_matrix(curves: pl.DataFrame, *, points: int = 1500, skip_fraction: float = 0.1, smooth: int = 5) -> dict:
    """Every curve's loss and tokens interpolated in log C on a common grid (inf / 0 outside its range)."""
    required = {"run_id", "flops", "tokens", "train_loss", "params"}
    if not required <= set(curves.columns):
        raise FitError(
            f"Approach 1 needs training curves with columns {sorted(required)}; missing "
            f"{sorted(required - set(curves.columns))}"
        )
    runs = []
    for (run_id,), curve in curves.sort("run_id", "flops").group_by("run_id", maintain_order=True):
        curve = curve.filter(pl.col("train_loss").is_finite() & (pl.col("flops") > 0) & (pl.col("tokens") > 0))
        if curve.height == 0:
            continue
        curve = curve.filter(pl.col("tokens") >= skip_fraction * curve["tokens"].max())
        log_c = np.log(curve["flops"].to_numpy().astype(float))
        loss = moving_average(curve["train_loss"].to_numpy().astype(float), smooth)
        tokens = curve["tokens"].to_numpy().astype(float)
        keep = np.concatenate([[True], np.diff(log_c) > 0])  # strictly increasing C for interpolation
        if keep.sum() >= 2:
            runs.append((run_id, log_c[keep], loss[keep], tokens[keep], float(curve["params"][0])))
    sizes = len({r[4] for r in runs})
    if sizes < 3:
        raise FitError(
            f"Approach 1 needs training curves (2 or more logged steps past warmup) of at least 3 "
            f"model sizes; got {sizes}"
        )
    grid = np.linspace(min(r[1][0] for r in runs), max(r[1][-1] for r in runs), points)
    losses = np.full((len(runs), points), np.inf)
    tokens = np.zeros((len(runs), points))
    for i, (_, log_c, loss, tok, _) in enumerate(runs):
        inside = (grid >= log_c[0]) & (grid <= log_c[-1])
        losses[i, inside] = np.interp(grid[inside], log_c, loss)
        tokens[i, inside] = np.interp(grid[inside], log_c, tok)
    return {
        "run_ids": [r[0] for r in runs],
        "params": np.array([r[4] for r in runs]),
        "log_c": grid,
        "losses": losses,
        "tokens": tokens,
        "points": points,
        "skip_fraction": skip_fraction,
        "smooth": smooth,
    }


def envelope_law(matrix: dict, subset: np.ndarray | None = None) -> dict:
    """The envelope of the curves in ``subset`` (all when None) and the power laws fitted on it."""
    subset = np.arange(len(matrix["params"])) if subset is None else np.asarray(subset)
    losses = matrix["losses"][subset]
    covered = np.flatnonzero(np.isfinite(losses).any(axis=0))
    winner = subset[np.argmin(losses[:, covered], axis=0)]
    n_opt = matrix["params"][winner]
    d_opt = matrix["tokens"][winner, covered]
    changes = np.flatnonzero(n_opt[1:] != n_opt[:-1]) + 1
    sizes = len(np.unique(n_opt))
    if len(changes) < 2 or sizes < 3:
        raise FitError(
            f"Approach 1: the lowest-loss curve changes model size {len(changes)} time(s) across "
            f"compute ({sizes} size(s) on the envelope); it needs at least 2 crossovers (3 sizes) — "
            f"train larger models, or the smaller ones longer, so that their curves cross"
        )
    first, last = changes[0], changes[-1]
    inside = slice(first, last + 1)
    flops = np.exp(matrix["log_c"][covered])
    if len(np.unique(n_opt[inside])) < 2:
        raise FitError("Approach 1: one model size holds the envelope between its first and last crossover")
    law = allocation_laws(flops[inside], n_opt[inside], d_opt[inside])
    law.update(winner=winner, covered=covered, fit_range=(first, last), flops=flops, n_opt=n_opt, d_opt=d_opt)
    return law


def approach1(
    curves: pl.DataFrame, *, points: int = 1500, skip_fraction: float = 0.1, smooth: int = 5, matrix: dict | None = None
) -> dict:
    """Chinchilla Approach 1: the lowest training loss at each compute (module docstring)."""
    matrix = matrix or curve_matrix(curves, points=points, skip_fraction=skip_fraction, smooth=smooth)
    law = envelope_law(matrix)
    covered, winner, (first, last) = law.pop("covered"), law.pop("winner"), law.pop("fit_range")
    flops, n_opt, d_opt = law.pop("flops"), law.pop("n_opt"), law.pop("d_opt")
    keep = np.unique(np.linspace(0, len(covered) - 1, 100).astype(int))
    law.update(
        points=int(matrix["points"]),
        curves=len(matrix["run_ids"]),
        skip_fraction=matrix["skip_fraction"],
        smooth=matrix["smooth"],
        envelope_sizes=sorted({float(n) for n in n_opt}),
        fit_range_flops=[float(flops[first]), float(flops[last])],
        fit_points=int(last - first + 1),
        optima=[
            {
                "flops": float(flops[j]),
                "n_opt": float(n_opt[j]),
                "d_opt": float(d_opt[j]),
                "loss": float(matrix["losses"][winner[j], covered[j]]),
                "run_id": matrix["run_ids"][winner[j]],
                "in_fit": bool(first <= j <= last),
            }
            for j in keep
        ],
    )
    return law


# --------------------------------------------------------------------------- Approach 2


def isoflop_minimum(budget: float, log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray) -> dict:
    """One budget's parabolas in log N and log D and their vertices, or why it is left out."""
    entry: dict = {
        "compute_budget": float(budget),
        "runs": int(len(loss)),
        "kept": False,
        "sizes": int(len(np.unique(log_n))),
        "log_n_range": [float(log_n.min()), float(log_n.max())],
    }
    if entry["sizes"] < 3:
        entry["message"] = f"{entry['sizes']} distinct model size(s); a parabola needs 3"
        return entry
    c2, c1, c0 = parabola_fit(log_n, loss)
    entry["parabola"] = [c2, c1, c0]
    if len(np.unique(log_d)) >= 3:
        d2, d1, d0 = parabola_fit(log_d, loss)
    else:
        d2 = d1 = d0 = 0.0
    entry["parabola_in_log_d"] = [d2, d1, d0]
    if c2 <= 0 or d2 <= 0:
        entry["message"] = f"the parabola in log {'N' if c2 <= 0 else 'D'} opens downward (or is flat): no minimum"
        return entry
    vertex_n, vertex_d = -c1 / (2 * c2), -d1 / (2 * d2)
    entry.update(n_opt=float(np.exp(vertex_n)), d_opt=float(np.exp(vertex_d)), loss_min=float(c0 - c1**2 / (4 * c2)))
    if not log_n.min() <= vertex_n <= log_n.max():
        entry["message"] = (
            f"the minimum (N = {np.exp(vertex_n):.3g}) falls outside the sampled N range "
            f"[{np.exp(log_n.min()):.3g}, {np.exp(log_n.max()):.3g}]"
        )
    elif not log_d.min() <= vertex_d <= log_d.max():
        entry["message"] = (
            f"the minimum (D = {np.exp(vertex_d):.3g}) falls outside the sampled D range "
            f"[{np.exp(log_d.min()):.3g}, {np.exp(log_d.max()):.3g}]"
        )
    else:
        entry["kept"] = True
    return entry


def approach2_arrays(budget: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray) -> dict:
    """Approach 2 on arrays (one entry per run; budget NaN for runs outside every IsoFLOP)."""
    budgets = []
    for value in np.unique(budget[np.isfinite(budget)]):
        rows = budget == value
        budgets.append(isoflop_minimum(value, log_n[rows], log_d[rows], loss[rows]))
    kept = [b for b in budgets if b["kept"]]
    if len(kept) < 2:
        flagged = "; ".join(f"C={b['compute_budget']:.3g}: {b['message']}" for b in budgets if not b["kept"])
        raise FitError(
            f"Approach 2 needs at least 2 IsoFLOP budgets with a minimum inside the sampled range; "
            f"got {len(kept)} of {len(budgets)}" + (f" ({flagged})" if flagged else "")
        )
    out = allocation_laws(
        np.array([b["compute_budget"] for b in kept]),
        np.array([b["n_opt"] for b in kept]),
        np.array([b["d_opt"] for b in kept]),
    )
    out["budgets"] = budgets
    out["budgets_kept"] = len(kept)
    out["flagged"] = [f"C = {b['compute_budget']:.3g} FLOPs: {b['message']}" for b in budgets if not b["kept"]]
    out["optima"] = [
        {"flops": b["compute_budget"], "n_opt": b["n_opt"], "d_opt": b["d_opt"], "loss": b["loss_min"]} for b in kept
    ]
    return out


def budget_column(table: pl.DataFrame) -> np.ndarray:
    """compute_budget as floats, NaN where null; FitError when the study has no budgets."""
    if "compute_budget" not in table.columns or table["compute_budget"].drop_nulls().len() == 0:
        raise FitError(
            "no IsoFLOP budgets in this study (compute_budget is null for every run: a grid of "
            "model sizes and token counts, not of compute budgets)"
        )
    return table["compute_budget"].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def approach2(table: pl.DataFrame) -> dict:
    """Chinchilla Approach 2: IsoFLOP profiles (module docstring)."""
    budget = budget_column(table)
    return approach2_arrays(
        budget,
        np.log(table["params"].to_numpy().astype(float)),
        np.log(table["tokens"].to_numpy().astype(float)),
        table["loss"].to_numpy().astype(float),
    )


# --------------------------------------------------------------------------- predictions


def predictions(a3: dict, budgets: list[float], others: dict[str, dict]) -> list[dict]:
    """Approach 3's N_opt, D_opt, loss and tokens per parameter at each budget; Approach 1's and 2's
    N_opt and D_opt beside them where fitted."""
    out = []
    for flops in budgets:
        best = optimal_allocation(a3, [flops])
        row = {
            "flops": float(flops),
            "n_opt": float(best["n_opt"][0]),
            "d_opt": float(best["d_opt"][0]),
            "loss": float(best["loss"][0]),
            "tokens_per_parameter": float(best["d_opt"][0] / best["n_opt"][0]),
        }
        for name, law in others.items():
            if law and "a" in law:
                row[name] = {
                    "n_opt": law["n_coefficient"] * flops ** law["a"],
                    "d_opt": law["d_coefficient"] * flops ** law["b"],
                }
        out.append(row)
    return out


def prediction_key(flops: float) -> str:
    return f"predictions.{flops:g}"


# --------------------------------------------------------------------------- extrapolation check


def extrapolation_check(table: pl.DataFrame, *, delta: float, refine: int | None, full_fit: dict | None = None) -> dict:
    """Refit Approach 3 without the largest compute and predict the runs held out (module docstring)."""
    budgets = table["compute_budget"].drop_nulls() if "compute_budget" in table.columns else pl.Series([])
    if budgets.n_unique() >= 2:
        largest = budgets.max()
        threshold = table.filter(pl.col("compute_budget") == largest)["flops"].min()
        description = (
            f"the runs of the largest IsoFLOP budget (C = {largest:.3g} FLOPs) and any run of at least "
            f"{threshold:.3g} FLOPs"
        )
        held_mask = (pl.col("compute_budget") == largest).fill_null(False) | (pl.col("flops") >= threshold)
    else:
        count = max(1, round(0.2 * table.height))
        threshold = table["flops"].sort(descending=True)[count - 1]
        description = f"the runs of the largest compute (the top 20%: C >= {threshold:.3g} FLOPs)"
        held_mask = pl.col("flops") >= threshold
    held, kept = table.filter(held_mask), table.filter(~held_mask)
    if kept.height == 0:
        raise FitError("the extrapolation check holds out every run: no run has less compute than the largest")
    try:
        refit = fit_approach3(
            kept["params"].to_numpy(), kept["tokens"].to_numpy(), kept["loss"].to_numpy(), delta=delta, refine=refine
        )
    except FitError as e:
        raise FitError(f"the extrapolation check's refit without {description} failed: {e}") from None
    params, tokens, actual = (held[c].to_numpy().astype(float) for c in ("params", "tokens", "loss"))
    predicted = predict_approach3(refit, params, tokens)
    error = predicted - actual
    out = {
        "held_out_description": description,
        "threshold_flops": float(threshold),
        "held_out": [
            {
                "run_id": r["run_id"],
                "params": r["params"],
                "tokens": r["tokens"],
                "flops": r["flops"],
                "loss": r["loss"],
                "predicted": float(p),
                "error": float(e),
                "absolute_error": float(abs(e)),
                "relative_error": float(abs(e) / r["loss"]),
            }
            for r, p, e in zip(held.iter_rows(named=True), predicted, error)
        ],
        "runs_fitted": kept.height,
        "refit": {k: refit[k] for k in ("E", "A", "B", "alpha", "beta")},
        "mean_absolute_error": float(np.mean(np.abs(error))),
        "mean_relative_error": float(np.mean(np.abs(error) / actual)),
        "max_absolute_error": float(np.max(np.abs(error))),
        "max_relative_error": float(np.max(np.abs(error) / actual)),
        "mean_signed_error": float(np.mean(error)),
    }
    if full_fit is not None:
        in_sample = np.abs(predict_approach3(full_fit, params, tokens) - actual)
        out["full_fit_mean_absolute_error"] = float(np.mean(in_sample))
        out["full_fit_max_absolute_error"] = float(np.max(in_sample))
    return out


# --------------------------------------------------------------------------- bootstrap

BOOTSTRAP_BAND_POINTS = 48


def _bootstrap_worker(job: dict) -> list[dict]:
    """Refits for a block of resamples (in a worker process, or inline).

    BLAS thread pools are held to one thread: with one worker per core, their
    spinning threads otherwise make the bootstrap several times slower."""
    with threadpool_limits(1):
        return [_bootstrap_one(job, k) for k in range(len(job["rows"]))]


def run_in_processes(jobs: list[dict]) -> list:
    """``_bootstrap_worker`` on each job, each in a fresh Python process (one per job, at once).

    Fresh processes rather than forks: a fork of a process whose polars or BLAS
    threads hold a lock can deadlock. Rather than multiprocessing's spawn, which
    re-imports the caller's main script, each worker is ``python -c`` importing
    this module, reading its pickled job on stdin and writing its results to
    stdout."""
    import pickle
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", POLARS_MAX_THREADS="1")
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [sys.executable, "-c", "from workflow.fit import _worker_main; _worker_main()"]

    def run(job):
        done = subprocess.run(command, input=pickle.dumps(job), capture_output=True, env=env, cwd=root)
        if done.returncode != 0:
            raise RuntimeError(
                f"a bootstrap worker failed (exit {done.returncode}): {done.stderr.decode(errors='replace')[-3000:]}"
            )
        return pickle.loads(done.stdout)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def _worker_main() -> None:
    """Entry point of a bootstrap worker process (see run_in_processes)."""
    import pickle

    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # a stray print must not corrupt the pickled results
    results = _bootstrap_worker(pickle.load(sys.stdin.buffer))
    out.write(pickle.dumps(results))
    out.flush()


def _bootstrap_one(job: dict, k: int) -> dict:
    """Every fit on resample k of the job: {quantity: value}, failures under '_failed'."""
    values: dict = {"_failed": [], "_verified": None}
    rows = job["rows"][k]
    ln, ld, ll, delta = job["log_n"][rows], job["log_d"][rows], job["log_loss"][rows], job["delta"]
    try:
        if len(np.unique(ln)) < 2 or len(np.unique(ld)) < 2:
            raise FitError("a single N or D drawn")
        best = minimise_from(job["starts"], ln, ld, ll, delta)
        if job["verify"][k]:
            grid_best = minimise_from(best_starts(hoffmann_grid(), job["refine"], ln, ld, ll, delta), ln, ld, ll, delta)
            values["_verified"] = float(best.fun - grid_best.fun)
            best = grid_best if grid_best.fun < best.fun else best
        a, b, e, alpha, beta = best.x
        if not (alpha > 0 and beta > 0):
            raise FitError("non-positive exponent")
        a3 = {
            "E": np.exp(e),
            "A": np.exp(a),
            "B": np.exp(b),
            "alpha": alpha,
            "beta": beta,
            **derived(alpha, beta, np.exp(a), np.exp(b)),
        }
        values.update({name: float(v) for name, v in a3.items()})
        for c in job["predict"]:
            point = optimal_allocation(a3, [c])
            key = prediction_key(c)
            values[f"{key}.n_opt"], values[f"{key}.d_opt"] = float(point["n_opt"][0]), float(point["d_opt"][0])
            values[f"{key}.loss"] = float(point["loss"][0])
            values[f"{key}.tokens_per_parameter"] = float(point["d_opt"][0] / point["n_opt"][0])
        curve = optimal_allocation(a3, job["band"])
        values["_band"] = (curve["loss"], curve["n_opt"], curve["d_opt"])
    except (FitError, np.linalg.LinAlgError):
        values["_failed"].append("approach3")
    try:
        frontier = fit_frontier(job["flops"][rows], np.exp(ll))
        values["frontier.gamma"], values["frontier.A_C"] = frontier["gamma"], frontier["A_C"]
    except FitError:
        values["_failed"].append("frontier")
    fits_of = {}
    if job["approach2_rows"] is not None:
        rows2 = job["approach2_rows"][k]
        try:
            fits_of["approach2"] = approach2_arrays(
                job["budget"][rows2], job["log_n"][rows2], job["log_d"][rows2], np.exp(job["log_loss"][rows2])
            )
        except (FitError, np.linalg.LinAlgError):
            values["_failed"].append("approach2")
    if job["matrix"] is not None:
        try:
            fits_of["approach1"] = envelope_law(job["matrix"], job["curve_subsets"][k])
        except FitError:
            values["_failed"].append("approach1")
    for name, law in fits_of.items():
        values[f"{name}.a"], values[f"{name}.b"] = law["a"], law["b"]
        for c in job["predict"]:
            values[f"{prediction_key(c)}.{name}.n_opt"] = law["n_coefficient"] * c ** law["a"]
            values[f"{prediction_key(c)}.{name}.d_opt"] = law["d_coefficient"] * c ** law["b"]
    return values


def bootstrap(
    table: pl.DataFrame,
    curves: pl.DataFrame | None,
    full: dict,
    *,
    samples: int,
    seed: int,
    delta: float = HUBER_DELTA,
    predict: list[float] | None = None,
    workers: int = 2,
    verify: int = 10,
    verify_refine: int = 25,
    approach1_matrix: dict | None = None,
) -> dict:
    """Resample runs with replacement ``samples`` times (seeded), refit everything, and report
    95% percentile intervals (module docstring). ``full`` holds the full-data fits (fit_table's
    output, or at least its 'approach3'); Approach 1 and 2 are resampled when ``full`` has them
    fitted."""
    t0 = time.perf_counter()
    predict = list(predict or [])
    if samples < 2:
        raise FitError(f"a bootstrap needs at least 2 resamples; got {samples}")
    rng = np.random.default_rng(seed)
    n = table.height
    rows = rng.integers(0, n, (samples, n))
    params, tokens, loss, flops = (table[c].to_numpy().astype(float) for c in ("params", "tokens", "loss", "flops"))
    approach2_rows, budget = None, None
    if "skipped" not in (full.get("approach2") or {"skipped": "not fitted"}):
        budget = budget_column(table)
        groups = [np.flatnonzero(budget == value) for value in np.unique(budget[np.isfinite(budget)])]
        approach2_rows = [np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(samples)]
    matrix, curve_subsets = None, None
    a1 = full.get("approach1") or {"skipped": "not fitted"}
    if "skipped" not in a1 and (curves is not None or approach1_matrix is not None):
        matrix = approach1_matrix or curve_matrix(
            curves, points=a1["points"], skip_fraction=a1["skip_fraction"], smooth=a1["smooth"]
        )
        m = len(matrix["params"])
        curve_subsets = [np.unique(rng.integers(0, m, m)) for _ in range(samples)]
    a3 = full["approach3"]
    optima = a3.get("local_optima") or [{"log_params": a3["log_params"]}]
    starts = np.array([[o["log_params"][k] for k in PARAM_NAMES] for o in optima])
    band = np.geomspace(flops.min(), flops.max() * 10, BOOTSTRAP_BAND_POINTS)
    verify = min(verify, samples)
    workers = max(1, min(workers, samples, os.cpu_count() or 1))
    jobs = []
    for w in range(workers):
        block = np.arange(w, samples, workers)  # interleaved: the verified resamples are spread over workers
        jobs.append(
            {
                "rows": rows[block],
                "verify": block < verify,
                "log_n": np.log(params),
                "log_d": np.log(tokens),
                "log_loss": np.log(loss),
                "flops": flops,
                "starts": starts,
                "refine": verify_refine,
                "delta": delta,
                "band": band,
                "predict": predict,
                "budget": budget,
                "approach2_rows": None if approach2_rows is None else [approach2_rows[i] for i in block],
                "matrix": matrix,
                "curve_subsets": None if curve_subsets is None else [curve_subsets[i] for i in block],
                "block": block,
            }
        )
    results = [_bootstrap_worker(jobs[0])] if workers == 1 else run_in_processes(jobs)
    ordered: list = [None] * samples
    for job, block_values in zip(jobs, results):
        for i, values in zip(job["block"], block_values):
            ordered[i] = values
    failed = {
        name: sum(name in v["_failed"] for v in ordered) for name in ("approach3", "frontier", "approach2", "approach1")
    }
    fitted = samples - failed["approach3"]
    if fitted < 2:
        raise FitError(f"only {fitted} of {samples} bootstrap resamples could be fitted by Approach 3")
    names = sorted({k for v in ordered for k in v if not k.startswith("_")})
    intervals, counts = {}, {}
    for name in names:
        values = np.array([v[name] for v in ordered if name in v], dtype=float)
        values = values[np.isfinite(values)]
        if len(values) >= 2:
            intervals[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
            counts[name] = int(len(values))
    gaps = [v["_verified"] for v in ordered if v["_verified"] is not None]
    tolerance = 1e-6 * a3["objective"] + 1e-12
    with_band = [v["_band"] for v in ordered if "_band" in v]
    band_loss, band_n, band_d = (np.array([b[i] for b in with_band]) for i in range(3))
    pct = lambda v, q: np.percentile(v, q, axis=0).tolist()  # noqa: E731
    return {
        "samples": samples,
        "fitted": fitted,
        "seed": seed,
        "workers": workers,
        "resamples_skipped": {
            k: v
            for k, v in failed.items()
            if k in ("approach3", "frontier")
            or (k == "approach2" and approach2_rows is not None)
            or (k == "approach1" and matrix is not None)
        },
        "method": (
            "runs resampled with replacement (within each budget for Approach 2, training curves for "
            "Approach 1); 95% percentile intervals (2.5th, 97.5th)"
        ),
        "starts": "the full fit's distinct local optima" + (f" ({len(starts)})" if len(starts) > 1 else ""),
        "verified": {
            "resamples": len(gaps),
            "refine": verify_refine,
            "same_optimum": int(sum(g <= tolerance for g in gaps)),
            "largest_objective_gap": float(max(gaps)) if gaps else None,
        },
        "intervals": intervals,
        "counts": counts,
        "optimal_loss_band": {"flops": band.tolist(), "lower": pct(band_loss, 2.5), "upper": pct(band_loss, 97.5)},
        "optimal_allocation_band": {
            "flops": band.tolist(),
            "n_opt_lower": pct(band_n, 2.5),
            "n_opt_upper": pct(band_n, 97.5),
            "d_opt_lower": pct(band_d, 2.5),
            "d_opt_upper": pct(band_d, 97.5),
        },
        "seconds": time.perf_counter() - t0,
    }


def attach_intervals(rows: list[dict], intervals: dict) -> None:
    """Copy the bootstrap intervals of each prediction into its row."""
    for row in rows:
        key = prediction_key(row["flops"])
        row["intervals"] = {q: intervals.get(f"{key}.{q}") for q in ("n_opt", "d_opt", "loss", "tokens_per_parameter")}
        for name in ("approach1", "approach2"):
            if name in row:
                row[name]["intervals"] = {q: intervals.get(f"{key}.{name}.{q}") for q in ("n_opt", "d_opt")}


# --------------------------------------------------------------------------- published references

# Hoffmann et al. 2022's published Approach-3 fit, and Besiroglu et al. 2024's
# (Epoch AI) refit of the same data; both for MassiveText, in nats per token.
HOFFMANN_PUBLISHED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
EPOCH_REFIT = {"E": 1.817, "A": 482.0, "B": 2085.0, "alpha": 0.3478, "beta": 0.3658}
PF_DAY_FLOPS = 8.64e19  # 1e15 FLOP/s for a day
KAPLAN_C_C_PF_DAYS = 2.3e8
REFERENCES = {
    "laws": {
        "Hoffmann et al. 2022 (published)": HOFFMANN_PUBLISHED,
        "Besiroglu et al. 2024 (Epoch AI refit)": EPOCH_REFIT,
    },
    # Kaplan et al. 2020, Figure 1: L(C_min) = (C_min / 2.3e8 PF-days)^-0.050;
    # their eq. 1.3 quotes C_c = 3.1e8 PF-days for the same law.
    "kaplan_frontier": {
        "C_c_pf_days": KAPLAN_C_C_PF_DAYS,
        "C_c_flops": KAPLAN_C_C_PF_DAYS * PF_DAY_FLOPS,
        "alpha_C": 0.050,
        "pf_day_flops": PF_DAY_FLOPS,
        "form": "L(C) = (C / C_c)^-alpha_C, C_c = 2.3e8 PF-days (1 PF-day = 8.64e19 FLOPs)",
        "units": (
            "nats/token on WebText2 with GPT-2's tokenizer; C is non-embedding compute (6 N_non-embedding per token)"
        ),
        "note": "Kaplan et al.'s Figure 1 fit; their eq. 1.3 gives C_c = 3.1e8 PF-days",
    },
    "allocation_exponents": {
        "Kaplan et al. 2020": 0.73,
        "Hoffmann et al. 2022 Approach 1": 0.50,
        "Hoffmann et al. 2022 Approach 2": 0.49,
        "Hoffmann et al. 2022 Approach 3": 0.46,
    },
    "allocation_exponents_b": {
        "Hoffmann et al. 2022 Approach 1": 0.50,
        "Hoffmann et al. 2022 Approach 2": 0.51,
        "Hoffmann et al. 2022 Approach 3": 0.54,
    },
    "allocation_form": "N_opt ∝ C^a, D_opt ∝ C^b",
}


# --------------------------------------------------------------------------- table and CLI


def check_fit_data(params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, minimum_runs: int) -> None:
    if len(loss) < minimum_runs:
        raise FitError(
            f"Approach 3 fits 5 parameters and needs at least {minimum_runs} completed runs; got {len(loss)}"
        )
    for name, values in (("params", params), ("tokens", tokens), ("loss", loss)):
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise FitError(f"column {name!r} must hold positive, finite numbers")
    if len(np.unique(params)) < 2:
        raise FitError("every run has the same model size: Approach 3 needs at least 2 distinct values of N")
    if len(np.unique(tokens)) < 2:
        raise FitError("every run has the same token count: Approach 3 needs at least 2 distinct values of D")


def read_table(path: Path) -> pl.DataFrame:
    path = Path(path)
    table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    missing = [c for c in ("params", "tokens", "loss") if c not in table.columns]
    if missing:
        raise FitError(
            f"{path} lacks column(s) {', '.join(missing)}; it needs params, tokens, loss and optionally flops"
        )
    return table


def plain_json(value):
    """``value`` with numpy scalars and arrays made Python and non-finite floats made None."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fit_table(
    table: pl.DataFrame,
    *,
    curves: pl.DataFrame | None = None,
    delta: float = HUBER_DELTA,
    refine: int | None = 100,
    bootstrap_samples: int = 0,
    seed: int = 0,
    predict: list[float] | None = None,
    workers: int = 2,
    metadata: dict | None = None,
) -> dict:
    """Every fit of the study. Approach 3 and the frontier are required (FitError);
    the others record why they were skipped instead."""
    excluded = []
    if "status" in table.columns:
        excluded = table.filter(pl.col("status") != "completed")
        excluded = excluded["run_id"].to_list() if "run_id" in excluded.columns else [None] * excluded.height
        table = table.filter(pl.col("status") == "completed")
    if table.height == 0:
        raise FitError(
            "no completed runs to fit" + (f" ({len(excluded)} left out as not completed)" if excluded else "")
        )
    if "run_id" not in table.columns:
        table = table.with_columns(pl.format("run{}", pl.int_range(pl.len())).alias("run_id"))
    if "flops" in table.columns:
        compute_source = "table column 'flops'"
    else:
        table = table.with_columns((6.0 * pl.col("params") * pl.col("tokens")).alias("flops"))
        compute_source = "C = 6 N D (no 'flops' column)"
    params, tokens, loss, compute = (table[c].to_numpy().astype(float) for c in ("params", "tokens", "loss", "flops"))
    predict = [float(c) for c in predict or []]
    timings = {}
    t0 = time.perf_counter()
    approach3 = fit_approach3(params, tokens, loss, delta=delta, refine=refine)
    timings["approach3"] = time.perf_counter() - t0
    frontier = fit_frontier(compute, loss)
    frontier["frontier_run_ids"] = [table["run_id"][i] for i in frontier["frontier_runs"]]
    fits: dict = {"approach3": approach3, "frontier": frontier}

    def attempt(name, function):
        start = time.perf_counter()
        try:
            fits[name] = function()
        except FitError as e:
            fits[name] = {"skipped": str(e)}
        timings[name] = time.perf_counter() - start

    attempt("kaplan", lambda: kaplan_laws(table, delta))
    matrix = None
    if curves is not None:
        ids = set(table["run_id"].to_list())
        if "training_run" in table.columns:
            ids |= set(table["training_run"].to_list())
        kept_curves = curves.filter(pl.col("run_id").is_in(list(ids))) if "run_id" in curves.columns else curves

        def fit_approach1():
            nonlocal matrix
            matrix = curve_matrix(kept_curves)
            return approach1(kept_curves, matrix=matrix)

        attempt("approach1", fit_approach1)
    else:
        fits["approach1"] = {"skipped": "no training curves given (--curves)"}
    attempt("approach2", lambda: approach2(table))
    attempt("extrapolation", lambda: extrapolation_check(table, delta=delta, refine=refine, full_fit=approach3))
    others = {k: fits[k] for k in ("approach1", "approach2") if "skipped" not in fits[k]}
    fits["predictions"] = predictions(approach3, predict, others)
    if bootstrap_samples:
        attempt(
            "bootstrap",
            lambda: bootstrap(
                table,
                None,
                fits,
                samples=bootstrap_samples,
                seed=seed,
                delta=delta,
                predict=predict,
                workers=workers,
                approach1_matrix=matrix,
            ),
        )
        if "intervals" in fits["bootstrap"]:
            attach_intervals(fits["predictions"], fits["bootstrap"]["intervals"])
    else:
        fits["bootstrap"] = {"skipped": "no bootstrap requested (--bootstrap 0)"}
    fits["references"] = REFERENCES
    fits["data"] = {"runs_fitted": table.height, "runs_excluded": excluded, "compute": compute_source}
    fits["seconds"] = timings
    fits.update(metadata or {})
    return plain_json(fits)


def summary_lines(fits: dict) -> list[str]:
    a3, seconds = fits["approach3"], fits["seconds"]
    ci = (fits.get("bootstrap") or {}).get("intervals", {})

    def show(name, value, digits=4):
        return f"{value:.{digits}g}" + (f" [{ci[name][0]:.{digits}g}, {ci[name][1]:.{digits}g}]" if name in ci else "")

    lines = [
        f"approach 3: E={show('E', a3['E'])} A={show('A', a3['A'])} B={show('B', a3['B'])} "
        f"alpha={show('alpha', a3['alpha'])} beta={show('beta', a3['beta'])} "
        f"a={show('a_exponent', a3['a_exponent'], 3)} "
        f"({a3['starts_refined']} of {a3['starts']} starts refined, {seconds['approach3']:.1f} s)"
    ]
    lines += [f"approach 3 warning: {w}" for w in a3.get("warnings", [])]
    for name in ("kaplan", "approach1", "approach2", "extrapolation", "bootstrap"):
        section = fits.get(name) or {}
        if "skipped" in section:
            state = f"skipped: {section['skipped']}"
        elif name in ("approach1", "approach2"):
            state = f"a={show(name + '.a', section['a'], 3)} b={show(name + '.b', section['b'], 3)}"
        elif name == "extrapolation":
            state = (
                f"{len(section['held_out'])} runs held out, mean abs error {section['mean_absolute_error']:.4g} "
                f"({100 * section['mean_relative_error']:.2f}%)"
            )
        elif name == "bootstrap":
            state = (
                f"{section['fitted']} of {section['samples']} resamples fitted, skipped "
                f"{section['resamples_skipped']}, same optimum as the grid in "
                f"{section['verified']['same_optimum']} of {section['verified']['resamples']} checked"
            )
        else:
            state = "; ".join(
                f"{k}: "
                + (
                    "skipped"
                    if "skipped" in v
                    else f"alpha={v['alpha']:.3g}" + ("" if v["E_identified"] else " (E not identified)")
                )
                for k, v in section.items()
            )
        lines.append(f"{name}: {state} ({seconds.get(name, 0):.1f} s)")
    for p in fits.get("predictions") or []:
        lines.append(f"C={p['flops']:.3g}: N_opt={p['n_opt']:.3g} D_opt={p['d_opt']:.3g} loss={p['loss']:.4g}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.fit", description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="CSV or parquet with params, tokens, loss [, flops]")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--curves", type=Path, help="training curves (CSV or parquet): enables Approach 1")
    parser.add_argument("--huber-delta", type=float, default=HUBER_DELTA)
    parser.add_argument(
        "--refine", type=int, default=100, help="run L-BFGS from this many best-ranked grid starts (0: all 4500)"
    )
    parser.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--workers", type=int, default=2, help="processes for the bootstrap")
    parser.add_argument("--predict", default="", help="compute budgets (FLOPs), comma-separated")
    parser.add_argument("--flop-convention", default=None, help="recorded in the output")
    parser.add_argument("--parameter-count", default=None, help="recorded in the output")
    args = parser.parse_args(argv)
    metadata = {
        "flop_convention": args.flop_convention,
        "parameter_count": args.parameter_count,
        "table": str(args.table),
    }
    try:
        budgets = [float(c) for c in args.predict.split(",") if c.strip()]
    except ValueError:
        print(f"error: --predict takes FLOPs separated by commas, got {args.predict!r}", file=sys.stderr)
        return 2
    if any(not (math.isfinite(c) and c > 0) for c in budgets) or args.bootstrap < 0:
        print("error: --predict budgets must be positive FLOPs and --bootstrap must be >= 0", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        curves = None
        if args.curves:
            curves = pl.read_parquet(args.curves) if args.curves.suffix == ".parquet" else pl.read_csv(args.curves)
        # One BLAS thread: L-BFGS on problems this small gains nothing from more.
        with threadpool_limits(1):
            fits = fit_table(
                read_table(args.table),
                curves=curves,
                delta=args.huber_delta,
                refine=args.refine or None,
                bootstrap_samples=args.bootstrap,
                seed=args.seed,
                predict=budgets,
                workers=args.workers,
                metadata=metadata,
            )
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_json_atomic(args.out, fits)
    for line in summary_lines(fits):
        print(line)
    print(f"total: {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
