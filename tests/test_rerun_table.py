"""The README's "What reruns when" table and the schema agree on which execution settings a run's
override may set (issue 29, case 13: the table listed `device`, `kernels`, `compile`, `threads` and
`peak_flops` as overridable, and the schema refused them)."""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import REPO
from snakemake.utils import validate

from workflow.config import EXECUTION_KEYS, ConfigError, check_config

SCHEMA = yaml.safe_load((REPO / "config" / "config.schema.yaml").read_text())
TRAIN = SCHEMA["properties"]["train"]["properties"]
OVERRIDE = TRAIN["overrides"]["additionalProperties"]["properties"]
PER_RUN_MARK = "(each also per run in `train.overrides`)"


def execution_row() -> tuple[list[str], list[str]]:
    """The table's row for how runs are executed: the keys it says an override may set, and the
    keys it says are the study's only."""
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if "| how runs are executed" in line)
    keys = row.split("|")[1]
    assert PER_RUN_MARK in keys, row
    per_run, study_only = keys.split(PER_RUN_MARK)
    names = lambda text: [k.removeprefix("train.") for k in re.findall(r"`([^`]+)`", text)]  # noqa: E731
    return names(per_run), names(study_only)


def test_every_execution_setting_is_in_the_table_once():
    per_run, study_only = execution_row()
    assert sorted(per_run + study_only) == sorted(EXECUTION_KEYS)


def test_the_table_and_the_schema_agree_on_what_an_override_may_set():
    per_run, study_only = execution_row()
    assert all(key in TRAIN for key in per_run + study_only)
    assert [key for key in per_run if key not in OVERRIDE] == []
    assert [key for key in study_only if key in OVERRIDE] == []
    assert sorted(set(OVERRIDE) & set(EXECUTION_KEYS)) == sorted(per_run)


@pytest.mark.parametrize("key", execution_row()[0])
def test_each_per_run_setting_reaches_its_runs_execution(config, key):
    """An override of each per-run key passes the schema and lands in that run's Execution alone."""
    value = {
        "log_every": 7,
        "checkpoint_every": 9,
        "devices": 1,
        "nodes": 1,
        "shard": "none",
        "kernels": "torch",
        "compile": True,
        "peak_flops": 1.0e15,
        "allow_repeated_epochs": True,
    }[key]
    run = "L1-d32-h2_D500k_s0"
    config["train"]["overrides"] = {run: {key: value}}
    validate(config, str(REPO / "config" / "config.schema.yaml"))
    runs = check_config(config)
    assert getattr(runs[run].execution, key) == value
    others = [spec for run_id, spec in runs.items() if run_id != run]
    assert all(getattr(spec.execution, key) == config["train"][key] for spec in others)


@pytest.mark.parametrize("key, value", [("device", "cpu"), ("threads", 2)])
def test_a_study_wide_setting_in_an_override_is_refused_naming_it(config, key, value):
    """The evaluation jobs' device and the jobs' threads come from train.device and train.threads."""
    from snakemake_interface_common.exceptions import WorkflowError

    config["train"]["overrides"] = {"L1-d32-h2_D500k_s0": {key: value}}
    with pytest.raises((WorkflowError, ConfigError), match=f"'{key}' was unexpected"):
        validate(config, str(REPO / "config" / "config.schema.yaml"))
