"""The backtest: each approach refitted only on runs far below a budget, asked to predict that budget
(docs/methods.md, "Backtest").

For each held-out budget C_h (each IsoFLOP budget; in a table without budgets, its largest fifth of
compute), every approach is refitted on the runs of at most C_h / FACTOR compute, so the prediction
extrapolates at least FACTOR times in compute, as a prediction at a budget past the study does:

- Approach 3 predicts the loss of every held-out point, with a 95% prediction interval (a bootstrap
  of the refit over whole training runs, plus a residual of the refit drawn at random);
- the frontier predicts the lowest loss at C_h, with its interval made the same way;
- Approaches 1 and 2 predict N_opt at C_h, set beside the size of lowest observed loss there.

It reports the signed errors by N and by C, and the share of held-out points inside their intervals.
A fold whose refit cannot be made (too few runs far enough below) is listed with why.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from workflow.fit.approach import Approach, Study
from workflow.fit.approach1 import approach1
from workflow.fit.approach2 import approach2_arrays
from workflow.fit.approach3 import fit_approach3, law_of, predict_approach3
from workflow.fit.frontier import fit_frontier
from workflow.fit.lse import minimise_from
from workflow.fit.lse_batch import refit_many
from workflow.fit.primitives import FitError
from workflow.fit.resampling import unit_rows

FACTOR = 4.0  # the refit's largest compute is at most C_h / FACTOR
SAMPLES = 100  # bootstrap resamples of each refit, for its prediction intervals
REFINE = 20  # Hoffmann-grid starts refined in each fold's refit
SEED = 0


def held_out_budgets(study: Study) -> list[tuple[float, np.ndarray]]:
    """(C_h, mask of the held-out points) per fold."""
    if "compute_budget" in study.table.columns and study.table["compute_budget"].drop_nulls().len():
        budget = study.budgets()
        return [(float(c), budget == c) for c in np.unique(budget[np.isfinite(budget)])]
    threshold = np.quantile(study.flops, 0.8)
    return [(float(study.flops.max()), study.flops >= threshold)]


def interval_of(draws: np.ndarray) -> list[float]:
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def approach3_fold(study: Study, train: np.ndarray, held: np.ndarray, rng: np.random.Generator) -> dict:
    params, tokens, loss = study.params, study.tokens, study.loss
    fit = fit_approach3(
        params[train], tokens[train], loss[train], delta=study.delta, refine=REFINE, variant=study.variant
    )
    predicted = predict_approach3(fit, params[held], tokens[held])
    residuals = np.log(loss[train]) - np.log(predict_approach3(fit, params[train], tokens[train]))
    rows = np.flatnonzero(train)
    log_x, log_loss = np.stack([np.log(params), np.log(tokens)]), np.log(loss)
    start = np.array(list(fit["log_params"].values()))
    samples = [
        rows[s]
        for s in unit_rows(study.units[train], rng, SAMPLES)
        if len(np.unique(params[rows[s]])) >= 2 and len(np.unique(tokens[rows[s]])) >= 2
    ]
    reparam = study.variant.reparametrisation()
    if reparam is None:  # the free law: every resample at once
        thetas = refit_many(start, log_x, log_loss, samples, study.delta)
    else:
        free = reparam.free(start[None])
        thetas = [minimise_from(free, log_x[:, r], log_loss[r], study.delta, reparam).x for r in samples]
    draws = []
    for theta in thetas:
        if not (theta[3] > 0 and theta[4] > 0):  # as the bootstrap: a non-positive exponent is not fitted
            continue
        noise = rng.choice(residuals, size=held.sum())
        draws.append(predict_approach3(law_of(theta), params[held], tokens[held]) * np.exp(noise))
    draws = np.array(draws)
    points = []
    for i, j in enumerate(np.flatnonzero(held)):
        low, high = interval_of(draws[:, i]) if len(draws) >= 2 else (None, None)
        points.append(
            {
                "run_id": study.table["run_id"][int(j)],
                "params": float(params[j]),
                "tokens": float(tokens[j]),
                "flops": float(study.flops[j]),
                "loss": float(loss[j]),
                "predicted": float(predicted[i]),
                "error": float(predicted[i] - loss[j]),
                "interval": [low, high] if low is not None else None,
                "inside": bool(low is not None and low <= loss[j] <= high),
            }
        )
    return {"refit": {k: fit[k] for k in ("E", "A", "B", "alpha", "beta", "a")}, "points": points}


MIN_FRONTIER_RUNS = 3  # a frontier refit on fewer runs has no scatter to make an interval from


def frontier_fold(study: Study, train: np.ndarray, held: np.ndarray, budget: float, rng) -> dict:
    fit = fit_frontier(study.flops[train], study.loss[train])
    if len(fit["frontier_runs"]) < MIN_FRONTIER_RUNS:
        raise FitError(
            f"the frontier below C = {budget / FACTOR:.3g} holds {len(fit['frontier_runs'])} runs; its prediction "
            f"interval needs at least {MIN_FRONTIER_RUNS}"
        )
    observed = float(study.loss[held].min())
    predicted = float(fit["A_C"] * budget ** -fit["gamma"])
    idx = np.flatnonzero(train)[fit["frontier_runs"]]
    residuals = np.log(study.loss[idx]) - np.log(fit["A_C"] * study.flops[idx] ** -fit["gamma"])
    draws = []
    rows = np.flatnonzero(train)
    for sample in unit_rows(study.units[train], rng, SAMPLES):
        try:
            refit = fit_frontier(study.flops[rows[sample]], study.loss[rows[sample]])
        except FitError:
            continue
        draws.append(refit["A_C"] * budget ** -refit["gamma"] * np.exp(rng.choice(residuals)))
    interval = interval_of(np.array(draws)) if len(draws) >= 2 else None
    return {
        "predicted": predicted,
        "observed": observed,
        "error": predicted - observed,
        "interval": interval,
        "inside": bool(interval is not None and interval[0] <= observed <= interval[1]),
    }


def observed_best_size(study: Study, held: np.ndarray) -> float:
    return float(study.params[held][np.argmin(study.loss[held])])


def allocation_fold(study: Study, train: np.ndarray, held: np.ndarray, budget: float) -> dict:
    """Approaches 1 and 2: N_opt at the budget against the size of lowest observed loss."""
    out = {}
    observed = observed_best_size(study, held)
    try:
        budgets = study.budgets()
        law = approach2_arrays(
            np.where(train, budgets, np.nan),
            np.log(study.params),
            np.log(study.tokens),
            study.loss,
            study.flops_per_nd,
        )
        out["approach2"] = allocation_error(law, budget, observed)
    except FitError as e:
        out["approach2"] = {"skipped": str(e)}
    if study.curves is not None and "flops" in study.curves.columns:
        try:
            curves = study.curves.filter(pl.col("flops") <= budget / FACTOR)
            law = approach1(curves)
            out["approach1"] = allocation_error(law, budget, observed)
        except FitError as e:
            out["approach1"] = {"skipped": str(e)}
    return out


def allocation_error(law: dict, budget: float, observed: float) -> dict:
    predicted = float(law["k_n"] * budget ** law["a"])
    return {"n_opt": predicted, "observed_best_n": observed, "log10_error": float(np.log10(predicted / observed))}


def backtest(study: Study) -> dict:
    rng = np.random.default_rng(SEED)
    folds = []
    for budget, held in held_out_budgets(study):
        train = study.flops <= budget / FACTOR
        fold: dict = {
            "compute_budget": budget,
            "held_out": int(held.sum()),
            "runs_fitted": int(train.sum()),
            "largest_fitted_flops": float(study.flops[train].max()) if train.any() else None,
        }
        if train.any():
            fold["extrapolation_factor"] = float(study.flops[held].max() / study.flops[train].max())
        for name in ("approach3", "frontier"):
            try:
                if name == "approach3":
                    fold[name] = approach3_fold(study, train, held, rng)
                else:
                    fold[name] = frontier_fold(study, train, held, budget, rng)
            except FitError as e:
                fold[name] = {"skipped": str(e)}
        fold |= allocation_fold(study, train, held, budget) if train.any() else {}
        folds.append(fold)
    return {"factor": FACTOR, "samples": SAMPLES, "folds": folds, **totals(folds)}


def totals(folds: list[dict]) -> dict:
    """Signed errors and coverage over every fold."""
    points = [p for f in folds for p in (f.get("approach3") or {}).get("points", [])]
    frontier = [f["frontier"] for f in folds if "error" in (f.get("frontier") or {})]
    covered = [p["inside"] for p in points if p["interval"] is not None]
    out: dict = {
        "points_predicted": len(points),
        "approach3_mean_signed_error": float(np.mean([p["error"] for p in points])) if points else None,
        "approach3_mean_absolute_error": float(np.mean([abs(p["error"]) for p in points])) if points else None,
        "approach3_coverage": float(np.mean(covered)) if covered else None,
        "frontier_coverage": float(np.mean([f["inside"] for f in frontier])) if frontier else None,
        "largest_extrapolation_factor": max((f.get("extrapolation_factor", 0) for f in folds), default=None),
    }
    if not points and not frontier:
        raise FitError(
            f"no fold could be refitted: no budget has enough runs at least {FACTOR:g} times below it in compute"
        )
    return out


def fit(study: Study) -> dict:
    section = backtest(study)
    warnings = []
    coverage = section["approach3_coverage"]
    if coverage is not None and coverage < 0.8:
        warnings.append(
            f"the backtest's 95% prediction intervals hold {100 * coverage:.0f}% of the held-out points: "
            f"the law extrapolates worse than its intervals say"
        )
    section["warnings"] = warnings
    return section


def summary(section: dict, show) -> str:
    coverage = section["approach3_coverage"]
    error = section["approach3_mean_signed_error"]
    return (
        f"{len(section['folds'])} folds, {section['points_predicted']} points predicted at least "
        f"{section['factor']:g}x past their refit"
        + (f", mean signed error {error:+.3g}" if error is not None else "")
        + (f", {100 * coverage:.0f}% inside their 95% intervals" if coverage is not None else "")
    )


APPROACH = Approach(name="backtest", title="Backtest", required=False, fit=fit, summary=summary)
