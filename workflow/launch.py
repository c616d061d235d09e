"""How the train stage starts a run's processes.

``python -m workflow.train`` starts a run with k = ``devices`` > 1 processes by becoming the command
of ``launch_command``: torchrun on one node, or srun starting one torchrun per node on n = ``nodes``
> 1 nodes. torchrun runs through ``python -m workflow.launch``, which is torchrun itself with its
failure report cut short: when a training process fails, it has already said why in one line, and
torchrun's own traceback of the failure would bury that line.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys

from workflow.spec import Execution

# How long torchrun waits for its processes to checkpoint after a signal before it kills them.
SHUTDOWN_SECONDS = 240


class LaunchError(RuntimeError):
    pass


def launch_command(execution: Execution, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The command that starts a run's processes, each running ``python -m workflow.train ARGV``.

    One node: torchrun with one process per device. ``nodes`` = n > 1: srun starts one torchrun per
    node of the job's Slurm allocation (n tasks, one per node), and the torchruns meet at a c10d
    rendezvous on the first node, which is where the job's own command runs. Node ranks then follow
    from the rendezvous: every node gets the same command.
    """
    env = os.environ if env is None else env
    torchrun = [sys.executable, "-m", "workflow.launch", f"--nproc-per-node={execution.devices}"]
    module = ["-m", "workflow.train", *argv]
    if execution.nodes == 1:
        return [*torchrun, "--standalone", *module]
    job = env.get("SLURM_JOB_ID")
    if not job:
        raise LaunchError(
            f"train.nodes is {execution.nodes}: a multi-node run starts its processes with srun inside a "
            f"Slurm job of {execution.nodes} nodes (snakemake --profile slurm); set nodes to 1 to run it here"
        )
    if shutil.which("srun", path=env.get("PATH")) is None:
        raise LaunchError(f"train.nodes is {execution.nodes} but srun is not on this Slurm job's PATH")
    # A port of its own per job, so two jobs sharing a first node do not meet at one rendezvous.
    endpoint = f"{socket.gethostname()}:{29500 + int(job) % 10000}"
    srun = [
        "srun",
        f"--ntasks={execution.nodes}",
        f"--cpus-per-task={execution.threads}",
        # A node whose torchrun fails ends the others, rather than leaving them waiting for it.
        "--kill-on-bad-exit=1",
    ]
    rendezvous = [
        f"--nnodes={execution.nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id=slurm-{job}",
    ]
    return [*srun, *torchrun, *rendezvous, *module]


def main(argv: list[str] | None = None) -> int:
    """torchrun (torch.distributed.run) with these arguments; a failed training process ends it with
    that process's exit status and one line, instead of a traceback."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    # Slurm signals a job 300 s before its time limit (the profile's --signal=TERM@300); torchrun passes
    # the signal on and, by default, kills its processes 30 s later, too soon for a large sharded run to
    # finish its step and checkpoint.
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_SECONDS))
    try:
        torchrun(argv)
    except SignalException as stop:
        # Slurm's SIGTERM before a time limit: torchrun has passed it on to the training processes,
        # which checkpoint and say so; exit as they do (128 + the signal's number).
        return 128 + int(stop.sigval)
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        print(
            f"error: training process {rank} of {failed.name} exited with status {failure.exitcode}; "
            f"its own message is above",
            file=sys.stderr,
        )
        return failure.exitcode if 0 < failure.exitcode < 256 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
