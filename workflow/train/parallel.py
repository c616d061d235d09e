"""Where a run's processes run and how they share the model.

A run with ``devices`` = k > 1 (times ``nodes``) is started by torchrun
(``workflow.launch``): one process per device. Each process takes its share of
every step's micro-batches, gradients are averaged across processes, and rank 0
alone writes outputs. The processes either each hold the whole model and its
AdamW state (DDP, ``shard: none``) or 1/world of them (FSDP2's ``fully_shard``,
``shard: full``; ``auto`` shards where the memory plan, ``workflow.memory``,
says DDP does not fit the GPU). On the CPU, gloo stands in for NCCL.
``docs/slurm.md`` covers multi-device and multi-node runs.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from workflow import memory
from workflow.spec import RunSpec
from workflow.train.errors import TrainError


def resolve_device(requested: str) -> torch.device:
    """``train.device``: auto (CUDA where visible), cuda (which must be visible) or cpu."""
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

    @property
    def joined(self) -> bool:
        return self.backend is not None and dist.is_initialized()

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
        if self.joined:
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

    def all_reduce(self, tensor: torch.Tensor) -> None:
        if self.world > 1:
            dist.all_reduce(tensor)


def choose_sharding(spec: RunSpec, world: Distributed, device: torch.device) -> tuple[bool, str]:
    """(shard?, why) from train.shard: "auto" asks the memory plan with this GPU's memory."""
    execution = spec.execution
    if world.world == 1:
        return False, "one device"
    if execution.shard != "auto":
        return execution.shard == "full", f"train.shard {execution.shard}"
    if device.type != "cuda":
        return memory.needs_sharding(spec, None), "auto: the CPU's processes share the host's memory"
    # Every rank must decide alike: the smallest GPU of the run decides.
    total = min(world.gather(torch.cuda.get_device_properties(device).total_memory))
    needed = memory.memory_per_device(spec, sharded=False).total
    verdict = memory.needs_sharding(spec, total)
    return verdict, f"auto: DDP needs {needed / memory.GIB:.1f} GiB of the GPU's {total / memory.GIB:.0f} GiB"


def shard(model: torch.nn.Module) -> None:
    """Each of the family's shard units (a GPT block) becomes its own FSDP unit, whose weights are
    gathered just before it runs and freed after; the root holds the rest, the tied embedding and head
    among it. The parameters stay fp32 and autocast casts them as under DDP, so both layouts compute the
    same step."""
    for unit in model.shard_units():
        fully_shard(unit)
    fully_shard(model)


def replicate(model: torch.nn.Module, world: Distributed, device: torch.device, sharded: bool) -> torch.nn.Module:
    """The module the steps call: DDP (which broadcasts rank 0's initial weights and averages gradients)
    for a replicated run on several devices, else the model itself. Under fully_shard each rank keeps
    its shard of the weights every rank built alike from the seed, and gradients are reduce-scattered."""
    if world.world > 1 and not sharded:
        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return model
