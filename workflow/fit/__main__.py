"""``python -m workflow.fit TABLE --out FITS.json``: the fit stage's command line.

TABLE is a CSV or parquet file with columns params, tokens, loss and
optionally flops (else C = 6 N D, and the output says so), status, run_id,
compute_budget. ``--curves`` enables Approach 1; the bootstrap (``--bootstrap``
resamples, DEFAULT_BOOTSTRAP unless told, 0 for none; ``--seed``) gives the 95%
intervals; ``--predict C1,C2`` the predictions;
``--tie-exponents`` and ``--fix NAME=VALUE`` choose Approach 3's form. A required
approach failing exits 1 with its message; an optional one records why it was
skipped. A table that cannot be read as meant exits 1 naming the column, row and
value; numbers that look like another unit (tokens in billions, perplexities)
are fitted with ``data warning:`` lines, kept in fits.json (workflow/fit/checks.py).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import polars as pl
from threadpoolctl import threadpool_limits

from workflow.files import read_json, run_stage, write_json_atomic
from workflow.fit import checks
from workflow.fit.calibration import calibration, calibration_lines
from workflow.fit.compare import arm_lines, fit_arms
from workflow.fit.primitives import HUBER_DELTA, FitError
from workflow.fit.table_fit import fit_table, read_table, summary_lines
from workflow.fit.variant import Variant, parse_fixed

# The default bootstrap, chosen by timing on the 41 runs of ../shared/data/external/datablations_le1ep.csv,
# 2 idle cores: 100 resamples take 6.2 s in all, 200 take 7.9 s. Of the bootstrap's part ~2.5 s is fixed
# (its worker processes starting, 10 resamples verified from the grid), so 100 keeps a typical table in
# seconds while leaving the 10 s that tests/test_fit_cli.py allows a margin. Its intervals are a first
# look: each end rests on the 3 or 4 most extreme of 100 refits (the pipeline passes
# fit.bootstrap_samples, 1000 in config/config.yaml).
DEFAULT_BOOTSTRAP = 100
DEFAULT_BOOTSTRAP_TIMING = "a table of 41 runs takes about 6 s in all on 2 idle cores, 200 about 8 s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.fit",
        description="Fit stage: scaling laws fitted to the table of runs (and to the training curves).",
    )
    parser.add_argument("table", type=Path, help="CSV or parquet with params, tokens, loss [, flops]")
    parser.add_argument("--out", required=True, type=Path, help="where to write fits.json (required)")
    parser.add_argument("--curves", type=Path, help="training curves (CSV or parquet): enables Approach 1")
    parser.add_argument(
        "--huber-delta",
        type=float,
        default=HUBER_DELTA,
        help="Huber loss threshold on the residuals of log loss (default %(default)g, Hoffmann et al.'s)",
    )
    parser.add_argument(
        "--refine", type=int, default=50, help="run L-BFGS from this many best-ranked grid starts (0: all 4500)"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_BOOTSTRAP,
        help=f"resamples of the runs for the 95%% intervals (default %(default)s: {DEFAULT_BOOTSTRAP_TIMING}; "
        "0: no intervals; the pipeline passes fit.bootstrap_samples)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's resamples (default %(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes sharing the bootstrap's refits, at most one per CPU (default %(default)s)",
    )
    parser.add_argument(
        "--predict",
        default="",
        metavar="C1,C2",
        help="compute budgets in FLOPs, comma-separated: N_opt, D_opt, tokens per parameter and loss at each",
    )
    parser.add_argument("--tie-exponents", action="store_true", help="Approach 3 with alpha = beta")
    parser.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Approach 3 with a parameter (E, A, B, alpha or beta) held at VALUE; repeatable",
    )
    parser.add_argument(
        "--corpus-manifest",
        type=Path,
        help="the corpus manifest (results/data/corpus.json): where it records a known entropy rate, "
        "the fitted floors are compared with it (the calibration section); the study card names the corpus",
    )
    parser.add_argument(
        "--tokenizer-manifest",
        type=Path,
        help="the tokenizer manifest (results/data/tokenizer.json): the study card names the tokenizer",
    )
    parser.add_argument(
        "--dataset-manifest",
        type=Path,
        help="the dataset manifest (results/data/dataset.json): the study card gives the split sizes",
    )
    parser.add_argument(
        "--extrapolation-flag",
        type=float,
        default=100.0,
        help="a prediction past this many times the largest compute trained is flagged (default 100)",
    )
    parser.add_argument(
        "--flop-convention",
        default=None,
        help="the FLOP convention of the table's flops (e.g. 6N), recorded in fits.json",
    )
    parser.add_argument(
        "--parameter-count",
        default=None,
        help="what the table's params count (e.g. with_head, non_embedding), recorded in fits.json",
    )
    parser.add_argument(
        "--arms",
        metavar="COLUMN",
        help="fit each value of COLUMN (e.g. arm, dataset, family) as an arm and compare them with --baseline: "
        "compute multipliers with paired bootstrap intervals (docs/methods.md, 'Comparing arms')",
    )
    parser.add_argument("--baseline", metavar="NAME", help="the arm the others are compared with (with --arms)")
    args = parser.parse_args(argv)
    if (args.arms is None) != (args.baseline is None):
        print("error: --arms and --baseline go together: name the arms' column and the baseline arm", file=sys.stderr)
        return 2
    metadata = {
        "flop_convention": args.flop_convention,
        "parameter_count": args.parameter_count,
        "extrapolation_flag": args.extrapolation_flag,
        "table": str(args.table),
    }
    try:
        budgets = [float(c) for c in args.predict.split(",") if c.strip()]
    except ValueError:
        print(f"error: --predict takes FLOPs separated by commas, got {args.predict!r}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.extrapolation_flag) and args.extrapolation_flag >= 1):
        print(
            f"error: --extrapolation-flag must be a factor of 1 or more, got {args.extrapolation_flag:g}",
            file=sys.stderr,
        )
        return 2
    if any(not (math.isfinite(c) and c > 0) for c in budgets) or args.bootstrap < 0:
        print("error: --predict budgets must be positive FLOPs and --bootstrap must be >= 0", file=sys.stderr)
        return 2
    try:
        variant = Variant.of(args.tie_exponents, parse_fixed(args.fix))
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        curves = None
        if args.curves:
            curves = pl.read_parquet(args.curves) if args.curves.suffix == ".parquet" else pl.read_csv(args.curves)
        # One BLAS thread: L-BFGS on problems this small gains nothing from more.
        table = read_table(args.table)
        # A fixed floor at or above a fitted run's loss leaves no law to fit: say so before fitting.
        fitted = table.filter(checks.checked(table)[1])
        run_ids = fitted["run_id"].cast(pl.String).to_list() if "run_id" in fitted.columns else None
        variant.check_floor(fitted["loss"].to_numpy(), run_ids or [f"run{i}" for i in range(fitted.height)])
        if args.arms is not None:
            return fit_arms_command(args, table, curves, budgets, metadata, variant, t0)
        given = manifests(args)  # read once: the study card and the calibration both use them
        with threadpool_limits(1):
            fits = fit_table(
                table,
                curves=curves,
                delta=args.huber_delta,
                refine=args.refine or None,
                bootstrap_samples=args.bootstrap,
                seed=args.seed,
                predict=budgets,
                workers=args.workers,
                metadata=metadata,
                variant=variant,
                manifests=given,
            )
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    known = given.get("corpus", {}).get("known_entropy")
    if known:
        fits["calibration"] = calibration(known, table, fits)
    write_json_atomic(args.out, fits)
    for line in summary_lines(fits) + calibration_lines(fits.get("calibration")):
        print(line)
    print(f"total: {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0


def fit_arms_command(args, table: pl.DataFrame, curves, budgets: list[float], metadata: dict, variant, t0) -> int:
    """--arms: every arm fitted and compared with the baseline; the arms form of fits.json (schema.ARMS_SCHEMA)."""
    with threadpool_limits(1):
        fits = fit_arms(
            table,
            args.arms,
            args.baseline,
            curves=curves,
            bootstrap_samples=args.bootstrap,
            seed=args.seed,
            predict=budgets,
            workers=args.workers,
            metadata=metadata,
            variant=variant,
            delta=args.huber_delta,
            refine=args.refine or None,
            manifests=manifests(args),
        )
    write_json_atomic(args.out, fits)
    for line in arm_lines(fits):
        print(line)
    print(f"total: {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0


def manifests(args) -> dict[str, dict]:
    """The stages' manifests given on the command line, by name (the study card's sources)."""
    given = {"corpus": args.corpus_manifest, "tokenizer": args.tokenizer_manifest, "dataset": args.dataset_manifest}
    return {name: read_json(path) for name, path in given.items() if path is not None}


if __name__ == "__main__":
    sys.exit(run_stage(main, "fit"))
