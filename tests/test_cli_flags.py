"""Every stage CLI (`python -m workflow.<stage>`) refuses a flag it does not know, naming it, before it
does anything (issue 29: a typo such as `--devcie-memory-gb` must never fall back to a default). The
plan (workflow/plan.py) has its own test (tests/test_plan.py)."""

from __future__ import annotations

import importlib

import pytest
from helpers import REPO

# Each stage's main, and the arguments it requires (dummy values: parsing stops at the unknown flag).
STAGES = {
    "collect": (
        "workflow.collect",
        ["--flop-convention", "6N", "--parameter-count", "with_head", "--out-runs", "r", "--out-curves", "c", "d"],
    ),
    "config": ("workflow.config", ["--config-json", "{}", "--write", "w"]),
    "corpus": ("workflow.corpus", ["--sources", "[]", "--out-documents", "d", "--out-manifest", "m"]),
    "dataset": (
        "workflow.dataset",
        "--documents d --tokenizer t --validation-fraction 0.1 --validation-max-tokens 1 --shard-tokens 1 "
        "--out-dir o --out-summary s".split(),
    ),
    "download": ("workflow.download", ["--url", "http://127.0.0.1:9/x", "--out", "o"]),
    "evaluate": ("workflow.evaluate", ["--weights", "w", "--summary", "s", "--dataset", "d", "--out", "o"]),
    "tokenizer": ("workflow.tokenizer", ["--vocab-size", "384", "--out-model", "m", "--out-info", "i"]),
    "yardstick": (
        "workflow.yardstick",
        "--documents d --base-tokenizer b --base-dataset m --tokenizer t --out-dir o".split(),
    ),
    "fit": ("workflow.fit.__main__", ["--out", "o", "table.csv"]),
    "train": (
        "workflow.train.__main__",
        "--spec {} --execution {} --dataset d --out-dir o --weights w --checkpoint c".split(),
    ),
    "tune": ("workflow.tune.select", ["--plan", "p", "--out-dir", "o", "r"]),
    "report": ("workflow.report.build", ["--runs", "r", "--curves", "c", "--fits", "f", "--out-dir", "o"]),
    "screenshot": ("workflow.report.screenshot", ["index.html", "out.png"]),
    # torchrun's arguments: those after the script are the script's (workflow.train, which refuses its own).
    "launch": ("workflow.launch", ["--nproc-per-node", "1", "script.py"]),
}


def stage_clis() -> set[str]:
    """The package's CLIs: modules run as `python -m workflow.X`, and packages with a __main__.py."""
    found = set()
    for path in (REPO / "workflow").rglob("*.py"):
        if path.name == "__main__.py":
            found.add(path.parent.name)
        elif 'if __name__ == "__main__"' in path.read_text():
            found.add(path.stem)
    return found - {"plan"}


def test_every_stage_cli_is_tested_here():
    assert stage_clis() == set(STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_an_unknown_flag_is_refused_naming_it(stage, capsys):
    module, required = STAGES[stage]
    main = importlib.import_module(module).main
    # Before the required arguments, and after them (a positional's list must not swallow it).
    places = [["--bogus-flag", *required]] + ([] if stage == "launch" else [[*required, "--bogus-flag"]])
    for argv in places:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2, err
        assert "Traceback" not in err
        assert "--bogus-flag" in err.strip().splitlines()[-1], err


def test_the_config_check_refuses_a_flag_snakemake_does_not_know(capsys):
    """`--check` passes Snakemake's command line through: only flags that Snakemake knows."""
    from workflow.config import main

    assert main(["--check", "--configfile", "config/tiny.yaml", "--bogus-flag"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --bogus-flag is not a flag of Snakemake's (snakemake --help lists them)\n"


def test_the_common_snakemake_flags_are_snakemakes():
    """The config check accepts these without building Snakemake's parser: each must be one of its flags."""
    from snakemake.cli import get_argument_parser

    from workflow.cli_args import COMMON_SNAKEMAKE_FLAGS

    known = set(get_argument_parser()._option_string_actions)
    assert sorted(COMMON_SNAKEMAKE_FLAGS - known) == []
