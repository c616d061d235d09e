"""The Snakefile and its rules: what Snakemake imports to build the DAG stays light, and dry runs plan
the studies users write. (What reruns when is in tests/test_pipeline.py.)"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_pipeline, write_config

# Installed as sitecustomize: every import of these packages fails in that interpreter, as on a
# login node whose Snakemake environment holds none of them.
HEAVY = ("torch", "scipy", "altair", "vl_convert")
BLOCKER = f"""
import importlib.abc
import sys


class RefuseHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} is not installed on this submit host")
        return None


sys.meta_path.insert(0, RefuseHeavyImports())
"""


@pytest.fixture
def light_host(tmp_path):
    """(workdir, env): a copy of the pipeline and an environment in which torch, scipy and altair fail."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "pipeline").mkdir()
    workdir = copy_pipeline(tmp_path / "pipeline")
    env = {"PYTHONPATH": f"{workdir}:{site}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return workdir, env


def dry_run(workdir, env, *args):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "2", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_blocker_refuses_heavy_imports(light_host):
    workdir, env = light_host
    for name in HEAVY:
        result = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True)
        assert result.returncode != 0 and "not installed on this submit host" in result.stderr, name


@pytest.mark.parametrize("config", ["config/config.yaml", "config/tiny.yaml", "config/experiments/default_tuned.yaml"])
def test_dry_run_needs_no_torch_scipy_or_altair(light_host, config):
    workdir, env = light_host
    result = dry_run(workdir, env, "--configfile", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report" in result.stdout and "train" in result.stdout
    assert ("checkpoint tune:" in result.stdout) == ("tuned" in config)


def test_lstm_family_with_bare_shapes_dry_runs(light_host):
    """train.family: lstm names the family of shapes that do not name one (no n_head needed)."""
    workdir, env = light_host

    def lstm(config):
        config["train"]["family"] = "lstm"
        config["train"]["grid"]["shapes"] = [{"n_layer": 1, "d_model": 32}, {"n_layer": 2, "d_model": 48}]

    result = dry_run(workdir, env, "--configfile", write_config(workdir, "lstm.yaml", lstm))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "results/runs/lstm-L1-d32_D32k_s0/summary.json" in result.stdout


def planned(stdout: str) -> dict[str, int]:
    """A dry run's job counts by rule (its "Job stats" table)."""
    table = stdout.split("Job stats:")[1].split("total")[0]
    return {line.split()[0]: int(line.split()[1]) for line in table.splitlines()[3:] if line.strip()}


def test_two_arms_plan_both_arms_runs_on_one_corpus_and_tokenizer(light_host):
    """Arms with one corpus and tokenizer share those stages and the dataset, are scored on its validation
    split, and the fit compares them with the baseline."""
    workdir, env = light_host

    def arms(config):
        config["arms"] = {"baseline": "gpt", "overlays": {"gpt": {}, "lstm": {"train": {"family": "lstm"}}}}

    result = dry_run(workdir, env, "-p", "--configfile", write_config(workdir, "arms.yaml", arms))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned(result.stdout)
    assert jobs["train"] == jobs["evaluate"] == 18
    assert jobs["corpus"] == jobs["tokenizer"] == jobs["dataset"] == 1
    assert not {"arm_corpus", "arm_tokenizer", "arm_dataset", "yardstick"} & set(jobs)
    assert "results/runs/gpt_L1-d16-h2_D32k_s0/summary.json" in result.stdout
    assert "results/runs/lstm_lstm-L1-d16_D32k_s0/summary.json" in result.stdout
    assert "--arms arm --baseline gpt" in result.stdout and "--yardstick" not in result.stdout


def test_an_arm_with_its_own_tokenizer_plans_its_stages_and_a_yardstick_for_each_tokenizer(light_host):
    workdir, env = light_host

    def arms(config):
        config["arms"] = {"baseline": "gpt", "overlays": {"gpt": {}, "vocab": {"tokenizer": {"vocab_size": 448}}}}

    result = dry_run(workdir, env, "-p", "--configfile", write_config(workdir, "arms.yaml", arms))
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned(result.stdout)
    # One corpus (the arms share it), a tokenizer and a dataset each, a yardstick per tokenizer.
    assert jobs["corpus"] == 1 and "arm_corpus" not in jobs
    assert jobs["tokenizer"] == jobs["arm_tokenizer"] == jobs["dataset"] == jobs["arm_dataset"] == 1
    assert jobs["yardstick"] == 2 and jobs["evaluate"] == 18
    evaluations = [line for line in result.stdout.splitlines() if "python -m workflow.evaluate" in line]
    assert len(evaluations) == 18 and all("--yardstick" in line for line in evaluations)


def test_jobs_import_the_snakefiles_own_package_under_another_directory(tmp_path):
    """`snakemake --directory ELSEWHERE`: the jobs run `python -m workflow.<stage>` in ELSEWHERE, which
    holds no workflow/ package. Another copy of the package first on PYTHONPATH (another checkout) must
    not be the one they import: here that copy stops any process that imports it."""
    (tmp_path / "clone").mkdir()
    clone = copy_pipeline(tmp_path / "clone")
    decoy = tmp_path / "other-checkout"
    shutil.copytree(clone / "workflow", decoy / "workflow")
    with open(decoy / "workflow" / "__init__.py", "a") as init:
        init.write('\nraise SystemExit(f"imported the other copy of the workflow package, {__file__}")\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    snakefile, config = clone / "Snakefile", clone / "config" / "tiny.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(elsewhere)]
        + ["--snakefile", str(snakefile), "--configfile", str(config), "--", "results/config.yaml"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(decoy), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = elsewhere / "results" / "logs" / "study_config.log"
    assert result.returncode == 0, (log.read_text() if log.exists() else "") + result.stdout + result.stderr
    assert "train:" in (elsewhere / "results" / "config.yaml").read_text()
