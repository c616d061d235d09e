"""Does the law reach the observed minimum at each IsoFLOP budget? (docs/methods.md, "Lack of fit")

At each IsoFLOP budget of the study, Approach 3's compute-optimal loss (the minimum of the law along
C = k N D) is set beside the lowest loss observed at that budget. A law that fits draws its frontier
through the observed minima; a gap larger than the tolerance, 0.02 nats or twice the seed noise where
seeds measured it, is a lack of fit at that budget, stated with its numbers.
"""

from __future__ import annotations

import numpy as np

from workflow.fit.approach import Approach, Study
from workflow.fit.approach3 import compute_curve, predict_approach3
from workflow.fit.primitives import FitError

TOLERANCE = 0.02  # nats


def isoflop_gaps(
    budget: np.ndarray, params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, law: dict, tolerance: float
) -> list[dict]:
    """Per IsoFLOP budget: the law's compute-optimal loss against the lowest observed, and why they differ
    where they do: the law misses the runs (its lowest loss over the sampled sizes is off the observed
    lowest), or the sampled sizes miss the optimum (the law's optimum lies below every sampled size's)."""
    rows = []
    for value in np.unique(budget[np.isfinite(budget)]):
        at = budget == value
        observed = float(loss[at].min())
        predicted = float(compute_curve(law, np.array([value]))[0])
        sampled = float(predict_approach3(law, params[at], tokens[at]).min())
        gap = predicted - observed
        cause = None
        if abs(gap) > tolerance:
            cause = "fit" if abs(sampled - observed) > tolerance else "sampling"
        rows.append(
            {
                "compute_budget": float(value),
                "observed_minimum": observed,
                "law_minimum": predicted,
                "law_at_sampled_sizes": sampled,
                "gap": gap,
                "flagged": cause is not None,
                "cause": cause,
            }
        )
    return rows


def fit(study: Study) -> dict:
    law = study.fits.get("approach3") or {}
    if "E" not in law:
        raise FitError("Approach 3 was not fitted")
    noise = study.fits.get("noise") or {}
    seed_sd = noise.get("seed_sd")
    tolerance = max(TOLERANCE, 2 * seed_sd) if seed_sd else TOLERANCE
    budgets = isoflop_gaps(study.budgets(), study.params, study.tokens, study.loss, law, tolerance)
    warnings = []
    for b in budgets:
        if not b["flagged"]:
            continue
        head = (
            f"at C = {b['compute_budget']:.3g} FLOPs the law's compute-optimal loss is {b['law_minimum']:.3f}, "
            f"the lowest observed {b['observed_minimum']:.3f} ({b['gap']:+.3f} nats, beyond {tolerance:.3g})"
        )
        if b["cause"] == "fit":
            warnings.append(
                f"lack of fit {head}: over the sampled sizes the law's lowest is {b['law_at_sampled_sizes']:.3f}, "
                f"so the law misses the runs there"
            )
        else:
            warnings.append(
                f"{head}: the law fits the sampled sizes ({b['law_at_sampled_sizes']:.3f}), whose best lies "
                f"away from the optimum; sample sizes nearer N_opt at this budget"
            )
    return {
        "tolerance": tolerance,
        "tolerance_source": "2 x seed sd" if seed_sd and 2 * seed_sd > TOLERANCE else f"{TOLERANCE} nats",
        "budgets": budgets,
        "largest_gap": max((abs(b["gap"]) for b in budgets), default=None),
        "warnings": warnings,
    }


def summary(section: dict, show) -> str:
    flagged = [b for b in section["budgets"] if b["flagged"]]
    return (
        f"{len(section['budgets'])} IsoFLOP budgets, largest gap {section['largest_gap']:.3g} nats, "
        f"{len(flagged)} beyond the tolerance of {section['tolerance']:.3g}"
    )


APPROACH = Approach(name="lack_of_fit", title="IsoFLOP lack of fit", required=False, fit=fit, summary=summary)
