"""The one reading of a Snakemake command line that the config check, the plan and `./pipeline.sh run`
share (workflow/cli_args.py): the config files and --config entries Snakemake itself will use, and a
one-line refusal of the forms Snakemake would silently drop or misread (issue 29, cases 1 and 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from workflow.cli_args import CommandLineError, config_overrides, snakemake_config_args

DEFAULT = Path("config/config.yaml")

# Command lines whose config files and --config entries must be read as Snakemake's own parser reads them.
AGREED = [
    ["--cores", "2", "--configfile", "a.yaml", "b.yaml", "-n"],
    ["--configfile", "a.yaml", "b.yaml", "--cores", "2", "all"],
    ["--configfiles", "a.yaml"],
    ["--configfile=a.yaml", "--forceall"],
    ["--configfile", "a.yaml", "all"],  # nargs="+": Snakemake reads `all` as a config file too
    ["--config", "aa=1", "bb=2", "--cores", "1"],
    ["-C", "aa=1"],
    ["--config=aa=1"],
    ["-Caa=1"],
    ["--cores", "2", "--", "--configfile"],
    ["-n", "--configfile", "a.yaml", "--config", "regenerate_from_results=True"],
]


@pytest.fixture(scope="module")
def snakemake_parser():
    from snakemake.cli import get_argument_parser

    return get_argument_parser()


@pytest.mark.parametrize("argv", AGREED, ids=" ".join)
def test_the_files_and_entries_are_the_ones_snakemake_reads(argv, snakemake_parser):
    """Checked against the installed Snakemake's own argument parser."""
    theirs = snakemake_parser.parse_args(argv)
    ours = snakemake_config_args(argv)
    assert list(ours.configfiles) == list(theirs.configfile)
    assert list(ours.config) == list(theirs.config or [])
    assert ours.config_files() == [DEFAULT, *theirs.configfile]


def test_snakemake_keeps_only_the_last_of_two_configfile_flags(snakemake_parser):
    """Why two flags are refused: the installed Snakemake drops all but the last (and so for --config)."""
    assert snakemake_parser.parse_args(["--configfile", "a.yaml", "--configfile", "b.yaml"]).configfile == [
        Path("b.yaml")
    ]
    assert snakemake_parser.parse_args(["--config", "aa=1", "--config", "bb=2"]).config == ["bb=2"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--configfile", "config/tiny.yaml", "--configfile", "lr.yaml"],
            r"^--configfile is given 2 times \(config/tiny.yaml, then lr.yaml\): Snakemake keeps only the last, "
            r"so config/tiny.yaml would not be read; give every file after one flag: "
            r"--configfile config/tiny.yaml lr.yaml$",
        ),
        (
            ["--configfile=a.yaml", "--configfiles", "b.yaml", "c.yaml"],
            r"^--configfile is given 2 times \(a.yaml, then b.yaml c.yaml\): .* --configfile a.yaml b.yaml c.yaml$",
        ),
        (
            ["--config", "aa=1", "-C", "bb=2"],
            r"^--config is given 2 times \(aa=1, then bb=2\): Snakemake keeps only the last, so aa=1 would not be "
            r"read; give every entry after one flag: --config aa=1 bb=2$",
        ),
        (["--configfile", "--cores", "2"], r"^--configfile names no file: .*--configfile A.yaml B.yaml$"),
        (
            ["config/tiny.yaml", "lr.yaml"],
            r"^config/tiny.yaml is a Snakemake target \(a file to build\) here, not a config file: "
            r"read config files with --configfile config/tiny.yaml lr.yaml$",
        ),
        (
            ["--cores", "2", "lr.yml"],
            r"^lr.yml is a Snakemake target .*: read config files with --configfile lr.yml$",
        ),
    ],
)
def test_a_command_line_snakemake_would_misread_is_refused_in_one_line(argv, message):
    with pytest.raises(CommandLineError, match=message):
        snakemake_config_args(argv)


def test_a_yaml_target_that_the_pipeline_writes_is_allowed():
    """`results/config.yaml` is an output of the pipeline, so it may be a target."""
    assert snakemake_config_args(["--cores", "1", "results/config.yaml"]).configfiles == ()


def test_only_config_flags_refuses_every_other_argument():
    """For a command (the plan) that takes Snakemake's config flags and nothing else of Snakemake's."""
    args = snakemake_config_args(["--configfile", "a.yaml", "--config", "aa=1"], only_config=True)
    assert args.configfiles == (Path("a.yaml"),) and args.config == ("aa=1",)
    with pytest.raises(CommandLineError, match=r"^unrecognised argument '--devcie-memory-gb'"):
        snakemake_config_args(["--configfile", "a.yaml", "--devcie-memory-gb", "4"], only_config=True)
    with pytest.raises(CommandLineError, match=r"^unrecognised argument 'all'"):
        snakemake_config_args(["all"], only_config=True)


def test_replace_workflow_config_leaves_out_the_default_file():
    args = snakemake_config_args(["--replace-workflow-config", "--configfile", "a.yaml"])
    assert args.config_files() == [Path("a.yaml")]


# --------------------------------------------------------------------------- --config entries (case 12)


@pytest.mark.parametrize(
    "entries",
    [
        ["regenerate_from_results=True"],
        ["work_dir=/tmp/x", "regenerate_from_results=False"],
        ["nn=3", "ff=0.5", "ss='quoted'"],
        ["corpus={lock_file: my.lock}"],
        ["empty="],
    ],
)
def test_config_entries_are_parsed_as_snakemake_parses_them(entries):
    from snakemake.cli import parse_config

    assert config_overrides(entries) == parse_config(entries)


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "train.lr=0.001",
            r"^--config train.lr=0.001: Snakemake's --config sets a top-level key only, not train.lr; put "
            r"`train: \{lr: 0.001\}` in a YAML file and give it last: --configfile STUDY.yaml that.yaml$",
        ),
        (
            "train={lr: 0.001}",
            r"^--config 'train=\{lr: 0.001\}': Snakemake reads the values inside \{...\} as text, so train.lr "
            r"would be the text '0.001', not a number; put `train: \{lr: 0.001\}` in a YAML file and give it "
            r"last: --configfile STUDY.yaml that.yaml$",
        ),
        (
            'train={"overrides": {"R": {"lr": 0.001, "compile": true}}}',
            r"^--config .*: Snakemake reads the values inside \{...\} as text, so train.overrides.R.lr "
            r"would be the text '0.001', not a number; put `train: \{overrides: \{R: \{lr: 0.001, compile: true\}\}\}`",
        ),
        ("lr", r"^--config lr: Snakemake takes KEY=VALUE entries; .*--configfile STUDY.yaml that.yaml$"),
    ],
)
def test_a_config_entry_snakemake_would_misread_says_how_to_write_it(entry, message):
    with pytest.raises(CommandLineError, match=message):
        config_overrides([entry])


# --------------------------------------------------------------------------- the config check's CLI


def check(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflow.config", "--check", *argv], cwd=REPO, capture_output=True, text=True
    )


def test_the_check_refuses_two_configfile_flags_in_one_line(tmp_path):
    """`./pipeline.sh run --configfile config/tiny.yaml --configfile lr.yaml` checked both files while
    Snakemake ran the default study with lr.yaml alone."""
    lr = tmp_path / "lr.yaml"
    lr.write_text("train: {lr: 0.001}\n")
    result = check("--configfile", "config/tiny.yaml", "--configfile", str(lr))
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"give every file after one flag: --configfile config/tiny.yaml {lr}" in result.stderr
    merged = check("--configfile", "config/tiny.yaml", str(lr))
    assert merged.returncode == 0, merged.stderr
    assert "config: 9 runs" in merged.stdout


def test_the_check_applies_config_entries_as_snakemake_does(tmp_path):
    """--config entries are part of what runs: the check reads them after the files."""
    result = check("--configfile", "config/tiny.yaml", "--config", "train={lr: 0.001}")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "Snakemake reads the values inside {...} as text" in result.stderr
    bad = check("--configfile", "config/tiny.yaml", "--config", "regenerate_from_results=maybe")
    assert bad.returncode == 1 and "config error at regenerate_from_results" in bad.stderr, bad.stderr
    good = check("--configfile", "config/tiny.yaml", "--config", "regenerate_from_results=True")
    assert good.returncode == 0, good.stderr


def test_the_check_refuses_config_files_given_as_targets():
    """`python -m workflow.config --check A.yaml B.yaml` checked config/config.yaml alone."""
    result = check("config/tiny.yaml", "config/experiments/calibration.yaml")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "--configfile config/tiny.yaml config/experiments/calibration.yaml" in result.stderr
