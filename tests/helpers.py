"""Helpers shared by the tests: a tiny run's settings, and Snakemake on a copy of the pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_spec(run_id: str = "L1-d32-h2_D20k_s0", **changes) -> dict:
    spec = {
        "run_id": run_id, "family": "gpt", "grid": "tokens", "compute_budget": None,
        "model": {"vocab_size": 384, "seq_len": 32, "n_layer": 1, "d_model": 32, "n_head": 2,
                  "mlp_ratio": 4, "bias": False},
        "tokens": 20_480, "seed": 0,
        "optim": {"lr": 3e-3, "min_lr_ratio": 0.1, "warmup_fraction": 0.05, "weight_decay": 0.1,
                  "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "grad_clip": 1.0, "batch_size": 16},
        "device": "cpu", "kernels": "auto", "threads": 1, "log_every": 5,
        "allow_repeated_epochs": False, "flop_convention": "6N",
    }
    for key, value in changes.items():
        if key in spec["optim"]:
            spec["optim"][key] = value
        else:
            spec[key] = value
    return spec


def copy_pipeline(dest: Path) -> Path:
    """A copy of the pipeline's code and config, so tests can edit and touch files freely."""
    for name in ("Snakefile", "rules", "workflow", "config", "envs"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Snakemake in ``workdir`` with that copy's ``workflow`` package first on the path."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
