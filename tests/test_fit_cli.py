"""``python -m workflow.fit``: the files it writes, its summary lines, its help and its exit codes."""

import json
import re
import subprocess
import sys
import time

import jsonschema
import polars as pl
import pytest
from helpers import REPO
from synthetic import TRUE, curves_of, grid_study, isoflop_study

from workflow.fit.__main__ import DEFAULT_BOOTSTRAP
from workflow.fit.registry import APPROACHES
from workflow.fit.schema import FITS_SCHEMA
from workflow.fit.table_fit import bootstrap_sentence, prediction_sentence

# Muennighoff et al.'s 41 single-epoch runs (../shared/data/external/README.md): a typical table.
DATABLATIONS = REPO.parent / "shared" / "data" / "external" / "datablations_le1ep.csv"
needs_datablations = pytest.mark.skipif(not DATABLATIONS.exists(), reason="shared/data is not beside this checkout")
NUMBER = r"-?[\d.]+(?:e[+-]\d+)?"
INTERVAL = rf"\[{NUMBER}, {NUMBER}\]"


def fit_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "workflow.fit", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def test_cli_on_csv(tmp_path):
    n, d, loss = grid_study()
    pl.DataFrame({"params": n, "tokens": d, "loss": loss, "flops": 6 * n * d}).write_csv(tmp_path / "t.csv")
    result = fit_cli(tmp_path / "t.csv", "--out", tmp_path / "fits.json", "--bootstrap", "0", timeout=120)
    assert result.returncode == 0, result.stderr
    fits = json.loads((tmp_path / "fits.json").read_text())
    assert set(fits["approach3"]) >= {"E", "A", "B", "alpha", "beta"}
    assert fits["approach3"]["alpha"] == pytest.approx(TRUE["alpha"], abs=0.03)
    jsonschema.validate(fits, FITS_SCHEMA)
    # --bootstrap 0 still turns the intervals off.
    assert "bootstrap: skipped: no bootstrap requested (--bootstrap 0)" in result.stdout
    assert "[" not in next(line for line in result.stdout.splitlines() if line.startswith("approach3:"))


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
    assert "C=1e+23 (" in result.stdout and "total:" in result.stdout
    assert re.search(rf"C=1e\+23 \(.*x the largest run\), approach2: N_opt={NUMBER} {INTERVAL}; D_opt=", result.stdout)
    # One summary line per approach, in registry order.
    names = [n for n in (line.split(":")[0] for line in result.stdout.splitlines()) if not n.endswith(" warning")]
    assert names[: len(APPROACHES)] == [a.name for a in APPROACHES]
    # Approach 3 failing fails the stage, with the reason.
    study.head(4).write_csv(tmp_path / "few.csv")
    result = fit_cli(tmp_path / "few.csv", "--out", tmp_path / "few.json", timeout=120)
    assert result.returncode == 1 and "needs at least 6 completed runs; got 4" in result.stderr
    assert not (tmp_path / "few.json").exists()


def no_repr(stdout: str) -> None:
    """Plain sentences: no Python dict or list of fits.json printed as it is."""
    assert "{'" not in stdout and "['" not in stdout, stdout


@needs_datablations
def test_cli_prints_intervals_by_default_in_seconds(tmp_path):
    """With no flag but --out, the bootstrap runs (DEFAULT_BOOTSTRAP resamples) and every exponent has
    its 95% interval, within 10 s of wall time. Measured on 2 idle cores: 5.3-6.2 s (start-up and the fit
    ~3 s, the bootstrap ~3 s), so the bound leaves a margin of 1.6x for a busy moment; with both cores
    taken by other jobs the run took 12-16 s, and fails it."""
    start = time.perf_counter()
    result = fit_cli(DATABLATIONS, "--out", tmp_path / "fits.json", timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    approach3 = next(line for line in result.stdout.splitlines() if line.startswith("approach3:"))
    for name in ("E", "A", "B", "alpha", "beta", "a"):
        assert re.search(rf"\b{name}={NUMBER} {INTERVAL}", approach3), (name, approach3)
    assert f"bootstrap: {DEFAULT_BOOTSTRAP} of {DEFAULT_BOOTSTRAP} resamples fitted" in result.stdout
    assert json.loads((tmp_path / "fits.json").read_text())["bootstrap"]["samples"] == DEFAULT_BOOTSTRAP
    no_repr(result.stdout)
    assert seconds <= 10, f"{seconds:.1f} s\n{result.stdout}"


@needs_datablations
def test_cli_predictions_show_intervals_and_tokens_per_parameter(tmp_path):
    result = fit_cli(DATABLATIONS, "--out", tmp_path / "fits.json", "--predict", "1e22,1e24", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("C=")]
    assert [line.split(" (")[0] for line in lines] == ["C=1e+22", "C=1e+24"]
    assert "(108x the largest run), approach3: " in lines[1]  # the extrapolation factor
    for line in lines:
        for label in ("N_opt", "D_opt", "tokens/parameter", "loss"):
            assert re.search(rf"\b{re.escape(label)}={NUMBER} {INTERVAL}", line), (label, line)
    no_repr(result.stdout)


def test_prediction_and_bootstrap_lines_are_sentences():
    """A withheld quantity says why in place of its number and interval; one without an interval prints
    none; resamples an approach could not fit are counted by its name, not as a dict."""
    point = {
        "n_opt": 1.234e9,
        "d_opt": 2.5e10,
        "tokens_per_parameter": 20.26,
        "loss": 2.5,
        "intervals": {"n_opt": [1e9, 1.5e9], "d_opt": None, "tokens_per_parameter": [15, 30], "loss": [2.4, 2.6]},
        "withheld": {"loss": ["E"]},
    }
    assert prediction_sentence(point) == (
        "N_opt=1.23e+09 [1e+09, 1.5e+09]; D_opt=2.5e+10; tokens/parameter=20.3 [15, 30]; loss=not identified (E)"
    )
    boot = {
        "samples": 200,
        "fitted": 197,
        "resamples_skipped": {"approach3": 3, "frontier": 0, "approach2": 5},
        "verified": {"resamples": 10, "same_optimum": 10},
    }
    assert bootstrap_sentence({"bootstrap": boot}) == (
        "197 of 200 resamples fitted (the 95% intervals in brackets); 3 could not be fitted by Approach 3; "
        "5 could not be fitted by Approach 2; the refit from the full fit's optima matched a fresh grid search "
        "in 10 of 10 resamples checked"
    )
    boot["resamples_skipped"] = {"approach3": 0}
    assert "every bootstrapped approach fitted every resample" in bootstrap_sentence({"bootstrap": boot})


def options_help(help_text: str) -> dict[str, str]:
    """Each option of an argparse --help and its help text (on its line or the lines beneath)."""
    options, current = {}, None
    section = help_text.split("\noptions:\n", 1)[1]
    for line in section.splitlines():
        if re.match(r"  -", line):
            invocation, _, text = line.strip().partition("  ")
            current = re.findall(r"--[\w-]+", invocation)[-1]
            options[current] = text.strip()
        elif current and line.startswith("    "):
            options[current] = (options[current] + " " + line.strip()).strip()
    return options


def test_help_explains_every_option_and_unknown_flags_are_errors(tmp_path):
    result = fit_cli("--help", timeout=60)
    assert result.returncode == 0, result.stderr
    options = options_help(result.stdout)
    assert {"--out", "--huber-delta", "--seed", "--workers", "--bootstrap", "--predict"} <= set(options)
    section = result.stdout.split("\noptions:\n", 1)[1]
    assert len(options) == sum(line.startswith("  -") for line in section.splitlines()), options
    assert all(options.values()), [flag for flag, text in options.items() if not text]
    assert f"default {DEFAULT_BOOTSTRAP}" in options["--bootstrap"]
    result = fit_cli("t.csv", "--out", tmp_path / "fits.json", "--bootsrap", "5", timeout=60)
    assert result.returncode == 2 and "unrecognized arguments: --bootsrap" in result.stderr
