"""Regenerating from results/: the checks made before any job (workflow/regenerate.py). The faults
tier runs them through Snakemake on a finished study (tests/faults/test_study_integrity.py)."""

from __future__ import annotations

import copy
import json

import pytest
from helpers import tiny_config

from workflow.config import ConfigError, expand_runs
from workflow.regenerate import check_files, check_recorded_config


def recorded_study(root, config: dict) -> None:
    """results/runs/RUN/summary.json of every run of ``config``, recording its spec as the trainer does."""
    for run, spec in expand_runs(config).items():
        (root / "results" / "runs" / run).mkdir(parents=True)
        (root / "results" / "runs" / run / "summary.json").write_text(json.dumps({"spec": spec.result_dict()}))


def test_missing_files_are_named(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "present.json").write_text("{}")
    check_files(["results/present.json"], tmp_path)
    with pytest.raises(ConfigError) as refused:
        check_files(["results/present.json", "results/tune/tuning.json", "results/tune/sweep.csv"], tmp_path)
    assert str(refused.value).startswith(
        "regenerating from results/: 2 file(s) the analysis reads are missing: results/tune/sweep.csv, "
        "results/tune/tuning.json; "
    )


def test_the_runs_own_config_passes_and_an_edited_one_is_named(tmp_path):
    config = tiny_config()
    recorded_study(tmp_path, config)
    check_recorded_config(config, expand_runs(config), None, [tmp_path / "results" / "config.yaml"], tmp_path)
    edited = copy.deepcopy(config)
    edited["train"]["overrides"] = {"L1-d32-h2_D64k_s0": {"lr": 0.001}}
    with pytest.raises(ConfigError) as refused:
        check_recorded_config(edited, expand_runs(edited), None, [tmp_path / "results" / "config.yaml"], tmp_path)
    assert str(refused.value) == (
        "regenerating from results/: run L1-d32-h2_D64k_s0: train.overrides.L1-d32-h2_D64k_s0.lr is 0.001 in "
        "results/config.yaml but 0.004 in results/runs/L1-d32-h2_D64k_s0/summary.json, which the run trained "
        "with; regenerate with the study's own results/config.yaml, or retrain with the new value (leave out "
        "regenerate_from_results)"
    )


def test_a_damaged_summary_is_left_to_collect(tmp_path):
    """collect names a damaged summary.json and moves it aside (tests/faults); the check passes it by."""
    config = tiny_config()
    recorded_study(tmp_path, config)
    (tmp_path / "results" / "runs" / "L1-d16-h2_D32k_s0" / "summary.json").write_text('{"spec": ')
    check_recorded_config(config, expand_runs(config), None, [], tmp_path)
