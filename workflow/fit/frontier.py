"""The compute frontier and its power law L(C) = A_C C^-gamma (docs/methods.md, "Compute frontier").

Required: a study whose frontier holds fewer than 2 compute values stops the fit.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.approach import Approach, Resample, Study
from workflow.fit.primitives import FitError, line_fit


def compute_frontier(flops: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of runs with lower loss than every run of less compute, by compute."""
    order = np.argsort(flops, kind="stable")
    frontier, best = [], np.inf
    for i in order:
        if loss[i] < best:
            frontier.append(int(i))
            best = loss[i]
    return np.array(frontier, dtype=int)


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


def fit(study: Study) -> dict:
    section = fit_frontier(study.flops, study.loss)
    section["frontier_run_ids"] = [study.table["run_id"][i] for i in section["frontier_runs"]]
    return section


def refit(resample: Resample) -> dict:
    section = fit_frontier(resample.column("flops"), np.exp(resample.column("log_loss")))
    return {"gamma": section["gamma"], "A_C": section["A_C"]}


APPROACH = Approach(
    name="frontier",
    title="Compute frontier",
    required=True,
    fit=fit,
    refit=refit,
    summary=lambda section, show: f"L(C) = {show('A_C')} * C^-{show('gamma')} on {len(section['frontier_runs'])} runs",
    parameters=("A_C", "gamma"),
    compute_curve=lambda section, flops: section["A_C"] * np.asarray(flops, float) ** -section["gamma"],
)
