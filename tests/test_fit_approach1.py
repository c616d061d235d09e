"""Approach 1: the envelope of the training curves."""

import numpy as np
import polars as pl
import pytest
from synthetic import A_TRUE, curves_of, long_runs

from workflow.fit import FitError
from workflow.fit.approach1 import approach1


def test_approach1_envelope_gives_the_allocation_exponent():
    curves = curves_of(long_runs())
    law = approach1(curves)
    assert law["points"] == 1500 and law["curves"] == 12
    assert law["a"] == pytest.approx(A_TRUE, abs=0.05)
    assert law["b"] == pytest.approx(1 - A_TRUE, abs=0.05)
    lo, hi = law["fit_range_flops"]
    # Every envelope point comes from a curve that reaches that compute, and the fit leaves out the
    # ends pinned to the smallest and the last size.
    spans = curves.group_by("run_id").agg(pl.col("flops").min().alias("lo"), pl.col("flops").max().alias("hi"))
    spans = {r["run_id"]: (r["lo"], r["hi"]) for r in spans.iter_rows(named=True)}
    for p in law["optima"]:
        assert spans[p["run_id"]][0] * 0.999 <= p["flops"] <= spans[p["run_id"]][1] * 1.001
        assert p["in_fit"] == (lo <= p["flops"] <= hi)
    assert not law["optima"][0]["in_fit"] and law["optima"][0]["n_opt"] == 1e7
    with pytest.raises(FitError, match="at least 3 model sizes; got 2"):
        approach1(curves_of(long_runs(np.array([1e8, 1e9]))))
    with pytest.raises(FitError, match="missing \\['train_loss'\\]"):
        approach1(curves.drop("train_loss"))
