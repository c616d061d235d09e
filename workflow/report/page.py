"""The index page: the first screen (the law, the exponent a side by side, whether the law holds, every
warning), every approach's summary, the parameters, the sensitivity panel, the predictions, the charts,
the runs. What it says on how far the law can be trusted is validity.py's.

Sections are read through the fit registry, so the page names no approach itself.
"""

from __future__ import annotations

import html
import json

import polars as pl
import vl_convert

from workflow.fit.bootstrap import prediction_key
from workflow.fit.registry import APPROACHES, BY_NAME
from workflow.fit.table_fit import describe, shown
from workflow.report import CHARTS, TUNE_CHARTS
from workflow.report.chart_parts import axis_note, estimate, fitted, interval, num, precise_parts, table_html
from workflow.report.first_screen import first_screen, lookup_section, published_table, ranked_warnings
from workflow.report.validity import (
    backtest_sentence,
    extrapolation_factor,
    extrapolation_flag,
    extrapolation_note,
    flag_limit,
    lack_of_fit_paragraph,
    noise_sentence,
    published_exponents,
    published_line,
    sensitivity_section,
)


def parameters_table(fits: dict) -> pl.DataFrame:
    """Every fitted approach's parameters (``approach.key``) with their bootstrap intervals."""
    rows = [(a.name, key, section[key]) for a, section in fitted(fits) for key in a.parameters]
    ci = [interval(fits, name, key) or [None, None] for name, key, _ in rows]
    return pl.DataFrame(
        {
            "parameter": [f"{name}.{key}" for name, key, _ in rows],
            "value": [float(value) for _, _, value in rows],
            "ci95_low": [low for low, _ in ci],
            "ci95_high": [high for _, high in ci],
        },
        schema_overrides={"ci95_low": pl.Float64, "ci95_high": pl.Float64},
    )


def parameters_html(fits: dict) -> str:
    """The parameters table of the page: each value with its interval, to the precision the interval
    supports (parameters.csv keeps every digit)."""
    rows = []
    for a, section in fitted(fits):
        for key in a.parameters:
            value, bracket = precise_parts(section[key], interval(fits, a.name, key))
            rows.append({"parameter": f"{a.name}.{key}", "value": value, "95% interval": bracket or ""})
    return table_html(
        pl.DataFrame(rows, schema={"parameter": pl.String, "value": pl.String, "95% interval": pl.String})
    )


# The quantities of a prediction row, each with its interval's two ends in the tables.
PREDICTED = ("n_opt", "d_opt", "tokens_per_parameter", "loss")


def predictions_table(fits: dict, rows: list[dict] | None = None) -> pl.DataFrame:
    """One row per budget and approach (of fits.json's predictions, or of ``rows``): its extrapolation
    factor (C over the largest compute trained), N_opt, D_opt, tokens per parameter and (where predicted)
    loss, each with its 95% interval; ``flag`` marks a budget past the extrapolation flag. A prediction
    that depends on an unidentified parameter is left empty, and ``not_identified`` says which."""
    out = []
    for row in fits.get("predictions") or [] if rows is None else rows:
        factor = extrapolation_factor(fits, row)
        for name, point in row.items():
            if not isinstance(point, dict):
                continue
            withheld = point.get("withheld") or {}
            ci = point.get("intervals") or {}
            values = {}
            for q in PREDICTED:
                kept = q in point and q not in withheld
                values[q] = point[q] if kept else None
                values[f"{q}_ci95_low"], values[f"{q}_ci95_high"] = ci.get(q) if kept and ci.get(q) else [None, None]
            out.append(
                {
                    "flops": row["flops"],
                    "extrapolation_factor": factor,
                    "approach": BY_NAME[name].title,
                    **values,
                    "not_identified": "; ".join(f"{k}: {', '.join(v)}" for k, v in withheld.items()),
                    "flag": extrapolation_flag(factor, flag_limit(fits)),
                }
            )
    numbers = ["extrapolation_factor", *(f"{q}{end}" for q in PREDICTED for end in ("", "_ci95_low", "_ci95_high"))]
    columns = ["flops", "extrapolation_factor", "approach", *numbers[1:], "not_identified", "flag"]
    overrides = {c: pl.Float64 for c in numbers}
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in out], schema=None, schema_overrides=overrides)


def lookup_table(fits: dict) -> pl.DataFrame:
    """lookup.csv: every approach's allocation at the ladder's budgets and the target budgets, by budget."""
    budgets = {row["flops"]: row for row in (fits.get("ladder") or []) + (fits.get("predictions") or [])}
    return predictions_table(fits, [budgets[c] for c in sorted(budgets)])


def allocation_laws(fits: dict) -> str:
    """Every allocation law with the intervals of its exponents, on the study's compute axis."""
    laws = "; ".join(
        f"{a.title}: N<sub>opt</sub> ∝ C<sup>{estimate(fits, a.name, 'a', s['a'])}</sup>, "
        f"D<sub>opt</sub> ∝ C<sup>{estimate(fits, a.name, 'b', s['b'])}</sup>"
        for a, s in fitted(fits, allocates=True)
    )
    k = (fits.get("data") or {}).get("flops_per_nd")
    axis = f" (on the study's compute axis C = {k:.3g} N D)" if k else ""
    return f"Compute-optimal allocation{axis}: {laws}."


def allocation_sentences(fits: dict) -> str:
    """Every allocation law, then the predictions at each budget with how far past the largest run
    each reaches, with intervals; every number to the precision its interval supports (the page's
    caption for snakemake --report)."""
    parts = []
    for row in fits.get("predictions") or []:
        key = prediction_key(row["flops"])
        each = []
        for name, p in row.items():
            if not isinstance(p, dict):
                continue
            n_opt = shown(p, "n_opt", estimate(fits, name, key + ".n_opt", p["n_opt"]))
            d_opt = shown(p, "d_opt", estimate(fits, name, key + ".d_opt", p["d_opt"]))
            ratio = shown(p, "tokens_per_parameter", num(p["tokens_per_parameter"], 3))
            text = f"{BY_NAME[name].title} N<sub>opt</sub> = {n_opt}, D<sub>opt</sub> = {d_opt}"
            text += f" ({ratio} tokens per parameter"
            cost = p.get("cost")
            text += f", costing {cost:.3g} times the budget)" if cost is not None and abs(cost - 1) > 0.01 else ")"
            if "loss" in p:
                text += f", predicted loss {shown(p, 'loss', estimate(fits, name, key + '.loss', p['loss']))}"
            each.append(text)
        note = extrapolation_note(extrapolation_factor(fits, row), flag_limit(fits))
        parts.append(f"at C = {row['flops']:.3g} FLOPs ({note}): " + ", ".join(each))
    laws = allocation_laws(fits)
    return laws[:-1] + (". Predictions " + "; ".join(parts) if parts else "") + "."


def summary_items(fits: dict) -> list[str]:
    """Each approach's one-line summary (the fit CLI's), as HTML list items, with its warnings beneath it."""
    items = []
    for a in APPROACHES:
        warnings = (fits.get(a.name) or {}).get("warnings") or []
        beneath = "".join(f'<li class="warn">warning: {html.escape(w)}</li>' for w in warnings)
        items.append(
            f"<li>{html.escape(a.title)}: {html.escape(describe(a, fits))}"
            + (f"<ul>{beneath}</ul>" if beneath else "")
            + "</li>"
        )
    return items


# The approaches whose allocation exponent a the first screen sets side by side, in this order.
A_APPROACHES = ("approach1", "approach2", "approach3")


def exponents_agree(intervals: list[list[float]]) -> tuple[bool, list[float] | None]:
    """Whether 95% intervals agree, read as: they share a common range (the largest lower end is at most
    the smallest upper end); with that range. For intervals, sharing a range is the same as every pair
    overlapping."""
    low, high = max(i[0] for i in intervals), min(i[1] for i in intervals)
    return low <= high, ([low, high] if low <= high else None)


def exponent_rows(fits: dict) -> tuple[str, str]:
    """The table of a (N_opt ∝ C^a) from Approaches 1, 2 and 3, and the sentences on their agreement
    with each other and with the published exponents (PUBLISHED_A)."""
    rows, intervals = [], {}
    for name in A_APPROACHES:
        section = fits.get(name) or {"skipped": "not computed"}
        title = html.escape(BY_NAME[name].title)
        if "skipped" in section:
            rows.append(
                f'<tr><td>{title}</td><td colspan="2" class="warn">skipped: {html.escape(section["skipped"])}</td></tr>'
            )
            continue
        ci = interval(fits, name, "a")
        if ci:
            intervals[name] = ci
        value, bracket = precise_parts(section["a"], ci)
        rows.append(f"<tr><td>{title}</td><td>{value}</td><td>{bracket or 'no bootstrap'}</td></tr>")
    table = (
        "<table><thead><tr><th>approach</th><th>a</th><th>95% interval</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    if len(intervals) < 2:
        verdict = "Fewer than two approaches have an interval for a: their agreement cannot be judged."
    else:
        agree, common = exponents_agree(list(intervals.values()))
        verdict = (
            f"The {len(intervals)} intervals agree: they share [{num(common[0], 3)}, {num(common[1], 3)}]."
            if agree
            else f'<span class="warn">The {len(intervals)} intervals do not agree: no value of a lies in all '
            "of them.</span>"
        )
    against = published_line(intervals, published_exponents(fits))
    return table, verdict + (f" {html.escape(against)}" if against else "")


def extrapolation_sentence(fits: dict) -> str:
    """How well Approach 3, refitted without the largest budget, predicts it."""
    section = fits.get("extrapolation") or {"skipped": "not computed"}
    if "skipped" in section:
        return f'<span class="warn">Extrapolation check skipped: {html.escape(section["skipped"])}</span>'
    return (
        f"Extrapolation: Approach 3 refitted without {html.escape(section['held_out_description'])} "
        f"predicts their loss with a mean error of {100 * section['mean_relative_error']:.2f}% "
        f"(largest {100 * section['max_relative_error']:.2f}%, {len(section['held_out'])} runs)."
    )


# Whose warnings the first screen lists first: whether the law holds (lack of fit, the law's own
# identification, the backtest, the noise, the sensitivity), then the rest in registry order; side notes
# (a floor a Kaplan-style law does not identify) come last.
WARNINGS_FIRST = ("lack_of_fit", "approach3", "backtest", "noise", "sensitivity")


def every_warning(fits: dict) -> list[str]:
    """Every warning of the fit, each named by where it comes from: the data's, then each approach's in
    the order of WARNINGS_FIRST, then the side notes."""
    found = [f"data: {w}" for w in fits["data"].get("warnings") or []]
    notes = []
    rank = {name: i for i, name in enumerate(WARNINGS_FIRST)}
    for a in sorted(APPROACHES, key=lambda a: rank.get(a.name, len(rank))):
        section = fits.get(a.name) or {}
        found += [f"{a.title}: {w}" for w in section.get("warnings") or []]
        # Sections of several laws (the Kaplan-style ones) note an unidentified floor per law.
        notes += [
            f"{a.title}, {name}: {law['E_note']}"
            for name, law in sorted(section.items())
            if isinstance(law, dict) and law.get("E_note")
        ]
    return found + notes


def calibration_paragraph(fits: dict) -> str:
    """On a corpus of known entropy rate: each fitted floor in bits per byte beside the true rate."""
    section = fits.get("calibration")
    if not section:
        return ""
    if "skipped" in section:
        return f'<p class="warn">Calibration skipped: {html.escape(section["skipped"])}</p>'
    rows = []
    for name, floor in section["floors"].items():
        ci = floor.get("interval_bits_per_byte")
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{num(floor['E'], 4)}</td><td>{num(floor['bits_per_byte'], 4)}"
            + (f" [{num(ci[0], 4)}, {num(ci[1], 4)}]" if ci else "")
            + f"</td><td>{100 * floor['bias']:+.1f}%</td>"
            + f"<td>{'' if floor['identified'] else 'not identified'}</td></tr>"
        )
    per_token = section["bytes_per_token"]
    return (
        f"<h3>Calibration against a known answer</h3><p>The corpus ({html.escape(str(section['source']))}) has an "
        f"entropy rate of {section['true_bits_per_byte']:.4f} bits per byte, computed exactly; at "
        f"{per_token['median']:.4f} bytes per token (measured on the validation set) that is "
        f"{section['true_nats_per_token']:.4f} nats per token. Each fitted floor E, converted:</p>"
        "<table><thead><tr><th>law</th><th>E (nats/token)</th><th>E (bits/byte)</th><th>bias</th><th></th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def law_section(fits: dict, warnings: list[str]) -> str:
    """Below the first screen: the law with its intervals, the exponent a of Approaches 1, 2 and 3 side
    by side, whether they agree and what they tell apart among the published exponents, whether the law
    holds (lack of fit, seed noise, the extrapolation check, the backtest), and every warning, ranked."""
    law = fits.get("approach3") or {"skipped": "not computed"}
    if "skipped" in law:
        law_line = f'<p class="warn">No law: Approach 3 was skipped ({html.escape(law["skipped"])}).</p>'
    else:
        terms = {k: estimate(fits, "approach3", k, law[k]) for k in ("E", "A", "B", "alpha", "beta")}
        law_line = (
            f"<p class=law>{html.escape(law['form'])}, with "
            + ", ".join(f"{k} = {v}" for k, v in terms.items())
            + "</p>"
        )
    table, verdict = exponent_rows(fits)
    listed = (
        "<ol>" + "".join(f'<li class="warn">{html.escape(w)}</li>' for w in warnings) + "</ol>"
        if warnings
        else "<p>No warnings: every parameter is identified by the checks of docs/methods.md.</p>"
    )
    return (
        '<section id="law"><h2>The law</h2>'
        + law_line
        + calibration_paragraph(fits)
        + "<h3>Compute-optimal exponent a (N<sub>opt</sub> ∝ C<sup>a</sup>)</h3>"
        + table
        + f"<p>{verdict}</p>"
        + published_table(fits)
        + "<h3>Does the law hold?</h3>"
        + lack_of_fit_paragraph(fits)
        + noise_sentence(fits)
        + f"<p>{extrapolation_sentence(fits)}</p><p>{backtest_sentence(fits)}</p>"
        + f'<h3 id="warnings">Warnings ({len(warnings)}), most decisive first</h3>{listed}</section>'
    )


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
  // Whether each part of the first screen lies within the window (a browser test reads it at 1400x900).
  document.querySelectorAll("[data-fold-check]").forEach(el => {
    const box = el.getBoundingClientRect();
    el.dataset.aboveFold = (box.height > 0 && box.bottom <= window.innerHeight && box.right <= window.innerWidth)
      ? "yes" : "no";
  });
  document.body.dataset.window = window.innerWidth + "x" + window.innerHeight;
  document.body.dataset.errors = JSON.stringify(reportErrors);
  document.body.dataset.reportStatus = "done";
});
"""


# Charts drawn inside the first screen rather than in the charts section.
FIRST_SCREEN_CHARTS = ("decision",)


def index_page(specs: dict[str, dict], captions: dict[str, str], runs: pl.DataFrame, fits: dict) -> str:
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
        "lr",
        "batch_tokens",
        "tuned",
        "tokens_per_s",
        "device",
        "kernels",
    ]
    charts = "\n".join(
        f'<section><h3>{html.escape({**CHARTS, **TUNE_CHARTS}[name])}</h3><div id="{name}" class="chart"></div>'
        f'<p class="caption">{html.escape(captions[name])}</p><p><a href="{name}.html">interactive</a> · '
        f'<a href="{name}.svg">SVG</a> · <a href="{name}.png">PNG</a></p></section>'
        for name in specs
        if name not in FIRST_SCREEN_CHARTS
    )
    warnings = ranked_warnings(fits, every_warning(fits))
    note = (
        f"<p class=warn>{len(excluded)} run(s) left out of the fit as not completed (diverged): "
        f"{html.escape(', '.join(map(str, excluded)))}</p>"
        if excluded
        else ""
    )
    boot = fits.get("bootstrap") or {}
    units = f" of {boot['units']} independent units" if boot.get("units") else ""
    method = f": {html.escape(boot['method'])}" if boot.get("method") else ""
    boot_text = (
        f"Brackets are bootstrap 95% intervals ({boot.get('samples')} resamples{units}, seed {boot.get('seed')})"
        f"{method}. Each number is shown to the precision its interval supports."
        if boot.get("intervals")
        else "No bootstrap was run (fit.bootstrap: 0)."
    )
    summary = "\n".join(summary_items(fits))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scaling-law report</title>
<style>
body {{ font-family: sans-serif; max-width: 1360px; margin: 0.6em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; margin: 0.2em 0; }}
h2 {{ font-size: 1.25em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
td small {{ color: #555; }}
#answer td, #lookup-table td {{ white-space: nowrap; }}
tr.diverged td {{ background: #fde8e0; color: #a40; }}
.warn {{ color: #a40; }}
.caption {{ font-size: 0.9em; color: #444; max-width: 900px; }}
section {{ margin: 1.2em 0; }}
#first-screen {{ margin: 0.4em 0; }}
#first-screen h2 {{ margin: 0.4em 0 0.2em; }}
#first-screen h3 {{ font-size: 1em; margin: 0.6em 0 0.2em; }}
#first-screen ol {{ margin: 0.2em 0; padding-left: 1.4em; font-size: 0.88em; }}
.study {{ font-size: 0.95em; margin: 0.3em 0; }}
.answer {{ display: flex; gap: 1.5em; align-items: flex-start; }}
.answer > div:first-child {{ flex: 1 1 auto; min-width: 0; }}
.decision-chart {{ flex: 0 0 auto; }}
</style>
<script>{vl_convert.javascript_bundle()}</script>
</head><body>
<h1>Scaling-law report</h1>
{first_screen(fits, warnings)}
{law_section(fits, warnings)}
{lookup_section(fits)}
<h2>Every approach</h2>
<p>{boot_text}</p>
<ul>
{summary}
</ul>
<p>{allocation_laws(fits)}</p>
<p>{html.escape(axis_note(fits))}. Loss is the validation loss in nats per token.</p>
{note}
<h2>Fitted parameters</h2>
{parameters_html(fits)}
{sensitivity_section(fits)}
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
