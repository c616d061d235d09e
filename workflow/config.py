"""The training grid: from config to one readable, settings-derived run id per run.

Checks that JSON Schema cannot express (n_head dividing d_model, duplicate
run ids, an IsoFLOP budget too small for a shape) also live here, so that a
bad config stops before any job runs with a message naming the key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from workflow import flops

OPTIM_KEYS = (
    "lr", "min_lr_ratio", "warmup_fraction", "weight_decay", "beta1", "beta2", "eps",
    "grad_clip", "batch_size",
)
# Keys a run may override individually through train.overrides.
OVERRIDABLE = OPTIM_KEYS + ("log_every",)


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


def format_count(value: float) -> str:
    """500000 -> '500k', 2500000 -> '2.5M'; exact, so distinct counts never collide."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            scaled = value / scale
            text = f"{scaled:.6g}"
            if float(text) * scale == value:
                return text + suffix
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def format_flops(value: float) -> str:
    """3e15 -> '3e15', 2.5e15 -> '2.5e15'."""
    exponent = int(math.floor(math.log10(value)))
    mantissa = value / 10**exponent
    return f"{mantissa:.6g}e{exponent}"


def shape_id(shape: dict) -> str:
    return f"L{shape['n_layer']}-d{shape['d_model']}-h{shape['n_head']}"


def _model(train: dict, vocab_size: int, shape: dict) -> dict:
    return {
        "vocab_size": vocab_size,
        "seq_len": train["seq_len"],
        "n_layer": shape["n_layer"],
        "d_model": shape["d_model"],
        "n_head": shape["n_head"],
        "mlp_ratio": train["mlp_ratio"],
        "bias": train["bias"],
    }


def _spec(config: dict, run_id: str, shape: dict, tokens: int, seed: int, grid: str,
          compute_budget: float | None) -> dict:
    train = config["train"]
    optim = {k: train[k] for k in OPTIM_KEYS}
    spec = {
        "run_id": run_id,
        "family": "gpt",
        "grid": grid,
        "compute_budget": compute_budget,
        "model": _model(train, config["tokenizer"]["vocab_size"], shape),
        "tokens": int(tokens),
        "seed": int(seed),
        "optim": optim,
        "device": train["device"],
        "kernels": train["kernels"],
        "threads": train["threads"],
        "log_every": train["log_every"],
        "allow_repeated_epochs": train["allow_repeated_epochs"],
        "flop_convention": config["fit"]["flop_convention"],
    }
    return spec


def check_shape(shape: dict, where: str) -> None:
    if shape["d_model"] % shape["n_head"]:
        raise ConfigError(
            f"config error at {where}: n_head={shape['n_head']} does not divide "
            f"d_model={shape['d_model']}"
        )


def expand_runs(config: dict) -> dict[str, dict]:
    """Every run of the study, keyed by run id, each with its full settings."""
    train = config["train"]
    batch_tokens = train["batch_size"] * train["seq_len"]
    runs: dict[str, dict] = {}

    def add(spec: dict, where: str) -> None:
        run_id = spec["run_id"]
        if run_id in runs:
            raise ConfigError(f"config error at {where}: duplicate run id {run_id!r}")
        runs[run_id] = spec

    grid = train["grid"]
    for i, shape in enumerate(grid["shapes"]):
        check_shape(shape, f"train.grid.shapes[{i}]")
        for j, tokens in enumerate(grid["token_budgets"]):
            if tokens < batch_tokens:
                raise ConfigError(
                    f"config error at train.grid.token_budgets[{j}]: {tokens} tokens is less "
                    f"than one step of batch_size x seq_len = {batch_tokens}"
                )
            for seed in grid["seeds"]:
                run_id = f"{shape_id(shape)}_D{format_count(tokens)}_s{seed}"
                add(_spec(config, run_id, shape, tokens, seed, "tokens", None),
                    f"train.grid.shapes[{i}]")

    iso = train["isoflop"]
    convention = config["fit"]["flop_convention"]
    for i, shape in enumerate(iso["shapes"]):
        check_shape(shape, f"train.isoflop.shapes[{i}]")
        model = _model(train, config["tokenizer"]["vocab_size"], shape)
        per_token = flops.gpt_flops_per_token(convention, **model)
        for j, budget in enumerate(iso["compute_budgets"]):
            tokens = int(budget // per_token)
            if tokens < batch_tokens:
                raise ConfigError(
                    f"config error at train.isoflop.compute_budgets[{j}]: budget {budget:g} FLOPs "
                    f"buys {tokens} tokens for shape {shape_id(shape)} ({per_token:g} FLOPs/token "
                    f"under '{convention}'), less than one step of {batch_tokens} tokens"
                )
            for seed in iso["seeds"]:
                run_id = f"{shape_id(shape)}_C{format_flops(budget)}_s{seed}"
                add(_spec(config, run_id, shape, tokens, seed, "isoflop", float(budget)),
                    f"train.isoflop.shapes[{i}]")

    for run_id, changes in train.get("overrides", {}).items():
        if run_id not in runs:
            raise ConfigError(
                f"config error at train.overrides: {run_id!r} is not a run of this grid "
                f"(runs: {', '.join(sorted(runs)) or 'none'})"
            )
        for key, value in changes.items():
            if key in OPTIM_KEYS:
                runs[run_id]["optim"][key] = value
            else:
                runs[run_id][key] = value

    if not runs:
        raise ConfigError("config error at train: the grid defines no runs")
    return runs


def spec_json(spec: dict) -> str:
    """Canonical text of a run's settings: Snakemake reruns a run when it changes."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def check_config(config: dict) -> dict[str, dict]:
    """Semantic checks beyond the schema; returns the expanded runs."""
    sources = config["corpus"]["sources"]
    names = [s["name"] for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"config error at corpus.sources: duplicate source name {name!r}")
    return expand_runs(config)


def source_file(module: str) -> str:
    """Path of a stage's module, for rules that rerun when their analysis code changes."""
    return str(Path(__file__).with_name(f"{module}.py"))
