"""Checks made before any job when a study's analysis is regenerated from results/ alone
(``--config regenerate_from_results=True``).

There only the analysis rules exist, so a file they read that is missing has no job to make it:
Snakemake then kept the old tables, fits and report, and ended with "2 of 2 steps (100%) done".
And the config given is the reviewer's copy of ``results/config.yaml``: edited by hand, it no longer
says what the runs trained with, while their own ``summary.json`` still does. Each check ends the
invocation with one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from workflow.config import ConfigError
from workflow.spec import RunSpec
from workflow.tune import apply_tuning, read_tuning

LEAD = "regenerating from results/"


def missing_files(needed: Iterable[str], root: Path = Path()) -> list[str]:
    """The files of ``needed`` (paths relative to ``root``, the working directory) that do not exist."""
    return sorted(path for path in set(needed) if not (root / path).exists())


def check_files(needed: Iterable[str], root: Path = Path()) -> None:
    """Every file the analysis rules read is in results/ (``needed``: their inputs that no analysis rule makes)."""
    missing = missing_files(needed, root)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ConfigError(
            f"{LEAD}: {len(missing)} file(s) the analysis reads are missing: {shown}; copy the study's whole "
            f"results/ folder, or rerun the study without regenerate_from_results to make them"
        )


def flatten(value, prefix: str = "") -> dict[str, object]:
    """A nested dict as {dotted.key: leaf value}."""
    if isinstance(value, dict):
        flat: dict[str, object] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def config_key(run: str, path: str, config: dict) -> str:
    """The config key that sets a run's spec field: its train.overrides entry, a train key, or the field."""
    leaf = path.rsplit(".", 1)[-1]
    if leaf in config["train"]["overrides"].get(run, {}):
        return f"train.overrides.{run}.{leaf}"
    if leaf in config["train"] and not isinstance(config["train"][leaf], (dict, list)):
        return f"train.{leaf}"
    return f"the run's {path}"


def recorded_spec(summary_path: Path) -> dict | None:
    """The spec a run's summary.json records; None when there is none to compare (a damaged file is
    named and moved aside by collect, the first job that reads it)."""
    try:
        return json.loads(summary_path.read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return None


def differences(config: dict, runs: dict[str, RunSpec], tuning: dict | None, root: Path) -> list[tuple]:
    """(run, key, the config's value, the run's value) for each result-defining setting on which the config
    and a run's own summary.json disagree."""
    found = []
    for run, spec in sorted(runs.items()):
        if tuning is not None:
            spec = apply_tuning(spec, tuning, set(config["train"]["overrides"].get(run, {})))
        recorded = recorded_spec(root / "results" / "runs" / run / "summary.json")
        if recorded is None:
            continue
        ours, theirs = flatten(json.loads(spec.to_json())), flatten(recorded)
        for path in sorted(set(ours) | set(theirs)):
            if ours.get(path) != theirs.get(path):
                found.append((run, config_key(run, path, config), ours.get(path), theirs.get(path)))
    return found


def check_recorded_config(
    config: dict, runs: dict[str, RunSpec], tuning_file: str | None, configfiles: Iterable[os.PathLike], root=Path()
) -> None:
    """The config given says what each run trained with, as its summary.json records it."""
    tuning = read_tuning(root / tuning_file) if tuning_file else None
    found = differences(config, runs, tuning, root)
    if not found:
        return
    run, key, ours, theirs = found[0]
    names = ", ".join(os.path.relpath(f, root) for f in configfiles) or "the config"
    more = f" (and {len(found) - 1} more difference(s))" if len(found) > 1 else ""
    raise ConfigError(
        f"{LEAD}: run {run}: {key} is {json.dumps(ours)} in {names} but {json.dumps(theirs)} in "
        f"results/runs/{run}/summary.json, which the run trained with{more}; regenerate with the study's own "
        f"results/config.yaml, or retrain with the new value (leave out regenerate_from_results)"
    )
