"""Loss against one variable for each level of a grouping, with the loss law along each group's own
path (shared by loss_vs_params and loss_vs_tokens)."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.report import units
from workflow.report.chart_parts import (
    BEYOND_DASH,
    HEIGHT,
    LOSS_TITLE,
    TOOLTIP,
    WIDTH,
    axis_note,
    completed,
    count_axis,
    curve_grid,
    law_text,
    level_color,
    log_scale,
    size_levels,
    split_at,
    the_law,
    with_levels,
)

GROUP = "group"
OTHER = {"params": "tokens", "tokens": "params"}


def groups_of(done: pl.DataFrame, by: str) -> tuple[pl.DataFrame, list[str], str, bool]:
    """``done`` with its group label, the labels in order, the legend's title and whether the levels
    are ordered. ``by``: "params" (one group per model size) or "budget" (the IsoFLOP budget where a run
    has one, else its D: on an IsoFLOP grid every D is distinct, the budgets few)."""
    if by == "params":
        labels = size_levels(done)
        frame = with_levels(done, "params", GROUP, labels)
        return frame, list(labels.values()), "model size N", True
    budget = done["compute_budget"] if "compute_budget" in done.columns else pl.Series([None] * done.height)
    on_budget = done.filter(budget.is_not_null())
    off_budget = done.filter(budget.is_null())
    c_labels = {v: f"C = {units.flops(v)}" for v in sorted(set(on_budget["compute_budget"].to_list()))}
    d_labels = {v: f"D = {label}" for v, label in size_levels(off_budget, column="tokens").items()}
    frames = [with_levels(on_budget, "compute_budget", GROUP, c_labels)] if on_budget.height else []
    frames += [with_levels(off_budget, "tokens", GROUP, d_labels)] if off_budget.height else []
    title = (
        "budget C (FLOPs) or tokens D" if c_labels and d_labels else ("budget C (FLOPs)" if c_labels else "tokens D")
    )
    return pl.concat(frames, how="diagonal_relaxed"), [*c_labels.values(), *d_labels.values()], title, False


def along_path(x: np.ndarray, group: pl.DataFrame, x_column: str) -> np.ndarray:
    """The other variable along the group's own path at ``x``: constant where the group holds it fixed,
    else the power law of it in ``x`` fitted to the group's runs (an IsoFLOP budget's D ∝ N^-1)."""
    other = group[OTHER[x_column]].to_numpy().astype(float)
    xs = group[x_column].to_numpy().astype(float)
    if np.unique(other).size == 1 or np.unique(xs).size == 1:
        return np.full_like(x, float(np.exp(np.mean(np.log(other)))))
    slope, intercept = np.polyfit(np.log(xs), np.log(other), 1)
    return np.exp(intercept + slope * np.log(x))


def law_curves(done: pl.DataFrame, fits: dict, x_column: str, levels: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The law along each group's path over the chart's x range: within the group's sampled range
    (solid) and beyond it (dashed)."""
    approach, law = the_law(fits)
    low, high = float(done[x_column].min()), float(done[x_column].max())
    solid, dashed = [], []
    for level in levels:
        group = done.filter(pl.col(GROUP) == level)
        inner = float(group[x_column].min()), float(group[x_column].max())
        x = curve_grid(low, high, *inner)
        other = along_path(x, group, x_column)
        n, d = (x, other) if x_column == "params" else (other, x)
        curve = pl.DataFrame({x_column: x, "loss": approach.law(law, n, d), GROUP: level})
        within, beyond = split_at(curve, x_column, *inner)
        solid.append(within)
        dashed.append(beyond)
    return pl.concat(solid), pl.concat(dashed)


def loss_against_chart(
    runs: pl.DataFrame, fits: dict, x: tuple[str, str, str], by: str, group_symbol: str
) -> tuple[alt.Chart, str]:
    """Loss against ``x`` ((column, axis title, symbol)) for each group ``by`` (see groups_of)."""
    x_column, x_title, x_symbol = x
    done, levels, group_title, ordered = groups_of(completed(runs), by)
    color = level_color(GROUP, levels, group_title, ordered=ordered)
    solid, dashed = law_curves(done, fits, x_column, levels)
    x_enc = alt.X(f"{x_column}:Q", scale=log_scale(done[x_column]), axis=count_axis(x_title))
    y_enc = alt.Y("loss:Q", scale=log_scale(done["loss"]), title=LOSS_TITLE)
    points = (
        alt.Chart(done)
        .mark_circle(size=70, opacity=0.9)
        .encode(x=x_enc, y=y_enc, color=color, tooltip=[*TOOLTIP, alt.Tooltip(f"{GROUP}:N", title=group_title)])
    )
    lines = [
        alt.Chart(solid)
        .mark_line(opacity=0.8, clip=True)
        .encode(x=x_enc, y="loss:Q", color=color, detail=f"{GROUP}:N"),
        alt.Chart(dashed)
        .mark_line(opacity=0.6, strokeDash=BEYOND_DASH, clip=True)
        .encode(x=x_enc, y="loss:Q", color=color, detail=alt.Detail([f"{GROUP}:N", "segment:N"])),
    ]
    path = "N fixed" if by == "params" else "D fixed, or along the budget's D ∝ N^q fitted to its runs"
    caption = (
        f"Validation loss against {x_symbol} for each {group_symbol} ({len(levels)} groups: "
        f"{', '.join(levels)}), with the {the_law(fits)[0].title} law {law_text(fits)} drawn along each "
        f"group's path ({path}): solid over the {x_symbol} the group sampled, dashed beyond. {axis_note(fits)}."
    )
    title = alt.TitleParams(
        f"Loss against {x_symbol} for each {group_symbol}; {law_text(fits)}", subtitle=axis_note(fits)
    )
    chart = alt.layer(*lines, points).properties(title=title, width=WIDTH, height=HEIGHT)
    return chart, caption
