"""Plan a study before submitting it: each run's memory per device, time and Slurm request, and totals.

    python -m workflow.plan [--configfile FILE ...] [--device-memory-gb 80]

reads the same config files as Snakemake (config/config.yaml, then each --configfile) and prints,
for every training run: its parameters and FLOPs, the estimated memory per device under DDP and fully
sharded and which of the two it trains in (``train.shard``, ``shards``), the estimated time from
``cluster.train_flops_per_s``, and the Slurm request that follows; then the study's
GPU-hours and work-directory disk. A run whose estimate does not fit its device (a GPU of
``--device-memory-gb``, or ``resources.train.mem_mb`` for a study on the CPU) fails the plan with a
line naming the run and what would fit.

The memory model (docs/methods.md, "Memory and time plan"), in bytes, for P parameters on k devices:

    weights 4P, gradients 4P, AdamW's two moments 8P      (fp32 master copies)
    activations  = micro_batch x seq_len x (saved elements per token) x bytes per element
                 + micro_batch x seq_len x vocab x (bytes of the logits, their float copy and
                   log-softmax, and the logits' gradient)

Under DDP every device holds all 16P; fully sharded (FSDP), each holds 16P / k plus the gathered
weights of the root unit and one block, and one unit's unsharded gradients. Saved elements per
token come from the family (``saved_activations_per_token``). No torch here: the plan runs on a login node in seconds.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from workflow.config import (
    ConfigError,
    check_config,
    config_files_in,
    load_config_files,
    train_runtime_minutes,
    train_slurm_resources,
    trained_tokens,
    training_seconds,
)
from workflow.families import get_family
from workflow.io import run_stage
from workflow.spec import RunSpec
from workflow.tune import sweep_runs

BYTES_PER_PARAMETER = {"weights": 4, "gradients": 4, "optimizer": 8}  # fp32 weights, grads, AdamW m and v
# Saved activations on a GPU run under bf16 autocast (2 bytes) and on the CPU in fp32 (4 bytes).
ACTIVATION_BYTES = {"cuda": 2, "cpu": 4}
# The logits in their own dtype, their fp32 copy for the loss, log-softmax (fp32), and their gradient.
LOGIT_BYTES = {"cuda": 2 + 4 + 4 + 4, "cpu": 4 + 4 + 4}
GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def device_kind(spec: RunSpec) -> str:
    return "cpu" if spec.execution.device == "cpu" else "cuda"


def activation_bytes(spec: RunSpec, micro_batch: int | None = None) -> float:
    """What one micro-batch's forward pass keeps for the backward pass, and the loss's logits."""
    cfg, kind = spec.model, device_kind(spec)
    rows = (micro_batch or spec.optim.micro_batch_size) * cfg.seq_len
    per_token = get_family(cfg.family).saved_activations_per_token(cfg)
    # The backward pass holds one block's activation gradients beside what is saved.
    per_token += per_token / max(1, cfg.n_layer)
    return rows * (per_token * ACTIVATION_BYTES[kind] + cfg.vocab_size * LOGIT_BYTES[kind])


def memory_per_device(spec: RunSpec, sharded: bool, devices: int | None = None, micro_batch: int | None = None):
    """The run's memory on each of its devices, under DDP or fully sharded."""
    family = get_family(spec.model.family)
    counts = family.parameter_counts(spec.model)
    k = devices or spec.execution.world_size
    states = {name: size * counts.total for name, size in BYTES_PER_PARAMETER.items()}
    if sharded:
        # Each device keeps 1/k of every state. It gathers the whole weights of one unit at a time (a
        # block), beside the root unit's (embedding, untied head, final norm), which stay gathered from
        # the forward pass to the backward; and it holds one unit's whole gradients until they are
        # reduce-scattered. A family without blocks is one unit: the whole model.
        states = {name: value / k for name, value in states.items()}
        if family.SHARDED_PER_LAYER:
            block = counts.non_embedding / max(1, spec.model.n_layer)
            root = counts.total - counts.non_embedding
            gathered, unit = root + block, max(root, block)
        else:
            gathered = unit = counts.total
        states["weights"] += BYTES_PER_PARAMETER["weights"] * gathered
        states["gradients"] += BYTES_PER_PARAMETER["gradients"] * unit
    return MemoryEstimate(**states, activations=activation_bytes(spec, micro_batch))


def shards(spec: RunSpec, limit: float | None) -> bool:
    """Whether the run trains fully sharded: train.shard "full", or "auto" where it runs on more than
    one GPU and its DDP estimate exceeds ``limit`` bytes per GPU. The trainer asks the same question
    with its GPU's memory; the plan with --device-memory-gb. On the CPU (``limit`` None) auto never
    shards: the processes share the host's memory."""
    if spec.execution.shard == "auto":
        if limit is None or spec.execution.world_size == 1:
            return False
        return memory_per_device(spec, sharded=False).total > limit
    return spec.execution.shard == "full" and spec.execution.world_size > 1


def largest_micro_batch(spec: RunSpec, limit: float, sharded: bool, devices: int) -> int | None:
    """The largest micro-batch (halving from the run's own) under ``limit`` bytes, or None."""
    micro = spec.optim.micro_batch_size
    while micro >= 1:
        if memory_per_device(spec, sharded, devices=devices, micro_batch=micro).total <= limit:
            return micro
        micro //= 2
    return None


def what_fits(spec: RunSpec, limit: float) -> str:
    """The changes that bring a run under ``limit`` bytes per device, in words: a smaller micro-batch
    (gradient accumulation keeps batch_tokens), sharding over more devices, or both."""
    options = []
    micro = largest_micro_batch(spec, limit, False, spec.execution.world_size)
    if micro is not None:
        options.append(f"micro_batch_size {micro} under DDP")
    counts = [k for k in (1, 2, 4, 8, 16, 32, 64) if k >= spec.execution.world_size]
    for k in counts:
        if memory_per_device(spec, True, devices=k).total <= limit:
            options.append(f"fully sharded over {k} devices")
            break
    if not options:
        for k in counts:
            micro = largest_micro_batch(spec, limit, True, k)
            if micro is not None:
                options.append(f"micro_batch_size {micro}, fully sharded over {k} devices")
                break
    return "; or ".join(options) if options else "no micro-batch or sharding up to 64 devices: a smaller shape"


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
        family = get_family(spec.model.family)
        counts = family.parameter_counts(spec.model)
        ddp = memory_per_device(spec, sharded=False)
        sharded = memory_per_device(spec, sharded=True)
        cpu = device_kind(spec) == "cpu"
        limit = host_memory if cpu else device_memory
        mode = "FSDP" if shards(spec, None if cpu else limit) else "DDP"
        needed = (sharded if mode == "FSDP" else ddp).total
        if needed > limit:
            where = f"resources.train.mem_mb = {limit / 2**20:.0f} MB" if cpu else f"{limit / GIB:.0f} GiB per GPU"
            over = f"{spec.execution.world_size} devices" if mode == "FSDP" else "DDP"
            errors.append(
                f"run {run_id} needs {needed / GIB:.1f} GiB per device under {over}, more than {where}; "
                f"it would fit with {what_fits(spec, limit)}"
            )
        tokens = trained_tokens(spec)
        flops = family.flops_per_token("palm", spec.model) * tokens
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
