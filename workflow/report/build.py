"""Writes the report: every chart of CHARTS in every format with its caption, parameters.csv,
sensitivity.csv (the sensitivity panel's refits), captions/index.rst and index.html, all from results/
alone (the runs table, the curves table and fits.json).

Every chart is saved three times: self-contained HTML (Vega, Vega-Lite and
vega-embed inlined by vl-convert), SVG and PNG for papers. Each also gets a
caption in reStructuredText holding its numbers (``captions/<chart>.rst``),
which ``snakemake --report`` shows beside it.

The page records its own rendering, so that a headless browser can check it:
each chart's container gets ``data-rendered`` once Vega has drawn it, and the
body gets ``data-errors`` (console errors, uncaught errors, failed resource
loads) and ``data-report-status="done"`` when every chart has settled.
"""

from __future__ import annotations

import argparse
import html
import importlib
import json
import re
import sys
from pathlib import Path

import polars as pl

from workflow.files import atomic_path, read_json, write_text_atomic
from workflow.fit.schema import LAYOUT
from workflow.report import CHARTS, TUNE_CHARTS
from workflow.report.chart_parts import law_text
from workflow.report.page import allocation_sentences, index_page, lookup_table, parameters_table
from workflow.report.save import caption_rst, save_chart
from workflow.report.validity import sensitivity_table


def build_report(
    runs: pl.DataFrame, curves: pl.DataFrame, fits: dict, out_dir: Path, tune: tuple[pl.DataFrame, dict] | None = None
) -> list[Path]:
    """Every chart, caption and table; ``tune`` (the sweep table and tuning.json) adds the tune charts."""
    made = {name: importlib.import_module(f"workflow.report.charts.{name}").draw(runs, curves, fits) for name in CHARTS}
    if tune is not None:
        made |= {name: importlib.import_module(f"workflow.report.charts.{name}").draw(*tune) for name in TUNE_CHARTS}
    titles = {**CHARTS, **TUNE_CHARTS}
    written = []
    for name, (chart, caption) in made.items():
        written += save_chart(chart, caption, titles[name], out_dir / name)
    tables = {
        "parameters.csv": parameters_table(fits),
        "sensitivity.csv": sensitivity_table(fits),
        "lookup.csv": lookup_table(fits),
    }
    for file, frame in tables.items():
        table = out_dir / file
        with atomic_path(table) as tmp:
            frame.write_csv(tmp)
        written.append(table)
    specs = {name: chart.to_dict() for name, (chart, _) in made.items()}
    captions = {name: caption for name, (_, caption) in made.items()}
    index_caption = out_dir / "captions" / "index.rst"
    page_text = f"{law_text(fits)}. " + html_to_text(allocation_sentences(fits))
    write_text_atomic(index_caption, caption_rst("The report page", page_text))
    written.append(index_caption)
    write_text_atomic(out_dir / "index.html", index_page(specs, captions, runs, fits))
    written.append(out_dir / "index.html")
    return written


def html_to_text(text: str) -> str:
    """The page's inline HTML as plain text: N<sub>opt</sub> as N_opt, C<sup>a</sup> as C^a, other tags
    dropped, entities unescaped."""
    for tag, plain in (("<sub>", "_"), ("</sub>", ""), ("<sup>", "^"), ("</sup>", "")):
        text = text.replace(tag, plain)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.report", description="Report stage: Altair charts, their captions and an index page."
    )
    parser.add_argument("--runs", required=True, type=Path, help="runs table (parquet)")
    parser.add_argument("--curves", required=True, type=Path, help="curves table (parquet)")
    parser.add_argument("--fits", required=True, type=Path, help="fits.json")
    parser.add_argument("--tune-dir", type=Path, help="results/tune of a tuned study (tuning.json, sweep.csv)")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        fits = read_json(args.fits)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        print(f"error: {args.fits} is not valid JSON ({e}); refit: snakemake --forcerun fit", file=sys.stderr)
        return 1
    # A fits.json from another version of the pipeline (before layouts were numbered: layout 1).
    found = fits.get("layout", 1) if isinstance(fits, dict) else None
    if found != LAYOUT:
        print(
            f"error: {args.fits} has fits.json layout {found}; this report needs layout {LAYOUT} "
            f"(workflow/fit/schema.py): refit it with this version of the pipeline (snakemake --forcerun fit)",
            file=sys.stderr,
        )
        return 1
    # A key missing (a file edited by hand, or written by a pipeline in between) was a KeyError traceback,
    # some charts already written; checked whole before anything is written.
    from workflow.fit.schema import layout_problem

    problem = layout_problem(fits)
    if problem:
        print(
            f"error: {args.fits} is not a complete fits.json of layout {LAYOUT}: {problem} "
            f"(workflow/fit/schema.py); refit it with this version of the pipeline (snakemake --forcerun fit)",
            file=sys.stderr,
        )
        return 1
    tune = None
    if args.tune_dir is not None:
        tune = (pl.read_csv(args.tune_dir / "sweep.csv"), read_json(args.tune_dir / "tuning.json"))
    runs, curves = pl.read_parquet(args.runs), pl.read_parquet(args.curves)
    if fits.get("form") == "arms":
        from workflow.report.arms import build_arms_report

        written = build_arms_report(runs, curves, fits, args.out_dir, build_one=build_report)
    else:
        written = build_report(runs, curves, fits, args.out_dir, tune)
    print(f"report: {written[-1]}")
    return 0
