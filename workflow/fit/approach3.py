"""Approach 3: the parametric law L(N, D) = E + A/N^alpha + B/D^beta (docs/methods.md, "Approach 3").

Fitted by the shared log-sum-exp/Huber fitter (lse.py, m = 2) from the best of
Hoffmann et al.'s 4500 starts. The law's compute-optimal allocation (their
eq. 4) is written in the common form N_opt = k_N C^a, D_opt = k_D C^b so that
it is predicted and compared like every other approach's. A bootstrap refit
starts from the full fit's distinct optima, which lie next to a resample's own
and converge in a few dozen iterations; the first few resamples are checked
against a fresh grid search.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from workflow.fit.allocation import ALLOCATION_FORM, allocate
from workflow.fit.approach import Approach, Prepared, Resample, Study
from workflow.fit.lse import best_starts, fit_lse, minimise_from
from workflow.fit.primitives import HUBER_DELTA, FitError
from workflow.fit.variant import FREE, FREE_FORM, Variant

PARAM_NAMES = ("a", "b", "e", "alpha", "beta")  # theta of lse.py with m = 2
KEEP_OPTIMA = 5  # distinct optima kept: the bootstrap starts from the first 3, the warnings look at all
BOOTSTRAP_STARTS = 3
# Identification thresholds (docs/methods.md, "Identification warnings").
NEAR_OBJECTIVE = 0.01  # another optimum within 1% of the best objective ...
DIFFERENT_PARAMETER = 0.1  # ... whose E, alpha or beta differs by more than 10% is a warning
BOUND_FRACTION = 0.01  # an interval whose lower end is below 1% of the value reaches the bound 0
INTERVAL_SPAN = 10.0  # an interval whose ends differ more than 10 times spans an order of magnitude


def hoffmann_grid() -> np.ndarray:
    """Hoffmann et al.'s 4500 starts, as rows (a, b, e, alpha, beta)."""
    alphas = betas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = bs = np.arange(0.0, 25.1, 5.0)
    return np.array([(a, b, e, al, be) for a, b, e, al, be in itertools.product(abs_, bs, es, alphas, betas)])


def law_of(theta, flops_per_nd: float = 6.0) -> dict:
    """E, A, B, alpha, beta and the eq.-4 allocation on C = k N D from theta = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = map(float, theta)
    law = {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": alpha, "beta": beta}
    return law | eq4_allocation(alpha, beta, law["A"], law["B"], flops_per_nd)


def exponents_of(theta) -> dict:
    """E, alpha and beta from theta, without the allocation (which an optimum at a bound may not have)."""
    _a, _b, e, alpha, beta = map(float, theta)
    return {"E": float(np.exp(e)), "alpha": alpha, "beta": beta}


def eq4_allocation(alpha: float, beta: float, A: float, B: float, flops_per_nd: float = 6.0) -> dict:
    """Hoffmann et al.'s eq. 4 (minimum of the law under C = k N D; k = 6 in their paper) as
    N_opt = k_n C^a, D_opt = k_d C^b: N_opt = G (C/k)^a and D_opt = G^-1 (C/k)^b, so k_n = G k^-a and
    k_d = G^-1 k^-b, and k N_opt D_opt = C exactly."""
    k = float(flops_per_nd)
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    if not (np.isfinite(G) and G > 0):  # a term at 0 or overflowing: no finite optimum to allocate to
        raise FitError(f"the law has no finite compute-optimal allocation (G = {G:.3g})")
    return {
        "a": float(a),
        "b": float(b),
        "k_n": float(G * k**-a),
        "k_d": float(k**-b / G),
        "G": float(G),
        "flops_per_nd": k,
        "allocation_form": ALLOCATION_FORM + f" (Hoffmann et al. eq. 4 on C = {k:g} N D)",
    }


def predict_approach3(law: dict, params, tokens) -> np.ndarray:
    return (
        law["E"]
        + law["A"] / np.asarray(params, float) ** law["alpha"]
        + law["B"] / np.asarray(tokens, float) ** law["beta"]
    )


def check_fit_data(
    params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, minimum_runs: int, free_count: int = 5
) -> None:
    if len(loss) < minimum_runs:
        raise FitError(
            f"Approach 3 fits {free_count} parameters and needs at least {minimum_runs} completed runs; got {len(loss)}"
        )
    for name, values in (("params", params), ("tokens", tokens), ("loss", loss)):
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise FitError(f"column {name!r} must hold positive, finite numbers")
    if len(np.unique(params)) < 2:
        raise FitError("every run has the same model size: Approach 3 needs at least 2 distinct values of N")
    if len(np.unique(tokens)) < 2:
        raise FitError("every run has the same token count: Approach 3 needs at least 2 distinct values of D")


def mark_unidentified(section: dict, names) -> None:
    """Record parameters the data do not identify (section["unidentified"], sorted), so that the report
    withholds the predictions that depend on them."""
    section["unidentified"] = sorted(set(section.get("unidentified", [])) | set(names))


def identification_warnings(fit: dict, params: np.ndarray, tokens: np.ndarray, loss: np.ndarray) -> list[str]:
    """What the best optimum itself shows: E sent to zero, or a term that hardly changes over the runs.
    The parameters named are marked unidentified in ``fit``."""
    warnings = []
    if "E" in fit["free_parameters"] and fit["E"] < 0.05 * loss.min():
        mark_unidentified(fit, ["E"])
        warnings.append(
            f"E is not identified: the fit sends it to {fit['E']:.3g}, below 5% of the lowest loss "
            f"({loss.min():.3g}); the data show no levelling-off"
        )
    for name, constant, exponent, values in (("N", "A", "alpha", params), ("D", "B", "beta", tokens)):
        term = fit[constant] * np.array([values.min(), values.max()]) ** -fit[exponent]
        if abs(term[0] - term[1]) < 1e-3 * loss.mean():
            mark_unidentified(fit, [constant, exponent])
            warnings.append(
                f"{constant} and {exponent} are not identified: {constant}/{name}^{exponent} changes by "
                f"{abs(term[0] - term[1]):.2g} across the runs' range of {name}, under 0.1% of the loss"
            )
    return warnings


def local_optima_warnings(fit: dict, variant: Variant) -> list[str]:
    """Another optimum nearly as good (objective within NEAR_OBJECTIVE) whose E or exponents differ by more
    than DIFFERENT_PARAMETER (relative): the data do not choose between two laws. The parameters that
    differ are marked unidentified in ``fit``."""
    best = exponents_of(list(fit["log_params"].values()))
    warnings = []
    for optimum in fit["local_optima"][1:]:
        gap = optimum["objective"] / fit["objective"] - 1 if fit["objective"] > 0 else np.inf
        if gap > NEAR_OBJECTIVE:
            continue
        other = exponents_of(list(optimum["log_params"].values()))
        names = [
            name
            for name in ("E", "alpha", "beta")
            if name in variant.free_parameters
            and abs(other[name] - best[name]) > DIFFERENT_PARAMETER * max(abs(best[name]), abs(other[name]))
        ]
        if names:
            mark_unidentified(fit, names)
            differ = ", ".join(f"{name} {best[name]:.4g} against {other[name]:.4g}" for name in names)
            warnings.append(
                f"another optimum fits within {100 * gap:.2g}% of the best objective with a different law "
                f"({differ}): the data do not choose between them"
            )
    return warnings


def bootstrap_warnings(section: dict, intervals: dict) -> list[str]:
    """A free E or exponent whose 95% interval reaches its bound (0), marked unidentified in ``section``,
    or spans more than INTERVAL_SPAN times (poorly identified: its predictions keep their intervals)."""
    warnings = []
    for name in ("E", "alpha", "beta"):
        if name not in section.get("free_parameters", ("E", "alpha", "beta")) or name not in intervals:
            continue
        low, high = intervals[name]
        if low <= 0 or low < BOUND_FRACTION * section[name]:  # a fitted value of 0 too: no span to take
            mark_unidentified(section, [name])
            warnings.append(
                f"{name} is not identified: its 95% bootstrap interval [{low:.3g}, {high:.3g}] reaches its bound, "
                f"0 (the lower end is below {100 * BOUND_FRACTION:g}% of the fitted {section[name]:.4g})"
            )
        elif high > INTERVAL_SPAN * low:
            warnings.append(
                f"{name} is poorly identified: its 95% bootstrap interval [{low:.3g}, {high:.3g}] spans "
                f"{high / low:.3g} times, more than an order of magnitude"
            )
    return warnings


def fit_approach3(
    params: np.ndarray,
    tokens: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    starts: np.ndarray | None = None,
    refine: int | None = 50,
    variant: Variant = FREE,
    flops_per_nd: float = 6.0,
) -> dict:
    """The law fitted to the runs in ``variant``'s form (``starts``: full-theta rows, default Hoffmann's grid);
    its allocation spends C = ``flops_per_nd`` N D."""
    params, tokens, loss = (np.asarray(v, dtype=np.float64) for v in (params, tokens, loss))
    free_count = len(variant.free_parameters)
    check_fit_data(params, tokens, loss, minimum_runs=free_count + 1, free_count=free_count)
    log_x, log_loss = np.stack([np.log(params), np.log(tokens)]), np.log(loss)
    starts = variant.starts(hoffmann_grid() if starts is None else starts)
    reparam = variant.reparametrisation()
    t0 = time.perf_counter()
    optima, refined = fit_lse(log_x, log_loss, starts, refine=refine, delta=delta, reparam=reparam, keep=KEEP_OPTIMA)
    best = optima[0]
    if not (best.x[3] > 0 and best.x[4] > 0):
        raise FitError(
            f"Approach 3 found non-positive exponents (alpha={best.x[3]:.3g}, beta={best.x[4]:.3g}): "
            f"loss does not fall with both N and D in these runs"
        )
    # A fixed parameter is reported as given: its log round trip (exp(log E)) can move it by a rounding.
    fit = (
        law_of(best.x, flops_per_nd)
        | dict(variant.fixed)
        | {
            "form": variant.form,
            "variant": variant.describe(),
            "free_parameters": variant.free_parameters,
            "log_params": dict(zip(PARAM_NAMES, map(float, best.x))),
            "objective": float(best.fun),
            "huber_delta": delta,
            "starts": int(len(starts)),
            "starts_refined": int(refined),
            "runs": int(len(loss)),
            "local_optima": [
                {"objective": float(r.fun), "log_params": dict(zip(PARAM_NAMES, map(float, r.x)))} for r in optima
            ],
            "seconds": time.perf_counter() - t0,
        }
    )
    fit["unidentified"] = []
    fit["warnings"] = identification_warnings(fit, params, tokens, loss) + local_optima_warnings(fit, variant)
    return fit


def fit(study: Study) -> dict:
    return fit_approach3(
        study.params,
        study.tokens,
        study.loss,
        delta=study.delta,
        refine=study.refine,
        variant=study.variant,
        flops_per_nd=study.flops_per_nd,
    )


def prepare(study: Study, section: dict, rng: np.random.Generator, samples: int, options: dict) -> Prepared:
    """Refits start from the full fit's distinct optima (no draws of its own: it refits the run rows); the
    first ``options["verify"]`` resamples are also refitted from the grid (its ``verify_refine`` best starts)."""
    optima = (section.get("local_optima") or [{"log_params": section["log_params"]}])[:BOOTSTRAP_STARTS]
    starts = np.array([[o["log_params"][k] for k in PARAM_NAMES] for o in optima])
    reparam = study.variant.reparametrisation()
    shared = {
        "starts": starts if reparam is None else reparam.free(starts),
        "grid": study.variant.starts(hoffmann_grid()),
        "reparam": reparam,
        "fixed": [name for name, _ in study.variant.fixed],
        "verify": options["verify"],
        "refine": options["verify_refine"],
        "tolerance": 1e-6 * section["objective"] + 1e-12,
    }
    label = "the full fit's distinct local optima" + (f" ({len(starts)})" if len(starts) > 1 else "")
    return Prepared(shared=shared, notes={"starts": label})


def refit(resample: Resample) -> dict:
    """The law on one resample; the first few also from the grid (``_verified``: gap, same optimum)."""
    log_x = np.stack([resample.column("log_n"), resample.column("log_d")])
    log_loss, delta, shared = resample.column("log_loss"), resample.delta, resample.shared
    if len(np.unique(log_x[0])) < 2 or len(np.unique(log_x[1])) < 2:
        raise FitError("a single N or D drawn")
    reparam = shared["reparam"]
    best = minimise_from(shared["starts"], log_x, log_loss, delta, reparam)
    values: dict = {}
    if resample.index < shared["verify"]:
        grid_starts = best_starts(shared["grid"], shared["refine"], log_x, log_loss, delta, reparam)
        grid_best = minimise_from(grid_starts, log_x, log_loss, delta, reparam)
        gap = float(best.fun - grid_best.fun)
        values["_verified"] = (gap, gap <= shared["tolerance"])
        best = grid_best if grid_best.fun < best.fun else best
    if not (best.x[3] > 0 and best.x[4] > 0):
        raise FitError("non-positive exponent")
    law = law_of(best.x, resample.runs["flops_per_nd"])
    law.pop("allocation_form")
    return values | law | {"_no_interval": shared["fixed"]}


def summary(section: dict, show) -> str:
    form = "" if section["form"] == FREE_FORM else f"{section['form']}: "
    return form + (
        f"E={show('E')} A={show('A')} B={show('B')} alpha={show('alpha')} beta={show('beta')} "
        f"a={show('a', 3)} ({section['starts_refined']} of {section['starts']} starts refined)"
    )


def compute_curve(section: dict, flops: np.ndarray) -> np.ndarray:
    """The law's loss at its compute-optimal allocation."""
    point = allocate(section, flops)
    return predict_approach3(section, point["n_opt"], point["d_opt"])


APPROACH = Approach(
    name="approach3",
    title="Approach 3",
    required=True,
    fit=fit,
    prepare=prepare,
    refit=refit,
    summary=summary,
    parameters=("E", "A", "B", "alpha", "beta", "a", "b", "G"),
    allocates=True,
    law=predict_approach3,
    compute_curve=compute_curve,
    bootstrap_warnings=bootstrap_warnings,
)
