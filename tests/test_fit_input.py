"""``python -m workflow.fit`` on tables of runs written wrong (workflow/fit/checks.py).

Every table here is a real published one (shared/data/external, README there) with one thing
changed. A table the fit cannot read as meant ends in exit 1 and a single ``error:`` line naming
the column, the row (data rows counted from 1 under the header) and the value; a table it can
read but whose numbers look like another unit is fitted, with a warning in fits.json
(``data.warnings``) and in the summary. The real tables themselves raise nothing.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers import REPO
from spec_variants import shipped_configs

from workflow import families
from workflow.config import expand_runs
from workflow.fit import read_table, study_of
from workflow.fit.checks import LOSS_MAX_NATS, plausibility

SHARED = REPO.parent / "shared" / "data"
EXTERNAL = SHARED / "external"
EPOCH_DATA = SHARED / "svg_extracted_data.csv"
REAL_TABLES = sorted(p.name for p in EXTERNAL.glob("*.csv"))

pytestmark = pytest.mark.skipif(not EXTERNAL.exists(), reason="shared/data is not beside this checkout")


def fits_of(table: Path) -> Path:
    """Where fit_cli writes the fits of ``table``: beside it, one per table."""
    return table.with_name(f"{table.stem}-fits.json")


def fit_cli(table: Path):
    """The CLI on ``table``, with a small refinement: these tests check the input, not the fit."""
    out = fits_of(table)
    return subprocess.run(
        [sys.executable, "-m", "workflow.fit", str(table), "--out", str(out), "--refine", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def real(name: str = "datablations_le1ep.csv") -> pl.DataFrame:
    return pl.read_csv(EXTERNAL / name)


def with_cell(table: pl.DataFrame, column: str, row: int, value) -> pl.DataFrame:
    """``table`` with ``value`` in ``column`` at data row ``row`` (1 = the first row under the header)."""
    values = table[column].to_list()
    values[row - 1] = value
    dtype = pl.String if isinstance(value, str) else pl.Float64
    if dtype == pl.String:
        values = [v if isinstance(v, str) or v is None else str(v) for v in values]
    return table.with_columns(pl.Series(column, values, dtype=dtype))


def refused(path: Path, *needles) -> str:
    """The CLI's one line of error for the table at ``path``, which holds every needle; no fits.json."""
    result = fit_cli(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not fits_of(path).exists()
    return lines[0]


def fitted(path: Path) -> tuple[dict, str]:
    """fits.json and the summary of a table the CLI fits."""
    result = fit_cli(path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(fits_of(path).read_text()), result.stdout


def line_of(path, row: int) -> str:
    """Data row ``row`` of a CSV file, as a user finds it there (the header is line 1)."""
    return path.read_text().splitlines()[row]


@pytest.mark.parametrize(
    ("name", "row", "fmt"),
    [("datablations_le1ep.csv", 7, "csv"), ("misfitting_final.csv", 150, "csv"), ("gadre_rpj_small.csv", 3, "parquet")],
    ids=["csv", "csv-beyond-row-100", "parquet"],
)
def test_a_number_written_as_text_is_named(tmp_path, name, row, fmt):
    table = with_cell(real(name), "params", row, "2.81B")
    path = tmp_path / f"runs.{fmt}"
    if fmt == "csv":
        table.write_csv(path)
    else:
        table.write_parquet(path)
    refused(path, f"{path}, column 'params', row {row}: '2.81B' is not a number", "64000, not 64k")
    if fmt == "csv":
        assert line_of(path, row).startswith("2.81B,")


@pytest.mark.parametrize(
    ("name", "column", "row", "value", "shown"),
    [
        ("datablations_le1ep.csv", "loss", 5, math.nan, "NaN"),
        ("datablations_le1ep.csv", "tokens", 3, math.inf, "inf"),
        ("gadre_rpj_small.csv", "params", 10, 0.0, "0.0"),
        ("misfitting_final.csv", "flops", 4, -9.4e18, "-9.4e+18"),
        ("gadre_rpj_small.csv", "loss", 8, None, "an empty cell"),
    ],
    ids=["nan-loss", "inf-tokens", "zero-params", "negative-flops", "empty-loss"],
)
def test_a_value_that_is_not_positive_and_finite_is_named(tmp_path, name, column, row, value, shown):
    path = tmp_path / "runs.csv"
    with_cell(real(name), column, row, value).write_csv(path)
    line = refused(path, f"column {column!r}, row {row}: {shown} is not a positive, finite number")
    if column == "loss":
        assert "status 'diverged'" in line
    assert str(real(name)["run_id"][row - 1]) in line_of(path, row)


def test_compute_budget_may_be_empty_but_not_negative(tmp_path):
    table = real("gadre_rpj_small.csv").with_columns(compute_budget=pl.lit(None, dtype=pl.Float64))
    with_cell(table, "compute_budget", 2, -1e18).write_csv(tmp_path / "runs.csv")
    refused(
        tmp_path / "runs.csv",
        "column 'compute_budget', row 2: -1e+18 is not a positive, finite number",
        "leave it empty for a run outside any IsoFLOP budget",
    )
    table.write_csv(tmp_path / "empty.csv")  # null everywhere: not an IsoFLOP study
    fits, _ = fitted(tmp_path / "empty.csv")
    assert fits["approach2"]["skipped"].startswith("no IsoFLOP budgets") and fits["data"]["warnings"] == []


def test_a_diverged_run_may_have_a_nan_loss(tmp_path):
    table = real().with_columns(status=pl.lit("completed"))
    table = with_cell(with_cell(table, "status", 4, "diverged"), "loss", 4, math.nan)
    table.write_csv(tmp_path / "runs.csv")
    fits, _ = fitted(tmp_path / "runs.csv")
    assert fits["data"]["runs_excluded"] == [table["run_id"][3]] and fits["data"]["runs_fitted"] == table.height - 1


def test_duplicate_run_ids_are_named_with_both_rows(tmp_path):
    table = real()
    pl.concat([table, table.slice(5, 1)]).write_csv(tmp_path / "runs.csv")
    refused(
        tmp_path / "runs.csv",
        f"column 'run_id': {table['run_id'][5]!r} is in rows 6 and {table.height + 1}",
        "each run needs its own id",
    )


def test_header_spaces_are_tolerated_but_columns_that_collide_are_named(tmp_path):
    text = (EXTERNAL / "gadre_rpj_small.csv").read_text()
    (tmp_path / "spaces.csv").write_text(text.replace("params,tokens,loss,", " params , tokens,loss ,", 1))
    fits, stdout = fitted(tmp_path / "spaces.csv")
    assert fits["data"]["runs_fitted"] == 32 and fits["data"]["warnings"] == [] and "data warning" not in stdout
    (tmp_path / "twice.csv").write_text(text.replace("params_no_embed", " params", 1))
    refused(tmp_path / "twice.csv", "header: columns 'params' and ' params' are both 'params'")
    (tmp_path / "same.csv").write_text(text.replace("params_no_embed", "params", 1))
    refused(tmp_path / "same.csv", "header: column 'params' appears more than once")


def test_a_missing_column_is_named_with_the_columns_found(tmp_path):
    real().rename({"tokens": "D", "params": "Params"}).write_csv(tmp_path / "runs.csv")
    refused(
        tmp_path / "runs.csv",
        "header lacks column(s) params, tokens (found: 'Params', 'D', 'loss', 'unique_tokens', 'epochs', 'run_id')",
        "names are case-sensitive ('Params' for 'params')",
    )


def test_an_unknown_status_is_named_with_its_count_and_first_row(tmp_path):
    table = real().with_columns(status=pl.lit("done"))
    with_cell(with_cell(table, "status", 1, "completed"), "status", 9, "failed").write_csv(tmp_path / "runs.csv")
    refused(
        tmp_path / "runs.csv",
        "column 'status': 'done' in 39 row(s) (first row 2), 'failed' in 1 row(s) (first row 9)",
        "known statuses: 'completed' (fitted), 'diverged' (left out)",
    )


def test_no_completed_runs_names_the_statuses_found(tmp_path):
    real().with_columns(status=pl.lit("diverged")).write_csv(tmp_path / "runs.csv")
    refused(
        tmp_path / "runs.csv",
        "error: no completed runs to fit (41 left out as not completed): status 'diverged' in 41 row(s)",
    )


def test_a_file_that_is_not_a_table_is_named(tmp_path):
    (tmp_path / "runs.csv").write_text("params,tokens,loss\n1e8,2e9,3.1\n1e8,2e9,3.0,7\n")
    refused(tmp_path / "runs.csv", f"{tmp_path / 'runs.csv'} cannot be read as CSV")


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        ("datablations_le1ep.csv", pl.col("tokens") / 1e9, "tokens may be written in millions or billions"),
        ("gadre_rpj_small.csv", pl.col("tokens") / 1e6, "tokens may be written in millions or billions"),
        ("gadre_rpj_small.csv", pl.col("params") / 1e6, "params may be written in millions or billions"),
        ("datablations_le1ep.csv", pl.col("loss").exp(), "the losses may be perplexities, or bits"),
        ("misfitting_final.csv", pl.col("flops") / 8.64e19, "flops may be in PF-days or another unit"),
    ],
    ids=["tokens-in-billions", "tokens-in-millions", "params-in-millions", "perplexities", "flops-in-pf-days"],
)
def test_a_column_in_another_unit_is_fitted_with_a_warning(tmp_path, name, change, needle):
    table = real(name)
    table.with_columns(change.alias(change.meta.output_name())).write_csv(tmp_path / "runs.csv")
    fits, stdout = fitted(tmp_path / "runs.csv")
    (warning,) = fits["data"]["warnings"]
    assert needle in warning and f"data warning: {warning}" in stdout.splitlines()
    assert f"over {table.height} runs" in warning or f"of {table.height} runs" in warning


@pytest.mark.parametrize("name", [*REAL_TABLES, EPOCH_DATA.name])
def test_real_tables_raise_no_warning(tmp_path, name):
    path = tmp_path / name
    if name == EPOCH_DATA.name:
        if not EPOCH_DATA.exists():
            pytest.skip("no Epoch points")
        points = pl.read_csv(EPOCH_DATA)
        n, flops = points["Model Size"], points["Training FLOP"]
        pl.DataFrame({"params": n, "tokens": flops / (6 * n), "loss": points["loss"], "flops": flops}).write_csv(path)
    else:
        path.write_bytes((EXTERNAL / name).read_bytes())
    if name in ("datablations_le1ep.csv", "misfitting_final.csv"):  # the CLI itself, on two of them
        fits, stdout = fitted(path)
        assert fits["data"]["warnings"] == [] and "data warning" not in stdout
    else:  # the same checks, in this process (a fit each would add seconds and check nothing more)
        assert study_of(read_table(path))[1]["warnings"] == []


def test_flops_of_the_pipelines_own_conventions_raise_no_warning():
    """Every run of every shipped config, under every FLOP convention and parameter count: C is
    0.3 to 5.3 times 6 N D for the tiny models, inside the band."""
    rows = []
    for config in shipped_configs().values():
        for spec in expand_runs(config).values():
            counts = families.parameter_counts(spec.model)
            for convention in families.CONVENTIONS:
                for count in ("non_embedding", "total"):
                    params = getattr(counts, count)
                    flops = families.flops_per_token(convention, spec.model) * spec.tokens
                    rows.append({"params": params, "tokens": spec.tokens, "loss": 3.0, "flops": flops})
    table = pl.DataFrame(rows)
    ratio = table["flops"] / (6 * table["params"].cast(pl.Float64) * table["tokens"])
    assert 0.3 < ratio.min() and ratio.max() < 6
    assert plausibility(table, pl.Series([True] * table.height)) == []


def test_losses_in_bits_mostly_pass_unseen():
    """A loss in bits is 1/ln 2 = 1.44 times the loss in nats: the warning catches it only in a table
    with a loss above LOSS_MAX_NATS * ln 2 = 8.65 nats, which most studies lack (docs/methods.md)."""
    for name in REAL_TABLES:
        table = real(name)
        bits = table.with_columns(pl.col("loss") / math.log(2))
        warned = plausibility(bits, pl.Series([True] * table.height)) != []
        assert warned == (table["loss"].max() > LOSS_MAX_NATS * math.log(2)), name
