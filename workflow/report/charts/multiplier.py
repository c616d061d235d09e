"""A study with arms: each arm's compute multiplier against the baseline, m(C), with its paired 95% band,
the range every arm trained shaded and the target budgets marked. m > 1: the arm reaches at C a loss the
baseline needs m times the compute for (docs/methods.md, "Comparing arms")."""

from __future__ import annotations

import altair as alt
import polars as pl

from workflow.report.chart_parts import flops_axis, level_color, range_dash, target_marks, trained_shade
from workflow.report.charts.decision import decades

WIDTH, HEIGHT = 470, 300


def curves(fits: dict) -> pl.DataFrame:
    """One row per arm and point of its multiplier curve, with the paired band and whether the point
    lies in the range every arm trained."""
    low, high = fits["comparison"]["trained_range"]
    rows = []
    for arm, section in fits["comparison"]["arms"].items():
        curve = section["curve"]
        for c, m, lo, hi in zip(curve["flops"], curve["multiplier"], curve["lower"], curve["upper"]):
            if m is None:
                continue
            rows.append(
                {
                    "arm": arm,
                    "flops": c,
                    "multiplier": m,
                    "low": lo,
                    "high": hi,
                    "range": "trained range" if low * 0.999 <= c <= high * 1.001 else "extrapolated",
                }
            )
    schema = {"arm": pl.String, "flops": pl.Float64, "multiplier": pl.Float64, "low": pl.Float64, "high": pl.Float64}
    return pl.DataFrame(rows, schema={**schema, "range": pl.String})


def targets(fits: dict) -> list[float]:
    """The target budgets (fit.predict_flops) of the baseline's own fit."""
    return [row["flops"] for row in fits["arms"][fits["baseline"]].get("predictions") or []]


def draw(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    data = curves(fits)
    arms = data["arm"].unique(maintain_order=True).to_list()
    color = level_color("arm", arms, "arm", ordered=False, orient="bottom", symbolType="stroke", symbolStrokeWidth=3)
    values = pl.concat([data["multiplier"], data["low"].drop_nulls(), data["high"].drop_nulls()])
    values = values.filter(values > 0)
    # The band may run off far past the data; the axis follows the lines, within a factor of 10.
    y_low = max(float(values.min()), float(data["multiplier"].min()) / 10) / 1.2
    y_high = min(float(values.max()), float(data["multiplier"].max()) * 10) * 1.2
    y_low, y_high = min(y_low, 0.8), max(y_high, 1.25)  # 1 is always on the axis
    x_low, x_high = float(data["flops"].min()), float(data["flops"].max())
    x = alt.X(
        "flops:Q",
        scale=alt.Scale(type="log", nice=False, domain=[x_low, x_high]),
        axis=flops_axis("compute C (FLOPs)", values=decades(x_low, x_high)),
    )
    y = alt.Y(
        "multiplier:Q",
        scale=alt.Scale(type="log", nice=False, domain=[y_low, y_high]),
        axis=alt.Axis(title=f"compute multiplier against {fits['baseline']}", **{"labelOverlap": "greedy"}),
    )
    low, high = fits["comparison"]["trained_range"]
    shade = trained_shade(low, high)
    band = (
        alt.Chart(data.drop_nulls(["low", "high"]).with_columns(band=pl.col("arm")))
        .mark_area(opacity=0.15, clip=True)
        .encode(x=x, y="low:Q", y2="high:Q", fill=alt.Fill("band:N", scale=color.to_dict()["scale"], legend=None))
    )
    line = (
        alt.Chart(data)
        .mark_line(strokeWidth=2, clip=True)
        .encode(
            x=x,
            y=y,
            color=color,
            strokeDash=range_dash(),
            detail="arm:N",
            tooltip=[
                alt.Tooltip("arm:N"),
                alt.Tooltip("flops:Q", title="C (FLOPs)", format=".2e"),
                alt.Tooltip("multiplier:Q", format=".3g"),
                alt.Tooltip("low:Q", title="95% low", format=".3g"),
                alt.Tooltip("high:Q", title="95% high", format=".3g"),
            ],
        )
    )
    one = alt.Chart(pl.DataFrame({"m": [1.0]})).mark_rule(color="#222").encode(y="m:Q")
    layers = [shade, band, line, one, *target_marks(targets(fits))]
    chart = (
        alt.layer(*layers)
        .resolve_legend(fill="independent", color="independent")
        .properties(width=WIDTH, height=HEIGHT, title=alt.TitleParams("Compute multiplier m(C)", anchor="start"))
    )
    verdicts = " ".join(section["verdict"] + "." for section in fits["comparison"]["arms"].values())
    caption = (
        f"Each arm's compute multiplier against the baseline {fits['baseline']}: the compute the baseline needs "
        "to reach the loss the arm reaches at its compute-optimal allocation at C, over C (above 1: the arm is "
        "the more compute-efficient), with the paired bootstrap's 95% band; the grey span is the range every "
        f"arm trained, lines dashed past it; dotted rules mark the target budgets. {verdicts}"
    )
    return chart, caption
