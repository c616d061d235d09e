"""Approach 2: IsoFLOP profiles."""

import numpy as np
import polars as pl
import pytest
from synthetic import A_TRUE, isoflop_study

from workflow.fit import FitError, study_of
from workflow.fit.approach2 import fit, isoflop_minimum


def approach2(table: pl.DataFrame) -> dict:
    return fit(study_of(table)[0])


def test_approach2_recovers_the_allocation_exponent():
    law = approach2(isoflop_study())
    assert law["a"] == pytest.approx(A_TRUE, abs=0.03)
    assert law["b"] == pytest.approx(1 - A_TRUE, abs=0.03)
    assert all(b["kept"] for b in law["budgets"]) and len(law["optima"]) == 4 and law["flagged"] == []


def test_approach2_flags_budgets_it_cannot_use():
    study = isoflop_study()
    # Only the smallest sizes of the largest budget: its minimum lies beyond them.
    largest = study.filter(pl.col("compute_budget") == 1e21).sort("params").head(4)
    # Two sizes of the 1e20 budget: too few for a parabola.
    two = study.filter(pl.col("compute_budget") == 1e20).sort("params").head(2)
    study = pl.concat([study.filter(pl.col("compute_budget") < 1e20), two, largest])
    law = approach2(study)
    flagged = {b["compute_budget"]: b["message"] for b in law["budgets"] if not b["kept"]}
    assert set(flagged) == {1e20, 1e21}
    assert "falls outside the sampled N range" in flagged[1e21]
    assert flagged[1e20] == "2 distinct model size(s); a parabola needs 3"
    assert len(law["optima"]) == 2 and len(law["flagged"]) == 2
    # Losses that rise towards the middle of the sampled sizes: a parabola opening downward.
    log_n = np.log(np.geomspace(1e7, 1e9, 5))
    entry = isoflop_minimum(1e18, log_n, np.log(1e18 / 6) - log_n, 3.0 - 0.01 * (log_n - log_n.mean()) ** 2)
    assert not entry["kept"] and "opens downward" in entry["message"] and "n_opt" not in entry
    with pytest.raises(FitError, match="needs at least 2 IsoFLOP budgets .* got 1 of 2"):
        approach2(pl.concat([study.filter(pl.col("compute_budget") == 1e18), largest]))
    with pytest.raises(FitError, match="no IsoFLOP budgets"):
        approach2(study.drop("compute_budget"))
