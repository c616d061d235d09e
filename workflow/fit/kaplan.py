"""Kaplan-style laws L(N), L(D), L(C) = E + A x^-alpha (docs/methods.md, "Kaplan laws").

Each is fitted by the shared log-sum-exp/Huber fitter (lse.py, m = 1) from the
best 20 of a small grid, beside the pure power law L = A x^-alpha (no offset),
which tells whether the offset E is identified. Not bootstrapped: three
grid-ranked fits per resample would double the bootstrap's time for numbers
the report does not show with intervals.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize

from workflow.fit.approach import Approach, Study
from workflow.fit.frontier import compute_frontier
from workflow.fit.lse import LBFGS_OPTIONS, fit_lse, huber, huber_grad
from workflow.fit.primitives import HUBER_DELTA, FitError, line_fit

# Starts as rows (a, e, alpha), the theta of lse.py with m = 1.
SATURATING_GRID = np.array(
    list(
        itertools.product(
            np.arange(0.0, 30.1, 2.5), np.arange(-1.0, 2.01, 0.5), (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
        )
    )
)
SATURATING_REFINE = 20


def pure_power_objective(
    theta: np.ndarray, log_x: np.ndarray, log_loss: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber objective of log L = a - alpha log x (no offset) and its gradient; not a log-sum-exp
    law, so it has its own two-line objective."""
    residual = theta[0] - theta[1] * log_x - log_loss
    g = huber_grad(residual, delta)
    return float(np.sum(huber(residual, delta))), np.array([np.sum(g), -np.sum(g * log_x)])


def fit_saturating(x: np.ndarray, loss: np.ndarray, *, variable: str, delta: float = HUBER_DELTA) -> dict:
    """L(x) = E + A x^-alpha (Kaplan et al. 2020's form with an offset), the pure power law beside
    it, and whether E is identified (docs/methods.md)."""
    x, loss = np.asarray(x, float), np.asarray(loss, float)
    distinct = len(np.unique(x))
    if distinct < 4:
        raise FitError(
            f"L({variable}) has 3 parameters and needs runs at 4 or more distinct values of {variable}; got {distinct}"
        )
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0) and np.all(x > 0)):
        raise FitError(f"L({variable}) needs positive, finite {variable} and loss")
    log_x, log_loss = np.log(x), np.log(loss)
    optima, _ = fit_lse(log_x[None], log_loss, SATURATING_GRID, refine=SATURATING_REFINE, delta=delta)
    a, e, alpha = optima[0].x
    objective = optima[0].fun
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
    improvement = 1.0 - objective / pure.fun if pure.fun > 0 else 0.0
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
        "objective": float(objective),
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


def fit(study: Study) -> dict:
    """L(N) on each N's longest-trained run, L(D) on each D's largest model (the runs 'trained
    long enough' / 'large enough' within the grid), and L(C) on the compute frontier. A law that
    cannot be fitted records why."""
    table, out = study.table, {}
    for variable, column, other in (("N", "params", "tokens"), ("D", "tokens", "params")):
        chosen = table.sort(other).group_by(column, maintain_order=True).last().sort(column)
        try:
            law = fit_saturating(
                chosen[column].to_numpy(), chosen["loss"].to_numpy(), variable=variable, delta=study.delta
            )
            law["selection"] = (
                f"for each distinct {variable}, its run with the largest {'D' if variable == 'N' else 'N'}"
            )
            law["run_ids"] = chosen["run_id"].to_list() if "run_id" in chosen.columns else None
            out[f"L_{variable}"] = law
        except FitError as e:
            out[f"L_{variable}"] = {"skipped": str(e)}
    idx = compute_frontier(study.flops, study.loss)
    try:
        law = fit_saturating(study.flops[idx], study.loss[idx], variable="C", delta=study.delta)
        law["selection"] = "the compute frontier (runs below every run of less compute)"
        out["L_C"] = law
    except FitError as e:
        out["L_C"] = {"skipped": str(e)}
    return out


def summary(section: dict, show) -> str:
    return "; ".join(
        f"{k}: "
        + (
            "skipped"
            if "skipped" in v
            else f"alpha={v['alpha']:.3g}" + ("" if v["E_identified"] else " (E not identified)")
        )
        for k, v in section.items()
    )


APPROACH = Approach(name="kaplan", title="Kaplan laws", required=False, fit=fit, summary=summary)
