import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from helpers import REPO
from scipy.optimize import approx_fprime

from workflow.fit import (
    FitError,
    approach3_objective,
    compute_frontier,
    fit_approach3,
    fit_frontier,
    fit_table,
    hoffmann_grid,
    objective_at_starts,
    predict_approach3,
)

EPOCH_DATA = REPO.parent / "shared" / "data" / "svg_extracted_data.csv"
TRUE = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def synthetic(noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(1e7, 3e9, 6), np.geomspace(1e9, 3e11, 6))
    n, d = n.ravel(), d.ravel()
    loss = predict_approach3(TRUE, n, d) * np.exp(rng.normal(0, noise, n.size))
    return n, d, loss


def test_hoffmann_grid_has_4500_starts():
    grid = hoffmann_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 3])) == [0, 0.5, 1, 1.5, 2] and sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]


def test_gradient_is_exact():
    n, d, loss = synthetic()
    args = (np.log(n), np.log(d), np.log(loss), 1e-3)
    for theta in (np.array([6.0, 7.5, 0.6, 0.3, 0.35]), np.array([2.0, 3.0, -0.5, 0.1, 0.2])):
        _, grad = approach3_objective(theta, *args)
        numeric = approx_fprime(theta, lambda t: approach3_objective(t, *args)[0], 1e-7)
        assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-7)
        assert objective_at_starts(theta[None], *args)[0] == pytest.approx(approach3_objective(theta, *args)[0])


def test_recovers_known_parameters_from_noisy_data():
    fit = fit_approach3(*synthetic())
    assert fit["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    assert fit["beta"] == pytest.approx(TRUE["beta"], abs=0.03)
    assert fit["E"] == pytest.approx(TRUE["E"], rel=0.05)
    assert fit["a_exponent"] == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]), abs=0.03)


@pytest.mark.skipif(not EPOCH_DATA.exists(), reason="shared/data is not beside this checkout")
def test_epoch_chinchilla_points_give_the_published_fit():
    data = pl.read_csv(EPOCH_DATA).sort("loss").head(-5)  # drop the 5 highest-loss points, as Epoch did
    assert data.height == 240
    n = data["Model Size"].to_numpy()
    d = data["Training FLOP"].to_numpy() / (6 * n)
    fit = fit_approach3(n, d, data["loss"].to_numpy())
    assert fit["E"] == pytest.approx(1.817, abs=0.002)
    assert fit["A"] == pytest.approx(477.8, rel=0.01)
    assert fit["B"] == pytest.approx(2143.9, rel=0.01)
    assert fit["alpha"] == pytest.approx(0.3473, abs=5e-4)
    assert fit["beta"] == pytest.approx(0.3672, abs=5e-4)


def test_fit_keeps_its_local_optima_and_says_when_e_is_not_identified():
    fit = fit_approach3(*synthetic())
    assert fit["warnings"] == []
    optima = fit["local_optima"]
    assert optima[0]["log_params"] == fit["log_params"] and optima[0]["objective"] == fit["objective"]
    assert all(later["objective"] > earlier["objective"] for earlier, later in zip(optima, optima[1:]))
    n, d, _ = synthetic()
    no_offset = {**TRUE, "E": 0.0}
    loss = predict_approach3(no_offset, n, d) * np.exp(np.random.default_rng(0).normal(0, 0.003, n.size))
    fit = fit_approach3(n, d, loss)
    assert any(w.startswith("E is not identified") for w in fit["warnings"])
    # Loss that does not fall with D: refused, not fitted with a meaningless beta.
    with pytest.raises(FitError, match="non-positive exponents .* does not fall with both N and D"):
        fit_approach3(
            n,
            d,
            predict_approach3({**TRUE, "B": 0.0}, n, d) * np.exp(np.random.default_rng(0).normal(0, 0.003, n.size)),
        )


def test_frontier_and_power_law():
    flops = np.array([1e10, 2e10, 4e10, 8e10, 3e10])
    loss = 5.0 * flops**-0.05
    loss[4] = 10.0  # a bad run with mid compute is off the frontier
    assert compute_frontier(flops, loss).tolist() == [0, 1, 2, 3]
    fit = fit_frontier(flops, loss)
    assert fit["gamma"] == pytest.approx(0.05) and fit["A_C"] == pytest.approx(5.0)


def test_degenerate_data_is_refused_by_name():
    n, d, loss = synthetic()
    with pytest.raises(FitError, match="same model size: Approach 3 needs at least 2 distinct values of N"):
        fit_approach3(np.full_like(n, 1e8), d, loss)
    with pytest.raises(FitError, match="needs at least 6 completed runs; got 3"):
        fit_approach3(n[:3], d[:3], loss[:3])
    with pytest.raises(FitError, match="'loss' must hold positive"):
        fit_approach3(n, d, -loss)
    with pytest.raises(FitError, match="compute frontier holds 1"):
        fit_frontier(np.array([1e10, 2e10]), np.array([1.0, 2.0]))


def test_table_excludes_runs_that_did_not_complete():
    n, d, loss = synthetic()
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


def test_cli_on_csv(tmp_path):
    n, d, loss = synthetic()
    pl.DataFrame({"params": n, "tokens": d, "loss": loss, "flops": 6 * n * d}).write_csv(tmp_path / "t.csv")
    result = subprocess.run(
        [sys.executable, "-m", "workflow.fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "fits.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert set(fits["approach3"]) >= {"E", "A", "B", "alpha", "beta"}
    assert fits["approach3"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)


def test_cli_names_missing_columns(tmp_path):
    pl.DataFrame({"N": [1.0], "tokens": [1.0], "loss": [1.0]}).write_csv(tmp_path / "t.csv")
    result = subprocess.run(
        [sys.executable, "-m", "workflow.fit", str(tmp_path / "t.csv"), "--out", str(tmp_path / "fits.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "lacks column(s) params" in result.stderr
    assert not (tmp_path / "fits.json").exists()
