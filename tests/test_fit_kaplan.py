"""Kaplan-style saturating laws L(x) = E + A x^-alpha and the runs they are fitted on."""

import numpy as np
import polars as pl
import pytest
from synthetic import TRUE

from workflow.fit import FitError, fit_table, predict_approach3
from workflow.fit.kaplan import fit_saturating


def test_kaplan_law_recovers_its_exponent_and_says_when_e_is_not_identified():
    n = np.geomspace(1e6, 1e10, 12)
    noise = np.exp(np.random.default_rng(1).normal(0, 0.002, n.size))
    law = fit_saturating(n, (1.5 + 300.0 * n**-0.3) * noise, variable="N")
    assert law["alpha"] == pytest.approx(0.3, abs=0.03) and law["E"] == pytest.approx(1.5, rel=0.05)
    assert law["E_identified"] and law["E_note"] is None
    # A pure power law has no offset to find: the fit must say so, not report an E.
    pure = fit_saturating(n, 20.0 * n**-0.08 * noise, variable="N")
    assert not pure["E_identified"] and "E is not identified" in pure["E_note"]
    assert pure["power_law"]["alpha"] == pytest.approx(0.08, abs=0.005)
    with pytest.raises(FitError, match="needs runs at 4 or more distinct values of N; got 3"):
        fit_saturating(np.array([1e6, 1e7, 1e8, 1e8]), np.array([3.0, 2.5, 2.4, 2.3]), variable="N")


def test_kaplan_laws_in_a_study_pick_the_longest_runs():
    rows = []
    for n in np.geomspace(1e7, 1e9, 5):
        for d in np.geomspace(1e9, 1e11, 4):
            rows.append({"params": n, "tokens": d, "loss": float(predict_approach3(TRUE, n, d))})
    fits = fit_table(pl.DataFrame(rows))
    law_n = fits["kaplan"]["L_N"]
    assert law_n["points"] == 5 and "largest D" in law_n["selection"]
    # Each N's run at D = 1e11: L(N) = (E + B / 1e11^beta) + A N^-alpha.
    assert law_n["alpha"] == pytest.approx(TRUE["alpha"], abs=0.01)
    assert law_n["E"] == pytest.approx(TRUE["E"] + TRUE["B"] / 1e11 ** TRUE["beta"], rel=0.01)
    assert fits["kaplan"]["L_D"]["alpha"] == pytest.approx(TRUE["beta"], abs=0.01)
    assert set(fits["kaplan"]) == {"L_N", "L_D", "L_C"}
