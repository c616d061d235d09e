"""The memory model: what a run holds on each of its devices, and whether it trains fully sharded.

The model (docs/memory.md), in bytes, for P parameters on k devices:

    weights 4P, gradients 4P, AdamW's two moments 8P      (fp32 master copies)
    activations  = micro_batch x seq_len x (saved elements per token) x bytes per element
                 + micro_batch x seq_len x vocab x (bytes of the logits, their float copy and
                   log-softmax, and the logits' gradient)

Under DDP every device holds all 16P; fully sharded (FSDP), each holds 16P / k plus the gathered
weights of the root unit and one block, and one unit's unsharded gradients. Saved elements per
token come from the family (``saved_activations_per_token``).

The plan (``workflow.plan``) prints these before a study is submitted; the trainer asks
``needs_sharding`` with its GPU's memory. Imports ``workflow.spec`` and ``workflow.families`` only:
no torch, and not the config loader, so it runs on a login node in seconds and the trainer can
import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflow.families import get_family
from workflow.spec import RunSpec

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


def memory_per_device(
    spec: RunSpec, sharded: bool, devices: int | None = None, micro_batch: int | None = None
) -> MemoryEstimate:
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


def needs_sharding(spec: RunSpec, limit: float | None) -> bool:
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
