"""Report stage: Altair charts and an index page, readable with the network off.

Each chart is saved twice: as self-contained HTML (Vega, Vega-Lite and
vega-embed inlined by vl-convert) and as SVG for papers. ``index.html``
inlines the same libraries once and embeds every chart, the fitted law, the
fitted parameters and the table of runs. Everything is rebuilt from
``results/`` alone: the runs table, the curves table and the fits.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import altair as alt
import numpy as np
import polars as pl
import vl_convert

from workflow.fit import predict_approach3
from workflow.io import atomic_path, read_json, write_text_atomic

CHARTS = ("loss_vs_compute", "loss_vs_params", "training_curves")
TOOLTIP = [
    alt.Tooltip("run_id:N", title="run"),
    alt.Tooltip("params:Q", title="N", format=".3s"),
    alt.Tooltip("tokens:Q", title="D", format=".3s"),
    alt.Tooltip("flops:Q", title="C (FLOPs)", format=".3s"),
    alt.Tooltip("loss:Q", title="validation loss", format=".4f"),
]


def log_scale(*columns) -> alt.Scale:
    """A log axis fitted to the data, not stretched to whole decades."""
    values = np.concatenate([np.asarray(c, dtype=float) for c in columns])
    values = values[np.isfinite(values) & (values > 0)]
    return alt.Scale(type="log", domain=[float(values.min()) / 1.15, float(values.max()) * 1.15], nice=False)


def _axis_note(fits: dict) -> str:
    return f"C: '{fits.get('flop_convention')}' FLOPs; N: {fits.get('parameter_count')} parameters"


def loss_vs_compute(runs: pl.DataFrame, fits: dict) -> alt.Chart:
    done = runs.filter(pl.col("status") == "completed")
    frontier = fits["frontier"]
    c = np.geomspace(done["flops"].min(), done["flops"].max(), 64)
    fitted = pl.DataFrame({"flops": c, "loss": frontier["A_C"] * c ** -frontier["gamma"]})
    points = alt.Chart(done).mark_circle(size=70, opacity=0.85).encode(
        x=alt.X("flops:Q", scale=log_scale(c), title="training compute C (FLOPs)", axis=alt.Axis(format=".1e")),
        y=alt.Y("loss:Q", scale=log_scale(done["loss"], fitted["loss"]), title="validation loss (nats/token)"),
        color=alt.Color("params:Q", scale=alt.Scale(type="log", scheme="viridis"), title="N"),
        tooltip=TOOLTIP,
    )
    line = alt.Chart(fitted).mark_line(color="black", strokeDash=[6, 3]).encode(x="flops:Q", y="loss:Q")
    title = alt.TitleParams(
        f"Loss against compute; frontier L(C) = {frontier['A_C']:.3g}·C^-{frontier['gamma']:.3f}",
        subtitle=_axis_note(fits))
    return (points + line).properties(title=title, width=520, height=340)


def loss_vs_params(runs: pl.DataFrame, fits: dict) -> alt.Chart:
    done = runs.filter(pl.col("status") == "completed").with_columns(
        pl.col("tokens").map_elements(lambda t: f"{t:.3g}", return_dtype=pl.String).alias("D"))
    a3 = fits["approach3"]
    n = np.geomspace(done["params"].min() / 1.5, done["params"].max() * 1.5, 48)
    surface = pl.concat([
        pl.DataFrame({"params": n, "loss": predict_approach3(a3, n, d), "D": f"{d:.3g}"})
        for d in sorted(set(done["tokens"].to_list()))
    ])
    color = alt.Color("D:N", title="tokens D", sort=sorted(set(done["D"].to_list()), key=float))
    points = alt.Chart(done).mark_circle(size=70).encode(
        x=alt.X("params:Q", scale=log_scale(n), title="parameters N"),
        y=alt.Y("loss:Q", scale=log_scale(done["loss"], surface["loss"]), title="validation loss (nats/token)"),
        color=color, tooltip=TOOLTIP)
    lines = alt.Chart(surface).mark_line(strokeDash=[4, 2]).encode(x="params:Q", y="loss:Q", color=color)
    title = alt.TitleParams(
        f"Loss against N for each D; L = {a3['E']:.3g} + {a3['A']:.3g}/N^{a3['alpha']:.3f} "
        f"+ {a3['B']:.3g}/D^{a3['beta']:.3f}", subtitle=_axis_note(fits))
    return (points + lines).properties(title=title, width=520, height=340)


def training_curves(curves: pl.DataFrame, fits: dict) -> alt.Chart:
    chart = alt.Chart(curves).mark_line(opacity=0.8).encode(
        x=alt.X("tokens:Q", scale=log_scale(curves["tokens"]), title="tokens trained"),
        y=alt.Y("train_loss:Q", scale=log_scale(curves["train_loss"]), title="training loss (nats/token)"),
        color=alt.Color("params:Q", scale=alt.Scale(type="log", scheme="viridis"), title="N"),
        detail="run_id:N",
        tooltip=[alt.Tooltip("run_id:N", title="run"), alt.Tooltip("step:Q"),
                 alt.Tooltip("tokens:Q", format=".3s"), alt.Tooltip("train_loss:Q", format=".4f")],
    )
    return chart.properties(title=alt.TitleParams("Training curves", subtitle=_axis_note(fits)),
                            width=520, height=340)


def _table_html(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows():
        cells = []
        for value in row:
            text = f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def index_page(specs: dict[str, dict], runs: pl.DataFrame, fits: dict) -> str:
    a3, frontier = fits["approach3"], fits["frontier"]
    excluded = fits["data"]["runs_excluded"]
    params_table = pl.DataFrame({
        "parameter": ["E", "A", "B", "alpha", "beta", "a = beta/(alpha+beta)", "b = alpha/(alpha+beta)",
                      "A_C (frontier)", "gamma (frontier)"],
        "value": [a3["E"], a3["A"], a3["B"], a3["alpha"], a3["beta"], a3["a_exponent"], a3["b_exponent"],
                  frontier["A_C"], frontier["gamma"]],
    })
    run_columns = ["run_id", "status", "params", "tokens", "flops", "loss", "bits_per_byte", "train_loss",
                   "tokens_per_s", "device", "kernels"]
    charts = "\n".join(
        f'<section><div id="{name}"></div><p><a href="{name}.html">interactive</a> · '
        f'<a href="{name}.svg">SVG</a></p></section>' for name in specs)
    embeds = "\n".join(
        f'vegaEmbed("#{name}", {json.dumps(spec)}, {{renderer: "svg", actions: false}})'
        f'.catch(e => console.error(e));' for name, spec in specs.items())
    note = (f"<p class=warn>{len(excluded)} run(s) left out of the fit as not completed (diverged): "
            f"{html.escape(', '.join(map(str, excluded)))}</p>" if excluded else "")
    law = (f"L(N, D) = {a3['E']:.4g} + {a3['A']:.4g} / N<sup>{a3['alpha']:.4f}</sup> + "
           f"{a3['B']:.4g} / D<sup>{a3['beta']:.4f}</sup>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scaling-law report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
.warn {{ color: #a40; }}
section {{ margin: 2em 0; }}
</style>
<script>{vl_convert.javascript_bundle()}</script>
</head><body>
<h1>Scaling-law report</h1>
<p>Fitted law (Chinchilla Approach 3, Huber loss on log-loss, L-BFGS from the best
{a3['starts_refined']} of {a3['starts']} grid starts, {a3['runs']} runs): {law}.
Compute-optimal allocation: N<sub>opt</sub> ∝ C<sup>{a3['a_exponent']:.3f}</sup>,
D<sub>opt</sub> ∝ C<sup>{a3['b_exponent']:.3f}</sup>.
Compute frontier: L(C) = {frontier['A_C']:.4g} · C<sup>-{frontier['gamma']:.4f}</sup>.</p>
<p>{html.escape(_axis_note(fits))}. Loss is the validation loss in nats per token.</p>
{note}
<h2>Fitted parameters</h2>
{_table_html(params_table)}
<h2>Charts</h2>
{charts}
<h2>Runs</h2>
{_table_html(runs.select([c for c in run_columns if c in runs.columns]))}
<script>
{embeds}
</script>
</body></html>
"""


def build_report(runs: pl.DataFrame, curves: pl.DataFrame, fits: dict, out_dir: Path) -> list[Path]:
    charts = {
        "loss_vs_compute": loss_vs_compute(runs, fits),
        "loss_vs_params": loss_vs_params(runs, fits),
        "training_curves": training_curves(curves, fits),
    }
    written = []
    for name, chart in charts.items():
        for suffix in (".html", ".svg"):
            path = out_dir / f"{name}{suffix}"
            with atomic_path(path) as tmp:
                if suffix == ".html":
                    chart.save(str(tmp), format="html", inline=True)
                else:
                    chart.save(str(tmp), format="svg")
            written.append(path)
    specs = {name: chart.to_dict() for name, chart in charts.items()}
    write_text_atomic(out_dir / "index.html", index_page(specs, runs, fits))
    written.append(out_dir / "index.html")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.report", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, type=Path, help="runs table (parquet)")
    parser.add_argument("--curves", required=True, type=Path, help="curves table (parquet)")
    parser.add_argument("--fits", required=True, type=Path, help="fits.json")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    written = build_report(pl.read_parquet(args.runs), pl.read_parquet(args.curves), read_json(args.fits),
                           args.out_dir)
    print(f"report: {written[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
