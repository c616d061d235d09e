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
from workflow.report import CHARTS

WIDTH, HEIGHT = 520, 340
TOOLTIP = [
    alt.Tooltip("run_id:N", title="run"),
    alt.Tooltip("params:Q", title="N", format=".3s"),
    alt.Tooltip("tokens:Q", title="D", format=".3s"),
    alt.Tooltip("flops:Q", title="C (FLOPs)", format=".3s"),
    alt.Tooltip("loss:Q", title="validation loss", format=".4f"),
]
LOSS_TITLE = "validation loss (nats/token)"


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
