"""Compute-optimal N and D against compute: every approach with an allocation law, and reference slopes."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.allocation import allocate
from workflow.fit.registry import APPROACHES
from workflow.report.chart_parts import (
    axis_note,
    completed,
    fitted,
    log_scale,
    skipped,
    with_interval,
)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    laws = fitted(fits, allocates=True)
    # Optima of approaches that fit their law to optima (Approach 1's envelope, Approach 2's
    # IsoFLOP minima), where their law was fitted.
    points = [
        {"flops": p["flops"], "n_opt": p["n_opt"], "d_opt": p["d_opt"], "approach": approach.title}
        for approach, section in laws
        for p in section.get("optima", [])
        if p.get("in_fit", True)
    ]
    low = min([float(done["flops"].min())] + [p["flops"] for p in points])
    c = np.geomspace(low, done["flops"].max() * 10, 48)
    rows, notes = [], []
    for approach, section in laws:
        line = allocate(section, c)
        rows.append(pl.DataFrame({"flops": c, **line, "approach": approach.title}))
        notes.append(f"{approach.title}: a = {with_interval(fits, approach.name, 'a', section['a'], 3)}")
    notes += [
        f"{a.title}: not fitted ({skipped(fits.get(a.name))})"
        for a in APPROACHES
        if a.allocates and skipped(fits.get(a.name))
    ]
    # Reference slopes, anchored at the first approach's N_opt in the middle of the range.
    mid = float(np.sqrt(c[0] * c[-1]))
    anchor = allocate(laws[0][1], [mid])
    for label, slope in (("Kaplan et al. 2020 (a = 0.73)", 0.73), ("Hoffmann et al. 2022 (a = 0.5)", 0.5)):
        n_ref = anchor["n_opt"][0] * (c / mid) ** slope
        rows.append(
            pl.DataFrame({"flops": c, "n_opt": n_ref, "d_opt": c / (6 * n_ref), "approach": f"reference: {label}"})
        )
    lines = pl.concat(rows)
    bands = ((fits.get("bootstrap") or {}).get("bands") or {}).values()
    panels = []
    for column, title in (("n_opt", "compute-optimal parameters N_opt"), ("d_opt", "compute-optimal tokens D_opt")):
        x = alt.X("flops:Q", scale=log_scale(c), title="compute C (FLOPs)", axis=alt.Axis(format=".1e"))
        y = alt.Y(f"{column}:Q", scale=alt.Scale(type="log"), title=title)
        layers = []
        for band in bands:
            frame = pl.DataFrame(
                {"flops": band["flops"], "lower": band[f"{column}_lower"], "upper": band[f"{column}_upper"]}
            ).filter(pl.col("flops").is_between(c[0], c[-1]))
            layers.append(
                alt.Chart(frame)
                .mark_area(opacity=0.2, color="#555", clip=True)
                .encode(x=x, y=alt.Y("lower:Q", scale=alt.Scale(type="log"), title=title), y2="upper:Q")
            )
        layers.append(
            alt.Chart(lines)
            .mark_line(clip=True)
            .encode(
                x=x,
                y=y,
                color=alt.Color("approach:N", title="approach", legend=alt.Legend(labelLimit=320)),
                strokeDash=alt.condition(
                    "indexof(datum.approach, 'reference') >= 0", alt.value([4, 3]), alt.value([1, 0])
                ),
            )
        )
        if points:
            layers.append(
                alt.Chart(pl.DataFrame(points))
                .mark_point(size=60, clip=True)
                .encode(
                    x="flops:Q",
                    y=f"{column}:Q",
                    color="approach:N",
                    tooltip=[
                        alt.Tooltip("approach:N"),
                        alt.Tooltip("flops:Q", format=".3s", title="C"),
                        alt.Tooltip(f"{column}:Q", format=".3s"),
                    ],
                )
            )
        panels.append(alt.layer(*layers).properties(width=380, height=300))
    caption = (
        "Compute-optimal parameters and tokens against compute from each approach, with reference slopes "
        "for Kaplan et al. (N_opt ∝ C^0.73) and Hoffmann et al. (N_opt ∝ C^0.5). "
        + "; ".join(notes)
        + f". Brackets: bootstrap 95% intervals. {axis_note(fits)}."
    )
    chart = alt.hconcat(*panels).properties(
        title=alt.TitleParams("Compute-optimal allocation", subtitle=axis_note(fits))
    )
    return chart, caption
