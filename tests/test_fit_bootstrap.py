"""The bootstrap: reproducible, independent of the number of workers, counting what it cannot fit,
and fast on Epoch AI's data with Epoch's interval."""

import time

import numpy as np
import polars as pl
import pytest
from helpers import REPO
from synthetic import TRUE, grid_table, isoflop_study

from workflow.fit import bootstrap, fit_approach3, fit_table, predict_approach3, study_of

EPOCH_DATA = REPO.parent / "shared" / "data" / "svg_extracted_data.csv"


@pytest.mark.slow
def test_bootstrap_is_reproducible_and_counts_degenerate_resamples():
    table = isoflop_study(budgets=(1e18, 1e19, 1e20))
    fits = fit_table(table)
    study = study_of(table)[0]
    one = bootstrap(study, fits, samples=60, seed=7, workers=1, verify=0)
    two = bootstrap(study, fits, samples=60, seed=7, workers=2, verify=0)
    assert one["intervals"] == two["intervals"]  # the resamples are drawn before they are shared out
    assert bootstrap(study, fits, samples=60, seed=8, workers=1, verify=0)["intervals"] != one["intervals"]
    # Six runs of one size and one of another: a resample missing the odd size has a single N.
    n = np.array([1e7] * 6 + [1e8])
    d = np.geomspace(1e9, 1e11, 7)
    table = grid_table(n, d, predict_approach3(TRUE, n, d))
    boot = bootstrap(study_of(table)[0], fit_table(table), samples=60, seed=0, workers=1, verify=0)
    assert 5 < boot["resamples_skipped"]["approach3"] < 40  # (6/7)^7 = 34% expected
    assert boot["fitted"] + boot["resamples_skipped"]["approach3"] == 60 == boot["samples"]
    assert boot["counts"]["approach3"]["alpha"] == boot["fitted"]


@pytest.mark.skipif(not EPOCH_DATA.exists(), reason="shared/data is not beside this checkout")
@pytest.mark.bench
def test_bootstrap_on_epoch_data_is_fast_and_matches_epochs_interval():
    data = pl.read_csv(EPOCH_DATA).sort("loss").head(-5)  # drop the 5 highest-loss points, as Epoch did
    n = data["Model Size"].to_numpy().astype(float)
    c = data["Training FLOP"].to_numpy().astype(float)
    table = pl.DataFrame(
        {
            "run_id": [f"p{i}" for i in range(n.size)],
            "params": n,
            "tokens": c / (6 * n),
            "flops": c,
            "loss": data["loss"],
        }
    )
    start = time.perf_counter()
    fits = fit_table(table)
    full_s = time.perf_counter() - start
    assert fits["approach3"]["alpha"] == pytest.approx(0.3473, abs=5e-4)
    start = time.perf_counter()
    boot = bootstrap(study_of(table, predict=[1e24])[0], fits, samples=1000, seed=0, workers=2)
    boot_s = time.perf_counter() - start
    lo, hi = boot["intervals"]["approach3"]["alpha"]
    print(
        f"Epoch data: fit_table {full_s:.1f} s (Approach 3 {fits['seconds']['approach3']:.1f} s), "
        f"1000 bootstraps {boot_s:.1f} s, alpha 95% [{lo:.4f}, {hi:.4f}]"
    )
    assert boot_s <= 60
    # Approach 3 alone within 1 s: the best of three fits, so that a busy moment of a shared machine
    # does not decide it.
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        fit_approach3(table["params"], table["tokens"], table["loss"])
        seconds.append(time.perf_counter() - start)
    assert min(seconds) <= 1.0, seconds
    assert boot["fitted"] == 1000 and boot["verified"]["same_optimum"] == boot["verified"]["resamples"] == 10
    # Epoch AI report 0.317-0.373 for alpha; this gives [0.319, 0.372] with seed 0.
    assert lo < 0.3473 < hi
    assert 0.31 < lo < 0.325 and 0.365 < hi < 0.38
    lo, hi = boot["intervals"]["approach3"]["beta"]
    assert lo < 0.3672 < hi
    assert "predictions.1e+24.loss" in boot["intervals"]["approach3"]
