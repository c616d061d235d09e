"""Two studies in one work_dir must not train the same run directory with different settings.

A run's work directory is ``WORK/runs/DATASET_KEY/RUN/``: keyed by the data, not by the run's other
settings, since its id does not carry them (``train.lr``, say). Two studies on the same data with
different settings therefore shared it, and retrained each other's runs back and forth: training a
run removes the weights there (Snakemake clears a job's outputs), and the other study's next
``snakemake`` found its weights newer than its ``eval.json``, had them refused by the evaluation
(other settings) and retrained. Keying run directories by their settings would retrain every existing
study on upgrade, so the Snakefile refuses, before any job, a study whose run directory holds weights
of other settings that are not this study's own earlier ones (its ``results/runs/RUN/summary.json``
records those: a study that changes its own settings retrains, as before).

The settings are read from what the trainer records in each point's weights (``spec``), without
torch: the Snakefile stays light on login nodes. A ``torch.save`` file is a zip holding a pickle of
the objects and one entry per tensor; the pickle is read with every torch class replaced by an inert
stand-in (nothing is imported or called, so reading a file cannot run code).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

from workflow.regenerate import config_key, flatten
from workflow.spec import RunSpec


class SharedRunError(ValueError):
    """A run directory of the work_dir trained by another study with other settings; one line."""


class _Inert:
    """Stands in for any torch object in a weights file (a tensor, a storage, a dtype, a size)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


# Classes a point's record may hold beside torch's: read as themselves.
_PLAIN = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex")}


class _RecordUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        return _Inert

    def persistent_load(self, pid):  # a tensor's storage, kept in its own zip entry
        return None


def recorded_spec(weights_dir: Path) -> dict | None:
    """The settings the run's weights were trained with (the ``spec`` a point's weights record); None
    when there are no weights, they record none (written before the pipeline did) or cannot be read
    (the evaluation names a damaged file)."""
    points = sorted(weights_dir.glob("*.pt")) if weights_dir.is_dir() else []
    if not points:
        return None
    try:
        with zipfile.ZipFile(points[0]) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with archive.open(name) as f:
                state = _RecordUnpickler(f).load()
    except (OSError, zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError, ValueError, TypeError):
        return None
    spec = state.get("spec") if isinstance(state, dict) else None
    return plain(spec) if isinstance(spec, dict) else None


def plain(value):
    """JSON types only (tuples as lists), so that a spec from a pickle compares with one from JSON."""
    return json.loads(json.dumps(value))


def own_spec(results: Path, run: str) -> dict | None:
    """The settings this study's own results/runs/RUN/summary.json records (None without one)."""
    try:
        spec = json.loads((results / "runs" / run / "summary.json").read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return None
    return plain(spec) if isinstance(spec, dict) else None


def check_shared_runs(runs: dict[str, RunSpec], runs_dir: Path, config: dict, results: Path = Path("results")) -> None:
    """Each run's directory under ``runs_dir`` holds no weights that another study trained with other
    settings (neither this study's settings, ``runs``, nor those its own summary.json records);
    SharedRunError names the first such run, a differing setting (its key in ``config``) with both
    values, and says what to do."""
    for run, spec in sorted(runs.items()):
        weights = runs_dir / run / "weights"
        theirs = recorded_spec(weights)
        ours = plain(spec.result_dict())
        if theirs is None or theirs == ours or theirs == own_spec(results, run):
            continue
        flat_ours, flat_theirs = flatten(ours), flatten(theirs)
        differing = sorted(k for k in set(flat_ours) | set(flat_theirs) if flat_ours.get(k) != flat_theirs.get(k))
        path = differing[0]
        more = f" (and {len(differing) - 1} more setting(s))" if len(differing) > 1 else ""
        raise SharedRunError(
            f"config error at work_dir: run {run} in {weights} was trained by another study with "
            f"{config_key(run, path, config)} = {json.dumps(flat_theirs.get(path))}, this study's is "
            f"{json.dumps(flat_ours.get(path))}{more}; studies "
            f"sharing a work_dir share each run's directory and would retrain each other's runs back and forth: "
            f"give this study its own work_dir"
        )
