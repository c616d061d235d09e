"""``python -m workflow.fit``: the files it writes, its summary lines and its exit codes."""

import json
import subprocess
import sys

import jsonschema
import polars as pl
import pytest
from synthetic import TRUE, curves_of, grid_study, isoflop_study

from workflow.fit.schema import FITS_SCHEMA


def fit_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "workflow.fit", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_cli_on_csv(tmp_path):
    n, d, loss = grid_study()
    pl.DataFrame({"params": n, "tokens": d, "loss": loss, "flops": 6 * n * d}).write_csv(tmp_path / "t.csv")
    result = fit_cli(tmp_path / "t.csv", "--out", tmp_path / "fits.json", timeout=120)
    assert result.returncode == 0, result.stderr
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert set(fits["approach3"]) >= {"E", "A", "B", "alpha", "beta"}
    assert fits["approach3"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    jsonschema.validate(fits, FITS_SCHEMA)


def test_cli_names_missing_columns(tmp_path):
    pl.DataFrame({"N": [1.0], "tokens": [1.0], "loss": [1.0]}).write_csv(tmp_path / "t.csv")
    result = fit_cli(tmp_path / "t.csv", "--out", tmp_path / "fits.json", timeout=120)
    assert result.returncode == 1
    assert "lacks column(s) params" in result.stderr
    assert not (tmp_path / "fits.json").exists()


@pytest.mark.slow
def test_cli_writes_every_section(tmp_path):
    study = isoflop_study()
    study.write_csv(tmp_path / "runs.csv")
    curves_of(study).write_parquet(tmp_path / "curves.parquet")
    result = fit_cli(
        tmp_path / "runs.csv",
        "--out",
        tmp_path / "fits.json",
        "--curves",
        tmp_path / "curves.parquet",
        "--bootstrap",
        "50",
        "--seed",
        "1",
        "--predict",
        "1e21,1e23",
    )
    assert result.returncode == 0, result.stderr

    def refuse(constant):
        raise AssertionError(f"{constant} in fits.json")

    fits = json.loads((tmp_path / "fits.json").read_text(), parse_constant=refuse)
    assert set(fits) >= {
        "layout",
        "approach1",
        "approach2",
        "approach3",
        "kaplan",
        "frontier",
        "bootstrap",
        "extrapolation",
        "predictions",
        "references",
        "data",
        "seconds",
    }
    jsonschema.validate(fits, FITS_SCHEMA)
    assert not any("skipped" in fits[k] for k in ("approach1", "approach2", "bootstrap", "extrapolation"))
    assert [p["flops"] for p in fits["predictions"]] == [1e21, 1e23]
    assert fits["bootstrap"]["samples"] == 50 and fits["bootstrap"]["seed"] == 1
    assert "approach2: a=" in result.stdout and "bootstrap: 50 of 50 resamples fitted" in result.stdout
    assert "C=1e+23: N_opt=" in result.stdout and "total:" in result.stdout
    # One summary line per approach, in registry order.
    names = [line.split(":")[0] for line in result.stdout.splitlines()]
    assert names[:7] == [
        "approach3",
        "data_constrained",
        "frontier",
        "kaplan",
        "approach1",
        "approach2",
        "extrapolation",
    ]
    # Approach 3 failing fails the stage, with the reason.
    study.head(4).write_csv(tmp_path / "few.csv")
    result = fit_cli(tmp_path / "few.csv", "--out", tmp_path / "few.json", timeout=120)
    assert result.returncode == 1 and "needs at least 6 completed runs; got 4" in result.stderr
    assert not (tmp_path / "few.json").exists()
