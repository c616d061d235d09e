"""Issue 25's pieces of a right answer: one compute axis, allocations within budget, one law per model,
intervals over training runs, seed noise, lack of fit, the backtest and the sensitivity panel."""

from __future__ import annotations

import copy

import numpy as np
import polars as pl
import pytest
from synthetic import isoflop_study

from workflow import families
from workflow.config import ConfigError, check_config
from workflow.fit import fit_table, study_of
from workflow.fit.approach3 import eq4_allocation
from workflow.fit.lack_of_fit import isoflop_gaps
from workflow.fit.primitives import FitError
from workflow.fit.registry import BY_NAME
from workflow.fit.resampling import unit_rows
from workflow.fit.seed_noise import seed_noise
from workflow.simulate import Design, Noise, draw_losses

SECONDS_LAW = {"E": 1.9, "A": 60.0, "B": 300.0, "alpha": 0.6, "beta": 0.45}


def wsd_study(seeds=(0,), sd=0.0, correlation=0.0, seed=0, law=SECONDS_LAW, k=6.0) -> pl.DataFrame:
    """A WSD-like study: 6 shapes, each one training run per seed whose points sit at 3 IsoFLOP budgets and
    3 token budgets, losses from ``law`` plus noise shared within a run (``correlation``) and per point."""
    rows = []
    sizes = np.geomspace(2e4, 3e5, 6)
    for s in seeds:
        for n in sizes:
            run = f"n{n:.0f}_s{s}"
            for budget in (2e11, 4e11, 8e11):
                rows.append({"run_id": f"{run}@C{budget:g}", "training_run": run, "params": n, "seed": s,
                             "tokens": budget / (k * n), "compute_budget": budget})  # fmt: skip
            for tokens in (2.5e5, 1e6, 4e6):
                rows.append({"run_id": f"{run}@D{tokens:g}", "training_run": run, "params": n, "seed": s,
                             "tokens": tokens, "compute_budget": None})  # fmt: skip
    table = pl.DataFrame(rows).with_columns((k * pl.col("params") * pl.col("tokens")).alias("flops"))
    design = Design.of_table(table)
    rng = np.random.default_rng(seed)
    loss = draw_losses(design, law, Noise(sd, correlation), rng) if sd else draw_losses(design, law, Noise(1e-12), rng)
    return table.with_columns(pl.Series("loss", loss))


# --------------------------------------------------------------------------- one compute axis


def test_only_a_matching_count_and_convention_form_one_axis():
    assert families.axis_mismatch("6N", "with_head") is None
    assert families.axis_mismatch("kaplan", "non_embedding") is None
    assert "or '6N' with 'with_head'" in families.axis_mismatch("6N", "non_embedding")
    assert "not 6 x any parameter count" in families.axis_mismatch("palm", "total")


def test_a_config_with_two_axes_stops_naming_both_keys(default_config):
    config = copy.deepcopy(default_config)
    config["fit"]["parameter_count"] = "non_embedding"
    with pytest.raises(ConfigError) as info:
        check_config(config)
    message = str(info.value)
    assert "fit.flop_convention (6N) and fit.parameter_count (non_embedding)" in message and "\n" not in message


def test_a_table_whose_n_is_not_the_flops_count_is_warned():
    table = wsd_study().with_columns(pl.col("flops") * (1 + pl.col("params") / 1e6))  # the head's FLOPs, say
    _, data = study_of(table)
    assert data["flops_per_nd"] > 6 and any("not one multiple of N D" in w for w in data["warnings"])
    _, clean = study_of(wsd_study())
    assert clean["flops_per_nd"] == pytest.approx(6.0) and not clean["warnings"]


@pytest.mark.parametrize("k", [6.0, 9.5])
def test_every_approach_and_every_predicted_budget_costs_its_budget(k):
    """The recipe of Approaches 1 (without curves: skipped), 2 and 3 costs C within 1% on the study's own
    axis, C = k N D, at the study's budgets and far past them."""
    table = isoflop_study().with_columns((pl.col("flops") * k / 6).alias("flops"))
    fits = fit_table(table, predict=[1e19, 1e23, 1e25], bootstrap_samples=0)
    checked = 0
    for row in fits["predictions"]:
        for name in ("approach2", "approach3"):
            point = row[name]
            assert k * point["n_opt"] * point["d_opt"] == pytest.approx(row["flops"], rel=0.01)
            assert point["cost"] == pytest.approx(1.0, rel=0.01)
            checked += 1
        assert row["extrapolation_factor"] == pytest.approx(row["flops"] / table["flops"].max())
    assert checked == 6 and fits["approach3"]["flops_per_nd"] == pytest.approx(k)


def test_an_exponent_interval_reaching_0_or_1_is_a_warning():
    from workflow.fit.table_fit import allocation_interval_warnings

    fits = {"approach1": {"a": 0.69}, "bootstrap": {"intervals": {"approach1": {"a": [0.31, 1.01]}}}}
    warnings = allocation_interval_warnings(fits, BY_NAME["approach1"])
    assert len(warnings) == 1 and "reaches 1" in warnings[0]
    fits["bootstrap"]["intervals"]["approach1"]["a"] = [0.3, 0.7]
    assert allocation_interval_warnings(fits, BY_NAME["approach1"]) == []


# --------------------------------------------------------------------------- one law per model


def test_a_table_mixing_families_stops_with_one_line():
    table = wsd_study().with_columns(
        pl.when(pl.col("params") > 1e5).then(pl.lit("lstm")).otherwise(pl.lit("gpt")).alias("family")
    )
    with pytest.raises(FitError) as info:
        fit_table(table)
    assert "differ in 'family' (gpt (18), lstm (18))" in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- intervals over training runs


def test_resamples_draw_whole_training_runs():
    units = np.array([0, 0, 0, 1, 1, 2])
    sizes = np.bincount(units)
    for rows in unit_rows(units, np.random.default_rng(0), 50):
        drawn = np.bincount(units[rows], minlength=3)
        assert np.all(drawn % sizes == 0)  # a drawn run comes with all its points, as often as it was drawn
        assert drawn.sum() // 1 == len(rows) and (drawn // sizes).sum() == 3  # 3 runs drawn, with replacement


def test_one_point_per_unit_is_the_ordinary_draw():
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(np.stack(unit_rows(np.arange(7), rng_a, 5)), rng_b.integers(0, 7, (5, 7)))


def test_the_bootstrap_of_a_wsd_study_resamples_its_runs():
    fits = fit_table(wsd_study(sd=0.01, correlation=0.5), bootstrap_samples=20)
    assert fits["bootstrap"]["units"] == 6 and "training runs resampled" in fits["bootstrap"]["method"]


# --------------------------------------------------------------------------- seeds and lack of fit


def test_seed_noise_and_its_correlation_within_a_run_are_recovered():
    table = wsd_study(seeds=range(8), sd=0.03, correlation=0.6, seed=1)
    noise = seed_noise(table, table["loss"].to_numpy())
    assert noise["seeds"] == 8 and noise["points_replicated"] == 36
    assert noise["seed_sd"] == pytest.approx(0.03, rel=0.15)
    assert noise["within_run_correlation"] == pytest.approx(0.6, abs=0.15)


def test_one_seed_measures_no_noise_and_says_so():
    fits = fit_table(wsd_study(sd=0.01))
    assert fits["noise"] == {
        "skipped": "one seed: run-to-run noise is not measured (set train.grid.seeds to 2 or more seeds)"
    }


def test_lack_of_fit_ratio_is_near_one_when_the_law_is_right():
    fits = fit_table(wsd_study(seeds=range(3), sd=0.02, seed=2))
    assert 0.5 < fits["noise"]["lack_of_fit_ratio"] < 2


def test_lack_of_fit_is_flagged_with_its_numbers_only_where_the_law_misses():
    table = wsd_study()
    budget = table["compute_budget"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    n, d, loss = (table[c].to_numpy() for c in ("params", "tokens", "loss"))
    law = SECONDS_LAW | eq4_allocation(**{k: SECONDS_LAW[k] for k in ("alpha", "beta", "A", "B")})
    exact = isoflop_gaps(budget, n, d, loss, law, 0.02)
    assert all(g["cause"] != "fit" for g in exact)  # the law is the truth: any gap is the sampling's
    lowered = np.where(budget == 4e11, loss - 0.05, loss)
    gaps = isoflop_gaps(budget, n, d, lowered, law, 0.02)
    assert [g["cause"] == "fit" for g in gaps] == [False, True, False]
    assert gaps[1]["law_at_sampled_sizes"] - gaps[1]["observed_minimum"] == pytest.approx(0.05, abs=1e-6)


# --------------------------------------------------------------------------- backtest and sensitivity


def test_the_backtest_extrapolates_at_least_4_times_and_reports_coverage():
    fits = fit_table(wsd_study(sd=0.01, correlation=0.3, seed=4))
    backtest = fits["backtest"]
    fitted = [f for f in backtest["folds"] if "points" in (f.get("approach3") or {})]
    assert fitted and all(f["largest_fitted_flops"] * 4 <= f["compute_budget"] * (1 + 1e-9) for f in fitted)
    assert backtest["largest_extrapolation_factor"] >= 4
    assert 0 <= backtest["approach3_coverage"] <= 1 and backtest["points_predicted"] >= 6
    errors = [p["error"] for f in fitted for p in f["approach3"]["points"]]
    assert max(abs(e) for e in errors) < 0.1  # the law is right: small errors


def test_the_sensitivity_panel_refits_under_at_least_6_choices():
    table = wsd_study(sd=0.01, seed=5).with_columns(
        pl.col("params").alias("params_non_embedding"),
        (pl.col("params") * 0 + 5000).alias("params_head"),
        (pl.col("params") + 5000).alias("params_total"),
        pl.col("flops").alias("flops_6N"),
        (pl.col("flops") * 1.1).alias("flops_palm"),
    )
    fits = fit_table(table, bootstrap_samples=20)
    panel = fits["sensitivity"]
    fitted = [c for c in panel["choices"] if "skipped" not in c]
    assert len(fitted) >= 6 and {c["group"] for c in fitted} == {"parameter count", "FLOP convention", "loss", "design"}
    assert {"alpha", "beta", "a", "E"} <= set(panel["spreads"])
    assert all("bootstrap_width" in panel["spreads"][q] for q in ("alpha", "beta", "a"))
