"""Loss against D for each N, with the loss law."""

from __future__ import annotations

import altair as alt
import polars as pl

from workflow.report.charts.loss_against import loss_against_chart


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    return loss_against_chart(runs, fits, ("tokens", "tokens D", "D"), "params", "N")
