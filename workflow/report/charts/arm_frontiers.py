"""A study with arms: every arm's runs (loss against compute) and its loss at the compute-optimal
allocation (its Approach-3 law along the look-up ladder), on one chart, so the arms' frontiers can be
compared by eye where the multiplier says how far apart they are."""

from __future__ import annotations

import altair as alt
import polars as pl

from workflow.report.chart_parts import LOSS_TITLE, completed, flops_axis, level_color, log_scale


def frontier(fits: dict) -> pl.DataFrame:
    """Each arm's predicted loss at its compute-optimal allocation, at its ladder's budgets."""
    rows = [
        {"arm": arm, "flops": row["flops"], "loss": row["approach3"]["loss"]}
        for arm, arm_fits in fits["arms"].items()
        for row in arm_fits.get("ladder") or []
        if isinstance(row.get("approach3"), dict) and "loss" in row["approach3"]
    ]
    return pl.DataFrame(rows, schema={"arm": pl.String, "flops": pl.Float64, "loss": pl.Float64})


def draw(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    column = fits["arm_column"]
    done = completed(runs).with_columns(arm=pl.col(column).cast(pl.String)) if column in runs.columns else None
    lines = frontier(fits)
    arms = list(fits["arms"])
    color = level_color("arm", arms, "arm", ordered=False)
    loss_values = [lines["loss"]] + ([done["loss"]] if done is not None else [])
    x = alt.X("flops:Q", scale=log_scale(lines["flops"]), axis=flops_axis("compute C (FLOPs)"))
    y = alt.Y("loss:Q", scale=log_scale(*loss_values), title=LOSS_TITLE)
    layers = [alt.Chart(lines).mark_line(strokeWidth=2, clip=True).encode(x=x, y=y, color=color, detail="arm:N")]
    if done is not None:
        points = alt.Chart(done.select("arm", "run_id", "flops", "loss")).mark_circle(size=45, opacity=0.8)
        layers.append(points.encode(x=x, y=y, color=color, tooltip=["arm:N", "run_id:N", "flops:Q", "loss:Q"]))
    chart = alt.layer(*layers).properties(
        width=470, height=300, title=alt.TitleParams("Each arm's runs and compute-optimal frontier", anchor="start")
    )
    caption = (
        "Each arm's runs (points: validation loss against training compute) and its loss at the compute-optimal "
        "allocation from its own Approach-3 law (lines), on the comparison's common yardstick."
    )
    return chart, caption
