"""Report stage: Altair charts, their captions and an index page, readable with the network off.

Every chart is saved three times: self-contained HTML (Vega, Vega-Lite and
vega-embed inlined by vl-convert), SVG and PNG for papers. Each also gets a
caption in reStructuredText holding its numbers (``captions/<chart>.rst``),
which ``snakemake --report`` shows beside it. ``index.html`` inlines the
libraries once and embeds every chart, the fitted law and the compute-optimal
allocation in words and numbers, the parameters with their bootstrap
intervals, the predictions, the extrapolation check and the runs.

Everything is rebuilt from ``results/`` alone: the runs table, the curves
table and ``fits.json``.

The page records its own rendering, so that a headless browser can check it:
each chart's container gets ``data-rendered`` once Vega has drawn it, and the
body gets ``data-errors`` (console errors, uncaught errors, failed resource
loads) and ``data-report-status="done"`` when every chart has settled.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path

import altair as alt
import numpy as np
import polars as pl
import vl_convert

from workflow.fit import derived, predict_approach3
from workflow.fit import optimal_allocation as approach3_allocation  # report.optimal_allocation is the chart
from workflow.io import atomic_path, read_json, write_text_atomic

CHARTS = {
    "loss_vs_compute": "Loss against compute",
    "isoflop_profiles": "IsoFLOP profiles",
    "optimal_allocation": "Compute-optimal N and D",
    "loss_vs_params": "Loss against N for each D",
    "loss_vs_tokens": "Loss against D for each N",
    "residuals": "Residuals of the Approach-3 fit",
    "training_curves": "Training curves",
    "extrapolation": "Extrapolation check",
}
FORMATS = ("html", "svg", "png")
WIDTH, HEIGHT = 520, 340
TOOLTIP = [
    alt.Tooltip("run_id:N", title="run"),
    alt.Tooltip("params:Q", title="N", format=".3s"),
    alt.Tooltip("tokens:Q", title="D", format=".3s"),
    alt.Tooltip("flops:Q", title="C (FLOPs)", format=".3s"),
    alt.Tooltip("loss:Q", title="validation loss", format=".4f"),
]
LOSS_TITLE = "validation loss (nats/token)"


# --------------------------------------------------------------------------- small helpers


def log_scale(*columns) -> alt.Scale:
    """A log axis fitted to the data, not stretched to whole decades."""
    values = np.concatenate([np.asarray(c, dtype=float).ravel() for c in columns])
    values = values[np.isfinite(values) & (values > 0)]
    return alt.Scale(type="log", domain=[float(values.min()) / 1.15, float(values.max()) * 1.15], nice=False)


def axis_note(fits: dict) -> str:
    return f"C: '{fits.get('flop_convention')}' FLOPs; N: {fits.get('parameter_count')} parameters"


def num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def interval(fits: dict, name: str) -> list | None:
    """The bootstrap 95% interval of a named quantity, when the fit has one."""
    return (fits.get("bootstrap") or {}).get("intervals", {}).get(name)


def with_interval(fits: dict, name: str, value, digits: int = 4) -> str:
    ci = interval(fits, name)
    return f"{num(value, digits)} [{num(ci[0], digits)}, {num(ci[1], digits)}]" if ci else num(value, digits)


def completed(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.filter(pl.col("status") == "completed")


def skipped(section: dict | None) -> str | None:
    """Why an approach was not fitted (None when it was)."""
    if not section:
        return "not computed"
    return section.get("skipped")


def message_chart(title: str, text: str, fits: dict) -> alt.Chart:
    """A chart that says why there is nothing to draw (kept so that every file exists)."""
    frame = pl.DataFrame({"x": [0.0], "y": [0.0], "text": [text]})
    return (
        alt.Chart(frame)
        .mark_text(fontSize=14, color="#a40")
        .encode(
            x=alt.X("x:Q", axis=None),
            y=alt.Y("y:Q", axis=None),
            text="text:N",
        )
        .properties(title=alt.TitleParams(title, subtitle=axis_note(fits)), width=WIDTH, height=120)
    )


def not_drawn(name: str, section: dict | None, what: str, fits: dict) -> tuple[alt.Chart, str] | None:
    """The message chart and caption of a chart whose fit was skipped; None when it was fitted."""
    why = skipped(section)
    if not why:
        return None
    text = f"{what}: {why}"
    return message_chart(CHARTS[name], text, fits), text + "."


# --------------------------------------------------------------------------- charts


def loss_vs_compute(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    frontier = fits["frontier"]
    c = np.geomspace(done["flops"].min(), done["flops"].max(), 64)
    layers = []
    band = (fits.get("bootstrap") or {}).get("optimal_loss_band")
    lines = [
        pl.DataFrame({"flops": c, "loss": frontier["A_C"] * c ** -frontier["gamma"], "curve": "frontier power law"}),
        pl.DataFrame(
            {
                "flops": c,
                "loss": approach3_allocation(fits["approach3"], c)["loss"],
                "curve": "Approach 3 L(N_opt, D_opt)",
            }
        ),
    ]
    references = []
    loss_range = (float(done["loss"].min()) / 2, float(done["loss"].max()) * 2)
    for name, law in (fits.get("references") or {}).get("laws", {}).items():
        if {"E", "A", "B", "alpha", "beta"} <= set(law):
            loss = approach3_allocation({**law, **derived(law["alpha"], law["beta"], law["A"], law["B"])}, c)["loss"]
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
    fitted = pl.concat(lines)
    y_scale = log_scale(done["loss"], fitted["loss"])
    x = alt.X("flops:Q", scale=log_scale(c), title="training compute C (FLOPs)", axis=alt.Axis(format=".1e"))
    if band:
        band_frame = pl.DataFrame({"flops": band["flops"], "lower": band["lower"], "upper": band["upper"]}).filter(
            pl.col("flops").is_between(c[0], c[-1])
        )
        layers.append(
            alt.Chart(band_frame)
            .mark_area(opacity=0.2, color="#555", clip=True)
            .encode(x=x, y=alt.Y("lower:Q", scale=y_scale, title=LOSS_TITLE), y2="upper:Q")
        )
    layers.append(
        alt.Chart(done)
        .mark_circle(size=70, opacity=0.85)
        .encode(
            x=x,
            y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE),
            color=alt.Color("params:Q", scale=alt.Scale(type="log", scheme="viridis"), title="N"),
            tooltip=TOOLTIP,
        )
    )
    layers.append(
        alt.Chart(fitted)
        .mark_line(clip=True)
        .encode(
            x="flops:Q",
            y="loss:Q",
            strokeDash=alt.StrokeDash("curve:N", title="curve", legend=alt.Legend(labelLimit=360)),
            detail="curve:N",
            color=alt.value("black"),
        )
    )
    caption = (
        f"Validation loss against training compute for the {done.height} completed runs, coloured by "
        f"N. The frontier power law is L(C) = {num(frontier['A_C'])} · C^-{num(frontier['gamma'])}; the "
        f"Approach-3 law at its compute-optimal allocation is drawn"
        f"{' with its bootstrap 95% band' if band else ''}. "
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


def isoflop_profiles(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    a2 = fits.get("approach2")
    if missing := not_drawn("isoflop_profiles", a2, "Approach 2 (IsoFLOP) not fitted", fits):
        return missing
    budgets = a2["budgets"]
    done = (
        completed(runs)
        .filter(pl.col("compute_budget").is_not_null())
        .with_columns(
            pl.col("compute_budget").map_elements(lambda c: f"{c:.3g}", return_dtype=pl.String).alias("budget")
        )
    )
    curves, minima = [], []
    for b in budgets:
        if b.get("parabola") is None:
            continue
        lo, hi = b["log_n_range"]
        log_n = np.linspace(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), 48)
        c2, c1, c0 = b["parabola"]
        curves.append(
            pl.DataFrame(
                {
                    "params": np.exp(log_n),
                    "loss": c2 * log_n**2 + c1 * log_n + c0,
                    "budget": f"{b['compute_budget']:.3g}",
                }
            )
        )
        if b.get("kept"):
            minima.append({"params": b["n_opt"], "loss": b["loss_min"], "budget": f"{b['compute_budget']:.3g}"})
    color = alt.Color(
        "budget:N", title="budget C (FLOPs)", sort=sorted({f"{b['compute_budget']:.3g}" for b in budgets}, key=float)
    )
    fitted = pl.concat(curves) if curves else pl.DataFrame({"params": [], "loss": [], "budget": []})
    x_scale = log_scale(done["params"], fitted["params"]) if fitted.height else log_scale(done["params"])
    y_scale = log_scale(done["loss"])
    layers = [
        alt.Chart(done)
        .mark_circle(size=70)
        .encode(
            x=alt.X("params:Q", scale=x_scale, title="parameters N"),
            y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE),
            color=color,
            tooltip=TOOLTIP,
        ),
        alt.Chart(fitted).mark_line(strokeDash=[4, 2], clip=True).encode(x="params:Q", y="loss:Q", color=color),
    ]
    if minima:
        layers.append(
            alt.Chart(pl.DataFrame(minima))
            .mark_point(shape="diamond", size=160, filled=True)
            .encode(
                x="params:Q",
                y="loss:Q",
                color=color,
                tooltip=[
                    alt.Tooltip("budget:N", title="C"),
                    alt.Tooltip("params:Q", title="N_opt", format=".3s"),
                    alt.Tooltip("loss:Q", title="loss at minimum", format=".4f"),
                ],
            )
        )
    flagged = [b for b in budgets if not b.get("kept")]
    caption = (
        f"IsoFLOP profiles: for each of {len(budgets)} compute budgets, a parabola of loss against log N "
        f"and its minimum (diamonds). N_opt ∝ C^{num(a2.get('a'))}, D_opt ∝ C^{num(a2.get('b'))}. "
        + (
            "Left out: " + "; ".join(f"{b['compute_budget']:.3g} FLOPs ({b.get('message')})" for b in flagged) + ". "
            if flagged
            else ""
        )
        + f"{axis_note(fits)}."
    )
    title = alt.TitleParams(f"IsoFLOP profiles; N_opt ∝ C^{num(a2.get('a'), 3)}", subtitle=axis_note(fits))
    return alt.layer(*layers).properties(title=title, width=WIDTH, height=HEIGHT), caption


def optimal_allocation(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    optima = [
        p
        for key in ("approach1", "approach2")
        if not skipped(fits.get(key))
        for p in fits[key].get("optima", [])
        if p.get("in_fit", True)
    ]
    low = min([float(done["flops"].min())] + [p["flops"] for p in optima])
    c = np.geomspace(low, done["flops"].max() * 10, 48)
    rows = []
    a3 = approach3_allocation(fits["approach3"], c)
    rows.append(pl.DataFrame({"flops": c, "n_opt": a3["n_opt"], "d_opt": a3["d_opt"], "approach": "Approach 3"}))
    notes = [f"Approach 3: a = {with_interval(fits, 'a_exponent', fits['approach3']['a_exponent'], 3)}"]
    points = []
    for key, label in (("approach1", "Approach 1"), ("approach2", "Approach 2")):
        section = fits.get(key)
        why = skipped(section)
        if why:
            notes.append(f"{label}: not fitted ({why})")
            continue
        n_line = section["n_coefficient"] * c ** section["a"]
        d_line = section["d_coefficient"] * c ** section["b"]
        rows.append(pl.DataFrame({"flops": c, "n_opt": n_line, "d_opt": d_line, "approach": label}))
        notes.append(f"{label}: a = {with_interval(fits, f'{key}.a', section['a'], 3)}")
        # Approach 1's envelope, where its law was fitted (between the first and last crossover).
        for p in section.get("optima", []):
            if not p.get("in_fit", True):
                continue
            points.append({"flops": p["flops"], "n_opt": p["n_opt"], "d_opt": p["d_opt"], "approach": label})
    # Reference slopes, anchored at Approach 3's N_opt in the middle of the range.
    mid = float(np.sqrt(c[0] * c[-1]))
    anchor = approach3_allocation(fits["approach3"], [mid])
    for label, slope in (("Kaplan et al. 2020 (a = 0.73)", 0.73), ("Hoffmann et al. 2022 (a = 0.5)", 0.5)):
        n_ref = anchor["n_opt"][0] * (c / mid) ** slope
        rows.append(
            pl.DataFrame({"flops": c, "n_opt": n_ref, "d_opt": c / (6 * n_ref), "approach": f"reference: {label}"})
        )
    lines = pl.concat(rows)
    band = (fits.get("bootstrap") or {}).get("optimal_allocation_band")
    panels = []
    for column, title in (("n_opt", "compute-optimal parameters N_opt"), ("d_opt", "compute-optimal tokens D_opt")):
        x = alt.X("flops:Q", scale=log_scale(c), title="compute C (FLOPs)", axis=alt.Axis(format=".1e"))
        y = alt.Y(f"{column}:Q", scale=alt.Scale(type="log"), title=title)
        layers = []
        if band:
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


def _loss_against(
    runs: pl.DataFrame, fits: dict, x_column: str, group_column: str, x_title: str, group_title: str
) -> alt.Chart:
    """Points and the Approach-3 surface at each distinct value of the other variable; a
    colour scale (log) rather than categories, so that an IsoFLOP grid (every D distinct) reads too."""
    done = completed(runs)
    a3 = fits["approach3"]
    x = np.geomspace(done[x_column].min() / 1.5, done[x_column].max() * 1.5, 48)
    surface = pl.concat(
        [
            pl.DataFrame(
                {
                    x_column: x,
                    group_column: float(g),
                    "loss": predict_approach3(a3, x, g) if x_column == "params" else predict_approach3(a3, g, x),
                }
            )
            for g in sorted(set(done[group_column].to_list()))
        ]
    )
    color = alt.Color(
        f"{group_column}:Q",
        title=group_title,
        scale=alt.Scale(type="log", scheme="viridis"),
        legend=alt.Legend(format=".2s"),
    )
    y_scale = log_scale(done["loss"])
    points = (
        alt.Chart(done)
        .mark_circle(size=70, opacity=0.9)
        .encode(
            x=alt.X(f"{x_column}:Q", scale=log_scale(x), title=x_title),
            y=alt.Y("loss:Q", scale=y_scale, title=LOSS_TITLE),
            color=color,
            tooltip=TOOLTIP,
        )
    )
    lines = (
        alt.Chart(surface)
        .mark_line(strokeDash=[4, 2], opacity=0.7, clip=True)
        .encode(x=f"{x_column}:Q", y="loss:Q", color=color, detail=f"{group_column}:Q")
    )
    return lines + points


def law_text(fits: dict) -> str:
    a3 = fits["approach3"]
    return (
        f"L = {num(a3['E'], 3)} + {num(a3['A'], 3)}/N^{num(a3['alpha'], 3)} + {num(a3['B'], 3)}/D^{num(a3['beta'], 3)}"
    )


def _loss_against_chart(
    runs: pl.DataFrame, fits: dict, x: tuple[str, str, str], group: tuple[str, str, str]
) -> tuple[alt.Chart, str]:
    """Loss against one variable for each value of the other: (column, axis title, symbol) of each."""
    chart = _loss_against(runs, fits, x[0], group[0], x[1], group[1])
    caption = (
        f"Validation loss against {x[2]} for each {group[1]} {group[2]}, with the Approach-3 surface "
        f"{law_text(fits)} drawn at each {group[2]}. {axis_note(fits)}."
    )
    title = alt.TitleParams(f"Loss against {x[2]} for each {group[2]}; {law_text(fits)}", subtitle=axis_note(fits))
    return chart.properties(title=title, width=WIDTH, height=HEIGHT), caption


def loss_vs_params(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    return _loss_against_chart(runs, fits, ("params", "parameters N", "N"), ("tokens", "token count", "D"))


def loss_vs_tokens(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    return _loss_against_chart(runs, fits, ("tokens", "tokens D", "D"), ("params", "model size", "N"))


def residuals(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    done = completed(runs)
    predicted = predict_approach3(fits["approach3"], done["params"].to_numpy(), done["tokens"].to_numpy())
    frame = done.with_columns(
        pl.Series("predicted", predicted),
        pl.Series("log_residual", np.log(done["loss"].to_numpy()) - np.log(predicted)),
    )
    rms = float(np.sqrt(np.mean(frame["log_residual"].to_numpy() ** 2)))
    worst = float(np.max(np.abs(frame["log_residual"].to_numpy())))
    points = (
        alt.Chart(frame)
        .mark_circle(size=70)
        .encode(
            x=alt.X(
                "flops:Q",
                scale=log_scale(frame["flops"]),
                title="training compute C (FLOPs)",
                axis=alt.Axis(format=".1e"),
            ),
            y=alt.Y("log_residual:Q", title="log(observed) − log(fitted)"),
            color=alt.Color("params:Q", scale=alt.Scale(type="log", scheme="viridis"), title="N"),
            tooltip=TOOLTIP
            + [
                alt.Tooltip("predicted:Q", title="fitted loss", format=".4f"),
                alt.Tooltip("log_residual:Q", title="log residual", format=".4f"),
            ],
        )
    )
    zero = alt.Chart(pl.DataFrame({"y": [0.0]})).mark_rule(color="black").encode(y="y:Q")
    caption = (
        f"Residuals of the Approach-3 fit in log space (the scale the Huber objective uses), "
        f"{frame.height} runs: RMS {num(rms, 3)}, largest {num(worst, 3)}. {axis_note(fits)}."
    )
    title = alt.TitleParams(f"Approach-3 residuals; RMS {num(rms, 3)} in log loss", subtitle=axis_note(fits))
    return (points + zero).properties(title=title, width=WIDTH, height=HEIGHT), caption


def training_curves(curves: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
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


def extrapolation(runs: pl.DataFrame, fits: dict) -> tuple[alt.Chart, str]:
    check = fits.get("extrapolation")
    if missing := not_drawn("extrapolation", check, "Extrapolation check not made", fits):
        return missing
    frame = pl.DataFrame(check["held_out"])
    lo = float(min(frame["predicted"].min(), frame["loss"].min())) * 0.97
    hi = float(max(frame["predicted"].max(), frame["loss"].max())) * 1.03
    points = (
        alt.Chart(frame)
        .mark_circle(size=80, color="#c33")
        .encode(
            x=alt.X("loss:Q", scale=alt.Scale(domain=[lo, hi]), title="observed validation loss (held out)"),
            y=alt.Y("predicted:Q", scale=alt.Scale(domain=[lo, hi]), title="predicted by the refit"),
            tooltip=TOOLTIP
            + [
                alt.Tooltip("predicted:Q", format=".4f"),
                alt.Tooltip("relative_error:Q", title="relative error", format=".2%"),
            ],
        )
    )
    diagonal = (
        alt.Chart(pl.DataFrame({"loss": [lo, hi], "predicted": [lo, hi]}))
        .mark_line(color="black", strokeDash=[4, 2])
        .encode(x="loss:Q", y="predicted:Q")
    )
    caption = (
        f"Extrapolation check: Approach 3 refitted without {check['held_out_description']} "
        f"({len(check['held_out'])} runs), then asked to predict them. Mean absolute error "
        f"{num(check['mean_absolute_error'], 3)} nats ({num(100 * check['mean_relative_error'], 3)}%), "
        f"largest {num(check['max_absolute_error'], 3)}. {axis_note(fits)}."
    )
    title = alt.TitleParams(
        f"Extrapolation: mean abs error {num(check['mean_absolute_error'], 3)} nats", subtitle=axis_note(fits)
    )
    return (points + diagonal).properties(title=title, width=WIDTH, height=HEIGHT), caption


# --------------------------------------------------------------------------- tables and page


def parameters_table(fits: dict) -> pl.DataFrame:
    a3, frontier = fits["approach3"], fits["frontier"]
    rows = [
        ("E", a3["E"]),
        ("A", a3["A"]),
        ("B", a3["B"]),
        ("alpha", a3["alpha"]),
        ("beta", a3["beta"]),
        ("a_exponent", a3["a_exponent"]),
        ("b_exponent", a3["b_exponent"]),
        ("G", a3["G"]),
    ]
    for key in ("approach1", "approach2"):
        if not skipped(fits.get(key)):
            rows += [(f"{key}.a", fits[key]["a"]), (f"{key}.b", fits[key]["b"])]
    rows += [("frontier.A_C", frontier["A_C"]), ("frontier.gamma", frontier["gamma"])]
    return pl.DataFrame(
        {
            "parameter": [name for name, _ in rows],
            "value": [float(value) for _, value in rows],
            "ci95_low": [(interval(fits, name) or [None, None])[0] for name, _ in rows],
            "ci95_high": [(interval(fits, name) or [None, None])[1] for name, _ in rows],
        },
        schema_overrides={"ci95_low": pl.Float64, "ci95_high": pl.Float64},
    )


def table_html(frame: pl.DataFrame, row_class: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for value in row.values():
            text = f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        css = f' class="{html.escape(str(row[row_class]))}"' if row_class else ""
        body.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def allocation_sentences(fits: dict) -> str:
    a3 = fits["approach3"]
    parts = []
    for p in fits.get("predictions") or []:
        key = f"predictions.{p['flops']:g}"
        parts.append(
            f"at C = {p['flops']:.3g} FLOPs: N<sub>opt</sub> = {with_interval(fits, key + '.n_opt', p['n_opt'], 3)}, "
            f"D<sub>opt</sub> = {with_interval(fits, key + '.d_opt', p['d_opt'], 3)} "
            f"({num(p['d_opt'] / p['n_opt'], 3)} tokens per parameter), predicted loss "
            f"{with_interval(fits, key + '.loss', p['loss'], 4)}"
        )
    allocation = (
        f"Compute-optimal allocation (Approach 3, C = 6ND): N<sub>opt</sub> ∝ "
        f"C<sup>{num(a3['a_exponent'], 3)}</sup>, D<sub>opt</sub> ∝ C<sup>{num(a3['b_exponent'], 3)}</sup>"
    )
    return allocation + (": " + "; ".join(parts) if parts else "") + "."


RENDER_SCRIPT = """
const reportErrors = [];
const original = console.error.bind(console);
console.error = (...args) => { reportErrors.push(args.map(String).join(" ")); original(...args); };
window.addEventListener("error", e => reportErrors.push(
  e.message || ("failed to load " + (e.target && (e.target.src || e.target.href)))), true);
window.addEventListener("unhandledrejection", e => reportErrors.push(String(e.reason)));
const embeds = Object.entries(SPECS).map(([name, spec]) =>
  vegaEmbed("#" + name, spec, {renderer: "svg", actions: false}).then(result => {
    const drawn = document.querySelector("#" + name + " svg");
    if (drawn) document.getElementById(name).dataset.rendered = "svg";
    return result;
  }).catch(e => console.error(name + ": " + e)));
Promise.allSettled(embeds).then(() => {
  document.body.dataset.errors = JSON.stringify(reportErrors);
  document.body.dataset.reportStatus = "done";
});
"""


def index_page(specs: dict[str, dict], captions: dict[str, str], runs: pl.DataFrame, fits: dict) -> str:
    a3, frontier = fits["approach3"], fits["frontier"]
    excluded = fits["data"]["runs_excluded"]
    run_columns = [
        "run_id",
        "status",
        "params",
        "tokens",
        "flops",
        "loss",
        "bits_per_byte",
        "train_loss",
        "tokens_per_s",
        "device",
        "kernels",
    ]
    charts = "\n".join(
        f'<section><h3>{html.escape(CHARTS[name])}</h3><div id="{name}" class="chart"></div>'
        f'<p class="caption">{html.escape(captions[name])}</p><p><a href="{name}.html">interactive</a> · '
        f'<a href="{name}.svg">SVG</a> · <a href="{name}.png">PNG</a></p></section>'
        for name in specs
    )
    note = (
        f"<p class=warn>{len(excluded)} run(s) left out of the fit as not completed (diverged): "
        f"{html.escape(', '.join(map(str, excluded)))}</p>"
        if excluded
        else ""
    )
    law = (
        f"L(N, D) = {with_interval(fits, 'E', a3['E'])} + {with_interval(fits, 'A', a3['A'])} / "
        f"N<sup>{with_interval(fits, 'alpha', a3['alpha'])}</sup> + {with_interval(fits, 'B', a3['B'])} / "
        f"D<sup>{with_interval(fits, 'beta', a3['beta'])}</sup>"
    )
    boot = fits.get("bootstrap") or {}
    boot_text = (
        f"Brackets are bootstrap 95% intervals over runs ({boot.get('samples')} resamples, seed {boot.get('seed')})."
        if boot.get("intervals")
        else "No bootstrap was run (fit.bootstrap: 0)."
    )
    predictions = fits.get("predictions") or []
    prediction_table = ""
    if predictions:
        frame = pl.DataFrame([{k: p.get(k) for k in ("flops", "n_opt", "d_opt", "loss")} for p in predictions])
        prediction_table = "<h2>Predictions</h2>" + table_html(frame)
    extrapolation_text = ""
    check = fits.get("extrapolation")
    if check and not check.get("skipped"):
        extrapolation_text = (
            f"<p>Extrapolation check: refitted without {html.escape(check['held_out_description'])}, "
            f"the law predicts those {len(check['held_out'])} runs with mean absolute error "
            f"{num(check['mean_absolute_error'], 3)} nats.</p>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scaling-law report</title>
<style>
body {{ font-family: sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
tr.diverged td {{ background: #fde8e0; color: #a40; }}
.warn {{ color: #a40; }}
.caption {{ font-size: 0.9em; color: #444; max-width: 900px; }}
section {{ margin: 2em 0; }}
</style>
<script>{vl_convert.javascript_bundle()}</script>
</head><body>
<h1>Scaling-law report</h1>
<p>Fitted law (Chinchilla Approach 3: Huber loss, delta {a3["huber_delta"]:g}, on log-loss residuals; L-BFGS
from the best {a3["starts_refined"]} of {a3["starts"]} grid starts; {a3["runs"]} runs): {law}.
{boot_text}</p>
<p>{allocation_sentences(fits)}
Compute frontier: L(C) = {num(frontier["A_C"])} · C<sup>-{num(frontier["gamma"])}</sup>.</p>
{extrapolation_text}
<p>{html.escape(axis_note(fits))}. Loss is the validation loss in nats per token.</p>
{note}
<h2>Fitted parameters</h2>
{table_html(parameters_table(fits))}
{prediction_table}
<h2>Charts</h2>
{charts}
<h2>Runs</h2>
{table_html(runs.select([c for c in run_columns if c in runs.columns]), row_class="status")}
<script>
const SPECS = {json.dumps(specs)};
{RENDER_SCRIPT}
</script>
</body></html>
"""


def caption_rst(title: str, text: str) -> str:
    return f"{title}. {text}\n"


def build_report(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict, out_dir: Path) -> list[Path]:
    made = {
        "loss_vs_compute": loss_vs_compute(runs, fits),
        "isoflop_profiles": isoflop_profiles(runs, fits),
        "optimal_allocation": optimal_allocation(runs, fits),
        "loss_vs_params": loss_vs_params(runs, fits),
        "loss_vs_tokens": loss_vs_tokens(runs, fits),
        "residuals": residuals(runs, fits),
        "training_curves": training_curves(curves, fits),
        "extrapolation": extrapolation(runs, fits),
    }
    written = []
    for name, (chart, caption) in made.items():
        for fmt in FORMATS:
            path = out_dir / f"{name}.{fmt}"
            with atomic_path(path) as tmp:
                if fmt == "html":
                    chart.save(str(tmp), format="html", inline=True)
                elif fmt == "png":
                    chart.save(str(tmp), format="png", scale_factor=2)
                else:
                    chart.save(str(tmp), format="svg")
            written.append(path)
        path = out_dir / "captions" / f"{name}.rst"
        write_text_atomic(path, caption_rst(CHARTS[name], caption))
        written.append(path)
    table = out_dir / "parameters.csv"
    with atomic_path(table) as tmp:
        parameters_table(fits).write_csv(tmp)
    written.append(table)
    specs = {name: chart.to_dict() for name, (chart, _) in made.items()}
    captions = {name: caption for name, (_, caption) in made.items()}
    index_caption = out_dir / "captions" / "index.rst"
    write_text_atomic(
        index_caption, caption_rst("The report page", f"{law_text(fits)}. " + html_to_text(allocation_sentences(fits)))
    )
    written.append(index_caption)
    write_text_atomic(out_dir / "index.html", index_page(specs, captions, runs, fits))
    written.append(out_dir / "index.html")
    return written


def html_to_text(text: str) -> str:
    for tag, plain in (("<sub>", "_"), ("</sub>", ""), ("<sup>", "^"), ("</sup>", "")):
        text = text.replace(tag, plain)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.report", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, type=Path, help="runs table (parquet)")
    parser.add_argument("--curves", required=True, type=Path, help="curves table (parquet)")
    parser.add_argument("--fits", required=True, type=Path, help="fits.json")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    written = build_report(pl.read_parquet(args.runs), pl.read_parquet(args.curves), read_json(args.fits), args.out_dir)
    print(f"report: {written[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
