"""Input checks and plausibility warnings for the table of runs that the fit reads.

Two kinds of finding:

- Errors (FitError): a table the fit cannot read as meant. Each is one line
  naming the column, the row and the value. Rows are data rows counted from 1,
  as a user counts them in the file: row 1 is the first row under the header
  (the first row of a parquet file). Values are checked only on the rows that
  are fitted, so a diverged run may keep its NaN loss.
- Warnings: a table the fit can read whose numbers look like another unit
  (tokens in billions, perplexities in place of losses, FLOPs in PF-days). The
  fit goes on; the warnings are recorded in fits.json (``data.warnings``) and
  printed by the CLI, each with the numbers found and the likely cause.

The thresholds and the real tables that justify them are in docs/methods.md,
"Input checks and plausibility warnings". Every function here is pure: it
reads a polars DataFrame and returns a value or raises FitError.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import polars as pl

from workflow.fit.primitives import FitError

REQUIRED_COLUMNS = ("params", "tokens", "loss")
OPTIONAL_COLUMNS = ("flops", "status", "run_id", "compute_budget")
# Columns the fit reads as numbers (a table written by hand may hold text in them).
NUMBER_COLUMNS = ("params", "tokens", "loss", "flops", "compute_budget")
# Columns where an empty cell means something: compute_budget is null for a run outside any IsoFLOP budget.
MAY_BE_EMPTY = ("compute_budget",)

# The statuses the pipeline writes (workflow/train/trainer.py sets them; evaluate.py and collect.py carry
# them into runs.csv), and what the fit does with each. Any other value is an error: a status
# the fit does not know may or may not mean finished, and guessing would fit the wrong runs.
FITTED_STATUS = "completed"
STATUSES = {"completed": "fitted", "diverged": "left out"}

# Plausibility thresholds (docs/methods.md gives the real tables' ranges behind them).
# Median tokens per parameter: published studies and this pipeline's configs have medians of 3 to 62
# (single runs from 0.035 to 1e5); outside [1e-2, 1e5] the median is 300-fold or more beyond them,
# where tokens (below) or params (above) written in millions or billions land.
TOKENS_PER_PARAMETER_MIN = 1e-2
TOKENS_PER_PARAMETER_MAX = 1e5
# A loss above ln(262144) nats is worse than a uniform guess over a 256k-token vocabulary (the
# largest in common use): not a cross-entropy in nats per token of any trained model.
VOCABULARY_MAX = 262_144
LOSS_MAX_NATS = math.log(VOCABULARY_MAX)
# flops / (6 N D): 1 for C = 6 N D; 0.34 to 5.3 under the pipeline's FLOP conventions and
# parameter counts (attention and embeddings counted or not, tiny models included).
FLOPS_PER_6ND_MIN = 1e-2
FLOPS_PER_6ND_MAX = 1e2

# Hints added to an error about a column's values.
VALUE_HINTS = {
    "loss": " (a run that diverged can stay in the table with status 'diverged', which the fit leaves out)",
    "compute_budget": " (leave it empty for a run outside any IsoFLOP budget)",
}


def checked(table: pl.DataFrame, where: str | Path | None = None) -> tuple[pl.DataFrame, pl.Series]:
    """The table with a clean header and numeric number columns, and which rows are fitted.

    Runs every check below in order; ``where`` (the file) starts the message of any FitError."""
    try:
        table = tidy_header(table)
        require_columns(table)
        fitted = fitted_rows(table)
        table = numbers_from_text(table, fitted)
        check_values(table, fitted)
        check_run_ids(table)
    except FitError as e:
        if where is None:
            raise
        raise FitError(f"{where}, {e}") from None
    return table, fitted


def tidy_header(table: pl.DataFrame) -> pl.DataFrame:
    """Column names stripped of surrounding spaces, silently: ``params, tokens`` typed by hand means
    ``tokens``. Two columns that become one name are an error, since which one is meant is not
    plain; so is a column the fit reads repeated in the header (polars renames the second
    ``NAME_duplicated_0``)."""
    names = [c.strip() for c in table.columns]
    seen: dict[str, str] = {}
    for original, name in zip(table.columns, names):
        if name in seen:
            raise FitError(
                f"header: columns {seen[name]!r} and {original!r} are both {name!r} once spaces are stripped; keep one"
            )
        seen[name] = original
    for name in names:
        repeated = re.fullmatch(r"(.+)_duplicated_\d+", name)
        if repeated and repeated[1] in seen and repeated[1] in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise FitError(f"header: column {repeated[1]!r} appears more than once; keep one")
    return table if names == table.columns else table.rename(dict(zip(table.columns, names)))


def require_columns(table: pl.DataFrame) -> None:
    """FitError naming the required columns missing and the columns found (a table with ``N`` and
    ``D`` or ``Params`` says at once what to rename)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if not missing:
        return
    found = ", ".join(repr(c) for c in table.columns) or "none"
    cased = [f"{c!r} for {m!r}" for m in missing for c in table.columns if c.lower() == m]
    hint = f"; names are case-sensitive ({', '.join(cased)})" if cased else ""
    raise FitError(
        f"header lacks column(s) {', '.join(missing)} (found: {found}); the fit needs params, tokens, loss and "
        f"reads flops, status, run_id, compute_budget where present{hint}"
    )


def fitted_rows(table: pl.DataFrame) -> pl.Series:
    """Which rows are fitted: those with status 'completed', or every row when there is no status
    column. A status outside STATUSES is an error naming each such value, how many rows hold it
    and its first row, and listing the known statuses."""
    if "status" not in table.columns:
        return pl.Series("fitted", [True] * table.height, dtype=pl.Boolean)
    status = table["status"].cast(pl.String)
    unknown = ~status.is_in(list(STATUSES)).fill_null(False)
    if unknown.any():
        values = ", ".join(
            f"{value} in {count} row(s) (first row {first})" for value, count, first in tally(status, unknown)
        )
        known = ", ".join(f"{s!r} ({what})" for s, what in STATUSES.items())
        raise FitError(f"column 'status': {values}: not a status the pipeline writes; known statuses: {known}")
    return (status == FITTED_STATUS).alias("fitted")


def tally(values: pl.Series, rows: pl.Series) -> list[tuple[str, int, int]]:
    """Each distinct value among ``rows`` (shown as in the file; an empty cell as 'empty'), how
    many rows hold it and its first row, in the order of first appearance."""
    found: dict = {}
    for i in rows.arg_true().to_list():
        value = values[i]
        count, first = found.get(value, (0, i + 1))
        found[value] = (count + 1, first)
    return [("empty" if v is None else repr(v), count, first) for v, (count, first) in found.items()]


def numbers_from_text(table: pl.DataFrame, fitted: pl.Series) -> pl.DataFrame:
    """Number columns that were read as text (one cell such as '64k' or '2.81B' makes a CSV column
    text) as floats. Spaces around a number are tolerated and an empty cell is empty; FitError
    names the first fitted row whose text is not a number. Text in a row that is left out
    (a diverged run's 'n/a') becomes empty."""
    for column in NUMBER_COLUMNS:
        if column not in table.columns or table[column].dtype.is_numeric():
            continue
        text = table[column].cast(pl.String).str.strip_chars()
        text = pl.select(pl.when(text != "").then(text)).to_series()
        numbers = text.cast(pl.Float64, strict=False)
        wrong = text.is_not_null() & numbers.is_null() & fitted
        if wrong.any():
            row = wrong.arg_true()[0]
            raise FitError(
                f"column {column!r}, row {row + 1}: {table[column][row]!r} is not a number; write it out in full "
                f"(e.g. 64000, not 64k)"
            )
        table = table.with_columns(numbers.alias(column))
    return table


def shown(value) -> str:
    """A cell as an error message shows it."""
    if value is None:
        return "an empty cell"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else str(value)
    return repr(value)


def check_values(table: pl.DataFrame, fitted: pl.Series) -> None:
    """FitError naming the first fitted row whose params, tokens, loss, flops or compute_budget is
    empty, NaN, infinite, zero or negative: every law the fit uses takes their logarithms.
    compute_budget may be empty (not an IsoFLOP run). Rows that are left out are not checked."""
    for column in NUMBER_COLUMNS:
        if column not in table.columns:
            continue
        values = table[column].cast(pl.Float64)
        wrong = (~(values.is_finite() & (values > 0))).fill_null(column not in MAY_BE_EMPTY) & fitted
        if wrong.any():
            rows = wrong.arg_true()
            more = f" ({len(rows) - 1} more fitted row(s) like it)" if len(rows) > 1 else ""
            raise FitError(
                f"column {column!r}, row {rows[0] + 1}: {shown(table[column][rows[0]])} is not a positive, finite "
                f"number, which every fitted run needs{more}{VALUE_HINTS.get(column, '')}"
            )


def check_run_ids(table: pl.DataFrame) -> None:
    """FitError naming a run id that appears twice and both rows (a table concatenated twice, or
    seeds sharing a name): the output names runs by id, so two runs with one id cannot be told
    apart. Every row counts, fitted or not."""
    if "run_id" not in table.columns:
        return
    ids = table["run_id"]
    repeated = ids.is_duplicated() & ids.is_not_null()
    if repeated.any():
        value = ids[repeated.arg_true()[0]]
        rows = (ids == value).fill_null(False).arg_true().to_list()
        more = f" (and {len(rows) - 2} more row(s))" if len(rows) > 2 else ""
        others = ids.filter(repeated & (ids != value)).n_unique()
        also = f"; {others} other id(s) are repeated too" if others else ""
        raise FitError(
            f"column 'run_id': {value!r} is in rows {rows[0] + 1} and {rows[1] + 1}{more}; each run needs its own "
            f"id{also}"
        )


def no_runs_to_fit(table: pl.DataFrame) -> str:
    """The message when no row is fitted: the statuses found, with how many rows hold each."""
    if table.height == 0:
        return "no completed runs to fit (the table has no rows)"
    every = pl.Series([True] * table.height, dtype=pl.Boolean)
    found = ", ".join(f"{v} in {count} row(s)" for v, count, _ in tally(table["status"].cast(pl.String), every))
    return f"no completed runs to fit ({table.height} left out as not completed): status {found}"


def plausibility(table: pl.DataFrame, fitted: pl.Series) -> list[str]:
    """One line per thing that looks wrong in the fitted rows (after ``checked``), with the numbers
    found and the likely cause; [] when nothing does.

    - median tokens per parameter outside [TOKENS_PER_PARAMETER_MIN, TOKENS_PER_PARAMETER_MAX]:
      tokens (below) or params (above) written in millions or billions;
    - a loss above LOSS_MAX_NATS: perplexities, or bits. Bits are caught only where a loss is
      above 8.6 nats (12.5 bits); most studies' losses in bits pass unseen;
    - flops / (6 N D) outside [FLOPS_PER_6ND_MIN, FLOPS_PER_6ND_MAX] in any row: flops in PF-days,
      or in another unit than FLOPs.
    """
    runs = table.with_row_index("row", offset=1).filter(fitted)
    if runs.height == 0:
        return []
    n, d, loss = (runs[c].cast(pl.Float64).to_numpy() for c in ("params", "tokens", "loss"))
    count, warnings = runs.height, []
    ratio = d / n
    median = float(np.median(ratio))
    spread = f"median {median:.3g} over {count} runs (from {ratio.min():.3g} to {ratio.max():.3g})"
    if median < TOKENS_PER_PARAMETER_MIN:
        warnings.append(
            f"tokens per parameter: {spread}, below {TOKENS_PER_PARAMETER_MIN:g}, far under any published "
            f"study's (medians 12 to 60): tokens may be written in millions or billions, not as a count"
        )
    elif median > TOKENS_PER_PARAMETER_MAX:
        warnings.append(
            f"tokens per parameter: {spread}, above {TOKENS_PER_PARAMETER_MAX:g}, far over any published "
            f"study's (medians 12 to 60): params may be written in millions or billions, not as a count"
        )
    high = loss > LOSS_MAX_NATS
    if high.any():
        worst = int(np.argmax(loss))
        warnings.append(
            f"loss: {int(high.sum())} of {count} runs above {LOSS_MAX_NATS:.2f} nats (ln {VOCABULARY_MAX}, a "
            f"uniform guess over a {VOCABULARY_MAX}-token vocabulary), largest {loss[worst]:.4g} at row "
            f"{runs['row'][worst]}: the losses may be perplexities, or bits, not nats per token"
        )
    if "flops" in runs.columns:
        flops = runs["flops"].cast(pl.Float64).to_numpy()
        per_6nd = flops / (6 * n * d)
        off = (per_6nd < FLOPS_PER_6ND_MIN) | (per_6nd > FLOPS_PER_6ND_MAX)
        if off.any():
            first = int(np.argmax(off))
            warnings.append(
                f"flops: {int(off.sum())} of {count} runs have flops / (6 N D) outside [{FLOPS_PER_6ND_MIN:g}, "
                f"{FLOPS_PER_6ND_MAX:g}] (median {float(np.median(per_6nd)):.3g}; row {runs['row'][first]}: flops "
                f"{flops[first]:.3g} against 6 N D = {6 * n[first] * d[first]:.3g}): flops may be in PF-days or "
                f"another unit, not FLOPs"
            )
    return warnings


# Settings that make runs different models, not points of one law: a table whose fitted runs differ in any
# of them is refused (an arm of a comparison is fitted on its own; docs/methods.md, "One law per model").
ONE_LAW_COLUMNS = ("family", "vocab_size", "seq_len", "schedule", "arm")


def one_law(table: pl.DataFrame) -> None:
    """FitError naming the first setting in which the runs to fit differ."""
    for column in ONE_LAW_COLUMNS:
        if column in table.columns and table[column].drop_nulls().n_unique() > 1:
            values = sorted(str(v) for v in table[column].drop_nulls().unique().to_list())
            counts = ", ".join(f"{v} ({table.filter(pl.col(column).cast(pl.String) == v).height})" for v in values)
            raise FitError(
                f"the runs differ in {column!r} ({counts}): different models are not points of one law; fit "
                f"each {column} on its own (filter the table, or give each its own study), or compare them as "
                f"arms: python -m workflow.fit TABLE --arms {column} --baseline NAME"
            )
