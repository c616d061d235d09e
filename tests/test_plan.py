"""The plan before submission (workflow.plan): the CLI on every shipped config, runs that do not fit,
and the Slurm request of a run. The memory model itself is tests/test_memory.py's."""

import subprocess
import sys
import time
from dataclasses import replace

import pytest
from helpers import REPO, tiny_spec
from spec_variants import shipped_configs

from workflow.plan import slurm_request


def plan(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflow.plan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("config", sorted(shipped_configs()))
def test_plan_runs_on_every_shipped_config(config):
    args = [] if config == "config/config.yaml" else ["--configfile", config]
    start = time.perf_counter()
    result = plan(*args)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "params", "PaLM"] and lines[-1].startswith("total: ")
    if "tinystories" in config:
        # 49 grid runs and 30 sweep runs, each with its memory, hours and Slurm request.
        assert "total: 79 runs" in lines[-1] and sum("--gpus=1" in line for line in lines) == 79


def test_a_run_that_cannot_fit_fails_the_plan_naming_it_and_what_fits():
    result = plan("--configfile", "config/experiments/tinystories_isoflop_gpu.yaml", "--device-memory-gb", "6")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert errors and all(line.startswith("error: run ") for line in errors)
    assert any("L24-d1536-h16" in line and "micro_batch_size" in line for line in errors)
    assert "6 GiB per GPU" in errors[0]
    # The table is still printed: what each run needs is what the user must see.
    assert result.stdout.splitlines()[-1].startswith("total: ")


def test_a_cpu_study_is_checked_against_the_host_memory_it_asks_for(tmp_path):
    config = tmp_path / "small_host.yaml"
    config.write_text("train: {device: cpu}\nresources: {train: {mem_mb: 1}}\n")
    result = plan("--configfile", str(config))
    assert result.returncode == 1
    assert "more than resources.train.mem_mb = 1 MB" in result.stderr


def test_slurm_request_of_a_multi_node_run_asks_for_a_task_and_the_gpus_of_each_node():
    spec = tiny_spec()
    cluster = {"train_flops_per_s": 1e12, "runtime_factor": 2, "min_runtime_minutes": 10}
    gpu = replace(spec, execution=replace(spec.execution, device="cuda", devices=4, nodes=2))
    assert "--nodes=2 --ntasks=2 --gres=gpu:4 --cpus-per-task=" in slurm_request(gpu, cluster, 1000)
    assert "--gpus=4 " in slurm_request(replace(gpu, execution=replace(gpu.execution, nodes=1)), cluster, 1000)
