"""The study fit over the registry: runs left out, approaches fitted or skipped, the bootstrap's
intervals in every section, extrapolation and predictions."""

import json

import numpy as np
import polars as pl
import pytest
from synthetic import A_TRUE, G_TRUE, TRUE, curves_of, grid_study, isoflop_study

from workflow.fit import FitError, fit_table, predict_approach3
from workflow.fit.references import REFERENCES
from workflow.fit.registry import APPROACHES


def test_table_excludes_runs_that_did_not_complete():
    n, d, loss = grid_study()
    table = pl.DataFrame(
        {"run_id": [f"r{i}" for i in range(n.size)], "status": "completed", "params": n, "tokens": d, "loss": loss}
    )
    table = table.with_columns(
        pl.when(pl.col("run_id") == "r3").then(pl.lit("diverged")).otherwise(pl.col("status")).alias("status")
    )
    fits = fit_table(table)
    assert fits["data"]["runs_excluded"] == ["r3"] and fits["data"]["runs_fitted"] == n.size - 1
    assert fits["data"]["compute"].startswith("C = 6 N D")
    with pytest.raises(FitError, match="no completed runs to fit"):
        fit_table(table.with_columns(status=pl.lit("diverged")))


def test_approaches_1_and_2_on_an_isoflop_study_approach_the_true_exponent():
    study = isoflop_study(budgets=np.geomspace(1e17, 1e21, 9))
    fits = fit_table(study, curves=curves_of(study))
    for name in ("approach1", "approach2"):
        assert fits[name]["a"] == pytest.approx(A_TRUE, abs=0.05), name
        assert fits[name]["b"] == pytest.approx(1 - A_TRUE, abs=0.05), name
    assert fits["approach3"]["a"] == pytest.approx(A_TRUE, abs=0.02)


@pytest.mark.slow
def test_study_fit_with_bootstrap_extrapolation_and_predictions():
    study = isoflop_study(noise=0.004)
    fits = fit_table(study, curves=curves_of(study), bootstrap_samples=200, seed=3, predict=[1e22], workers=2)
    a3, boot = fits["approach3"], fits["bootstrap"]
    assert boot["fitted"] == 200 and boot["samples"] == 200 and boot["seed"] == 3
    assert boot["resamples_skipped"]["approach3"] == 0 and set(boot["resamples_skipped"]) == {
        "approach3",
        "frontier",
        "approach1",
        "approach2",
    }
    assert boot["verified"]["same_optimum"] == boot["verified"]["resamples"] == 10
    for name in ("alpha", "beta", "E", "A", "B"):
        lo, hi = boot["intervals"]["approach3"][name]
        assert lo <= TRUE[name] <= hi and lo <= a3[name] <= hi, name
    for section in ("approach3", "approach2"):
        lo, hi = boot["intervals"][section]["a"]
        assert lo < A_TRUE < hi, section
    assert boot["counts"]["approach1"]["a"] + boot["resamples_skipped"]["approach1"] == 200
    lo, hi = boot["intervals"]["approach1"]["a"]
    assert lo <= fits["approach1"]["a"] <= hi
    row = fits["predictions"][0]
    prediction = row["approach3"]
    assert row["extrapolation_factor"] == pytest.approx(10.0)  # 1e22 over the largest budget trained, 1e21
    assert row["flops"] == 1e22 and set(row) == {"flops", "extrapolation_factor", "approach3", "approach1", "approach2"}
    truth_n = G_TRUE * (1e22 / 6) ** A_TRUE
    assert prediction["n_opt"] == pytest.approx(truth_n, rel=0.2)
    assert prediction["loss"] == pytest.approx(
        float(predict_approach3(TRUE, prediction["n_opt"], prediction["d_opt"])), rel=0.01
    )
    assert prediction["tokens_per_parameter"] == pytest.approx(prediction["d_opt"] / prediction["n_opt"])
    lo, hi = prediction["intervals"]["n_opt"]
    assert lo < prediction["n_opt"] < hi and lo < truth_n < hi
    assert prediction["intervals"]["loss"] == boot["intervals"]["approach3"]["predictions.1e+22.loss"]
    assert row["approach2"]["n_opt"] == pytest.approx(truth_n, rel=0.3)
    assert row["approach2"]["intervals"]["n_opt"][0] < row["approach2"]["n_opt"]
    band = boot["bands"]["approach3"]
    assert len(band["flops"]) == len(band["n_opt_lower"]) == len(band["n_opt_upper"])
    assert all(lo <= hi for lo, hi in zip(band["n_opt_lower"], band["n_opt_upper"]))
    check = fits["extrapolation"]
    assert "largest IsoFLOP budget (C = 1e+21" in check["held_out_description"]
    assert len(check["held_out"]) == 9 and check["runs_fitted"] == 27
    assert check["mean_relative_error"] < 0.01 and check["max_absolute_error"] >= check["mean_absolute_error"]
    held = check["held_out"][0]
    assert held["absolute_error"] == pytest.approx(abs(held["predicted"] - held["loss"]))
    assert held["relative_error"] == pytest.approx(held["absolute_error"] / held["loss"])
    assert fits["references"] == REFERENCES
    json.dumps(fits, allow_nan=False)  # plain JSON: no NaN or inf anywhere


def test_degenerate_studies_are_refused_or_skipped_by_name():
    study = isoflop_study()
    with pytest.raises(FitError, match="same model size: Approach 3 needs at least 2 distinct values of N"):
        fit_table(study.with_columns(params=pl.lit(1e8)))
    with pytest.raises(FitError, match="no completed runs to fit \\(36 left out"):
        fit_table(study.with_columns(status=pl.lit("diverged")))
    with pytest.raises(FitError, match="needs at least 6 completed runs; got 5"):
        fit_table(study.head(5))
    fits = fit_table(study.with_columns(compute_budget=pl.lit(None, dtype=pl.Float64)))
    assert fits["approach2"]["skipped"].startswith("no IsoFLOP budgets in this study")
    assert fits["approach1"]["skipped"].startswith("no training curves")
    assert fits["bootstrap"]["skipped"].startswith("no bootstrap requested")
    # Curves of two sizes only: Approach 1 is skipped with the reason, the rest goes on.
    two_sizes = study.filter(pl.col("params").is_in(study["params"].unique().sort().head(2).to_list()))
    fits = fit_table(study, curves=curves_of(two_sizes))
    assert "at least 3 model sizes; got 2" in fits["approach1"]["skipped"]
    assert "a" in fits["approach2"]


def test_every_registered_approach_has_a_section_and_required_ones_are_approach3_and_frontier():
    fits = fit_table(isoflop_study())
    assert [a.name for a in APPROACHES if a.required] == ["approach3", "frontier"]
    assert {a.name for a in APPROACHES} <= set(fits) and set(fits["seconds"]) >= {a.name for a in APPROACHES}
