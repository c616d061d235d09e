"""``python -m workflow.train``: one run from its spec, as the train rule and torchrun start it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

from workflow.files import run_stage
from workflow.launch import LaunchError, launch_command
from workflow.shards import ShardError
from workflow.spec import RunSpec
from workflow.train.errors import StopForSignal, TrainError
from workflow.train.trainer import check_micro_batches_divide, train_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow.train", description="Train one run of the grid: metrics, weights and a summary."
    )
    parser.add_argument("--spec", required=True, help="the settings that define the run's result, as JSON")
    parser.add_argument("--execution", required=True, help="how the run is executed (device, logging, ...), as JSON")
    parser.add_argument("--dataset", required=True, type=Path, help="dataset manifest.json")
    parser.add_argument("--out-dir", required=True, type=Path, help="results/runs/<run>: metrics, summary")
    parser.add_argument("--weights", required=True, type=Path, help="directory for each point's weights (work dir)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="resumable checkpoint (work dir)")
    args = parser.parse_args(argv)
    spec = RunSpec.from_json(args.spec, args.execution)
    if spec.execution.world_size > 1 and "WORLD_SIZE" not in os.environ:
        # k devices: become torchrun, which starts k copies of this command (on n nodes: become
        # srun, which starts a torchrun on each). exec keeps the job's process id, so Slurm's
        # signals reach torchrun, which passes them on to the training processes.
        try:
            check_micro_batches_divide(spec, spec.execution.world_size)
        except TrainError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        try:
            command = launch_command(spec.execution, sys.argv[1:] if argv is None else argv)
        except LaunchError as e:
            print(f"error: run {spec.run_id}: {e}", file=sys.stderr)
            return 1
        sys.stdout.flush()
        os.execvp(command[0], command)
    try:
        summary = train_run(spec, args.dataset, args.out_dir, args.weights, args.checkpoint)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ShardError as e:
        print(
            f"error: run {spec.run_id}: the dataset is damaged: {e}. Rebuild it (snakemake --forcerun dataset)",
            file=sys.stderr,
        )
        return 1
    except StopForSignal as stop:  # the shell's convention: 128 + the signal's number
        return 128 + int(stop.args[0] if stop.args else signal.SIGTERM)
    except torch.cuda.OutOfMemoryError as e:
        print(
            f"error: run {spec.run_id} ran out of GPU memory ({e}). Lower train.micro_batch_size "
            f"(gradient accumulation keeps the global batch) or use a GPU with more memory.",
            file=sys.stderr,
        )
        return 1
    if not summary:  # not rank 0
        return 0
    mfu = f", MFU {summary['mfu']:.1%}" if summary["mfu"] is not None else ""
    print(
        f"{summary['run_id']}: {summary['status']}, train loss {summary['final_train_loss']:.4f}, "
        f"{summary['tokens_per_s']:.0f} tokens/s{mfu} on {summary['device']} ({summary['kernels']} kernels)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "train"))
