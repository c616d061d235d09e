"""A run's checkpoints and staged points, on the work directory.

Two layouts, each written under a temporary name and renamed, so that a job killed mid-save keeps
the previous checkpoint:

- ``checkpoint.pt``: one file written by rank 0 holding the progress, the model and the optimizer
  (an unsharded run);
- ``checkpoint.dcp/``: a directory written by ``torch.distributed.checkpoint``, every process its own
  shards, plus ``progress.pt`` written last by rank 0 (a sharded run). It is written as
  ``.checkpoint.dcp.partial`` and renamed over the old one through ``.checkpoint.dcp.previous``.

Saving one layout removes the other. Either loads into a run of either kind on any number of
devices. Every checkpoint records the run's settings and the identity of its data
(``workflow.shards.data_identity``): one made by other settings, on other data, or that cannot be
read is set aside as ``*.REASON`` with one line, and the run starts afresh.

The points a run has made (each budget's weights) are staged beside the checkpoint, in
``checkpoint-points/``, until the run ends and ``publish_points`` renames the directory into place.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from workflow.files import atomic_path, disk_full, move_aside
from workflow.shards import describe_identity
from workflow.train.errors import TrainError
from workflow.train.parallel import Distributed


def first_cause(error: BaseException) -> BaseException:
    """The first rank's own exception inside torch.distributed.checkpoint's CheckpointException (whose
    text is the list of ranks), which names the file; any other exception as it is."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict) and failures:
        cause, _trace = next(iter(failures.values()))
        return cause
    return error


def keyed_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer, optimizer_state: dict) -> dict:
    """An optimizer state dict keyed by parameter position (torch.optim's own) re-keyed by parameter
    name, the form torch.distributed.checkpoint's set_state_dict takes. The positions follow the
    optimizer's groups, which ``optimizer_groups`` builds in the same order every time."""
    names = {id(p): name for name, p in model.named_parameters()}
    groups = [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
    kept = optimizer_state["state"]
    state, param_groups = {}, []
    for saved, names_of_group in zip(optimizer_state["param_groups"], groups):
        state.update({name: kept[i] for i, name in zip(saved["params"], names_of_group) if i in kept})
        param_groups.append({**saved, "params": names_of_group})
    return {"state": state, "param_groups": param_groups}


class Checkpointer:
    """Save, find the latest, load and set aside one run's checkpoint (``path``, e.g.
    ``WORK/runs/DATASET/RUN/checkpoint.pt``); ``world`` is the run's process group."""

    def __init__(self, path: Path, world: Distributed, run_id: str):
        self.path, self.world, self.run_id = Path(path), world, run_id
        self.sharded_path = self.path.with_suffix(".dcp")
        self.staging_dir = self.path.parent / f"{self.path.stem}-points"
        self.step = 0  # the run's step, for the failure line of a save

    # -- paths

    def sharded_paths(self) -> tuple[Path, Path, Path]:
        """The sharded checkpoint, the one being written (complete once it holds progress.pt, written
        last) and the one it replaces (present only between the two renames of a save)."""
        final = self.sharded_path
        return final, final.with_name(f".{final.name}.partial"), final.with_name(f".{final.name}.previous")

    def latest(self) -> Path | None:
        """The checkpoint to resume from: the unsharded file or the sharded directory, whichever the
        last attempt wrote (saving one removes the other, so both exist only after a crash between).
        A job killed between the two renames of a sharded save left no checkpoint.dcp: then the
        complete new one, or else the previous one."""
        final, partial, previous = self.sharded_paths()
        sharded = [final] if final.exists() else [p for p in (partial, previous) if (p / "progress.pt").exists()]
        found = [p for p in (self.path, *sharded[:1]) if p.exists()]
        return max(found, key=lambda p: p.stat().st_mtime) if found else None

    # -- saving

    def save(self, progress: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> None:
        """The run's ``progress`` with its model and optimizer; every rank calls it."""
        if not sharded:
            if self.world.main:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **progress}
                self.write(state, self.path, "the checkpoint")
                # A sharded checkpoint of an earlier attempt (on another number of devices) is older.
                self.remove_sharded()
            return
        # Every rank writes its shards into a directory under a temporary name; rank 0 adds the
        # progress and renames it into place once all ranks are done, so a killed job leaves the
        # previous checkpoint intact.
        final, partial, previous = self.sharded_paths()
        if self.world.main:
            shutil.rmtree(partial, ignore_errors=True)
        self.world.barrier()
        model_state, optimizer_state = get_state_dict(model, optimizer)
        try:
            dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=partial)
        except (OSError, RuntimeError, dcp.CheckpointException) as e:  # DCP gathers every rank's failures
            raise TrainError(self.failure_line(first_cause(e), final, "the sharded checkpoint")) from None
        if self.world.main:
            self.write(progress, partial / "progress.pt", "the checkpoint's progress")
            shutil.rmtree(previous, ignore_errors=True)
            if final.exists():
                final.rename(previous)
            partial.rename(final)
            shutil.rmtree(previous, ignore_errors=True)
            self.path.unlink(missing_ok=True)
        self.world.barrier()

    def stage_point(self, point_id: str, state: dict) -> None:
        """One point's weights and record (rank 0), kept beside the checkpoint until the run ends (not a
        Snakemake output, so a rerun of an interrupted job keeps the points already made)."""
        self.write(state, self.staging_dir / f"{point_id}.pt", "the weights")

    def publish_points(self, weights_dir: Path) -> None:
        """The staged points become the run's weights directory, renamed into place whole."""
        with atomic_path(weights_dir) as tmp:
            self.staging_dir.rename(tmp)

    def write(self, state: dict, path: Path, what: str) -> None:
        """torch.save under a temporary name, renamed into place: the previous file stays intact until
        the new one is complete. A failure (a full disk above all) ends the run with one line."""
        try:
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
        except (OSError, RuntimeError) as e:
            raise TrainError(self.failure_line(e, path, what)) from None

    def failure_line(self, error: BaseException, path: Path, what: str) -> str:
        """One line for a failed write. torch.save reports a short write as an opaque RuntimeError
        ("unexpected pos"): name a full disk when the file system has less room than the last
        checkpoint took."""
        kept = self.path.stat().st_size if self.path.exists() else 0
        kept = kept or (1 if self.sharded_path.exists() else 0)
        free = shutil.disk_usage(path.parent if path.parent.exists() else self.path.parent).free
        if disk_full(error) or free <= max(kept, 1 << 20):
            cause = f"No space left on device: {free} bytes free on the filesystem of {path.parent}"
        else:
            cause = str(error).splitlines()[0] if str(error) else type(error).__name__
        state_now = "the previous checkpoint is intact" if kept else "there is no earlier checkpoint"
        return (
            f"run {self.run_id}: writing {what} {path} at step {self.step} failed ({cause}); {state_now}. "
            f"Free space in the work directory, then rerun: the run resumes from its last checkpoint"
        )

    # -- loading

    def load(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        sharded: bool,
        device: torch.device,
        spec: dict,
        data: dict,
    ) -> dict | None:
        """The saved progress, with the model and optimizer restored in place, when the latest checkpoint
        was made by these settings (``spec``, the run's result dict) on this ``data``; otherwise None,
        the checkpoint set aside (with the points it staged) and one line saying why. Every rank calls
        it, and all resume or none does."""
        # Rank 0 picks the checkpoint, and every rank reads that one.
        source = self.world.gather(self.latest())[0]
        if source is None:
            return None
        sharded_source = source.is_dir()
        state, problem = None, None
        try:
            # A whole model for a sharded run stays on the CPU: set_state_dict moves each rank's shard.
            progress = source / "progress.pt" if sharded_source else source
            state = torch.load(progress, map_location="cpu" if sharded else device, weights_only=False)
            recorded_spec, recorded_data = state["spec"], state.get("data")
        except Exception as e:  # a truncated or foreign file: torch raises many kinds
            problem = ("damaged", f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        else:
            if recorded_data != data:
                problem = (
                    "other-data",
                    f"was trained on other data ({describe_identity(recorded_data)}; this run's: "
                    f"{describe_identity(data)})",
                )
            elif recorded_spec != spec:
                problem = ("other-settings", "is from other settings")
        problem = next((p for p in self.world.gather(problem) if p is not None), None)
        if problem is not None:
            self.set_aside(source, *problem)
            return None
        if sharded_source:
            self._load_sharded(source, model, optimizer)
        elif sharded:
            # The whole model from an unsharded attempt: each rank keeps its shard of it.
            set_state_dict(
                model,
                optimizer,
                model_state_dict=state["model"],
                optim_state_dict=keyed_by_name(model, optimizer, state["optimizer"]),
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        if self.world.main:
            layout = f" (sharded, written by {state['world_size']} processes)" if sharded_source else ""
            print(f"{self.run_id}: resumed from the checkpoint at step {state['step']}{layout}", flush=True)
        return state

    def _load_sharded(self, source: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Reshards a DCP checkpoint to this run's layout: one full copy per rank, or 1/world shards."""
        model_state, optimizer_state = get_state_dict(model, optimizer)
        try:
            dcp.load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=source)
        except (Exception, dcp.CheckpointException) as e:  # a missing or truncated shard file, on any rank
            # The load may have written into the model already: set the checkpoint aside and end
            # this attempt, so that the next one starts afresh from the seed.
            cause = first_cause(e)
            self.set_aside(source, "damaged", f"cannot be read ({type(cause).__name__}: {cause})")
            raise TrainError(f"run {self.run_id}: its sharded checkpoint was damaged; rerun to start afresh") from None
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)

    def set_aside(self, source: Path, reason: str, why: str) -> None:
        """Move the checkpoint ``source``, any other, and the staged points to ``*.REASON`` (replacing
        older ones) and say so; every rank waits until it is done."""
        if self.world.main:
            aside = move_aside(source, reason)
            move_aside(self.path, reason)
            move_aside(self.sharded_path, reason)
            move_aside(self.staging_dir, reason)
            for leftover in self.sharded_paths()[1:]:
                shutil.rmtree(leftover, ignore_errors=True)
            print(
                f"{self.run_id}: checkpoint {source} {why}; set aside as {aside.name}, starting afresh",
                file=sys.stderr,
                flush=True,
            )
        self.world.barrier()

    # -- the end

    def remove_sharded(self) -> None:
        for path in self.sharded_paths():
            shutil.rmtree(path, ignore_errors=True)

    def remove(self) -> None:
        """The run is complete: its weights are saved per point, so no checkpoint is kept."""
        self.path.unlink(missing_ok=True)
        self.remove_sharded()
