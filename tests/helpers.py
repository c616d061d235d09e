"""Helpers shared by the tests: a tiny run's settings, and Snakemake on a copy of the pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_config() -> dict:
    import yaml

    with open(REPO / "config" / "tiny.yaml") as f:
        return yaml.safe_load(f)


def tiny_spec(run_id: str = "L1-d32-h2_D32k_s0", **changes):
    """A run of config/tiny.yaml (vocabulary 384, seq_len 32, 512-token batches), with changes.

    A change names a field of the RunSpec, of its optimizer settings, of its model or of its
    execution; changing ``tokens`` changes ``branch_tokens`` with it.
    """
    from dataclasses import fields, replace

    from workflow.config import expand_runs

    spec = expand_runs(tiny_config())[run_id]
    parts = {name: getattr(spec, name) for name in ("optim", "model", "execution")}
    split = {
        name: {k: v for k, v in changes.items() if k in {f.name for f in fields(part)}} for name, part in parts.items()
    }
    others = {k: v for k, v in changes.items() if not any(k in part for part in split.values())}
    if "tokens" in others:
        others["branch_tokens"] = (others["tokens"],)
    return replace(spec, **{name: replace(parts[name], **split[name]) for name in parts}, **others)


def copy_pipeline(dest: Path) -> Path:
    """A copy of the pipeline's code and config, so tests can edit and touch files freely."""
    for name in ("Snakefile", "rules", "workflow", "config", "envs", "profiles"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Snakemake in ``workdir`` with that copy's ``workflow`` package first on the path."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir: Path, name: str, change) -> str:
    """config/tiny.yaml of a pipeline copy, changed by ``change(config)``, saved as config/NAME."""
    import yaml

    config = yaml.safe_load((workdir / "config" / "tiny.yaml").read_text())
    change(config)
    (workdir / "config" / name).write_text(yaml.safe_dump(config))
    return f"config/{name}"


def train_command(spec, dataset_manifest: Path, root: Path, checkpoint: Path | None = None) -> list[str]:
    """The trainer's CLI for one run (a RunSpec): outputs under ROOT/run, weights and checkpoint under ROOT/work."""
    return [
        sys.executable,
        "-m",
        "workflow.train",
        "--spec",
        spec.to_json(),
        "--execution",
        spec.execution_json(),
        "--dataset",
        str(dataset_manifest),
        "--out-dir",
        str(root / "run"),
        "--weights",
        str(root / "work" / "weights"),
        "--checkpoint",
        str(checkpoint or root / "work" / "checkpoint.pt"),
    ]


def train_cli(spec, dataset_manifest: Path, root: Path, **popen):
    """Run the trainer to its end (CompletedProcess), or start it (Popen) when given Popen arguments."""
    args = train_command(spec, dataset_manifest, root)
    if popen:
        return subprocess.Popen(args, **popen)
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def work_path(workdir: Path, stage: str, *rest: str) -> Path:
    """A path under the study's work directory (resources/): STAGE/KEY/REST..., where KEY names the
    settings that made the artefact (workflow.names.artefact_keys); one study has one key per stage."""
    keyed = sorted(p for p in (workdir / "resources" / stage).iterdir() if p.is_dir())
    assert len(keyed) == 1, f"expected one {stage} key under {workdir / 'resources' / stage}, found {keyed}"
    return keyed[0].joinpath(*rest)
