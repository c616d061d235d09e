"""Compute-optimal N and D against compute: every approach with an allocation law, its optima and
predictions, and reference slopes."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.allocation import allocate
from workflow.fit.registry import APPROACHES
from workflow.report.chart_parts import (
    BEYOND_DASH,
    COUNT_FORMAT,
    FLOPS_FORMAT,
    axis_note,
    completed,
    count_axis,
    curve_grid,
    fitted,
    flops_axis,
    level_color,
    log_scale,
    skipped,
    split_at,
    with_interval,
)

REFERENCES = (("Kaplan et al. 2020 (a = 0.73)", 0.73, [8, 4]), ("Hoffmann et al. 2022 (a = 0.5)", 0.5, [2, 3]))
PREDICTION = "prediction (bars: 95% interval)"
# Approach 1 fits its law to many envelope points, Approach 2 to a few IsoFLOP minima: the few are drawn
# large and in another shape, so that the many do not hide them.
POINT_STYLE = {"approach1": ("circle", 20), "approach2": ("diamond", 170)}
OTHER_STYLE = ("square", 90)
PREDICTION_STYLE = ("cross", 160)
SIDE_BY_SIDE = 1.25


def optima_points(laws: list) -> list[dict]:
    """Optima of approaches that fit their law to optima, where their law was fitted."""
    return [
        {"flops": p["flops"], "n_opt": p["n_opt"], "d_opt": p["d_opt"], "approach": approach.title,
         "point": f"{approach.title} optima"}
        for approach, section in laws
        for p in section.get("optima", [])
        if p.get("in_fit", True)
    ]  # fmt: skip


def prediction_points(fits: dict, laws: list) -> list[dict]:
    """Each approach's N_opt and D_opt at the configured prediction budgets, with their intervals
    (a quantity the page withholds as not identified is left out here too)."""
    rows = []
    for row in fits.get("predictions") or []:
        for i, (approach, _) in enumerate(laws):
            point = row.get(approach.name)
            if not isinstance(point, dict) or "n_opt" not in point:
                continue
            withheld, ci = point.get("withheld") or {}, point.get("intervals") or {}
            # Drawn side by side (a few percent apart in C), so that the approaches' bars do not hide each other.
            entry = {"flops": row["flops"] * SIDE_BY_SIDE ** (i - (len(laws) - 1) / 2), "budget": row["flops"]}
            entry |= {"approach": approach.title, "point": PREDICTION}
            for q in ("n_opt", "d_opt"):
                entry[q] = None if q in withheld else point[q]
                low_high = ci.get(q) if q not in withheld else None
                entry[f"{q}_low"], entry[f"{q}_high"] = low_high or (None, None)
            rows.append(entry)
    return rows


def law_lines(laws: list, c: np.ndarray, trained: tuple[float, float]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each allocation law over the chart's range: solid over the trained compute, dashed beyond."""
    frame = pl.concat([pl.DataFrame({"flops": c, **allocate(s, c), "approach": a.title}) for a, s in laws])
    solid, dashed = split_at(frame, "flops", *trained)
    return solid, dashed


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    laws = fitted(fits, allocates=True)
    points = [p | {"budget": p["flops"]} for p in optima_points(laws)] + prediction_points(fits, laws)
    trained = (float(done["flops"].min()), float(done["flops"].max()))
    low = min([trained[0]] + [p["flops"] for p in points])
    # Far enough to reach the largest prediction budget, and never less than a decade past the runs.
    high = max([trained[1] * 10] + [p["flops"] for p in points]) * 1.3
    c = curve_grid(low, high, *trained, points=64)
    solid, dashed = law_lines(laws, c, trained)
    notes = [f"{a.title}: a = {with_interval(fits, a.name, 'a', s['a'], 3)}" for a, s in laws]
    notes += [
        f"{a.title}: not fitted ({skipped(fits.get(a.name))})"
        for a in APPROACHES
        if a.allocates and skipped(fits.get(a.name))
    ]
    # Reference slopes, anchored at the first approach's N_opt in the middle of the trained range.
    mid = float(np.sqrt(trained[0] * trained[1]))
    anchor = allocate(laws[0][1], [mid])
    references = pl.concat(
        [
            pl.DataFrame({"flops": c, "n_opt": anchor["n_opt"][0] * (c / mid) ** slope, "reference": label})
            for label, slope, _ in REFERENCES
        ]
    ).with_columns(d_opt=pl.col("flops") / (6 * pl.col("n_opt")))
    approaches = [a.title for a, _ in laws]
    color = level_color("approach", approaches, "approach (dashed past the runs)", ordered=False, symbolType="stroke")
    dots = pl.DataFrame(points, infer_schema_length=None) if points else None
    kinds = list(dict.fromkeys(p["point"] for p in points))
    styles = {f"{a.title} optima": POINT_STYLE.get(a.name, OTHER_STYLE) for a, _ in laws} | {
        PREDICTION: PREDICTION_STYLE
    }
    shape = alt.Shape(
        "point:N", title="points", scale=alt.Scale(domain=kinds, range=[styles[k][0] for k in kinds]), sort=kinds
    )
    # The same title as the shape's, so that the two make one legend whose symbols have both.
    size = alt.Size(
        "point:N", title="points", scale=alt.Scale(domain=kinds, range=[styles[k][1] for k in kinds]), sort=kinds
    )
    dash = alt.StrokeDash(
        "reference:N",
        title="reference slope",
        scale=alt.Scale(domain=[r[0] for r in REFERENCES], range=[r[2] for r in REFERENCES]),
        legend=alt.Legend(symbolType="stroke", labelLimit=320),
    )
    bands = ((fits.get("bootstrap") or {}).get("bands") or {}).values()
    panels = []
    for column, title in (("n_opt", "compute-optimal parameters N_opt"), ("d_opt", "compute-optimal tokens D_opt")):
        x = alt.X("flops:Q", scale=log_scale(c), axis=flops_axis("compute C (FLOPs)"))
        y = alt.Y(f"{column}:Q", scale=alt.Scale(type="log"), axis=count_axis(title))
        layers = []
        for band in bands:
            frame = pl.DataFrame(
                {"flops": band["flops"], "lower": band[f"{column}_lower"], "upper": band[f"{column}_upper"]}
            ).filter(pl.col("flops").is_between(c[0], c[-1]))
            layers.append(
                alt.Chart(frame)
                .mark_area(opacity=0.2, color="#555", clip=True)
                .encode(x=x, y=alt.Y("lower:Q", scale=alt.Scale(type="log"), axis=count_axis(title)), y2="upper:Q")
            )
        layers += [
            alt.Chart(references).mark_line(color="#777", strokeWidth=1, clip=True).encode(x=x, y=y, strokeDash=dash),
            alt.Chart(solid).mark_line(strokeWidth=2.2, clip=True).encode(x=x, y=y, color=color),
            alt.Chart(dashed)
            .mark_line(strokeWidth=2.2, strokeDash=BEYOND_DASH, clip=True)
            .encode(x=x, y=y, color=color, detail="approach:N"),
        ]
        if dots is not None:
            shown = dots.filter(pl.col(column).is_not_null())
            bars = shown.filter(pl.col(f"{column}_low").is_not_null()) if f"{column}_low" in shown.columns else None
            if bars is not None and bars.height:
                layers.append(
                    alt.Chart(bars)
                    .mark_rule(strokeWidth=1.2, clip=True)
                    .encode(x=x, y=alt.Y(f"{column}_low:Q"), y2=f"{column}_high:Q", color=color)
                )
            layers.append(
                alt.Chart(shown)
                .mark_point(filled=True, opacity=0.85, clip=True, stroke="black", strokeWidth=0.4)
                .encode(
                    x=x,
                    y=y,
                    color=color,
                    shape=shape,
                    size=size,
                    tooltip=[
                        alt.Tooltip("approach:N"),
                        alt.Tooltip("point:N", title="point"),
                        alt.Tooltip("budget:Q", format=FLOPS_FORMAT, title="C"),
                        alt.Tooltip(f"{column}:Q", format=COUNT_FORMAT),
                    ],
                )
            )
        panels.append(alt.layer(*layers).properties(width=380, height=300))
    largest = max((p["budget"] for p in points if p["point"] == PREDICTION), default=None)
    caption = (
        "Compute-optimal parameters and tokens against compute from each approach, solid over the compute "
        "of the runs and dashed beyond"
        + (f" to the largest prediction budget ({largest:.3g} FLOPs; crosses: the predictions)" if largest else "")
        + ", with reference slopes for Kaplan et al. (N_opt ∝ C^0.73) and Hoffmann et al. (N_opt ∝ C^0.5). "
        + "; ".join(notes)
        + f". Brackets: bootstrap 95% intervals. {axis_note(fits)}."
    )
    chart = alt.hconcat(*panels).properties(
        title=alt.TitleParams("Compute-optimal allocation", subtitle=axis_note(fits))
    )
    return chart, caption
