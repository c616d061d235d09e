"""The pipeline through `snakemake --profile slurm` on a real Slurm cluster.

CI starts a cluster of two node entries on its one host (.ci/slurm-cluster.sh) and sets REQUIRE_SLURM=1,
so there these tests must run; elsewhere they skip when sbatch is absent.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import polars as pl
import pytest
import yaml
from helpers import REPO, copy_pipeline, snakemake, work_path, write_config

from workflow.config import expand_runs
from workflow.files import read_json
from workflow.train.trainer import train_run

pytestmark = pytest.mark.slurm
if shutil.which("sbatch") is None:
    if os.environ.get("REQUIRE_SLURM") == "1":
        raise RuntimeError("REQUIRE_SLURM=1 but sbatch is not on PATH")
    pytest.skip("no Slurm here (sbatch not found)", allow_module_level=True)

PARTITION = os.environ.get("SLURM_TEST_PARTITION", "ci")
# Site overrides for a small CPU-only test cluster: squeue for status (no
# accounting storage), quick status polling. Threads and memory come from the
# study's config (SMALL_CLUSTER below), as they would on a real cluster.
OVERRIDES = [
    "--profile",
    "slurm",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
    "--default-resources",
    f"slurm_partition={PARTITION}",
    "runtime=10",
    "--jobs",
    "4",
]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: .*/rule_(\w+)/")


# The CI cluster is two small nodes on one host: one thread and little memory per job.
SMALL_CLUSTER = {
    "default": {"threads": 1, "mem_mb": 1000},
    "tokenizer": {"threads": 1, "mem_mb": 2000},
    "dataset": {"threads": 1, "mem_mb": 2000},
    "fit": {"threads": 1, "mem_mb": 1000},
    "train": {"mem_mb": 1500},
    "evaluate": {"mem_mb": 1500},
}


def slurm_pipeline(tmp_path):
    """A copy of the pipeline whose config/tiny.yaml asks for what the CI cluster has."""
    workdir = copy_pipeline(tmp_path)
    shutil.copytree(REPO / "slurm", workdir / "slurm")
    write_config(workdir, "tiny.yaml", lambda config: config.update(resources=SMALL_CLUSTER))
    return workdir


def test_tiny_study_through_slurm(tmp_path):
    workdir = slurm_pipeline(tmp_path)
    start = time.perf_counter()
    first = snakemake(workdir, *OVERRIDES, "--configfile", "config/tiny.yaml", timeout=1500)
    elapsed = time.perf_counter() - start
    submitted = SUBMITTED.findall(first.stdout + first.stderr)
    rules = [rule for _, rule in submitted]
    # Every job but the local 'all' went through sbatch, each with its own Slurm job id.
    assert sorted(set(rules)) == ["collect", "corpus", "dataset", "evaluate", "fit", "report", "tokenizer", "train"]
    assert rules.count("train") == 9 and rules.count("evaluate") == 9 and len(rules) == 24
    assert len({job_id for job_id, _ in submitted}) == 24
    assert (workdir / "results" / "report" / "index.html").exists()
    print(f"slurm job ids {[int(j) for j, _ in submitted]}; tiny study through Slurm in {elapsed:.0f} s")

    second = snakemake(workdir, *OVERRIDES, "--configfile", "config/tiny.yaml", timeout=600)
    assert "Nothing to be done" in second.stdout + second.stderr
    assert not SUBMITTED.findall(second.stdout + second.stderr)


LONG_RUN = "L2-d48-h4_D512k_s0"


def long_run_config(workdir, name: str, **train) -> dict:
    """config/NAME.yaml: tiny.yaml with one run long enough to be signalled while it trains, with changes
    to its train section; the config, as written."""
    config = yaml.safe_load((workdir / "config" / "tiny.yaml").read_text())
    config["train"]["grid"] = {
        "shapes": [{"n_layer": 2, "d_model": 48, "n_head": 4}],
        "token_budgets": [512_000],
        "seeds": [0],
    }
    config["train"].update(checkpoint_every=50, **train)
    (workdir / "config" / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return config


def signal_after_checkpoint(workdir, args: list[str], checkpoint: str):
    """Snakemake with ``args`` (the target before --configfile, which takes any later word as one more
    config file). Once a file matching ``resources/CHECKPOINT`` exists, every running job gets SIGTERM,
    as Slurm sends it before a time limit or a preemption (--signal=TERM@...); Snakemake runs on to its
    end. Returns its exit status and output, the signalled jobs ([id, nodes, CPUs]) and their steps."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def checkpoint_written() -> bool:  # under the run directory keyed by the dataset's settings
        return any((workdir / "resources").glob(checkpoint))

    try:
        deadline = time.monotonic() + 600
        while not checkpoint_written() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert checkpoint_written(), f"the training job never wrote {checkpoint}"
        jobs = subprocess.run(["squeue", "-h", "-o", "%i %D %C", "-t", "RUNNING"], capture_output=True, text=True)
        running = [line.split() for line in jobs.stdout.splitlines()]
        assert running, "no running Slurm job to signal"
        steps = subprocess.run(["squeue", "-h", "-s", "-o", "%i %N"], capture_output=True, text=True).stdout
        for job_id, *_ in running:
            subprocess.run(["scancel", "--signal=TERM", job_id], check=True)
        out, _ = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out, running, steps


def test_signalled_training_job_resumes_from_its_checkpoint(tmp_path):
    workdir = slurm_pipeline(tmp_path)
    config = long_run_config(workdir, "resume")
    run_id = LONG_RUN
    target = f"results/runs/{run_id}/summary.json"
    status, out, running, _ = signal_after_checkpoint(
        workdir, [target, *OVERRIDES, "--configfile", "config/resume.yaml"], f"runs/*/{run_id}/checkpoint.pt"
    )
    job_ids = [job for job, *_ in running]
    assert status == 0, out
    log = (workdir / "results" / "logs" / "train" / f"{run_id}.log").read_text()
    summary = read_json(workdir / target)
    assert summary["resumed_from_step"] is not None and summary["resumed_from_step"] > 0, log
    assert "resumed from the checkpoint" in log

    # The same run, uninterrupted, outside Slurm: identical losses.
    spec = expand_runs(config)[run_id]
    train_run(spec, work_path(workdir, "dataset", "manifest.json"), tmp_path / "whole", tmp_path / "whole" / "w")
    resumed = pl.read_csv(workdir / "results" / "runs" / run_id / "metrics.csv")["train_loss"].to_list()
    whole = pl.read_csv(tmp_path / "whole" / "metrics.csv")["train_loss"].to_list()
    assert resumed == whole
    print(
        f"signalled Slurm job(s) {job_ids}; resumed from step {summary['resumed_from_step']}; "
        f"final loss {resumed[-1]:.6f} = {whole[-1]:.6f}"
    )


def test_tiny_runs_packed_into_fewer_slurm_jobs(tmp_path):
    """Snakemake groups: 9 training jobs of the tiny grid in 3 Slurm jobs of 3 runs each."""
    workdir = slurm_pipeline(tmp_path)
    packed = snakemake(
        workdir,
        *OVERRIDES,
        "--configfile",
        "config/tiny.yaml",
        "--groups",
        "train=pack",
        "--group-components",
        "pack=3",
        timeout=1500,
    )
    out = packed.stdout + packed.stderr
    groups = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+) \(log: .*/group_pack\w*/", out)
    assert len(groups) == 3, out[-3000:]
    assert len(list((workdir / "results" / "runs").glob("*/summary.json"))) == 9
    assert not re.findall(r"/rule_train/", out)


def test_two_device_run_launches_torchrun_inside_its_slurm_job(tmp_path):
    """train.devices: 2 (gloo on this CPU cluster): one Slurm job, two training processes."""
    workdir = slurm_pipeline(tmp_path)
    config = yaml.safe_load((workdir / "config" / "tiny.yaml").read_text())
    config["train"]["grid"] = {
        "shapes": [{"n_layer": 1, "d_model": 32, "n_head": 2}],
        "token_budgets": [64_000],
        "seeds": [0],
    }
    config["train"].update(devices=2, threads=2, micro_batch_size=8)
    (workdir / "config" / "ddp.yaml").write_text(yaml.safe_dump(config))
    run_id = "L1-d32-h2_D64k_s0"
    target = f"results/runs/{run_id}/summary.json"
    # train.threads = 2: the job asks Slurm for 2 CPUs, one per training process.
    result = snakemake(workdir, target, *OVERRIDES, "--configfile", "config/ddp.yaml", timeout=900)
    submitted = SUBMITTED.findall(result.stdout + result.stderr)
    assert [rule for _, rule in submitted].count("train") == 1
    summary = read_json(workdir / target)
    assert summary["devices"] == 2 and summary["distributed_backend"] == "gloo"
    assert summary["status"] == "completed"
    print(f"two-process run in Slurm job {[j for j, r in submitted if r == 'train'][0]}")


def partition_nodes() -> int:
    """Nodes of the test partition (CI's cluster has two node entries on its one host)."""
    listing = subprocess.run(["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%N"], capture_output=True, text=True)
    return len(set(listing.stdout.split()))


def test_two_node_sharded_run_through_slurm_matches_one_device_and_resumes_after_sigterm(tmp_path):
    """train.nodes: 2 with shard: full, through the Slurm profile. The job asks for 2 nodes and 2 tasks
    (mpi: the trainer starts them itself), the trainer calls srun, and each node's torchrun meets the
    other at the rendezvous on the job's first node: 2 sharded processes, one per node. The job is
    signalled as before a time limit, checkpoints (torch.distributed.checkpoint) and its retry resumes;
    the losses equal a one-device run outside Slurm. On a partition of one node the 2 tasks stand in for
    2 nodes (`--set-resources train:nodes=1`)."""
    workdir = slurm_pipeline(tmp_path)
    config = long_run_config(workdir, "nodes", nodes=2, devices=1, threads=1, shard="full", micro_batch_size=8)
    run_id = LONG_RUN
    target = f"results/runs/{run_id}/summary.json"
    nodes = min(2, partition_nodes())
    stand_in = ["--set-resources", "train:nodes=1"] if nodes == 1 else []
    status, out, running, steps = signal_after_checkpoint(
        workdir,
        [target, *OVERRIDES, *stand_in, "--configfile", "config/nodes.yaml"],
        f"runs/*/{run_id}/checkpoint.dcp/.metadata",
    )
    assert status == 0, out[-5000:]
    # The job held `nodes` nodes and 2 CPUs (2 tasks of train.threads = 1); the trainer's srun made a
    # numbered step of it (the batch step aside) that ran on all of them.
    job, job_nodes, cpus = running[0]
    assert (int(job_nodes), cpus) == (nodes, "2"), running
    step = re.search(rf"^{job}\.\d+ (\S+)", steps, re.MULTILINE)
    assert step, steps
    hostnames = subprocess.run(["scontrol", "show", "hostnames", step.group(1)], capture_output=True, text=True)
    assert len(hostnames.stdout.split()) == nodes, steps
    log = (workdir / "results" / "logs" / "train" / f"{run_id}.log").read_text()
    summary = read_json(workdir / target)
    assert summary["devices"] == 2 and summary["nodes"] == 2 and summary["sharding"] == "full", log
    assert summary["resumed_from_step"] is not None and summary["resumed_from_step"] > 0, log
    assert "resumed from the checkpoint at step" in log and "(sharded, written by 2 processes)" in log

    spec = expand_runs(config)[run_id]
    one_device = replace(spec, execution=replace(spec.execution, nodes=1, devices=1, threads=2))
    train_run(one_device, work_path(workdir, "dataset", "manifest.json"), tmp_path / "one", tmp_path / "one" / "w")
    resumed = pl.read_csv(workdir / "results" / "runs" / run_id / "metrics.csv")["train_loss"].to_list()
    whole = pl.read_csv(tmp_path / "one" / "metrics.csv")["train_loss"].to_list()
    assert resumed == pytest.approx(whole, rel=1e-5)
    print(
        f"job {job} on {step.group(1)} ({nodes} node(s)) signalled; resumed from step {summary['resumed_from_step']}; "
        f"final loss {resumed[-1]:.6f} against one device's {whole[-1]:.6f}"
    )
