"""Which steps a run trains: each point's steps, the warmup, and where each WSD cooldown starts.

Pure arithmetic on a ``RunSpec``, shared by the trainer (``workflow.train.schedule``), which trains
these steps, and the config check (``workflow.config.check_run``), which refuses a point that would not
be trained as designed (one that ends in warmup, or a WSD branch whose cooldown the warmup shortens)
before any job runs. ``docs/stages.md`` ("The warmup") describes the rule.

Imports ``workflow.spec`` only: no torch, numpy or polars (the Snakefile imports this module through
``workflow.config``, on login nodes too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workflow.spec import RunSpec


def point_budgets(spec: RunSpec) -> tuple[int, ...]:
    """The token budgets of a run's points, ascending: a WSD run's branches, a cosine run's tokens."""
    return tuple(sorted(spec.branch_tokens)) if spec.schedule == "wsd" else (spec.tokens,)


def point_steps(spec: RunSpec) -> tuple[int, ...]:
    """The steps of each point (``point_budgets``): the whole steps its budget allows, at least one."""
    return tuple(max(1, b // spec.optim.batch_tokens) for b in point_budgets(spec))


def warmup_steps(spec: RunSpec) -> int:
    """The run's warmup: ``ceil(warmup_tokens / batch_tokens)`` steps where ``warmup_tokens`` is set,
    the same for every size and budget; else ``warmup_fraction`` of its longest point's steps."""
    if spec.warmup_tokens is not None:
        return math.ceil(spec.warmup_tokens / spec.optim.batch_tokens)
    return max(1, round(spec.optim.warmup_fraction * point_steps(spec)[-1]))


def wsd_fork(steps: int, warmup: int, decay_fraction: float) -> int:
    """The step where a WSD branch of ``steps`` steps leaves the stable trajectory: the last
    ``decay_fraction`` of its steps cool down, never before warmup ends, and at least one does."""
    return min(steps - 1, max(warmup, round(steps * (1 - decay_fraction))))


@dataclass(frozen=True)
class Point:
    """One point of a run as the trainer trains it."""

    tokens: int  # its token budget
    steps: int
    warmup: int  # the run's warmup steps
    fork: int | None  # the step its cooldown starts (a WSD branch), None for a cosine run
    designed_fork: int | None  # where the cooldown would start were warmup no constraint

    @property
    def ends_in_warmup(self) -> bool:
        """No step past the warmup: the learning rate never leaves its ramp."""
        return self.steps <= self.warmup

    @property
    def cooldown(self) -> int | None:
        return None if self.fork is None else self.steps - self.fork

    @property
    def designed_cooldown(self) -> int | None:
        return None if self.designed_fork is None else self.steps - self.designed_fork

    @property
    def cooldown_shortened(self) -> bool:
        """A WSD branch whose warmup pushes its fork past the configured share of its steps."""
        return self.fork is not None and self.fork > self.designed_fork


def run_points(spec: RunSpec) -> list[Point]:
    """Every point of the run, ascending, with its steps, warmup and cooldown."""
    warmup = warmup_steps(spec)
    points = []
    for tokens, steps in zip(point_budgets(spec), point_steps(spec)):
        wsd = spec.schedule == "wsd"
        fork = wsd_fork(steps, warmup, spec.wsd_decay_fraction) if wsd else None
        designed = wsd_fork(steps, 0, spec.wsd_decay_fraction) if wsd else None
        points.append(Point(tokens=tokens, steps=steps, warmup=warmup, fork=fork, designed_fork=designed))
    return points
