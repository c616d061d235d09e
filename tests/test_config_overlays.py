"""Overlays replace lists (issue 29, case 6): `--configfile config/experiments/calibration.yaml
config/tiny.yaml`, meant to shrink the calibration study, replaced the synthetic source with tiny's
corpus list and ran the tiny study, with nothing said. The check warns when an overlay drops a corpus
source that an earlier file set, and docs/configuration.md shows how to combine the two (tested here
as written there)."""

from __future__ import annotations

import re
import subprocess
import sys

from helpers import REPO

from workflow.config import check_config, load_command_line

CALIBRATION = "config/experiments/calibration.yaml"


def test_an_overlay_that_drops_an_earlier_files_corpus_source_is_warned_naming_both_files():
    warnings: list[str] = []
    config = load_command_line(["--configfile", CALIBRATION, "config/tiny.yaml"], warnings=warnings)
    assert [s["name"] for s in config["corpus"]["sources"]] == ["stdlib"]
    assert warnings == [
        "config/tiny.yaml replaces corpus.sources, which config/experiments/calibration.yaml set, dropping its "
        "source zipf-markov (a list is replaced, not merged); to keep it, leave corpus out of "
        "config/tiny.yaml or list the source there too (docs/configuration.md, Overlays)"
    ]


def test_the_check_prints_the_warning_in_one_line_and_goes_on():
    result = subprocess.run(
        [sys.executable, "-m", "workflow.config", "--check", "--configfile", CALIBRATION, "config/tiny.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("warning: config/tiny.yaml replaces")


def test_the_default_configs_corpus_replaced_by_a_study_is_not_warned():
    """Every study replaces config/config.yaml's corpus: that is what a study file is for."""
    warnings: list[str] = []
    load_command_line(["--configfile", CALIBRATION], warnings=warnings)
    load_command_line(["--configfile", "config/tiny.yaml"], warnings=warnings)
    assert warnings == []


def documented_overlay() -> str:
    """The YAML block that docs/configuration.md gives for a smaller calibration study."""
    text = (REPO / "docs" / "configuration.md").read_text()
    match = re.search(r"```yaml\n(# calibration-small\.yaml.*?)```", text, flags=re.S)
    assert match, "docs/configuration.md lost its calibration-small.yaml example"
    return match.group(1)


def test_the_documented_way_to_shrink_the_calibration_study_keeps_its_source(tmp_path):
    small = tmp_path / "calibration-small.yaml"
    small.write_text(documented_overlay())
    warnings: list[str] = []
    config = load_command_line(["--configfile", CALIBRATION, str(small)], warnings=warnings)
    assert warnings == []
    assert [s["builtin"] for s in config["corpus"]["sources"]] == ["zipf_markov"]
    full = load_command_line(["--configfile", CALIBRATION])
    smaller = len(check_config(config))
    assert smaller < len(check_config(full)) or config["train"]["grid"] != full["train"]["grid"]
    assert config["tokenizer"]["sample_bytes"] < full["tokenizer"]["sample_bytes"]


def test_an_overlay_that_lists_the_source_again_under_its_name_is_not_warned(tmp_path):
    """Changing the source itself (fewer documents) means listing it whole: nothing is dropped."""
    smaller = tmp_path / "fewer-documents.yaml"
    smaller.write_text(
        "corpus:\n  sources:\n    - name: zipf-markov\n      builtin: zipf_markov\n"
        "      settings: {words: 2000, documents: 3000}\n"
    )
    warnings: list[str] = []
    config = load_command_line(["--configfile", CALIBRATION, str(smaller)], warnings=warnings)
    assert warnings == [] and config["corpus"]["sources"][0]["settings"]["documents"] == 3000
