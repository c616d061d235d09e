"""The study simulator: studies drawn from a known law on a study's own design, with measured noise.

A design is what a study trains: each point's N, D and compute, the training run it belongs to (a WSD
run's cooldown branches share one; each seed is its own) and its IsoFLOP budget. A simulated study gives
each point the loss of a known law L(N, D) = E + A/N^alpha + B/D^beta plus noise made of two parts, as
measured on real runs with several seeds (``workflow.fit.seed_noise``): a deviation shared by every point
of a training run, and one of each point's own. Fitting many such studies with the pipeline's own
estimator and intervals shows what the intervals are worth: how often they hold the law that made the
data (their coverage), and how wide they are. docs/methods.md, "The study simulator", states the method
and its limits.

The fit of a simulated study is Approach 3's estimator (Huber loss of log residuals, from the best of
Hoffmann's grid starts) and its bootstrap, minimised for all starts or resamples at once
(``workflow.fit.lse_batch``), which is what makes hundreds of studies affordable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from workflow.fit.approach3 import KEEP_OPTIMA, hoffmann_grid, predict_approach3
from workflow.fit.lse import objective_at_starts
from workflow.fit.lse_batch import fit_many
from workflow.fit.primitives import HUBER_DELTA
from workflow.fit.resampling import unit_rows

QUANTITIES = ("E", "alpha", "beta", "a")
REFINE = 20  # the grid's best starts each simulated study's fit is refined from


@dataclass(frozen=True)
class Noise:
    """Run-to-run noise of one point's loss (nats): its standard deviation across seeds, and the
    correlation between two points of one training run (the share of the variance they share)."""

    sd: float
    run_correlation: float = 0.0
    source: str = "given"

    def __post_init__(self):
        if not self.sd > 0:
            raise ValueError(f"the noise's standard deviation must be positive; got {self.sd}")
        if not 0 <= self.run_correlation < 1:
            raise ValueError(f"the within-run correlation must lie in [0, 1); got {self.run_correlation}")

    @classmethod
    def measured(cls, section: dict, source: str) -> Noise:
        """From a fit's ``noise`` section (a study with several seeds)."""
        correlation = section.get("within_run_correlation") or 0.0
        return cls(section["seed_sd"], float(min(max(correlation, 0.0), 0.95)), source)

    def draw(self, units: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shared = rng.normal(0.0, self.sd * np.sqrt(self.run_correlation), units.max() + 1)[units]
        own = rng.normal(0.0, self.sd * np.sqrt(1 - self.run_correlation), len(units))
        return shared + own


@dataclass(frozen=True)
class Design:
    """The points a study trains: N and D (the fit's counts), compute, training run and IsoFLOP budget."""

    params: np.ndarray
    tokens: np.ndarray
    flops: np.ndarray
    units: np.ndarray  # integer code of each point's training run
    budgets: np.ndarray  # IsoFLOP budget, NaN outside every budget
    run_ids: tuple[str, ...] = ()

    @classmethod
    def of_table(cls, table: pl.DataFrame) -> Design:
        """The design of a runs table (collect's, or any table with params, tokens and flops)."""
        n = table.height
        units = (
            table["training_run"].cast(pl.String).rank("dense").to_numpy().astype(int) - 1
            if "training_run" in table.columns
            else np.arange(n)
        )
        budgets = (
            table["compute_budget"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
            if "compute_budget" in table.columns
            else np.full(n, np.nan)
        )
        flops = table["flops"] if "flops" in table.columns else 6.0 * table["params"] * table["tokens"]
        return cls(
            table["params"].to_numpy().astype(float),
            table["tokens"].to_numpy().astype(float),
            flops.to_numpy().astype(float),
            units,
            budgets,
            tuple(table["run_id"].to_list()) if "run_id" in table.columns else (),
        )

    def table(self, loss: np.ndarray) -> pl.DataFrame:
        """A runs table of this design with the given losses (what the fit reads)."""
        names = self.run_ids or tuple(f"point{i}" for i in range(len(loss)))
        return pl.DataFrame(
            {
                "run_id": list(names),
                "training_run": [f"run{u}" for u in self.units],
                "params": self.params,
                "tokens": self.tokens,
                "flops": self.flops,
                "compute_budget": [None if np.isnan(b) else float(b) for b in self.budgets],
                "loss": loss,
            }
        )


def draw_losses(design: Design, law: dict, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """One simulated study's losses."""
    return predict_approach3(law, design.params, design.tokens) + noise.draw(design.units, rng)


def quantities(theta: np.ndarray) -> dict[str, np.ndarray]:
    """E, alpha, beta and a from rows of theta = (a, b, e, alpha, beta)."""
    alpha, beta = theta[:, 3], theta[:, 4]
    return {"E": np.exp(theta[:, 2]), "alpha": alpha, "beta": beta, "a": beta / (alpha + beta)}


def fit_study(
    design: Design,
    loss: np.ndarray,
    rng: np.random.Generator,
    *,
    samples: int,
    by: str = "unit",
    delta: float = HUBER_DELTA,
) -> dict:
    """Approach 3 on one simulated study, with 95% bootstrap intervals: resampling training runs
    (``by="unit"``, the pipeline's method) or points as if independent (``"point"``).

    Besides the estimate and intervals: ``theta`` (the best optimum), ``local_optima`` (the distinct
    optima the refined starts reach, best first, as approach3 keeps them: (theta, objective)) and
    ``refits`` (each fitted resample's theta), which the identification rule and the arm comparison
    of ``workflow.design`` read."""
    log_x, log_loss = np.stack([np.log(design.params), np.log(design.tokens)]), np.log(loss)
    grid = hoffmann_grid()
    ranked = grid[np.argsort(objective_at_starts(grid, log_x, log_loss, delta), kind="stable")[:REFINE]]
    ones = np.ones((len(ranked), len(loss)))
    thetas, values = fit_many(ranked, log_x, log_loss, ones, delta)
    best = thetas[np.argmin(values)]
    units = design.units if by == "unit" else np.arange(len(loss))
    counts = np.stack([np.bincount(rows, minlength=len(loss)) for rows in unit_rows(units, rng, samples)])
    # As the pipeline's bootstrap: a resample with a single N or D, or a non-positive exponent, is not fitted.
    drawn = counts > 0
    counts = counts[[len(np.unique(design.params[d])) > 1 and len(np.unique(design.tokens[d])) > 1 for d in drawn]]
    refits, _ = fit_many(np.tile(best, (len(counts), 1)), log_x, log_loss, counts.astype(float), delta)
    refits = refits[(refits[:, 3] > 0) & (refits[:, 4] > 0)]
    estimate = {k: float(v[0]) for k, v in quantities(best[None]).items()}
    drawn = quantities(refits)
    intervals = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in drawn.items()}
    return {
        "estimate": estimate,
        "intervals": intervals,
        "resamples_fitted": int(len(refits)),
        "theta": best,
        "local_optima": distinct_optima(thetas, values),
        "refits": refits,
    }


def distinct_optima(thetas: np.ndarray, values: np.ndarray, keep: int = KEEP_OPTIMA) -> list[tuple[np.ndarray, float]]:
    """The best theta of each distinct objective value (relative 1e-6, as ``lse.distinct_optima``), best
    first, at most ``keep``."""
    chosen: list[tuple[np.ndarray, float]] = []
    for i in np.argsort(values, kind="stable"):
        if all(abs(values[i] - v) > 1e-6 * abs(v) + 1e-12 for _, v in chosen):
            chosen.append((thetas[i], float(values[i])))
        if len(chosen) == keep:
            break
    return chosen


def truth_of(law: dict) -> dict[str, float]:
    return {
        "E": law["E"],
        "alpha": law["alpha"],
        "beta": law["beta"],
        "a": law["beta"] / (law["alpha"] + law["beta"]),
    }


def coverage(
    design: Design,
    law: dict,
    noise: Noise,
    *,
    studies: int,
    samples: int,
    seed: int = 0,
    methods: tuple[str, ...] = ("unit", "point"),
    progress: bool = True,
) -> dict:
    """How often each method's 95% intervals hold the true E, alpha, beta and a, over ``studies``
    simulated studies, with the intervals' median width and the estimates' bias."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    truth = truth_of(law)
    hits = {m: {q: 0 for q in QUANTITIES} for m in methods}
    widths = {m: {q: [] for q in QUANTITIES} for m in methods}
    estimates = {q: [] for q in QUANTITIES}
    for _ in tqdm(range(studies), desc="simulated studies", unit="study", disable=not progress):
        loss = draw_losses(design, law, noise, rng)
        for method in methods:
            fitted = fit_study(design, loss, rng, samples=samples, by=method)
            for q in QUANTITIES:
                low, high = fitted["intervals"][q]
                hits[method][q] += int(low <= truth[q] <= high)
                widths[method][q].append(high - low)
        for q in QUANTITIES:
            estimates[q].append(fitted["estimate"][q])
    return {
        "studies": studies,
        "samples": samples,
        "seed": seed,
        "truth": truth,
        "noise": {"sd": noise.sd, "run_correlation": noise.run_correlation, "source": noise.source},
        "coverage": {m: {q: hits[m][q] / studies for q in QUANTITIES} for m in methods},
        "median_width": {m: {q: float(np.median(widths[m][q])) for q in QUANTITIES} for m in methods},
        "median_estimate": {q: float(np.median(estimates[q])) for q in QUANTITIES},
    }


def design_of_config(config: dict) -> Design:
    """The design a study's config trains, before any run: each point's N (``fit.parameter_count``), the
    tokens its whole steps train, its compute (``fit.flop_convention``), its training run and budget."""
    from workflow import families, steps
    from workflow.config import check_config

    fit = config["fit"]
    params, tokens, flops, units, budgets, names = [], [], [], [], [], []
    for unit, spec in enumerate(check_config(config).values()):
        n = families.parameter_count(families.parameter_counts(spec.model), fit["parameter_count"])
        per_token = families.flops_per_token(fit["flop_convention"], spec.model)
        for budget, point_steps in zip(steps.point_budgets(spec), steps.point_steps(spec)):
            trained = point_steps * spec.optim.batch_tokens
            params.append(n)
            tokens.append(trained)
            flops.append(per_token * trained)
            units.append(unit)
            compute_budget = spec.point_budget(budget)
            budgets.append(np.nan if compute_budget is None else compute_budget)
            names.append(f"{spec.run_id}@{budget}")
    return Design(
        np.array(params, float),
        np.array(tokens, float),
        np.array(flops, float),
        np.array(units),
        np.array(budgets, float),
        tuple(names),
    )
