"""The conda environments list the same packages as pyproject.toml."""

import re

import tomllib
import yaml
from helpers import REPO

CONDA_TO_PYPI = {"pytorch": "torch"}
# In conda environments only: the interpreter itself and the fused kernels,
# which come from conda-forge ('nvidia-apex') and have no PyPI release.
CONDA_ONLY = {"python", "nvidia-apex"}
# Needed by the driver, not by the jobs.
DRIVER_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}


def name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[]", requirement.strip(), maxsplit=1)[0].lower()


def test_envs_match_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = {name(r) for r in pyproject["project"]["dependencies"]} - DRIVER_ONLY
    listed = set()
    for path in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert env["channels"] == ["conda-forge"], path
        listed |= {CONDA_TO_PYPI.get(name(d), name(d)) for d in env["dependencies"]}
    assert listed - CONDA_ONLY == wanted


def test_every_rule_names_an_environment():
    for path in sorted((REPO / "rules").glob("*.smk")):
        if path.name == "common.smk":
            continue
        text = path.read_text()
        jobs = re.findall(r"^\s*(?:rule|checkpoint) \w+:", text, flags=re.M)
        assert jobs and len(jobs) == text.count("conda:"), path
