"""Configs whose runs' spec texts are pinned, as SHA-256 digests, in tests/data/spec_json_sha256.json.

Snakemake reruns a run whenever its text changes, so they change only on purpose:
first pinned from the dict-based grid expansion before RunSpec existed, then once
more when the execution settings (device, logging, checkpoint interval, ...)
and the FLOP convention left the text. After such a deliberate change, re-pin
with `python tests/spec_variants.py` and say why in the commit.
Besides the shipped configs, a few variants of config/tiny.yaml reach the
settings the shipped ones leave at defaults (WSD, LSTM shapes, scaling rules,
overrides, IsoFLOP runs).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "spec_json_sha256.json"


def merged(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base``, key by key (as Snakemake merges --configfile over config/config.yaml)."""
    return {
        k: merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        for k, v in {**base, **overlay}.items()
    }


def shipped_configs() -> dict[str, dict]:
    """Every shipped config; an overlay (a file without a work_dir: a whole study names one) over
    config/config.yaml."""
    paths = [REPO / "config" / "config.yaml", REPO / "config" / "tiny.yaml"]
    paths += sorted((REPO / "config" / "experiments").glob("*.yaml"))
    default = yaml.safe_load(paths[0].read_text())
    configs = {}
    for path in paths:
        config = yaml.safe_load(path.read_text())
        configs[str(path.relative_to(REPO))] = config if "work_dir" in config else merged(default, config)
    return configs


def variant_configs() -> dict[str, dict]:
    tiny = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())

    def variant(change) -> dict:
        config = copy.deepcopy(tiny)
        change(config["train"])
        return config

    return {
        "tiny+wsd": variant(lambda t: t.update(schedule="wsd")),
        "tiny+lstm-shape": variant(
            lambda t: t["grid"]["shapes"].append({"family": "lstm", "n_layer": 1, "d_model": 32, "n_head": 2})
        ),
        "tiny+scaling": variant(
            lambda t: t.update(scaling={"reference_params": 20_000, "lr_exponent": -1 / 3, "batch_exponent": 0.5})
        ),
        "tiny+overrides": variant(
            lambda t: t.update(
                overrides={"L1-d32-h2_D32k_s0": {"lr": 0.01, "log_every": 4, "batch_tokens": 1024, "devices": 2}}
            )
        ),
        "tiny+isoflop": variant(
            lambda t: t.update(
                isoflop={
                    "compute_budgets": [1e10, 2.5e10],
                    "shapes": [
                        {"n_layer": 1, "d_model": 32, "n_head": 2},
                        {"family": "lstm", "n_layer": 1, "d_model": 32},
                    ],
                    "seeds": [0, 1],
                }
            )
        ),
    }


def all_configs() -> dict[str, dict]:
    return {**shipped_configs(), **variant_configs()}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pin() -> None:
    """Write the digests of today's spec texts (after a deliberate change: see the module docstring)."""
    import json
    import sys

    sys.path.insert(0, str(REPO))
    from workflow.config import expand_runs

    pinned = {
        name: {run_id: digest(spec.to_json()) for run_id, spec in sorted(expand_runs(config).items())}
        for name, config in sorted(all_configs().items())
    }
    FIXTURE.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    pin()
