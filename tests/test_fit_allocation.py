"""The one allocation form N_opt = k_N C^a, D_opt = k_D C^b, fitted (Approaches 1, 2) and derived (Approach 3)."""

import numpy as np
import pytest
from synthetic import TRUE, allocation_of

from workflow.fit.allocation import allocate, allocation_law, cost, predict_at
from workflow.fit.approach3 import eq4_allocation, predict_approach3


def test_allocation_law_recovers_a_power_law_and_spends_the_budget():
    flops = np.geomspace(1e18, 1e22, 5)
    law = allocation_law(flops, 0.1 * flops**0.5, flops_per_nd=6.0)
    assert (law["a"], law["b"]) == pytest.approx((0.5, 0.5)) and law["k_n"] == pytest.approx(0.1)
    assert law["k_d"] == pytest.approx(1 / 0.6)  # D_opt = C / (6 N_opt)
    point = predict_at(law, 1e24)
    assert point["n_opt"] == pytest.approx(0.1 * 1e12) and point["tokens_per_parameter"] == pytest.approx(
        point["d_opt"] / point["n_opt"]
    )
    assert point["cost"] == pytest.approx(1.0) and "loss" not in point


@pytest.mark.parametrize("k", [6.0, 7.3])
def test_every_allocation_costs_its_budget_on_the_studys_axis(k):
    """The recipe (N_opt, D_opt) of a fitted allocation and of the law's eq. 4 costs C = k N D exactly, at
    budgets far outside the fitted range too, whatever the fitted exponent."""
    flops = np.geomspace(1e10, 1e12, 4)
    fitted = allocation_law(flops, 3e-3 * flops**0.7, flops_per_nd=k)
    derived = eq4_allocation(TRUE["alpha"], TRUE["beta"], TRUE["A"], TRUE["B"], flops_per_nd=k)
    for law in (fitted, derived):
        assert cost(law, [1e9, 1e15, 1e17, 1e25]) == pytest.approx(1.0, rel=1e-9)
        assert law["a"] + law["b"] == pytest.approx(1.0)


def test_eq4_in_the_common_form_is_hoffmanns_allocation():
    law = TRUE | eq4_allocation(TRUE["alpha"], TRUE["beta"], TRUE["A"], TRUE["B"])
    g, a = allocation_of(TRUE)
    flops = np.geomspace(1e18, 1e24, 7)
    point = allocate(law, flops)
    assert law["a"] == pytest.approx(a) and law["a"] + law["b"] == pytest.approx(1.0) and law["G"] == pytest.approx(g)
    assert point["n_opt"] == pytest.approx(g * (flops / 6) ** a, rel=1e-12)
    assert point["d_opt"] == pytest.approx(flops / (6 * point["n_opt"]), rel=1e-12)  # C = 6 N D
    # The optimum: the law's loss along the compute budget is lowest there.
    n = point["n_opt"][3] * np.geomspace(0.5, 2, 41)
    assert np.argmin(predict_approach3(TRUE, n, flops[3] / (6 * n))) == 20
    assert predict_at(law, 1e21, predict_approach3)["loss"] == pytest.approx(
        float(predict_approach3(TRUE, *allocate(law, [1e21]).values())[0])
    )
