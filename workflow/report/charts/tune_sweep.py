"""The tune stage's sweep: validation loss against the learning rate for each shape, the chosen point
of each, and beside it the chosen values against N with the fitted rule value*(N) = c N^k."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.report.chart_parts import COUNT_FORMAT, HEIGHT, count_axis, log_scale, num, ordered_colors
from workflow.tune.select import rule_value

SWEEP_WIDTH = 380
APPLIED = {
    "best": "A swept shape trains with its best point's values; shapes left out of the sweep take the rule.",
    "rule": "Every shape trains with the rule's values (tune.apply: rule).",
}


def swept_key(tuning: dict) -> str:
    """The setting on the x axis: the learning rate when it is swept, else the first swept setting."""
    return "lr" if "lr" in tuning["swept"] else tuning["swept"][0]


def draw(sweep: pl.DataFrame, tuning: dict) -> tuple[alt.Chart, str]:
    key = swept_key(tuning)
    others = [k for k in tuning["swept"] if k != key]
    # The other swept settings held at each shape's best sweep point: one line per shape.
    best = {row["shape"]: row for row in sweep.filter(pl.col("chosen")).iter_rows(named=True)}
    keep = [all(row[k] == best[row["shape"]][k] for k in others) for row in sweep.iter_rows(named=True)]
    frame = sweep.filter(pl.Series(keep) & (pl.col("status") == "completed") & pl.col("loss").is_not_null())
    shape_order = [s for s, _ in sorted(tuning["shapes"].items(), key=lambda item: item[1]["params"])]
    color = alt.Color(
        "shape:N",
        sort=shape_order,
        title="shape",
        scale=alt.Scale(domain=shape_order, range=ordered_colors(len(shape_order))),
    )
    tooltip = [
        alt.Tooltip("run_id:N", title="sweep run"),
        alt.Tooltip("params:Q", title="N", format=COUNT_FORMAT),
        alt.Tooltip(f"{key}:Q", title=key, format=".3g"),
        alt.Tooltip("loss:Q", title="validation loss", format=".4f"),
    ]
    x = alt.X(f"{key}:Q", scale=log_scale(frame[key]), title=f"{key} (swept)")
    lines = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=x, y=alt.Y("loss:Q", scale=alt.Scale(zero=False), title="validation loss"), color=color, tooltip=tooltip
        )
    )
    diamonds = (
        alt.Chart(frame.filter(pl.col("chosen")))
        .mark_point(size=260, shape="diamond", filled=False, strokeWidth=2.5)
        .encode(x=x, y="loss:Q", color=color, tooltip=tooltip)
    )
    left = (lines + diamonds).properties(
        title=f"Validation loss against {key}; diamonds: chosen", width=SWEEP_WIDTH, height=HEIGHT
    )

    chosen = pl.DataFrame(
        [
            {"shape": s, "params": e["params"], "value": float(e["values"][key]), "source": e["source"][key]}
            for s, e in tuning["shapes"].items()
        ]
    )
    n_axis = alt.X("params:Q", scale=log_scale(chosen["params"]), axis=count_axis("non-embedding parameters N"))
    y_axis = alt.Y("value:Q", scale=log_scale(chosen["value"]), title=f"chosen {key}")
    points = (
        alt.Chart(chosen)
        .mark_point(size=120, filled=True)
        .encode(
            x=n_axis,
            y=y_axis,
            color=color,
            shape=alt.Shape("source:N", title="value from"),
            tooltip=[alt.Tooltip("shape:N"), alt.Tooltip("params:Q", title="N", format=COUNT_FORMAT),
                     alt.Tooltip("value:Q", title=key, format=".3g"), alt.Tooltip("source:N", title="from")],
        )
    )  # fmt: skip
    right = points
    rule = tuning["rules"].get(key)
    law = rule_text = "no rule in N (fewer than two swept shapes)"
    if rule:
        grid = np.geomspace(chosen["params"].min(), chosen["params"].max(), 50)
        line = pl.DataFrame({"params": grid, "value": rule_value(rule, grid)})
        right = alt.Chart(line).mark_line(color="black", strokeDash=[4, 3]).encode(x=n_axis, y=y_axis) + points
        law = f"fitted rule {key}*(N) = {num(rule['coefficient'], 3)} N^{num(rule['exponent'], 3)}"
        rule_text = f"{law} over {rule['shapes']} swept shapes (log RMS {num(rule['log_rms'], 2)})"
    right = right.properties(title=f"Chosen {key} against N; dashed: {law}", width=SWEEP_WIDTH, height=HEIGHT)

    picks = "; ".join(
        f"{s}: {key} {num(float(e['values'][key]), 3)} ({e['source'][key]})" for s, e in tuning["shapes"].items()
    )
    warnings = f" Warnings: {' '.join(tuning['warnings'])}" if tuning["warnings"] else ""
    tokens = sorted(set(sweep["tokens"].to_list()))
    values = ", ".join(f"{v:g}" for v in tuning["values"][key])
    caption = (
        f"Tune sweep: {sweep.height} sweep points over {key} values {values} "
        f"at {', '.join(f'{t:,}' for t in tokens)} tokens; diamonds mark each shape's lowest validation loss. "
        f"{APPLIED[tuning.get('apply', 'best')]} Trained with: {picks}. The {rule_text}.{warnings}"
    )
    return alt.hconcat(left, right).resolve_scale(color="shared"), caption
