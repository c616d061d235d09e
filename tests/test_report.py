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
from workflow.report import CHARTS, FORMATS, units
from workflow.report.build import build_report, main
from workflow.report.chart_parts import precise_parts, with_precision

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
    expected = {f"{c}.{ext}" for c in CHARTS for ext in FORMATS} | {"index.html", "parameters.csv", "sensitivity.csv"}
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
    assert f"alpha = {with_precision(a3['alpha'], [low, high])}" in index
    assert (
        "C = 6 N D, N = non-embedding parameters (fit.flop_convention 6N, fit.parameter_count non_embedding)" in index
    )
    diverged = runs.filter(pl.col("status") == "diverged")["run_id"][0]
    assert f"left out of the fit as not completed (diverged): {diverged}" in index
    assert f'<tr class="diverged"><td>{diverged}</td>' in index
    for flops in PREDICT:  # each target budget has its row in the first screen's answer
        assert f'<tr data-flops="{flops!r}"><td>{units.flops(flops)}</td>' in index
    caption = (report_dir / "captions" / "isoflop_profiles.rst").read_text()
    assert f"C^{fits['approach2']['a']:.4g}" in caption
    caption = (report_dir / "captions" / "extrapolation.rst").read_text()
    assert f"{fits['extrapolation']['mean_absolute_error']:.3g}" in caption
    assert (
        "(fit.flop_convention 6N, fit.parameter_count non_embedding)"
        in (report_dir / "loss_vs_compute.svg").read_text()
    )
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

    from workflow.report.page import every_warning, exponents_agree, law_section

    def first_screen(fits):
        return law_section(fits, every_warning(fits))

    _, _, fits = study
    page = first_screen(fits)
    assert f"E = {with_precision(fits['approach3']['E'], fits['bootstrap']['intervals']['approach3']['E'])}" in page
    for name in ("approach1", "approach2", "approach3"):
        value, bracket = precise_parts(fits[name]["a"], fits["bootstrap"]["intervals"][name]["a"])
        assert f"<td>{value}</td><td>{bracket}</td>" in page
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


def test_numbers_are_shown_to_the_precision_their_intervals_support():
    """2 significant digits of the interval's width, each number with 1 to 4 significant digits; no
    interval (or one of no width): the value to 4 significant digits."""
    assert with_precision(0.4479, [0.25, 0.68]) == "0.45 [0.25, 0.68]"
    assert with_precision(2.0046, [1.5978, 2.1695]) == "2.00 [1.60, 2.17]"
    assert with_precision(0.34123, [0.3401, 0.3425]) == "0.3412 [0.3401, 0.3425]"  # at most 4 digits
    assert with_precision(1.858, [3.62e-9, 2.111]) == "1.9 [4e-09, 2.1]"  # at least 1 digit
    assert with_precision(46.59, [33.57, 70.99]) == "47 [34, 71]"
    assert with_precision(-0.05, [-0.1, 0.02]) == "-0.05 [-0.10, 0.02]"
    assert with_precision(625208.2, [88142.0, 8573829.0]) == "6e+05 [9e+04, 8.6e+06]"  # no padding zeros
    assert with_precision(0.12345, None) == "0.1235"
    assert with_precision(1.0, [1.0, 1.0]) == "1"
    assert with_precision(float("nan"), [0.1, 0.2]) == "n/a"
    assert precise_parts(0.4479, [0.25, 0.68]) == ("0.45", "[0.25, 0.68]")
    assert precise_parts(0.4479, None) == ("0.4479", None)


BACKTEST = {
    "factor": 4.0,
    "folds": [
        {
            "compute_budget": 1e12,
            "extrapolation_factor": 5.0,
            "approach3": {"skipped": "Approach 3 needs at least 6 completed runs; got 2"},
            "frontier": {"predicted": 2.8, "observed": 2.9, "error": -0.1, "interval": [2.7, 2.85], "inside": False},
            "approach1": {"n_opt": 1e4, "observed_best_n": 2e4, "log10_error": -0.30103},
            "approach2": {"skipped": "too few budgets"},
        },
        {
            "compute_budget": 4e12,
            "extrapolation_factor": 4.0,
            "approach3": {
                "refit": {},
                "points": [
                    {"error": 0.02, "interval": [2.5, 2.7], "inside": True},
                    {"error": 0.03, "interval": [2.5, 2.7], "inside": True},
                    {"error": 0.025, "interval": [2.5, 2.6], "inside": False},
                    {"error": 0.025, "interval": None, "inside": False},
                ],
            },
            "frontier": {"predicted": 2.6, "observed": 2.6, "error": 0.0, "interval": [2.5, 2.7], "inside": True},
        },
    ],
    "points_predicted": 4,
    "approach3_mean_signed_error": 0.025,
    "approach3_mean_absolute_error": 0.025,
    "approach3_coverage": 2 / 3,
    "frontier_coverage": 0.5,
    "largest_extrapolation_factor": 5.0,
    "warnings": [],
}


def test_backtest_sentence_gives_reach_signed_error_and_coverage():
    import copy

    from workflow.report.validity import backtest_sentence

    text = backtest_sentence({"backtest": BACKTEST})
    assert "refitted only on runs at least 4x below each of the 2 held-out budgets" in text
    assert "extrapolate up to 5x" in text
    assert "predicts the 4 held-out points with a mean signed error of +0.025 nats" in text
    assert "refitted in 1 of 2 folds" in text
    # Coverage over the points with an interval, marked below 80%.
    assert '<span class="warn">2 of 3 (67%) lie inside their 95% prediction intervals</span>' in text
    assert "inside its predicted 95% interval at 1 of 2 budgets" in text
    assert "Approach 1's N<sub>opt</sub> misses the best observed size by up to 2x (1 of 2 folds)" in text
    assert "Approach 2's" not in text
    covered = copy.deepcopy(BACKTEST)
    covered["approach3_coverage"] = 1.0
    for point in covered["folds"][1]["approach3"]["points"][:3]:
        point["inside"] = True
    assert "; 3 of 3 (100%) lie inside their 95% prediction intervals." in backtest_sentence({"backtest": covered})
    none = copy.deepcopy(BACKTEST)
    none["folds"][1]["approach3"] = {"skipped": "too few runs"}
    none["approach3_mean_signed_error"] = None
    assert "Approach 3 could not be refitted in any fold" in backtest_sentence({"backtest": none})
    skipped = backtest_sentence({"backtest": {"skipped": "no fold could be refitted: <none>"}})
    assert skipped == '<span class="warn">Backtest skipped: no fold could be refitted: &lt;none&gt;</span>'
    assert "Backtest skipped: not computed" in backtest_sentence({})


def test_agreement_line_says_what_the_study_can_and_cannot_tell_apart():
    """Against Kaplan's 0.73 and Chinchilla's 0.5 (references.py): the union of the intervals decides what
    the study cannot tell apart, and where the approaches differ each is named."""
    from workflow.fit.references import REFERENCES
    from workflow.report.page import exponent_rows
    from workflow.report.validity import published_exponents, published_line

    published = published_exponents({})
    assert published == [
        ("Kaplan's", REFERENCES["allocation_exponents"]["Kaplan et al. 2020"]),
        ("Chinchilla's", REFERENCES["allocation_exponents"]["Hoffmann et al. 2022 Approach 1"]),
    ]
    wide = {"approach1": [0.4, 0.9], "approach2": [0.38, 0.84], "approach3": [0.2, 0.78]}
    assert published_line(wide, published) == (
        "These intervals include both Kaplan's 0.73 and Chinchilla's 0.5: this study cannot tell them apart."
    )
    narrow = {"approach1": [0.45, 0.6], "approach2": [0.4, 0.55]}
    assert published_line(narrow, published) == "These intervals exclude Kaplan's 0.73 and include Chinchilla's 0.5."
    differ = {"approach1": [0.6, 0.8], "approach2": [0.4, 0.55], "approach3": [0.45, 0.65]}
    assert published_line(differ, published) == (
        "These intervals include both Kaplan's 0.73 and Chinchilla's 0.5: this study cannot tell them apart. "
        "Approach 1's interval includes Kaplan's 0.73, Approach 2's and Approach 3's exclude it; "
        "Approach 2's and Approach 3's intervals include Chinchilla's 0.5, Approach 1's excludes it."
    )
    assert published_line({"approach3": [0.1, 0.3]}, published) == (
        "Approach 3's interval excludes both Kaplan's 0.73 and Chinchilla's 0.5."
    )
    assert published_line({}, published) == ""
    fits = {
        "approach1": {"a": 0.5},
        "approach2": {"a": 0.48},
        "approach3": {"skipped": "no law"},
        "bootstrap": {"intervals": {"approach1": {"a": [0.45, 0.6]}, "approach2": {"a": [0.4, 0.55]}}},
    }
    table, verdict = exponent_rows(fits)
    assert "<td>0.50</td><td>[0.45, 0.60]</td>" in table
    assert verdict == (
        "The 2 intervals agree: they share [0.45, 0.55]. "
        "These intervals exclude Kaplan&#x27;s 0.73 and include Chinchilla&#x27;s 0.5."
    )


def test_every_prediction_states_its_extrapolation_factor_and_is_flagged_far_past_the_runs(study):
    import copy

    from workflow.report.build import html_to_text
    from workflow.report.chart_parts import table_html
    from workflow.report.page import allocation_sentences, predictions_table
    from workflow.report.validity import EXTRAPOLATION_FLAG

    _, _, fits = study
    largest = fits["data"]["largest_flops"]
    table = predictions_table(fits)
    sentences = allocation_sentences(fits)
    factors = [row["flops"] / largest for row in fits["predictions"]]
    assert factors == pytest.approx([33.33, 333.3], rel=1e-3)  # one on each side of the flag
    for row, factor in zip(fits["predictions"], factors):
        rows = table.filter(pl.col("flops") == row["flops"])
        assert rows["extrapolation_factor"].to_list() == pytest.approx([factor] * rows.height)
        flagged = factor > EXTRAPOLATION_FLAG
        flag = f"extrapolated {float(f'{factor:.3g}'):,.0f}x past the largest run"
        assert set(rows["flag"]) == {flag if flagged else ""}
        note = f'<span class="warn">{flag}</span>' if flagged else f"{factor:.0f}x the largest run"
        assert f"at C = {row['flops']:.3g} FLOPs ({note}): " in sentences
    assert "<span" not in html_to_text(sentences) and "extrapolated 333x past" in html_to_text(sentences)
    assert '<td class="warn">extrapolated 333x past the largest run</td>' in table_html(table, warn_columns=("flag",))
    # Near the runs: the factor without a flag; without the fit's own factor, from the data's largest compute.
    near = copy.deepcopy(fits)
    near["predictions"] = near["predictions"][:1]
    near["predictions"][0]["flops"] = 12 * largest
    del near["predictions"][0]["extrapolation_factor"]
    assert "at C = " in allocation_sentences(near) and "(12x the largest run)" in allocation_sentences(near)
    table = predictions_table(near)
    assert table["extrapolation_factor"].to_list() == pytest.approx([12.0] * table.height)
    assert set(table["flag"]) == {""}


SENSITIVITY = {
    "choices": [
        {
            "group": "loss",
            "choice": "Huber delta 1e-1",
            "alpha": 0.35,
            "beta": 0.37,
            "a": 0.51,
            "E": 1.8,
            "approach2_a": 0.5,
        },
        {
            "group": "design",
            "choice": "without the <smallest> shape",
            "alpha": 0.5,
            "beta": 0.3,
            "a": 0.38,
            "E": 1.6,
            "approach2_a": None,
        },
        {"group": "parameter count", "choice": "N = total parameters", "skipped": "Approach 3 did not converge"},
    ],
    "spreads": {
        "alpha": {"low": 0.35, "high": 0.5, "spread": 0.15, "bootstrap_width": 0.1},
        "a": {"low": 0.38, "high": 0.51, "spread": 0.13, "bootstrap_width": 0.3},
        "E": {"low": 1.6, "high": 1.8, "spread": 0.2},
    },
    "warnings": ["alpha moves by 0.15 across the analysis choices"],
}


def test_sensitivity_panel_tables_every_choice_and_sets_each_spread_beside_its_interval(report_dir):
    from workflow.report.validity import sensitivity_section, sensitivity_table

    table = sensitivity_table({"sensitivity": SENSITIVITY})
    assert table.columns == ["group", "choice", "alpha", "beta", "a", "E", "approach2_a", "skipped"]
    assert table["choice"].to_list() == [c["choice"] for c in SENSITIVITY["choices"]]
    assert table["approach2_a"].to_list() == [0.5, None, None]
    assert table["skipped"].to_list() == [None, None, "Approach 3 did not converge"]
    html = sensitivity_section({"sensitivity": SENSITIVITY})
    assert "<th>a (Approach 2)</th>" in html and "without the &lt;smallest&gt; shape" in html
    assert '<td class="warn">Approach 3 did not converge</td>' in html
    assert '<li class="warn">alpha: from 0.35 to 0.5 across the choices (spread 0.15), wider than its 95% ' in html
    assert "<li>a (Approach 3): from 0.38 to 0.51 across the choices (spread 0.13), within its 95% " in html
    assert "<li>E: from 1.6 to 1.8 across the choices (spread 0.2); no bootstrap interval to set it beside" in html
    assert '<li class="warn">warning: alpha moves by 0.15 across the analysis choices</li>' in html
    assert "Skipped: Approach 3 was not fitted" in sensitivity_section(
        {"sensitivity": {"skipped": "Approach 3 was not fitted"}}
    )
    assert sensitivity_table({}).height == 0
    # The report writes it beside parameters.csv, and the page holds the panel after the parameters.
    written = pl.read_csv(report_dir / "sensitivity.csv")
    assert written.columns == table.columns and written.height >= 5
    index = (report_dir / "index.html").read_text()
    assert index.index("<h2>Fitted parameters</h2>") < index.index('<section id="sensitivity">')


def test_first_screen_lists_the_lack_of_fit_the_seed_noise_and_ranks_the_laws_warnings_first(study):
    import copy

    from workflow.report.page import every_warning, law_section

    def first_screen(fits):
        return law_section(fits, every_warning(fits))

    _, _, fits = study
    changed = copy.deepcopy(fits)
    changed["lack_of_fit"] = {
        "tolerance": 0.02,
        "tolerance_source": "0.02 nats",
        "budgets": [
            {"compute_budget": 2e11, "observed_minimum": 2.973, "law_minimum": 2.923, "gap": -0.05, "flagged": True},
            {"compute_budget": 4e11, "observed_minimum": 2.7, "law_minimum": 2.71, "gap": 0.01, "flagged": False},
        ],
        "largest_gap": 0.05,
        "warnings": ["lack of fit at C = 2e+11 FLOPs"],
    }
    changed["noise"] = {
        "seeds": 3,
        "seed_sd": 0.012,
        "residual_sd": 0.02,
        "lack_of_fit_ratio": 2.8,
        "within_run_correlation": 0.4,
    }
    changed["kaplan"]["L_N"]["E_note"] = "E is not identified"
    page = first_screen(changed)
    assert "Lack of fit at 1 of 2 IsoFLOP budgets" in page
    assert "C = 2e+11 FLOPs: the law&#x27;s minimum 2.923, the lowest observed 2.973 (-0.050 nats)" in page.replace(
        "'", "&#x27;"
    )
    assert "standard deviation of 0.012 nats" in page and "lack-of-fit ratio" in page and " of 2.8 " in page
    warnings = every_warning(changed)
    lack = warnings.index("IsoFLOP lack of fit: lack of fit at C = 2e+11 FLOPs")
    assert lack < warnings.index("Kaplan laws, L_N: E is not identified")
    assert all(not w.startswith(("Approach 1", "Approach 2", "Kaplan")) for w in warnings[:lack])
    assert warnings[-1].startswith("Kaplan laws, L_")
    changed["lack_of_fit"]["budgets"][0]["flagged"] = False
    assert "within 0.02 nats of the lowest observed (largest gap 0.05)" in first_screen(changed)
    changed["noise"] = {"skipped": "one seed"}
    assert "Seed noise" not in first_screen(changed)
