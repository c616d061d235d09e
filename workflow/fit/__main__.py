"""``python -m workflow.fit TABLE --out FITS.json``: the fit stage's command line.

TABLE is a CSV or parquet file with columns params, tokens, loss and
optionally flops (else C = 6 N D, and the output says so), status, run_id,
compute_budget. ``--curves`` enables Approach 1, ``--bootstrap`` (with
``--seed``) the intervals, ``--predict C1,C2`` the predictions;
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
from workflow.fit.calibration import calibration, calibration_lines
from workflow.fit.primitives import HUBER_DELTA, FitError
from workflow.fit.table_fit import fit_table, read_table, summary_lines
from workflow.fit.variant import Variant, parse_fixed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.fit",
        description="Fit stage: scaling laws fitted to the table of runs (and to the training curves).",
    )
    parser.add_argument("table", type=Path, help="CSV or parquet with params, tokens, loss [, flops]")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--curves", type=Path, help="training curves (CSV or parquet): enables Approach 1")
    parser.add_argument("--huber-delta", type=float, default=HUBER_DELTA)
    parser.add_argument(
        "--refine", type=int, default=50, help="run L-BFGS from this many best-ranked grid starts (0: all 4500)"
    )
    parser.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--workers", type=int, default=2, help="processes for the bootstrap")
    parser.add_argument("--predict", default="", help="compute budgets (FLOPs), comma-separated")
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
        "the fitted floors are compared with it (the calibration section)",
    )
    parser.add_argument(
        "--extrapolation-flag",
        type=float,
        default=100.0,
        help="a prediction past this many times the largest compute trained is flagged (default 100)",
    )
    parser.add_argument("--flop-convention", default=None, help="recorded in the output")
    parser.add_argument("--parameter-count", default=None, help="recorded in the output")
    args = parser.parse_args(argv)
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
            )
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    known = read_json(args.corpus_manifest).get("known_entropy") if args.corpus_manifest else None
    if known:
        fits["calibration"] = calibration(known, table, fits)
    write_json_atomic(args.out, fits)
    for line in summary_lines(fits) + calibration_lines(fits.get("calibration")):
        print(line)
    print(f"total: {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "fit"))
