"""The report of a study with arms: a comparison page (the verdicts, the multiplier chart and its table,
the differences, the parameters side by side), comparison.csv, and each arm's own report beneath it."""

import copy
import html
import json

import polars as pl
import pytest
from synthetic import curves_of, isoflop_study

from tests.browser import load
from tests.test_report_charts import present, views
from workflow.fit.compare import fit_arms
from workflow.report import ARMS_CHARTS, CHARTS, FORMATS
from workflow.report.build import main

LAW = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36}
# Arm "fast" is the baseline's law at N and D scaled by sqrt(1.5): the baseline needs 1.5x its compute.
SCALE = 1.5**0.5
FAST = {**LAW, "A": LAW["A"] / SCALE ** LAW["alpha"], "B": LAW["B"] / SCALE ** LAW["beta"]}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    frames, curves = [], []
    for arm, law, seed in (("base", LAW, 1), ("fast", FAST, 2)):
        runs = isoflop_study(
            [1e15, 3e15, 1e16], sizes=6, spread=5.0, noise=0.005, seed=seed, law=law, report_columns=True
        )
        runs = runs.with_columns(
            arm=pl.lit(arm), training_run=pl.col("run_id"), run_id=pl.lit(f"{arm}_") + pl.col("run_id")
        )
        frames.append(runs)
        curves.append(curves_of(runs, steps=10, noise=0.0, start=1 / 20, law=law))
    runs, curves = pl.concat(frames), pl.concat(curves)
    metadata = {"flop_convention": "6N", "parameter_count": "with_head"}
    fits = fit_arms(runs, "arm", "base", bootstrap_samples=20, seed=0, predict=[1e17], workers=1, metadata=metadata)
    out = tmp_path_factory.mktemp("arms")
    (out / "fits.json").write_text(json.dumps(fits))
    runs.write_parquet(out / "runs.parquet")
    curves.write_parquet(out / "curves.parquet")
    assert main(["--runs", str(out / "runs.parquet"), "--curves", str(out / "curves.parquet"),
                 "--fits", str(out / "fits.json"), "--out-dir", str(out / "report")]) == 0  # fmt: skip
    return runs, fits, out / "report"


def test_comparison_page_charts_table_and_each_arms_report_are_written(study):
    _, fits, report = study
    expected = {f"{name}.{fmt}" for name in ARMS_CHARTS for fmt in FORMATS} | {"index.html", "comparison.csv"}
    assert expected <= {p.name for p in report.iterdir()}
    for arm in ("base", "fast"):
        own = report / "arms" / arm
        assert (own / "index.html").is_file() and {f"{c}.svg" for c in CHARTS} <= {p.name for p in own.iterdir()}
    page = (report / "index.html").read_text()
    for section in fits["comparison"]["arms"].values():
        assert html.escape(section["verdict"]) in page
    assert 'href="arms/fast/index.html"' in page and 'href="arms/base/index.html"' in page


def test_comparison_csv_and_the_page_give_the_fits_multipliers(study):
    _, fits, report = study
    table = pl.read_csv(report / "comparison.csv")
    rows = fits["comparison"]["arms"]["fast"]["budgets"]
    assert table["flops"].to_list() == [r["flops"] for r in rows]
    assert table["multiplier"].to_list() == pytest.approx([r["multiplier"] for r in rows])
    assert (table["ci95_low"] <= table["multiplier"]).all() and (table["multiplier"] <= table["ci95_high"]).all()
    largest = fits["comparison"]["trained_range"][1]
    at_largest = next(r for r in rows if r["flops"] == largest)
    page = (report / "index.html").read_text()
    assert f'data-flops="{largest!r}" data-value="{at_largest["multiplier"]!r}"' in page
    # The faster arm is found the more compute-efficient within the trained range.
    assert 1.2 < at_largest["multiplier"] < 1.9


def test_arms_charts_legends_list_the_arms(study):
    runs, fits, _ = study
    import importlib

    for name in ARMS_CHARTS:
        chart, caption = importlib.import_module(f"workflow.report.charts.{name}").draw(runs, fits)
        spec = chart.to_dict()
        found = 0
        for view in views(spec):
            enc = view.get("encoding", {}).get("color")
            if isinstance(enc, dict) and "field" in enc:
                assert set(enc["scale"]["domain"]) == present(spec, enc["field"]) <= {"base", "fast"}
                found += 1
        assert found and caption


def test_an_arms_fits_json_missing_a_key_is_named_in_one_line(study, tmp_path, capsys):
    _, fits, report = study
    broken = copy.deepcopy(fits)
    del broken["comparison"]["arms"]["fast"]["budgets"]
    (tmp_path / "fits.json").write_text(json.dumps(broken))
    runs = report.parent / "runs.parquet"
    code = main(["--runs", str(runs), "--curves", str(report.parent / "curves.parquet"),
                 "--fits", str(tmp_path / "fits.json"), "--out-dir", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "budgets" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.browser
def test_comparison_page_renders_with_the_multiplier_above_the_fold(study):
    _, _, report = study
    page = load(report / "index.html", window=(1400, 900))
    body = page.body()
    assert body.get("data-report-status") == "done" and body.get("data-errors") == "[]", body
    rendered = {attrs["id"] for attrs in page.with_attribute("data-rendered")}
    assert rendered == set(ARMS_CHARTS)
    folded = {attrs["id"]: attrs.get("data-above-fold") for attrs in page.with_attribute("data-fold-check")}
    assert folded == {"study-sentence": "yes", "verdicts": "yes", "multiplier": "yes"}, folded
