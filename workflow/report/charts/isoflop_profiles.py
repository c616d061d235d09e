"""IsoFLOP profiles: Approach 2's parabolas and their minima (this chart belongs to Approach 2)."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.report.chart_parts import (
    HEIGHT,
    LOSS_TITLE,
    TOOLTIP,
    WIDTH,
    axis_note,
    completed,
    log_scale,
    not_drawn,
    num,
)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    a2 = fits.get("approach2")
    if missing := not_drawn("isoflop_profiles", a2, "Approach 2 (IsoFLOP) not fitted", fits):
        return missing
    budgets = a2["budgets"]
    done = (
        completed(runs)
        .filter(pl.col("compute_budget").is_not_null())
        .with_columns(
            pl.col("compute_budget").map_elements(lambda c: f"{c:.3g}", return_dtype=pl.String).alias("budget")
        )
    )
    curves, minima = [], []
    for b in budgets:
        if b.get("parabola") is None:
            continue
        lo, hi = b["log_n_range"]
        log_n = np.linspace(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), 48)
        c2, c1, c0 = b["parabola"]
        curves.append(
            pl.DataFrame(
                {
                    "params": np.exp(log_n),
                    "loss": c2 * log_n**2 + c1 * log_n + c0,
                    "budget": f"{b['compute_budget']:.3g}",
                }
            )
        )
        if b.get("kept"):
            minima.append({"params": b["n_opt"], "loss": b["loss_min"], "budget": f"{b['compute_budget']:.3g}"})
    color = alt.Color(
        "budget:N", title="budget C (FLOPs)", sort=sorted({f"{b['compute_budget']:.3g}" for b in budgets}, key=float)
    )
    fitted = pl.concat(curves) if curves else pl.DataFrame({"params": [], "loss": [], "budget": []})
    x_scale = log_scale(done["params"], fitted["params"]) if fitted.height else log_scale(done["params"])
    y_scale = log_scale(done["loss"])
    layers = [
        alt.Chart(done)
        .mark_circle(size=70)
        .encode(
            x=alt.X("params:Q", scale=x_scale, title="parameters N"),
            y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE),
            color=color,
            tooltip=TOOLTIP,
        ),
        alt.Chart(fitted).mark_line(strokeDash=[4, 2], clip=True).encode(x="params:Q", y="loss:Q", color=color),
    ]
    if minima:
        layers.append(
            alt.Chart(pl.DataFrame(minima))
            .mark_point(shape="diamond", size=160, filled=True)
            .encode(
                x="params:Q",
                y="loss:Q",
                color=color,
                tooltip=[
                    alt.Tooltip("budget:N", title="C"),
                    alt.Tooltip("params:Q", title="N_opt", format=".3s"),
                    alt.Tooltip("loss:Q", title="loss at minimum", format=".4f"),
                ],
            )
        )
    flagged = [b for b in budgets if not b.get("kept")]
    caption = (
        f"IsoFLOP profiles: for each of {len(budgets)} compute budgets, a parabola of loss against log N "
        f"and its minimum (diamonds). N_opt ∝ C^{num(a2.get('a'))}, D_opt ∝ C^{num(a2.get('b'))}. "
        + (
            "Left out: " + "; ".join(f"{b['compute_budget']:.3g} FLOPs ({b.get('message')})" for b in flagged) + ". "
            if flagged
            else ""
        )
        + f"{axis_note(fits)}."
    )
    title = alt.TitleParams(f"IsoFLOP profiles; N_opt ∝ C^{num(a2.get('a'), 3)}", subtitle=axis_note(fits))
    return alt.layer(*layers).properties(title=title, width=WIDTH, height=HEIGHT), caption
