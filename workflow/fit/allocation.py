"""The one form of a compute-optimal allocation: N_opt = k_N C^a, D_opt = k_D C^b.

Every allocation spends exactly its budget on the study's own compute axis,
C = k N D (``k``: the study's FLOPs per parameter and token, 6 when N is the
count the FLOP convention multiplies): so b = 1 - a and k_D = 1 / (k k_N)
(docs/methods.md, "One compute axis"). Approaches 1 and 2 fit a and k_N to
their optimal sizes (log-log least squares) and take D_opt from the budget;
Approach 3 derives them from its law (Hoffmann et al.'s eq. 4 on C = k N D).
A section with an allocation holds a, b, k_n, k_d, flops_per_nd and
allocation_form; everything that predicts N_opt and D_opt (predictions,
bootstrap, report) goes through here.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.primitives import FitError, power_law

ALLOCATION_FORM = "N_opt = k_n * C^a, D_opt = k_d * C^b, with C = k N_opt D_opt (b = 1 - a)"
KEYS = ("a", "b", "k_n", "k_d")


def within_budget(a: float, k_n: float, flops_per_nd: float) -> dict:
    """The allocation of N_opt = k_n C^a whose D_opt spends the rest of the budget: C = k N_opt D_opt."""
    if not (np.isfinite(k_n) and k_n > 0 and np.isfinite(a)):
        raise FitError(f"the optimal sizes give no allocation (k_n = {k_n:.3g}, a = {a:.3g})")
    return {"a": float(a), "b": float(1.0 - a), "k_n": float(k_n), "k_d": float(1.0 / (flops_per_nd * k_n))}


def allocation_law(flops: np.ndarray, n_opt: np.ndarray, flops_per_nd: float) -> dict:
    """a and k_n fitted by least squares in log-log space to optimal sizes at compute ``flops``; b and
    k_d from the budget."""
    k_n, a = power_law(flops, n_opt)
    return within_budget(a, k_n, flops_per_nd) | {
        "flops_per_nd": float(flops_per_nd),
        "allocation_form": ALLOCATION_FORM,
    }


def cost(law: dict, flops) -> np.ndarray:
    """What the allocation's recipe costs on the study's axis, as a multiple of the budget (1 exactly)."""
    point = allocate(law, flops)
    return law["flops_per_nd"] * point["n_opt"] * point["d_opt"] / np.asarray(flops, float)


def allocate(law: dict, flops) -> dict[str, np.ndarray]:
    """N_opt and D_opt of an allocation law at compute ``flops``."""
    flops = np.asarray(flops, float)
    return {"n_opt": law["k_n"] * flops ** law["a"], "d_opt": law["k_d"] * flops ** law["b"]}


def predict_at(law: dict, flops: float, loss_of=None) -> dict:
    """One prediction: N_opt, D_opt, tokens per parameter and, with a loss law, the loss reached."""
    point = allocate(law, [flops])
    n_opt, d_opt = float(point["n_opt"][0]), float(point["d_opt"][0])
    row = {"n_opt": n_opt, "d_opt": d_opt, "tokens_per_parameter": d_opt / n_opt}
    if "flops_per_nd" in law:
        row["cost"] = law["flops_per_nd"] * n_opt * d_opt / flops  # the recipe's cost over the budget
    if loss_of is not None:
        row["loss"] = float(loss_of(law, point["n_opt"], point["d_opt"])[0])
    return row
