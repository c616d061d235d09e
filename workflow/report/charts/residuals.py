"""Residuals of the Approach-3 fit in log space against N, D and C (this chart belongs to Approach 3):
a law that misses in one variable shows as a trend against it, which another axis can hide."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.approach3 import predict_approach3
from workflow.report.chart_parts import (
    HEIGHT,
    SIZE_COLUMN,
    TOOLTIP,
    axis_note,
    completed,
    count_axis,
    flops_axis,
    log_scale,
    num,
    size_color,
    size_levels,
    with_levels,
)

PANEL_WIDTH = 300
AXES = (
    ("params", count_axis("parameters N")),
    ("tokens", count_axis("tokens D")),
    ("flops", flops_axis()),
)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    predicted = predict_approach3(fits["approach3"], done["params"].to_numpy(), done["tokens"].to_numpy())
    labels = size_levels(done)
    frame = with_levels(done, "params", SIZE_COLUMN, labels).with_columns(
        pl.Series("predicted", predicted),
        pl.Series("log_residual", np.log(done["loss"].to_numpy()) - np.log(predicted)),
    )
    rms = float(np.sqrt(np.mean(frame["log_residual"].to_numpy() ** 2)))
    worst = float(np.max(np.abs(frame["log_residual"].to_numpy())))
    color = size_color(labels)
    tooltip = TOOLTIP + [
        alt.Tooltip("predicted:Q", title="fitted loss", format=".4f"),
        alt.Tooltip("log_residual:Q", title="log residual", format=".4f"),
    ]
    y = alt.Y("log_residual:Q", title="log(observed) − log(fitted)")
    panels = []
    for column, axis in AXES:
        points = (
            alt.Chart(frame)
            .mark_circle(size=60, opacity=0.9)
            .encode(
                x=alt.X(f"{column}:Q", scale=log_scale(frame[column]), axis=axis), y=y, color=color, tooltip=tooltip
            )
        )
        zero = alt.Chart(pl.DataFrame({"zero": [0.0]})).mark_rule(color="black").encode(y="zero:Q")
        panels.append((zero + points).properties(width=PANEL_WIDTH, height=HEIGHT))
    caption = (
        f"Residuals of the Approach-3 fit in log space (the scale the Huber objective uses) against N, D "
        f"and C, {frame.height} runs coloured by N: RMS {num(rms, 3)}, largest {num(worst, 3)}. A trend "
        f"against one of them is a misfit in that variable. {axis_note(fits)}."
    )
    title = alt.TitleParams(
        f"Approach-3 residuals against N, D and C; RMS {num(rms, 3)} in log loss", subtitle=axis_note(fits)
    )
    chart = alt.hconcat(*panels).resolve_scale(color="shared", y="shared").properties(title=title)
    return chart, caption
