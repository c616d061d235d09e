"""Speed of the Approach-3 fit and its bootstrap on Epoch AI's Chinchilla points.

The data: the 245 (N, C, loss) points Epoch AI extracted from Hoffmann et
al.'s Figure 4, less the 5 of highest loss, as Epoch did; D = C / 6N.
Side by side in one process: the fit from the best 50 of Hoffmann's 4500
starts (the pipeline's default), from the best 100 and from all 4500, which
must reach the same optimum; then 1000 bootstrap refits on 1 and on 2 worker processes.

    python bench/fit_speed.py [--data ../shared/data/svg_extracted_data.csv] [--samples 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import polars as pl
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow.fit import bootstrap, fit_approach3, fit_table, study_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def epoch_table(path: Path) -> pl.DataFrame:
    data = pl.read_csv(path).sort("loss").head(-5)
    n = data["Model Size"].to_numpy().astype(float)
    c = data["Training FLOP"].to_numpy().astype(float)
    return pl.DataFrame(
        {
            "run_id": [f"p{i}" for i in range(n.size)],
            "params": n,
            "tokens": c / (6 * n),
            "flops": c,
            "loss": data["loss"],
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "svg_extracted_data.csv")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    table = epoch_table(args.data)
    print(f"{table.height} points, {os.cpu_count()} CPUs")
    params, tokens, loss = (table[c].to_numpy() for c in ("params", "tokens", "loss"))
    with threadpool_limits(1):
        for refine, label in (
            (50, "best 50 of 4500 starts"),
            (100, "best 100 of 4500 starts"),
            (None, "all 4500 starts"),
        ):
            start = time.perf_counter()
            fit = fit_approach3(params, tokens, loss, refine=refine)
            print(
                f"approach 3, {label}: {time.perf_counter() - start:.1f} s; E {fit['E']:.4f} A {fit['A']:.1f} "
                f"B {fit['B']:.1f} alpha {fit['alpha']:.4f} beta {fit['beta']:.4f} "
                f"objective {fit['objective']:.10g}"
            )
        fits = fit_table(table)
        study, _ = study_of(table, predict=[1e24])
        for workers in (1, 2):
            start = time.perf_counter()
            boot = bootstrap(study, fits, samples=args.samples, seed=0, workers=workers)
            lo, hi = boot["intervals"]["approach3"]["alpha"]
            print(
                f"bootstrap, {args.samples} refits on {workers} worker(s): {time.perf_counter() - start:.1f} s; "
                f"alpha 95% [{lo:.4f}, {hi:.4f}]"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
