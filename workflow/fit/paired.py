"""The maths of comparing arms (docs/methods.md, "Comparing arms"): compute-optimal frontiers, the compute
multiplier, the crossover and the paired bootstrap's draws and refits, all as arrays over resamples.

A law is held as a dict of arrays (one entry per resample, or a single one) of E, A, B, alpha, beta and
the study's FLOPs per parameter and token k. At its eq.-4 allocation on C = k N D the law's loss is
L*(C) = E + K (C/k)^-gamma with gamma = alpha beta / (alpha + beta) and K = A G^-alpha + B G^beta
(G of eq. 4), so the compute the baseline needs to reach a loss L > E is C = k (K / (L - E))^(1/gamma):
the frontier is inverted in closed form, not by a root search.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.lse_batch import fit_many

# Percentiles of the 95% intervals, as the bootstrap's (bootstrap.py).
LOW, HIGH = 2.5, 97.5
# A crossover is searched on this many points per decade of the comparison's range.
CROSSOVER_POINTS_PER_DECADE = 200


def law_arrays(thetas: np.ndarray, flops_per_nd: float) -> dict[str, np.ndarray]:
    """The law of each row of theta = (log A, log B, log E, alpha, beta), with its frontier's K and gamma."""
    thetas = np.atleast_2d(np.asarray(thetas, float))
    log_a, log_b, log_e, alpha, beta = thetas.T
    with np.errstate(all="ignore"):
        log_g = (np.log(alpha) + log_a - np.log(beta) - log_b) / (alpha + beta)
        log_k = np.logaddexp(log_a - alpha * log_g, log_b + beta * log_g)
    return {
        "E": np.exp(log_e),
        "A": np.exp(log_a),
        "B": np.exp(log_b),
        "alpha": alpha,
        "beta": beta,
        "a": beta / (alpha + beta),
        "gamma": alpha * beta / (alpha + beta),
        "log_K": log_k,
        "k": np.full(len(thetas), float(flops_per_nd)),
    }


def frontier_loss(law: dict, flops) -> np.ndarray:
    """L*(C) of each law (rows) at each compute (columns)."""
    log_c = np.log(np.asarray(flops, float))[None, :]
    col = {key: value[:, None] for key, value in law.items()}
    return col["E"] + np.exp(col["log_K"] - col["gamma"] * (log_c - np.log(col["k"])))


def compute_to_reach(law: dict, loss: np.ndarray) -> np.ndarray:
    """The compute at which each law's frontier reaches ``loss`` (rows: laws): inf where loss <= E,
    which the law never reaches."""
    col = {key: value[:, None] for key, value in law.items()}
    gap = loss - col["E"]
    with np.errstate(all="ignore"):
        log_c = np.log(col["k"]) + (col["log_K"] - np.log(gap)) / col["gamma"]
        return np.where(gap > 0, np.exp(log_c), np.inf)


def multiplier(arm: dict, baseline: dict, flops) -> np.ndarray:
    """m(C) = C_baseline(L*_arm(C)) / C: how many times the compute the baseline needs to reach the loss the
    arm reaches at C (rows: resamples, columns: budgets). m > 1: the arm is the more compute-efficient."""
    flops = np.asarray(flops, float)
    return compute_to_reach(baseline, frontier_loss(arm, flops)) / flops[None, :]


def crossovers(arm: dict, baseline: dict, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """Where m(C) first crosses 1 within [low, high], per row (NaN: none), and its direction: +1 where the arm
    overtakes the baseline as compute grows (m rises through 1), -1 where it falls behind, 0 for none.

    m(C) = 1 exactly where the two frontiers meet, so the search is on their loss difference, which stays
    finite where m does not; the root is interpolated linearly in log C between grid points."""
    decades = max(np.log10(high / low), 1e-3)
    grid = np.geomspace(low, high, max(int(decades * CROSSOVER_POINTS_PER_DECADE), 16))
    ahead = frontier_loss(baseline, grid) - frontier_loss(arm, grid)  # > 0: the arm has the lower loss
    sign = ahead > 0
    change = (sign[:, 1:] != sign[:, :-1]) & np.isfinite(ahead[:, 1:]) & np.isfinite(ahead[:, :-1])
    has = change.any(axis=1)
    first = np.argmax(change, axis=1)
    rows = np.arange(len(ahead))
    y0, y1 = ahead[rows, first], ahead[rows, first + 1]
    x0, x1 = np.log(grid[first]), np.log(grid[first + 1])
    with np.errstate(all="ignore"):
        root = np.exp(x0 + (x1 - x0) * y0 / (y0 - y1))
    direction = np.where(has, np.where(sign[rows, first + 1], 1, -1), 0)
    return np.where(has, root, np.nan), direction


def draw_units(keys: dict[str, np.ndarray], rng: np.random.Generator, samples: int, paired: bool) -> dict:
    """Each arm's row counts (samples, rows) in ``samples`` bootstrap resamples of its units.

    ``keys``: per arm, each row's unit key; rows of one unit share it, and one key names matching units of
    different arms (one shape, budget and seed). Paired: keys are drawn once for every arm, so that a drawn
    key brings its unit in each arm that has it; keys held by the same set of arms form a stratum, drawn
    within itself, so each arm keeps its number of units. Unpaired: each arm's units drawn on their own."""
    arms = list(keys)
    if not paired:
        return {arm: draw_units({arm: keys[arm]}, rng, samples, paired=True)[arm] for arm in arms}
    every = sorted({k for arm in arms for k in keys[arm]})
    index = {k: i for i, k in enumerate(every)}
    held = np.array([[k in set(keys[arm]) for arm in arms] for k in every]).reshape(len(every), len(arms))
    times = np.zeros((samples, len(every)))
    for pattern in np.unique(held, axis=0):
        stratum = np.flatnonzero((held == pattern).all(axis=1))
        drawn = stratum[rng.integers(0, len(stratum), (samples, len(stratum)))]
        np.add.at(times, (np.arange(samples)[:, None], drawn), 1)
    return {arm: times[:, [index[k] for k in keys[arm]]] for arm in arms}


def refit(start: np.ndarray, params, tokens, loss, counts: np.ndarray, delta: float) -> np.ndarray:
    """Approach 3's law on each weighting of the runs (rows of ``counts``), from the full fit's optimum;
    NaN rows where the pipeline's bootstrap would not fit it (a single N or D drawn, an exponent <= 0)."""
    log_x = np.stack([np.log(params), np.log(tokens)])
    thetas, _ = fit_many(np.tile(start, (len(counts), 1)), log_x, np.log(loss), counts, delta)
    drawn = counts > 0
    distinct = [
        (np.unique(np.asarray(values), return_inverse=True)[1], len(np.unique(values))) for values in (params, tokens)
    ]
    valid = np.ones(len(counts), bool)
    for inverse, levels in distinct:
        present = (drawn.astype(float) @ np.eye(levels)[inverse]) > 0
        valid &= present.sum(axis=1) > 1
    valid &= (thetas[:, 3] > 0) & (thetas[:, 4] > 0) & np.isfinite(thetas).all(axis=1)
    thetas[~valid] = np.nan
    return thetas


def interval(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """95% percentile interval over resamples (NaN rows ignored) as (2, ...): lower and upper.

    An infinite value (a loss at or below the baseline's floor: no compute reaches it) is held at the
    largest float while interpolating, so that an end reaching it reads inf rather than NaN."""
    big = np.finfo(float).max / 4
    clipped = np.clip(values, -big, big)
    with np.errstate(all="ignore"):
        ends = np.nanpercentile(clipped, [LOW, HIGH], axis=axis)
    return np.where(np.abs(ends) >= big / 2, np.sign(ends) * np.inf, ends)
