"""The extrapolation check: Approach 3 refitted without the largest compute, asked to predict it
(docs/methods.md, "Extrapolation check"). Not bootstrapped: it is itself a refit."""

from __future__ import annotations

import numpy as np
import polars as pl

from workflow.fit.approach import Approach, Study
from workflow.fit.approach3 import fit_approach3, predict_approach3
from workflow.fit.primitives import FitError
from workflow.fit.variant import FREE, Variant


def extrapolation_check(
    table: pl.DataFrame, *, delta: float, refine: int | None, full_fit: dict | None = None, variant: Variant = FREE
) -> dict:
    """Refit Approach 3 without the largest compute and predict the runs held out."""
    budgets = table["compute_budget"].drop_nulls() if "compute_budget" in table.columns else pl.Series([])
    if budgets.n_unique() >= 2:
        largest = budgets.max()
        threshold = table.filter(pl.col("compute_budget") == largest)["flops"].min()
        description = (
            f"the runs of the largest IsoFLOP budget (C = {largest:.3g} FLOPs) and any run of at least "
            f"{threshold:.3g} FLOPs"
        )
        held_mask = (pl.col("compute_budget") == largest).fill_null(False) | (pl.col("flops") >= threshold)
    else:
        count = max(1, round(0.2 * table.height))
        threshold = table["flops"].sort(descending=True)[count - 1]
        description = f"the runs of the largest compute (the top 20%: C >= {threshold:.3g} FLOPs)"
        held_mask = pl.col("flops") >= threshold
    held, kept = table.filter(held_mask), table.filter(~held_mask)
    if kept.height == 0:
        raise FitError("the extrapolation check holds out every run: no run has less compute than the largest")
    try:
        refit = fit_approach3(
            kept["params"].to_numpy(),
            kept["tokens"].to_numpy(),
            kept["loss"].to_numpy(),
            delta=delta,
            refine=refine,
            variant=variant,
        )
    except FitError as e:
        raise FitError(f"the extrapolation check's refit without {description} failed: {e}") from None
    params, tokens, actual = (held[c].to_numpy().astype(float) for c in ("params", "tokens", "loss"))
    predicted = predict_approach3(refit, params, tokens)
    error = predicted - actual
    out = {
        "held_out_description": description,
        "threshold_flops": float(threshold),
        "held_out": [
            {
                "run_id": r["run_id"],
                "params": r["params"],
                "tokens": r["tokens"],
                "flops": r["flops"],
                "loss": r["loss"],
                "predicted": float(p),
                "error": float(e),
                "absolute_error": float(abs(e)),
                "relative_error": float(abs(e) / r["loss"]),
            }
            for r, p, e in zip(held.iter_rows(named=True), predicted, error)
        ],
        "runs_fitted": kept.height,
        "refit": {k: refit[k] for k in ("E", "A", "B", "alpha", "beta")},
        "mean_absolute_error": float(np.mean(np.abs(error))),
        "mean_relative_error": float(np.mean(np.abs(error) / actual)),
        "max_absolute_error": float(np.max(np.abs(error))),
        "max_relative_error": float(np.max(np.abs(error) / actual)),
        "mean_signed_error": float(np.mean(error)),
    }
    if full_fit is not None:
        in_sample = np.abs(predict_approach3(full_fit, params, tokens) - actual)
        out["full_fit_mean_absolute_error"] = float(np.mean(in_sample))
        out["full_fit_max_absolute_error"] = float(np.max(in_sample))
    return out


def fit(study: Study) -> dict:
    return extrapolation_check(
        study.table, delta=study.delta, refine=study.refine, full_fit=study.fits.get("approach3"), variant=study.variant
    )


def summary(section: dict, show) -> str:
    return (
        f"{len(section['held_out'])} runs held out, mean abs error {section['mean_absolute_error']:.4g} "
        f"({100 * section['mean_relative_error']:.2f}%)"
    )


APPROACH = Approach(name="extrapolation", title="Extrapolation check", required=False, fit=fit, summary=summary)
