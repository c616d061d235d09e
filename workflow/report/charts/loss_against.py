"""Loss against one variable for each value of the other, with the loss law's surface
(shared by loss_vs_params and loss_vs_tokens)."""

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
    law_text,
    log_scale,
    the_law,
)


def _loss_against(
    runs: pl.DataFrame, fits: dict, x_column: str, group_column: str, x_title: str, group_title: str
) -> alt.Chart:
    """Points and the loss law's surface at each distinct value of the other variable; a
    colour scale (log) rather than categories, so that an IsoFLOP grid (every D distinct) reads too."""
    done = completed(runs)
    approach, law = the_law(fits)
    x = np.geomspace(done[x_column].min() / 1.5, done[x_column].max() * 1.5, 48)
    surface = pl.concat(
        [
            pl.DataFrame(
                {
                    x_column: x,
                    group_column: float(g),
                    "loss": approach.law(law, x, g) if x_column == "params" else approach.law(law, g, x),
                }
            )
            for g in sorted(set(done[group_column].to_list()))
        ]
    )
    color = alt.Color(
        f"{group_column}:Q",
        title=group_title,
        scale=alt.Scale(type="log", scheme="viridis"),
        legend=alt.Legend(format=".2s"),
    )
    y_scale = log_scale(done["loss"])
    points = (
        alt.Chart(done)
        .mark_circle(size=70, opacity=0.9)
        .encode(
            x=alt.X(f"{x_column}:Q", scale=log_scale(x), title=x_title),
            y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE),
            color=color,
            tooltip=TOOLTIP,
        )
    )
    lines = (
        alt.Chart(surface)
        .mark_line(strokeDash=[4, 2], opacity=0.7, clip=True)
        .encode(x=f"{x_column}:Q", y="loss:Q", color=color, detail=f"{group_column}:Q")
    )
    return lines + points


def loss_against_chart(
    runs: pl.DataFrame, fits: dict, x: tuple[str, str, str], group: tuple[str, str, str]
) -> tuple[alt.Chart, str]:
    """Loss against one variable for each value of the other: (column, axis title, symbol) of each."""
    chart = _loss_against(runs, fits, x[0], group[0], x[1], group[1])
    caption = (
        f"Validation loss against {x[2]} for each {group[1]} {group[2]}, with the "
        f"{the_law(fits)[0].title} surface "
        f"{law_text(fits)} drawn at each {group[2]}. {axis_note(fits)}."
    )
    title = alt.TitleParams(f"Loss against {x[2]} for each {group[2]}; {law_text(fits)}", subtitle=axis_note(fits))
    return chart.properties(title=title, width=WIDTH, height=HEIGHT), caption
