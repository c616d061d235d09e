import json
import re
import xml.etree.ElementTree as ET

import polars as pl
import pytest
from helpers import REPO
from synthetic import curves_of, isoflop_study

from tests.browser import load
from workflow.fit import fit_table
from workflow.fit.registry import APPROACHES
from workflow.report import CHARTS, FORMATS
from workflow.report.build import build_report, main

LAW = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36}
BUDGETS = [1e15, 3e15, 1e16, 3e16]
PREDICT = [1e18, 1e19]


@pytest.fixture(scope="module")
def study():
    """An IsoFLOP study drawn from a known law with 1% noise: 4 budgets x 7 sizes around
    each budget's optimum, each run with a (noise-free) training curve; one run diverged."""
    runs = isoflop_study(BUDGETS, sizes=7, spread=6.0, noise=0.01, seed=7, law=LAW, report_columns=True)
    curves = curves_of(runs, noise=0.0, start=1 / 50, law=LAW)
    runs = runs.with_columns(
        status=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("diverged")).otherwise(pl.col("status")),
        loss=pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("loss")),
    )
    fits = fit_table(
        runs,
        curves=curves,
        bootstrap_samples=40,
        seed=3,
        predict=PREDICT,
        workers=1,
        metadata={"flop_convention": "6N", "parameter_count": "non_embedding"},
    )
    return runs, curves, fits


@pytest.fixture(scope="module")
def report_dir(study, tmp_path_factory):
    runs, curves, fits = study
    out = tmp_path_factory.mktemp("report")
    build_report(runs, curves, fits, out)
    return out


def test_every_approach_is_fitted_on_the_study(study):
    _, _, fits = study
    for name in ("approach1", "approach2", "extrapolation", "bootstrap"):
        assert "skipped" not in fits[name], (name, fits[name])
    assert fits["approach3"]["alpha"] == pytest.approx(LAW["alpha"], abs=0.1)


def test_report_writes_every_chart_in_every_format(report_dir):
    expected = {f"{c}.{ext}" for c in CHARTS for ext in FORMATS} | {"index.html", "parameters.csv"}
    assert expected <= {p.name for p in report_dir.iterdir()}
    assert {p.name for p in (report_dir / "captions").iterdir()} == {f"{c}.rst" for c in CHARTS} | {"index.rst"}
    for chart in CHARTS:
        assert ET.parse(report_dir / f"{chart}.svg").getroot().tag.endswith("svg")
        assert (report_dir / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_loads_nothing_from_the_network(report_dir):
    for path in report_dir.glob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script[^>]+src=", text), path
        assert not re.search(r"<link[^>]+href=\"?https?:", text), path
        assert "vegaEmbed" in text


def test_captions_and_page_carry_the_numbers(study, report_dir):
    runs, _, fits = study
    a3 = fits["approach3"]
    index = (report_dir / "index.html").read_text()
    low, high = fits["bootstrap"]["intervals"]["approach3"]["alpha"]
    assert f"{a3['alpha']:.4g} [{low:.4g}, {high:.4g}]" in index
    assert "'6N' FLOPs" in index and "non_embedding parameters" in index
    diverged = runs.filter(pl.col("status") == "diverged")["run_id"][0]
    assert f"left out of the fit as not completed (diverged): {diverged}" in index
    assert f'<tr class="diverged"><td>{diverged}</td>' in index
    for flops in PREDICT:
        assert f"at C = {flops:.3g} FLOPs" in index
    caption = (report_dir / "captions" / "isoflop_profiles.rst").read_text()
    assert f"C^{fits['approach2']['a']:.4g}" in caption
    caption = (report_dir / "captions" / "extrapolation.rst").read_text()
    assert f"{fits['extrapolation']['mean_absolute_error']:.3g}" in caption
    assert "'6N' FLOPs" in (report_dir / "loss_vs_compute.svg").read_text()
    table = pl.read_csv(report_dir / "parameters.csv")
    alpha = table.filter(pl.col("parameter") == "approach3.alpha")
    assert alpha["ci95_low"][0] == pytest.approx(low) and alpha["ci95_high"][0] == pytest.approx(high)


def test_parameters_table_has_every_fitted_approachs_parameters(study, report_dir):
    _, _, fits = study
    table = pl.read_csv(report_dir / "parameters.csv")
    expected = [f"{a.name}.{key}" for a in APPROACHES if "skipped" not in fits[a.name] for key in a.parameters]
    assert table["parameter"].to_list() == expected
    assert {"approach1.a", "approach2.a", "approach3.a", "frontier.gamma"} <= set(expected)
    index = (report_dir / "index.html").read_text()
    for approach in APPROACHES:  # the page's summary: one item per approach
        assert f"<li>{approach.title}: " in index


def test_light_import_of_the_chart_registry():
    import subprocess
    import sys

    code = (
        "import sys; from workflow.report import CHARTS; "
        "print(sorted(m for m in ('altair', 'vl_convert', 'scipy', 'torch', 'numpy', 'polars') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_published_laws_are_labelled_reference_lines(report_dir):
    spec = (report_dir / "loss_vs_compute.html").read_text()
    assert "published: Hoffmann et al. 2022 (published)" in spec


def test_points_carry_run_tooltips(report_dir):
    spec = (report_dir / "loss_vs_compute.html").read_text()
    for title in ('"title": "run"', '"title": "N"', '"title": "D"', '"title": "C (FLOPs)"'):
        assert title in spec


@pytest.mark.browser
def test_report_renders_in_a_headless_browser_with_the_network_off(report_dir):
    page = load(report_dir / "index.html")
    body = page.body()
    assert body.get("data-report-status") == "done", page.console
    assert body.get("data-errors") == "[]", body.get("data-errors")
    assert not [line for line in page.console if "Uncaught" in line or ":ERROR:" in line], page.console
    rendered = {attrs["id"] for attrs in page.with_attribute("data-rendered")}
    assert rendered == set(CHARTS)
    for chart in CHARTS:  # each chart's own page too
        single = load(report_dir / f"{chart}.html")
        assert "<svg" in single.dom or "<canvas" in single.dom, chart
        assert not [line for line in single.console if "Uncaught" in line], single.console


def test_cli_builds_the_report_from_result_files(study, tmp_path):
    runs, curves, fits = study
    runs.write_parquet(tmp_path / "runs.parquet")
    curves.write_parquet(tmp_path / "curves.parquet")
    (tmp_path / "fits.json").write_text(json.dumps(fits))
    assert (
        main(
            [
                "--runs",
                str(tmp_path / "runs.parquet"),
                "--curves",
                str(tmp_path / "curves.parquet"),
                "--fits",
                str(tmp_path / "fits.json"),
                "--out-dir",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    assert (tmp_path / "report" / "index.html").exists()


def test_warnings_and_the_form_of_the_law_stand_beside_it():
    """The page lists each approach's warnings beneath its law, and a constrained law says its form."""
    from synthetic import grid_study, grid_table

    from workflow.fit.variant import Variant
    from workflow.report.page import summary_items

    law = dict(LAW, beta=LAW["alpha"])
    fits = fit_table(grid_table(*grid_study(law=law)), variant=Variant.of(True, {"E": 1.8}), refine=20)
    fits["approach3"]["warnings"] = ["a <b>warning</b> of the fit"]
    (item,) = [i for i in summary_items(fits) if i.startswith("<li>Approach 3:")]
    assert "with alpha = beta (tied), E fixed at 1.8: E=1.8 A=" in item
    assert '<ul><li class="warn">warning: a &lt;b&gt;warning&lt;/b&gt; of the fit</li></ul>' in item


def test_first_screen_shows_the_law_the_exponents_side_by_side_and_every_warning(study):
    """Before any chart: the law with intervals, a from Approaches 1, 2 and 3 with theirs and whether they
    agree, the extrapolation error and every warning; a skipped approach says why."""
    import copy

    from workflow.report.page import exponents_agree, first_screen

    _, _, fits = study
    page = first_screen(fits)
    assert f"E = {fits['approach3']['E']:.4g} [" in page
    for name in ("approach1", "approach2", "approach3"):
        low, high = fits["bootstrap"]["intervals"][name]["a"]
        assert f"<td>{fits[name]['a']:.3g}</td><td>[{low:.3g}, {high:.3g}]</td>" in page
    agree, common = exponents_agree([fits["bootstrap"]["intervals"][n]["a"] for n in ("approach1", "approach2")])
    assert ("intervals agree" in page) == agree
    assert f"mean error of {100 * fits['extrapolation']['mean_relative_error']:.2f}%" in page
    changed = copy.deepcopy(fits)
    changed["approach2"] = {"skipped": "no IsoFLOP budgets in this study"}
    changed["approach1"]["warnings"] = ["a warning of Approach 1"]
    changed["data"]["warnings"] = ["a warning about the table"]
    changed["kaplan"]["L_N"]["E_note"] = "E is not identified: a note of the law"
    page = first_screen(changed)
    assert "Kaplan laws, L_N: E is not identified: a note of the law" in page
    assert '<td colspan="2" class="warn">skipped: no IsoFLOP budgets in this study</td>' in page
    assert "Approach 1: a warning of Approach 1" in page and "data: a warning about the table" in page
    assert exponents_agree([[0.1, 0.3], [0.4, 0.6]]) == (False, None)
    assert exponents_agree([[0.1, 0.5], [0.4, 0.6], [0.2, 0.45]]) == (True, [0.4, 0.45])


def test_a_prediction_that_rests_on_an_unidentified_parameter_is_not_shown_as_a_number(study):
    """With E unidentified, Approach 3's predicted loss is withheld (it needs E) but its N_opt and D_opt
    are shown (they do not); with A unidentified, those are withheld too."""
    import copy

    from workflow.fit.table_fit import mark_withheld, summary_lines
    from workflow.report.page import allocation_sentences, predictions_table

    _, _, fits = study
    assert "not identified" not in allocation_sentences(fits)
    changed = copy.deepcopy(fits)
    changed["approach3"]["unidentified"] = ["E"]
    mark_withheld(changed)
    sentences = allocation_sentences(changed)
    assert sentences.count("predicted loss not identified (E)") == len(PREDICT)
    assert "N<sub>opt</sub> = not identified" not in sentences
    table = predictions_table(changed).filter(pl.col("approach") == "Approach 3")
    assert table["loss"].is_null().all() and table["n_opt"].is_not_null().all()
    assert set(table["not_identified"]) == {"loss: E"}
    assert any("loss=not identified (E)" in line for line in summary_lines(changed))
    changed["approach3"]["unidentified"] = ["A", "E"]
    mark_withheld(changed)
    assert "N<sub>opt</sub> = not identified (A)" in allocation_sentences(changed)
    assert changed["predictions"][0]["approach3"]["withheld"]["loss"] == ["E", "A"]
    assert changed["predictions"][0]["approach3"]["loss"] == fits["predictions"][0]["approach3"]["loss"]
