"""The compute frontier and its power law."""

import numpy as np
import pytest

from workflow.fit import FitError
from workflow.fit.frontier import compute_frontier, fit_frontier


def test_frontier_and_power_law():
    flops = np.array([1e10, 2e10, 4e10, 8e10, 3e10])
    loss = 5.0 * flops**-0.05
    loss[4] = 10.0  # a bad run with mid compute is off the frontier
    assert compute_frontier(flops, loss).tolist() == [0, 1, 2, 3]
    fit = fit_frontier(flops, loss)
    assert fit["gamma"] == pytest.approx(0.05) and fit["A_C"] == pytest.approx(5.0)


def test_a_frontier_of_one_run_is_refused():
    with pytest.raises(FitError, match="compute frontier holds 1"):
        fit_frontier(np.array([1e10, 2e10]), np.array([1.0, 2.0]))
