"""Names derived from settings: counts and FLOPs as text, run ids, point ids and artefact keys.

Every name here is a pure function of settings, so equal settings get equal names and a name is
readable without a table: ``L2-d64-h4_D500k_s0`` is a GPT of 2 layers, width 64 and 4 heads, trained
500k tokens with seed 0. Run ids are what Snakemake's wildcards, the results/ folders and the fit's
tables key on: changing a format here renames (and retrains) every run of every study.

Run ids, by the part of the config that makes them:

``SHAPE_D<tokens>_s<seed>``           a cosine run of the shapes x token budgets grid;
``SHAPE_C<budget>_s<seed>``           a cosine run of the IsoFLOP grid;
``SHAPE_WSD<tokens>_s<seed>``,
``SHAPE_WSD-C<budget>_s<seed>``       a WSD run, named after its longest cooldown branch;
``tune_SHAPE_<values>_D<tokens>_s<seed>``
                                      a sweep point of the tune stage.

In a study with arms (``workflow.arms``) every run id starts with its arm's name and ``_``
(``arm_run_id``): ``lstm_lstm-L1-d48_WSD1M_s0`` is the ``lstm`` arm's run of that shape.

A WSD run's points (its cooldown branches) are ``RUN@C<budget>`` or ``RUN@D<tokens>`` (``point_id``).

Imports the standard library, ``workflow.spec`` and ``workflow.families`` only: no torch, numpy or
polars (the Snakefile imports this module through ``workflow.config``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable

from workflow.families import get_family
from workflow.spec import ModelConfig

# The tokenizer's character_coverage at its default (the schema's, SentencePiece's; the tokenizer stage
# takes it from here): left out of the tokenizer's key, so studies from before the setting keep theirs.
CHARACTER_COVERAGE = 0.9995


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


def shape_id(model: ModelConfig) -> str:
    """The run id's model part, e.g. ``L2-d64-h4`` or ``lstm-L2-d64``."""
    return get_family(model.family).label(model)


def token_run_id(model: ModelConfig, tokens: int, seed: int) -> str:
    """A cosine run of the shapes x token budgets grid."""
    return f"{shape_id(model)}_D{format_count(tokens)}_s{seed}"


def isoflop_run_id(model: ModelConfig, compute_budget: float, seed: int) -> str:
    """A cosine run of the IsoFLOP grid."""
    return f"{shape_id(model)}_C{format_flops(compute_budget)}_s{seed}"


def wsd_run_id(model: ModelConfig, tokens: int, compute_budget: float | None, seed: int) -> str:
    """A WSD run, named after its longest branch: its tokens, or the IsoFLOP budget it trains to."""
    length = f"-C{format_flops(compute_budget)}" if compute_budget is not None else format_count(tokens)
    return f"{shape_id(model)}_WSD{length}_s{seed}"


def sweep_run_id(model: ModelConfig, values: Iterable[str], tokens: int, seed: int) -> str:
    """A sweep point of the tune stage; ``values`` are its swept settings as text, in order."""
    return "_".join(["tune", shape_id(model), *values, f"D{format_count(tokens)}", f"s{seed}"])


def arm_run_id(arm: str | None, run_id: str) -> str:
    """A run's id in its arm: ``gpt_L2-d64-h4_WSD1M_s0``; unchanged outside arms (``arm`` None)."""
    return f"{arm}_{run_id}" if arm else run_id


def point_id(run_id: str, tokens: int, schedule: str, compute_budget: float | None = None) -> str:
    """A WSD run's points are named after their budget (its IsoFLOP budget where it has one, else
    its tokens); a cosine run is its own point."""
    if schedule != "wsd":
        return run_id
    return f"{run_id}@C{format_flops(compute_budget)}" if compute_budget else f"{run_id}@D{format_count(tokens)}"


def settings_key(*parts) -> str:
    """12 hex digits naming a set of settings: equal settings, equal key."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def artefact_keys(config: dict) -> dict[str, str]:
    """Keys of the corpus, tokenizer and dataset made by this config, each covering every setting that
    produces it (and, through the one before, everything upstream). Their work-directory paths carry
    them, so two studies sharing one work_dir (scratch storage) never read each other's artefacts, and
    reuse them where their settings are the same."""
    corpus = config["corpus"]
    corpus_key = settings_key("corpus", corpus["sources"], corpus.get("dedup", False))
    tokenizer = dict(config["tokenizer"])
    # Added with a default: left out of the key at it, so that every study keeps its tokenizer.
    if tokenizer.get("character_coverage") == CHARACTER_COVERAGE:
        del tokenizer["character_coverage"]
    tokenizer_key = settings_key("tokenizer", corpus_key, tokenizer)
    dataset_key = settings_key("dataset", tokenizer_key, config["dataset"])
    return {"corpus": corpus_key, "tokenizer": tokenizer_key, "dataset": dataset_key}


def yardstick_key(base_dataset_key: str, tokenizer_key: str) -> str:
    """Key of the yardstick of one tokenizer: the base arm's validation documents (those of its
    dataset) encoded with that tokenizer (``workflow.yardstick``)."""
    return settings_key("yardstick", base_dataset_key, tokenizer_key)
