"""Which steps a run trains, and the learning-rate multiplier (of ``train.lr``) at each;
``docs/stages.md`` describes the schedules. The step arithmetic (each point's steps, the warmup, a
branch's fork) is ``workflow.steps``, which the config check shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

from workflow import steps
from workflow.spec import RunSpec


def lr_multiplier(step: int, total_steps: int, warmup: int, floor: float) -> float:
    """Cosine schedule: linear warmup over ``warmup`` steps, then cosine from 1 to ``floor`` (min_lr_ratio)."""
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
    accumulation = optim.batch_tokens // (optim.micro_batch_size * spec.model.seq_len)
    local = accumulation // world
    share = optim.micro_batch_size * local
    return StepPlan(
        budgets=steps.point_budgets(spec),
        accumulation=accumulation,
        local_accumulation=local,
        my_share=slice(rank * share, (rank + 1) * share),
        point_steps=steps.point_steps(spec),
        warmup_steps=steps.warmup_steps(spec),
    )
