"""The extrapolation check: Approach 3 refitted without the largest compute."""

import numpy as np
import pytest
from synthetic import TRUE, grid_table

from workflow.fit import FitError, predict_approach3
from workflow.fit.extrapolation import extrapolation_check


def test_extrapolation_without_budgets_holds_out_the_largest_compute():
    n, d = (v.ravel() for v in np.meshgrid(np.geomspace(1e7, 3e9, 5), np.geomspace(1e9, 1e11, 5)))
    table = grid_table(n, d, predict_approach3(TRUE, n, d))
    check = extrapolation_check(table, delta=1e-3, refine=100)
    held = {r["run_id"] for r in check["held_out"]}
    assert held == set(table.sort("flops").tail(5)["run_id"]) and check["runs_fitted"] == 20
    assert "top 20%" in check["held_out_description"]
    assert check["mean_relative_error"] < 1e-3  # noise-free data from the law itself
    with pytest.raises(FitError, match="refit without .* needs at least 6 completed runs; got 4"):
        extrapolation_check(table.head(5), delta=1e-3, refine=100)
