"""Faults of a study as a whole (issue 29): a study copied or moved, regeneration from results/ with a
file missing or a recorded config that disagrees with the runs, a failed fit after a finished study, two
studies on one work_dir training the same run with other settings.
docs/reliability.md lists the cases."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import copy_pipeline, snakemake, write_config

from workflow.fit.schema import LAYOUT

pytestmark = pytest.mark.faults
TINY = "config/tiny.yaml"


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_a_copied_or_moved_study_is_up_to_date(finished, tmp_path):
    """The analysis rules' code inputs were absolute paths: Snakemake reran collect, fit and report of a
    study whose directory was copied or moved, since the set of its input paths changed."""
    workdir, _ = finished
    moved = tmp_path / "moved"
    shutil.copytree(workdir, moved, symlinks=True)
    plan = snakemake(moved, "-n", "--configfile", TINY).stdout
    assert "Nothing to be done" in plan, plan


def reviewer_clone(finished, tmp_path, change=None) -> Path:
    """A fresh clone holding only the finished study's results/, its results/config.yaml changed by
    ``change(config)``."""
    workdir, _ = finished
    (tmp_path / "clone").mkdir()
    clone = copy_pipeline(tmp_path / "clone")
    shutil.copytree(workdir / "results", clone / "results")
    if change:
        recorded = clone / "results" / "config.yaml"
        config = yaml.safe_load(recorded.read_text())
        change(config)
        recorded.write_text(yaml.safe_dump(config))
    return clone


REGENERATE = ("--forceall", "--configfile", "results/config.yaml", "--config", "regenerate_from_results=True")


def regenerate_refuses(clone: Path) -> str:
    """Regeneration stops before any job, changing nothing in results/; its message."""
    before = snapshot(clone / "results")
    result = snakemake(clone, *REGENERATE, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "steps (100%) done" not in out, out
    assert snapshot(clone / "results") == before
    return out


def test_regenerating_a_tuned_study_without_its_tuning_file_is_refused(finished, tmp_path):
    """A tuned study's results/ without results/tune/: only the analysis rules exist, so nothing could
    make the tuning files, and Snakemake kept the old tables, fits and report ("2 of 2 steps (100%)
    done"). Every file the analysis reads is checked first."""

    def tuned(config):
        shapes = [config["train"]["grid"]["shapes"][i] for i in (0, 2)]
        config["tune"] = {"enabled": True, "shapes": shapes, "values": {"lr": [1e-3, 4e-3]}, "tokens": 16000}

    clone = reviewer_clone(finished, tmp_path, tuned)
    out = regenerate_refuses(clone)
    assert (
        "regenerating from results/: 2 file(s) the analysis reads are missing: results/tune/sweep.csv, "
        "results/tune/tuning.json; copy the study's whole results/ folder, or rerun the study without "
        "regenerate_from_results to make them"
    ) in out, out
    assert "Traceback" not in out


def test_regenerating_without_a_runs_file_is_refused(finished, tmp_path):
    clone = reviewer_clone(finished, tmp_path)
    (clone / "results" / "runs" / "L1-d32-h2_D64k_s0" / "eval.json").unlink()
    out = regenerate_refuses(clone)
    assert "1 file(s) the analysis reads are missing: results/runs/L1-d32-h2_D64k_s0/eval.json;" in out, out


def test_regenerating_from_a_config_edited_by_hand_names_the_difference(finished, tmp_path):
    """results/config.yaml with lr 0.004 changed to 0.001: the runs' own summary.json say 0.004."""
    clone = reviewer_clone(finished, tmp_path, lambda config: config["train"].update(lr=0.001))
    out = regenerate_refuses(clone)
    assert (
        "regenerating from results/: run L1-d16-h2_D128k_s0: train.lr is 0.001 in results/config.yaml but 0.004 "
        "in results/runs/L1-d16-h2_D128k_s0/summary.json, which the run trained with (and 8 more difference(s)); "
        "regenerate with the study's own results/config.yaml, or retrain with the new value (leave out "
        "regenerate_from_results)"
    ) in out, out


@pytest.mark.parametrize(
    ("path", "named"), [(("data",), "data"), (("frontier",), "frontier"), (("approach3", "alpha"), "approach3.alpha")]
)
def test_a_fits_json_missing_a_key_is_named_before_the_report_writes(finished, tmp_path, path, named):
    """A fits.json of the current layout with a key removed: KeyError tracebacks, and without `data`
    26 chart files but no index.html. Now one line naming the key, and nothing written."""
    results = finished[0] / "results"
    fits = json.loads((results / "fits" / "fits.json").read_text())
    target = fits
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    (tmp_path / "fits.json").write_text(json.dumps(fits))
    tables = results / "tables"
    result = subprocess.run(
        [sys.executable, "-m", "workflow.report", "--runs", str(tables / "runs.parquet")]
        + ["--curves", str(tables / "curves.parquet"), "--fits", str(tmp_path / "fits.json")]
        + ["--out-dir", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'fits.json'} is not a complete fits.json of layout {LAYOUT}: {named} is missing "
        "(workflow/fit/schema.py); refit it with this version of the pipeline (snakemake --forcerun fit)"
    ]
    assert not (tmp_path / "report").exists()


def test_a_failed_fit_sets_the_previous_report_aside(finished, tmp_path):
    """A new study's collect reruns (another FLOP convention) and its fit fails (a floor above every
    loss): Snakemake removed fits.json, the failed job's output, but the previous study's report stayed
    in results/report/ beside the new tables and config, looking current. Now it is moved aside whole."""
    workdir, _ = finished
    study = tmp_path / "study"
    shutil.copytree(workdir, study, symlinks=True)
    results = study / "results"
    before = snapshot(results / "report")
    # Earlier faults tests on the shared study (a failed collect) may have set a report aside already.
    earlier = set(results.glob("report.stale-*"))

    def failing_fit(config):
        config["fit"].update(flop_convention="kaplan", parameter_count="non_embedding", fix={"E": 10.0})

    config = write_config(study, "failing_fit.yaml", failing_fit)
    result = snakemake(study, "--configfile", config, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Error in rule fit" in out, out
    assert "Error in rule collect" not in out and (results / "tables" / "runs.parquet").exists()
    assert not (results / "fits" / "fits.json").exists()
    assert not (results / "report").exists()
    (aside,) = set(results.glob("report.stale-*")) - earlier
    assert snapshot(aside) == before  # nothing of it is lost
    line = (
        r"error: results/report/ was built from files this failed run removed \(results/fits/fits.json\), so it "
        rf"is not this study's report: moved aside to results/{re.escape(aside.name)}/; fix the error above and "
        r"rerun snakemake to make the study's report"
    )
    assert any(re.fullmatch(line, text) for text in out.splitlines()), out
    plan = snakemake(study, "-n", "--configfile", config).stdout
    assert re.search(r"^fit\s+1$", plan, flags=re.M) and re.search(r"^report\s+1$", plan, flags=re.M), plan


def test_a_second_study_training_a_shared_run_with_other_settings_is_refused(tmp_path):
    """Two clones on one work_dir, the same data, the second with train.lr 0.001: they shared each run's
    directory (keyed by the data), and each study's training removed the other's weights, back and forth.
    The second now stops before any job naming the run, the key and both values; the first's files stay."""
    shared = tmp_path / "scratch"
    run = "L1-d16-h2_D32k_s0"
    studies = []
    for name, lr in (("first", 0.004), ("second", 0.001)):
        (tmp_path / name).mkdir()
        workdir = copy_pipeline(tmp_path / name)

        def change(config, lr=lr):
            config.update(work_dir=str(shared))
            config["train"]["lr"] = lr

        studies.append((workdir, write_config(workdir, "study.yaml", change)))
    (first, config), (second, _) = studies
    snakemake(first, "--configfile", config, "--", f"results/runs/{run}/summary.json")
    before = snapshot(shared)
    (weights,) = list(shared.glob(f"runs/*/{run}/weights"))
    for args in (("-n",), ()):
        result = snakemake(second, *args, "--configfile", config, check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0, out
        assert (
            f"config error at work_dir: run {run} in {weights} was trained by another study with train.lr = 0.004, "
            "this study's is 0.001; studies sharing a work_dir share each run's directory and would retrain each "
            "other's runs back and forth: give this study its own work_dir"
        ) in out.splitlines(), out
        assert snapshot(shared) == before and not (second / "results").exists()
    plan = snakemake(first, "-n", "--configfile", config, "--", f"results/runs/{run}/summary.json").stdout
    assert "Nothing to be done" in plan, plan
