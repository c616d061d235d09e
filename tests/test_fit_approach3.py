"""Approach 3: the parametric law fitted from Hoffmann et al.'s grid of starts."""

import numpy as np
import polars as pl
import pytest
from helpers import REPO
from synthetic import TRUE, grid_study

from workflow.fit import FitError, fit_approach3, predict_approach3
from workflow.fit.approach3 import hoffmann_grid

EPOCH_DATA = REPO.parent / "shared" / "data" / "svg_extracted_data.csv"


def test_hoffmann_grid_has_4500_starts():
    grid = hoffmann_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 3])) == [0, 0.5, 1, 1.5, 2] and sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]


def test_recovers_known_parameters_from_noisy_data():
    fit = fit_approach3(*grid_study())
    assert fit["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    assert fit["beta"] == pytest.approx(TRUE["beta"], abs=0.03)
    assert fit["E"] == pytest.approx(TRUE["E"], rel=0.05)
    assert fit["a"] == pytest.approx(TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"]), abs=0.03)


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
    fit = fit_approach3(*grid_study())
    assert fit["warnings"] == [] and fit["unidentified"] == []
    optima = fit["local_optima"]
    assert optima[0]["log_params"] == fit["log_params"] and optima[0]["objective"] == fit["objective"]
    assert all(later["objective"] > earlier["objective"] for earlier, later in zip(optima, optima[1:]))
    n, d, _ = grid_study()
    no_offset = {**TRUE, "E": 0.0}
    loss = predict_approach3(no_offset, n, d) * np.exp(np.random.default_rng(0).normal(0, 0.003, n.size))
    fit = fit_approach3(n, d, loss)
    assert any(w.startswith("E is not identified") for w in fit["warnings"])
    assert "E" in fit["unidentified"]  # recorded for the report, which withholds what depends on E
    # Loss that does not fall with D: refused, not fitted with a meaningless beta.
    with pytest.raises(FitError, match="non-positive exponents .* does not fall with both N and D"):
        fit_approach3(
            n,
            d,
            predict_approach3({**TRUE, "B": 0.0}, n, d) * np.exp(np.random.default_rng(0).normal(0, 0.003, n.size)),
        )


def test_degenerate_data_is_refused_by_name():
    n, d, loss = grid_study()
    with pytest.raises(FitError, match="same model size: Approach 3 needs at least 2 distinct values of N"):
        fit_approach3(np.full_like(n, 1e8), d, loss)
    with pytest.raises(FitError, match="needs at least 6 completed runs; got 3"):
        fit_approach3(n[:3], d[:3], loss[:3])
    with pytest.raises(FitError, match="'loss' must hold positive"):
        fit_approach3(n, d, -loss)


def test_a_floor_fitted_at_zero_is_unidentified_not_a_division_by_zero():
    """E fitted to 0.0 exactly (it underflows when the data show no floor) with an interval from 0."""
    from workflow.fit.approach3 import bootstrap_warnings

    section = {"E": 0.0, "alpha": 0.3, "beta": 0.3, "free_parameters": ["E", "A", "B", "alpha", "beta"]}
    warnings = bootstrap_warnings(section, {"E": [0.0, 1.2], "alpha": [0.25, 0.35], "beta": [0.2, 0.4]})
    assert warnings == [
        "E is not identified: its 95% bootstrap interval [0, 1.2] reaches its bound, 0 (the lower end is below "
        "1% of the fitted 0)"
    ]
    assert section["unidentified"] == ["E"]
