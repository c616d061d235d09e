"""Which steps a run trains, and the learning-rate multiplier (of ``train.lr``) at each;
``docs/stages.md`` describes the schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass

from workflow.spec import RunSpec


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


def wsd_fork(steps: int, warmup_steps: int, decay_fraction: float) -> int:
    """The step where a WSD branch of ``steps`` steps leaves the stable trajectory: the last
    ``decay_fraction`` of its steps cool down, never before warmup ends, and at least one does."""
    return min(steps - 1, max(warmup_steps, round(steps * (1 - decay_fraction))))


@dataclass(frozen=True)
class StepPlan:
    """Which steps a run trains: the micro-batches of a step, this rank's share of them, and the steps
    of each point (the whole steps its budget allows, at least one)."""

    budgets: tuple[int, ...]  # token budgets, ascending (one for a cosine run)
    accumulation: int  # micro-batches per step, over every rank
    local_accumulation: int  # this rank's
    my_share: slice  # this rank's rows of a step's batch: a contiguous block of micro-batches
    point_steps: tuple[int, ...]
    warmup_steps: int

    @property
    def total_steps(self) -> int:
        return self.point_steps[-1]


def plan_steps(spec: RunSpec, world: int, rank: int) -> StepPlan:
    """The step plan of rank ``rank`` of ``world``; ``accumulation % world`` must be checked by the caller."""
    optim = spec.optim
    budgets = tuple(sorted(spec.branch_tokens)) if spec.schedule == "wsd" else (spec.tokens,)
    accumulation = optim.batch_tokens // (optim.micro_batch_size * spec.model.seq_len)
    local = accumulation // world
    share = optim.micro_batch_size * local
    point_steps = tuple(max(1, b // optim.batch_tokens) for b in budgets)
    return StepPlan(
        budgets=budgets,
        accumulation=accumulation,
        local_accumulation=local,
        my_share=slice(rank * share, (rank + 1) * share),
        point_steps=point_steps,
        warmup_steps=max(1, round(optim.warmup_fraction * point_steps[-1])),
    )
