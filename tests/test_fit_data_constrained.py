"""The data-constrained law of Muennighoff et al. 2023: effective data and parameters, the two-step fit,
and what it says when a table has no repeated runs."""

import itertools

import numpy as np
import polars as pl
import pytest
from synthetic import TRUE

from workflow.fit import fit_table
from workflow.fit.approach3 import eq4_allocation
from workflow.fit.data_constrained import effective, objective, predict, repetitions
from workflow.fit.schema import FITS_SCHEMA

R_STAR = {"R_D_star": 15.0, "R_N_star": 5.0}
LAW = dict(TRUE) | eq4_allocation(TRUE["alpha"], TRUE["beta"], TRUE["A"], TRUE["B"])


def optimal_tokens(params):
    """D_opt(N) of the single-epoch law (Hoffmann eq. 4 solved for D)."""
    return LAW["k_d"] * (np.asarray(params) / LAW["k_n"]) ** (LAW["b"] / LAW["a"])


def repeated_study(noise=0.002, seed=0) -> pl.DataFrame:
    """Drawn from the data-constrained law with R*_D = 15, R*_N = 5 and 0.2% noise, in the paper's design:
    single-epoch runs at 1 to 8 times each size's compute-optimal tokens (so that no parameter is in
    excess, and the single-epoch law holds), and runs of 2 to 60 epochs over pools of 1/10 to 1 times
    those tokens (the smaller pools leave parameters in excess)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(3e7, 3e9, 5):
        rows += [
            {"params": n, "tokens": m * optimal_tokens(n), "unique_tokens": m * optimal_tokens(n)} for m in (1, 2, 4, 8)
        ]
        for pool, epochs in itertools.product((0.1, 0.3, 1.0), (2, 4, 8, 20, 60)):
            unique = pool * optimal_tokens(n)
            rows.append({"params": n, "tokens": unique * epochs, "unique_tokens": unique})
    table = pl.DataFrame(rows).with_columns(run_id=pl.format("r{}", pl.int_range(pl.len())))
    loss = predict({"single_epoch": LAW} | R_STAR, table["params"], table["tokens"], table["unique_tokens"])
    return table.with_columns(
        loss=loss * np.exp(rng.normal(0, noise, table.height)), flops=6 * pl.col("params") * pl.col("tokens")
    )


def test_effective_data_is_unique_data_for_one_epoch_and_saturates():
    value, _ = effective(np.array([1e9, 1e9, 1e9]), np.array([0.0, 15.0, 1e6]), np.log(15.0))
    assert value[0] == 1e9  # no repetition: the data itself
    assert value[1] == pytest.approx(1e9 * (1 + 15 * (1 - np.exp(-1))))
    assert value[2] == pytest.approx(16e9)  # endless repetition is worth R* + 1 epochs


def test_unique_parameters_are_the_compute_optimal_size_for_the_unique_data():
    runs = repetitions(LAW, [1e12, 1e6], [1e10, 1e10], [1e10, 1e10])
    n_opt = LAW["G"] * (LAW["G"] * 1e10) ** (LAW["beta"] / LAW["alpha"])  # Hoffmann eq. 4 solved for D = U_D
    assert runs["unique_params"][0] == pytest.approx(n_opt, rel=1e-9)
    assert runs["r_n"][0] == pytest.approx(1e12 / n_opt - 1)
    assert runs["unique_params"][1] == 1e6 and runs["r_n"][1] == 0  # a smaller model is all unique


def test_step_two_gradient_matches_finite_differences():
    table = repeated_study()
    runs = repetitions(LAW, table["params"], table["tokens"], table["unique_tokens"])
    log_loss = np.log(table["loss"].to_numpy())
    point = np.log([12.0, 7.0])
    value, grad = objective(point, LAW, runs, log_loss, 1e-3)
    step = 1e-6
    numeric = [(objective(point + step * e, LAW, runs, log_loss, 1e-3)[0] - value) / step for e in np.eye(2)]
    assert grad == pytest.approx(numeric, rel=1e-3, abs=1e-9)


def test_two_step_fit_recovers_the_law_and_both_decay_constants():
    fits = fit_table(repeated_study(), refine=50, bootstrap_samples=8, workers=1)
    section, intervals = fits["data_constrained"], fits["bootstrap"]["intervals"]["data_constrained"]
    assert section["single_epoch_runs"] == 20 and section["repeated_runs"] == 75
    assert section["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    assert section["E"] == pytest.approx(TRUE["E"], rel=0.05)
    assert section["R_D_star"] == pytest.approx(R_STAR["R_D_star"], rel=0.2)
    assert section["R_N_star"] == pytest.approx(R_STAR["R_N_star"], rel=0.2)
    for name in ("R_D_star", "R_N_star", "E", "alpha"):
        assert intervals[name][0] <= section[name] <= intervals[name][1], name
    assert section["form"].startswith("L = E + A / N'^alpha + B / D'^beta, D' = U_D (1 + R*_D")
    import jsonschema

    jsonschema.validate(fits, FITS_SCHEMA)


def test_without_repeated_runs_the_law_is_skipped_and_says_why():
    table = repeated_study().filter(pl.col("tokens") <= pl.col("unique_tokens"))
    assert fit_table(table, refine=20)["data_constrained"] == {
        "skipped": "no run repeats its data (every run is of one epoch or less)"
    }
    no_column = fit_table(table.drop("unique_tokens"), refine=20)["data_constrained"]
    assert no_column == {"skipped": "no unique_tokens column: every run is taken to see each token once"}
