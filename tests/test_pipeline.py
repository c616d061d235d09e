"""End to end: the tiny study through Snakemake, then what reruns after each kind of change."""

import re
import shutil

import pytest
from helpers import copy_pipeline, snakemake, work_path, write_config

from workflow.files import read_json
from workflow.report import CHARTS, FORMATS

pytestmark = pytest.mark.pipeline
TINY = "config/tiny.yaml"


def dry_run_jobs(workdir, *args) -> dict[str, int]:
    """Rule -> job count that a dry run would execute ({} when nothing is to be done)."""
    out = snakemake(workdir, "-n", "--configfile", *args).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE))
    jobs.pop("total", None)
    return {rule: int(count) for rule, count in jobs.items()}


def test_tiny_study_end_to_end(finished):
    workdir, elapsed = finished
    assert elapsed < 180, f"the tiny study took {elapsed:.0f} s"
    runs = sorted(p.name for p in (workdir / "results" / "runs").iterdir())
    assert len(runs) == 9 and "L2-d48-h4_D128k_s0" in runs
    for run in runs:
        summary = read_json(workdir / "results" / "runs" / run / "summary.json")
        assert summary["status"] == "completed" and summary["run_id"] == run
        assert read_json(workdir / "results" / "runs" / run / "eval.json")["points"][0]["val_loss"] > 0
    fits = read_json(workdir / "results" / "fits" / "fits.json")
    assert fits["approach3"]["alpha"] > 0 and fits["approach3"]["beta"] > 0
    assert fits["flop_convention"] == "6N" and fits["parameter_count"] == "with_head"
    assert fits["bootstrap"]["samples"] == 50 and "alpha" in fits["bootstrap"]["intervals"]["approach3"]
    assert [p["flops"] for p in fits["predictions"]] == [1e14]
    report = workdir / "results" / "report"
    assert {p.name for p in report.iterdir()} >= (
        {f"{chart}.{fmt}" for chart in CHARTS for fmt in FORMATS} | {"index.html", "parameters.csv"}
    )
    # Large artifacts stay in the work directory; results/ holds small files only.
    assert work_path(workdir, "dataset", "manifest.json").exists()
    assert not list((workdir / "results").rglob("*.bin")) and not list((workdir / "results").rglob("*.pt"))
    assert max(p.stat().st_size for p in (workdir / "results").rglob("*") if p.is_file()) < 5e6
    # No temporary leftovers from the atomic writes.
    assert not [p for p in workdir.rglob(".*.tmp-*")]


def test_second_run_does_nothing(finished):
    workdir, _ = finished
    assert dry_run_jobs(workdir, TINY) == {}


def test_one_runs_settings_rerun_that_run_alone(finished):
    workdir, _ = finished
    changed = write_config(
        workdir, "one_run.yaml", lambda c: c["train"].update(overrides={"L1-d32-h2_D64k_s0": {"lr": 0.002}})
    )
    assert dry_run_jobs(workdir, changed) == {
        "study_config": 1,
        "train": 1,
        "evaluate": 1,
        "collect": 1,
        "fit": 1,
        "report": 1,
        "all": 1,
    }


@pytest.mark.parametrize(
    ("setting", "change"),
    [
        ("train.log_every", lambda c: c["train"].update(log_every=3)),
        ("train.checkpoint_every", lambda c: c["train"].update(checkpoint_every=7)),
        ("train.device", lambda c: c["train"].update(device="auto")),
        ("train.kernels", lambda c: c["train"].update(kernels="torch")),
        ("an override of log_every", lambda c: c["train"].update(overrides={"L1-d32-h2_D64k_s0": {"log_every": 2}})),
    ],
)
def test_execution_settings_retrain_nothing(finished, setting, change):
    """How runs are executed cannot change their results: only the recorded study config is rewritten."""
    workdir, _ = finished
    assert dry_run_jobs(workdir, write_config(workdir, "execution.yaml", change)) == {"study_config": 1, "all": 1}


def test_flop_convention_reruns_only_the_analysis(finished):
    """The other compute axis (Kaplan's FLOPs with Kaplan's N, the pair that forms one axis)."""
    workdir, _ = finished
    changed = write_config(
        workdir, "convention.yaml", lambda c: c["fit"].update(flop_convention="kaplan", parameter_count="non_embedding")
    )
    assert dry_run_jobs(workdir, changed) == {"study_config": 1, "collect": 1, "fit": 1, "report": 1, "all": 1}


def test_form_of_the_law_reruns_only_fit_and_report(finished):
    workdir, _ = finished
    changed = write_config(workdir, "form.yaml", lambda c: c["fit"].update(tie_exponents=True, fix={"E": 1.5}))
    assert dry_run_jobs(workdir, changed) == {"study_config": 1, "fit": 1, "report": 1, "all": 1}


def test_vocabulary_change_reruns_from_the_tokenizer(finished):
    workdir, _ = finished
    changed = write_config(workdir, "vocab.yaml", lambda c: c["tokenizer"].update(vocab_size=400))
    assert dry_run_jobs(workdir, changed) == {
        "study_config": 1,
        "tokenizer": 1,
        "dataset": 1,
        "train": 9,
        "evaluate": 9,
        "collect": 1,
        "fit": 1,
        "report": 1,
        "all": 1,
    }


def test_editing_report_code_reruns_only_the_report(finished):
    workdir, _ = finished
    code = workdir / "workflow" / "report" / "page.py"
    code.write_text(code.read_text() + "\n# edited\n")
    try:
        assert dry_run_jobs(workdir, TINY) == {"report": 1, "all": 1}
    finally:
        snakemake(workdir, "--configfile", TINY)  # bring the study back up to date


def test_snakemake_report(finished):
    workdir, _ = finished
    snakemake(workdir, "--configfile", TINY, "--report", "report.html")
    assert (workdir / "report.html").stat().st_size > 10_000
    # The captions the report job wrote, with their numbers, are the report's captions.
    caption = (workdir / "results" / "report" / "captions" / "residuals.rst").read_text()
    rms = re.search(r"RMS ([0-9.e-]+)", caption).group(1)
    assert f"RMS {rms}" in (workdir / "report.html").read_text()


def test_reviewer_regenerates_fits_and_report_from_results_alone(finished, tmp_path):
    """A fresh clone holding only the study's results/: no corpus, shards or checkpoints."""
    workdir, _ = finished
    (tmp_path / "clone").mkdir()
    clone = copy_pipeline(tmp_path / "clone")
    shutil.copytree(workdir / "results", clone / "results")
    for stale in ("fits/fits.json", "report/index.html", "tables/runs.parquet"):
        (clone / "results" / stale).unlink()
    command = ("--forceall", "--configfile", "results/config.yaml", "--config", "regenerate_from_results=True")
    planned = snakemake(clone, "-n", *command).stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", planned.split("Job stats:", 1)[1], flags=re.MULTILINE))
    assert set(jobs) - {"total"} == {"study_config", "collect", "fit", "report", "all"}
    snakemake(clone, *command)
    assert not (clone / "resources").exists()
    before = read_json(workdir / "results" / "fits" / "fits.json")["approach3"]
    after = read_json(clone / "results" / "fits" / "fits.json")["approach3"]
    for name in ("E", "A", "B", "alpha", "beta"):
        assert after[name] == pytest.approx(before[name], rel=1e-6), name
    assert (clone / "results" / "report" / "index.html").stat().st_size > 10_000
    assert (clone / "results" / "config.yaml").read_text() == (workdir / "results" / "config.yaml").read_text()


def test_tokenizer_given_by_url_is_downloaded_checked_and_used(finished, tmp_path):
    """tokenizer.model_url (here a file:// URL) with its sha256: a download job on the submit
    host, then the tokenizer stage checks the model instead of training one."""
    from workflow.files import sha256_file

    workdir, _ = finished
    model = work_path(workdir, "tokenizer", "tokenizer.model")
    clone = copy_pipeline(tmp_path)
    config = write_config(
        clone, "given.yaml", lambda c: c["tokenizer"].update(model_url=model.as_uri(), model_sha256=sha256_file(model))
    )
    snakemake(clone, "results/data/tokenizer.json", "--configfile", config)
    info = read_json(clone / "results" / "data" / "tokenizer.json")
    assert info["model_sha256"] == sha256_file(model)
    assert work_path(clone, "downloads/tokenizer", "tokenizer.model").read_bytes() == model.read_bytes()
    wrong = write_config(
        clone, "wrong.yaml", lambda c: c["tokenizer"].update(model_url=model.as_uri(), model_sha256="0" * 64)
    )
    result = snakemake(
        clone, "results/data/tokenizer.json", "--forcerun", "download_tokenizer", "--configfile", wrong, check=False
    )
    log = (clone / "results" / "logs" / "download_tokenizer.log").read_text()
    assert result.returncode != 0 and "0" * 64 in log and sha256_file(model) in log


def test_wsd_study_gets_a_point_per_budget_from_one_run_per_shape(tmp_path):
    """Under WSD each shape trains once: a cooldown branch per token budget and per IsoFLOP budget,
    the latter named after its budget and grouped by it for Approach 2."""
    import polars as pl

    workdir = copy_pipeline(tmp_path)

    def wsd_with_budgets(config):
        config["train"]["schedule"] = "wsd"
        config["train"]["isoflop"].update(compute_budgets=[5.0e9, 1.0e10], shapes=config["train"]["grid"]["shapes"])

    wsd = write_config(workdir, "wsd.yaml", wsd_with_budgets)
    assert dry_run_jobs(workdir, wsd)["train"] == 3
    snakemake(workdir, "--configfile", wsd)
    runs = pl.read_parquet(workdir / "results" / "tables" / "runs.parquet")
    assert runs.height == 9 + 6 and runs["training_run"].n_unique() == 3
    assert "L2-d48-h4_WSD128k_s0@D32k" in runs["run_id"].to_list()
    iso = runs.filter(pl.col("compute_budget").is_not_null())
    assert sorted(iso["run_id"].str.extract(r"@C(.*)$").unique()) == ["1e10", "5e9"]
    assert iso.group_by("compute_budget").len()["len"].to_list() == [3, 3]
    # Each IsoFLOP point spent its budget, to within one batch of tokens.
    per_token = iso["flops"] / iso["tokens"]
    assert ((iso["compute_budget"] - iso["flops"]).abs() <= per_token * 512).all()
    fits = read_json(workdir / "results" / "fits" / "fits.json")
    assert fits["approach3"]["alpha"] > 0
    section = fits["approach2"]
    if "skipped" in section:  # runs this short may have no interior minimum: both budgets examined
        assert "of 2 (C=5e+09" in section["skipped"], section["skipped"]
    else:
        assert sorted(b["compute_budget"] for b in section["budgets"]) == [5.0e9, 1.0e10]
