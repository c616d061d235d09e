"""Run-to-run noise, from seeds: how much the loss of one (N, D) point moves when only the seed changes
(docs/methods.md, "Seeds and lack of fit").

With ``grid.seeds`` of 2 or more, every point of the design is trained once per seed. The pooled
within-point variance of the loss is the seed noise; Approach 3's residual variance over it is the
lack-of-fit ratio (about 1 when the law fits as well as the noise allows, well above 1 when the law's
form misses the data). The correlation of a run's deviations across its points (its cooldown branches)
is what makes points of one run dependent: the study simulator draws noise with both.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from workflow.fit.approach import Approach, Study
from workflow.fit.approach3 import predict_approach3
from workflow.fit.primitives import FitError


def seed_noise(table: pl.DataFrame, loss: np.ndarray) -> dict:
    """Pooled seed variance of the loss over the points trained with 2 or more seeds, and the
    correlation between the deviations of one run's points."""
    if "seed" not in table.columns or table["seed"].n_unique() < 2:
        raise FitError("one seed: run-to-run noise is not measured (set train.grid.seeds to 2 or more seeds)")
    frame = table.select("params", "tokens", "seed").with_columns(
        pl.Series("loss", loss), pl.Series("row", np.arange(table.height))
    )
    if "training_run" in table.columns:
        frame = frame.with_columns(table["training_run"])
    grouped = frame.with_columns(
        (pl.col("loss") - pl.col("loss").mean().over("params", "tokens")).alias("deviation"),
        pl.len().over("params", "tokens").alias("replicates"),
    ).filter(pl.col("replicates") >= 2)
    if grouped.height == 0:
        raise FitError("no point of the design was trained with more than one seed")
    points = grouped.select("params", "tokens").unique().height
    dof = grouped.height - points
    variance = float((grouped["deviation"] ** 2).sum() / dof)
    out = {
        "seeds": int(table["seed"].n_unique()),
        "points_replicated": points,
        "degrees_of_freedom": int(dof),
        "seed_sd": float(np.sqrt(variance)),
    }
    if "training_run" in grouped.columns and variance > 0:
        # Mean product of two distinct points' deviations within one run, over the variance.
        products, pairs = 0.0, 0
        for (_run,), run in grouped.group_by("training_run"):
            d = run["deviation"].to_numpy()
            if len(d) >= 2:
                products += (d.sum() ** 2 - (d**2).sum()) / 2
                pairs += len(d) * (len(d) - 1) // 2
        # The deviations from a mean over r seeds have variance (r-1)/r of the noise's: scale back.
        r = float(grouped["replicates"].mean())
        out["within_run_correlation"] = float(products / pairs / (variance * (r - 1) / r)) if pairs else None
    return out


def fit(study: Study) -> dict:
    section = seed_noise(study.table, study.loss)
    law = study.fits.get("approach3") or {}
    if "E" in law:
        residual = study.loss - predict_approach3(law, study.params, study.tokens)
        free = len(law.get("free_parameters", ("E", "A", "B", "alpha", "beta")))
        residual_variance = float((residual**2).sum() / max(1, len(residual) - free))
        section["residual_sd"] = float(np.sqrt(residual_variance))
        section["lack_of_fit_ratio"] = residual_variance / section["seed_sd"] ** 2 if section["seed_sd"] > 0 else None
    return section


def summary(section: dict, show) -> str:
    ratio = section.get("lack_of_fit_ratio")
    return f"seed sd {section['seed_sd']:.3g} over {section['seeds']} seeds" + (
        f", residual variance / seed variance {ratio:.3g}" if ratio is not None else ""
    )


APPROACH = Approach(name="noise", title="Seed noise", required=False, fit=fit, summary=summary)
