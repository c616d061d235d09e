"""Which design buys the most precision for a GPU-hour budget (``python -m workflow.plan --propose``).

The family searched, around the config's own study (its model settings, optimizer, tuning and cluster):

- sizes: ``SIZES`` GPT shapes, spaced evenly in log N from the assumed law's compute-optimal N at the
  smallest IsoFLOP budget divided by ``margin`` to that at the largest times ``margin`` (``MARGINS``);
  each the nearest shape of a ladder with the study's head size and depth-to-width ratio;
- IsoFLOP budgets: ``BUDGET_COUNTS`` budgets, ``BUDGET_STEPS`` apart, the largest as large as the
  GPU-hours allow (found by bisection on the plan's own cost);
- token budgets: the config's shapes x token budgets grid kept, or left out;
- seeds: 1 or 2 per point;
- schedule: the config's, or the other of ``cosine`` (every point its own run) and ``wsd`` (one run per
  shape and seed, a cooldown branch per point: cheaper, but a run's points share its noise).

Every candidate is costed by the plan itself (its rows' device-hours, the tuning sweep included) and
refused when the config check or the memory plan refuses it. The candidates are ranked by a linearised
figure (``simulate_design.linearised``: least squares at the true law, the noise shared within runs),
and the best ``FINALISTS`` and the config's own design are simulated; the best by simulation is chosen
and written as a config overlay the plan and Snakemake accept.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from workflow.config import ConfigError, check_config, model_settings
from workflow.design.checks import allocation_of, optimum
from workflow.families import parameter_count, parameter_counts
from workflow.simulate import Design, design_of_config

SIZES = (5, 7, 9)
MARGINS = (2.0, 4.0)
BUDGET_COUNTS = (3, 4, 5)
BUDGET_STEPS = (10**0.5, 10.0)
SEEDS = (1, 2)
FINALISTS = 4
BISECTIONS = 14


class ProposeError(ValueError):
    """A budget that buys no valid design of the family; one line."""


@dataclass
class Candidate:
    """One design of the family: its settings, its overlay on the config, cost, design and figures."""

    settings: dict
    overlay: dict
    config: dict
    device_hours: float
    design: Design
    screen: dict = field(default_factory=dict)
    simulated: dict | None = None

    @property
    def label(self) -> str:
        s = self.settings
        if s.get("shipped"):
            return "the config's own design"
        budgets = self.overlay["train"]["isoflop"]["compute_budgets"]
        return (
            f"{s['sizes']} sizes (x{s['margin']:g} margin), {s['budgets']} budgets {budgets[0]:.3g}..{budgets[-1]:.3g} "
            f"(x{s['step']:.3g}), {s['seeds']} seed{'s' if s['seeds'] > 1 else ''}, {s['schedule']}, "
            f"token grid {'kept' if s['grid'] else 'left out'}"
        )


def size_of(config: dict, shape: dict) -> float | None:
    """N of a shape under ``fit.parameter_count``, or None when the config check refuses the shape."""
    try:
        model = model_settings(config["train"], config["tokenizer"]["vocab_size"], shape, "ladder")
    except ConfigError:
        return None
    return parameter_count(parameter_counts(model), config["fit"]["parameter_count"])


def shape_ladder(config: dict) -> list[tuple[float, dict]]:
    """(N, shape) of the config's own shapes and of GPT shapes with its head size and depth-to-width ratio
    (medians of its IsoFLOP shapes), ascending in N."""
    train = config["train"]
    shapes = train["isoflop"]["shapes"] or train["grid"]["shapes"]
    head = max(4, int(round(float(np.median([s["d_model"] / s.get("n_head", 1) for s in shapes])) / 4) * 4))
    ratio = float(np.median([s["d_model"] / s["n_layer"] for s in shapes]))
    generated = [
        {"n_layer": n_layer, "d_model": d_model, "n_head": d_model // head}
        for n_layer in range(1, 65)
        for d_model in range(head, 16385, head)
        if ratio / 1.5 <= d_model / n_layer <= ratio * 1.5
    ]
    ladder = {}
    for shape in [*shapes, *generated]:
        n = size_of(config, shape)
        if n is not None:
            ladder.setdefault(n, shape)  # one shape per N, the config's own first
    return sorted(ladder.items(), key=lambda entry: entry[0])


def pick_sizes(ladder: list[tuple[float, dict]], low: float, high: float, count: int) -> list[dict]:
    """``count`` distinct shapes of the ladder nearest to sizes spaced evenly in log N over [low, high]."""
    sizes = np.array([n for n, _ in ladder])
    chosen: list[int] = []
    for target in np.geomspace(low, high, count):
        order = np.argsort(np.abs(np.log(sizes / target)))
        pick = next((int(i) for i in order if int(i) not in chosen), None)
        if pick is not None:
            chosen.append(pick)
    return [ladder[i][1] for i in sorted(chosen)]


def overlay_of(base: dict, settings: dict, top: float, allocation: dict, ladder) -> dict:
    """The config overlay of a design of the family whose largest IsoFLOP budget is ``top`` FLOPs."""
    budgets = [float(f"{top / settings['step'] ** i:.3g}") for i in reversed(range(settings["budgets"]))]
    low = optimum(allocation, budgets[0])[0] / settings["margin"]
    high = optimum(allocation, budgets[-1])[0] * settings["margin"]
    shapes = pick_sizes(ladder, low, high, settings["sizes"])
    seeds = list(range(settings["seeds"]))
    grid = base["train"]["grid"]
    train = {
        "schedule": settings["schedule"],
        "grid": {
            "shapes": copy.deepcopy(grid["shapes"]) if settings["grid"] else [],
            "token_budgets": list(grid["token_budgets"]) if settings["grid"] else [],
            "seeds": seeds,
        },
        "isoflop": {"compute_budgets": budgets, "shapes": shapes, "seeds": list(seeds)},
    }
    overlay = {"train": train}
    tune = base.get("tune") or {}
    if tune.get("enabled"):
        # The sweep tunes the shapes no larger than the config's largest tuned one (a sweep at the largest
        # sizes would cost more than the study), at least the two smallest (its rule needs two sizes), at
        # most as many as the config's; each must be a shape of the study.
        ceiling = max((size_of(base, s) or 0.0 for s in tune.get("shapes") or []), default=math.inf)
        small = [s for s in shapes if (size_of(base, s) or math.inf) <= ceiling]
        count = min(len(tune.get("shapes") or []), len(shapes))
        overlay["tune"] = {"shapes": copy.deepcopy((small if len(small) >= 2 else shapes[:2])[:count])}
    return overlay


def merged(base: dict, overlay: dict) -> dict:
    """The config with the overlay applied as Snakemake applies a later config file (lists replaced)."""
    from snakemake.utils import update_config

    config = copy.deepcopy(base)
    update_config(config, copy.deepcopy(overlay))
    return config


def costed(base: dict, overlay: dict, cost) -> tuple[dict, float] | None:
    """The merged config and its device-hours by the plan (``cost(config, runs)``), or None when the config
    check or the memory plan refuses it."""
    config = merged(base, overlay)
    try:
        runs = check_config(config)
    except ConfigError:
        return None
    return config, cost(config, runs)


def largest_affordable(base: dict, settings: dict, gpu_hours: float, cost, allocation, ladder) -> Candidate | None:
    """The design of ``settings`` with the largest top budget whose plan costs at most ``gpu_hours``."""
    reference = max(base["train"]["isoflop"]["compute_budgets"] or [1e18])
    low, high = math.log(reference) - 6 * math.log(10), math.log(reference) + 6 * math.log(10)
    best = None
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        overlay = overlay_of(base, settings, math.exp(middle), allocation, ladder)
        found = costed(base, overlay, cost)
        if found is None or found[1] <= gpu_hours:
            # Affordable, or refused by the config check, which refuses budgets too small for a shape or a
            # warmup (a larger budget is what it asks for): either way, look higher.
            best = best if found is None else (overlay, *found)
            low = middle
        else:
            high = middle  # too expensive, or a run that does not fit its device (infinite cost)
    if best is None:
        return None
    overlay, config, hours = best
    return Candidate(settings, overlay, config, hours, design_of_config(config))


def family(base: dict) -> list[dict]:
    """The settings of every design of the family."""
    other = "wsd" if base["train"]["schedule"] != "wsd" else "cosine"
    return [
        {"sizes": k, "margin": w, "budgets": b, "step": r, "seeds": s, "schedule": sched, "grid": g}
        for k, w, b, r, s, sched, g in itertools.product(
            SIZES, MARGINS, BUDGET_COUNTS, BUDGET_STEPS, SEEDS, (base["train"]["schedule"], other), (True, False)
        )
    ]


def score(candidate: Candidate, target: str, figures: dict) -> float:
    """The figure ranked on: the width of a's interval, or the multiplier detected with 80% power."""
    return figures["a_width"] if target == "a-width" else figures["multiplier"]


def propose(
    base: dict,
    law: dict,
    noise,
    gpu_hours: float,
    target: str,
    cost,
    *,
    studies: int,
    samples: int,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Search the family at ``gpu_hours`` for ``target`` ("a-width" or "multiplier"), simulate the best
    few and the config's own design; ProposeError when no design of the family fits the budget. For the
    multiplier, a design is run as two arms, each costing its plan's device-hours."""
    from tqdm import tqdm

    from workflow.design.simulate_design import linearised, simulate, smallest_multiplier

    arms = 2 if target == "multiplier" else 1
    allocation = allocation_of(law)
    ladder = shape_ladder(base)
    candidates = []
    settings_list = family(base)
    for settings in tqdm(settings_list, desc="designs costed", unit="design", disable=not progress):
        found = largest_affordable(base, settings, gpu_hours / arms, cost, allocation, ladder)
        if found is not None and len(found.design.params) >= 6:  # Approach 3 fits 5 parameters
            found.screen = linearised([found.design] * 2, law, noise)
            candidates.append(found)
    if not candidates:
        raise ProposeError(
            f"--gpu-hours {gpu_hours:g} buys no valid design of the family (every design is refused by the config "
            f"check or costs more than {gpu_hours:g} device-hours{' for two arms' if arms == 2 else ''}); "
            f"give a larger budget"
        )
    candidates.sort(key=lambda c: score(c, target, c.screen))
    shipped_runs = check_config(base)
    shipped = Candidate({"shipped": True}, {}, base, cost(base, shipped_runs), design_of_config(base))
    shipped.screen = linearised([shipped.design] * 2, law, noise)
    finalists = [*candidates[:FINALISTS], shipped]
    for candidate in finalists:
        if target == "a-width":
            candidate.simulated = simulate(
                candidate.design, law, noise, studies=studies, samples=samples, seed=seed, progress=progress
            )
            candidate.simulated["figure"] = candidate.simulated["width"]["a"]
        else:
            found = smallest_multiplier(
                [candidate.design] * 2, law, noise, studies=studies, samples=samples, seed=seed, progress=progress
            )
            candidate.simulated = found | {"figure": found["multiplier"] or math.inf}
    chosen = min(finalists[:-1], key=lambda c: c.simulated["figure"])
    return {
        "target": target,
        "gpu_hours": gpu_hours,
        "arms": arms,
        "designs_costed": len(settings_list),
        "designs_affordable": len(candidates),
        "finalists": finalists,
        "chosen": chosen,
        "shipped": shipped,
    }
