"""Collect every run's summary, evaluation and training curve into tables.

Outputs (polars; each as CSV for reading and parquet for typed reloading):
- ``runs``: one row per run with its shape, parameter counts, tokens, FLOPs
  under every convention, losses and status. ``params``, ``tokens``, ``flops``
  and ``loss`` are the columns the fit reads: ``params`` is the count chosen
  by ``fit.parameter_count``, ``flops`` the convention of
  ``fit.flop_convention``, ``loss`` the validation loss. ``unique_tokens``
  (the dataset's training tokens) and ``epochs`` (tokens / unique_tokens)
  let the fit see runs that repeat data.
- ``curves``: every logged step of every run.

In a study with arms (``workflow.arms``) the runs table has two more columns: ``arm`` (the arm's
name) and ``yardstick`` (what ``loss`` measures, the same for every arm): "nats/token on base
validation" where every arm shares the base arm's tokenizer and validation split, or "bits/byte on
base validation text" where arms differ in tokenizer or corpus; ``loss`` is then bits per byte, and
``nats_per_token`` keeps each run's loss in nats per token of its own tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from workflow import families
from workflow.families import CONVENTIONS, PARAMETER_COUNTS
from workflow.files import DamagedOutput, atomic_path, damaged, read_output_json, run_stage
from workflow.spec import ParameterCounts


class CollectError(ValueError):
    pass


# What collect reads from each run's files: one without them is damaged, or from another version.
SUMMARY_KEYS = ("run_id", "points", "family", "grid", "schedule", "compute_budget", "model", "seed", "lr",
                "parameters", "flops_per_token", "tokens_per_s", "mfu", "elapsed_s", "device", "kernels",
                "dataset_train_tokens", "spec")  # fmt: skip
EVALUATION_KEYS = ("run_id", "points")


def parameter_count_of(parameters: dict, name: str) -> int:
    """One of ``workflow.families.PARAMETER_COUNTS`` from a summary's ``parameters``."""
    return families.parameter_count(ParameterCounts(**parameters), name)


# The yardstick of arms that share the base arm's tokenizer and validation split (their runs'
# eval.json record none: they are scored as any run is).
SHARED_YARDSTICK = "nats/token on base validation"


def arm_columns(summary: dict, evaluation: dict, score: dict) -> dict:
    """A study with arms: the run's arm, the yardstick, and the loss compared on it. {} outside arms."""
    arm = summary["spec"].get("arm")
    if arm is None:
        return {}
    yardstick = evaluation.get("yardstick")
    if yardstick is None:
        return {"arm": arm, "yardstick": SHARED_YARDSTICK, "nats_per_token": score["val_loss"]}
    return {
        "arm": arm,
        "yardstick": yardstick["name"],
        "nats_per_token": score["val_loss"],
        "loss": score["bits_per_byte"],
    }


def point_rows(summary: dict, evaluation: dict, flop_convention: str, parameter_count: str) -> list[dict]:
    """One row per point of the study: a cosine run, or one cooldown branch of a WSD run."""
    if summary["run_id"] != evaluation["run_id"]:
        raise CollectError(f"summary of {summary['run_id']} paired with evaluation of {evaluation['run_id']}")
    scores = {p["point_id"]: p for p in evaluation["points"]}
    rows = []
    for point in summary["points"]:
        score = scores.get(point["point_id"])
        if score is None:
            raise CollectError(f"run {summary['run_id']}: point {point['point_id']} was not evaluated")
        rows.append(
            {
                "run_id": point["point_id"],
                "training_run": summary["run_id"],
                "status": point["status"],
                "family": summary["family"],
                "grid": summary["grid"],
                "schedule": summary["schedule"],
                # A WSD run's cooldown branch carries its own IsoFLOP budget (older summaries: the run's).
                "compute_budget": point.get("compute_budget", summary["compute_budget"]),
                "n_layer": summary["model"]["n_layer"],
                "d_model": summary["model"]["d_model"],
                "n_head": summary["model"]["n_head"],
                "seq_len": summary["model"]["seq_len"],
                "vocab_size": summary["model"]["vocab_size"],
                "seed": summary["seed"],
                "lr": summary["lr"],
                "batch_tokens": summary["spec"]["optim"]["batch_tokens"],
                # Settings the tune stage chose, and from where: "lr (sweep)", "lr (rule)"; empty if untuned.
                "tuned": ", ".join(f"{k} ({v})" for k, v in sorted(summary["spec"].get("tuned", {}).items())),
                "params_total": summary["parameters"]["total"],
                "params_non_embedding": summary["parameters"]["non_embedding"],
                "params_embedding": summary["parameters"]["embedding"],
                "params_head": summary["parameters"]["head"],
                "params_with_head": parameter_count_of(summary["parameters"], "with_head"),
                "params": parameter_count_of(summary["parameters"], parameter_count),
                "tokens": point["tokens"],
                "unique_tokens": summary["dataset_train_tokens"],
                "epochs": point["tokens"] / summary["dataset_train_tokens"],
                "flops": point["flops"][flop_convention],
                **{f"flops_{name}": point["flops"][name] for name in CONVENTIONS},
                "train_loss": point["final_train_loss"],
                "loss": score["val_loss"],
                "perplexity": score["perplexity"],
                "bits_per_byte": score["bits_per_byte"],
                "tokens_per_s": summary["tokens_per_s"],
                "mfu": summary["mfu"],
                "elapsed_s": summary["elapsed_s"],
                "device": summary["device"],
                "kernels": summary["kernels"],
                **arm_columns(summary, evaluation, score),
            }
        )
    return rows


def collect(run_dirs: list[Path], flop_convention: str, parameter_count: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, curves = [], []
    yardsticks: dict[str, tuple] = {}
    for run_dir in run_dirs:
        for name in ("summary.json", "eval.json", "metrics.csv"):
            if not (run_dir / name).exists():
                raise CollectError(f"run {run_dir.name} has no {name} in {run_dir}")
        try:
            summary = read_output_json(run_dir / "summary.json", SUMMARY_KEYS)
            evaluation = read_output_json(run_dir / "eval.json", EVALUATION_KEYS)
        except DamagedOutput as e:
            raise CollectError(str(e)) from None
        try:
            points = point_rows(summary, evaluation, flop_convention, parameter_count)
        except (KeyError, TypeError) as e:
            raise CollectError(
                f"run {run_dir.name}: its summary.json and eval.json do not fit together ({type(e).__name__}: {e}); "
                f"remove both and run snakemake again"
            ) from None
        rows.extend(points)
        split = (evaluation.get("validation_bytes"), evaluation.get("validation_tokens"))
        yardsticks[run_dir.name] = (summary["spec"].get("arm"), evaluation.get("yardstick"), split)
        params = points[0]["params"]
        # Training compute along the curve under the analysis's convention (the trainer records tokens).
        flops_per_token = summary["flops_per_token"][flop_convention]
        labels = [pl.lit(params).alias("params"), (pl.col("tokens") * flops_per_token).alias("flops")]
        try:
            metrics = pl.read_csv(run_dir / "metrics.csv", schema_overrides={"mfu": pl.Float64})
            metrics = metrics.with_columns(pl.lit(run_dir.name).alias("run_id"), *labels)
        except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
            raise CollectError(str(damaged(run_dir / "metrics.csv", str(e).splitlines()[0]))) from None
        curves.append(metrics)
        for point in summary["points"]:
            if point["cooldown_rows"]:
                curves.append(
                    pl.DataFrame(point["cooldown_rows"], schema_overrides={"mfu": pl.Float64}).with_columns(
                        pl.lit(point["point_id"]).alias("run_id"), *labels
                    )
                )
    check_one_yardstick(yardsticks)
    runs = pl.DataFrame(rows, infer_schema_length=None).sort("flops")
    return runs, pl.concat(curves, how="diagonal_relaxed")


def check_one_yardstick(yardsticks: dict[str, tuple]) -> None:
    """Every run of a study with arms scored on one text in one unit: the same bytes (their sha256)
    where arms differ in tokenizer, or the same split (its bytes and tokens) where they share it; runs
    with and without arms together are refused too. Outside arms, runs are compared on their split."""
    kinds = {
        run: (
            arm is not None,
            None
            if arm is None
            else split
            if not yardstick
            else (yardstick["name"], yardstick["text_sha256"], yardstick["bytes"]),
        )
        for run, (arm, yardstick, split) in yardsticks.items()
    }
    first = next(iter(kinds), None)
    for run, kind in kinds.items():
        if kind != kinds[first]:
            raise CollectError(
                f"runs {first} and {run} were not scored on one yardstick ({describe(kinds[first])}; "
                f"{describe(kind)}): their losses cannot be compared; evaluate both again"
            )


def describe(kind: tuple) -> str:
    in_arm, yardstick = kind
    if not in_arm:
        return "no arm"
    if len(yardstick) == 2:
        return f"{SHARED_YARDSTICK}, {yardstick[0]} bytes in {yardstick[1]} tokens"
    return f"{yardstick[0]}, {yardstick[2]} bytes of sha256 {yardstick[1][:12]}"


def write_table(table: pl.DataFrame, stem: Path) -> None:
    with atomic_path(stem.with_suffix(".parquet")) as tmp:
        table.write_parquet(tmp)
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        table.write_csv(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.collect", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--flop-convention", required=True, choices=CONVENTIONS)
    parser.add_argument("--parameter-count", required=True, choices=PARAMETER_COUNTS)
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
    sys.exit(run_stage(main, "collect"))
