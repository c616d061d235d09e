import json
import math
import subprocess
import sys

import polars as pl
import pytest

from helpers import tiny_spec
from workflow.flops import all_conventions
from workflow.io import read_json
from workflow.train import APEX_INSTALL_HINT, TrainError, lr_at, resolve_kernels, train_run


def test_schedule_warms_up_then_decays_to_the_floor():
    optim = {"lr": 1.0, "min_lr_ratio": 0.1, "warmup_fraction": 0.1}
    lrs = [lr_at(s, 100, optim) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_run_learns_and_records_everything(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=40_960)
    summary = train_run(spec, dataset_manifest, tmp_path / "run", tmp_path / "work" / "model.pt")
    metrics = pl.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics.columns == ["step", "tokens", "flops", "train_loss", "lr", "elapsed_s", "tokens_per_s"]
    assert metrics["train_loss"][-1] < metrics["train_loss"][0] - 0.5
    assert summary["status"] == "completed"
    assert summary["tokens_trained"] == metrics["tokens"][-1] == 80 * 16 * 32
    assert summary["flops"]["6N"] == summary["tokens_trained"] * all_conventions(**spec["model"])["6N"]
    assert set(summary["parameters"]) == {"total", "non_embedding", "embedding", "head"}
    for key in ("device", "kernels", "seed", "versions", "flop_convention", "precision"):
        assert key in summary
    assert summary["device"] == "cpu" and summary["kernels"] == "torch" and summary["precision"] == "fp32"
    assert read_json(tmp_path / "run" / "summary.json") == json.loads(json.dumps(summary))
    assert (tmp_path / "work" / "model.pt").exists()


def test_same_seed_same_trajectory(dataset_manifest, tmp_path):
    losses = []
    for name in ("a", "b"):
        train_run(tiny_spec(), dataset_manifest, tmp_path / name, tmp_path / name / "model.pt")
        losses.append(pl.read_csv(tmp_path / name / "metrics.csv")["train_loss"].to_list())
    assert losses[0] == losses[1]


def test_divergence_marks_the_run_and_succeeds(dataset_manifest, tmp_path):
    spec = tiny_spec(lr=1e3, grad_clip=1e6, warmup_fraction=0.0, tokens=40_960)
    result = subprocess.run(
        [sys.executable, "-m", "workflow.train", "--spec", json.dumps(spec), "--dataset", str(dataset_manifest),
         "--out-dir", str(tmp_path / "run"), "--model", str(tmp_path / "model.pt")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "marked diverged" in result.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "diverged"
    assert summary["steps"] < 80
    assert not math.isfinite(summary["final_train_loss"]) or summary["final_train_loss"] > 2 * math.log(384) / 2


def test_token_budget_above_the_dataset_is_refused(dataset_manifest, tmp_path):
    with pytest.raises(TrainError, match="run L1-d32-h2_D20k_s0: token budget 10000000000 exceeds"):
        train_run(tiny_spec(tokens=10**10), dataset_manifest, tmp_path / "run", tmp_path / "model.pt")
    assert not (tmp_path / "run").exists()


def test_apex_requested_without_apex_fails_with_install_hint():
    pytest.importorskip("torch")
    try:
        import apex  # noqa: F401
        pytest.skip("apex is installed here")
    except ImportError:
        pass
    import torch

    with pytest.raises(TrainError) as info:
        resolve_kernels("apex", torch.device("cpu"))
    assert str(info.value) == APEX_INSTALL_HINT
    assert "nvidia-apex" in APEX_INSTALL_HINT and "source" in APEX_INSTALL_HINT
    assert resolve_kernels("auto", torch.device("cpu")) == "torch"
    assert resolve_kernels("torch", torch.device("cpu")) == "torch"


def test_killed_run_leaves_no_output_that_looks_complete(dataset_manifest, tmp_path):
    import signal
    import time

    spec = tiny_spec(tokens=200_000, allow_repeated_epochs=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "workflow.train", "--spec", json.dumps(spec), "--dataset", str(dataset_manifest),
         "--out-dir", str(tmp_path / "run"), "--model", str(tmp_path / "work" / "model.pt")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        for line in process.stdout:  # wait until training is under way
            if "step" in line or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    for name in ("run/summary.json", "run/metrics.csv", "work/model.pt"):
        assert not (tmp_path / name).exists()
