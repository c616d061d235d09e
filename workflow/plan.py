"""Plan a study before submitting it: each run's memory per device, time and Slurm request, and totals.

    python -m workflow.plan [--configfile FILE ...] [--device-memory-gb 80]

reads the same config files as Snakemake (config/config.yaml, then each --configfile) and prints,
for every training run: its parameters and FLOPs, the estimated memory per device under DDP and fully
sharded and which of the two it trains in (``train.shard``, ``workflow.memory.needs_sharding``), the
estimated time from ``cluster.train_flops_per_s``, and the Slurm request that follows; then the
study's GPU-hours and work-directory disk. A run whose estimate does not fit its device (a GPU of
``--device-memory-gb``, or ``resources.train.mem_mb`` for a study on the CPU) fails the plan with a
line naming the run and what would fit.

The memory model is ``workflow.memory`` (docs/memory.md); the time and
the Slurm request are ``workflow.slurm_resources``'s, as the train rule asks for them. This module
holds the CLI, the rows and their rendering. No torch here: the plan runs on a login node in seconds.
"""

from __future__ import annotations

import argparse
import sys

from workflow.config import ConfigError, check_config, config_files_in, load_config_files
from workflow.families import flops_per_token, parameter_counts
from workflow.files import run_stage
from workflow.memory import GIB, device_kind, memory_per_device, needs_sharding, what_fits
from workflow.slurm_resources import train_runtime_minutes, train_slurm_resources, trained_tokens, training_seconds
from workflow.spec import RunSpec
from workflow.tune import sweep_runs


def slurm_request(spec: RunSpec, cluster: dict, mem_mb: int) -> str:
    """The sbatch options the Slurm profile gives a run's job, from the resources the train rule asks
    for (``train_slurm_resources``) as the executor plugin turns them into flags; memory and CPUs are
    per node and per task."""
    resources = train_slurm_resources(spec.execution)
    flags = {"nodes": "--nodes={}", "tasks": "--ntasks={}", "gpu": "--gpus={}", "gres": "--gres={}"}
    where = " ".join(flag.format(resources[key]) for key, flag in flags.items() if resources[key] is not None)
    return (
        f"--time={train_runtime_minutes(spec, cluster)} {where} --cpus-per-task={spec.execution.threads} "
        f"--mem={mem_mb}M"
    )


def plan_rows(config: dict, runs: dict[str, RunSpec], device_memory: float) -> tuple[list[dict], list[str]]:
    """One row per run, and the errors of the runs that do not fit."""
    rows, errors = [], []
    cluster = config["cluster"]
    host_memory = config["resources"]["train"]["mem_mb"] * 2**20
    for run_id, spec in sorted(runs.items()):
        counts = parameter_counts(spec.model)
        ddp = memory_per_device(spec, sharded=False)
        sharded = memory_per_device(spec, sharded=True)
        cpu = device_kind(spec) == "cpu"
        limit = host_memory if cpu else device_memory
        mode = "FSDP" if needs_sharding(spec, None if cpu else limit) else "DDP"
        needed = (sharded if mode == "FSDP" else ddp).total
        if needed > limit:
            where = f"resources.train.mem_mb = {limit / 2**20:.0f} MB" if cpu else f"{limit / GIB:.0f} GiB per GPU"
            over = f"{spec.execution.world_size} devices" if mode == "FSDP" else "DDP"
            errors.append(
                f"run {run_id} needs {needed / GIB:.1f} GiB per device under {over}, more than {where}; "
                f"it would fit with {what_fits(spec, limit)}"
            )
        tokens = trained_tokens(spec)
        flops = flops_per_token("palm", spec.model) * tokens
        seconds = training_seconds(spec, cluster)
        rows.append(
            {
                "run_id": run_id,
                "params": counts.total,
                "tokens": tokens,
                "flops_palm": flops,
                "memory_ddp_gib": ddp.total / GIB,
                "weights_gib": ddp.weights / GIB,
                "gradients_gib": ddp.gradients / GIB,
                "optimizer_gib": ddp.optimizer / GIB,
                "activations_gib": ddp.activations / GIB,
                "memory_sharded_gib": sharded.total / GIB,
                "mode": mode,
                "hours": seconds / 3600,
                "device_hours": seconds * spec.execution.world_size / 3600,
                "slurm": slurm_request(spec, cluster, config["resources"]["train"]["mem_mb"]),
                # A checkpoint (weights and AdamW state) and each point's weights.
                "disk_bytes": 12 * counts.total + 4 * counts.total * len(spec.branch_tokens),
            }
        )
    return rows, errors


def render(rows: list[dict]) -> str:
    header = (
        f"{'run':<34} {'params':>9} {'PaLM FLOPs':>10} {'DDP GiB':>8} {'(act.)':>7} {'FSDP GiB':>8} {'mode':>4} "
        f"{'hours':>7}  slurm"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['run_id']:<34} {r['params']:>9.3g} {r['flops_palm']:>10.3g} {r['memory_ddp_gib']:>8.2f} "
            f"{r['activations_gib']:>7.2f} {r['memory_sharded_gib']:>8.2f} {r['mode']:>4} {r['hours']:>7.3g}  "
            f"{r['slurm']}"
        )
    device_hours = sum(r["device_hours"] for r in rows)
    disk = sum(r["disk_bytes"] for r in rows)
    flops = sum(r["flops_palm"] for r in rows)
    lines.append(
        f"total: {len(rows)} runs, {flops:.3g} PaLM FLOPs, {device_hours:.3g} device-hours at "
        f"cluster.train_flops_per_s, {disk / GIB:.3g} GiB of checkpoints and weights in work_dir"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--device-memory-gb", type=float, default=80.0, help="memory of one GPU in GiB (default 80)")
    args, snakemake_args = parser.parse_known_args(argv)
    try:
        config = load_config_files(config_files_in(snakemake_args))
        runs = check_config(config)
        runs |= sweep_runs(config, runs)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rows, errors = plan_rows(config, runs, args.device_memory_gb * GIB)
    print(render(rows))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "plan"))
