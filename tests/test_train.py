import json
import math
import re
import signal
import subprocess
import time
from dataclasses import replace

import polars as pl
import pytest
import torch
from helpers import tiny_spec, train_cli

from workflow.families import all_conventions
from workflow.files import read_json
from workflow.train.errors import TrainError
from workflow.train.kernels import APEX_INSTALL_HINT, peak_flops_per_s, resolve_kernels
from workflow.train.schedule import lr_multiplier, wsd_multiplier
from workflow.train.trainer import train_run


def losses(root):
    return pl.read_csv(root / "run" / "metrics.csv")["train_loss"].to_list()


def weights(root, point):
    return torch.load(root / "work" / "weights" / f"{point}.pt", weights_only=True)["model"]


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_multiplier(s, 100, warmup=10, floor=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_wsd_schedule():
    assert wsd_multiplier(0, 10, None, 0.1) == pytest.approx(0.1)
    assert wsd_multiplier(50, 10, None, 0.1) == 1.0
    assert wsd_multiplier(79, 10, (80, 100), 0.1) == 1.0
    assert wsd_multiplier(99, 10, (80, 100), 0.1) == pytest.approx(0.1)


def test_peak_flops():
    assert peak_flops_per_s(torch.device("cpu"), None) is None
    assert peak_flops_per_s(torch.device("cpu"), 1e12) == 1e12


def test_run_learns_and_records_everything(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=40_960)
    summary = train_run(spec, dataset_manifest, tmp_path / "run", tmp_path / "work" / "weights")
    metrics = pl.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics.columns == [
        "step",
        "tokens",
        "train_loss",
        "lr",
        "elapsed_s",
        "tokens_per_s",
        "mfu",
        "data_wait_fraction",
    ]
    assert metrics["train_loss"][-1] < metrics["train_loss"][0] - 0.5
    assert summary["status"] == "completed"
    assert summary["tokens_trained"] == metrics["tokens"][-1] == 80 * 512
    assert summary["flops"]["6N"] == summary["tokens_trained"] * all_conventions(spec.model)["6N"]
    assert set(summary["parameters"]) == {"total", "non_embedding", "embedding", "head"}
    assert summary["device"] == "cpu" and summary["kernels"] == "torch" and summary["precision"] == "fp32"
    assert summary["kernel_components"]["optimizer"] == "torch.AdamW"
    assert summary["kernel_components"]["norm"] == "torch.RMSNorm"
    assert summary["mfu"] is None and summary["peak_flops_per_s"] is None  # no known peak for a CPU
    assert 0 <= summary["data_wait_fraction"] < 1
    assert [p["point_id"] for p in summary["points"]] == [spec.run_id]
    assert read_json(tmp_path / "run" / "summary.json") == json.loads(json.dumps(summary))
    # The spec is recorded as the plain dict it always was: the settings' canonical text, parsed.
    assert read_json(tmp_path / "run" / "summary.json")["spec"] == json.loads(spec.to_json())
    assert (tmp_path / "work" / "weights" / f"{spec.run_id}.pt").exists()
    assert not (tmp_path / "work" / "checkpoint.pt").exists()  # removed once the run is complete


def test_gradient_accumulation_matches_one_large_batch(dataset_manifest, tmp_path):
    whole = train_run(tiny_spec(micro_batch_size=16), dataset_manifest, tmp_path / "a", tmp_path / "a" / "w")
    split = train_run(tiny_spec(micro_batch_size=4), dataset_manifest, tmp_path / "b", tmp_path / "b" / "w")
    assert split["gradient_accumulation"] == 4 and whole["gradient_accumulation"] == 1
    a = pl.read_csv(tmp_path / "a" / "metrics.csv")["train_loss"].to_list()
    b = pl.read_csv(tmp_path / "b" / "metrics.csv")["train_loss"].to_list()
    assert a == pytest.approx(b, rel=1e-4)


def test_same_seed_same_trajectory(dataset_manifest, tmp_path):
    for name in ("a", "b"):
        train_run(tiny_spec(), dataset_manifest, tmp_path / name, tmp_path / name / "w")
    assert (
        pl.read_csv(tmp_path / "a" / "metrics.csv")["train_loss"].to_list()
        == pl.read_csv(tmp_path / "b" / "metrics.csv")["train_loss"].to_list()
    )


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(dataset_manifest, tmp_path):
    """Kill the process after a checkpoint, start it again: the same losses and weights, bit for bit."""
    spec = tiny_spec(tokens=64_000, checkpoint_every=20, log_every=5)
    assert train_cli(spec, dataset_manifest, tmp_path / "whole").returncode == 0

    root = tmp_path / "killed"
    process = train_cli(spec, dataset_manifest, root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (root / "work" / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (root / "run" / "summary.json").exists()
    resumed = train_cli(spec, dataset_manifest, root)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the checkpoint at step" in resumed.stdout
    assert read_json(root / "run" / "summary.json")["resumed_from_step"] > 0
    assert losses(root) == losses(tmp_path / "whole")
    final, reference = weights(root, spec.run_id), weights(tmp_path / "whole", spec.run_id)
    assert all(torch.equal(final[k], reference[k]) for k in reference)


@pytest.mark.faults
def test_sigterm_checkpoints_then_exits_and_the_rerun_resumes(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=128_000, checkpoint_every=10_000, log_every=5)
    process = train_cli(spec, dataset_manifest, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "step" in process.stdout.readline()  # training is under way (first progress line)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received; checkpoint saved at step" in err, err
    assert (tmp_path / "work" / "checkpoint.pt").exists(), err
    assert not (tmp_path / "run" / "summary.json").exists()
    rerun = train_cli(spec, dataset_manifest, tmp_path)
    assert rerun.returncode == 0 and "resumed from the checkpoint" in rerun.stdout
    assert read_json(tmp_path / "run" / "summary.json")["steps"] == 250
    # Stopped at any step (not only at a metrics row), the resumed run is the uninterrupted one.
    assert train_cli(spec, dataset_manifest, tmp_path / "whole").returncode == 0
    assert losses(tmp_path) == losses(tmp_path / "whole")


def test_wsd_run_yields_a_point_per_budget(dataset_manifest, tmp_path):
    spec = replace(
        tiny_spec(schedule="wsd", tokens=64_000),
        run_id="L1-d32-h2_WSD64k_s0",
        branch_tokens=(16_000, 32_000, 64_000),
        branch_compute_budgets=(None, 2.5e9, None),  # a branch of an IsoFLOP budget is named after it
    )
    summary = train_run(spec, dataset_manifest, tmp_path / "run", tmp_path / "work" / "weights")
    points = summary["points"]
    assert [p["point_id"] for p in points] == [
        "L1-d32-h2_WSD64k_s0@D16k",
        "L1-d32-h2_WSD64k_s0@C2.5e9",
        "L1-d32-h2_WSD64k_s0@D64k",
    ]
    assert [p["compute_budget"] for p in points] == [None, 2.5e9, None]
    assert [p["steps"] for p in points] == [31, 62, 125]
    for point in points:
        rows = point["cooldown_rows"]
        assert rows[-1]["step"] == point["steps"]
        assert rows[-1]["lr"] == pytest.approx(spec.optim.lr * spec.optim.min_lr_ratio)
        assert (tmp_path / "work" / "weights" / point["weights"]).exists()
    # Longer cooldown branches reach lower loss.
    assert points[0]["final_train_loss"] > points[1]["final_train_loss"] > points[2]["final_train_loss"]


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_warmup_tokens_set_the_warmup_steps(dataset_manifest, tmp_path, schedule):
    """train.warmup_tokens = 5000: ceil(5000 / 512) = 10 steps of warmup, whatever the run's budget
    (warmup_fraction 0.05 of its 40 steps would be 2)."""
    spec = tiny_spec(schedule=schedule, tokens=20_480, warmup_tokens=5_000, log_every=1)
    summary = train_run(spec, dataset_manifest, tmp_path / "run", tmp_path / "work" / "weights")
    assert summary["warmup_steps"] == 10 and summary["spec"]["warmup_tokens"] == 5_000
    lr = pl.read_csv(tmp_path / "run" / "metrics.csv")["lr"].to_list()  # row k: the lr of step k (from 1)
    assert lr[:10] == pytest.approx([spec.optim.lr * k / 10 for k in range(1, 11)])
    assert lr[10] == pytest.approx(spec.optim.lr)  # the peak, from the first step past the warmup


def test_lstm_family_trains(dataset_manifest, tmp_path):
    spec = replace(tiny_spec(family="lstm"), run_id="lstm-L1-d32_D32k_s0")
    summary = train_run(spec, dataset_manifest, tmp_path / "run", tmp_path / "w")
    assert summary["family"] == "lstm" and summary["kernel_components"]["attention"] == "torch.LSTM"
    metrics = pl.read_csv(tmp_path / "run" / "metrics.csv")
    assert metrics["train_loss"][-1] < metrics["train_loss"][0] - 0.5


def test_divergence_marks_the_run_and_succeeds(dataset_manifest, tmp_path):
    spec = tiny_spec(lr=1e3, grad_clip=1e6, warmup_fraction=0.0, tokens=40_960)
    result = train_cli(spec, dataset_manifest, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "marked diverged" in result.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "diverged" and summary["points"][0]["status"] == "diverged"
    assert summary["steps"] < 80
    assert not math.isfinite(summary["final_train_loss"]) or summary["final_train_loss"] > math.log(384)


def test_token_budget_above_the_dataset_is_refused(dataset_manifest, tmp_path):
    with pytest.raises(TrainError, match="run L1-d32-h2_D32k_s0: token budget 10000000000 exceeds"):
        train_run(tiny_spec(tokens=10**10), dataset_manifest, tmp_path / "run", tmp_path / "w")
    assert not (tmp_path / "run").exists()


def test_kernel_selection():
    try:
        import apex  # noqa: F401

        pytest.skip("apex is installed here")
    except ImportError:
        pass
    with pytest.raises(TrainError) as info:
        resolve_kernels("apex", torch.device("cpu"))
    assert str(info.value) == APEX_INSTALL_HINT
    assert "nvidia-apex" in APEX_INSTALL_HINT and "source" in APEX_INSTALL_HINT
    assert resolve_kernels("auto", torch.device("cpu")) == "torch"
    assert resolve_kernels("torch", torch.device("cpu")) == "torch"


def test_apex_request_fails_the_run_at_start(dataset_manifest, tmp_path):
    result = train_cli(tiny_spec(kernels="apex"), dataset_manifest, tmp_path)
    assert result.returncode == 1
    assert "error: NVIDIA Apex is not importable" in result.stderr or "apex kernels need CUDA" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "work").exists()


def test_compiled_model_trains_like_eager(dataset_manifest, tmp_path):
    eager = train_run(tiny_spec(tokens=8_192), dataset_manifest, tmp_path / "a", tmp_path / "a" / "w")
    compiled = train_run(tiny_spec(tokens=8_192, compile=True), dataset_manifest, tmp_path / "b", tmp_path / "b" / "w")
    assert compiled["kernel_components"]["compile"] is True and eager["kernel_components"]["compile"] is False
    a = pl.read_csv(tmp_path / "a" / "metrics.csv")["train_loss"].to_list()
    b = pl.read_csv(tmp_path / "b" / "metrics.csv")["train_loss"].to_list()
    assert a == pytest.approx(b, rel=1e-3)


@pytest.mark.faults
def test_ddp_refuses_a_batch_that_does_not_divide(dataset_manifest, tmp_path):
    """Refused before torchrun starts, in one line. Refused by the training processes instead, both ranks
    said so and torchrun named whichever it saw fail first, so the output depended on the machine's load."""
    spec = tiny_spec(tokens=16_384, micro_batch_size=16, devices=2)  # 1 micro-batch per step
    result = train_cli(spec, dataset_manifest, tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: run {spec.run_id}: 1 micro-batches per step (batch_tokens 512 / (micro_batch_size 16 x seq_len 32)) "
        "do not divide among 2 devices; change train.micro_batch_size"
    ], result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "work").exists()


@pytest.mark.faults
def test_a_training_process_that_fails_is_reported_in_one_line_by_torchrun(dataset_manifest, tmp_path):
    """A refusal only the processes can make (the dataset's size): each rank says it in one line, and
    torchrun's report (workflow.launch) is one line too, not a traceback burying theirs. torchrun names
    the rank it saw fail first (rank 1 whenever it is the faster one) and stops the other."""
    spec = tiny_spec(tokens=10**10, micro_batch_size=8, devices=2)
    result = train_cli(spec, dataset_manifest, tmp_path)
    assert result.returncode == 1
    assert f"error: run {spec.run_id}: token budget 10000000000 exceeds" in result.stderr
    assert re.search(r"^error: training process [01] of workflow.train exited with status 1; ", result.stderr, re.M)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.faults
def test_ddp_run_checkpoints_on_sigterm_and_resumes(dataset_manifest, tmp_path):
    """Slurm signals the job's process, which under devices=2 is torchrun: it passes
    SIGTERM to both ranks, which stop at the same step; rank 0 checkpoints."""
    spec = tiny_spec(tokens=128_000, micro_batch_size=4, checkpoint_every=10_000, log_every=5, devices=2, threads=2)
    process = train_cli(spec, dataset_manifest, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "step" in process.stdout.readline()  # training is under way (rank 0's first progress line)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "SIGTERM received; checkpoint saved at step" in err, err
    assert (tmp_path / "work" / "checkpoint.pt").exists(), err
    assert not (tmp_path / "run" / "summary.json").exists()
    rerun = train_cli(spec, dataset_manifest, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from the checkpoint" in rerun.stdout
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["steps"] == 250 and summary["resumed_from_step"] > 0
    whole = train_cli(spec, dataset_manifest, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert losses(tmp_path) == pytest.approx(losses(tmp_path / "whole"), rel=1e-6)


@pytest.mark.slow
def test_two_processes_replicated_or_sharded_match_one_device(dataset_manifest, tmp_path):
    """devices=2 on the CPU: the CLI becomes torchrun with 2 gloo processes, each taking half of every
    step's micro-batches, under DDP (shard: none) or FSDP2 (shard: full, each process holding half of
    every parameter and AdamW state). Losses and weights match a single process up to floating-point
    noise (summation order)."""
    single = tiny_spec(tokens=16_384, micro_batch_size=4, threads=2)
    one = train_run(single, dataset_manifest, tmp_path / "one" / "run", tmp_path / "one" / "work" / "weights")
    assert one["gradient_accumulation"] == 4 and one["devices"] == 1 and one["sharding"] == "none"
    point = one["points"][0]["point_id"]
    for shard in ("none", "full"):
        spec = replace(single, execution=replace(single.execution, devices=2, shard=shard))
        result = train_cli(spec, dataset_manifest, tmp_path / shard)
        assert result.returncode == 0, result.stderr
        summary = read_json(tmp_path / shard / "run" / "summary.json")
        assert summary["devices"] == 2 and summary["distributed_backend"] == "gloo"
        assert summary["sharding"] == shard, summary["sharding_reason"]
        assert losses(tmp_path / shard) == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
        for name, tensor in weights(tmp_path / "one", point).items():
            torch.testing.assert_close(weights(tmp_path / shard, point)[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_sharded_checkpoint_resumes_on_another_number_of_devices(dataset_manifest, tmp_path):
    """A sharded run stopped by SIGTERM leaves a torch.distributed.checkpoint directory written by both
    processes; the run resumes from it at the same step on one device, and again from that device's
    checkpoint as 2 sharded processes; every loss matches the uninterrupted run."""
    spec = tiny_spec(tokens=64_000, micro_batch_size=4, checkpoint_every=10_000, log_every=5, threads=2)
    sharded = replace(spec, execution=replace(spec.execution, devices=2, shard="full"))
    whole = train_cli(spec, dataset_manifest, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    process = train_cli(sharded, dataset_manifest, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "step" in process.stdout.readline()  # under way (rank 0's first progress line)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "checkpoint saved at step" in err, err
    checkpoint = tmp_path / "work" / "checkpoint.dcp"
    assert (checkpoint / ".metadata").exists() and not (tmp_path / "work" / "checkpoint.pt").exists()
    assert len(list(checkpoint.glob("*.distcp"))) == 2  # one file of shards per process

    one_device = train_cli(spec, dataset_manifest, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = one_device.stdout.readline()
    assert "resumed from the checkpoint at step" in line and "(sharded, written by 2 processes)" in line, line
    one_device.send_signal(signal.SIGTERM)
    _, err = one_device.communicate(timeout=120)
    assert one_device.returncode == 128 + signal.SIGTERM, err
    assert (tmp_path / "work" / "checkpoint.pt").exists() and not checkpoint.exists()

    resumed = train_cli(sharded, dataset_manifest, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the checkpoint at step" in resumed.stdout
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["sharding"] == "full" and summary["resumed_from_step"] > 0
    assert losses(tmp_path) == pytest.approx(losses(tmp_path / "whole"), rel=1e-5)
    assert not checkpoint.exists() and not (tmp_path / "work" / "checkpoint.pt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_sharded_wsd_run_matches_one_device_at_every_branch(dataset_manifest, tmp_path, family):
    """Each cooldown branch of a sharded WSD run trains from a copy of the sharded state and restores
    it; every loss of the stable run and of each branch matches one device. The GPT shards per block;
    the LSTM, with no blocks, as one unit. (Weights are compared in the cosine test: over these longer
    runs AdamW turns summation-order noise into differences of order lr, under DDP alike.)"""
    spec = replace(
        tiny_spec(schedule="wsd", tokens=24_576, micro_batch_size=4, threads=2, family=family, n_layer=2),
        run_id="L2-d32-h2_WSD24k_s0" if family == "gpt" else "lstm-L2-d32_WSD24k_s0",
        branch_tokens=(8_192, 24_576),
    )
    one = train_run(spec, dataset_manifest, tmp_path / "one" / "run", tmp_path / "one" / "work" / "weights")
    sharded = replace(spec, execution=replace(spec.execution, devices=2, shard="full"))
    result = train_cli(sharded, dataset_manifest, tmp_path / "two")
    assert result.returncode == 0, result.stderr
    two = read_json(tmp_path / "two" / "run" / "summary.json")
    assert two["sharding"] == "full" and len(two["points"]) == 2
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    for mine, reference in zip(two["points"], one["points"]):
        branch = [row["train_loss"] for row in mine["cooldown_rows"]]
        assert branch == pytest.approx([row["train_loss"] for row in reference["cooldown_rows"]], rel=1e-5)
