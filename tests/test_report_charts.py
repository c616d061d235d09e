"""Every chart of the report reads true: legends list exactly the levels drawn, laws are solid only over
the range their group sampled, axes use the report's one number format, no colour fades into the white.

Read from each chart's Vega-Lite spec (chart.to_dict()), on the IsoFLOP study of test_report and on a
study that adds WSD runs outside every budget (a trunk per size and its cooldown branches at 3 token counts).
"""

import math

import polars as pl
import pytest
from synthetic import curves_of, grid_study, grid_table
from test_report import LAW, study  # noqa: F401 (study: the fixture, reused)

from workflow.report import CHARTS, units
from workflow.report.chart_parts import level_labels
from workflow.report.charts import training_curves

LEGEND_CHANNELS = ("color", "fill", "stroke", "shape", "strokeDash", "size")
COUNT_FIELDS = {"params", "tokens", "n_opt", "d_opt", "n_low", "n_high"}
FLOPS_FIELDS = {"flops", "budget_flops"}


@pytest.fixture(scope="module")
def wsd_study(study):  # noqa: F811
    """The IsoFLOP study plus 4 sizes x 3 token counts outside every budget, each size one WSD training
    run whose cooldown branches are the 3 runs, with the trunk's training curve and the branches'.
    Drawn with the IsoFLOP study's fits (a second fit takes a minute): these tests check the drawing."""
    runs, curves, fits = study
    runs = runs.with_columns(training_run=pl.col("run_id"))
    grid = grid_table(*grid_study(noise=0.01, seed=5, law=LAW, sizes=(3e7, 6e8, 4), tokens=(3e9, 3e10, 3)))
    grid = grid.with_columns(
        status=pl.lit("completed"),
        compute_budget=pl.lit(None, dtype=pl.Float64),
        training_run=pl.format("T{}", pl.col("params").cast(pl.Int64)),
    ).with_columns(run_id=pl.format("{}@D{}", pl.col("training_run"), pl.col("tokens").cast(pl.Int64)))
    trunks = (
        grid.group_by("training_run")
        .agg(pl.col("params").first(), pl.col("tokens").max())
        .rename({"training_run": "run_id"})
    )
    wsd_curves = pl.concat([curves_of(grid, steps=60, noise=0.01, law=LAW), curves_of(trunks, steps=400, law=LAW)])
    runs = pl.concat([runs, grid], how="diagonal_relaxed")
    curves = pl.concat([curves, wsd_curves], how="diagonal_relaxed")
    return runs, curves, fits


@pytest.fixture(scope="module", params=["isoflop", "wsd"])
def specs(request, study, wsd_study):  # noqa: F811
    """Every chart's spec (and the study it was drawn from), for each study."""
    import importlib

    runs, curves, fits = study if request.param == "isoflop" else wsd_study
    drawn = {
        name: importlib.import_module(f"workflow.report.charts.{name}").draw(runs, curves, fits) for name in CHARTS
    }
    return {name: chart.to_dict() for name, (chart, _) in drawn.items()}, (runs, curves, fits)


def views(spec: dict, data: dict | None = None):
    """Every single view (a dict with a mark) in a spec, however layered or concatenated, with the
    data it inherits from the views around it."""
    data = spec.get("data", data)
    if "mark" in spec:
        yield {**spec, "data": data}
    for key in ("layer", "hconcat", "vconcat", "concat"):
        for child in spec.get(key, []):
            yield from views(child, data)


def rows(spec: dict, view: dict) -> list[dict]:
    return spec["datasets"][view["data"]["name"]]


def present(spec: dict, field: str) -> set:
    """The values of ``field`` in every dataset of the chart that has it."""
    return {row[field] for data in spec["datasets"].values() for row in data if row.get(field) is not None}


def mark_of(view: dict) -> dict:
    return view["mark"] if isinstance(view["mark"], dict) else {"type": view["mark"]}


def solid(view: dict) -> bool:
    dash = mark_of(view).get("strokeDash")
    return mark_of(view)["type"] == "line" and (dash is None or dash == [1, 0]) and "strokeDash" not in view["encoding"]


def test_every_legend_lists_exactly_the_levels_in_the_chart(specs):
    """A legend is of levels (never tick values of a continuous scale), and its levels are those drawn."""
    found = 0
    for name, spec in specs[0].items():
        for view in views(spec):
            for channel in LEGEND_CHANNELS:
                enc = view.get("encoding", {}).get(channel)
                if not isinstance(enc, dict) or "field" not in enc:
                    continue
                assert enc["type"] != "quantitative", (name, channel, enc["field"])
                domain = (enc.get("scale") or {}).get("domain")
                assert domain is not None, (name, channel, enc["field"], "no explicit domain")
                assert len(domain) == len(set(domain)), (name, domain)
                assert set(domain) == present(spec, enc["field"]), (name, channel, enc["field"])
                found += 1
    assert found >= len(CHARTS)


def test_loss_against_d_has_one_level_per_model_size(specs):
    spec, (runs, _, _) = specs
    sizes = runs.filter(pl.col("status") == "completed")["params"].unique()
    color = next(v["encoding"]["color"] for v in views(spec["loss_vs_tokens"]) if "color" in v["encoding"])
    assert color["scale"]["domain"] == list(level_labels(sizes).values())
    assert len(color["scale"]["domain"]) == len(sizes)


def test_loss_against_n_groups_by_budget_then_d(specs):
    """On an IsoFLOP grid every D is distinct: the groups are the budgets (and D only outside them)."""
    spec, (runs, _, _) = specs
    done = runs.filter(pl.col("status") == "completed")
    budgets = done["compute_budget"].drop_nulls().unique()
    off = done.filter(pl.col("compute_budget").is_null())["tokens"].unique()
    color = next(v["encoding"]["color"] for v in views(spec["loss_vs_params"]) if "color" in v["encoding"])
    assert len(color["scale"]["domain"]) == len(budgets) + len(off)
    assert [f"C = {units.flops(c)}" for c in sorted(budgets)] == color["scale"]["domain"][: len(budgets)]


def ranges(spec: dict, group: str, x: str) -> dict:
    """The sampled x range of each group, from the chart's points (circles)."""
    out = {}
    for view in views(spec):
        if mark_of(view)["type"] == "circle":
            for row in rows(spec, view):
                low, high = out.get(row[group], (math.inf, -math.inf))
                out[row[group]] = (min(low, row[x]), max(high, row[x]))
    return out


@pytest.mark.parametrize(
    "name, group, x",
    [
        ("loss_vs_tokens", "group", "tokens"),
        ("loss_vs_params", "group", "params"),
        ("isoflop_profiles", "budget", "params"),
    ],
)
def test_a_solid_curve_stays_within_its_groups_sampled_range(specs, name, group, x):
    spec = specs[0][name]
    sampled = ranges(spec, group, x)
    lines = [v for v in views(spec) if solid(v)]
    assert lines, f"{name}: no curve drawn solid"
    for view in lines:
        for row in rows(spec, view):
            low, high = sampled[row[group]]
            assert low * (1 - 1e-9) <= row[x] <= high * (1 + 1e-9), (name, row)
    dashed = [v for v in views(spec) if mark_of(v)["type"] == "line" and not solid(v)]
    assert dashed, f"{name}: nothing drawn beyond the sampled range"


def test_compute_curves_are_solid_only_over_the_runs_compute(specs):
    spec, (runs, _, _) = specs
    done = runs.filter(pl.col("status") == "completed")
    low, high = done["flops"].min(), done["flops"].max()
    for name in ("optimal_allocation", "loss_vs_compute"):
        for view in views(spec[name]):
            if solid(view) and "flops" in view["encoding"].get("x", {}).get("field", "flops"):
                xs = [row["flops"] for row in rows(spec[name], view)]
                assert low * (1 - 1e-9) <= min(xs) and max(xs) <= high * (1 + 1e-9), name


def test_allocation_reaches_the_largest_prediction_and_sets_apart_approach_2(specs):
    spec, (_, _, fits) = specs
    chart = spec["optimal_allocation"]
    largest = max(row["flops"] for row in fits["predictions"])
    domains = [v["encoding"]["x"]["scale"]["domain"] for v in views(chart) if "scale" in v["encoding"]["x"]]
    assert domains and all(d[1] >= largest for d in domains)
    assert largest in present(chart, "budget")  # the predictions are drawn
    shapes = [v["encoding"]["shape"] for v in views(chart) if "shape" in v["encoding"]]
    assert shapes
    scale = shapes[0]["scale"]
    shape_of = dict(zip(scale["domain"], scale["range"]))
    assert shape_of["Approach 1 optima"] != shape_of["Approach 2 optima"]
    size_of = dict(
        zip(
            *(
                next(v["encoding"]["size"] for v in views(chart) if "size" in v["encoding"])["scale"][k]
                for k in ("domain", "range")
            )
        )
    )
    assert size_of["Approach 2 optima"] > 3 * size_of["Approach 1 optima"]
    line_legends = [
        v["encoding"]["color"]["legend"]
        for v in views(chart)
        if mark_of(v)["type"] == "line" and "color" in v["encoding"]
    ]
    assert line_legends and all(legend is None or legend.get("symbolType") == "stroke" for legend in line_legends)


def test_isoflop_minima_carry_their_bootstrap_intervals(specs):
    spec, (_, _, fits) = specs
    if "skipped" in fits["bootstrap"]:
        assert not [v for v in views(spec["isoflop_profiles"]) if mark_of(v)["type"] == "rule"]
        return
    recorded = fits["bootstrap"]["intervals"]["approach2"]
    kept = [b for b in fits["approach2"]["budgets"] if b["kept"]]
    assert all(f"minima.{b['compute_budget']:g}.n_opt" in recorded for b in kept)
    bars = [v for v in views(spec["isoflop_profiles"]) if mark_of(v)["type"] == "rule"]
    assert {r["n_low"] for v in bars for r in rows(spec["isoflop_profiles"], v)} == {
        recorded[f"minima.{b['compute_budget']:g}.n_opt"][0] for b in kept
    }
    slices = [v for v in views(spec["isoflop_profiles"]) if mark_of(v).get("strokeWidth") == 1]
    assert slices, "Approach 3's law along each budget is not drawn"


def test_residuals_are_drawn_against_n_d_and_c(specs):
    chart = specs[0]["residuals"]
    fields = [
        next(v["encoding"]["x"]["field"] for v in views(panel) if v["encoding"].get("x", {}).get("field"))
        for panel in chart["hconcat"]
    ]
    assert fields == ["params", "tokens", "flops"]


def test_training_curves_set_trunks_apart_from_branches_and_are_thinned(specs):
    spec, (runs, curves, _) = specs
    chart = spec["training_curves"]
    view = next(views(chart))
    dash = view["encoding"]["strokeDash"]["scale"]
    style = dict(zip(dash["domain"], map(tuple, dash["range"])))
    if "training_run" in runs.columns and runs["training_run"].ne(runs["run_id"]).any():
        assert style[training_curves.TRUNK] != style[training_curves.BRANCH]
    drawn = pl.DataFrame(rows(chart, view))
    assert drawn.group_by("run_id").len()["len"].max() <= training_curves.POINTS + 1
    assert drawn["run_id"].n_unique() == curves["run_id"].n_unique()


def test_axes_use_the_one_number_format(specs):
    for name, spec in specs[0].items():
        for view in views(spec):
            for channel in ("x", "y"):
                enc = view.get("encoding", {}).get(channel) or {}
                axis = enc.get("axis")
                if not isinstance(axis, dict):
                    continue
                assert "format" not in axis, (name, channel, axis)
                if enc.get("field") in COUNT_FIELDS:
                    assert axis.get("labelExpr") == units.AXIS_COUNT, (name, enc["field"])
                if enc.get("field") in FLOPS_FIELDS:
                    assert axis.get("labelExpr") == units.AXIS_FLOPS, (name, enc["field"])


def luminance(color: str) -> float:
    """Relative luminance (WCAG) of '#rrggbb'."""
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_no_colour_fades_into_the_white_page(specs):
    """Explicit colours only (a scheme such as viridis ends in a yellow that vanishes), each with a
    contrast of at least 2:1 against white."""
    for name, spec in specs[0].items():
        for view in views(spec):
            for channel in ("color", "fill", "stroke"):
                scale = (view.get("encoding", {}).get(channel) or {}).get("scale") or {}
                assert "scheme" not in scale, (name, scale)
                for color in scale.get("range", []):
                    assert 1.05 / (luminance(color) + 0.05) >= 2.0, (name, color)
