"""The sensitivity panel: Approach 3 (and Approach 2's a) refitted under the other reasonable choices of
a study's analysis, following the checklist of Li et al. 2025, "(Mis)Fitting: a survey of scaling laws"
(docs/methods.md, "Sensitivity panel").

The choices: what N counts (non-embedding, with the head, every parameter; Pearce & Song 2024 and Porian
et al. 2024 trace Kaplan's and Chinchilla's different exponents to it), the FLOP convention of the compute
axis, the loss of the fit (Huber delta 1e-3 and 1e-1, least squares in log), and the design without its
smallest shape or its smallest budget. An exponent whose spread over the choices is wider than its
bootstrap interval depends more on the analysis than on the noise: a warning says so.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from workflow.fit.approach import Approach, Study
from workflow.fit.approach2 import approach2_arrays
from workflow.fit.approach3 import PARAM_NAMES, fit_approach3, hoffmann_grid, law_of
from workflow.fit.lse import best_starts
from workflow.fit.lse_batch import best_of
from workflow.fit.primitives import FitError

EXPONENTS = ("alpha", "beta", "a", "E")
REFINE = 10  # grid starts refined per refit, besides the full fit's optima
LEAST_SQUARES_DELTA = 1e3  # a Huber delta no log residual reaches: least squares


def parameter_columns(table: pl.DataFrame) -> dict[str, pl.Series]:
    """N under each count the table holds (collect's columns)."""
    counts = {}
    if "params_non_embedding" in table.columns:
        counts["non_embedding"] = table["params_non_embedding"]
        if "params_head" in table.columns:
            counts["with_head"] = table["params_non_embedding"] + table["params_head"]
    if "params_total" in table.columns:
        counts["total"] = table["params_total"]
    return counts


def choices(study: Study) -> list[tuple[str, str, dict]]:
    """(group, label, changes) for each refit: changes hold params, flops, delta or a row mask."""
    table, out = study.table, []
    for name, column in parameter_columns(table).items():
        out.append(("parameter count", f"N = {name.replace('_', '-')} parameters", {"params": column.to_numpy()}))
    for convention in ("kaplan", "6N", "palm", "chinchilla"):
        if f"flops_{convention}" in table.columns:
            flops = table[f"flops_{convention}"].to_numpy().astype(float)
            out.append(("FLOP convention", f"C = {convention} FLOPs", {"flops": flops}))
    out.append(("loss", "Huber delta 1e-3", {"delta": 1e-3}))
    out.append(("loss", "Huber delta 1e-1", {"delta": 1e-1}))
    out.append(("loss", "least squares in log", {"delta": LEAST_SQUARES_DELTA}))
    out.append(("design", "without the smallest shape", {"keep": study.params > study.params.min()}))
    if "compute_budget" in table.columns and table["compute_budget"].drop_nulls().len():
        budget = study.budgets()
        smallest = np.nanmin(budget)
        out.append(("design", f"without the smallest budget (C = {smallest:.3g})", {"keep": ~(budget == smallest)}))
    else:
        out.append(("design", "without the smallest token budget", {"keep": study.tokens > study.tokens.min()}))
    return out


def refit(study: Study, starts: np.ndarray, changes: dict) -> dict:
    params = np.asarray(changes.get("params", study.params), float)
    flops = np.asarray(changes.get("flops", study.flops), float)
    keep = changes.get("keep", np.ones(len(params), bool))
    delta = changes.get("delta", study.delta)
    k = float(np.median(flops[keep] / (params[keep] * study.tokens[keep])))
    if study.variant.reparametrisation() is None:  # the free law: its starts minimised at once
        log_x = np.stack([np.log(params[keep]), np.log(study.tokens[keep])])
        log_loss = np.log(study.loss[keep])
        theta, _ = best_of(best_starts(starts, REFINE, log_x, log_loss, delta), log_x, log_loss, delta)
        if not (theta[3] > 0 and theta[4] > 0):
            raise FitError(f"a non-positive exponent (alpha={theta[3]:.3g}, beta={theta[4]:.3g})")
        law = law_of(theta, k)
    else:
        law = fit_approach3(
            params[keep],
            study.tokens[keep],
            study.loss[keep],
            delta=delta,
            starts=starts,
            refine=REFINE,
            variant=study.variant,
            flops_per_nd=k,
        )
    row = {name: float(law[name]) for name in EXPONENTS}
    try:
        budget = study.budgets()
        budget = np.where(keep, budget, np.nan)
        # Each IsoFLOP budget on this compute axis: the mean compute of its runs.
        axis = {b: float(flops[budget == b].mean()) for b in np.unique(budget[np.isfinite(budget)])}
        on_axis = np.array([axis.get(b, np.nan) for b in budget])
        row["approach2_a"] = approach2_arrays(on_axis, np.log(params), np.log(study.tokens), study.loss, k)["a"]
    except FitError:
        row["approach2_a"] = None
    return row


def fit(study: Study) -> dict:
    base = study.fits.get("approach3") or {}
    if "log_params" not in base:
        raise FitError("Approach 3 was not fitted")
    optima = [[o["log_params"][k] for k in PARAM_NAMES] for o in base.get("local_optima", [])]
    starts = np.vstack([np.array(optima).reshape(-1, 5), hoffmann_grid()])
    rows = []
    for group, label, changes in choices(study):
        try:
            rows.append({"group": group, "choice": label, **refit(study, starts, changes)})
        except FitError as e:
            rows.append({"group": group, "choice": label, "skipped": str(e)})
    spreads = {}
    for name in (*EXPONENTS, "approach2_a"):
        values = [r[name] for r in rows if r.get(name) is not None]
        if len(values) >= 2:
            spreads[name] = {"low": min(values), "high": max(values), "spread": max(values) - min(values)}
    return {"choices": rows, "spreads": spreads, "warnings": []}


def compare_with_intervals(fits: dict) -> None:
    """After the bootstrap: each exponent's spread beside its 95% interval's width, warned where wider."""
    section = fits.get("sensitivity") or {}
    intervals = ((fits.get("bootstrap") or {}).get("intervals") or {}).get("approach3", {})
    a2 = ((fits.get("bootstrap") or {}).get("intervals") or {}).get("approach2", {})
    if "spreads" not in section:
        return
    for name, spread in section["spreads"].items():
        interval = a2.get("a") if name == "approach2_a" else intervals.get(name)
        if not interval:
            continue
        spread["bootstrap_width"] = interval[1] - interval[0]
        if spread["spread"] > spread["bootstrap_width"]:
            shown = "Approach 2's a" if name == "approach2_a" else name
            width = spread["bootstrap_width"]
            section["warnings"].append(
                f"{shown} moves by {spread['spread']:.2g} (from {spread['low']:.3g} to {spread['high']:.3g}) "
                f"across the analysis choices, more than its 95% bootstrap interval is wide ({width:.2g}): "
                f"it depends more on how the study is analysed than on its noise"
            )


def summary(section: dict, show) -> str:
    parts = [f"{name} {s['low']:.3g} to {s['high']:.3g}" for name, s in section["spreads"].items()]
    return f"{len(section['choices'])} choices: " + ", ".join(parts)


APPROACH = Approach(name="sensitivity", title="Sensitivity panel", required=False, fit=fit, summary=summary)
