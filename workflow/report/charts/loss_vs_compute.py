"""Loss against compute: the runs, the compute frontier and every approach's loss against compute."""

from __future__ import annotations

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.references import published_law_at_optimum
from workflow.fit.registry import BY_NAME
from workflow.report.chart_parts import (
    HEIGHT,
    LOSS_TITLE,
    SIZE_COLUMN,
    TOOLTIP,
    WIDTH,
    axis_note,
    completed,
    fitted,
    flops_axis,
    log_scale,
    num,
    size_color,
    size_levels,
    with_levels,
)


def label(approach) -> str:
    """How an approach's loss against compute is drawn: a law of N and D at its optimum, or a law in C."""
    return "L(N_opt, D_opt)" if approach.law else "L(C)"


def draw(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    sizes = size_levels(done)
    frontier = fits["frontier"]  # the chart's title and caption quote the frontier's law
    c = np.geomspace(done["flops"].min(), done["flops"].max(), 64)
    layers = []
    bands = list(((fits.get("bootstrap") or {}).get("bands") or {}).items())
    drawn = fitted(fits, compute_curve=True)
    lines = [
        pl.DataFrame({"flops": c, "loss": a.compute_curve(s, c), "curve": f"{a.title} {label(a)}"}) for a, s in drawn
    ]
    references = []
    loss_range = (float(done["loss"].min()) / 2, float(done["loss"].max()) * 2)
    for name, law in (fits.get("references") or {}).get("laws", {}).items():
        if {"E", "A", "B", "alpha", "beta"} <= set(law):
            loss = published_law_at_optimum(law, c)
            if loss.min() >= loss_range[0] and loss.max() <= loss_range[1]:
                lines.append(pl.DataFrame({"flops": c, "loss": loss, "curve": f"published: {name}"}))
                references.append(name)
    kaplan = (fits.get("references") or {}).get("kaplan_frontier")
    if kaplan:
        # Kaplan et al.'s L(C_min) is in their units (WebText2, GPT-2 tokens, non-embedding
        # compute): drawn only where it lands among this study's losses.
        loss = (c / kaplan["C_c_flops"]) ** -kaplan["alpha_C"]
        if loss.min() >= loss_range[0] and loss.max() <= loss_range[1]:
            lines.append(pl.DataFrame({"flops": c, "loss": loss, "curve": "published: Kaplan et al. 2020 L(C)"}))
            references.append("Kaplan et al. 2020 L(C)")
    curves_frame = pl.concat(lines)
    curve_names = list(dict.fromkeys(curves_frame["curve"]))
    y_scale = log_scale(done["loss"], curves_frame["loss"])
    x = alt.X("flops:Q", scale=log_scale(c), axis=flops_axis())
    for _, band in bands:
        band_frame = pl.DataFrame(
            {"flops": band["flops"], "lower": band["loss_lower"], "upper": band["loss_upper"]}
        ).filter(pl.col("flops").is_between(c[0], c[-1]))
        layers.append(
            alt.Chart(band_frame)
            .mark_area(opacity=0.2, color="#555", clip=True)
            .encode(x=x, y=alt.Y("lower:Q", scale=y_scale, title=LOSS_TITLE), y2="upper:Q")
        )
    layers.append(
        alt.Chart(with_levels(done, "params", SIZE_COLUMN, sizes))
        .mark_circle(size=70, opacity=0.85)
        .encode(x=x, y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE), color=size_color(sizes), tooltip=TOOLTIP)
    )
    layers.append(
        alt.Chart(curves_frame)
        .mark_line(clip=True)
        .encode(
            x="flops:Q",
            y="loss:Q",
            strokeDash=alt.StrokeDash(
                "curve:N",
                title="curve",
                scale=alt.Scale(domain=curve_names),
                sort=curve_names,
                legend=alt.Legend(labelLimit=360, symbolType="stroke"),
            ),
            detail="curve:N",
            color=alt.value("black"),
        )
    )
    caption = (
        f"Validation loss against training compute for the {done.height} completed runs, coloured by "
        f"N. The frontier power law is L(C) = {num(frontier['A_C'])} · C^-{num(frontier['gamma'])}. Each "
        f"approach's loss against compute is drawn ({', '.join(f'{a.title} {label(a)}' for a, _ in drawn)}; a law "
        f"of N and D at its compute-optimal allocation)"
        + (f", with the bootstrap 95% band of {', '.join(BY_NAME[name].title for name, _ in bands)}" if bands else "")
        + ". "
        + (
            f"Published laws drawn for comparison: {', '.join(references)}. "
            if references
            else "Published frontiers (Kaplan et al. 2020, Hoffmann et al. 2022) fall outside these losses "
            "(other data and tokenizers) and are not drawn. "
        )
        + f"{axis_note(fits)}."
    )
    title = alt.TitleParams(
        f"Loss against compute; frontier L(C) = {num(frontier['A_C'], 3)}·C^-{num(frontier['gamma'], 3)}",
        subtitle=axis_note(fits),
    )
    return alt.layer(*layers).properties(title=title, width=WIDTH, height=HEIGHT), caption
