"""The bootstrap: every bootstrapped approach refitted on resamples, and 95% percentile intervals.

The run rows are drawn first (seeded), then each approach that draws its own
resamples (``prepare``) draws them, in registry order; all draws happen before
the refits are shared out, so the result does not depend on the number of
workers. A resample an approach cannot fit (FitError) is counted under
``resamples_skipped``. For every approach with an allocation law the
predictions are refitted too, and for one with a loss law the band of its
compute-optimal loss and allocation. docs/methods.md, "Uncertainty", states
the method.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from workflow.fit.allocation import allocate, predict_at
from workflow.fit.approach import Resample, Study
from workflow.fit.primitives import FitError
from workflow.fit.registry import APPROACHES, BY_NAME
from workflow.fit.resampling import unit_rows

BAND_POINTS = 48
METHOD = (
    "training runs resampled with replacement, each with all its points (a WSD run's cooldown branches "
    "together; each seed its own run; a table without training runs: its points), training curves for "
    "Approach 1; 95% percentile intervals (2.5th, 97.5th)"
)
POINT_METHOD = "points resampled with replacement, as if independent; 95% percentile intervals (2.5th, 97.5th)"


def prediction_key(flops: float) -> str:
    return f"predictions.{flops:g}"


def _refit(name: str, resample: Resample, predict: list[float], band: np.ndarray) -> dict:
    """One approach on one resample: its quantities, predictions and band (FitError when it cannot)."""
    approach = BY_NAME[name]
    values = approach.refit(resample)
    if approach.allocates:
        for c in predict:
            for q, v in predict_at(values, c, approach.law).items():
                if q != "cost":  # 1 by construction: no interval to take
                    values[f"{prediction_key(c)}.{q}"] = v
        if approach.law is not None:
            point = allocate(values, band)
            values["_band"] = (approach.law(values, point["n_opt"], point["d_opt"]), point["n_opt"], point["d_opt"])
    for quantity in values.pop("_no_interval", ()):
        values.pop(quantity)  # a value held fixed has no interval
    return values


def _bootstrap_worker(job: dict) -> list[dict]:
    """Refits for a block of resamples (in a worker process, or inline): per resample,
    {approach: values or None when it could not be fitted}.

    BLAS thread pools are held to one thread: with one worker per core, their
    spinning threads otherwise make the bootstrap several times slower."""
    results = []
    with threadpool_limits(1):
        for k, index in enumerate(job["block"]):
            out = {}
            for name, spec in job["approaches"].items():
                own = None if spec["own"] is None else spec["own"][k]
                resample = Resample(int(index), job["rows"][k], job["runs"], job["delta"], own, spec["shared"])
                try:
                    out[name] = _refit(name, resample, job["predict"], job["band"])
                except (FitError, np.linalg.LinAlgError):
                    out[name] = None
            results.append(out)
    return results


def run_in_processes(jobs: list[dict]) -> list:
    """``_bootstrap_worker`` on each job, each in a fresh Python process (one per job, at once).

    Fresh processes rather than forks: a fork of a process whose polars or BLAS
    threads hold a lock can deadlock. Rather than multiprocessing's spawn, which
    re-imports the caller's main script, each worker is ``python -c`` importing
    this module, reading its pickled job on stdin and writing its results to
    stdout."""
    import pickle
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", POLARS_MAX_THREADS="1")
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    command = [sys.executable, "-c", "from workflow.fit.bootstrap import _worker_main; _worker_main()"]

    def run(job):
        done = subprocess.run(command, input=pickle.dumps(job), capture_output=True, env=env, cwd=root)
        if done.returncode != 0:
            raise RuntimeError(
                f"a bootstrap worker failed (exit {done.returncode}): {done.stderr.decode(errors='replace')[-3000:]}"
            )
        return pickle.loads(done.stdout)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def _worker_main() -> None:
    """Entry point of a bootstrap worker process (see run_in_processes)."""
    import pickle

    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # a stray print must not corrupt the pickled results
    results = _bootstrap_worker(pickle.load(sys.stdin.buffer))
    out.write(pickle.dumps(results))
    out.flush()


def bootstrap(
    study: Study,
    full: dict,
    *,
    samples: int,
    seed: int,
    workers: int = 2,
    verify: int = 10,
    verify_refine: int = 25,
    by: str = "unit",
) -> dict:
    """Resample ``samples`` times (seeded), refit every bootstrapped approach that ``full`` (the
    study's sections) has fitted, and report 95% percentile intervals per section. ``by``: "unit"
    resamples training runs (the method), "point" resamples points as if independent (for comparison:
    its intervals are too narrow where points share a run)."""
    t0 = time.perf_counter()
    if samples < 2:
        raise FitError(f"a bootstrap needs at least 2 resamples; got {samples}")
    rng = np.random.default_rng(seed)
    units = study.units if by == "unit" else np.arange(len(study.loss))
    rows = unit_rows(units, rng, samples)  # first: Approach 3's intervals depend on it
    options = {"verify": min(verify, samples), "verify_refine": verify_refine}
    prepared, notes = {}, {}
    for approach in APPROACHES:
        section = full.get(approach.name) or {"skipped": "not fitted"}
        if approach.refit is None or "skipped" in section:
            continue
        prepared[approach.name] = approach.prepare(study, section, rng, samples, options) if approach.prepare else None
        notes |= prepared[approach.name].notes if prepared[approach.name] else {}
    runs = {
        "params": study.params,
        "tokens": study.tokens,
        "loss": study.loss,
        "flops": study.flops,
        "log_n": np.log(study.params),
        "log_d": np.log(study.tokens),
        "log_loss": np.log(study.loss),
        "flops_per_nd": study.flops_per_nd,
    }
    band = np.geomspace(study.flops.min(), study.flops.max() * 10, BAND_POINTS)
    workers = max(1, min(workers, samples, os.cpu_count() or 1))
    jobs = []
    for w in range(workers):
        block = np.arange(w, samples, workers)  # interleaved: the verified resamples are spread over workers
        approaches = {
            name: {
                "shared": p.shared if p else None,
                "own": None if p is None or p.own is None else [p.own[i] for i in block],
            }
            for name, p in prepared.items()
        }
        jobs.append(
            {
                "block": block,
                "rows": [rows[i] for i in block],
                "runs": runs,
                "delta": study.delta,
                "predict": list(study.predict),
                "band": band,
                "approaches": approaches,
            }
        )
    results = [_bootstrap_worker(jobs[0])] if workers == 1 else run_in_processes(jobs)
    ordered: list = [None] * samples
    for job, block_values in zip(jobs, results):
        for i, values in zip(job["block"], block_values):
            ordered[i] = values
    out = summarise(ordered, prepared, notes, options, samples=samples, seed=seed, workers=workers, t0=t0, band=band)
    out["method"] = METHOD if by == "unit" else POINT_METHOD
    out["units"] = int(len(np.unique(units)))
    return out


def summarise(ordered: list, prepared: dict, notes: dict, options: dict, *, samples, seed, workers, t0, band) -> dict:
    """Intervals, counts, bands and verification from every resample's refits."""
    failed = {name: sum(v[name] is None for v in ordered) for name in prepared}
    for name in prepared:
        if BY_NAME[name].required and samples - failed[name] < 2:
            raise FitError(
                f"only {samples - failed[name]} of {samples} bootstrap resamples could be fitted by "
                f"{BY_NAME[name].title}"
            )
    required = [name for name in prepared if BY_NAME[name].required]
    intervals, counts, bands = {}, {}, {}
    pct = lambda v, q: np.percentile(v, q, axis=0).tolist()  # noqa: E731
    for name in prepared:
        fitted = [v[name] for v in ordered if v[name] is not None]
        intervals[name], counts[name] = {}, {}
        for quantity in sorted({k for f in fitted for k in f if not k.startswith("_")}):
            values = np.array([f[quantity] for f in fitted if quantity in f], dtype=float)
            values = values[np.isfinite(values)]
            if len(values) >= 2:
                intervals[name][quantity] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
                counts[name][quantity] = int(len(values))
        with_band = [f["_band"] for f in fitted if "_band" in f]
        if with_band:
            loss, n_opt, d_opt = (np.array([b[i] for b in with_band]) for i in range(3))
            bands[name] = {
                "flops": band.tolist(),
                "loss_lower": pct(loss, 2.5),
                "loss_upper": pct(loss, 97.5),
                "n_opt_lower": pct(n_opt, 2.5),
                "n_opt_upper": pct(n_opt, 97.5),
                "d_opt_lower": pct(d_opt, 2.5),
                "d_opt_upper": pct(d_opt, 97.5),
            }
    checks = [f["_verified"] for v in ordered for f in v.values() if f is not None and "_verified" in f]
    return {
        "samples": samples,
        "fitted": sum(all(v[name] is not None for name in required) for v in ordered),
        "seed": seed,
        "workers": workers,
        "resamples_skipped": failed,
        "method": METHOD,
        **notes,
        "verified": {
            "resamples": len(checks),
            "refine": options["verify_refine"],
            "same_optimum": int(sum(same for _, same in checks)),
            "largest_objective_gap": float(max(gap for gap, _ in checks)) if checks else None,
        },
        "intervals": intervals,
        "counts": counts,
        "bands": bands,
        "seconds": time.perf_counter() - t0,
    }


def attach_intervals(rows: list[dict], intervals: dict) -> None:
    """Copy the bootstrap intervals of each prediction into its row, per approach."""
    for row in rows:
        key = prediction_key(row["flops"])
        for name, point in row.items():
            if isinstance(point, dict):
                point["intervals"] = {q: intervals.get(name, {}).get(f"{key}.{q}") for q in list(point) if q != "cost"}
