"""Tune stage: a sweep of optimizer settings per shape, at a small token budget, before the grid trains.

Porian et al. 2024 traced most of the gap between Kaplan's and Hoffmann's allocation exponents to
small models trained with untuned hyperparameters. With ``tune.enabled``, every shape listed in
``tune.shapes`` (all the study's shapes when empty) trains once per combination of ``tune.values``
(the learning rate, and optionally batch_tokens, warmup_fraction and beta2) at ``tune.tokens`` (or
``tune.tokens_per_parameter`` x N) tokens. Each of those sweep points is a training run like any
other: a Slurm job, cached, resumable, evaluated on the same validation tokens. The selection
(``python -m workflow.tune``, workflow/tune/select.py) picks each swept shape's best combination by
validation loss, fits a power law value*(N) to the chosen values, and writes results/tune/.

The grid's runs then take their settings from that result (``apply_tuning``): a swept shape its own
best values, any other shape the fitted rule. The run ids do not change; the run's spec text does,
so Snakemake retrains exactly the runs whose values changed. The Snakefile reads the result through
a checkpoint (rules/tune.smk).

This module is imported by the Snakefile: no torch, numpy or polars here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

from workflow.config import ConfigError, build_spec, check_run, model_settings
from workflow.families import parameter_counts
from workflow.names import shape_id, sweep_run_id
from workflow.spec import ModelConfig, RunSpec

# The settings a sweep may vary, each with its part of a sweep run's id. lr and batch_tokens get a
# power law in N for the shapes not swept; the others take the value of the nearest swept shape.
SWEEPABLE = {"lr": "lr", "batch_tokens": "b", "warmup_fraction": "wu", "beta2": "beta2-"}
POWER_LAW_KEYS = ("lr", "batch_tokens")
TUNING_FILE = "results/tune/tuning.json"
SWEEP_TABLE = "results/tune/sweep.csv"


def non_embedding_params(model: ModelConfig) -> int:
    """N, Kaplan's non-embedding parameter count: the tuned rules are laws in it, like train.scaling."""
    return parameter_counts(model).non_embedding


def study_shapes(runs: dict[str, RunSpec]) -> dict[str, ModelConfig]:
    """Every distinct model the study trains, keyed by its label (the run id's model part)."""
    return {shape_id(spec.model): spec.model for spec in sorted(runs.values(), key=lambda s: s.run_id)}


def value_text(key: str, value: float) -> str:
    return f"{SWEEPABLE[key]}{int(value) if key == 'batch_tokens' else f'{value:g}'}"


def swept_shapes(config: dict, runs: dict[str, RunSpec]) -> dict[str, ModelConfig]:
    """The shapes the sweep trains: tune.shapes, or every shape of the study."""
    tune = config["tune"]
    if not tune.get("shapes"):
        return study_shapes(runs)
    train, vocab_size = config["train"], config["tokenizer"]["vocab_size"]
    shapes = {}
    for i, shape in enumerate(tune["shapes"]):
        model = model_settings(train, vocab_size, shape, f"tune.shapes[{i}]")
        if shape_id(model) in shapes:
            raise ConfigError(f"config error at tune.shapes[{i}]: shape {shape_id(model)} is listed twice")
        shapes[shape_id(model)] = model
    return shapes


def sweep_tokens(tune: dict, model: ModelConfig) -> int:
    if tune.get("tokens") is not None:
        return int(tune["tokens"])
    return int(tune["tokens_per_parameter"] * non_embedding_params(model))


def check_tune(config: dict, runs: dict[str, RunSpec]) -> None:
    """What the schema cannot say: one token budget, something to sweep, and for shapes left out of
    the sweep, enough swept shapes to fit their rule."""
    tune = config["tune"]
    if (tune.get("tokens") is None) == (tune.get("tokens_per_parameter") is None):
        raise ConfigError("config error at tune: give exactly one of tune.tokens and tune.tokens_per_parameter")
    values = tune.get("values") or {}
    if not any(len(v) > 1 for v in values.values()):
        raise ConfigError("config error at tune.values: sweep at least one setting over two or more values")
    for key, listed in values.items():
        if len(set(listed)) != len(listed):
            raise ConfigError(f"config error at tune.values.{key}: a value is listed twice")
    if "warmup_fraction" in values and config["train"].get("warmup_tokens") is not None:
        raise ConfigError(
            "config error at tune.values.warmup_fraction: train.warmup_tokens is set, so every run warms up "
            "for that many tokens and warmup_fraction changes nothing; set train.warmup_tokens to null to "
            "sweep it, or leave it out of the sweep"
        )
    swept = swept_shapes(config, runs)
    unswept = sorted(set(study_shapes(runs)) - set(swept))
    if unswept and len({non_embedding_params(m) for m in swept.values()}) < 2:
        raise ConfigError(
            f"config error at tune.shapes: shapes {', '.join(unswept)} are not swept, and a rule in N for them "
            f"needs at least two swept shapes of different N"
        )


def sweep_runs(config: dict, runs: dict[str, RunSpec]) -> dict[str, RunSpec]:
    """The sweep's training runs, keyed by run id (``tune_<shape>_<values>_D<tokens>_s<seed>``); none
    unless tune.enabled."""
    tune = config.get("tune") or {}
    if not tune.get("enabled"):
        return {}
    check_tune(config, runs)
    keys = sorted(tune["values"])
    sweep = {}
    for model in swept_shapes(config, runs).values():
        tokens = sweep_tokens(tune, model)
        for combination in itertools.product(*(tune["values"][k] for k in keys)):
            values = dict(zip(keys, combination))
            run_id = sweep_run_id(model, [value_text(k, values[k]) for k in keys], tokens, tune["seed"])
            spec = build_spec(config, run_id, model, tokens, tune["seed"], "tune", None, [tokens])
            spec = dataclasses.replace(spec, optim=dataclasses.replace(spec.optim, **values))
            check_run(spec, f"tune (sweep run {run_id})")
            sweep[run_id] = spec
    return sweep


def selection_plan(config: dict, runs: dict[str, RunSpec], sweep: dict[str, RunSpec]) -> dict:
    """What the selection needs besides the sweep's losses: each sweep run's shape and values, and
    every shape of the study with its N (those not swept get the fitted rule)."""
    keys = sorted(config["tune"]["values"])
    return {
        "swept": keys,
        "values": {k: config["tune"]["values"][k] for k in keys},
        "apply": config["tune"].get("apply", "best"),
        "parameter_count": "non_embedding",
        "micro_batch_tokens": config["train"]["micro_batch_size"] * config["train"]["seq_len"],
        "shapes": {label: non_embedding_params(model) for label, model in study_shapes({**runs, **sweep}).items()},
        "sweep": {
            run_id: {
                "shape": shape_id(spec.model),
                "tokens": spec.tokens,
                "values": {k: getattr(spec.optim, k) for k in keys},
            }
            for run_id, spec in sorted(sweep.items())
        },
    }


def read_tuning(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def apply_tuning(spec: RunSpec, tuning: dict, overridden: set[str] | frozenset = frozenset()) -> RunSpec:
    """The run with the tuned settings of its shape (``tuning.json``); a setting the run's own
    train.overrides entry sets keeps the override. The spec records which settings were tuned and
    whether from the shape's own sweep or the fitted rule."""
    label = shape_id(spec.model)
    shape = tuning["shapes"].get(label)
    if shape is None:
        raise ConfigError(
            f"tune: {TUNING_FILE} has no values for shape {label} of run {spec.run_id}; it was made for "
            f"another grid: rerun the selection (snakemake --forcerun tune)"
        )
    values = {k: v for k, v in shape["values"].items() if k not in overridden}
    tuned = tuple(sorted((k, shape["source"][k]) for k in values))
    tuned_spec = dataclasses.replace(spec, optim=dataclasses.replace(spec.optim, **values), tuned=tuned)
    check_run(tuned_spec, f"tune (tuned values of shape {label})")
    return tuned_spec
