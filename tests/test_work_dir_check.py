"""Two studies in one work_dir on the same data with different settings (issue 29, case 17): they shared
each run's directory and retrained each other's runs back and forth. The Snakefile now refuses the
second (workflow/work_dir_check.py), reading what the trainer records in the weights, without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import REPO, tiny_config, tiny_spec, train_cli

from workflow.work_dir_check import SharedRunError, check_shared_runs, recorded_spec

RUN = "L1-d32-h2_D32k_s0"


@pytest.fixture(scope="module")
def trained(dataset_manifest, tmp_path_factory):
    """(runs_dir, the run's summary.json): the tiny run trained by the real trainer at lr 0.004, its weights
    in runs_dir/RUN/weights as the train rule places them."""
    root = tmp_path_factory.mktemp("trained")
    spec = tiny_spec(RUN)
    assert spec.optim.lr == 0.004
    result = train_cli(spec, dataset_manifest, root)
    assert result.returncode == 0, result.stderr[-2000:]
    runs_dir = root / "runs"
    runs_dir.mkdir()
    (root / "work").rename(runs_dir / RUN)
    return runs_dir, root / "run" / "summary.json"


def test_the_recorded_settings_are_read_without_torch(trained):
    runs_dir, _ = trained
    code = (
        "import json, sys; from pathlib import Path; from workflow.work_dir_check import recorded_spec; "
        f"print(json.dumps(recorded_spec(Path({str(runs_dir / RUN / 'weights')!r})))); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    spec, torch_loaded = result.stdout.splitlines()
    assert json.loads(spec) == json.loads(tiny_spec(RUN).to_json()) and torch_loaded == "False"


def test_another_studys_settings_are_refused_naming_the_run_key_and_both_values(trained, tmp_path):
    runs_dir, _ = trained
    weights = runs_dir / RUN / "weights"
    with pytest.raises(SharedRunError) as refused:
        check_shared_runs({RUN: tiny_spec(RUN, lr=0.001)}, runs_dir, tiny_config(), results=tmp_path / "results")
    assert str(refused.value) == (
        f"config error at work_dir: run {RUN} in {weights} was trained by another study with train.lr = 0.004, "
        "this study's is 0.001; studies sharing a work_dir share each run's directory and would retrain each "
        "other's runs back and forth: give this study its own work_dir"
    )


def test_the_same_settings_or_the_studys_own_earlier_ones_pass(trained, tmp_path):
    """A second study of the same settings shares the run; a study that changed its own lr (its
    summary.json records the weights' settings) retrains it, as before."""
    runs_dir, summary = trained
    results = tmp_path / "results"
    check_shared_runs({RUN: tiny_spec(RUN)}, runs_dir, tiny_config(), results=results)
    (results / "runs" / RUN).mkdir(parents=True)
    shutil.copy(summary, results / "runs" / RUN / "summary.json")
    check_shared_runs({RUN: tiny_spec(RUN, lr=0.001)}, runs_dir, tiny_config(), results=results)


def test_weights_that_record_no_settings_or_cannot_be_read_pass(tmp_path):
    """Weights written before the pipeline recorded settings, a damaged file, no weights: nothing to
    compare (the evaluation names a damaged file)."""
    weights = tmp_path / "runs" / RUN / "weights"
    weights.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(2)}, "point_id": RUN}, weights / f"{RUN}.pt")
    assert recorded_spec(weights) is None
    (weights / f"{RUN}.pt").write_bytes(b"not a zip")
    assert recorded_spec(weights) is None
    check_shared_runs({RUN: tiny_spec(RUN, lr=0.001)}, tmp_path / "runs", tiny_config(), results=tmp_path)
    assert recorded_spec(tmp_path / "nothing") is None
