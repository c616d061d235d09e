"""Approach 1: the envelope of the training curves (docs/methods.md, "Approach 1").

The curves are put once on a common grid of log C (``curve_matrix``); the
envelope and its allocation law are then a few array operations, so a
bootstrap refit (a resampled set of curves) reuses the matrix.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from workflow.fit.allocation import allocation_law
from workflow.fit.approach import Approach, Prepared, Resample, Study
from workflow.fit.primitives import FitError


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` points, shorter at the ends."""
    if window <= 1 or len(values) < 2:
        return values
    half = window // 2
    sums = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    return (sums[hi] - sums[lo]) / (hi - lo)


def curve_matrix(
    curves: pl.DataFrame, *, points: int = 1500, skip_fraction: float = 0.1, smooth: int = 5, flops_per_nd: float = 6.0
) -> dict:
    """Every curve's loss and tokens interpolated in log C on a common grid (inf / 0 outside its range)."""
    required = {"run_id", "flops", "tokens", "train_loss", "params"}
    if not required <= set(curves.columns):
        raise FitError(
            f"Approach 1 needs training curves with columns {sorted(required)}; missing "
            f"{sorted(required - set(curves.columns))}"
        )
    runs = []
    for (run_id,), curve in curves.sort("run_id", "flops").group_by("run_id", maintain_order=True):
        curve = curve.filter(pl.col("train_loss").is_finite() & (pl.col("flops") > 0) & (pl.col("tokens") > 0))
        if curve.height == 0:
            continue
        curve = curve.filter(pl.col("tokens") >= skip_fraction * curve["tokens"].max())
        log_c = np.log(curve["flops"].to_numpy().astype(float))
        loss = moving_average(curve["train_loss"].to_numpy().astype(float), smooth)
        tokens = curve["tokens"].to_numpy().astype(float)
        keep = np.concatenate([[True], np.diff(log_c) > 0])  # strictly increasing C for interpolation
        if keep.sum() >= 2:
            runs.append((run_id, log_c[keep], loss[keep], tokens[keep], float(curve["params"][0])))
    sizes = len({r[4] for r in runs})
    if sizes < 3:
        raise FitError(
            f"Approach 1 needs training curves (2 or more logged steps past warmup) of at least 3 "
            f"model sizes; got {sizes}"
        )
    grid = np.linspace(min(r[1][0] for r in runs), max(r[1][-1] for r in runs), points)
    losses = np.full((len(runs), points), np.inf)
    tokens = np.zeros((len(runs), points))
    for i, (_, log_c, loss, tok, _) in enumerate(runs):
        inside = (grid >= log_c[0]) & (grid <= log_c[-1])
        losses[i, inside] = np.interp(grid[inside], log_c, loss)
        tokens[i, inside] = np.interp(grid[inside], log_c, tok)
    return {
        "run_ids": [r[0] for r in runs],
        "params": np.array([r[4] for r in runs]),
        "log_c": grid,
        "losses": losses,
        "tokens": tokens,
        "points": points,
        "skip_fraction": skip_fraction,
        "smooth": smooth,
        "flops_per_nd": flops_per_nd,
    }


def envelope_law(matrix: dict, subset: np.ndarray | None = None) -> dict:
    """The envelope of the curves in ``subset`` (all when None) and the allocation law fitted on it:
    a and k_n from the envelope's sizes, D_opt from the budget (``matrix["flops_per_nd"]``)."""
    subset = np.arange(len(matrix["params"])) if subset is None else np.asarray(subset)
    losses = matrix["losses"][subset]
    covered = np.flatnonzero(np.isfinite(losses).any(axis=0))
    winner = subset[np.argmin(losses[:, covered], axis=0)]
    n_opt = matrix["params"][winner]
    d_opt = matrix["tokens"][winner, covered]
    changes = np.flatnonzero(n_opt[1:] != n_opt[:-1]) + 1
    sizes = len(np.unique(n_opt))
    if len(changes) < 2 or sizes < 3:
        raise FitError(
            f"Approach 1: the lowest-loss curve changes model size {len(changes)} time(s) across "
            f"compute ({sizes} size(s) on the envelope); it needs at least 2 crossovers (3 sizes) — "
            f"train larger models, or the smaller ones longer, so that their curves cross"
        )
    first, last = changes[0], changes[-1]
    inside = slice(first, last + 1)
    flops = np.exp(matrix["log_c"][covered])
    if len(np.unique(n_opt[inside])) < 2:
        raise FitError("Approach 1: one model size holds the envelope between its first and last crossover")
    law = allocation_law(flops[inside], n_opt[inside], matrix["flops_per_nd"])
    law.update(winner=winner, covered=covered, fit_range=(first, last), flops=flops, n_opt=n_opt, d_opt=d_opt)
    return law


def approach1(
    curves: pl.DataFrame, *, points: int = 1500, skip_fraction: float = 0.1, smooth: int = 5, matrix: dict | None = None
) -> dict:
    """Chinchilla Approach 1: the lowest training loss at each compute."""
    matrix = matrix or curve_matrix(curves, points=points, skip_fraction=skip_fraction, smooth=smooth)
    law = envelope_law(matrix)
    covered, winner, (first, last) = law.pop("covered"), law.pop("winner"), law.pop("fit_range")
    flops, n_opt, d_opt = law.pop("flops"), law.pop("n_opt"), law.pop("d_opt")
    keep = np.unique(np.linspace(0, len(covered) - 1, 100).astype(int))
    law.update(
        points=int(matrix["points"]),
        curves=len(matrix["run_ids"]),
        skip_fraction=matrix["skip_fraction"],
        smooth=matrix["smooth"],
        envelope_sizes=sorted({float(n) for n in n_opt}),
        fit_range_flops=[float(flops[first]), float(flops[last])],
        fit_points=int(last - first + 1),
        optima=[
            {
                "flops": float(flops[j]),
                "n_opt": float(n_opt[j]),
                "d_opt": float(d_opt[j]),
                "loss": float(matrix["losses"][winner[j], covered[j]]),
                "run_id": matrix["run_ids"][winner[j]],
                "in_fit": bool(first <= j <= last),
            }
            for j in keep
        ],
    )
    return law


def fit(study: Study) -> dict:
    """Approach 1 on the curves of the study's runs (a cooldown branch's curve belongs to its training run)."""
    if study.curves is None:
        raise FitError("no training curves given (--curves)")
    table, curves = study.table, study.curves
    ids = set(table["run_id"].to_list())
    if "training_run" in table.columns:
        ids |= set(table["training_run"].to_list())
    kept = curves.filter(pl.col("run_id").is_in(list(ids))) if "run_id" in curves.columns else curves
    study.cache["approach1_matrix"] = curve_matrix(kept, flops_per_nd=study.flops_per_nd)
    return approach1(kept, matrix=study.cache["approach1_matrix"])


def prepare(study: Study, section: dict, rng: np.random.Generator, samples: int, options: dict) -> Prepared:
    """Resamples of the curves: a resampled set is its distinct members (a duplicate curve does
    not change the envelope)."""
    matrix = study.cache.get("approach1_matrix") or curve_matrix(
        study.curves,
        points=section["points"],
        skip_fraction=section["skip_fraction"],
        smooth=section["smooth"],
        flops_per_nd=study.flops_per_nd,
    )
    m = len(matrix["params"])
    return Prepared(shared=matrix, own=[np.unique(rng.integers(0, m, m)) for _ in range(samples)])


def refit(resample: Resample) -> dict:
    law = envelope_law(resample.shared, resample.own)
    return {k: law[k] for k in ("a", "b", "k_n", "k_d")}


APPROACH = Approach(
    name="approach1",
    title="Approach 1",
    required=False,
    fit=fit,
    prepare=prepare,
    refit=refit,
    summary=lambda section, show: f"a={show('a', 3)} b={show('b', 3)}",
    parameters=("a", "b"),
    allocates=True,
)
