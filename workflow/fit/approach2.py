"""Approach 2: IsoFLOP profiles (docs/methods.md, "Approach 2").

A bootstrap resample draws runs within each budget (stratified), so that
every budget keeps its size.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.allocation import allocation_law
from workflow.fit.approach import Approach, Prepared, Resample, Study
from workflow.fit.primitives import FitError, parabola_fit


def minimum_key(budget: float, quantity: str) -> str:
    """The bootstrap interval's key of one budget's minimum: minima.<C>.<n_opt|loss>."""
    return f"minima.{budget:g}.{quantity}"


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


def approach2_arrays(
    budget: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray, flops_per_nd: float = 6.0
) -> dict:
    """Approach 2 on arrays (one entry per run; budget NaN for runs outside every IsoFLOP). The optimal
    sizes give a and k_n; D_opt is what the rest of the budget buys, C / (k N_opt)."""
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
    out = allocation_law(
        np.array([b["compute_budget"] for b in kept]), np.array([b["n_opt"] for b in kept]), flops_per_nd
    )
    out["budgets"] = budgets
    out["budgets_kept"] = len(kept)
    out["flagged"] = [f"C = {b['compute_budget']:.3g} FLOPs: {b['message']}" for b in budgets if not b["kept"]]
    out["optima"] = [
        {
            "flops": b["compute_budget"],
            "n_opt": b["n_opt"],
            "d_opt": b["compute_budget"] / (flops_per_nd * b["n_opt"]),
            "loss": b["loss_min"],
        }
        for b in kept
    ]
    return out


def fit(study: Study) -> dict:
    """Chinchilla Approach 2 on the study's IsoFLOP budgets."""
    return approach2_arrays(study.budgets(), np.log(study.params), np.log(study.tokens), study.loss, study.flops_per_nd)


def prepare(study: Study, section: dict, rng: np.random.Generator, samples: int, options: dict) -> Prepared:
    """Where each point is its own unit, resamples of the runs within each budget, every budget keeping
    its size. Where points share a training run (WSD branches at several budgets), the bootstrap's
    resamples of whole runs, so that a run's points at every budget come and go together."""
    budget = study.budgets()
    if len(np.unique(study.units)) < len(study.units):
        return Prepared(
            shared=budget, notes={"approach2_resamples": "whole training runs, with their points at every budget"}
        )
    groups = [np.flatnonzero(budget == value) for value in np.unique(budget[np.isfinite(budget)])]
    own = [np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(samples)]
    return Prepared(shared=budget, own=own)


def refit(resample: Resample) -> dict:
    runs = resample.runs
    rows = resample.own if resample.own is not None else resample.rows
    law = approach2_arrays(
        resample.shared[rows],
        runs["log_n"][rows],
        runs["log_d"][rows],
        np.exp(runs["log_loss"][rows]),
        runs["flops_per_nd"],
    )
    values = {k: law[k] for k in ("a", "b", "k_n", "k_d")}
    # Each kept budget's minimum too, so that the report can draw its interval (a resample whose
    # parabola at a budget has no minimum inside the sampled sizes adds nothing for that budget).
    for b in law["budgets"]:
        if b["kept"]:
            values[minimum_key(b["compute_budget"], "n_opt")] = b["n_opt"]
            values[minimum_key(b["compute_budget"], "loss")] = b["loss_min"]
    return values


APPROACH = Approach(
    name="approach2",
    title="Approach 2",
    required=False,
    fit=fit,
    prepare=prepare,
    refit=refit,
    summary=lambda section, show: f"a={show('a', 3)} b={show('b', 3)}",
    parameters=("a", "b"),
    allocates=True,
)
