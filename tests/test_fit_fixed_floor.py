"""A floor E fixed at or above the lowest loss (issue 29, case 7): L = E + A/N^alpha + B/D^beta is
above E for every run, so no law of that form fits; the fit said only that A and alpha were not
identified. It is refused in one line naming the floor, the lowest loss and its run."""

from __future__ import annotations

import json

import pytest
from synthetic import grid_study, grid_table

from workflow.fit.__main__ import main
from workflow.fit.primitives import FitError
from workflow.fit.variant import Variant


@pytest.fixture
def table_csv(tmp_path):
    n, d, loss = grid_study(sizes=(1e7, 3e9, 4), tokens=(1e9, 3e11, 4))
    path = tmp_path / "runs.csv"
    grid_table(n, d, loss).write_csv(path)
    return path, float(loss.min())


def test_a_fixed_floor_above_the_lowest_loss_is_refused_in_one_line(table_csv, tmp_path, capsys):
    path, lowest = table_csv
    out = tmp_path / "fits.json"
    code = main([str(path), "--out", str(out), "--fix", "E=5", "--bootstrap", "0", "--refine", "5"])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: --fix E=5 is at or above the lowest loss of the runs, {lowest:.4g} (run r")
    assert "no law L = E + A/N^alpha + B/D^beta with this floor fits them; fix E below" in err


def test_a_floor_equal_to_the_lowest_loss_is_refused_and_one_below_fits(table_csv, tmp_path, capsys):
    path, lowest = table_csv
    with pytest.raises(FitError, match=r"--fix E=.* is at or above the lowest loss"):
        Variant.of(fixed={"E": lowest}).check_floor([lowest, lowest + 1], ["a", "b"])
    Variant.of(fixed={"E": 1.7}).check_floor([lowest], ["a"])
    Variant.of(fixed={"A": 1e6}).check_floor([lowest], ["a"])  # only E is a floor
    out = tmp_path / "fits.json"
    assert main([str(path), "--out", str(out), "--fix", "E=1.7", "--bootstrap", "0", "--refine", "5"]) == 0
    assert json.loads(out.read_text())["approach3"]["E"] == 1.7
