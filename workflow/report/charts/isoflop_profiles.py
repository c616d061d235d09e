"""IsoFLOP profiles: Approach 2's parabolas and their minima with intervals (this chart belongs to
Approach 2), beside Approach 3's law along each budget."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.approach2 import minimum_key
from workflow.fit.registry import BY_NAME
from workflow.report import units
from workflow.report.chart_parts import (
    BEYOND_DASH,
    COUNT_FORMAT,
    HEIGHT,
    LOSS_TITLE,
    TOOLTIP,
    WIDTH,
    axis_note,
    completed,
    count_axis,
    curve_grid,
    interval,
    level_color,
    log_scale,
    not_drawn,
    num,
    skipped,
    split_at,
    with_levels,
)

# How far past its sampled sizes a parabola is drawn (dashed), as a fraction of that range in log N.
OVERHANG = 0.1
BUDGET = "budget"


def parabolas(budgets: list[dict], labels: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each budget's parabola over its sampled sizes (solid) and a little beyond them (dashed)."""
    frames = []
    for b in budgets:
        if b.get("parabola") is None:
            continue
        lo, hi = b["log_n_range"]
        pad = OVERHANG * (hi - lo)
        n = curve_grid(np.exp(lo - pad), np.exp(hi + pad), np.exp(lo), np.exp(hi))
        c2, c1, c0 = b["parabola"]
        loss = c2 * np.log(n) ** 2 + c1 * np.log(n) + c0
        frames.append(pl.DataFrame({"params": n, "loss": loss, BUDGET: labels[b["compute_budget"]]}))
    if not frames:
        return (pl.DataFrame(schema={"params": pl.Float64, "loss": pl.Float64, BUDGET: pl.String}),) * 2
    solid, dashed = zip(
        *(
            split_at(f, "params", float(np.exp(b["log_n_range"][0])), float(np.exp(b["log_n_range"][1])))
            for f, b in zip(frames, [b for b in budgets if b.get("parabola") is not None])
        )
    )
    return pl.concat(solid), pl.concat(dashed)


def law_slices(fits: dict, budgets: list[dict], labels: dict) -> pl.DataFrame | None:
    """Approach 3's loss along N at each budget C, with D = C / (k N) (k: the study's FLOPs per N D),
    over the sizes the budget sampled; None when Approach 3 was not fitted."""
    law = fits.get("approach3")
    if skipped(law):
        return None
    k = (fits.get("data") or {}).get("flops_per_nd") or law.get("flops_per_nd") or 6.0
    frames = []
    for b in budgets:
        lo, hi = b["log_n_range"]
        n = np.geomspace(np.exp(lo), np.exp(hi), 32)
        loss = BY_NAME["approach3"].law(law, n, b["compute_budget"] / (k * n))
        frames.append(pl.DataFrame({"params": n, "loss": loss, BUDGET: labels[b["compute_budget"]]}))
    return pl.concat(frames) if frames else None


def minima_of(fits: dict, budgets: list[dict], labels: dict) -> pl.DataFrame:
    """Each kept budget's minimum, with its bootstrap 95% interval in N and in loss where recorded."""
    rows = []
    for b in budgets:
        if not b.get("kept"):
            continue
        c = b["compute_budget"]
        n_ci = interval(fits, "approach2", minimum_key(c, "n_opt")) or [None, None]
        loss_ci = interval(fits, "approach2", minimum_key(c, "loss")) or [None, None]
        rows.append(
            {"params": b["n_opt"], "loss": b["loss_min"], BUDGET: labels[c], "n_low": n_ci[0], "n_high": n_ci[1],
             "loss_low": loss_ci[0], "loss_high": loss_ci[1]}
        )  # fmt: skip
    return pl.DataFrame(rows, schema_overrides={k: pl.Float64 for k in ("n_low", "n_high", "loss_low", "loss_high")})


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    a2 = fits.get("approach2")
    if missing := not_drawn("isoflop_profiles", a2, "Approach 2 (IsoFLOP) not fitted", fits):
        return missing
    budgets = a2["budgets"]
    labels = {b["compute_budget"]: f"C = {units.flops(b['compute_budget'])}" for b in budgets}
    done = completed(runs).filter(pl.col("compute_budget").is_in(list(labels)))
    done = with_levels(done, "compute_budget", BUDGET, labels)
    levels = [labels[c] for c in sorted(set(done["compute_budget"].to_list()))]
    color = level_color(BUDGET, levels, "budget C (FLOPs)", ordered=False)
    solid, dashed = parabolas(budgets, labels)
    slices = law_slices(fits, budgets, labels)
    minima = minima_of(fits, budgets, labels)
    x = alt.X(
        "params:Q", scale=log_scale(done["params"], solid["params"], dashed["params"]), axis=count_axis("parameters N")
    )
    y = alt.Y(
        "loss:Q", scale=log_scale(done["loss"], minima["loss"] if minima.height else done["loss"]), title=LOSS_TITLE
    )
    layers = [
        alt.Chart(solid).mark_line(strokeWidth=2.5, clip=True).encode(x=x, y=y, color=color),
        alt.Chart(dashed)
        .mark_line(strokeWidth=2.5, strokeDash=BEYOND_DASH, clip=True)
        .encode(x=x, y=y, color=color, detail=alt.Detail([f"{BUDGET}:N", "segment:N"])),
    ]
    if slices is not None:
        layers.append(
            alt.Chart(slices)
            .mark_line(strokeWidth=1, strokeDash=[1, 2], opacity=0.9, clip=True)
            .encode(x=x, y=y, color=color)
        )
    layers.append(alt.Chart(done).mark_circle(size=60, opacity=0.8).encode(x=x, y=y, color=color, tooltip=TOOLTIP))
    with_ci = minima.filter(pl.col("n_low").is_not_null()) if minima.height else minima
    if with_ci.height:
        # In black: the interval in N lies along the parabola's flat bottom, where a bar in its colour vanishes.
        bar = {"color": "#222", "strokeWidth": 1.6}
        ends = {"color": "#222", "thickness": 1.6, "size": 9}
        layers += [
            alt.Chart(with_ci).mark_rule(**bar).encode(x=alt.X("n_low:Q"), x2="n_high:Q", y=y),
            alt.Chart(with_ci).mark_rule(**bar).encode(x=x, y=alt.Y("loss_low:Q"), y2="loss_high:Q"),
            alt.Chart(with_ci).mark_tick(orient="vertical", **ends).encode(x=alt.X("n_low:Q"), y=y),
            alt.Chart(with_ci).mark_tick(orient="vertical", **ends).encode(x=alt.X("n_high:Q"), y=y),
        ]
    if minima.height:
        layers.append(
            alt.Chart(minima)
            .mark_point(shape="diamond", size=170, filled=True, stroke="black", strokeWidth=0.8)
            .encode(
                x=x,
                y=y,
                color=color,
                tooltip=[
                    alt.Tooltip(f"{BUDGET}:N", title="budget"),
                    alt.Tooltip("params:Q", title="N_opt", format=COUNT_FORMAT),
                    alt.Tooltip("n_low:Q", title="N_opt 95% low", format=COUNT_FORMAT),
                    alt.Tooltip("n_high:Q", title="N_opt 95% high", format=COUNT_FORMAT),
                    alt.Tooltip("loss:Q", title="loss at minimum", format=".4f"),
                ],
            )
        )
    flagged = [b for b in budgets if not b.get("kept")]
    intervals_note = (
        "with bootstrap 95% intervals in N and in loss (bars)"
        if with_ci.height
        else "(no bootstrap intervals of the minima recorded in this fits.json)"
    )
    caption = (
        f"IsoFLOP profiles: for each of {len(budgets)} compute budgets, a parabola of loss against log N, "
        f"solid over the sizes the budget sampled and dashed {int(OVERHANG * 100)}% beyond, and its minimum "
        f"(diamonds) {intervals_note}. "
        + (
            f"Dotted: Approach 3's law along each budget, D = C / ({num(fits['data']['flops_per_nd'], 3)} N). "
            if slices is not None and (fits.get("data") or {}).get("flops_per_nd")
            else ("Dotted: Approach 3's law along each budget. " if slices is not None else "")
        )
        + f"N_opt ∝ C^{num(a2.get('a'))}, D_opt ∝ C^{num(a2.get('b'))}. "
        + (
            "Left out: " + "; ".join(f"{b['compute_budget']:.3g} FLOPs ({b.get('message')})" for b in flagged) + ". "
            if flagged
            else ""
        )
        + f"{axis_note(fits)}."
    )
    title = alt.TitleParams(
        f"IsoFLOP profiles; N_opt ∝ C^{num(a2.get('a'), 3)}; dotted: Approach 3's law", subtitle=axis_note(fits)
    )
    return alt.layer(*layers).properties(title=title, width=WIDTH, height=HEIGHT), caption
