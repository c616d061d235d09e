"""Simulated studies of a design: how precise it will be, before any run (docs/methods.md, "Designing a
study").

Each simulated study draws every point's loss from the assumed law plus noise (``workflow.simulate``:
a deviation shared by a training run's points and one of each point's own) and is fitted as the pipeline
fits a study: Approach 3's estimator from Hoffmann's grid with its 95% bootstrap intervals over training
runs, minimised for all starts and resamples at once (``workflow.simulate.fit_study``, the batched
equivalent of ``workflow.fit.bootstrap``), and Approach 2's IsoFLOP parabolas
(``workflow.fit.approach2.approach2_arrays``, the pipeline's own). From them:

- the median width of the 95% intervals of a, alpha, beta and E, and how often they hold the truth;
- the share of studies whose E is identified, by Approach 3's own rules (``identification_warnings``,
  ``local_optima_warnings``, ``bootstrap_warnings``: E not marked ``unidentified``);
- each approach's bias, the median of its estimates minus the truth (the median, because the few fits
  that run to a bound would dominate a mean), and its bias on noise-free losses, which is the design's
  own: Approach 2's where the IsoFLOP sizes are not centred on the optimum;
- for two arms, the power to detect a compute multiplier m, and the smallest m detected with 80% power.

A compute multiplier m makes an arm reach at compute C the loss the baseline reaches at m C, all along
the compute-optimal frontier: its law is the baseline's with A and B divided by m^(alpha beta /
(alpha + beta)). The multiplier is estimated at the designs' largest compute, from the two fitted laws,
and detected when its 95% bootstrap interval (both arms' resamples, paired in order) lies above 1.
"""

from __future__ import annotations

import os
import time

import numpy as np

from workflow.fit.approach2 import approach2_arrays
from workflow.fit.approach3 import (
    PARAM_NAMES,
    bootstrap_warnings,
    identification_warnings,
    local_optima_warnings,
    predict_approach3,
)
from workflow.fit.lse_batch import residuals
from workflow.fit.primitives import FitError
from workflow.fit.variant import FREE
from workflow.simulate import QUANTITIES, Design, Noise, draw_losses, fit_study, truth_of

# The multipliers the power search tries, ascending; the smallest detected with 80% power is reported.
MULTIPLIERS = (1.05, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
POWER = 0.8
Z_95, Z_80 = 1.959964, 0.841621  # two-sided 95% test, 80% power: the linearised screen's normal quantiles


def flops_per_nd(design: Design) -> float:
    """The design's FLOPs per parameter and token (6 under '6N' with N counting what the FLOPs count)."""
    return float(np.median(design.flops / (design.params * design.tokens)))


def approach2_a(design: Design, loss: np.ndarray) -> float | None:
    """Approach 2's a on one study's losses, or None where it cannot be fitted (fewer than 2 budgets
    with a minimum inside their sizes)."""
    if not np.isfinite(design.budgets).any():
        return None
    try:
        law = approach2_arrays(design.budgets, np.log(design.params), np.log(design.tokens), loss, flops_per_nd(design))
    except FitError:
        return None
    return float(law["a"])


def unidentified(design: Design, loss: np.ndarray, fitted: dict) -> list[str]:
    """The parameters Approach 3's own rules mark ``unidentified`` on this fit: E sent to zero or a flat
    term (the best optimum), another optimum nearly as good with another law, an interval reaching 0."""
    theta = fitted["theta"]
    a, b, e, alpha, beta = map(float, theta)
    optima = fitted["local_optima"]
    section = {
        "E": float(np.exp(e)),
        "A": float(np.exp(a)),
        "B": float(np.exp(b)),
        "alpha": alpha,
        "beta": beta,
        "free_parameters": FREE.free_parameters,
        "objective": optima[0][1],
        "log_params": dict(zip(PARAM_NAMES, map(float, theta))),
        "local_optima": [{"log_params": dict(zip(PARAM_NAMES, map(float, t))), "objective": v} for t, v in optima],
        "unidentified": [],
    }
    identification_warnings(section, design.params, design.tokens, loss)
    local_optima_warnings(section, FREE)
    bootstrap_warnings(section, fitted["intervals"])
    return section["unidentified"]


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def simulate(
    design: Design,
    law: dict,
    noise: Noise,
    *,
    studies: int,
    samples: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """``studies`` simulated studies of ``design`` drawn from ``law`` with ``noise``, each fitted with
    ``samples`` bootstrap resamples over training runs: the figures of the module docstring."""
    from tqdm import tqdm

    start, cpu = time.perf_counter(), cpu_seconds()
    rng = np.random.default_rng(seed)
    truth = truth_of(law)
    clean = predict_approach3(law, design.params, design.tokens)
    noise_free = fit_study(design, clean, np.random.default_rng(seed), samples=2)["estimate"]
    noise_free_a2 = approach2_a(design, clean)
    widths = {q: [] for q in QUANTITIES}
    estimates = {q: [] for q in QUANTITIES}
    hits = {q: 0 for q in QUANTITIES}
    identified, approach2 = 0, []
    for _ in tqdm(range(studies), desc="simulated studies", unit="study", disable=not progress):
        loss = draw_losses(design, law, noise, rng)
        fitted = fit_study(design, loss, rng, samples=samples)
        for q in QUANTITIES:
            low, high = fitted["intervals"][q]
            widths[q].append(high - low)
            estimates[q].append(fitted["estimate"][q])
            hits[q] += int(low <= truth[q] <= high)
        identified += "E" not in unidentified(design, loss, fitted)
        approach2.append(approach2_a(design, loss))
    fitted2 = [a for a in approach2 if a is not None]
    return {
        "studies": studies,
        "samples": samples,
        "seed": seed,
        "points": int(len(design.params)),
        "training_runs": int(len(np.unique(design.units))),
        "truth": truth,
        "noise": {"sd": noise.sd, "run_correlation": noise.run_correlation, "source": noise.source},
        "width": {q: float(np.median(widths[q])) for q in QUANTITIES},
        "coverage": {q: hits[q] / studies for q in QUANTITIES},
        "E_identified": identified / studies,
        "bias": {
            "approach3": {q: float(np.median(estimates[q]) - truth[q]) for q in QUANTITIES},
            "approach2": {
                "a": float(np.median(fitted2) - truth["a"]) if fitted2 else None,
                "fitted": len(fitted2) / studies,
            },
        },
        "noise_free_bias": {
            "approach3": {"a": noise_free["a"] - truth["a"]},
            "approach2": {"a": None if noise_free_a2 is None else noise_free_a2 - truth["a"]},
        },
        "seconds": time.perf_counter() - start,
        "cpu_seconds": cpu_seconds() - cpu,
    }


# --------------------------------------------------------------------------- arms and multipliers


def arm_law(law: dict, multiplier: float) -> dict:
    """The law of an arm that reaches at compute C the baseline's loss at ``multiplier`` C, all along the
    compute-optimal frontier: A and B divided by multiplier^(alpha beta / (alpha + beta))."""
    shrink = multiplier ** (-law["alpha"] * law["beta"] / (law["alpha"] + law["beta"]))
    return law | {"A": law["A"] * shrink, "B": law["B"] * shrink}


def frontier_of(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E, R and gamma of rows of theta = (a, b, e, alpha, beta) such that the law's loss at its
    compute-optimal allocation (eq. 4 on C = k N D) is E + R (C/k)^-gamma, gamma = alpha beta/(alpha+beta)."""
    theta = np.atleast_2d(theta)
    a, b, e, alpha, beta = (theta[:, i] for i in range(5))
    log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
    reducible = np.exp(a - alpha * log_g) + np.exp(b + beta * log_g)
    return np.exp(e), reducible, alpha * beta / (alpha + beta)


def log_multiplier(base: np.ndarray, arm: np.ndarray, flops: float, k: float) -> np.ndarray:
    """log of the compute the baseline needs to reach the arm's compute-optimal loss at ``flops``, over
    ``flops``; +inf where the arm's loss is below the baseline's floor. Rows of theta, paired."""
    e0, r0, g0 = frontier_of(base)
    e1, r1, g1 = frontier_of(arm)
    target = e1 + r1 * (flops / k) ** -g1
    with np.errstate(invalid="ignore", divide="ignore"):
        needed = np.log(k) - np.log((target - e0) / r0) / g0
    return np.where(target > e0, needed - np.log(flops), np.inf)


def multiplier_power(
    designs: list[Design],
    law: dict,
    noise: Noise,
    multiplier: float,
    *,
    studies: int,
    samples: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """The share of simulated studies of two arms (``designs[0]``, the baseline, drawn from ``law``;
    ``designs[1]`` from ``arm_law(law, multiplier)``) whose 95% bootstrap interval of the multiplier lies
    above 1. The same seed gives every multiplier the same noise, so that power rises with it smoothly."""
    from tqdm import tqdm

    base, arm = designs[0], designs[1]
    rng = np.random.default_rng(seed)
    flops = float(max(base.flops.max(), arm.flops.max()))
    k = flops_per_nd(base)
    laws = (law, arm_law(law, multiplier))
    detected = 0
    for _ in tqdm(range(studies), desc=f"arms at x{multiplier:g}", unit="study", disable=not progress):
        fits = [fit_study(d, draw_losses(d, lw, noise, rng), rng, samples=samples) for d, lw in zip((base, arm), laws)]
        pairs = min(len(fits[0]["refits"]), len(fits[1]["refits"]))
        if pairs < 2:
            continue
        drawn = log_multiplier(fits[0]["refits"][:pairs], fits[1]["refits"][:pairs], flops, k)
        detected += int(np.percentile(drawn, 2.5) > 0)
    return detected / studies


def smallest_multiplier(
    designs: list[Design],
    law: dict,
    noise: Noise,
    *,
    studies: int,
    samples: int = 100,
    seed: int = 0,
    power: float = POWER,
    multipliers: tuple[float, ...] = MULTIPLIERS,
    progress: bool = True,
) -> dict:
    """The smallest of ``multipliers`` detected with ``power``, by bisection over them (power rises with
    the multiplier), and the power found at each one tried; None when even the largest falls short.

    ``designs`` is a list of arms (each a Design): a study's baseline arm and another (their own sizes),
    or, for a study without arms, its one design twice (an arm costs what the study costs)."""
    tried: dict[float, float] = {}
    low, high = 0, len(multipliers) - 1
    while low <= high:
        middle = (low + high) // 2
        m = multipliers[middle]
        tried[m] = multiplier_power(
            designs, law, noise, m, studies=studies, samples=samples, seed=seed, progress=progress
        )
        if tried[m] >= power:
            high = middle - 1
        else:
            low = middle + 1
    found = multipliers[low] if low < len(multipliers) else None
    return {
        "multiplier": found,
        "power": power,
        "studies": studies,
        "tried": {f"{m:g}": p for m, p in sorted(tried.items())},
    }


# --------------------------------------------------------------------------- linearised screen


def parameter_covariance(design: Design, law: dict, noise: Noise) -> np.ndarray:
    """The sandwich covariance of theta = (log A, log B, log E, alpha, beta) for least squares in log
    loss at the true law, with the noise's covariance (shared within a run): a fast, approximate stand-in
    for the simulation, used only to rank designs before they are simulated."""
    theta = np.array([[np.log(law["A"]), np.log(law["B"]), np.log(law["E"]), law["alpha"], law["beta"]]])
    log_x = np.stack([np.log(design.params), np.log(design.tokens)])
    loss = predict_approach3(law, design.params, design.tokens)
    _, jac = residuals(theta, log_x, np.log(loss))
    jac = jac[0]
    same_run = design.units[:, None] == design.units[None, :]
    cov_loss = noise.sd**2 * np.where(same_run, noise.run_correlation, 0.0) + np.diag(
        np.full(len(loss), noise.sd**2 * (1 - noise.run_correlation))
    )
    cov_log = cov_loss / np.outer(loss, loss)
    bread = np.linalg.pinv(jac.T @ jac)
    return bread @ jac.T @ cov_log @ jac @ bread


def linearised(designs: list[Design], law: dict, noise: Noise) -> dict:
    """The screen's figures: the 95% interval width of a (first design), and the multiplier detected
    with 80% power between two arms of these designs (the first and the last; both the first when one)."""
    cov = parameter_covariance(designs[0], law, noise)
    total = law["alpha"] + law["beta"]
    gradient = np.array([0, 0, 0, -law["beta"] / total**2, law["alpha"] / total**2])
    width = 2 * Z_95 * float(np.sqrt(max(gradient @ cov @ gradient, 0.0)))
    flops = float(max(d.flops.max() for d in designs))
    k = flops_per_nd(designs[0])
    theta = np.array([np.log(law["A"]), np.log(law["B"]), np.log(law["E"]), law["alpha"], law["beta"]])
    # d log m / d theta of either arm at m = 1, by central differences.
    step = 1e-5
    grad_m = np.zeros(5)
    for i in range(5):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        grad_m[i] = (log_multiplier(theta, up, flops, k)[0] - log_multiplier(theta, down, flops, k)[0]) / (2 * step)
    variance = sum(grad_m @ parameter_covariance(d, law, noise) @ grad_m for d in (designs[0], designs[-1]))
    return {"a_width": width, "multiplier": float(np.exp((Z_95 + Z_80) * np.sqrt(max(variance, 0.0))))}
