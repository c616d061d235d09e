"""Arms of a study: named overlays of settings on the base study, each trained, evaluated and fitted
on its own, then compared with the baseline arm (issue 27).

    arms:
      baseline: gpt
      overlays:
        gpt: {}
        lstm: {train: {family: lstm, lr: 0.003}}

Each arm's settings are the study's with its overlay merged in (mappings key by key, a list replaced
whole, as config overlays are). An overlay may set only what makes a comparison (``ARM_SETTINGS``):
the model family and the settings of every size, the optimizer and schedule, the grid, the tokenizer
and the corpus. How runs are executed, the dataset split, evaluation and the fit stay the study's, so
that every arm is measured with one yardstick. Its runs' ids start with the arm's name
(``workflow.names.arm_run_id``); its corpus, tokenizer and dataset are keyed by their settings like any study's
(``workflow.names.artefact_keys``), so arms with the same corpus and tokenizer share those stages.

Imports the standard library only (the Snakefile imports it through ``workflow.config``).
"""

from __future__ import annotations

import copy
import re

# What an overlay may set, by section. train: settings that are the same for every size (the family,
# norm, positions, mlp_ratio ...), the optimizer and schedule, and the grid; not seq_len (every arm is
# scored on windows of one length), not how runs are executed (device, threads, logging: never a
# run's result), not overrides (keyed by full run ids, at the study's train.overrides).
ARM_SETTINGS = {
    "train": (
        "family", "mlp_ratio", "norm", "positions", "tie_embeddings", "bias",
        "lr", "scaling", "min_lr_ratio", "warmup_fraction", "warmup_tokens", "schedule", "wsd_decay_fraction",
        "weight_decay", "beta1", "beta2", "eps", "grad_clip", "batch_tokens", "micro_batch_size", "data_order",
        "grid", "isoflop",
    ),
    "tokenizer": ("vocab_size", "model_type", "sample_bytes", "seed", "character_coverage", "model_file"),
    "corpus": ("sources", "dedup"),
}  # fmt: skip
# An arm's name starts its run ids and ends at their first "_": letters, digits and "-" only.
ARM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
# The tune stage's sweep runs start with "tune_": no arm may take that name.
RESERVED_NAMES = ("tune",)


class ArmError(ValueError):
    """An arms section that cannot run; the message (one line) names the key."""


def overlays(config: dict) -> dict[str, dict]:
    """The arms' overlays by name, in the config's order; {} for a study without arms."""
    return dict((config.get("arms") or {}).get("overlays") or {})


def check_overlays(config: dict) -> None:
    """Each arm's name and overlay, before the schema: an arm setting a key outside ``ARM_SETTINGS``
    stops here in one line naming it (the schema's own message would say only that a property was not
    allowed, over many lines)."""
    arms = config.get("arms")
    if not isinstance(arms, dict):
        return
    named = arms.get("overlays")
    if not isinstance(named, dict):
        return
    for name, overlay in named.items():
        where = f"arms.overlays.{name}"
        if not isinstance(name, str) or not ARM_NAME.match(name) or name in RESERVED_NAMES:
            raise ArmError(
                f"config error at {where}: an arm's name is letters, digits and '-', starting with a letter "
                f"(it starts its run ids, up to the first '_'), and not {', '.join(RESERVED_NAMES)}"
            )
        if overlay is None:
            continue
        if not isinstance(overlay, dict):
            raise ArmError(f"config error at {where}: an arm is a mapping of settings, not {type(overlay).__name__}")
        for section, settings in overlay.items():
            if section not in ARM_SETTINGS:
                raise ArmError(
                    f"config error at {where}.{section}: an arm may set {', '.join(ARM_SETTINGS)} settings only"
                )
            if not isinstance(settings, dict):
                continue  # the schema names the wrong type
            for key in settings:
                if key not in ARM_SETTINGS[section]:
                    raise ArmError(
                        f"config error at {where}.{section}.{key}: not a setting an arm may change; an arm's "
                        f"{section} may set {', '.join(ARM_SETTINGS[section])}"
                    )


def merged(base: dict, overlay: dict) -> dict:
    """``base`` with ``overlay`` merged in: mappings key by key, anything else (a list) replaced whole."""
    result = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def arm_configs(config: dict) -> dict[str, dict]:
    """Each arm's whole config (the study's with its overlay, without the arms section), by name;
    {} for a study without arms. Each arm's train.overrides keeps the overrides of its own runs."""
    named = overlays(config)
    if not named:
        return {}
    baseline = config["arms"]["baseline"]
    if baseline not in named:
        raise ArmError(
            f"config error at arms.baseline: {baseline!r} is not an arm of arms.overlays ({', '.join(named)})"
        )
    overrides = config["train"].get("overrides") or {}
    for run_id in overrides:
        if run_id.partition("_")[0] not in named:
            raise ArmError(
                f"config error at train.overrides: {run_id!r} is not a run of any arm (an arm's run ids start "
                f"with its name and '_': {', '.join(f'{name}_' for name in named)})"
            )
    study = {key: value for key, value in config.items() if key != "arms"}
    configs = {}
    for name, overlay in named.items():
        arm = merged(study, overlay or {})
        arm["train"]["overrides"] = {k: v for k, v in overrides.items() if k.partition("_")[0] == name}
        configs[name] = arm
    return configs
