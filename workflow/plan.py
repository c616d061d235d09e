"""Plan a study before submitting it: each run's size, tokens, epochs, memory per device, time and
Slurm request, and totals.

    python -m workflow.plan [--configfile FILE ...] [--device-memory-gb 80] [--corpus-tokens N]
                            [--throughput FILE]

reads the same config files as Snakemake (config/config.yaml, then each --configfile) and prints a
header naming the conventions and sources of every estimate, then one row per training run, ordered
by IsoFLOP budget, then size: its budget, N and FLOPs under the fit's own conventions
(``fit.parameter_count``, ``fit.flop_convention``), its tokens, tokens per parameter and epochs over
the corpus, the estimated memory per device under DDP and fully sharded and which of the two it
trains in (``train.shard``, ``workflow.memory.needs_sharding``), its throughput and time, and the
Slurm request the train rule makes; then whether each IsoFLOP budget's sizes bracket a published
compute-optimal N, and the study's totals. A run whose estimate does not fit its device (a GPU of
``--device-memory-gb``, or ``resources.train.mem_mb`` for a study on the CPU) fails the plan with a
line naming the run and what would fit; a run repeating the corpus more than
``train.max_epochs_warning`` times is warned about.

The memory model is ``workflow.memory`` (docs/memory.md); the time and the Slurm request are
``workflow.slurm_resources``'s, as the train rule asks for them; the corpus size and a measured
throughput table are ``workflow.plan_inputs``'s. This module holds the CLI, the rows and their
rendering. No torch here: the plan runs on a login node in seconds.
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import sys
import textwrap
from pathlib import Path

from workflow.cli_args import CommandLineError, snakemake_config_args
from workflow.config import ConfigError, check_config, load_command_line
from workflow.design.checks import DEFAULT_LAW_NAME, bracket_lines, design_points, far_lines, format_size
from workflow.design.cli import DesignError
from workflow.design.cli import add_arguments as add_design_arguments
from workflow.families import flops_per_token, parameter_count, parameter_counts
from workflow.files import run_stage
from workflow.memory import GIB, device_kind, memory_per_device, needs_sharding, what_fits
from workflow.names import format_flops
from workflow.plan_inputs import (
    MIN_DEVICE_MEMORY_GIB,
    CorpusSize,
    Throughput,
    cluster_throughput,
    corpus_size,
    measured_throughput,
)
from workflow.slurm_resources import slurm_time, train_runtime_minutes, train_slurm_resources, trained_tokens
from workflow.spec import RunSpec
from workflow.tune import sweep_runs

# What each parameter count is, for the header.
COUNT_MEANING = {
    "non_embedding": "non-embedding parameters",
    "with_head": "non-embedding parameters plus the output head",
    "total": "every parameter",
}


def slurm_request(spec: RunSpec, cluster: dict, mem_mb: int) -> str:
    """The sbatch options the Slurm profile gives a run's job, from the resources the train rule asks
    for (``train_slurm_resources``) as the executor plugin turns them into flags; memory and CPUs are
    per node and per task. The time limit is written as sbatch reads it ([D-]H:MM:SS), so that it
    carries its unit."""
    resources = train_slurm_resources(spec.execution)
    flags = {"nodes": "--nodes={}", "tasks": "--ntasks={}", "gpu": "--gpus={}", "gres": "--gres={}"}
    where = " ".join(flag.format(resources[key]) for key, flag in flags.items() if resources[key] is not None)
    return (
        f"--time={slurm_time(train_runtime_minutes(spec, cluster))} {where} "
        f"--cpus-per-task={spec.execution.threads} --mem={mem_mb}M"
    )


def run_budgets(spec: RunSpec) -> list[float]:
    """The IsoFLOP budgets a run's points belong to (a WSD run's branches may have several)."""
    if spec.compute_budget is not None:
        return [spec.compute_budget]
    return sorted(b for b in spec.branch_compute_budgets if b is not None)


def row_order(row: dict) -> tuple:
    """IsoFLOP runs first, by budget (their largest, for a WSD run), then size; then the token grid and
    last the tuning sweep, each by size, then tokens. The run id breaks ties."""
    budgets = row["budgets"]
    if budgets:
        return (0, max(budgets), row["n"], row["tokens"], row["run_id"])
    return (1 if row["grid"] != "tune" else 2, 0.0, row["n"], row["tokens"], row["run_id"])


def plan_rows(
    config: dict,
    runs: dict[str, RunSpec],
    device_memory: float,
    corpus: CorpusSize | None = None,
    throughput: Throughput | None = None,
) -> tuple[list[dict], list[str], list[str]]:
    """One row per run in plan order, the errors of the runs that do not fit, and warnings."""
    rows, errors, warnings = [], [], []
    cluster, fit = config["cluster"], config["fit"]
    throughput = throughput or cluster_throughput(cluster)
    host_memory = config["resources"]["train"]["mem_mb"] * 2**20
    max_epochs = config["train"]["max_epochs_warning"]
    for run_id, spec in runs.items():
        counts = parameter_counts(spec.model)
        n = parameter_count(counts, fit["parameter_count"])
        ddp = memory_per_device(spec, sharded=False)
        sharded = memory_per_device(spec, sharded=True)
        cpu = device_kind(spec) == "cpu"
        limit = host_memory if cpu else device_memory
        mode = "FSDP" if needs_sharding(spec, None if cpu else limit) else "DDP"
        needed = (sharded if mode == "FSDP" else ddp).total
        if needed > limit:
            where = f"resources.train.mem_mb = {limit / 2**20:.0f} MB" if cpu else f"{limit / GIB:g} GiB per GPU"
            over = f"{spec.execution.world_size} devices" if mode == "FSDP" else "DDP"
            errors.append(
                f"run {run_id} needs {needed / GIB:.1f} GiB per device under {over}, more than {where}; "
                f"it would fit with {what_fits(spec, limit)}"
            )
        tokens = trained_tokens(spec)
        per_device = throughput.tokens_per_second(spec.model, n)
        seconds = tokens / (per_device * spec.execution.world_size)
        limit_minutes = train_runtime_minutes(spec, cluster)
        if throughput.measured and seconds > limit_minutes * 60:
            # The Slurm limit comes from cluster.train_flops_per_s (the train rule's); a measured
            # throughput below it means the first attempt hits the limit and only a retry finishes.
            warnings.append(
                f"run {run_id} takes {hours_text(seconds)} at the measured throughput, more than its "
                f"Slurm limit of {slurm_time(limit_minutes)} from cluster.train_flops_per_s; lower "
                f"cluster.train_flops_per_s or raise cluster.runtime_factor"
            )
        epochs = spec.tokens / corpus.tokens if corpus and corpus.tokens else None
        if epochs is not None and epochs > max_epochs:
            warnings.append(
                f"run {run_id} repeats the corpus {epochs:.3g} times ({format_size(spec.tokens)} tokens of "
                f"{corpus.label}), more than train.max_epochs_warning = {max_epochs:g}"
            )
        if epochs is not None and epochs > 1 and not spec.execution.allow_repeated_epochs:
            warnings.append(
                f"run {run_id} trains {epochs:.3g} epochs of the corpus but train.allow_repeated_epochs is "
                f"false: the trainer will refuse it"
            )
        rows.append(
            {
                "run_id": run_id,
                "grid": spec.grid,
                "budgets": run_budgets(spec),
                "n": n,
                "params_total": counts.total,
                "tokens": spec.tokens,
                "tokens_per_parameter": spec.tokens / n,
                "epochs": epochs,
                "flops": flops_per_token(fit["flop_convention"], spec.model) * tokens,
                "flops_palm": flops_per_token("palm", spec.model) * tokens,
                "memory_ddp_gib": ddp.total / GIB,
                "weights_gib": ddp.weights / GIB,
                "gradients_gib": ddp.gradients / GIB,
                "optimizer_gib": ddp.optimizer / GIB,
                "activations_gib": ddp.activations / GIB,
                "memory_sharded_gib": sharded.total / GIB,
                "mode": mode,
                "tokens_per_s": per_device * spec.execution.world_size,
                "hours": seconds / 3600,
                "device_hours": seconds * spec.execution.world_size / 3600,
                "slurm_minutes": limit_minutes,
                "slurm": slurm_request(spec, cluster, config["resources"]["train"]["mem_mb"]),
                # A checkpoint (weights and AdamW state) and each point's weights.
                "disk_bytes": 12 * counts.total + 4 * counts.total * len(spec.branch_tokens),
            }
        )
    rows.sort(key=row_order)
    order = {row["run_id"]: i for i, row in enumerate(rows)}
    # Warnings in the table's order, each run's together.
    warnings.sort(key=lambda line: order.get(line.split()[1], len(order)))
    return rows, errors, warnings


def hours_text(seconds: float) -> str:
    """0:07 for seven minutes, 11:29 for eleven and a half hours (h:mm, rounded to the minute)."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def ratio_text(value: float | None) -> str:
    """Tokens per parameter and epochs: 0.0348, 19.3, 606, 1820 (three digits, no exponent)."""
    if value is None:
        return "?"
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def budget_text(budgets: list[float]) -> str:
    if not budgets:
        return "-"
    if len(budgets) == 1:
        return format_flops(budgets[0])
    return f"{format_flops(budgets[0])}..{format_flops(budgets[-1])}"


def budget_sizes(rows: list[dict]) -> dict[float, list[float]]:
    """Each IsoFLOP budget's sizes (N), for the bracket lines."""
    sizes: dict[float, list[float]] = {}
    for row in rows:
        for budget in row["budgets"]:
            sizes.setdefault(budget, []).append(row["n"])
    return sizes


def check_lines(rows: list[dict], runs: dict[str, RunSpec], fit: dict, assumed=None) -> list[str]:
    """The design against a compute-optimal allocation (``workflow.design.checks``): whether each IsoFLOP
    budget's sizes bracket its N_opt, and the points far outside the optimal region; the assumed law's
    (--assume) when given, else the published refit's."""
    law, name = (None, DEFAULT_LAW_NAME) if assumed is None else (assumed.law, f"the assumed law ({assumed.source})")
    return [*bracket_lines(budget_sizes(rows), law, name), *far_lines(design_points(runs, fit), law)]


def header_lines(config: dict, files: list[Path], corpus: CorpusSize, throughput: Throughput, runs: int) -> list[str]:
    fit = config["fit"]
    count, convention = fit["parameter_count"], fit["flop_convention"]
    lines = [
        f"plan of {runs} training runs from {', '.join(str(f) for f in files)}",
        f"N: fit.parameter_count = {count} ({COUNT_MEANING[count]}); FLOPs: fit.flop_convention = "
        f"{convention}, C = 6 N D on the fit's axis; memory and disk count every parameter",
        f"corpus: {corpus.describe()}",
        f"time: {throughput.describe()}",
        f"slurm: the train rule's time limit, PaLM FLOPs at cluster.train_flops_per_s x cluster.runtime_factor "
        f"= {config['cluster']['runtime_factor']:g}, at least cluster.min_runtime_minutes = "
        f"{config['cluster']['min_runtime_minutes']} min; h:mm is the estimate itself",
    ]
    # Sentences of a screen's width, continued under their label.
    return [textwrap.fill(line, 110, subsequent_indent="    ", break_on_hyphens=False) for line in lines] + [""]


def render(rows: list[dict], fit: dict, checks: list[str]) -> str:
    flops = f"{fit['flop_convention']} FLOPs"
    width = max([34, *(len(r["run_id"]) for r in rows)])
    header = (
        f"{'run':<{width}} {'budget':>10} {'N':>6} {'tokens':>6} {'D/N':>6} {'epochs':>6} {flops:>11} "
        f"{'DDP GiB':>8} {'(act.)':>7} {'FSDP GiB':>8} {'mode':>4} {'tok/s':>7} {'h:mm':>6}  slurm"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['run_id']:<{width}} {budget_text(r['budgets']):>10} {format_size(r['n']):>6} "
            f"{format_size(r['tokens']):>6} {ratio_text(r['tokens_per_parameter']):>6} "
            f"{ratio_text(r['epochs']):>6} {r['flops']:>11.3g} "
            f"{r['memory_ddp_gib']:>8.2f} {r['activations_gib']:>7.2f} {r['memory_sharded_gib']:>8.2f} "
            f"{r['mode']:>4} {format_size(r['tokens_per_s']):>7} {hours_text(r['hours'] * 3600):>6}  {r['slurm']}"
        )
    lines += ["", *checks]
    device_hours = sum(r["device_hours"] for r in rows)
    disk = sum(r["disk_bytes"] for r in rows)
    lines.append(
        f"total: {len(rows)} runs, {sum(r['flops'] for r in rows):.3g} FLOPs ({fit['flop_convention']}; "
        f"{sum(r['flops_palm'] for r in rows):.3g} PaLM), {hours_text(device_hours * 3600)} device-hours (h:mm), "
        f"{disk / GIB:.3g} GiB of checkpoints and weights in work_dir"
    )
    return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the argument (exit status 2, as argparse's)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def device_memory_gib(text: str) -> float:
    """--device-memory-gb: a GPU's memory in GiB, refused when it is not one (0, negative, a few MiB)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB") from None
    if not math.isfinite(value) or value < MIN_DEVICE_MEMORY_GIB:
        raise argparse.ArgumentTypeError(
            f"{text} GiB is not a GPU's memory; give it in GiB, at least {MIN_DEVICE_MEMORY_GIB:g} (e.g. 80)"
        )
    return value


def positive_count(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of tokens (at least 1)")
    return value


# Snakemake's config flags, read by workflow.cli_args exactly as Snakemake reads them.
SNAKEMAKE_CONFIG_FLAGS = ("--configfile", "--configfiles", "--config", "-C", "--replace-workflow-config")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The plan's own flags, and Snakemake's config arguments (--configfile, --config), passed on as given
    so that they are read as Snakemake reads them (``workflow.cli_args``, as the config check reads them);
    any other flag is refused in one line naming it: a flag the plan ignored once planned for the wrong GPU."""
    parser = Parser(
        prog="python -m workflow.plan",
        description=__doc__.splitlines()[0],
        allow_abbrev=False,
        epilog="Config as Snakemake takes it: --configfile FILE [FILE ...] once (after config/config.yaml, "
        "later files winning key by key) and --config KEY=VALUE.",
    )
    parser.add_argument(
        "--device-memory-gb",
        type=device_memory_gib,
        default=80.0,
        help=f"memory of one GPU in GiB (default 80, at least {MIN_DEVICE_MEMORY_GIB:g})",
    )
    parser.add_argument(
        "--corpus-tokens",
        type=positive_count,
        help="training tokens of the corpus, for the epochs column, when neither the dataset manifest in "
        "work_dir nor the lock file's sizes give them (e.g. 5.5e8)",
    )
    parser.add_argument(
        "--throughput",
        type=Path,
        metavar="FILE",
        help="measured throughput: a CSV with columns params (N as fit.parameter_count counts it) and "
        "tokens_per_s (per device); sizes between rows are interpolated on log scales, sizes beyond take "
        "the nearest row. Default: cluster.train_flops_per_s, assumed",
    )
    add_design_arguments(parser)
    args, extra = parser.parse_known_args(argv)
    for arg in extra:
        name = arg.split("=", 1)[0]
        if arg.startswith("-") and not taking_number(arg) and name not in SNAKEMAKE_CONFIG_FLAGS:
            known = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(name, [*known, *SNAKEMAKE_CONFIG_FLAGS], n=1)
            parser.error(f"unknown flag {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    return args, extra


def taking_number(arg: str) -> bool:
    """A negative number is a value, not a flag (as argparse reads it)."""
    try:
        float(arg)
        return True
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    args, snakemake_args = parse_args(argv)
    try:
        # One reading of the command line for the plan, the config check and Snakemake (workflow.cli_args).
        files = snakemake_config_args(snakemake_args, only_config=True).config_files()
        config_warnings: list[str] = []
        config = load_command_line(snakemake_args, only_config=True, warnings=config_warnings)
        runs = check_config(config)
        runs |= sweep_runs(config, runs)
        corpus = corpus_size(config, args.corpus_tokens)
        throughput = (
            measured_throughput(args.throughput, config["fit"]["parameter_count"])
            if args.throughput
            else cluster_throughput(config["cluster"])
        )
        setup = None
        if args.assume or args.simulate or args.propose:
            from workflow.design.cli import prepare  # scipy and the fitter: only with the design flags

            setup = prepare(args, config)
    except (ConfigError, CommandLineError, DesignError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for warning in config_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rows, errors, warnings = plan_rows(config, runs, args.device_memory_gb * GIB, corpus, throughput)
    checks = check_lines(rows, runs, config["fit"], setup.assumed if setup else None)
    text = "\n".join([*header_lines(config, files, corpus, throughput, len(rows)), render(rows, config["fit"], checks)])
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # `python -m workflow.plan | head`: the reader has what it wanted; no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors or not (args.simulate or args.propose):
        return 1 if errors else 0
    from workflow.design.cli import run

    def cost(config: dict, runs: dict) -> float:
        """The plan's device-hours of a design (its tuning sweep included); infinite when a run does not fit."""
        rows, errors, _ = plan_rows(
            config, runs | sweep_runs(config, runs), args.device_memory_gb * GIB, corpus, throughput
        )
        return math.inf if errors else sum(r["device_hours"] for r in rows)

    return run(args, config, setup, sum(r["device_hours"] for r in rows), cost)


if __name__ == "__main__":
    sys.exit(run_stage(main, "plan"))
