import os
import shutil
import socket
from dataclasses import replace

import pytest
from helpers import tiny_spec

from workflow.launch import LaunchError, launch_command


def test_launch_command_is_torchrun_on_one_node_and_srun_of_one_torchrun_per_node_on_several():
    execution = tiny_spec(devices=4).execution
    one_node = launch_command(execution, ["--spec", "{}"], env={})
    assert one_node[1:4] == ["-m", "workflow.launch", "--nproc-per-node=4"] and "--standalone" in one_node
    assert one_node[-4:] == ["-m", "workflow.train", "--spec", "{}"]

    two_nodes = replace(execution, nodes=2, threads=8)
    bin_dir = shutil.which("python3").rsplit("/", 1)[0]
    with pytest.raises(LaunchError, match="inside a Slurm job of 2 nodes"):
        launch_command(two_nodes, [], env={"PATH": bin_dir})
    if shutil.which("srun") is None:
        with pytest.raises(LaunchError, match="srun is not on"):
            launch_command(two_nodes, [], env={"SLURM_JOB_ID": "12345", "PATH": bin_dir})
        return
    command = launch_command(two_nodes, ["--spec", "{}"], env={"SLURM_JOB_ID": "12345", "PATH": os.environ["PATH"]})
    assert command[:4] == ["srun", "--ntasks=2", "--cpus-per-task=8", "--kill-on-bad-exit=1"]
    assert "--nnodes=2" in command and "--nproc-per-node=4" in command and "--standalone" not in command
    # Every node's torchrun meets at the first node (where the job's command runs), on the job's own port.
    assert f"--rdzv-endpoint={socket.gethostname()}:{29500 + 12345 % 10000}" in command
    assert "--rdzv-id=slurm-12345" in command and command[-2:] == ["--spec", "{}"]
