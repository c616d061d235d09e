"""What a run records: its progress (what a checkpoint restores), metrics rows and ``summary.json``.

Every number is named: parameter counts, FLOPs under every convention of ``workflow.families``,
tokens/s and MFU (PaLM convention), the data-wait fraction, the device, the kernel of each
component, versions and the seed.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from workflow import __version__
from workflow.train.kernels import apex_available

PROGRESS_KEYS = ("step", "rows", "points", "status", "elapsed", "wait", "processed_steps", "pending_losses")


@dataclass
class Progress:
    """Everything about a run's progress that a checkpoint must restore (its keys are the
    checkpoint's: files written by earlier versions load as they are)."""

    step: int = 0
    rows: list[dict] = field(default_factory=list)  # the main trajectory's metrics rows
    points: list[dict] = field(default_factory=list)  # one record per (N, D) point made
    status: str = "completed"
    elapsed: float = 0.0  # seconds of training
    wait: float = 0.0  # of which waiting for data
    processed_steps: int = 0  # every optimizer step, cooldown branches included
    # The main trajectory's losses since its last metrics row, so a row averaged across a resume is
    # the same row.
    pending_losses: list[float] = field(default_factory=list)

    def to_state(self) -> dict:
        return {key: getattr(self, key) for key in PROGRESS_KEYS}

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        return cls(**{key: state[key] for key in PROGRESS_KEYS})


def metrics_row(progress: Progress, step: int, loss: float, lr: float, batch_tokens: int, mfu_of) -> dict:
    """One row of ``metrics.csv``; ``mfu_of(tokens_per_s)`` is None without a known peak."""
    processed = progress.processed_steps * batch_tokens
    tokens_per_s = processed / progress.elapsed if progress.elapsed > 0 else float("nan")
    return {
        "step": step,
        "tokens": step * batch_tokens,
        "train_loss": loss,
        "lr": lr,
        "elapsed_s": progress.elapsed,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu_of(tokens_per_s),
        "data_wait_fraction": progress.wait / progress.elapsed if progress.elapsed > 0 else 0.0,
    }


def write_metrics(rows: list[dict], path) -> None:
    pl.DataFrame(rows, schema_overrides={"mfu": pl.Float64}).write_csv(path)


def versions() -> dict:
    import sentencepiece

    return {
        "pipeline": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "polars": pl.__version__,
        "sentencepiece": sentencepiece.__version__,
        "cuda": torch.version.cuda,
        "apex": apex_available(),
    }


def cpu_name() -> str:
    """The processor's model name (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def execution_record(execution) -> dict:
    return dataclasses.asdict(execution)
