"""Residuals of the Approach-3 fit in log space (this chart belongs to Approach 3)."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.approach3 import predict_approach3
from workflow.report.chart_parts import (
    HEIGHT,
    TOOLTIP,
    WIDTH,
    axis_note,
    completed,
    log_scale,
    num,
)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    predicted = predict_approach3(fits["approach3"], done["params"].to_numpy(), done["tokens"].to_numpy())
    frame = done.with_columns(
        pl.Series("predicted", predicted),
        pl.Series("log_residual", np.log(done["loss"].to_numpy()) - np.log(predicted)),
    )
    rms = float(np.sqrt(np.mean(frame["log_residual"].to_numpy() ** 2)))
    worst = float(np.max(np.abs(frame["log_residual"].to_numpy())))
    points = (
        alt.Chart(frame)
        .mark_circle(size=70)
        .encode(
            x=alt.X(
                "flops:Q",
                scale=log_scale(frame["flops"]),
                title="training compute C (FLOPs)",
                axis=alt.Axis(format=".1e"),
            ),
            y=alt.Y("log_residual:Q", title="log(observed) − log(fitted)"),
            color=alt.Color("params:Q", scale=alt.Scale(type="log", scheme="viridis"), title="N"),
            tooltip=TOOLTIP
            + [
                alt.Tooltip("predicted:Q", title="fitted loss", format=".4f"),
                alt.Tooltip("log_residual:Q", title="log residual", format=".4f"),
            ],
        )
    )
    zero = alt.Chart(pl.DataFrame({"y": [0.0]})).mark_rule(color="black").encode(y="y:Q")
    caption = (
        f"Residuals of the Approach-3 fit in log space (the scale the Huber objective uses), "
        f"{frame.height} runs: RMS {num(rms, 3)}, largest {num(worst, 3)}. {axis_note(fits)}."
    )
    title = alt.TitleParams(f"Approach-3 residuals; RMS {num(rms, 3)} in log loss", subtitle=axis_note(fits))
    return (points + zero).properties(title=title, width=WIDTH, height=HEIGHT), caption
