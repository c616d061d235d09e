"""The chart that decides: tokens per parameter against compute, every allocating approach with its 95%
band, the trained range shaded and the target budgets marked (as Besiroglu et al. 2024, Figure 1).

Read from the look-up ladder of fits.json (budgets 1 and 3 times each power of ten, bootstrapped like the
predictions), so the band is the bootstrap's and not a reconstruction. Each approach's line is solid
inside the trained range and dashed past it, where it is an extrapolation.
"""

from __future__ import annotations

import math

import altair as alt
import polars as pl

from workflow.report import CHARTS
from workflow.report.chart_parts import (
    axis_note,
    count_axis,
    fitted,
    flops_axis,
    level_color,
    message_chart,
    range_dash,
    target_marks,
    trained_shade,
)
from workflow.report.units import flops

WIDTH, HEIGHT = 440, 290
BAND_REACH = 10.0


def decades(low: float, high: float) -> list[float]:
    """The powers of ten from ``low`` to ``high``: the ticks of a log axis, one label per decade."""
    return [10.0**e for e in range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1)]


def frame(fits: dict) -> pl.DataFrame:
    """One row per approach and ladder budget: tokens per parameter, its interval, and whether the
    budget lies inside the trained range."""
    low, high = fits["data"].get("smallest_flops"), fits["data"]["largest_flops"]
    rows = []
    for approach, _ in fitted(fits, allocates=True):
        for row in fits.get("ladder") or []:
            point = row.get(approach.name)
            if not isinstance(point, dict) or "tokens_per_parameter" not in point:
                continue
            if (point.get("withheld") or {}).get("tokens_per_parameter"):
                continue
            ci = (point.get("intervals") or {}).get("tokens_per_parameter") or [None, None]
            inside = (low is None or row["flops"] >= low * 0.999) and row["flops"] <= high * 1.001
            rows.append(
                {
                    "approach": approach.title,
                    "flops": row["flops"],
                    "tokens_per_parameter": point["tokens_per_parameter"],
                    "low": ci[0],
                    "high": ci[1],
                    "range": "trained range" if inside else "extrapolated",
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "approach": pl.String,
            "flops": pl.Float64,
            "tokens_per_parameter": pl.Float64,
            "low": pl.Float64,
            "high": pl.Float64,
            "range": pl.String,
        },
    )


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    data = frame(fits)
    if data.height == 0:
        text = "Tokens per parameter against compute: no approach with an allocation law was fitted"
        return message_chart(CHARTS["decision"], text, fits), text + "."
    approaches = data["approach"].unique(maintain_order=True).to_list()
    low_x, high_x = data["flops"].min(), data["flops"].max()
    x = alt.X(
        "flops:Q",
        scale=alt.Scale(type="log", nice=False, domain=[low_x, high_x]),
        axis=flops_axis("compute C (FLOPs)", values=decades(low_x, high_x)),
    )
    # The axis follows the lines; a band wider than BAND_REACH times them is cut at the edge (clipped)
    # rather than squeezing every line flat.
    low_y, high_y = data["tokens_per_parameter"].min() / BAND_REACH, data["tokens_per_parameter"].max() * BAND_REACH
    y = alt.Y(
        "tokens_per_parameter:Q",
        scale=alt.Scale(type="log", nice=False, domain=[low_y, high_y]),
        axis=count_axis("tokens per parameter D_opt / N_opt", values=decades(low_y, high_y)),
    )
    color = level_color(
        "approach", approaches, "approach", ordered=False, orient="bottom", symbolType="stroke", symbolStrokeWidth=3
    )
    shade = trained_shade(fits["data"].get("smallest_flops"), fits["data"]["largest_flops"])
    band = (
        # Its own field (same values, same colours, no legend): a legend merged with the lines' would vanish.
        alt.Chart(data.drop_nulls(["low", "high"]).with_columns(band=pl.col("approach")))
        .mark_area(opacity=0.15, clip=True)
        # fill, not color: the legend is the lines' (at full opacity), the bands share their hues.
        .encode(
            x=x,
            y=alt.Y("low:Q"),
            y2="high:Q",
            fill=alt.Fill("band:N", scale=color.to_dict()["scale"], legend=None),
        )
    )
    line = (
        alt.Chart(data)
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=y,
            color=color,
            strokeDash=range_dash(),
            detail="approach:N",
            tooltip=[
                alt.Tooltip("approach:N"),
                alt.Tooltip("flops:Q", title="C (FLOPs)", format=".2e"),
                alt.Tooltip("tokens_per_parameter:Q", title="tokens per parameter", format=".3~s"),
                alt.Tooltip("low:Q", title="95% low", format=".3~s"),
                alt.Tooltip("high:Q", title="95% high", format=".3~s"),
            ],
        )
    )
    layers = [shade, band, line, *target_marks([row["flops"] for row in fits.get("predictions") or []])]
    # No subtitle: the axis note is in the caption beneath the first screen's answer, and a long one
    # would widen the chart into the answer's table.
    title = alt.TitleParams("Tokens per parameter at the compute-optimal allocation", anchor="start")
    # The bands' fill keeps its own (hidden) legend: merged with the lines' colour legend, it hid it.
    chart = (
        alt.layer(*layers)
        .resolve_legend(fill="independent", color="independent")
        .properties(width=WIDTH, height=HEIGHT, title=title)
    )
    first = data.sort("flops").group_by("approach", maintain_order=True).agg(pl.col("tokens_per_parameter").last())
    ends = ", ".join(f"{a} {v:.3g}" for a, v in first.iter_rows())
    caption = (
        "Tokens per parameter D_opt/N_opt of each approach's compute-optimal allocation against compute C, "
        "with its bootstrap 95% band, at budgets 1 and 3 times each power of ten (the look-up table). The grey "
        "span is the trained range; lines are dashed past it; dotted rules mark the target budgets "
        f"(fit.predict_flops). At the largest budget drawn ({flops(data['flops'].max())} FLOPs): {ends}. "
        f"{axis_note(fits)}."
    )
    return chart, caption
