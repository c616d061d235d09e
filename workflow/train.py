"""Train stage: one run of the grid, from its settings to metrics, weights and a summary.

The loop, in order: seeded batches of windows from the train shards (random or
sequential, addressed by step so a resumed run reads exactly what it would
have), gradient accumulation up to the global batch, gradient clipping, AdamW,
and a learning-rate schedule:

- ``cosine``: linear warmup, then cosine decay to ``min_lr_ratio`` x lr;
- ``wsd`` (warmup-stable-decay, Hägele et al. 2024): linear warmup, then a
  constant rate; at each token budget of the grid a *cooldown branch* forks off
  and decays linearly to ``min_lr_ratio`` x lr over the last ``decay_fraction``
  of that budget's steps, so one run yields one (N, D) point per budget.

Each point's weights go to ``WEIGHTS_DIR/<point>.pt`` (work directory). The run
checkpoints every ``checkpoint_every`` steps and when Slurm sends SIGTERM or
SIGUSR1, then exits; started again, it resumes from the checkpoint and, on the
CPU, reproduces the uninterrupted run bit for bit.

A run with ``devices`` = k > 1 is launched through torchrun: the job's
command starts one process per device, each takes its k-th share of every
step's micro-batches (the same windows a single device would read), gradients
are averaged across processes, and rank 0 alone writes outputs. With ``nodes``
= n > 1 the job's command starts one torchrun per node through ``srun``, with
the rendezvous on the first node of the allocation: n x k processes.

The processes either each hold the whole model and its AdamW state (DDP,
``shard: none``) or 1/world of them (FSDP2's ``fully_shard``, ``shard: full``;
``auto`` picks full where ``workflow.plan`` says DDP does not fit the GPU's
memory). A sharded run checkpoints with ``torch.distributed.checkpoint``, each
process writing its own shards, so it resumes at the same step on another
number of devices, sharded or not; an unsharded run keeps one file written by
rank 0. On the CPU the gloo backend stands in for NCCL, which is how the
tests check that 2 processes, replicated or sharded, match one device up to
floating-point noise.

A loss that becomes NaN or inf, or blows up past twice that of a uniform
prediction (2 ln V), stops the run with status ``diverged``; the job still
succeeds so that the rest of the sweep goes on.

Every number is recorded in ``summary.json``: parameter counts, FLOPs under
every named convention, tokens/s and MFU, the data-wait fraction, the device,
the kernel used for each component, versions and the seed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import gc
import math
import os
import platform
import queue
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from workflow import __version__, flops, plan
from workflow.config import format_count, format_flops
from workflow.io import atomic_path, disk_full, move_aside, read_json, run_stage, write_json_atomic
from workflow.launch import LaunchError, launch_command
from workflow.model import build_model
from workflow.shards import ShardError, StepBatches, data_identity, describe_identity, load_split
from workflow.spec import RunSpec

APEX_INSTALL_HINT = (
    "NVIDIA Apex is not importable. Install it with conda-forge's 'nvidia-apex' package "
    "(envs/train.yaml, used by 'snakemake --sdm conda'), or build it from source with its CUDA "
    "extensions (--cpp_ext --cuda_ext); or set train.kernels to 'torch' or 'auto'."
)
# Dense bf16 peak FLOP/s for MFU, matched against torch.cuda.get_device_name().
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}
# Slurm's warning before a time limit or preemption (TERM, USR1), and Ctrl-C in a terminal (INT).
CHECKPOINT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class TrainError(RuntimeError):
    pass


# --------------------------------------------------------------------------- devices and kernels


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is 'cuda' but no CUDA device is visible to this job")
    return torch.device(requested)


class Distributed:
    """This process's place in a torchrun launch (world size 1 without one)."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Joins the process group; returns this rank's device."""
        if self.world == 1:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(self.backend)
        return device

    def stop(self) -> None:
        if self.backend is not None and dist.is_initialized():
            dist.destroy_process_group()

    def gather(self, value) -> list:
        """``value`` from every rank, in rank order (``[value]`` without a launch)."""
        if self.world == 1:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def apex_available() -> bool:
    try:
        import apex  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_kernels(requested: str, device: torch.device) -> str:
    """'apex' must import or the run fails; 'auto' uses apex only on CUDA where it imports."""
    if requested == "torch":
        return "torch"
    if requested == "apex":
        if not apex_available():
            raise TrainError(APEX_INSTALL_HINT)
        if device.type != "cuda":
            raise TrainError("train.kernels is 'apex' but the run is on the CPU; apex kernels need CUDA")
        return "apex"
    return "apex" if device.type == "cuda" and apex_available() else "torch"


def make_optimizer(
    model: torch.nn.Module,
    device: torch.device,
    kernels: str,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
):
    groups = model.optimizer_groups(weight_decay)
    if kernels == "apex":
        from apex.optimizers import FusedAdam

        return FusedAdam(groups, lr=lr, betas=betas, eps=eps, adam_w_mode=True), "apex.FusedAdam"
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)
    return optimizer, "torch.AdamW(fused)" if fused else "torch.AdamW"


def apex_cross_entropy():
    """apex's fused softmax cross-entropy, or None where that extension was not built."""
    try:
        from apex.contrib.xentropy import SoftmaxCrossEntropyLoss
    except ImportError:
        return None

    def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # The kernel zeroes the loss wherever the label equals padding_idx
        # (default 0, a real token id here): -1 never occurs as a label.
        losses = SoftmaxCrossEntropyLoss.apply(logits, targets, 0.0, -1, False)
        return losses.float().mean()

    return cross_entropy


def peak_flops_per_s(device: torch.device, override: float | None) -> float | None:
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_FLOPS.items():
        if all(part in name for part in key.split()):
            return value
    return None


# --------------------------------------------------------------------------- schedule


def lr_multiplier(step: int, total_steps: int, warmup_fraction: float, floor: float) -> float:
    """Cosine schedule: linear warmup, then cosine from 1 to ``floor`` (min_lr_ratio)."""
    warmup = max(1, round(warmup_fraction * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def wsd_multiplier(step: int, warmup_steps: int, cooldown: tuple[int, int] | None, floor: float) -> float:
    """Warmup-stable-decay: warmup, constant 1, and during a branch's cooldown
    (start, end) a linear decay from 1 to ``floor`` reached at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if cooldown is None or step < cooldown[0]:
        return 1.0
    start, end = cooldown
    return 1.0 - (1.0 - floor) * (step - start + 1) / max(1, end - start)


# --------------------------------------------------------------------------- data


class Prefetcher:
    """Batches for steps start..end-1, built by a background thread on CUDA.

    On CUDA the host arrays go to pinned memory and are copied without
    blocking, so the next batch is ready while the GPU works. Batches are
    addressed by step, so prefetching never changes what a step reads.
    """

    def __init__(self, batches: StepBatches, start: int, end: int, device: torch.device, rows: slice = slice(None)):
        self.batches, self.device, self.rows = batches, device, rows
        self.steps = iter(range(start, end))
        self.background = device.type == "cuda"
        if self.background:
            self.queue: queue.Queue = queue.Queue(maxsize=3)
            self.thread = threading.Thread(target=self._fill, args=(start, end), daemon=True)
            self.thread.start()

    def _fill(self, start: int, end: int) -> None:
        for step in range(start, end):
            x, y = (a[self.rows] for a in self.batches.batch(step))
            self.queue.put((torch.from_numpy(x).pin_memory(), torch.from_numpy(y).pin_memory()))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.background:
            x, y = self.queue.get()
        else:
            x, y = (torch.from_numpy(a[self.rows]) for a in self.batches.batch(next(self.steps)))
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


# --------------------------------------------------------------------------- records


def versions() -> dict:
    import sentencepiece

    return {
        "pipeline": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "polars": pl.__version__,
        "sentencepiece": sentencepiece.__version__,
        "cuda": torch.version.cuda,
        "apex": apex_available(),
    }


def cpu_name() -> str:
    """The processor's model name (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def point_id(run_id: str, tokens: int, schedule: str, compute_budget: float | None = None) -> str:
    """A WSD run's points are named after their budget (its IsoFLOP budget where it has one, else
    its tokens); a cosine run is its own point."""
    if schedule != "wsd":
        return run_id
    return f"{run_id}@C{format_flops(compute_budget)}" if compute_budget else f"{run_id}@D{format_count(tokens)}"


def first_cause(error: BaseException) -> BaseException:
    """The first rank's own exception inside torch.distributed.checkpoint's CheckpointException (whose
    text is the list of ranks), which names the file; any other exception as it is."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict) and failures:
        cause, _trace = next(iter(failures.values()))
        return cause
    return error


class StopForSignal(Exception):
    """Slurm asked the job to stop (SIGTERM or SIGUSR1), or Ctrl-C (SIGINT): checkpoint, then exit."""


# --------------------------------------------------------------------------- the run


class Trainer:
    def __init__(self, spec: RunSpec, dataset_manifest: Path, out_dir: Path, weights_dir: Path, checkpoint: Path):
        self.spec, self.out_dir, self.weights_dir, self.checkpoint_path = spec, out_dir, weights_dir, checkpoint
        self.staging_dir = checkpoint.parent / f"{checkpoint.stem}-points"
        self.run_id = spec.run_id
        self.sharded_checkpoint_path = checkpoint.with_suffix(".dcp")
        self.dist = Distributed()
        if self.dist.world != spec.execution.world_size:
            raise TrainError(
                f"run {self.run_id} asks for {spec.execution.world_size} device(s) ({spec.execution.nodes} "
                f"node(s) x {spec.execution.devices}) but runs in {self.dist.world} process(es); start it "
                f"with 'python -m workflow.train', which launches torchrun (and srun) itself"
            )
        self.device = self.dist.start(resolve_device(spec.execution.device))
        self.kernels = resolve_kernels(spec.execution.kernels, self.device)
        # A node's CPU threads (train.threads, one Slurm task per node) are shared by its processes.
        torch.set_num_threads(max(1, spec.execution.threads // spec.execution.devices))
        torch.manual_seed(spec.seed)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        manifest = read_json(dataset_manifest)
        self.data = data_identity(dataset_manifest)
        self.cfg = spec.model
        if manifest["vocab_size"] != self.cfg.vocab_size:
            raise TrainError(
                f"run {self.run_id}: model vocab_size={self.cfg.vocab_size} but the dataset's "
                f"tokenizer has {manifest['vocab_size']} ids"
            )
        self.train_tokens = manifest["splits"]["train"]["tokens"]
        budgets = sorted(spec.branch_tokens) if spec.schedule == "wsd" else [spec.tokens]
        if budgets[-1] > self.train_tokens and not spec.execution.allow_repeated_epochs:
            raise TrainError(
                f"run {self.run_id}: token budget {budgets[-1]} exceeds the {self.train_tokens} training tokens "
                f"of the dataset; set train.allow_repeated_epochs to train for more than one epoch"
            )
        optim = spec.optim
        self.batch_tokens = optim.batch_tokens
        self.micro_batch = optim.micro_batch_size
        self.accumulation = self.batch_tokens // (self.micro_batch * self.cfg.seq_len)
        if self.accumulation % self.dist.world:
            raise TrainError(
                f"run {self.run_id}: {self.accumulation} micro-batches per step (batch_tokens "
                f"{self.batch_tokens} / (micro_batch_size {self.micro_batch} x seq_len {self.cfg.seq_len})) "
                f"do not divide among {self.dist.world} devices; change train.micro_batch_size"
            )
        # This rank's share of each step: a contiguous block of its micro-batches.
        self.local_accumulation = self.accumulation // self.dist.world
        share = self.micro_batch * self.local_accumulation
        self.my_share = slice(self.dist.rank * share, (self.dist.rank + 1) * share)
        # Each point trains for the whole steps that its budget allows (at least one).
        self.point_steps = [max(1, b // self.batch_tokens) for b in budgets]
        self.total_steps = self.point_steps[-1]
        self.batches = StepBatches(
            load_split(dataset_manifest, "train"),
            self.cfg.seq_len,
            self.micro_batch * self.accumulation,
            spec.seed,
            spec.data_order,
        )

        self.model = build_model(self.cfg, kernels=self.kernels).to(self.device)
        self.counts = flops.parameter_counts(**self.cfg.to_dict())
        actual = sum(p.numel() for p in {id(p): p for p in self.model.parameters()}.values())
        assert actual == self.counts.total, f"parameter count {actual} != analytic {self.counts.total}"
        self.per_token = flops.all_conventions(**self.cfg.to_dict())
        self.sharded, self.shard_reason = self.choose_sharding()
        if self.sharded:
            # Each block is its own FSDP unit (its weights are gathered just before it runs and freed
            # after); the root holds the rest, the tied embedding and head among it. The parameters stay
            # fp32 and autocast casts them as under DDP, so both modes compute the same thing.
            for unit in self.model.shard_units():
                fully_shard(unit)
            fully_shard(self.model)
        self.optimizer, optimizer_kernel = make_optimizer(
            self.model,
            self.device,
            "torch" if self.sharded else self.kernels,  # apex's FusedAdam takes no sharded (DTensor) parameters
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            eps=optim.eps,
            weight_decay=optim.weight_decay,
        )
        xentropy = apex_cross_entropy() if self.kernels == "apex" else None
        if xentropy is not None:
            self.model.cross_entropy = xentropy
        self.kernel_record = {
            "backend": self.kernels,
            "optimizer": optimizer_kernel,
            "norm": self.model.norm_kernel,
            "cross_entropy": "apex.contrib.xentropy" if xentropy is not None else "torch.cross_entropy",
            "attention": self.model.sequence_kernel,
            "compile": bool(spec.execution.compile),
        }
        # DDP broadcasts rank 0's initial weights and averages gradients across ranks. Under
        # fully_shard each rank keeps its shard of the weights every rank built alike from the seed,
        # and gradients are reduce-scattered (averaged) instead.
        self.wrapped = (
            DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
            if self.dist.world > 1 and not self.sharded
            else self.model
        )
        self.forward = torch.compile(self.wrapped) if spec.execution.compile else self.wrapped
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        per_device_peak = peak_flops_per_s(self.device, spec.execution.peak_flops)
        self.peak = per_device_peak * self.dist.world if per_device_peak else None
        self.divergence_limit = 2.0 * math.log(self.cfg.vocab_size)
        self.warmup_steps = max(1, round(optim.warmup_fraction * self.total_steps))

        # Progress state: everything a checkpoint must restore.
        self.step = 0
        self.rows: list[dict] = []
        self.points: list[dict] = []
        self.status = "completed"
        self.elapsed = 0.0
        self.wait = 0.0
        self.processed_steps = 0  # every optimizer step, cooldown branches included
        self.pending_losses: list[float] = []
        self.resumed_from: int | None = None
        self.signal_received: int | None = None
        # Every rank stops at the step where the all-reduced signal flag says so:
        # a signal landing on one rank just after the all-reduce counts at the next step.
        self.stop_agreed = False

    def choose_sharding(self) -> tuple[bool, str]:
        """(shard?, why) from train.shard: "auto" asks the memory plan with this GPU's memory."""
        execution = self.spec.execution
        if self.dist.world == 1:
            return False, "one device"
        if execution.shard != "auto":
            return execution.shard == "full", f"train.shard {execution.shard}"
        if self.device.type != "cuda":
            return plan.shards(self.spec, None), "auto: the CPU's processes share the host's memory"
        # Every rank must decide alike: the smallest GPU of the run decides.
        memory = min(self.dist.gather(torch.cuda.get_device_properties(self.device).total_memory))
        needed = plan.memory_per_device(self.spec, sharded=False).total
        verdict = plan.shards(self.spec, memory)
        return verdict, f"auto: DDP needs {needed / plan.GIB:.1f} GiB of the GPU's {memory / plan.GIB:.0f} GiB"

    def close(self, together: bool) -> None:
        """Leave the process group. Its gloo threads free each finished collective's tensors, which takes
        the GIL; if the group's last reference went with the DDP module (its reducer holds one) at the end
        of train_run, the destructor would wait for those threads while holding the GIL: a deadlock seen
        under Slurm. So the ranks first meet at a barrier (every earlier collective is then done and freed,
        since the barrier's wait releases the GIL), then the DDP and FSDP state goes while the group
        lives, then the group."""
        if self.dist.backend is None or not dist.is_initialized():
            return
        if together:
            dist.barrier()
        self.wrapped = self.forward = self.model = self.optimizer = None
        gc.collect()
        self.dist.stop()

    # -- checkpoints

    def state(self) -> dict:
        """The run's progress; with the model and optimizer unless the run is sharded (those go to
        torch.distributed.checkpoint, beside this)."""
        weights = {} if self.sharded else {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        return {
            **weights,
            "step": self.step,
            "rows": self.rows,
            "points": self.points,
            "status": self.status,
            "elapsed": self.elapsed,
            "wait": self.wait,
            "processed_steps": self.processed_steps,
            "pending_losses": self.pending_losses,
            "torch_rng": torch.get_rng_state(),
            "world_size": self.dist.world,
            "spec": self.spec.result_dict(),
            "data": self.data,
        }

    def save_checkpoint(self) -> None:
        if not self.sharded:
            if self.dist.main:
                self.write_state(self.state(), self.checkpoint_path, "the checkpoint")
                # A sharded checkpoint of an earlier attempt (on another number of devices) is older.
                self.remove_sharded_checkpoints()
            return
        # Every rank writes its shards into a directory under a temporary name; rank 0 adds the
        # progress and renames it into place once all ranks are done, so a killed job leaves the
        # previous checkpoint intact.
        final, partial, previous = self.sharded_checkpoint_paths()
        if self.dist.main:
            shutil.rmtree(partial, ignore_errors=True)
        dist.barrier()
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        try:
            dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=partial)
        except (OSError, RuntimeError, dcp.CheckpointException) as e:  # DCP gathers every rank's failures
            raise TrainError(self.write_failure(first_cause(e), final, "the sharded checkpoint")) from None
        if self.dist.main:
            self.write_state(self.state(), partial / "progress.pt", "the checkpoint's progress")
            shutil.rmtree(previous, ignore_errors=True)
            if final.exists():
                final.rename(previous)
            partial.rename(final)
            shutil.rmtree(previous, ignore_errors=True)
            self.checkpoint_path.unlink(missing_ok=True)
        dist.barrier()

    def write_state(self, state: dict, path: Path, what: str) -> None:
        """torch.save under a temporary name, renamed into place: the previous file stays intact until
        the new one is complete. A failure (a full disk above all) ends the run with one line."""
        try:
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
        except (OSError, RuntimeError) as e:
            raise TrainError(self.write_failure(e, path, what)) from None

    def write_failure(self, error: Exception, path: Path, what: str) -> str:
        """One line for a failed write. torch.save reports a short write as an opaque RuntimeError
        ("unexpected pos"): name a full disk when the file system has less room than the last
        checkpoint took."""
        kept = self.checkpoint_path.stat().st_size if self.checkpoint_path.exists() else 0
        kept = kept or (1 if self.sharded_checkpoint_path.exists() else 0)
        free = shutil.disk_usage(path.parent if path.parent.exists() else self.checkpoint_path.parent).free
        if disk_full(error) or free <= max(kept, 1 << 20):
            cause = f"No space left on device: {free} bytes free on the filesystem of {path.parent}"
        else:
            cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        state_now = "the previous checkpoint is intact" if kept else "there is no earlier checkpoint"
        return (
            f"run {self.run_id}: writing {what} {path} at step {self.step} failed ({cause}); {state_now}. "
            f"Free space in the work directory, then rerun: the run resumes from its last checkpoint"
        )

    def sharded_checkpoint_paths(self) -> tuple[Path, Path, Path]:
        """The sharded checkpoint, the one being written (complete once it holds progress.pt, written
        last) and the one it replaces (present only between the two renames of a save)."""
        final = self.sharded_checkpoint_path
        return final, final.with_name(f".{final.name}.partial"), final.with_name(f".{final.name}.previous")

    def remove_sharded_checkpoints(self) -> None:
        for path in self.sharded_checkpoint_paths():
            shutil.rmtree(path, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint to resume from: the unsharded file or the sharded directory, whichever the
        last attempt wrote (saving one removes the other, so both exist only after a crash between).
        A job killed between the two renames of a sharded save left no checkpoint.dcp: then the
        complete new one, or else the previous one."""
        final, partial, previous = self.sharded_checkpoint_paths()
        sharded = [final] if final.exists() else [p for p in (partial, previous) if (p / "progress.pt").exists()]
        found = [p for p in (self.checkpoint_path, *sharded[:1]) if p.exists()]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    def load_checkpoint(self) -> bool:
        """Resume from the checkpoint when it was made by these settings on this data; otherwise set
        it aside (with the points it staged) and start afresh, saying why in one line. Either kind of
        checkpoint loads into either kind of run, on any number of devices."""
        # Rank 0 picks the checkpoint, and every rank reads that one: all resume, or none does.
        source = self.dist.gather(self.latest_checkpoint())[0]
        if source is None:
            return False
        sharded_source = source.is_dir()
        state, problem = None, None
        try:
            # A whole model for a sharded run stays on the CPU: set_state_dict moves each rank's shard.
            where = "cpu" if self.sharded else self.device
            progress = source / "progress.pt" if sharded_source else source
            state = torch.load(progress, map_location=where, weights_only=False)
            recorded_spec, recorded_data = state["spec"], state.get("data")
        except Exception as e:  # a truncated or foreign file: torch raises many kinds
            problem = ("damaged", f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        else:
            if recorded_data != self.data:
                problem = (
                    "other-data",
                    f"was trained on other data ({describe_identity(recorded_data)}; this run's: "
                    f"{describe_identity(self.data)})",
                )
            elif recorded_spec != self.spec.result_dict():
                problem = ("other-settings", "is from other settings")
        problem = next((p for p in self.dist.gather(problem) if p is not None), None)
        if problem is not None:
            self.set_aside(source, *problem)
            return False
        if sharded_source:
            # Reshards to this run's layout: one full copy per rank, or 1/world shards.
            model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
            try:
                dcp.load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=source)
            except (Exception, dcp.CheckpointException) as e:  # a missing or truncated shard file, on any rank
                # The load may have written into the model already: set the checkpoint aside and end
                # this attempt, so that the next one starts afresh from the seed.
                cause = first_cause(e)
                self.set_aside(source, "damaged", f"cannot be read ({type(cause).__name__}: {cause})")
                damaged = f"run {self.run_id}: its sharded checkpoint was damaged; rerun to start afresh"
                raise TrainError(damaged) from None
            set_state_dict(self.model, self.optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)
        elif self.sharded:
            # The whole model from an unsharded attempt: each rank keeps its shard of it.
            set_state_dict(
                self.model,
                self.optimizer,
                model_state_dict=state["model"],
                optim_state_dict=self.keyed_by_name(state["optimizer"]),
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())  # loaded onto the run's device, but a CPU generator's
        self.step, self.rows, self.points = state["step"], state["rows"], state["points"]
        self.status, self.elapsed, self.wait = state["status"], state["elapsed"], state["wait"]
        self.processed_steps, self.pending_losses = state["processed_steps"], state["pending_losses"]
        self.resumed_from = self.step
        if self.dist.main:
            layout = f" (sharded, written by {state['world_size']} processes)" if sharded_source else ""
            print(f"{self.run_id}: resumed from the checkpoint at step {self.step}{layout}", flush=True)
        return True

    def keyed_by_name(self, optimizer_state: dict) -> dict:
        """An optimizer state dict keyed by parameter position (torch.optim's own) re-keyed by parameter
        name, the form torch.distributed.checkpoint's set_state_dict takes. The positions follow the
        optimizer's groups, which ``optimizer_groups`` builds in the same order every time."""
        names = {id(p): name for name, p in self.model.named_parameters()}
        groups = [[names[id(p)] for p in group["params"]] for group in self.optimizer.param_groups]
        kept = optimizer_state["state"]
        state, param_groups = {}, []
        for saved, names_of_group in zip(optimizer_state["param_groups"], groups):
            state.update({name: kept[i] for i, name in zip(saved["params"], names_of_group) if i in kept})
            param_groups.append({**saved, "params": names_of_group})
        return {"state": state, "param_groups": param_groups}

    def set_aside(self, source: Path, reason: str, why: str) -> None:
        """Move the checkpoint ``source``, any other, and the staged points to ``*.REASON`` (replacing
        older ones) and say so; every rank waits until it is done."""
        if self.dist.main:
            aside = move_aside(source, reason)
            move_aside(self.checkpoint_path, reason)
            move_aside(self.sharded_checkpoint_path, reason)
            move_aside(self.staging_dir, reason)
            for leftover in self.sharded_checkpoint_paths()[1:]:
                shutil.rmtree(leftover, ignore_errors=True)
            print(
                f"{self.run_id}: checkpoint {source} {why}; set aside as {aside.name}, starting afresh",
                file=sys.stderr,
                flush=True,
            )
        self.dist.barrier()

    def _on_signal(self, signum, _frame) -> None:
        self.signal_received = signum

    # -- steps

    def diverged(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.divergence_limit

    def train_step(self, lr: float, data: Prefetcher) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # [mean loss of the step, 1 if a checkpoint signal arrived]: one
        # all-reduce and one host sync per step, not one per micro-batch.
        total = torch.zeros(2, device=self.device)
        t0 = time.perf_counter()
        x_step, y_step = data.next()
        self.wait += time.perf_counter() - t0
        micro_batches = list(zip(x_step.chunk(self.local_accumulation), y_step.chunk(self.local_accumulation)))
        for i, (x, y) in enumerate(micro_batches):
            # Under DDP, gradients are averaged across ranks on the last micro-batch only. A sharded run
            # reduce-scatters every micro-batch's: deferring it would keep every unsharded gradient on
            # each device until the last one, which is the memory sharding exists to save.
            sync = self.dist.world == 1 or self.sharded or i == len(micro_batches) - 1
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                with self.autocast:
                    _, loss = self.forward(x, y)
                (loss / self.local_accumulation).backward()
            total[0] += loss.detach() / self.accumulation
        if self.dist.world > 1:
            total[1] = float(self.signal_received is not None)
            dist.all_reduce(total)
            total, signalled = total.tolist()
            self.stop_agreed = signalled > 0
        else:
            total = total[0].item()
            self.stop_agreed = self.signal_received is not None
        if not self.diverged(total):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.optim.grad_clip)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.processed_steps += 1
        return total

    def run_steps(self, start: int, end: int, lr_of_step, rows: list[dict], branch: str | None = None) -> str:
        """Train steps start..end-1; returns 'completed' or 'diverged'.

        The main trajectory advances ``self.step``, checkpoints and honours
        Slurm's signals; a cooldown ``branch`` is short and runs to its end.
        """
        label = f"{self.run_id} {branch}" if branch else self.run_id
        data = Prefetcher(self.batches, start, end, self.device, self.my_share)
        # The main trajectory's losses since its last metrics row are part of
        # the checkpoint, so a row averaged across a resume is the same row.
        losses = self.pending_losses if branch is None else []
        bar = tqdm(total=end - start, desc=label, unit="step", disable=None if self.dist.main else True)
        clock = time.perf_counter()
        for step in range(start, end):
            lr = self.spec.optim.lr * lr_of_step(step)
            loss = self.train_step(lr, data)
            losses.append(loss)
            bar.update(1)
            diverged = self.diverged(loss)
            if (step + 1) % self.spec.execution.log_every == 0 or step == end - 1 or diverged:
                now = time.perf_counter()
                self.elapsed += now - clock
                clock = now
                rows.append(self.metrics_row(step + 1, float(np.mean(losses)), lr))
                losses.clear()
                bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", tok_s=f"{rows[-1]['tokens_per_s']:.0f}")
                if bar.disable and self.dist.main and (len(rows) % 10 == 0 or step == end - 1):
                    mfu = f", MFU {rows[-1]['mfu']:.1%}" if rows[-1]["mfu"] is not None else ""
                    print(
                        f"{label} step {step + 1}/{end} loss {rows[-1]['train_loss']:.4f} "
                        f"{rows[-1]['tokens_per_s']:.0f} tok/s{mfu}",
                        flush=True,
                    )
            if diverged:
                bar.close()
                print(
                    f"{self.run_id}: loss {loss} at step {step + 1} is not finite or above "
                    f"{self.divergence_limit:.2f}; run marked diverged",
                    file=sys.stderr,
                )
                return "diverged"
            if branch is None:
                self.step = step + 1
                if self.stop_agreed:
                    self.elapsed += time.perf_counter() - clock
                    bar.close()
                    raise StopForSignal(self.signal_received or signal.SIGTERM)
                if self.step % self.spec.execution.checkpoint_every == 0 and self.step < end:
                    self.save_checkpoint()
        bar.close()
        return "completed"

    def metrics_row(self, step: int, loss: float, lr: float) -> dict:
        tokens = step * self.batch_tokens
        processed = self.processed_steps * self.batch_tokens
        tokens_per_s = processed / self.elapsed if self.elapsed > 0 else float("nan")
        return {
            "step": step,
            "tokens": tokens,
            "train_loss": loss,
            "lr": lr,
            "elapsed_s": self.elapsed,
            "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * self.per_token["palm"] / self.peak if self.peak else None,
            "data_wait_fraction": self.wait / self.elapsed if self.elapsed > 0 else 0.0,
        }

    def save_point(self, budget: int, steps: int, rows: list[dict], status: str) -> None:
        """Weights and record of one point, named after its token budget (tokens trained differ
        by less than one batch: whole steps only)."""
        tokens = steps * self.batch_tokens
        compute_budget = self.spec.point_budget(budget)
        pid = point_id(self.run_id, budget, self.spec.schedule, compute_budget)
        # The whole model on rank 0 (a collective when sharded: every rank takes part).
        weights = (
            get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if self.sharded
            else self.model.state_dict()
        )
        # Staged beside the checkpoint (not a Snakemake output, so a rerun of
        # an interrupted job keeps the points already made).
        if self.dist.main:
            point = {
                "model_config": self.cfg.to_dict(),
                "model": weights,
                "point_id": pid,
                "status": status,
                "step": steps,
                # Evaluation checks both: the weights must come from this run on this data.
                "spec": self.spec.result_dict(),
                "data": self.data,
            }
            self.write_state(point, self.staging_dir / f"{pid}.pt", "the weights")
        self.points.append(
            {
                "point_id": pid,
                "status": status,
                "steps": steps,
                "tokens": tokens,
                "token_budget": budget,
                "compute_budget": compute_budget,
                "flops": {name: value * tokens for name, value in self.per_token.items()},
                "final_train_loss": rows[-1]["train_loss"] if rows else float("nan"),
                "weights": f"{pid}.pt",
                "cooldown_rows": rows if self.spec.schedule == "wsd" else [],
            }
        )

    def train(self) -> dict:
        previous = {s: signal.signal(s, self._on_signal) for s in CHECKPOINT_SIGNALS}
        try:
            self.load_checkpoint()
            if self.spec.schedule == "cosine":
                optim = self.spec.optim
                if self.status == "completed" and self.step < self.total_steps:
                    self.status = self.run_steps(
                        self.step,
                        self.total_steps,
                        lambda s: lr_multiplier(s, self.total_steps, optim.warmup_fraction, optim.min_lr_ratio),
                        self.rows,
                    )
                self.save_point(self.spec.tokens, self.rows[-1]["step"] if self.rows else 0, self.rows, self.status)
            else:
                self.train_wsd()
        except StopForSignal:
            self.save_checkpoint()
            name = signal.Signals(self.signal_received or signal.SIGTERM).name
            print(
                f"{self.run_id}: {name} received; checkpoint saved at step {self.step}, exiting so the "
                f"job can be requeued",
                file=sys.stderr,
                flush=True,
            )
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.write_outputs() if self.dist.main else {}

    def train_wsd(self) -> None:
        """The stable trajectory, with a cooldown branch forked at each budget."""
        floor = self.spec.optim.min_lr_ratio
        decay = self.spec.wsd_decay_fraction
        done = {p["steps"] for p in self.points}
        for budget, steps in zip(sorted(self.spec.branch_tokens), self.point_steps):
            if steps in done:
                continue
            fork = min(steps - 1, max(self.warmup_steps, round(steps * (1 - decay))))
            assert fork >= self.step or self.status != "completed", "cooldown forks must come in order"
            if self.step < fork and self.status == "completed":
                self.status = self.run_steps(
                    self.step, fork, lambda s: wsd_multiplier(s, self.warmup_steps, None, floor), self.rows
                )
                self.save_checkpoint()
            if self.status != "completed":
                break
            # The branch trains a copy; the stable run goes on from the fork.
            stable = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
            branch_rows: list[dict] = []
            status = self.run_steps(
                fork,
                steps,
                lambda s, f=fork, e=steps: wsd_multiplier(s, self.warmup_steps, (f, e), floor),
                branch_rows,
                branch=f"cooldown@{steps}",
            )
            self.save_point(budget, steps, branch_rows, status)
            self.model.load_state_dict(stable[0])
            self.optimizer.load_state_dict(stable[1])
            self.save_checkpoint()

    def write_outputs(self) -> dict:
        with atomic_path(self.weights_dir) as tmp:
            self.staging_dir.rename(tmp)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out_dir / "metrics.csv") as tmp:
            pl.DataFrame(self.rows, schema_overrides={"mfu": pl.Float64}).write_csv(tmp)
        tokens_trained = self.rows[-1]["tokens"] if self.rows else 0
        summary = {
            "run_id": self.run_id,
            "status": "diverged" if any(p["status"] == "diverged" for p in self.points) else self.status,
            "family": self.cfg.family,
            "grid": self.spec.grid,
            "compute_budget": self.spec.compute_budget,
            "schedule": self.spec.schedule,
            "model": self.cfg.to_dict(),
            "parameters": self.counts.to_dict(),
            "tokens_requested": self.spec.tokens,
            "tokens_trained": tokens_trained,
            "steps": self.rows[-1]["step"] if self.rows else 0,
            "batch_tokens": self.batch_tokens,
            "micro_batch_size": self.micro_batch,
            "gradient_accumulation": self.accumulation,
            "lr": self.spec.optim.lr,
            "flops_per_token": self.per_token,
            "flops": {name: value * tokens_trained for name, value in self.per_token.items()},
            "final_train_loss": self.rows[-1]["train_loss"] if self.rows else None,
            "points": self.points,
            "seed": self.spec.seed,
            "device": self.device.type,
            "devices": self.dist.world,
            "nodes": self.spec.execution.nodes,
            "distributed_backend": self.dist.backend,
            "sharding": "full" if self.sharded else "none",
            "sharding_reason": self.shard_reason,
            "device_name": (torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name()),
            "precision": "bf16-autocast" if self.device.type == "cuda" else "fp32",
            "kernels": self.kernels,
            "kernel_components": self.kernel_record,
            "threads": self.spec.execution.threads,
            "elapsed_s": self.elapsed,
            "tokens_per_s": self.processed_steps * self.batch_tokens / self.elapsed if self.elapsed else None,
            "peak_flops_per_s": self.peak,
            "mfu": self.rows[-1]["mfu"] if self.rows else None,
            "mfu_convention": "palm",
            "data_wait_fraction": self.wait / self.elapsed if self.elapsed else 0.0,
            "resumed_from_step": self.resumed_from,
            "dataset_train_tokens": self.train_tokens,
            "data": self.data,
            "versions": versions(),
            "spec": self.spec.result_dict(),
            "execution": dataclasses.asdict(self.spec.execution),
        }
        write_json_atomic(self.out_dir / "summary.json", summary)
        # Finished: the weights are saved per point.
        self.checkpoint_path.unlink(missing_ok=True)
        self.remove_sharded_checkpoints()
        return summary


def train_run(
    spec: RunSpec, dataset_manifest: Path, out_dir: Path, weights_dir: Path, checkpoint: Path | None = None
) -> dict:
    checkpoint = checkpoint or weights_dir.parent / "checkpoint.pt"
    trainer = Trainer(spec, dataset_manifest, out_dir, weights_dir, checkpoint)
    together = False  # whether every rank ends here at once (a signal stops all at the same step)
    try:
        summary = trainer.train()
        together = True
        return summary
    except StopForSignal:
        together = True
        raise
    finally:
        trainer.close(together)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.train", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the settings that define the run's result, as JSON")
    parser.add_argument("--execution", required=True, help="how the run is executed (device, logging, ...), as JSON")
    parser.add_argument("--dataset", required=True, type=Path, help="dataset manifest.json")
    parser.add_argument("--out-dir", required=True, type=Path, help="results/runs/<run>: metrics, summary")
    parser.add_argument("--weights", required=True, type=Path, help="directory for each point's weights (work dir)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resumable checkpoint (work dir)")
    args = parser.parse_args(argv)
    spec = RunSpec.from_json(args.spec, args.execution)
    if spec.execution.world_size > 1 and "WORLD_SIZE" not in os.environ:
        # k devices: become torchrun, which starts k copies of this command (on n nodes: become
        # srun, which starts a torchrun on each). exec keeps the job's process id, so Slurm's
        # signals reach torchrun, which passes them on to the training processes.
        try:
            command = launch_command(spec.execution, sys.argv[1:] if argv is None else argv)
        except LaunchError as e:
            print(f"error: run {spec.run_id}: {e}", file=sys.stderr)
            return 1
        sys.stdout.flush()
        os.execvp(command[0], command)
    try:
        summary = train_run(spec, args.dataset, args.out_dir, args.weights, args.checkpoint)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ShardError as e:
        print(
            f"error: run {spec.run_id}: the dataset is damaged: {e}. Rebuild it (snakemake --forcerun dataset)",
            file=sys.stderr,
        )
        return 1
    except StopForSignal as stop:  # the shell's convention: 128 + the signal's number
        return 128 + int(stop.args[0] if stop.args else signal.SIGTERM)
    except torch.cuda.OutOfMemoryError as e:
        print(
            f"error: run {spec.run_id} ran out of GPU memory ({e}). Lower train.micro_batch_size "
            f"(gradient accumulation keeps the global batch) or use a GPU with more memory.",
            file=sys.stderr,
        )
        return 1
    if not summary:  # not rank 0
        return 0
    mfu = f", MFU {summary['mfu']:.1%}" if summary["mfu"] is not None else ""
    print(
        f"{summary['run_id']}: {summary['status']}, train loss {summary['final_train_loss']:.4f}, "
        f"{summary['tokens_per_s']:.0f} tokens/s{mfu} on {summary['device']} ({summary['kernels']} kernels)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "train"))
