"""The extrapolation check: held-out runs against the refit's predictions."""

from __future__ import annotations

import altair as alt
import polars as pl

from workflow.report.chart_parts import (
    HEIGHT,
    SIZE_COLUMN,
    TOOLTIP,
    WIDTH,
    axis_note,
    not_drawn,
    num,
    size_color,
    size_levels,
    with_levels,
)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    check = fits.get("extrapolation")
    if missing := not_drawn("extrapolation", check, "Extrapolation check not made", fits):
        return missing
    frame = pl.DataFrame(check["held_out"])
    sizes = size_levels(frame)
    frame = with_levels(frame, "params", SIZE_COLUMN, sizes)
    lo = float(min(frame["predicted"].min(), frame["loss"].min())) * 0.97
    hi = float(max(frame["predicted"].max(), frame["loss"].max())) * 1.03
    points = (
        alt.Chart(frame)
        .mark_circle(size=80, opacity=0.9)
        .encode(
            x=alt.X("loss:Q", scale=alt.Scale(domain=[lo, hi]), title="observed validation loss (held out)"),
            y=alt.Y("predicted:Q", scale=alt.Scale(domain=[lo, hi]), title="predicted by the refit"),
            color=size_color(sizes),
            tooltip=TOOLTIP
            + [
                alt.Tooltip("predicted:Q", format=".4f"),
                alt.Tooltip("relative_error:Q", title="relative error", format=".2%"),
            ],
        )
    )
    diagonal = (
        alt.Chart(pl.DataFrame({"loss": [lo, hi], "predicted": [lo, hi]}))
        .mark_line(color="black", strokeDash=[4, 2])
        .encode(x="loss:Q", y="predicted:Q")
    )
    caption = (
        f"Extrapolation check: Approach 3 refitted without {check['held_out_description']} "
        f"({len(check['held_out'])} runs, coloured by N), then asked to predict them. Mean absolute error "
        f"{num(check['mean_absolute_error'], 3)} nats ({num(100 * check['mean_relative_error'], 3)}%), "
        f"largest {num(check['max_absolute_error'], 3)}. {axis_note(fits)}."
    )
    title = alt.TitleParams(
        f"Extrapolation: mean abs error {num(check['mean_absolute_error'], 3)} nats", subtitle=axis_note(fits)
    )
    return (points + diagonal).properties(title=title, width=WIDTH, height=HEIGHT), caption
