"""The plan's checks of a design against a compute-optimal allocation, before submission: whether each
IsoFLOP budget's sizes bracket the optimal N, and which points lie far outside the compute-optimal region.

The allocation is the assumed law's (``--assume``) when one is given, else Besiroglu et al. 2024's refit
of Hoffmann et al. 2022 (what the plan has always drawn its bracket lines from), at its own optimum:
Hoffmann et al.'s eq. 4 on C = 6 N D, with C each point's compute on the study's axis. A point is *far*
when its tokens per parameter are more than ``FAR`` times above or below the optimum's at its compute: at
30 times off, a point's loss exceeds the optimum's by more than the loss a 3-fold error in N costs, and a
fit of the law leans on the region the study is meant to predict least (docs/methods.md, "Designing a
study"). The chance of identifying E, the third check, needs the simulation and is printed with it
(``workflow.design.cli``).

Imports no heavy package at the top: the plan runs these on its normal path; the allocation's numpy is
imported when a line is computed.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from workflow import families, steps
from workflow.names import format_flops
from workflow.spec import RunSpec

FAR = 30.0  # tokens per parameter this many times off the optimum's: a point far from the optimal region
DEFAULT_LAW_NAME = (
    "Besiroglu et al. 2024's refit of Hoffmann et al. 2022 (Approach 3, eq. 4 on C = 6 N D; its N "
    "counts every parameter, so the comparison is approximate)"
)


@dataclass(frozen=True)
class Point:
    """One point of the design as the fit will see it: N, D, compute and IsoFLOP budget."""

    run_id: str
    grid: str
    n: float
    tokens: float
    flops: float
    budget: float | None


def design_points(runs: dict[str, RunSpec], fit: dict) -> list[Point]:
    """Every point of every run (a WSD run's branches each), N under ``fit.parameter_count`` and C under
    ``fit.flop_convention``, as ``workflow.simulate.design_of_config`` counts them."""
    points = []
    for spec in runs.values():
        n = families.parameter_count(families.parameter_counts(spec.model), fit["parameter_count"])
        per_token = families.flops_per_token(fit["flop_convention"], spec.model)
        for budget, point_steps in zip(steps.point_budgets(spec), steps.point_steps(spec)):
            tokens = point_steps * spec.optim.batch_tokens
            points.append(Point(spec.run_id, spec.grid, n, tokens, per_token * tokens, spec.point_budget(budget)))
    return points


def allocation_of(law: dict | None) -> tuple[str, dict]:
    """The eq.-4 allocation (N_opt = k_n C^a on C = 6 N D) of ``law``, or of the published refit."""
    from workflow.fit.approach3 import eq4_allocation
    from workflow.fit.references import EPOCH_REFIT

    law = EPOCH_REFIT if law is None else law
    return eq4_allocation(law["alpha"], law["beta"], law["A"], law["B"])


def optimum(allocation: dict, flops: float) -> tuple[float, float]:
    """N_opt and tokens per parameter of the allocation at ``flops``."""
    n_opt = allocation["k_n"] * flops ** allocation["a"]
    d_opt = allocation["k_d"] * flops ** allocation["b"]
    return n_opt, d_opt / n_opt


def format_size(n: float) -> str:
    """5.25M, 692M, 1.2B: three significant digits."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def bracket_lines(sizes: dict[float, list[float]], law: dict | None = None, name: str = DEFAULT_LAW_NAME) -> list[str]:
    """Per IsoFLOP budget (its sizes' N): whether they bracket the compute-optimal N."""
    if not sizes:
        return []
    allocation = allocation_of(law)
    lines = [textwrap.fill(f"IsoFLOP budgets against the compute-optimal N of {name}:", 110, subsequent_indent="    ")]
    for budget in sorted(sizes):
        low, high = min(sizes[budget]), max(sizes[budget])
        opt = float(optimum(allocation, budget)[0])
        span = f"sizes {format_size(low)}..{format_size(high)}"
        if low <= opt <= high:
            verdict = f"{span} bracket N_opt≈{format_size(opt)}"
        else:
            side = "below" if high < opt else "above"
            verdict = f"{span} do not bracket: all sizes {side} N_opt≈{format_size(opt)}"
        lines.append(f"  C={format_flops(budget)}: {verdict} ({len(sizes[budget])} runs)")
    return lines


def far_points(points: list[Point], law: dict | None = None) -> list[tuple[Point, float, float]]:
    """The points whose tokens per parameter are more than FAR times off the optimum's at their compute:
    (point, its tokens per parameter, the optimum's)."""
    allocation = allocation_of(law)
    far = []
    for point in points:
        ratio = point.tokens / point.n
        best = float(optimum(allocation, point.flops)[1])
        if ratio > FAR * best or ratio < best / FAR:
            far.append((point, ratio, best))
    return far


def far_lines(points: list[Point], law: dict | None = None) -> list[str]:
    """Per IsoFLOP budget (then the token grid), the points far outside the compute-optimal region of the
    law the bracket lines name."""
    points = [p for p in points if p.grid != "tune"]  # a sweep trains at its own tokens per parameter
    far = far_points(points, law)
    if not far:
        return [f"points: all {len(points)} within {FAR:g}x of the same law's compute-optimal tokens per parameter"]
    lines = [
        textwrap.fill(
            f"points far outside the same law's compute-optimal region (tokens per parameter more than {FAR:g}x "
            f"off the optimum's at their compute): {len(far)} of {len(points)}",
            110,
            subsequent_indent="    ",
        )
    ]
    groups: dict[float | None, list] = {}
    for entry in far:
        groups.setdefault(entry[0].budget, []).append(entry)
    for budget in sorted(groups, key=lambda b: (b is None, b or 0.0)):
        label = f"C={format_flops(budget)}" if budget is not None else "token grid"
        items = ", ".join(
            f"N {format_size(p.n)} D/N {ratio:.3g} against {best:.3g}"
            for p, ratio, best in sorted(groups[budget], key=lambda e: e[0].n)
        )
        lines.append(textwrap.fill(f"  {label}: {items}", 110, subsequent_indent="      "))
    return lines
