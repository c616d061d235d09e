"""The Snakefile reads Snakemake's own command line (issue 29): `snakemake --configfile A --configfile B`,
run directly rather than through ./pipeline.sh run's check, ran the study of B alone, since Snakemake
keeps only the last flag. Real Snakemake, dry runs."""

from __future__ import annotations

from helpers import copy_pipeline, snakemake, write_config


def test_snakemake_given_two_configfile_flags_stops_in_one_line(tmp_path):
    workdir = copy_pipeline(tmp_path)
    lr = write_config(workdir, "lr.yaml", lambda config: config["train"].update(lr=0.001))
    result = snakemake(workdir, "-n", "--configfile", "config/tiny.yaml", "--configfile", lr, check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    line = (
        f"--configfile is given 2 times (config/tiny.yaml, then {lr}): Snakemake keeps only the last, so "
        f"config/tiny.yaml would not be read; give every file after one flag: --configfile config/tiny.yaml {lr}"
    )
    assert line in out.splitlines(), out
    assert "Traceback" not in out and "Job stats" not in out
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


def test_snakemake_given_the_files_after_one_flag_plans_the_study(tmp_path):
    """The form the refusal asks for is accepted, and a job of it runs with both files (the lr of the last)."""
    workdir = copy_pipeline(tmp_path)
    lr = write_config(workdir, "lr.yaml", lambda config: config["train"].update(lr=0.001))
    plan = snakemake(workdir, "-n", "-p", "--configfile", "config/tiny.yaml", lr).stdout
    assert "This was a dry-run" in plan, plan
    snakemake(workdir, "results/config.yaml", "--configfile", "config/tiny.yaml", lr)
    assert "lr: 0.001" in (workdir / "results" / "config.yaml").read_text()
