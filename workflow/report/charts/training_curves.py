"""Training curves against tokens and against compute."""

from __future__ import annotations

import altair as alt
import polars as pl

from workflow.report.chart_parts import (
    axis_note,
    log_scale,
)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    panels = []
    tooltip = [
        alt.Tooltip("run_id:N", title="run"),
        alt.Tooltip("step:Q"),
        alt.Tooltip("tokens:Q", format=".3s"),
        alt.Tooltip("flops:Q", format=".3s", title="C (FLOPs)"),
        alt.Tooltip("train_loss:Q", format=".4f"),
    ]
    for column, title in (("tokens", "tokens trained"), ("flops", "training compute C (FLOPs)")):
        panels.append(
            alt.Chart(curves)
            .mark_line(opacity=0.8)
            .encode(
                x=alt.X(f"{column}:Q", scale=log_scale(curves[column]), title=title, axis=alt.Axis(format=".1e")),
                y=alt.Y("train_loss:Q", scale=log_scale(curves["train_loss"]), title="training loss (nats/token)"),
                color=alt.Color("params:Q", scale=alt.Scale(type="log", scheme="viridis"), title="N"),
                detail="run_id:N",
                tooltip=tooltip,
            )
            .properties(width=380, height=300)
        )
    runs = curves["run_id"].n_unique()
    caption = (
        f"Training loss of {runs} runs (cooldown branches included) against tokens and against compute, "
        f"coloured by N. {axis_note(fits)}."
    )
    chart = alt.hconcat(*panels).properties(title=alt.TitleParams("Training curves", subtitle=axis_note(fits)))
    return chart, caption
