"""The data-constrained law of Muennighoff et al. 2023 (docs/methods.md, "The data-constrained law").

Runs that repeat their data (epochs > 1) get less from each repeated token,
and models larger than the data warrant get less from each excess parameter:

    L = E + A / N'^alpha + B / D'^beta
    D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D)),  R_D = max(D / U_D - 1, 0)
    N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)),  R_N = max(N / U_N - 1, 0)
    U_N = min(N_opt(U_D), N)

U_D is the run's unique tokens, N_opt(U_D) the compute-optimal model size for
U_D tokens under the single-epoch law. The fit follows the paper's two steps:
the single-epoch law (Approach 3's form and variant) on the runs of at most
one epoch, then R*_D and R*_N on every run with that law held. Step 2 is a
two-parameter Huber fit of log loss in log R*, by L-BFGS-B within bounds from
a grid of starts; its objective has more than one optimum on real runs, so
the distinct optima are kept and compared like Approach 3's.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from scipy.optimize import minimize

from workflow.fit.approach import Approach, Prepared, Resample, Study
from workflow.fit.approach3 import DIFFERENT_PARAMETER, NEAR_OBJECTIVE, PARAM_NAMES, fit_approach3
from workflow.fit.approach3 import bootstrap_warnings as law_bootstrap_warnings
from workflow.fit.lse import LBFGS_OPTIONS, distinct_optima, huber, huber_grad, log_sum_exp
from workflow.fit.primitives import FitError

LAW_KEYS = ("E", "A", "B", "alpha", "beta")
# log R* is searched within these bounds (R* from 1e-3 to 1e6 repetitions); an optimum or interval at a
# bound is reported as such. The starts: R* in {0.1, 1, 10, 100, 1000} for each of R*_D, R*_N.
LOG_R_BOUNDS = (np.log(1e-3), np.log(1e6))
STARTS = np.array(list(itertools.product(np.log([0.1, 1, 10, 100, 1000]), repeat=2)))
SINGLE_EPOCH = 1.0 + 1e-9  # epochs up to this count as one (tokens / unique tokens rounds)
FORM = (
    "L = E + A / N'^alpha + B / D'^beta, D' = U_D (1 + R*_D (1 - exp(-R_D / R*_D))), "
    "N' = U_N (1 + R*_N (1 - exp(-R_N / R*_N))), U_N = min(N_opt(U_D), N)"
)


def repetitions(law: dict, params, tokens, unique_tokens) -> dict[str, np.ndarray]:
    """U_N, R_N and R_D of each run under the single-epoch ``law`` (its allocation gives N_opt(U_D))."""
    params, tokens, unique = (np.asarray(v, float) for v in (params, tokens, unique_tokens))
    flops_for_unique = (unique / law["k_d"]) ** (1 / law["b"])  # D_opt(C) = U_D, solved for C
    unique_params = np.minimum(law["k_n"] * flops_for_unique ** law["a"], params)
    return {
        "unique_params": unique_params,
        "r_n": np.maximum(params / unique_params - 1, 0.0),
        "r_d": np.maximum(tokens / unique - 1, 0.0),
        "unique_tokens": unique,
    }


def effective(unique, repeats, log_r_star):
    """U (1 + R* (1 - exp(-R / R*))) and its derivative by log R*."""
    r_star = np.exp(log_r_star)
    decay = np.exp(-repeats / r_star)
    value = unique * (1 + r_star * (1 - decay))
    # d/d log R* of R* (1 - exp(-R/R*)) = R* (1 - exp(-R/R*)) - R exp(-R/R*)
    return value, unique * (r_star * (1 - decay) - repeats * decay)


def objective(log_r_star: np.ndarray, law: dict, runs: dict, log_loss: np.ndarray, delta: float):
    """Sum of Huber losses of log-loss residuals at (log R*_D, log R*_N), and its gradient."""
    d_eff, d_grad = effective(runs["unique_tokens"], runs["r_d"], log_r_star[0])
    n_eff, n_grad = effective(runs["unique_params"], runs["r_n"], log_r_star[1])
    terms = np.stack(
        [
            np.log(law["A"]) - law["alpha"] * np.log(n_eff),
            np.log(law["B"]) - law["beta"] * np.log(d_eff),
            np.full_like(n_eff, np.log(law["E"])),
        ]
    )
    lse, weights = log_sum_exp(terms)
    residual = lse - log_loss
    g = huber_grad(residual, delta)
    grad = np.array(
        [
            -np.sum(g * weights[1] * law["beta"] * d_grad / d_eff),
            -np.sum(g * weights[0] * law["alpha"] * n_grad / n_eff),
        ]
    )
    return float(np.sum(huber(residual, delta))), grad


def predict(section: dict, params, tokens, unique_tokens) -> np.ndarray:
    """The data-constrained law's loss for runs of ``params``, ``tokens`` and ``unique_tokens``."""
    runs = repetitions(section["single_epoch"], params, tokens, unique_tokens)
    d_eff, _ = effective(runs["unique_tokens"], runs["r_d"], np.log(section["R_D_star"]))
    n_eff, _ = effective(runs["unique_params"], runs["r_n"], np.log(section["R_N_star"]))
    law = section["single_epoch"]
    return law["E"] + law["A"] / n_eff ** law["alpha"] + law["B"] / d_eff ** law["beta"]


def fit_decay(law: dict, params, tokens, unique_tokens, loss, *, delta: float, starts=STARTS) -> list:
    """Step 2: the distinct optima of (log R*_D, log R*_N) with ``law`` held, best first."""
    runs = repetitions(law, params, tokens, unique_tokens)
    log_loss = np.log(np.asarray(loss, float))
    results = [
        minimize(
            objective,
            start,
            args=(law, runs, log_loss, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=[LOG_R_BOUNDS] * 2,
            options=LBFGS_OPTIONS,
        )
        for start in starts
    ]
    return distinct_optima([r for r in results if np.isfinite(r.fun)], keep=5)


def split(study: Study) -> tuple[np.ndarray, np.ndarray]:
    """The runs' unique tokens and which of them are single-epoch; FitError when nothing repeats data."""
    if "unique_tokens" not in study.table.columns:
        raise FitError("no unique_tokens column: every run is taken to see each token once")
    unique = study.table["unique_tokens"].cast(float).to_numpy()
    if not np.all(np.isfinite(unique) & (unique > 0)):
        raise FitError("unique_tokens must hold positive, finite numbers for every run")
    # A run shorter than its corpus (unique_tokens, in the pipeline the training split's size) sees only
    # as many unique tokens as it trains on: the normal single-epoch case, not a data error.
    unique = np.minimum(unique, study.tokens)
    single = study.tokens <= unique * SINGLE_EPOCH
    if single.all():
        raise FitError("no run repeats its data (every run is of one epoch or less)")
    return unique, single


def decay_warnings(optima: list, r_star: dict) -> list[str]:
    """An R* at its search bound, and another optimum within NEAR_OBJECTIVE whose R* differ."""
    warnings = []
    for name, value in r_star.items():
        if min(abs(np.log(value) - b) for b in LOG_R_BOUNDS) < 1e-6:
            warnings.append(f"{name} is not identified: the fit sends it to the bound of its search, {value:.3g}")
    best, rivals = optima[0], []
    for other in optima[1:]:
        gap = other.fun / best.fun - 1 if best.fun > 0 else np.inf
        if gap <= NEAR_OBJECTIVE and np.any(np.exp(np.abs(other.x - best.x)) > 1 + DIFFERENT_PARAMETER):
            rivals.append((gap, other))
    if rivals:
        listed = ", ".join(f"({np.exp(o.x[0]):.4g}, {np.exp(o.x[1]):.4g})" for _, o in rivals)
        warnings.append(
            f"other optima fit within {100 * max(g for g, _ in rivals):.2g}% of the best objective with different "
            f"R*_D, R*_N: {listed}, against the best ({r_star['R_D_star']:.4g}, {r_star['R_N_star']:.4g}); "
            f"the data do not choose between them"
        )
    return warnings


def fit(study: Study) -> dict:
    """Step 1 on the single-epoch runs (Approach 3 in the study's variant), then step 2 on every run."""
    t0 = time.perf_counter()
    unique, single = split(study)
    try:
        law = fit_approach3(
            study.params[single],
            study.tokens[single],
            study.loss[single],
            delta=study.delta,
            refine=study.refine,
            variant=study.variant,
        )
    except FitError as e:
        raise FitError(f"the single-epoch law (step 1, {int(single.sum())} runs) could not be fitted: {e}") from None
    optima = fit_decay(law, study.params, study.tokens, unique, study.loss, delta=study.delta)
    if not optima:
        raise FitError("R*_D and R*_N could not be fitted (the objective is not finite)")
    best = optima[0]
    r_star = {"R_D_star": float(np.exp(best.x[0])), "R_N_star": float(np.exp(best.x[1]))}
    single_epoch = {k: law[k] for k in (*LAW_KEYS, "a", "b", "k_n", "k_d", "G")}
    return {
        "form": FORM,
        "single_epoch_form": law["form"],
        "single_epoch": single_epoch,
        **{k: law[k] for k in LAW_KEYS},
        **r_star,
        "objective": float(best.fun),
        "single_epoch_objective": law["objective"],
        "single_epoch_runs": int(single.sum()),
        "runs": int(len(study.loss)),
        "repeated_runs": int((~single).sum()),
        "free_parameters": law["free_parameters"],
        "log_params": law["log_params"],
        "local_optima": [
            {"objective": float(r.fun), "R_D_star": float(np.exp(r.x[0])), "R_N_star": float(np.exp(r.x[1]))}
            for r in optima
        ],
        "warnings": [f"single-epoch law: {w}" for w in law["warnings"]] + decay_warnings(optima, r_star),
        "seconds": time.perf_counter() - t0,
    }


def prepare(study: Study, section: dict, rng: np.random.Generator, samples: int, options: dict) -> Prepared:
    """Refits start step 1 from the full fit's law and step 2 from its distinct optima of R*."""
    unique, single = split(study)
    shared = {
        "unique": unique,
        "single": single,
        "law_start": np.array([[section["log_params"][k] for k in PARAM_NAMES]]),
        "variant": study.variant,
        "decay_starts": np.log([[o["R_D_star"], o["R_N_star"]] for o in section["local_optima"]]),
    }
    return Prepared(shared=shared)


def refit(resample: Resample) -> dict:
    shared, rows = resample.shared, resample.rows
    single = shared["single"][rows]
    params, tokens, loss = (resample.column(c) for c in ("params", "tokens", "loss"))
    unique = shared["unique"][rows]
    law = fit_approach3(
        params[single],
        tokens[single],
        loss[single],
        delta=resample.delta,
        starts=shared["law_start"],
        refine=None,
        variant=shared["variant"],
    )
    optima = fit_decay(law, params, tokens, unique, loss, delta=resample.delta, starts=shared["decay_starts"])
    if not optima:
        raise FitError("R* not fitted")
    fixed = [name for name, _ in shared["variant"].fixed]
    values = {k: law[k] for k in LAW_KEYS if k not in fixed}
    return values | {"R_D_star": float(np.exp(optima[0].x[0])), "R_N_star": float(np.exp(optima[0].x[1]))}


def bootstrap_warnings(section: dict, intervals: dict) -> list[str]:
    """The single-epoch law's interval warnings, and an R* interval that reaches a search bound or spans 10x."""
    warnings = law_bootstrap_warnings(section, intervals)
    for name in ("R_D_star", "R_N_star"):
        if name not in intervals:
            continue
        low, high = intervals[name]
        bounds = np.exp(LOG_R_BOUNDS)
        if low <= bounds[0] * (1 + 1e-6) or high >= bounds[1] * (1 - 1e-6):
            warnings.append(
                f"{name} is not identified: its 95% bootstrap interval [{low:.3g}, {high:.3g}] reaches the "
                f"bound of its search ({bounds[0]:g} to {bounds[1]:g})"
            )
        elif high > 10 * low:
            warnings.append(
                f"{name} is poorly identified: its 95% bootstrap interval [{low:.3g}, {high:.3g}] spans "
                f"{high / low:.3g} times, more than an order of magnitude"
            )
    return warnings


def summary(section: dict, show) -> str:
    return (
        f"R*_D={show('R_D_star')} R*_N={show('R_N_star')} on {section['runs']} runs "
        f"({section['repeated_runs']} repeating data), single-epoch law on {section['single_epoch_runs']} runs: "
        f"E={show('E')} A={show('A')} B={show('B')} alpha={show('alpha')} beta={show('beta')}"
    )


APPROACH = Approach(
    name="data_constrained",
    title="Data-constrained law",
    required=False,
    fit=fit,
    prepare=prepare,
    refit=refit,
    summary=summary,
    parameters=("R_D_star", "R_N_star", "E", "A", "B", "alpha", "beta"),
    bootstrap_warnings=bootstrap_warnings,
)
