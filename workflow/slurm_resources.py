"""What a training run asks Slurm for: its tokens, its estimated time and the executor's resources.

The train rule's ``runtime`` and GPU/node resources (rules/common.smk) and the plan
(``workflow.plan``) read these; the estimate is the run's PaLM FLOPs over
``cluster.train_flops_per_s`` per device, times ``cluster.runtime_factor``.

Imports ``workflow.spec`` and ``workflow.families`` only: no torch, numpy or polars
(the Snakefile evaluates these for every job).
"""

from __future__ import annotations

import math

from workflow.families import flops_per_token
from workflow.spec import Execution, RunSpec


def trained_tokens(spec: RunSpec) -> float:
    """Tokens a run trains: its budget, plus under WSD every cooldown branch but the last (extra work)."""
    tokens = spec.tokens
    if spec.schedule == "wsd":
        tokens += sum(b * spec.wsd_decay_fraction for b in spec.branch_tokens[:-1])
    return tokens


def training_seconds(spec: RunSpec, cluster: dict) -> float:
    """A run's estimated training time: its PaLM FLOPs over cluster.train_flops_per_s per device."""
    per_token = flops_per_token("palm", spec.model)
    return per_token * trained_tokens(spec) / (cluster["train_flops_per_s"] * spec.execution.world_size)


def train_runtime_minutes(spec: RunSpec, cluster: dict, attempt: int = 1) -> int:
    """Slurm time limit for a run: its training FLOPs over an assumed throughput,
    times a safety factor, times the attempt (a retry after a time limit resumes
    from its checkpoint with more time), at least ``min_runtime_minutes``."""
    seconds = training_seconds(spec, cluster) * cluster["runtime_factor"] * attempt
    return max(cluster["min_runtime_minutes"], math.ceil(seconds / 60))


def slurm_time(minutes: int) -> str:
    """A time limit as sbatch reads it: 1:26:00 for 86 minutes, 1-02:00:00 for 26 hours (Slurm's
    bare number is minutes, which a reader takes for anything)."""
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60}:{rest % 60:02d}:00"
    return f"{days}-{text:0>8}" if days else text


def train_slurm_resources(execution: Execution) -> dict[str, int | str | None]:
    """The Slurm executor plugin's resources for a run's training job; None leaves a key out, so a
    one-node run asks for what it always did. One node: `gpu` GPUs (none on the CPU). n > 1 nodes: n
    nodes and n tasks, one per node (the trainer calls srun, one torchrun each), `gres` for the GPUs
    of each node (the plugin's `gpu` counts the job's), `tasks_per_gpu` 0 so that the plugin does not
    turn `tasks` into --ntasks-per-gpu, and `mpi`, which tells it that the job's command starts its
    own tasks."""
    gpus = 0 if execution.device == "cpu" else execution.devices
    if execution.nodes == 1:
        return {"gpu": gpus, "nodes": None, "tasks": None, "mpi": None, "gres": None, "tasks_per_gpu": None}
    per_node = f"gpu:{gpus}" if gpus else None
    return {
        "gpu": None,
        "nodes": execution.nodes,
        "tasks": execution.nodes,
        "mpi": "srun",
        "gres": per_node,
        "tasks_per_gpu": 0 if per_node else None,
    }
