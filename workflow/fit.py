"""Fit stage: scaling laws fitted to the table of runs.

Approach 3 of Hoffmann et al. 2022 (Chinchilla), as re-examined by Besiroglu
et al. 2024 (Epoch AI):

    L(N, D) = E + A / N**alpha + B / D**beta

is fitted in log space. With a = log A, b = log B, e = log E the model is

    log L_hat = LSE(a - alpha log N,  b - beta log D,  e)

(LSE = log-sum-exp), and the objective is the sum over runs of
Huber_delta(log L_hat - log L), delta = 1e-3, minimised with L-BFGS from every
start of Hoffmann's grid: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5,
..., 1}, a, b in {0, 5, ..., 25} (4500 starts). The best optimum is kept.
Gradients are analytic: d LSE / d(term k) is the softmax weight w_k of term k.

Pruning: the objective is first evaluated at all starts at once (one
vectorised pass), and L-BFGS runs from the ``refine`` best of them. On Epoch
AI's 240 Chinchilla points about half of all starts reach the global optimum,
the best-ranked ones among them, so the result equals the full grid's at a
fraction of the time; ``refine=None`` runs every start.

The compute frontier: runs whose loss is below that of every run with less
compute, fitted by a power law L(C) = A_C * C**(-gamma) in log-log space.

CLI: ``python -m workflow.fit TABLE --out FITS.json`` with TABLE a CSV or
parquet file holding columns ``params``, ``tokens``, ``loss`` and optionally
``flops`` (else C = 6 N D, and the output says so).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from workflow.io import write_json_atomic

HUBER_DELTA = 1e-3
PARAM_NAMES = ("a", "b", "e", "alpha", "beta")


class FitError(ValueError):
    """Data that cannot support the requested fit; the message says what is missing."""


def hoffmann_grid() -> np.ndarray:
    """Hoffmann et al.'s 4500 starts, as rows (a, b, e, alpha, beta)."""
    alphas = betas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = bs = np.arange(0.0, 25.1, 5.0)
    return np.array([(a, b, e, al, be) for a, b, e, al, be in itertools.product(abs_, bs, es, alphas, betas)])


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    small = np.abs(r) <= delta
    return np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def huber_grad(r: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(r, -delta, delta)


def objective_at_starts(starts: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
                        delta: float) -> np.ndarray:
    """The objective at every start (rows a, b, e, alpha, beta) in one vectorised pass."""
    a, b, e, alpha, beta = (starts[:, i : i + 1] for i in range(5))
    terms = np.stack(np.broadcast_arrays(a - alpha * log_n, b - beta * log_d, e))
    peak = terms.max(axis=0)
    residual = peak + np.log(np.exp(terms - peak).sum(axis=0)) - log_loss
    return huber(residual, delta).sum(axis=1)


def approach3_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray,
                        delta: float) -> tuple[float, np.ndarray]:
    """Sum of Huber losses of log-loss residuals, and its exact gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    residual = logsumexp(terms, axis=0) - log_loss
    weights = softmax(terms, axis=0)
    g = huber_grad(residual, delta)
    grad = np.array([
        np.sum(g * weights[0]),
        np.sum(g * weights[1]),
        np.sum(g * weights[2]),
        -np.sum(g * weights[0] * log_n),
        -np.sum(g * weights[1] * log_d),
    ])
    return float(np.sum(huber(residual, delta))), grad


def fit_approach3(params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, *,
                  delta: float = HUBER_DELTA, starts: np.ndarray | None = None,
                  refine: int | None = 100) -> dict:
    params, tokens, loss = (np.asarray(v, dtype=np.float64) for v in (params, tokens, loss))
    check_fit_data(params, tokens, loss, minimum_runs=6)
    log_n, log_d, log_loss = np.log(params), np.log(tokens), np.log(loss)
    starts = hoffmann_grid() if starts is None else starts
    t0 = time.perf_counter()
    if refine is not None and refine < len(starts):
        ranked = np.argsort(objective_at_starts(starts, log_n, log_d, log_loss, delta), kind="stable")
        chosen = starts[ranked[:refine]]
    else:
        chosen = starts
    best = None
    for start in chosen:
        result = minimize(approach3_objective, start, args=(log_n, log_d, log_loss, delta), jac=True,
                          method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15})
        if best is None or result.fun < best.fun:
            best = result
    a, b, e, alpha, beta = best.x
    if not (alpha > 0 and beta > 0):
        raise FitError(f"Approach 3 found non-positive exponents (alpha={alpha:.3g}, beta={beta:.3g}): "
                       f"loss does not fall with both N and D in these runs")
    fit = {
        "E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
        "alpha": float(alpha), "beta": float(beta),
        "log_params": dict(zip(PARAM_NAMES, map(float, best.x))),
        "objective": float(best.fun),
        "huber_delta": delta,
        "starts": int(len(starts)),
        "starts_refined": int(len(chosen)),
        "runs": int(len(loss)),
        "seconds": time.perf_counter() - t0,
    }
    # Compute-optimal allocation under C = 6 N D (Hoffmann et al., eq. 4):
    # N_opt = G (C/6)^a_exp, D_opt = G^-1 (C/6)^b_exp.
    fit["a_exponent"] = float(beta / (alpha + beta))
    fit["b_exponent"] = float(alpha / (alpha + beta))
    fit["G"] = float((alpha * fit["A"] / (beta * fit["B"])) ** (1 / (alpha + beta)))
    return fit


def predict_approach3(fit: dict, params, tokens) -> np.ndarray:
    return fit["E"] + fit["A"] / np.asarray(params, float) ** fit["alpha"] + fit["B"] / np.asarray(tokens, float) ** fit["beta"]


def compute_frontier(flops: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of runs with lower loss than every run of less compute, by compute."""
    order = np.argsort(flops, kind="stable")
    frontier, best = [], np.inf
    for i in order:
        if loss[i] < best:
            frontier.append(int(i))
            best = loss[i]
    return np.array(frontier, dtype=int)


def fit_frontier(flops: np.ndarray, loss: np.ndarray) -> dict:
    flops, loss = np.asarray(flops, float), np.asarray(loss, float)
    idx = compute_frontier(flops, loss)
    if len(idx) < 2 or np.ptp(np.log(flops[idx])) == 0:
        raise FitError(f"the compute frontier holds {len(idx)} distinct compute value(s); "
                       f"a power law in C needs at least 2")
    slope, intercept = np.polyfit(np.log(flops[idx]), np.log(loss[idx]), 1)
    return {"A_C": float(np.exp(intercept)), "gamma": float(-slope), "frontier_runs": idx.tolist(),
            "form": "L(C) = A_C * C^-gamma"}


def check_fit_data(params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, minimum_runs: int) -> None:
    if len(loss) < minimum_runs:
        raise FitError(f"Approach 3 fits 5 parameters and needs at least {minimum_runs} completed runs; "
                       f"got {len(loss)}")
    for name, values in (("params", params), ("tokens", tokens), ("loss", loss)):
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise FitError(f"column {name!r} must hold positive, finite numbers")
    if len(np.unique(params)) < 2:
        raise FitError("every run has the same model size: Approach 3 needs at least 2 distinct values of N")
    if len(np.unique(tokens)) < 2:
        raise FitError("every run has the same token count: Approach 3 needs at least 2 distinct values of D")


def read_table(path: Path) -> pl.DataFrame:
    path = Path(path)
    table = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    missing = [c for c in ("params", "tokens", "loss") if c not in table.columns]
    if missing:
        raise FitError(f"{path} lacks column(s) {', '.join(missing)}; it needs params, tokens, loss "
                       f"and optionally flops")
    return table


def fit_table(table: pl.DataFrame, *, delta: float = HUBER_DELTA, refine: int | None = 100,
              metadata: dict | None = None) -> dict:
    excluded = []
    if "status" in table.columns:
        excluded = table.filter(pl.col("status") != "completed")
        excluded = excluded["run_id"].to_list() if "run_id" in excluded.columns else [None] * excluded.height
        table = table.filter(pl.col("status") == "completed")
    if table.height == 0:
        raise FitError("no completed runs to fit" + (f" ({len(excluded)} left out as not completed)" if excluded else ""))
    params, tokens, loss = (table[c].to_numpy().astype(float) for c in ("params", "tokens", "loss"))
    if "flops" in table.columns:
        compute, compute_source = table["flops"].to_numpy().astype(float), "table column 'flops'"
    else:
        compute, compute_source = 6.0 * params * tokens, "C = 6 N D (no 'flops' column)"
    approach3 = fit_approach3(params, tokens, loss, delta=delta, refine=refine)
    frontier = fit_frontier(compute, loss)
    if "run_id" in table.columns:
        frontier["frontier_run_ids"] = [table["run_id"][i] for i in frontier["frontier_runs"]]
    return {
        "approach3": approach3,
        "frontier": frontier,
        "data": {"runs_fitted": table.height, "runs_excluded": excluded, "compute": compute_source},
        **(metadata or {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.fit", description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="CSV or parquet with params, tokens, loss [, flops]")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--huber-delta", type=float, default=HUBER_DELTA)
    parser.add_argument("--refine", type=int, default=100,
                        help="run L-BFGS from this many best-ranked grid starts (0: all 4500)")
    parser.add_argument("--flop-convention", default=None, help="recorded in the output")
    parser.add_argument("--parameter-count", default=None, help="recorded in the output")
    args = parser.parse_args(argv)
    metadata = {"flop_convention": args.flop_convention, "parameter_count": args.parameter_count,
                "table": str(args.table)}
    try:
        fits = fit_table(read_table(args.table), delta=args.huber_delta, refine=args.refine or None,
                         metadata=metadata)
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_json_atomic(args.out, fits)
    a3 = fits["approach3"]
    print(f"approach 3: E={a3['E']:.4g} A={a3['A']:.4g} B={a3['B']:.4g} alpha={a3['alpha']:.4f} "
          f"beta={a3['beta']:.4f} ({a3['starts_refined']} of {a3['starts']} starts refined, "
          f"{a3['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
