"""Helpers every chart and the page share: scales, number formats, intervals and skipped fits.

fits.json is read through the fit registry (workflow.fit.registry): a chart
that shows every approach loops over it rather than naming approaches.
"""

from __future__ import annotations

import html
import math

import altair as alt
import numpy as np
import polars as pl

from workflow.fit.registry import APPROACHES
from workflow.report import CHARTS, units

WIDTH, HEIGHT = 520, 340
# Tooltips cannot take a label expression: counts in d3's SI form, compute in e-notation.
COUNT_FORMAT, FLOPS_FORMAT = ".3~s", ".2~e"
TOOLTIP = [
    alt.Tooltip("run_id:N", title="run"),
    alt.Tooltip("params:Q", title="N", format=COUNT_FORMAT),
    alt.Tooltip("tokens:Q", title="D", format=COUNT_FORMAT),
    alt.Tooltip("flops:Q", title="C (FLOPs)", format=FLOPS_FORMAT),
    alt.Tooltip("loss:Q", title="validation loss", format=".4f"),
]
LOSS_TITLE = "validation loss (nats/token)"

# Ordered levels (model sizes): plasma from its dark end to 0.7, so that the largest model is orange,
# not the pale yellow that viridis and plasma end in, which vanishes on white.
SEQUENTIAL = ("#0d0887", "#41049d", "#6a00a8", "#8f0da4", "#b12a90", "#cc4778", "#e16462", "#f2844b")
# Few unordered or coarse levels (compute budgets, approaches): hues that differ at a glance, none pale.
CATEGORICAL = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
SIZE_COLUMN, SIZE_TITLE = "size", "model size N"
# How a law is drawn beyond the range its group sampled (within it: solid).
BEYOND_DASH = [5, 4]
# A log axis labels every minor tick: drop the labels that would touch.
AXIS_OPTIONS = {"labelOverlap": "greedy", "labelSeparation": 6}


def count_axis(title: str, **options) -> alt.Axis:
    """An axis of parameters or tokens labelled 7.5M, 1.2B (units.AXIS_COUNT)."""
    return alt.Axis(title=title, labelExpr=units.AXIS_COUNT, **{**AXIS_OPTIONS, **options})


def flops_axis(title: str = "training compute C (FLOPs)", **options) -> alt.Axis:
    """An axis of compute labelled 3e17 (units.AXIS_FLOPS)."""
    return alt.Axis(title=title, labelExpr=units.AXIS_FLOPS, **{**AXIS_OPTIONS, **options})


def ordered_colors(count: int) -> list[str]:
    """``count`` colours spread evenly along SEQUENTIAL (linear in RGB between its stops)."""
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in SEQUENTIAL], dtype=float)
    where = np.linspace(0, len(stops) - 1, count) if count > 1 else np.array([0.0])
    low = np.floor(where).astype(int).clip(0, len(stops) - 2)
    rgb = stops[low] + (where - low)[:, None] * (stops[low + 1] - stops[low])
    return ["#" + "".join(f"{round(v):02x}" for v in row) for row in rgb]


def level_labels(values, label=units.count) -> dict:
    """Each distinct value's label (``label``, e.g. units.count: 6984 -> '7K'), with more digits
    where two values would otherwise read alike; in increasing order of value."""
    distinct = sorted({float(v) for v in values if v is not None and math.isfinite(float(v))})
    for digits in (2, 3, 4, 6):
        labels = {v: label(v, digits) for v in distinct}
        if len(set(labels.values())) == len(labels):
            return labels
    return {v: f"{v:g}" for v in distinct}


def with_levels(frame: pl.DataFrame, column: str, name: str, labels: dict) -> pl.DataFrame:
    """``frame`` with the label of ``column``'s value (a key of ``labels``) as column ``name``."""
    return frame.with_columns(
        pl.col(column).cast(pl.Float64).replace_strict(labels, default=None, return_dtype=pl.String).alias(name)
    )


def level_color(
    name: str, levels: list[str], title: str, ordered: bool = True, legend: bool = True, **legend_options
) -> alt.Color:
    """A colour for the levels present, and only those, in their order: SEQUENTIAL for ordered levels
    (model sizes), CATEGORICAL for few coarse ones while they last. ``legend_options``: e.g.
    symbolType="stroke" where the colour marks lines."""
    palette = list(CATEGORICAL[: len(levels)]) if not ordered and len(levels) <= len(CATEGORICAL) else None
    scale = alt.Scale(domain=list(levels), range=palette or ordered_colors(len(levels)))
    return alt.Color(
        f"{name}:{'O' if ordered else 'N'}",
        title=title,
        scale=scale,
        sort=list(levels),
        legend=alt.Legend(title=title, labelLimit=320, **legend_options) if legend else None,
    )


def size_levels(*frames: pl.DataFrame, column: str = "params") -> dict:
    """The labels of the model sizes present in ``frames`` (units.count)."""
    return level_labels([v for f in frames for v in f[column].to_list()])


def size_color(labels: dict, legend: bool = True) -> alt.Color:
    """Colour by model size: the sizes present (``size_levels``), dark for the smallest, orange for the largest."""
    return level_color(SIZE_COLUMN, list(labels.values()), SIZE_TITLE, legend=legend)


def split_at(frame: pl.DataFrame, column: str, low: float, high: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A curve's rows within [low, high] of ``column`` (drawn solid) and beyond it (drawn dashed), the
    latter with a ``segment`` column so that the part below and the part above are not joined."""
    inside = pl.col(column).is_between(low, high)
    below = frame.filter(pl.col(column) <= low).with_columns(segment=pl.lit("below"))
    above = frame.filter(pl.col(column) >= high).with_columns(segment=pl.lit("above"))
    return frame.filter(inside), pl.concat([below, above])


def log_scale(*columns) -> alt.Scale:
    """A log axis fitted to the data, not stretched to whole decades."""
    values = np.concatenate([np.asarray(c, dtype=float).ravel() for c in columns])
    values = values[np.isfinite(values) & (values > 0)]
    return alt.Scale(type="log", domain=[float(values.min()) / 1.15, float(values.max()) * 1.15], nice=False)


# What each convention counts, in words (workflow/families: the FLOP conventions and parameter counts).
CONVENTION_WORDS = {
    "6N": "C = 6 N D",
    "kaplan": "C = 6 N D",
    "palm": "C = 6 N D + attention's 12 L d T D (PaLM)",
    "chinchilla": "C counted per operation (Hoffmann et al., Appendix F)",
}
COUNT_WORDS = {
    "with_head": "N = non-embedding parameters + output head",
    "non_embedding": "N = non-embedding parameters",
    "total": "N = every parameter",
}


def axis_note(fits: dict) -> str:
    """The study's compute axis and parameter count in words, then the settings they come from."""
    flop, count = fits.get("flop_convention"), fits.get("parameter_count")
    c = CONVENTION_WORDS.get(flop, f"C in {flop} FLOPs" if flop else "C as the table records it")
    n = COUNT_WORDS.get(count, f"N = {count} parameters" if count else "N as the table records it")
    return f"{c}, {n} (fit.flop_convention {flop}, fit.parameter_count {count})"


def num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def interval(fits: dict, section: str, key: str) -> list | None:
    """The bootstrap 95% interval of a section's quantity, when the fit has one."""
    return ((fits.get("bootstrap") or {}).get("intervals") or {}).get(section, {}).get(key)


def with_interval(fits: dict, section: str, key: str, value, digits: int = 4) -> str:
    ci = interval(fits, section, key)
    return f"{num(value, digits)} [{num(ci[0], digits)}, {num(ci[1], digits)}]" if ci else num(value, digits)


# A value with an interval is shown to the 2nd significant digit of the interval's width, and each of
# its numbers with at least 1 and at most 4 significant digits: 0.4479 [0.25, 0.68] -> "0.45 [0.25, 0.68]".
WIDTH_DIGITS, FEWEST_DIGITS, MOST_DIGITS = 2, 1, 4


def decade(value: float) -> int:
    return math.floor(math.log10(abs(value)))


def significant(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits: plain from 1e-4 up to where padding zeros would
    pretend to digits (below 1000, or with every integer digit significant), else in e-notation."""
    rounded = float(f"{value:.{digits - 1}e}")
    if rounded == 0 or abs(rounded) < 1e-4 or decade(rounded) >= max(digits, 3):
        return f"{rounded:.{digits - 1}e}"
    return f"{rounded:.{max(0, digits - 1 - decade(rounded))}f}"


def supported(value: float, width: float) -> str:
    """``value`` to the precision an interval of ``width`` supports (WIDTH_DIGITS of the width)."""
    if value == 0:
        return "0"
    digits = decade(value) - decade(width) + WIDTH_DIGITS
    return significant(value, min(MOST_DIGITS, max(FEWEST_DIGITS, digits)))


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def precise_parts(value, ci) -> tuple[str, str | None]:
    """The value and '[low, high]', each number to the precision the interval's width supports; without
    a usable interval (none, or of no width), the value to MOST_DIGITS significant digits and None."""
    if not finite(value):
        return "n/a", None
    if not ci or not all(finite(x) for x in ci) or ci[1] - ci[0] <= 0:
        return num(value, MOST_DIGITS), None
    width = ci[1] - ci[0]
    return supported(value, width), f"[{supported(ci[0], width)}, {supported(ci[1], width)}]"


def with_precision(value, ci) -> str:
    """'value [low, high]' to the precision the interval supports: 0.4479 [0.25, 0.68] -> '0.45 [0.25, 0.68]'."""
    shown, bracket = precise_parts(value, ci)
    return f"{shown} {bracket}" if bracket else shown


def estimate(fits: dict, section: str, key: str, value) -> str:
    """A fitted quantity with its bootstrap interval (if any), to the precision the interval supports."""
    return with_precision(value, interval(fits, section, key))


def completed(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.filter(pl.col("status") == "completed")


def skipped(section: dict | None) -> str | None:
    """Why an approach was not fitted (None when it was)."""
    if not section:
        return "not computed"
    return section.get("skipped")


def fitted(fits: dict, **having) -> list:
    """(approach, section) of every fitted approach, in registry order, whose record has the
    attributes ``having`` truthy (e.g. allocates=True)."""
    return [
        (a, fits[a.name])
        for a in APPROACHES
        if not skipped(fits.get(a.name)) and all(bool(getattr(a, k)) == v for k, v in having.items())
    ]


def the_law(fits: dict) -> tuple:
    """The first fitted approach with a loss law L(N, D), and its section: the surface the
    loss-against-N and -D charts draw."""
    return fitted(fits, law=True)[0]


def message_chart(title: str, text: str, fits: dict) -> alt.Chart:
    """A chart that says why there is nothing to draw (kept so that every file exists)."""
    frame = pl.DataFrame({"x": [0.0], "y": [0.0], "text": [text]})
    return (
        alt.Chart(frame)
        .mark_text(fontSize=14, color="#a40")
        .encode(x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None), text="text:N")
        .properties(title=alt.TitleParams(title, subtitle=axis_note(fits)), width=WIDTH, height=120)
    )


def not_drawn(name: str, section: dict | None, what: str, fits: dict) -> tuple[alt.Chart, str] | None:
    """The message chart and caption of a chart whose fit was skipped; None when it was fitted."""
    why = skipped(section)
    if not why:
        return None
    text = f"{what}: {why}"
    return message_chart(CHARTS[name], text, fits), text + "."


def law_text(fits: dict) -> str:
    """The loss law in one line, e.g. L = 1.8 + 400/N^0.34 + 2e+03/D^0.37."""
    _, law = the_law(fits)
    return (
        f"L = {num(law['E'], 3)} + {num(law['A'], 3)}/N^{num(law['alpha'], 3)} + "
        f"{num(law['B'], 3)}/D^{num(law['beta'], 3)}"
    )


def table_html(frame: pl.DataFrame, row_class: str | None = None, warn_columns: tuple[str, ...] = ()) -> str:
    """An HTML table of ``frame`` (floats to 4 significant digits); ``row_class``: the column whose value
    is each row's class; a non-empty cell of ``warn_columns`` is marked as a warning."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for column, value in row.items():
            text = f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))
            css = ' class="warn"' if column in warn_columns and text else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        css = f' class="{html.escape(str(row[row_class]))}"' if row_class else ""
        body.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def curve_grid(low: float, high: float, *marks: float, points: int = 48) -> np.ndarray:
    """Log-spaced points from ``low`` to ``high`` with ``marks`` (a sampled range's ends) among them,
    so that a curve's solid and dashed parts meet there."""
    grid = np.geomspace(low, high, points)
    inside = [m for m in marks if low <= m <= high]
    return np.unique(np.concatenate([grid, inside]))


def range_dash() -> alt.StrokeDash:
    """Solid inside the trained range, dashed past it (the decision and multiplier charts' lines, whose
    rows carry ``range``)."""
    return alt.StrokeDash(
        "range:N",
        scale=alt.Scale(domain=["trained range", "extrapolated"], range=[[1, 0], [5, 3]]),
        legend=alt.Legend(orient="bottom", title=None),
    )


def trained_shade(low: float, high: float) -> alt.Chart:
    """The trained compute range as a grey span."""
    frame = pl.DataFrame({"start": [low], "end": [high]})
    return alt.Chart(frame).mark_rect(color="#999", opacity=0.15).encode(x="start:Q", x2="end:Q")


def target_marks(budgets: list[float]) -> list[alt.Chart]:
    """A dotted rule and a label at each target budget (fit.predict_flops); none without targets."""
    if not budgets:
        return []
    frame = pl.DataFrame({"flops": [float(c) for c in budgets], "label": [f"target {units.flops(c)}" for c in budgets]})
    rule = alt.Chart(frame).mark_rule(color="#444", strokeDash=[2, 2]).encode(x="flops:Q")
    label = (
        alt.Chart(frame)
        .mark_text(align="right", baseline="top", dx=-3, dy=3, fontSize=11, color="#444")
        .encode(x="flops:Q", y=alt.value(0), text="label:N")
    )
    return [rule, label]
