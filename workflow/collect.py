"""Collect every run's summary, evaluation and training curve into tables.

Outputs (polars; each as CSV for reading and parquet for typed reloading):
- ``runs``: one row per run with its shape, parameter counts, tokens, FLOPs
  under every convention, losses and status. ``params``, ``tokens``, ``flops``
  and ``loss`` are the columns the fit reads: ``params`` is the count chosen
  by ``fit.parameter_count``, ``flops`` the convention of
  ``fit.flop_convention``, ``loss`` the validation loss.
- ``curves``: every logged step of every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from workflow.flops import CONVENTIONS
from workflow.io import atomic_path, read_json


class CollectError(ValueError):
    pass


def run_row(summary: dict, evaluation: dict, flop_convention: str, parameter_count: str) -> dict:
    row = {
        "run_id": summary["run_id"],
        "status": summary["status"],
        "family": summary["family"],
        "grid": summary["grid"],
        "compute_budget": summary["compute_budget"],
        "n_layer": summary["model"]["n_layer"],
        "d_model": summary["model"]["d_model"],
        "n_head": summary["model"]["n_head"],
        "seq_len": summary["model"]["seq_len"],
        "vocab_size": summary["model"]["vocab_size"],
        "seed": summary["seed"],
        "params_total": summary["parameters"]["total"],
        "params_non_embedding": summary["parameters"]["non_embedding"],
        "params_embedding": summary["parameters"]["embedding"],
        "params": summary["parameters"][parameter_count],
        "tokens": summary["tokens_trained"],
        "flops": summary["flops"][flop_convention],
        **{f"flops_{name}": summary["flops"][name] for name in CONVENTIONS},
        "train_loss": summary["final_train_loss"],
        "loss": evaluation["val_loss"],
        "perplexity": evaluation["perplexity"],
        "bits_per_byte": evaluation["bits_per_byte"],
        "tokens_per_s": summary["tokens_per_s"],
        "elapsed_s": summary["elapsed_s"],
        "device": summary["device"],
        "kernels": summary["kernels"],
    }
    if summary["run_id"] != evaluation["run_id"]:
        raise CollectError(f"summary of {summary['run_id']} paired with evaluation of {evaluation['run_id']}")
    return row


def collect(run_dirs: list[Path], flop_convention: str, parameter_count: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, curves = [], []
    for run_dir in run_dirs:
        for name in ("summary.json", "eval.json", "metrics.csv"):
            if not (run_dir / name).exists():
                raise CollectError(f"run {run_dir.name} has no {name} in {run_dir}")
        rows.append(run_row(read_json(run_dir / "summary.json"), read_json(run_dir / "eval.json"),
                            flop_convention, parameter_count))
        curve = pl.read_csv(run_dir / "metrics.csv").with_columns(
            pl.lit(run_dir.name).alias("run_id"), pl.lit(rows[-1]["params"]).alias("params"))
        curves.append(curve)
    runs = pl.DataFrame(rows, infer_schema_length=None).sort("flops")
    return runs, pl.concat(curves, how="vertical_relaxed")


def write_table(table: pl.DataFrame, stem: Path) -> None:
    with atomic_path(stem.with_suffix(".parquet")) as tmp:
        table.write_parquet(tmp)
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        table.write_csv(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.collect", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--flop-convention", required=True, choices=CONVENTIONS)
    parser.add_argument("--parameter-count", required=True, choices=["non_embedding", "total"])
    parser.add_argument("--out-runs", required=True, type=Path, help="stem: writes .csv and .parquet")
    parser.add_argument("--out-curves", required=True, type=Path, help="stem: writes .csv and .parquet")
    args = parser.parse_args(argv)
    try:
        runs, curves = collect(args.run_dirs, args.flop_convention, args.parameter_count)
    except CollectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_table(runs, args.out_runs)
    write_table(curves, args.out_curves)
    print(f"collect: {runs.height} runs ({runs.filter(pl.col('status') != 'completed').height} not completed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
