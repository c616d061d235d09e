"""Fault injection: each failure a sweep meets, injected for real, and the promise checked.

Every case checks the exit status, that the message says what went wrong and
where, and that earlier outputs are intact (nothing that looks complete is
left by the failed step). docs/reliability.md lists the cases.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch
from helpers import copy_pipeline, snakemake, tiny_spec, train_cli, train_command, work_path, write_config

from workflow.files import read_json, sha256_file
from workflow.fit.schema import LAYOUT

pytestmark = pytest.mark.faults
PYTHON = sys.executable


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A stage's CLI; a failure must speak in lines, never a Python traceback (docs/reliability.md)."""
    result = subprocess.run([PYTHON, "-m", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0 or "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``: earlier outputs, to compare after a fault."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        ("unknown key", lambda c: c["dataset"].update(shard_size=10), "'shard_size' was unexpected"),
        ("wrong type", lambda c: c["train"].update(seq_len="long"), "'long' is not of type 'integer'"),
        ("negative size", lambda c: c["train"]["grid"]["token_budgets"].append(-5), "-5 is less than the minimum of 1"),
        ("zero size", lambda c: c["dataset"].update(shard_tokens=0), "0 is less than the minimum of 1"),
        (
            "n_head not dividing d_model",
            lambda c: c["train"]["grid"]["shapes"][2].update(n_head=5),
            "train.grid.shapes[2]: n_head=5 does not divide d_model=48",
        ),
        (
            "duplicate run ids",
            lambda c: c["train"]["grid"]["shapes"].append(dict(c["train"]["grid"]["shapes"][0])),
            "duplicate run id 'L1-d16-h2_D32k_s0'",
        ),
        (
            "IsoFLOP budget too small for a shape",
            lambda c: c["train"]["isoflop"].update(
                compute_budgets=[1.0e6], shapes=[{"n_layer": 1, "d_model": 16, "n_head": 2}]
            ),
            "config error at train.isoflop.compute_budgets[0]: budget 1e+06 FLOPs buys",
        ),
        (
            "override beyond the run's budget",
            lambda c: c["train"]["overrides"].update({"L1-d16-h2_D32k_s0": {"batch_tokens": 65536}}),
            "config error at train.overrides.L1-d16-h2_D32k_s0: run L1-d16-h2_D32k_s0 trains 32000 tokens, "
            "less than one step of batch_tokens = 65536",
        ),
        (
            "number written as text",
            lambda c: c["train"].update(lr="4e-3"),
            "config error: train.lr is '4e-3', which YAML reads as text: write 4.0e-3",
        ),
        (
            "unset variable in work_dir",
            lambda c: c.update(work_dir="$NO_SUCH_VARIABLE_SET/work"),
            "config error at work_dir: '$NO_SUCH_VARIABLE_SET/work' uses the environment variable "
            "NO_SUCH_VARIABLE_SET, which is not set here",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)
def test_invalid_config_stops_before_any_job(tmp_path, case, change, message):
    workdir = copy_pipeline(tmp_path)
    bad = write_config(workdir, "bad.yaml", change)
    result = snakemake(workdir, "--configfile", bad, check=False)
    assert result.returncode != 0, case
    assert message in result.stdout + result.stderr, result.stdout + result.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()
    assert not list(workdir.glob("$*")), "a folder named after an unset variable was made"
    assert "Traceback" not in result.stdout + result.stderr


def test_a_point_that_would_end_in_warmup_stops_the_check_in_one_line(tmp_path):
    """tiny.yaml with a warmup of 40000 tokens (79 steps of 512): its 32k-token runs (62 steps) would
    end in warmup. `python -m workflow.config --check` (what `./pipeline.sh run` runs first) exits 1
    with one line naming the point and the fix; Snakemake stops before any job."""
    workdir = copy_pipeline(tmp_path)
    bad = write_config(workdir, "warmup.yaml", lambda c: c["train"].update(warmup_tokens=40_000))
    env = dict(os.environ, PYTHONPATH=str(workdir))
    result = subprocess.run(
        [PYTHON, "-m", "workflow.config", "--check", "--configfile", bad],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: config error at train: point L1-d16-h2_D32k_s0 trains 62 steps of 512 tokens, all within its "
        "warmup of 79 steps (train.warmup_tokens = 40000), so it ends in warmup; shorten the warmup "
        "(train.warmup_tokens, or warmup_fraction), give the point a larger budget, or drop the budget"
    ]
    study = snakemake(workdir, "--configfile", bad, check=False)
    assert study.returncode != 0 and "point L1-d16-h2_D32k_s0 trains 62 steps" in study.stdout + study.stderr
    assert "Traceback" not in study.stdout + study.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


def test_token_budget_above_the_dataset_is_refused_naming_the_run(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=10**10)
    result = train_cli(spec, dataset_manifest, tmp_path)
    assert result.returncode == 1
    assert f"run {spec.run_id}: token budget 10000000000 exceeds" in result.stderr
    assert "allow_repeated_epochs" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "work").exists()


# --------------------------------------------------------------------------- corpus


def build_corpus(tmp_path: Path, source: dict, path: Path) -> subprocess.CompletedProcess:
    return cli(
        "workflow.corpus",
        "--sources",
        json.dumps([source]),
        f"--download={source['name']}={path}",
        "--out-documents",
        str(tmp_path / "documents.parquet"),
        "--out-manifest",
        str(tmp_path / "corpus.json"),
    )


def test_an_edited_local_corpus_is_refused_with_both_hashes(tmp_path):
    """A file:// source without a sha256 is pinned by the lock file on its first download. Edited
    afterwards, it is not silently ignored: the next run fails naming the expected and actual hash and
    the command that records the new one; after that command the corpus is rebuilt from the new text."""
    workdir = copy_pipeline(tmp_path)
    text = workdir / "corpus.txt"
    text.write_text("first story\n\nsecond story\n")
    source = {"name": "local", "url": text.as_uri(), "separator": "\n\n"}
    config = write_config(workdir, "local.yaml", lambda c: c["corpus"].update(sources=[source]))
    target = "results/data/corpus.json"
    snakemake(workdir, target, "--configfile", config)
    text.write_text("first story\n\nsecond story, edited\n")
    edited = snakemake(workdir, target, "--configfile", config, check=False)
    log = next((workdir / "results" / "logs" / "download" / "local").iterdir()).read_text()
    assert edited.returncode != 0 and "Traceback" not in log
    assert "checksum mismatch for " + text.as_uri() in log
    assert hashlib.sha256(text.read_bytes()).hexdigest() in log
    command = re.search(r"record its new hash: (python -m workflow.download --repin .*)$", log, flags=re.M).group(1)
    # Run where a user runs it: in the study's directory, whose paths the command names.
    repinned = subprocess.run([PYTHON, *shlex.split(command)[1:]], cwd=workdir, capture_output=True, text=True)
    assert repinned.returncode == 0, repinned.stderr
    snakemake(workdir, target, "--configfile", config)
    documents = pl.read_parquet(work_path(workdir, "corpus", "documents.parquet"))["text"].to_list()
    assert [d.strip() for d in documents] == ["first story", "second story, edited"]


def test_a_100_mb_document_on_one_line(tmp_path, tokenizer_path):
    """Read, stored, tokenizer-sampled and encoded with bounded memory, not refused."""
    words = [b"alpha ", b"beta ", b"gamma ", b"delta ", b"42 "]
    line = b"".join(words[i % 5] for i in range(100 * 2**20 // 6))
    path = tmp_path / "one_line.txt"
    path.write_bytes(line)
    corpus = build_corpus(tmp_path, {"name": "long", "url": path.as_uri()}, path)
    assert corpus.returncode == 0, corpus.stderr
    documents = pl.read_parquet(tmp_path / "documents.parquet")
    assert documents.height == 1 and len(documents["text"][0]) == len(line)
    del documents
    dataset = cli(
        "workflow.dataset",
        "--documents",
        str(tmp_path / "documents.parquet"),
        "--tokenizer",
        str(tokenizer_path),
        "--validation-fraction",
        "0.0",
        "--validation-max-tokens",
        "1000",
        "--shard-tokens",
        str(1 << 24),
        "--threads",
        "2",
        "--out-dir",
        str(tmp_path / "dataset"),
        "--out-summary",
        str(tmp_path / "dataset.json"),
        timeout=600,
    )
    # One document cannot be split between train and validation: the stage says so.
    assert dataset.returncode == 1 and "the validation split is empty" in dataset.stderr
    assert not (tmp_path / "dataset").exists() and not (tmp_path / "dataset.json").exists()


# --------------------------------------------------------------------------- tokenizer


def test_vocabulary_larger_than_the_sample_allows(tmp_path, documents_path):
    result = cli(
        "workflow.tokenizer",
        "--documents",
        str(documents_path),
        "--vocab-size",
        "60000",
        "--sample-bytes",
        "20000",
        "--seed",
        "0",
        "--out-model",
        str(tmp_path / "tokenizer.model"),
        "--out-info",
        str(tmp_path / "tokenizer.json"),
    )
    assert result.returncode != 0
    assert "vocab_size=60000" in result.stderr and "Please set it to a value <=" in result.stderr
    assert not (tmp_path / "tokenizer.model").exists() and not (tmp_path / "tokenizer.json").exists()


# --------------------------------------------------------------------------- shards


def damaged_dataset(dataset_manifest: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / "dataset"
    shutil.copytree(dataset_manifest.parent, copy)
    damage(copy)
    return copy / "manifest.json"


def first_train_shard(directory: Path) -> Path:
    return directory / read_json(directory / "manifest.json")["splits"]["train"]["shards"][0]["file"]


@pytest.mark.parametrize(
    ("case", "damage", "message"),
    [
        (
            "truncated",
            lambda d: first_train_shard(d).write_bytes(first_train_shard(d).read_bytes()[:-1001]),
            "it is truncated or was not closed",
        ),
        (
            "wrong magic",
            lambda d: first_train_shard(d).write_bytes(b"NOTATOKS" + first_train_shard(d).read_bytes()[8:]),
            "not a token shard (magic b'NOTATOKS'",
        ),
        (
            "manifest mismatch",
            lambda d: (d / "manifest.json").write_text(
                (d / "manifest.json").read_text().replace('"tokens": 100000', '"tokens": 99999', 1)
            ),
            "100000 tokens but",
        ),
    ],
    ids=["truncated", "wrong-magic", "manifest-mismatch"],
)
def test_damaged_shards_stop_the_run_naming_the_file(dataset_manifest, tmp_path, case, damage, message):
    manifest = damaged_dataset(dataset_manifest, tmp_path, damage)
    spec = tiny_spec(tokens=8_192)
    result = train_cli(spec, manifest, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"run {spec.run_id}: the dataset is damaged" in result.stderr and message in result.stderr
    assert "train_000000.bin" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- training


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.05)


def interrupt_snakemake(workdir: Path, args: list[str], when, signum: int) -> int:
    """Start Snakemake in WORKDIR (its own process group, SIGINT at its default disposition as in a
    terminal), wait until ``when()`` holds, send ``signum`` to the group; its exit status."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PATH=f"{Path(PYTHON).parent}:{os.environ['PATH']}")
    process = subprocess.Popen(
        [PYTHON, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not when():
        assert process.poll() is None, "Snakemake ended before the interrupt"
        assert time.monotonic() < deadline, "the interrupt's moment never came"
        time.sleep(0.1)
    os.killpg(process.pid, signum)  # Ctrl-C reaches the whole foreground group: Snakemake and its jobs
    return process.wait(timeout=300)


def test_interrupted_study_completes_with_a_plain_rerun(finished):
    """Ctrl-C while the grid trains: some jobs are cut short, others have just finished. A plain
    `snakemake` (no --rerun-incomplete, no --cleanup-metadata) completes the study, keeps the runs that
    had finished, and ends with the uninterrupted study's losses. (SIGTERM to Snakemake takes the same
    shutdown path.)"""
    workdir, _ = finished
    runs = sorted((workdir / "results" / "runs").iterdir())
    before = {run.name: pl.read_csv(run / "metrics.csv")["train_loss"].to_list() for run in runs}
    args = ["--configfile", "config/tiny.yaml", "--forcerun", "train"]

    def some_runs_finished() -> bool:
        return sum((run / "summary.json").exists() for run in runs) >= 3

    assert interrupt_snakemake(workdir, args, some_runs_finished, signal.SIGINT) != 0
    rerun = snakemake(workdir, "--configfile", "config/tiny.yaml", check=False)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-3000:]
    assert "IncompleteFilesException" not in output and "Traceback" not in output
    after = {run.name: pl.read_csv(run / "metrics.csv")["train_loss"].to_list() for run in runs}
    assert after == before
    assert dry_run_nothing(workdir)


def dry_run_nothing(workdir: Path) -> bool:
    return "Nothing to be done" in snakemake(workdir, "-n", "--configfile", "config/tiny.yaml").stdout


def test_sigkill_then_rerun_resumes_from_the_last_checkpoint(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=128_000, checkpoint_every=40, log_every=5)
    process = train_cli(spec, dataset_manifest, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "work" / "checkpoint.pt"
    wait_for(checkpoint, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    step = torch.load(checkpoint, weights_only=False)["step"]
    assert step >= 40 and not (tmp_path / "run" / "summary.json").exists()
    rerun = train_cli(spec, dataset_manifest, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["resumed_from_step"] >= step and summary["steps"] == 250


@pytest.fixture(scope="module")
def other_dataset(documents_path, tmp_path_factory) -> Path:
    """The same documents under another tokenizer (another seed and sample, the same vocabulary size):
    the same token ids mean other pieces."""
    from workflow.dataset import build_dataset
    from workflow.files import write_bytes_atomic
    from workflow.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("other")
    texts = pl.read_parquet(documents_path)["text"].to_list()
    data, _ = train_tokenizer(texts, vocab_size=384, model_type="bpe", seed=7, sample_bytes=250_000)
    write_bytes_atomic(out / "tokenizer.model", data)
    build_dataset(
        documents_path,
        out / "tokenizer.model",
        out / "dataset",
        validation_fraction=0.1,
        validation_max_tokens=20_000,
        shard_tokens=100_000,
    )
    return out / "dataset" / "manifest.json"


def killed_after_a_checkpoint(spec, dataset_manifest: Path, root: Path) -> int:
    """Start the run, SIGKILL it once it has checkpointed; the checkpoint's step."""
    process = train_cli(spec, dataset_manifest, root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = root / "work" / "checkpoint.pt"
    wait_for(checkpoint, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return torch.load(checkpoint, weights_only=False)["step"]


def test_a_checkpoint_from_another_tokenizer_is_set_aside(dataset_manifest, other_dataset, tmp_path):
    """Stopped mid-way, then the tokenizer changed (same vocabulary size): the run must not resume the
    weights learned on the old token ids. It sets the checkpoint aside, says why, and trains afresh,
    ending exactly where a clean run on the new data ends."""
    from workflow.shards import data_identity

    spec = tiny_spec(tokens=128_000, checkpoint_every=40, log_every=5)
    assert killed_after_a_checkpoint(spec, dataset_manifest, tmp_path) >= 40
    rerun = train_cli(spec, other_dataset, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from the checkpoint" not in rerun.stdout
    assert f"{spec.run_id}: checkpoint {tmp_path / 'work' / 'checkpoint.pt'} was trained on other data" in rerun.stderr
    assert "set aside as checkpoint.pt.other-data, starting afresh" in rerun.stderr
    assert (tmp_path / "work" / "checkpoint.pt.other-data").exists() and "Traceback" not in rerun.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["data"] == data_identity(other_dataset) and summary["resumed_from_step"] in (None, 0)
    clean = train_cli(spec, other_dataset, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    losses = [
        pl.read_csv(root / "run" / "metrics.csv")["train_loss"].to_list() for root in (tmp_path, tmp_path / "clean")
    ]
    assert losses[0] == losses[1]


def test_a_damaged_checkpoint_is_set_aside_and_the_run_restarts(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=64_000, checkpoint_every=40, log_every=5)
    killed_after_a_checkpoint(spec, dataset_manifest, tmp_path)
    checkpoint = tmp_path / "work" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    rerun = train_cli(spec, dataset_manifest, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert (
        f"checkpoint {checkpoint} cannot be read (" in rerun.stderr
        and "set aside as checkpoint.pt.damaged" in rerun.stderr
    )
    assert "Traceback" not in rerun.stderr and read_json(tmp_path / "run" / "summary.json")["status"] == "completed"


def test_a_damaged_sharded_checkpoint_is_set_aside_then_the_run_restarts(dataset_manifest, tmp_path):
    """A sharded checkpoint missing one process's shard file: the resumed run ends with one line naming
    it, set aside as checkpoint.dcp.damaged (the load may have written into the model, so this attempt
    stops); the next attempt (Snakemake's retry) starts afresh and ends where a clean run ends."""
    from dataclasses import replace

    spec = tiny_spec(tokens=64_000, micro_batch_size=4, checkpoint_every=40, log_every=5, threads=2)
    spec = replace(spec, execution=replace(spec.execution, devices=2, shard="full"))
    process = train_cli(spec, dataset_manifest, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "work" / "checkpoint.dcp"
    wait_for(checkpoint / ".metadata", process)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on; SIGKILL would orphan its workers
    process.wait(timeout=120)
    shards = sorted(checkpoint.glob("*.distcp"))
    assert len(shards) == 2
    shards[1].unlink()
    damaged = train_cli(spec, dataset_manifest, tmp_path)
    assert damaged.returncode == 1, damaged.stderr
    assert f"checkpoint {checkpoint} cannot be read (FileNotFoundError: " in damaged.stderr, damaged.stderr
    assert shards[1].name in damaged.stderr  # the missing file, named
    assert "set aside as checkpoint.dcp.damaged" in damaged.stderr and "Traceback" not in damaged.stderr
    assert "its sharded checkpoint was damaged; rerun to start afresh" in damaged.stderr
    assert (tmp_path / "work" / "checkpoint.dcp.damaged").is_dir() and not checkpoint.exists()
    rerun = train_cli(spec, dataset_manifest, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from the checkpoint" not in rerun.stdout
    clean = train_cli(spec, dataset_manifest, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    losses = [
        pl.read_csv(root / "run" / "metrics.csv")["train_loss"].to_list() for root in (tmp_path, tmp_path / "clean")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_a_job_killed_between_the_renames_of_a_sharded_save_resumes(dataset_manifest, tmp_path):
    """A sharded save moves the old checkpoint.dcp aside, then renames the new one into place. Killed
    between the two, the job left no checkpoint.dcp; the rerun resumes from the complete new one, or
    from the previous one, and ends where an uninterrupted run ends."""
    from dataclasses import replace

    spec = tiny_spec(tokens=64_000, micro_batch_size=4, checkpoint_every=10_000, log_every=5, threads=2)
    spec = replace(spec, execution=replace(spec.execution, devices=2, shard="full"))
    clean = train_cli(spec, dataset_manifest, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    for left in (".checkpoint.dcp.partial", ".checkpoint.dcp.previous"):
        root = tmp_path / left
        process = train_cli(spec, dataset_manifest, root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert "step" in process.stdout.readline()  # under way
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
        (root / "work" / "checkpoint.dcp").rename(root / "work" / left)
        rerun = train_cli(spec, dataset_manifest, root)
        assert rerun.returncode == 0, rerun.stderr
        assert "resumed from the checkpoint at step" in rerun.stdout, left
        assert not (root / "work" / left).exists()
        losses = [pl.read_csv(r / "run" / "metrics.csv")["train_loss"].to_list() for r in (root, tmp_path / "clean")]
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def evaluate_cli(root: Path, dataset_manifest: Path) -> subprocess.CompletedProcess:
    return cli(
        "workflow.evaluate",
        "--weights",
        str(root / "work" / "weights"),
        "--summary",
        str(root / "run" / "summary.json"),
        "--dataset",
        str(dataset_manifest),
        "--out",
        str(root / "run" / "eval.json"),
    )


def test_weights_from_other_data_or_damaged_are_not_scored(dataset_manifest, other_dataset, tmp_path):
    """Evaluation scores only weights this run made on this data: others stop it with one line, and the
    weights directory is moved aside so that the next snakemake retrains the run."""
    spec = tiny_spec(tokens=8_192, log_every=5)
    assert train_cli(spec, dataset_manifest, tmp_path).returncode == 0
    weights = tmp_path / "work" / "weights"
    other = evaluate_cli(tmp_path, other_dataset)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert (
        f"run {spec.run_id}: the weights {weights / (spec.run_id + '.pt')} were trained on other data" in other.stderr
    )
    assert f"moved the weights directory aside to {weights}.set-aside" in other.stderr
    assert not weights.exists() and not (tmp_path / "run" / "eval.json").exists()
    (tmp_path / "work" / "weights.set-aside").rename(weights)
    point = weights / f"{spec.run_id}.pt"
    point.write_bytes(point.read_bytes()[:1000])
    damaged = evaluate_cli(tmp_path, dataset_manifest)
    assert damaged.returncode == 1 and "Traceback" not in damaged.stderr
    assert f"run {spec.run_id}: the weights file {point} is damaged" in damaged.stderr and not weights.exists()


def test_two_studies_sharing_a_work_dir_keep_their_own_artefacts(tmp_path):
    """Two clones point work_dir at the same scratch folder; the second changes the tokenizer seed. It
    makes its own tokenizer and dataset (the corpus, identical, is shared), and the first study's
    artefacts and plan are untouched."""
    shared = tmp_path / "scratch"
    studies = []
    for name, seed in (("first", 1234), ("second", 99)):
        (tmp_path / name).mkdir()
        workdir = copy_pipeline(tmp_path / name)

        def change(config, seed=seed):
            config.update(work_dir=str(shared))
            config["tokenizer"]["seed"] = seed

        studies.append((workdir, write_config(workdir, "study.yaml", change)))
    (first, config), (second, _) = studies
    snakemake(first, "results/data/dataset.json", "--configfile", config)
    before = snapshot(shared)
    snakemake(second, "results/data/dataset.json", "--configfile", config)
    after = snapshot(shared)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of the first study changed
    assert len(list((shared / "tokenizer").iterdir())) == 2 and len(list((shared / "dataset").iterdir())) == 2
    assert len(list((shared / "corpus").iterdir())) == 1
    made = [read_json(study / "results" / "data" / "dataset.json") for study, _ in studies]
    tokenizers = [read_json(study / "results" / "data" / "tokenizer.json") for study, _ in studies]
    assert made[0]["tokenizer_sha256"] != made[1]["tokenizer_sha256"]
    assert [m["tokenizer_sha256"] for m in made] == [t["model_sha256"] for t in tokenizers]
    plan = snakemake(first, "-n", "results/data/dataset.json", "--configfile", config).stdout
    assert "Nothing to be done" in plan


def test_snakemake_killed_mid_training_reruns_without_rerun_incomplete(finished):
    """SIGKILL to Snakemake and its training job (one process group, started here). Snakemake's
    directory lock stays behind: a rerun says to --unlock. After that a plain rerun (no
    --rerun-incomplete) schedules the job again; it resumes from its checkpoint and ends exactly
    where the uninterrupted run did."""
    workdir, _ = finished
    run = "L2-d48-h4_D128k_s0"
    metrics = workdir / "results" / "runs" / run / "metrics.csv"
    before = metrics.read_text()
    checkpoint = work_path(workdir, "runs", run, "checkpoint.pt")
    env = dict(os.environ, PYTHONPATH=str(workdir), PATH=f"{Path(PYTHON).parent}:{os.environ['PATH']}")
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "--configfile",
            "config/tiny.yaml",
            "--forcerun",
            "train",
            "--",
            f"results/runs/{run}/summary.json",
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(checkpoint, process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert not metrics.exists()  # removed by Snakemake before the job; no partial file in its place
    # The killed Snakemake could not release its lock on the directory: it says so and how.
    locked = snakemake(workdir, "--configfile", "config/tiny.yaml", check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    assert not metrics.exists()
    snakemake(workdir, "--configfile", "config/tiny.yaml", "--unlock")
    snakemake(workdir, "--configfile", "config/tiny.yaml")  # no --rerun-incomplete needed
    log = (workdir / "results" / "logs" / "train" / f"{run}.log").read_text()
    assert "resumed from the checkpoint at step 100" in log
    timing = ("elapsed_s", "tokens_per_s", "mfu", "data_wait_fraction")  # wall-clock columns differ
    after = pl.read_csv(metrics).drop(timing)
    assert after.equals(pl.read_csv(before.encode()).drop(timing))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA out of memory needs a GPU")
def test_cuda_out_of_memory_names_the_run_and_gives_a_hint(dataset_manifest, tmp_path):
    spec = tiny_spec(tokens=1 << 20, device="cuda", micro_batch_size=16, d_model=8192, n_head=64, n_layer=48)
    result = train_cli(spec, dataset_manifest, tmp_path)
    assert result.returncode == 1
    assert f"run {spec.run_id} ran out of GPU memory" in result.stderr and "micro_batch_size" in result.stderr


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(dataset_manifest, tmp_path):
    """The checkpoint lives on a real tmpfs too small for two checkpoints, mounted in a
    mount namespace of the test's own (unshare): the second write hits ENOSPC."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0
    ):
        if os.environ.get("CI"):
            pytest.fail("unshare --mount is not permitted here; the full-disk case cannot run")
        pytest.skip("unshare --mount is not permitted here (needs root)")
    spec = tiny_spec(tokens=128_000, checkpoint_every=40, log_every=5)
    probe = train_cli(tiny_spec(tokens=20_480, checkpoint_every=20, log_every=5), dataset_manifest, tmp_path / "probe")
    assert probe.returncode == 0, probe.stderr
    size = os.path.getsize(
        tmp_path / "probe" / "work" / "weights" / os.listdir(tmp_path / "probe" / "work" / "weights")[0]
    )
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    kept.mkdir()
    command = shlex.join(train_command(spec, dataset_manifest, tmp_path, checkpoint=disk / "checkpoint.pt"))
    # Room for one checkpoint (about 3x the weights: model and two Adam moments) and half of another.
    script = (
        f'mount -t tmpfs -o size={int(size * 4.5)} tmpfs {disk} && {{ {command}; echo "rc=$?"; '
        f"cp {disk}/checkpoint.pt {kept}/; ls -a {disk}; }}"
    )
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "rc=1" in result.stdout, result.stdout + result.stderr
    assert f"run {spec.run_id}: writing the checkpoint" in result.stderr
    assert "No space left on device" in result.stderr, result.stderr
    assert "the previous checkpoint is intact" in result.stderr, result.stderr
    assert ".checkpoint.pt.tmp" not in result.stdout  # the partial write was removed
    state = torch.load(kept / "checkpoint.pt", weights_only=False)
    assert state["step"] == 40 and state["spec"] == spec.result_dict()
    assert not (tmp_path / "run" / "summary.json").exists()


# --------------------------------------------------------------------------- full disks


def mount_namespaces_allowed() -> bool:
    if shutil.which("unshare") and subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0:
        return True
    if os.environ.get("CI"):
        pytest.fail("unshare --mount is not permitted here; the full-disk cases cannot run")
    pytest.skip("unshare --mount is not permitted here (needs root)")


def on_a_full_disk(disk: Path, command: list[str]) -> tuple[int, str, list[str]]:
    """Run COMMAND with DISK a tmpfs filled to the last byte (a real ENOSPC), in a mount namespace
    of this test's own: (exit status, stderr, the files left on the disk)."""
    disk.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {disk} && (dd if=/dev/zero of={disk}/fill bs=4k 2>/dev/null; true) && "
        f'{{ {shlex.join(command)}; echo "rc=$?"; find {disk} -type f -printf "%P\\n"; }}'
    )
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=600)
    lines = result.stdout.splitlines()
    status = next(int(line[3:]) for line in lines if line.startswith("rc="))
    return status, result.stderr, lines[lines.index(f"rc={status}") + 1 :]


@pytest.fixture(scope="module")
def trained(dataset_manifest, tmp_path_factory) -> Path:
    """One tiny trained run (ROOT/run, ROOT/work/weights), for the evaluation case."""
    root = tmp_path_factory.mktemp("trained")
    assert train_cli(tiny_spec(tokens=8_192, log_every=5), dataset_manifest, root).returncode == 0
    return root


def report_args(results: Path, fits: Path, out_dir: Path) -> list[str]:
    """The report CLI's arguments (after `python -m`): a study's tables, the given fits.json, OUT_DIR."""
    tables = results / "tables"
    return ["workflow.report", "--runs", str(tables / "runs.parquet"), "--curves", str(tables / "curves.parquet"),
            "--fits", str(fits), "--out-dir", str(out_dir)]  # fmt: skip


def stage_writing_to(stage: str, disk: Path, request) -> list[str]:
    """The CLI of STAGE, on the test's small real inputs, with its outputs on DISK."""
    documents = lambda: str(request.getfixturevalue("documents_path"))  # noqa: E731
    manifest = lambda: str(request.getfixturevalue("dataset_manifest"))  # noqa: E731
    if stage == "corpus":
        source = disk.parent / "corpus.txt"
        source.write_text("one document\n\nand another\n" * 2000)
        sources = json.dumps([{"name": "text", "url": source.as_uri(), "separator": "\n\n"}])
        return [
            PYTHON,
            "-m",
            "workflow.corpus",
            "--sources",
            sources,
            f"--download=text={source}",
            "--out-documents",
            str(disk / "documents.parquet"),
            "--out-manifest",
            str(disk / "corpus.json"),
        ]
    if stage == "tokenizer":
        return [
            PYTHON,
            "-m",
            "workflow.tokenizer",
            "--documents",
            documents(),
            "--vocab-size",
            "384",
            "--sample-bytes",
            "200000",
            "--out-model",
            str(disk / "t.model"),
            "--out-info",
            str(disk / "t.json"),
        ]
    if stage == "dataset":
        tokenizer = str(request.getfixturevalue("tokenizer_path"))
        return [
            PYTHON,
            "-m",
            "workflow.dataset",
            "--documents",
            documents(),
            "--tokenizer",
            tokenizer,
            "--validation-fraction",
            "0.1",
            "--validation-max-tokens",
            "20000",
            "--shard-tokens",
            "100000",
            "--out-dir",
            str(disk / "dataset"),
            "--out-summary",
            str(disk / "dataset.json"),
        ]
    if stage == "train":  # the point's final weights are the first file the run writes
        spec = tiny_spec(tokens=8_192, checkpoint_every=10_000, log_every=5)
        return train_command(spec, Path(manifest()), disk.parent, checkpoint=disk / "checkpoint.pt")
    if stage == "evaluate":
        root = request.getfixturevalue("trained")
        return [
            PYTHON,
            "-m",
            "workflow.evaluate",
            "--weights",
            str(root / "work" / "weights"),
            "--summary",
            str(root / "run" / "summary.json"),
            "--dataset",
            manifest(),
            "--out",
            str(disk / "e.json"),
        ]
    if stage == "collect":
        runs = request.getfixturevalue("finished")[0] / "results" / "runs"
        return [
            PYTHON,
            "-m",
            "workflow.collect",
            *map(str, sorted(runs.iterdir())),
            "--flop-convention",
            "6N",
            "--parameter-count",
            "non_embedding",
            "--out-runs",
            str(disk / "runs"),
            "--out-curves",
            str(disk / "curves"),
        ]
    tables = request.getfixturevalue("finished")[0] / "results"
    if stage == "fit":
        return [PYTHON, "-m", "workflow.fit", str(tables / "tables" / "runs.parquet"), "--out", str(disk / "fits.json")]
    if stage == "report":
        return [PYTHON, "-m", *report_args(tables, tables / "fits" / "fits.json", disk / "report")]
    raise AssertionError(stage)


STAGES = ["corpus", "tokenizer", "dataset", "train", "evaluate", "collect", "fit", "report"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_full_disk_in_any_stage_ends_in_one_line(stage, tmp_path, request):
    mount_namespaces_allowed()
    disk = tmp_path / "disk"
    status, stderr, left = on_a_full_disk(disk, stage_writing_to(stage, disk, request))
    assert status == 1, stderr[-3000:]
    assert "No space left on device" in stderr or "no space left on device" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert left == ["fill"], f"{stage} left {left} on the full disk"


# --------------------------------------------------------------------------- fit and report


def test_a_run_missing_its_summary(finished, tmp_path):
    """collect names the run; in the pipeline, Snakemake reruns that run alone."""
    workdir, _ = finished
    runs = workdir / "results" / "runs"
    copies = tmp_path / "runs"
    shutil.copytree(runs, copies)
    (copies / "L1-d16-h2_D32k_s0" / "summary.json").unlink()
    result = cli(
        "workflow.collect",
        *map(str, sorted(copies.iterdir())),
        "--flop-convention",
        "6N",
        "--parameter-count",
        "non_embedding",
        "--out-runs",
        str(tmp_path / "runs_table"),
        "--out-curves",
        str(tmp_path / "curves_table"),
    )
    assert result.returncode == 1
    assert f"run L1-d16-h2_D32k_s0 has no summary.json in {copies / 'L1-d16-h2_D32k_s0'}" in result.stderr
    assert not list(tmp_path.glob("*_table*"))
    summary = runs / "L1-d16-h2_D32k_s0" / "summary.json"
    before = snapshot(workdir / "results")
    hidden = summary.with_name("summary.json.hidden")
    summary.rename(hidden)
    try:
        plan = snakemake(workdir, "-n", "--configfile", "config/tiny.yaml").stdout
    finally:
        hidden.rename(summary)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.split("Job stats:", 1)[1], flags=re.MULTILINE))
    assert jobs["train"] == "1" and jobs["evaluate"] == "1" and "dataset" not in jobs
    assert snapshot(workdir / "results") == before


def test_a_damaged_run_file_is_moved_aside_and_remade(finished):
    """A truncated eval.json (a disk that filled up under another tool, a bad copy): collect stops with
    one line naming the run and the file and moves it aside; a plain rerun remakes it and completes the
    study. (A damaged summary.json is met by the run's evaluation first: the next test.)"""
    workdir, _ = finished
    run, name = "L1-d16-h2_D32k_s0", "eval.json"
    log_of = "results/logs/collect.log"
    relative = f"results/runs/{run}/{name}"  # collect runs in the study's directory
    damaged = workdir / relative
    damaged.write_text(damaged.read_text()[:100])  # newer than the tables: collect reruns
    try:
        first = snakemake(workdir, "--configfile", "config/tiny.yaml", check=False)
        log = (workdir / log_of).read_text()
        assert first.returncode != 0 and "Traceback" not in log
        assert f"error: run {run}: its {name} is damaged (not valid JSON: " in log, log
        assert f"moved aside to {relative}.damaged: run snakemake again to remake it" in log
        assert not damaged.exists() and damaged.with_name(name + ".damaged").exists()
    finally:  # the rerun a user makes, which also leaves the shared study whole for the tests after this one
        rerun = snakemake(workdir, "--configfile", "config/tiny.yaml", check=False)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert read_json(damaged)["run_id"] == run
    assert "Nothing to be done" in snakemake(workdir, "-n", "--configfile", "config/tiny.yaml").stdout


def test_a_damaged_summary_stops_evaluation_and_is_moved_aside(trained, dataset_manifest, tmp_path):
    """The run's evaluation reads its summary.json first: a damaged one stops it with one line and is
    moved aside, so that the next snakemake retrains the run."""
    root = tmp_path / "copy"
    shutil.copytree(trained, root)
    summary = root / "run" / "summary.json"
    summary.write_text(summary.read_text()[:100])
    result = evaluate_cli(root, dataset_manifest)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # The run's results directory names it: here the test's own layout, ROOT/run/.
    assert f"error: run {summary.parent.name}: its summary.json is damaged (not valid JSON: " in result.stderr
    assert f"moved aside to {summary}.damaged: run snakemake again to remake it" in result.stderr
    assert not summary.exists() and not (root / "run" / "eval.json").exists()


def runs_table(finished) -> pl.DataFrame:
    return pl.read_parquet(finished[0] / "results" / "tables" / "runs.parquet")


def fit_cli(table: pl.DataFrame, tmp_path: Path) -> subprocess.CompletedProcess:
    table.write_parquet(tmp_path / "runs.parquet")
    return cli("workflow.fit", str(tmp_path / "runs.parquet"), "--out", str(tmp_path / "fits.json"))


def test_a_number_written_as_text_in_the_table_is_named(tmp_path, finished):
    table = runs_table(finished).with_columns(pl.col("tokens").cast(pl.String))
    third = pl.int_range(pl.len()) == 2
    table = table.with_columns(pl.when(third).then(pl.lit("64k")).otherwise("tokens").alias("tokens"))
    table.write_csv(tmp_path / "runs.csv")
    result = cli("workflow.fit", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "fits.json"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {tmp_path / 'runs.csv'}, column 'tokens', row 3: '64k' is not a number" in result.stderr
    assert not (tmp_path / "fits.json").exists()


def test_a_fits_json_of_another_layout_is_named_by_the_report(tmp_path, finished):
    results = finished[0] / "results"
    fits = read_json(results / "fits" / "fits.json")
    del fits["layout"]  # as written before layouts were numbered
    (tmp_path / "fits.json").write_text(json.dumps(fits))
    result = cli(*report_args(results, tmp_path / "fits.json", tmp_path / "report"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"has fits.json layout 1; this report needs layout {LAYOUT}" in result.stderr
    assert not (tmp_path / "report").exists()


def test_every_run_diverged(tmp_path, finished):
    table = runs_table(finished).with_columns(pl.lit("diverged").alias("status"))
    result = fit_cli(table, tmp_path)
    assert result.returncode == 1
    assert f"error: no completed runs to fit ({table.height} left out as not completed)" in result.stderr
    assert not (tmp_path / "fits.json").exists()


def test_a_single_model_size(tmp_path, finished):
    table = runs_table(finished)
    one = table.filter(pl.col("n_layer") == table["n_layer"].min(), pl.col("d_model") == table["d_model"].min())
    # Three copies, each with its own run ids (the fit refuses a run id twice).
    result = fit_cli(pl.concat([one.with_columns(pl.col("run_id") + f"-copy{k}") for k in range(3)]), tmp_path)
    assert result.returncode == 1
    assert "every run has the same model size: Approach 3 needs at least 2 distinct values of N" in result.stderr
    assert not (tmp_path / "fits.json").exists()


def test_diverged_runs_are_left_out_and_the_sweep_goes_on(tmp_path, finished):
    table = runs_table(finished)
    diverged = table["run_id"][0]
    table = table.with_columns(
        pl.when(pl.col("run_id") == diverged).then(pl.lit("diverged")).otherwise(pl.col("status")).alias("status")
    )
    result = fit_cli(table, tmp_path)
    assert result.returncode == 0, result.stderr
    fits = read_json(tmp_path / "fits.json")
    assert fits["data"]["runs_excluded"] == [diverged] and fits["data"]["runs_fitted"] == table.height - 1
    assert math.isfinite(fits["approach3"]["alpha"])
