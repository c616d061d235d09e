"""Training curves against tokens and against compute: each WSD trunk solid, its cooldown branches
dashed and thinner, coloured by model size, smoothed and thinned so that the runs can be told apart."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.report.chart_parts import (
    COUNT_FORMAT,
    FLOPS_FORMAT,
    SIZE_COLUMN,
    axis_note,
    count_axis,
    flops_axis,
    log_scale,
    size_color,
    size_levels,
    with_levels,
)

# Points kept per curve (log-spaced in tokens), and the smoothing window's half-width as a fraction of the tokens.
POINTS, WINDOW = 80, 0.04
TRUNK, BRANCH, RUN = "WSD trunk (stable phase)", "cooldown branch", "run"
STYLE = {TRUNK: ([1, 0], 2.0), RUN: ([1, 0], 1.5), BRANCH: ([4, 2], 1.1)}


def kinds(curves: pl.DataFrame, runs: pl.DataFrame) -> dict[str, str]:
    """Each curve's kind: the trunk of a WSD training run, one of its cooldown branches (a run of the
    table whose training run is another), or a run of its own."""
    branch_of = {}
    if "training_run" in runs.columns:
        branch_of = {r: t for r, t in zip(runs["run_id"], runs["training_run"]) if t is not None and t != r}
    trunks = set(branch_of.values())
    return {r: BRANCH if r in branch_of else TRUNK if r in trunks else RUN for r in curves["run_id"].unique()}


def smoothed(curve: pl.DataFrame) -> pl.DataFrame:
    """One run's curve: each point's loss the mean over the points within a factor 1 ± WINDOW of its
    tokens (a window that widens with the tokens, as the axis does), at up to POINTS log-spaced tokens
    (its last included)."""
    curve = curve.sort("tokens")
    tokens = curve["tokens"].to_numpy().astype(float)
    loss = np.concatenate([[0.0], np.cumsum(curve["train_loss"].to_numpy())])
    low = np.searchsorted(tokens, tokens * (1 - WINDOW), side="left")
    high = np.searchsorted(tokens, tokens * (1 + WINDOW), side="right")
    curve = curve.with_columns(train_loss=pl.Series((loss[high] - loss[low]) / (high - low)))
    if curve.height <= POINTS or tokens[0] <= 0:
        return curve
    keep = np.unique(np.searchsorted(tokens, np.geomspace(tokens[0], tokens[-1], POINTS)).clip(0, curve.height - 1))
    return curve[np.append(keep, curve.height - 1).tolist()].unique("step", keep="first", maintain_order=True)


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    kind_of = kinds(curves, runs)
    labels = size_levels(curves)
    frame = pl.concat([smoothed(c) for _, c in curves.group_by("run_id", maintain_order=True)])
    frame = with_levels(frame, "params", SIZE_COLUMN, labels).with_columns(
        pl.col("run_id").replace_strict(kind_of, return_dtype=pl.String).alias("kind")
    )
    present = [k for k in (TRUNK, BRANCH, RUN) if k in set(frame["kind"])]
    dash = alt.StrokeDash(
        "kind:N",
        title="curve",
        scale=alt.Scale(domain=present, range=[STYLE[k][0] for k in present]),
        sort=present,
        legend=alt.Legend(symbolType="stroke"),
    )
    width = alt.StrokeWidth(
        "kind:N", scale=alt.Scale(domain=present, range=[STYLE[k][1] for k in present]), sort=present, legend=None
    )
    tooltip = [
        alt.Tooltip("run_id:N", title="run"),
        alt.Tooltip("kind:N", title="curve"),
        alt.Tooltip("step:Q"),
        alt.Tooltip("tokens:Q", format=COUNT_FORMAT),
        alt.Tooltip("flops:Q", format=FLOPS_FORMAT, title="C (FLOPs)"),
        alt.Tooltip("train_loss:Q", format=".4f", title="training loss (smoothed)"),
    ]
    panels = []
    for column, axis in (("tokens", count_axis("tokens trained")), ("flops", flops_axis())):
        panels.append(
            alt.Chart(frame)
            .mark_line(opacity=0.85)
            .encode(
                x=alt.X(f"{column}:Q", scale=log_scale(frame[column]), axis=axis),
                y=alt.Y("train_loss:Q", scale=log_scale(frame["train_loss"]), title="training loss (nats/token)"),
                color=size_color(labels),
                strokeDash=dash,
                strokeWidth=width,
                detail="run_id:N",
                tooltip=tooltip,
            )
            .properties(width=380, height=300)
        )
    counted = {k: sum(v == k for v in kind_of.values()) for k in present}
    caption = (
        f"Training loss of {len(kind_of)} curves ("
        + ", ".join(f"{k}: {n}" for k, n in counted.items())
        + f") against tokens and against compute, coloured by N ({len(labels)} sizes); each curve a running "
        f"mean over ±{WINDOW:.0%} of its tokens, shown at up to {POINTS} points. {axis_note(fits)}."
    )
    chart = alt.hconcat(*panels).properties(title=alt.TitleParams("Training curves", subtitle=axis_note(fits)))
    return chart, caption
