"""What an approach is: the study it fits, the resample it refits, and the registry's record of it.

An approach is one module with an ``APPROACH = Approach(...)`` record, listed
once in ``registry.py``. Everything that handles every approach (the study
fit, the bootstrap, the predictions, the CLI summary, the parameters table and
the report) loops over the registry and reads these records, so that adding
an approach touches one new module and one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from workflow.fit.primitives import HUBER_DELTA, FitError
from workflow.fit.variant import FREE, Variant


@dataclass
class Study:
    """The completed runs as arrays (and the tables they came from), with the fit settings.

    ``fits`` holds the sections fitted so far, in registry order, so that a later
    approach can use an earlier one (the extrapolation check refits Approach 3).
    ``cache`` keeps what a fit computed for its bootstrap (Approach 1's curve matrix).
    ``variant`` is the form of Approach 3's law (tied exponents, fixed values: variant.py)."""

    table: pl.DataFrame
    curves: pl.DataFrame | None
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    flops: np.ndarray
    delta: float = HUBER_DELTA
    refine: int | None = 50
    predict: list[float] = field(default_factory=list)
    variant: Variant = FREE
    flops_per_nd: float = 6.0  # k of the study's compute axis, C = k N D (table_fit.compute_axis)
    fits: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, table: pl.DataFrame, curves: pl.DataFrame | None = None, **settings) -> Study:
        """A study of a table of completed runs that has ``run_id`` and ``flops`` (see fit_table)."""
        params, tokens, loss, flops = (table[c].to_numpy().astype(float) for c in ("params", "tokens", "loss", "flops"))
        return cls(table, curves, params, tokens, loss, flops, **settings)

    @property
    def units(self) -> np.ndarray:
        """The independent unit of each point, as an integer code: its training run (a WSD run's cooldown
        branches share their trunk's initialisation, data order and weights; each seed is its own run),
        or the point itself where the table names no training run."""
        if "training_run" not in self.table.columns:
            return np.arange(self.table.height)
        return self.table["training_run"].cast(pl.String).fill_null("").rank("dense").to_numpy().astype(int) - 1

    def budgets(self) -> np.ndarray:
        """compute_budget as floats, NaN where null; FitError when the study has no budgets."""
        if "compute_budget" not in self.table.columns or self.table["compute_budget"].drop_nulls().len() == 0:
            raise FitError(
                "no IsoFLOP budgets in this study (compute_budget is null for every run: a grid of "
                "model sizes and token counts, not of compute budgets)"
            )
        return self.table["compute_budget"].cast(pl.Float64).fill_null(float("nan")).to_numpy()


@dataclass
class Resample:
    """One bootstrap resample as an approach's ``refit`` sees it (in a worker process).

    ``runs`` holds every run's arrays (params, tokens, loss, flops, log_n, log_d,
    log_loss, budget); ``rows`` the runs drawn with replacement. An approach that
    draws its own resamples (``prepare``) finds its draw in ``own``, and what it
    prepared once for every refit in ``shared``."""

    index: int
    rows: np.ndarray
    runs: dict[str, np.ndarray]
    delta: float
    own: Any = None
    shared: Any = None

    def column(self, name: str) -> np.ndarray:
        return self.runs[name][self.rows]


@dataclass
class Prepared:
    """An approach's bootstrap set-up: shared data, its own draw per resample (or None), and
    notes for the bootstrap section."""

    shared: Any = None
    own: list | None = None
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Approach:
    """The registry's record of one approach.

    name: its section in fits.json. title: how people call it.
    required: a FitError stops the whole fit (exit 1) instead of recording {"skipped": why}.
    fit(study) -> the section.
    summary(section, show) -> the CLI line; show(key, digits=4) prints section[key] with its interval.
    refit(resample) -> {quantity: value} on one bootstrap resample, FitError when it cannot be
        fitted (None: not bootstrapped).
    prepare(study, section, rng, samples, options) -> Prepared: the approach's own resamples, drawn
        from ``rng`` in registry order after the run rows; options: the bootstrap's verify settings.
    parameters: the section's keys in the parameters table.
    allocates: the section holds an allocation law (a, b, k_n, k_d; allocation.py).
    law(section, N, D) -> loss, for an approach that predicts the loss itself.
    compute_curve(section, C) -> loss, the approach's loss against compute (report).
    bootstrap_warnings(section, intervals) -> warnings the bootstrap intervals give about the
        section's parameters (added to its ``warnings``)."""

    name: str
    title: str
    required: bool
    fit: Callable[[Study], dict]
    summary: Callable[[dict, Callable], str]
    refit: Callable[[Resample], dict] | None = None
    prepare: Callable[[Study, dict, np.random.Generator, int, dict], Prepared] | None = None
    parameters: tuple[str, ...] = ()
    allocates: bool = False
    law: Callable[[dict, Any, Any], np.ndarray] | None = None
    compute_curve: Callable[[dict, np.ndarray], np.ndarray] | None = None
    bootstrap_warnings: Callable[[dict, dict], list[str]] | None = None
