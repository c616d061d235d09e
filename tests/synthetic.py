"""The one generator of synthetic studies for the fit and report tests: runs (and training
curves) drawn from a known law L(N, D) = E + A/N^alpha + B/D^beta with log-normal noise."""

from __future__ import annotations

import numpy as np
import polars as pl

from workflow.fit import predict_approach3

TRUE = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def allocation_of(law: dict) -> tuple[float, float]:
    """G and a of the law's compute-optimal allocation N_opt = G (C/6)^a (Hoffmann et al. eq. 4)."""
    a = law["beta"] / (law["alpha"] + law["beta"])
    g = (law["alpha"] * law["A"] / (law["beta"] * law["B"])) ** (1 / (law["alpha"] + law["beta"]))
    return g, a


A_TRUE = allocation_of(TRUE)[1]  # N_opt ∝ C^a
G_TRUE = allocation_of(TRUE)[0]


def grid_study(noise=0.005, seed=0, law=TRUE, sizes=(1e7, 3e9, 6), tokens=(1e9, 3e11, 6)):
    """A grid of model sizes x token counts (no budgets), as arrays (N, D, loss)."""
    rng = np.random.default_rng(seed)
    n, d = np.meshgrid(np.geomspace(*sizes), np.geomspace(*tokens))
    n, d = n.ravel(), d.ravel()
    return n, d, predict_approach3(law, n, d) * np.exp(rng.normal(0, noise, n.size))


def grid_table(n, d, loss) -> pl.DataFrame:
    """Arrays of a grid study as a runs table with run ids and compute."""
    return pl.DataFrame(
        {"run_id": [f"r{i}" for i in range(len(n))], "params": n, "tokens": d, "flops": 6 * n * d, "loss": loss}
    )


def isoflop_study(
    budgets=(1e18, 1e19, 1e20, 1e21), sizes=9, spread=8.0, noise=0.002, seed=0, law=TRUE, report_columns=False
) -> pl.DataFrame:
    """For each budget, ``sizes`` model sizes from 1/spread to spread times the law's optimum, D = C / 6N.
    ``report_columns`` adds the columns the report's runs table shows."""
    rng = np.random.default_rng(seed)
    g, a = allocation_of(law)
    rows = []
    for c in budgets:
        n_opt = g * (c / 6) ** a
        for k, n in enumerate(n_opt * np.geomspace(1 / spread, spread, sizes)):
            d = c / (6 * n)
            loss = float(predict_approach3(law, n, d) * np.exp(rng.normal(0, noise)))
            row = {
                "run_id": f"C{c:.0e}_{k}",
                "status": "completed",
                "params": float(n),
                "tokens": float(d),
                "flops": float(c),
                "compute_budget": float(c),
                "loss": loss,
            }
            if report_columns:
                row.update(bits_per_byte=loss / 1.3, train_loss=loss, tokens_per_s=1e4, device="cpu", kernels="torch")
            rows.append(row)
    return pl.DataFrame(rows)


def curves_of(runs: pl.DataFrame, steps=40, noise=0.002, seed=1, start=1 / 100, law=TRUE) -> pl.DataFrame:
    """Each run's training curve: loss L(N, D_t) at its tokens so far (from ``start`` of its D), with noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for run in runs.iter_rows(named=True):
        tokens = np.geomspace(run["tokens"] * start, run["tokens"], steps)
        loss = predict_approach3(law, run["params"], tokens) * np.exp(rng.normal(0, noise, steps))
        frames.append(
            pl.DataFrame(
                {
                    "run_id": run["run_id"],
                    "params": run["params"],
                    "step": np.arange(1, steps + 1),
                    "tokens": tokens,
                    "flops": 6 * run["params"] * tokens,
                    "train_loss": loss,
                }
            )
        )
    return pl.concat(frames)


LONG_RUN_SIZES = np.geomspace(1e7, 3e9, 12)


def long_runs(sizes=LONG_RUN_SIZES) -> pl.DataFrame:
    """One run per size, trained to 3x the tokens that are compute-optimal for it (C = 6 (N/G)^(1/a)),
    so that its curve (past warmup: from a tenth of that) passes the optimum: a runs table for curves_of."""
    d_opt = (sizes / G_TRUE) ** (1 / A_TRUE) / sizes
    return pl.DataFrame({"run_id": [f"n{i}" for i in range(len(sizes))], "params": sizes, "tokens": 3 * d_opt})
