"""The one form of a compute-optimal allocation: N_opt = k_N C^a, D_opt = k_D C^b.

Approaches 1 and 2 fit it to their optima (log-log least squares); Approach 3
derives it from its law (Hoffmann et al.'s eq. 4, docs/methods.md). A section
with an allocation holds a, b, k_n, k_d and allocation_form; everything that
predicts N_opt and D_opt (predictions, bootstrap, report) goes through here.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.primitives import power_law

ALLOCATION_FORM = "N_opt = k_n * C^a, D_opt = k_d * C^b"
KEYS = ("a", "b", "k_n", "k_d")


def allocation_law(flops: np.ndarray, n_opt: np.ndarray, d_opt: np.ndarray) -> dict:
    """a, b, k_n, k_d fitted by least squares in log-log space to optima at compute ``flops``."""
    k_n, a = power_law(flops, n_opt)
    k_d, b = power_law(flops, d_opt)
    return {"a": a, "b": b, "k_n": k_n, "k_d": k_d, "allocation_form": ALLOCATION_FORM}


def allocate(law: dict, flops) -> dict[str, np.ndarray]:
    """N_opt and D_opt of an allocation law at compute ``flops``."""
    flops = np.asarray(flops, float)
    return {"n_opt": law["k_n"] * flops ** law["a"], "d_opt": law["k_d"] * flops ** law["b"]}


def predict_at(law: dict, flops: float, loss_of=None) -> dict:
    """One prediction: N_opt, D_opt, tokens per parameter and, with a loss law, the loss reached."""
    point = allocate(law, [flops])
    n_opt, d_opt = float(point["n_opt"][0]), float(point["d_opt"][0])
    row = {"n_opt": n_opt, "d_opt": d_opt, "tokens_per_parameter": d_opt / n_opt}
    if loss_of is not None:
        row["loss"] = float(loss_of(law, point["n_opt"], point["d_opt"])[0])
    return row
