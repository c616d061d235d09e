"""The report of a study with arms (fits.json's arms form, workflow/fit/compare.py): a comparison page
first, each arm's own report beneath it in arms/<arm>/.

The comparison's first screen: what the arms are and on which yardstick they were compared, one verdict
per arm ("BASE needs m [lo, hi]x the compute of ARM at C; ..."), the multiplier chart (m(C) with its paired
band, the range every arm trained shaded, the targets marked), and the warnings. Below: the multiplier at
the largest compute trained and at each target with its paired and unpaired intervals, the differences
of the law's exponents and floor, the crossover, the arms' frontiers on one chart and their parameters
side by side. comparison.csv holds every budget's multiplier with both intervals.
"""

from __future__ import annotations

import html
import importlib
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import vl_convert

from workflow.files import atomic_path, write_text_atomic
from workflow.report import ARMS_CHARTS
from workflow.report.chart_parts import axis_note, interval, precise_parts
from workflow.report.first_screen import study_sentence
from workflow.report.page import RENDER_SCRIPT
from workflow.report.save import caption_rst, save_chart
from workflow.report.units import flops

# The law's parameters the side-by-side table shows, in this order.
PARAMETERS = ("E", "A", "B", "alpha", "beta", "a")


def arm_dir(arm: str) -> str:
    """The folder of an arm's own report (arm names are run-id parts: letters, digits, - and _)."""
    return f"arms/{arm}"


def arm_runs(runs: pl.DataFrame, curves: pl.DataFrame, column: str, arm: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """An arm's rows of the runs table, and the training curves of those runs."""
    own = runs.filter(pl.col(column).cast(pl.String) == arm)
    if "run_id" in curves.columns and "run_id" in own.columns:
        return own, curves.filter(pl.col("run_id").is_in(own["run_id"].to_list()))
    return own, curves


def ratio(value, ci) -> str:
    """A multiplier and its interval, '0.67x [0.58, 0.77]', or why there is none."""
    if value is None:
        return "unbounded (the arm's loss is at or below the baseline's floor E)"
    shown, bracket = precise_parts(value, ci)
    return f"{shown}x" + (f" {bracket}" if bracket else "")


def comparison_table(fits: dict) -> pl.DataFrame:
    """comparison.csv: each arm's multiplier at every budget, with the paired and unpaired intervals."""
    rows = []
    for arm, section in fits["comparison"]["arms"].items():
        for row in section["budgets"]:
            paired, unpaired = row.get("interval") or [None, None], row.get("unpaired_interval") or [None, None]
            rows.append(
                {
                    "arm": arm,
                    "baseline": fits["baseline"],
                    "flops": row["flops"],
                    "extrapolation_factor": row["extrapolation_factor"],
                    "trained": row["trained"],
                    "multiplier": row["multiplier"],
                    "ci95_low": paired[0],
                    "ci95_high": paired[1],
                    "unpaired_ci95_low": unpaired[0],
                    "unpaired_ci95_high": unpaired[1],
                    "arm_loss": row["arm_loss"],
                    "baseline_loss": row["baseline_loss"],
                }
            )
    numbers = ("extrapolation_factor", "multiplier", "ci95_low", "ci95_high", "unpaired_ci95_low")
    overrides = {c: pl.Float64 for c in (*numbers, "unpaired_ci95_high", "arm_loss", "baseline_loss")}
    return pl.DataFrame(rows, schema_overrides=overrides)


def shown_budgets(fits: dict, section: dict) -> list[dict]:
    """The rows the page shows: the largest compute every arm trained and each target budget."""
    largest = fits["comparison"]["trained_range"][1]
    targets = {row["flops"] for row in fits["arms"][fits["baseline"]].get("predictions") or []}
    return [r for r in section["budgets"] if r["flops"] == largest or r["flops"] in targets]


def multiplier_rows(fits: dict) -> str:
    rows = []
    largest = fits["comparison"]["trained_range"][1]
    for arm, section in fits["comparison"]["arms"].items():
        for r in shown_budgets(fits, section):
            reach = (
                "largest compute every arm trained" if r["flops"] == largest else f"{r['extrapolation_factor']:.3g}x it"
            )
            unpaired = r.get("unpaired_interval")
            rows.append(
                f'<tr data-arm="{html.escape(arm)}" data-flops="{r["flops"]!r}" data-value="{r["multiplier"]!r}">'
                f"<td>{html.escape(arm)}</td><td>{flops(r['flops'])}</td><td>{reach}</td>"
                f"<td>{ratio(r['multiplier'], r.get('interval'))}</td>"
                f"<td>{precise_parts(r['multiplier'], unpaired)[1] or ''}</td></tr>"
            )
    return (
        '<table id="multipliers"><thead><tr><th>arm</th><th>compute C (FLOPs)</th><th>reach</th>'
        f"<th>multiplier (paired 95%)</th><th>unpaired 95%</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def differences_rows(fits: dict) -> str:
    rows = []
    for arm, section in fits["comparison"]["arms"].items():
        cells = []
        for q in ("alpha", "beta", "a", "E"):
            d = section["differences"].get(q) or {}
            value, bracket = precise_parts(d.get("value"), d.get("interval"))
            cells.append(f"<td>{value} {bracket or ''}</td>")
        crossing = section["crossover"]
        if crossing.get("flops"):
            ci = crossing.get("interval")
            text = f"{crossing['direction']} at C = {flops(crossing['flops'])}" + (
                f" [{flops(ci[0])}, {flops(ci[1])}]" if ci else ""
            )
        else:
            low, high = crossing["range"]
            share = f"{100 * crossing['resamples_crossing']:.0f}% of resamples cross"
            text = f"none from {flops(low)} to {flops(high)} ({share})"
        rows.append(f"<tr><td>{html.escape(arm)}</td>{''.join(cells)}<td>{text}</td></tr>")
    return (
        f"<table><thead><tr><th>arm minus {html.escape(fits['baseline'])}</th><th>α</th><th>β</th><th>a</th>"
        f"<th>E</th><th>crossover</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def parameters_side_by_side(fits: dict) -> str:
    """Each arm's Approach-3 parameters with their intervals, one column per arm."""
    arms = list(fits["arms"])
    head = "".join(f"<th>{html.escape(a)}{' (baseline)' if a == fits['baseline'] else ''}</th>" for a in arms)
    rows = []
    for key in PARAMETERS:
        cells = []
        for arm in arms:
            section = fits["arms"][arm].get("approach3") or {}
            if key not in section:
                cells.append("<td></td>")
                continue
            value, bracket = precise_parts(section[key], interval(fits["arms"][arm], "approach3", key))
            cells.append(f"<td>{value} <small>{bracket or ''}</small></td>")
        rows.append(f"<tr><td>{key}</td>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th>Approach 3</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def yardstick(runs: pl.DataFrame) -> str:
    """What the arms' losses were compared on (the collect stage's yardstick column), in words."""
    if "yardstick" in runs.columns:
        found = [y for y in runs["yardstick"].drop_nulls().unique().to_list() if y]
        if found:
            return f"Compared on one yardstick: {html.escape('; '.join(sorted(found)))}."
    return "The table records no yardstick: its losses are compared as given."


def comparison_page(specs: dict, captions: dict, runs: pl.DataFrame, fits: dict) -> str:
    comparison = fits["comparison"]
    base = fits["baseline"]
    others = [a for a in fits["arms"] if a != base]
    verdicts = "".join(
        f'<li data-arm="{html.escape(arm)}">{html.escape(section["verdict"])}.</li>'
        for arm, section in comparison["arms"].items()
    )
    warnings = comparison.get("warnings") or []
    for arm, arm_fits in fits["arms"].items():
        warnings += [f"{arm}: {w}" for w in (arm_fits.get("approach3") or {}).get("warnings") or []]
    listed = "".join(f'<li class="warn">{html.escape(w)}</li>' for w in warnings)
    links = " · ".join(
        f'<a href="{arm_dir(a)}/index.html">{html.escape(a)}{" (baseline)" if a == base else ""}</a>'
        for a in fits["arms"]
    )
    charts = "".join(
        f'<section><div id="{name}" class="chart"></div><p class="caption">{html.escape(captions[name])}</p>'
        f'<p><a href="{name}.html">interactive</a> · <a href="{name}.svg">SVG</a> · '
        f'<a href="{name}.png">PNG</a></p></section>'
        for name in specs
        if name != "multiplier"
    )
    conventions = {"parameter_count": fits.get("parameter_count"), "flop_convention": fits.get("flop_convention")}
    base_card = {**fits["arms"][base], **conventions}
    arms_line = f"Arms ({html.escape(fits['arm_column'])}): {html.escape(', '.join(fits['arms']))}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scaling-law comparison</title>
<style>
body {{ font-family: sans-serif; max-width: 1360px; margin: 0.6em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; margin: 0.2em 0; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
td small {{ color: #555; }}
.warn {{ color: #a40; }}
.caption {{ font-size: 0.9em; color: #444; max-width: 900px; }}
.answer {{ display: flex; gap: 1.5em; align-items: flex-start; }}
.answer > div:first-child {{ flex: 1 1 auto; min-width: 0; }}
</style>
<script>{vl_convert.javascript_bundle()}</script>
</head><body>
<h1>Scaling-law comparison: {html.escape(", ".join(others))} against {html.escape(base)}</h1>
<section id="first-screen">
<p id="study-sentence" class="study" data-fold-check>{arms_line};
baseline {html.escape(base)}. {yardstick(runs)} The baseline: {study_sentence(base_card)}</p>
<div class="answer"><div>
<h2>Which arm scales better, as a compute multiplier</h2>
<ul id="verdicts" data-fold-check>{verdicts}</ul>
{multiplier_rows(fits)}
<p class="caption">Multiplier m: the compute {html.escape(base)} needs to reach the loss the arm reaches at its
compute-optimal allocation at C, over C; above 1 the arm is the more compute-efficient. Intervals: a paired
bootstrap ({comparison["samples"]} resamples; {comparison["matched_units"]} units matched across the arms
resampled together), beside an unpaired one. {html.escape(axis_note(fits))}.</p>
{f"<h3>Warnings</h3><ol>{listed}</ol>" if warnings else ""}
</div><div><div id="multiplier" class="chart" data-fold-check></div></div></div>
</section>
<h2>Differences of the law and the crossover</h2>
{differences_rows(fits)}
<h2>Parameters side by side</h2>
{parameters_side_by_side(fits)}
{charts}
<h2>Each arm's own report</h2>
<p>{links}</p>
<script>
const SPECS = {json.dumps(specs)};
{RENDER_SCRIPT}
</script>
</body></html>
"""


def build_arms_report(
    runs: pl.DataFrame, curves: pl.DataFrame, fits: dict, out_dir: Path, build_one: Callable
) -> list[Path]:
    """Each arm's own report in arms/<arm>/ (by ``build_one``, build.build_report: passed in, so that this
    module, which build.py calls, does not import it back), then the comparison's charts, comparison.csv
    and index.html."""
    written = []
    for arm, arm_fits in fits["arms"].items():
        own, own_curves = arm_runs(runs, curves, fits["arm_column"], arm)
        written += build_one(own, own_curves, arm_fits, out_dir / arm_dir(arm))
    made = {name: importlib.import_module(f"workflow.report.charts.{name}").draw(runs, fits) for name in ARMS_CHARTS}
    for name, (chart, caption) in made.items():
        written += save_chart(chart, caption, ARMS_CHARTS[name], out_dir / name)
    table = out_dir / "comparison.csv"
    with atomic_path(table) as tmp:
        comparison_table(fits).write_csv(tmp)
    written.append(table)
    verdicts = " ".join(s["verdict"] + "." for s in fits["comparison"]["arms"].values())
    write_text_atomic(out_dir / "captions" / "index.rst", caption_rst("The comparison page", verdicts))
    written.append(out_dir / "captions" / "index.rst")
    specs = {name: chart.to_dict() for name, (chart, _) in made.items()}
    captions = {name: caption for name, (_, caption) in made.items()}
    write_text_atomic(out_dir / "index.html", comparison_page(specs, captions, runs, fits))
    written.append(out_dir / "index.html")
    return written
