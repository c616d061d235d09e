"""The plan before submission: the memory model against the autograd graph and against measured peak
memory on the CPU, and the CLI on every shipped config."""

import subprocess
import sys
import time
from dataclasses import replace

import pytest
from helpers import REPO, tiny_spec, train_command
from spec_variants import shipped_configs

from workflow.families import get_family
from workflow.plan import BYTES_PER_PARAMETER, GIB, memory_per_device, shards, slurm_request
from workflow.spec import ModelConfig

GPT = ModelConfig(vocab_size=384, seq_len=64, n_layer=2, d_model=256, n_head=4)


def saved_elements_per_token(cfg: ModelConfig, batch: int = 2) -> float:
    """What the model's forward pass saves for backward, per token, in elements: every tensor the
    autograd graph packs (saved-tensor hooks), each storage once, parameters and buffers left out."""
    import torch

    model = get_family(cfg.family).model_class()(cfg)
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    tokens = torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(tokens, tokens)
    return sum(storages.values()) / 4 / (batch * cfg.seq_len)  # fp32 on the CPU


@pytest.mark.parametrize(
    ("cfg", "tolerance"),
    [
        (GPT, 0.01),
        (replace(GPT, positions="learned"), 0.01),
        (replace(GPT, norm="layernorm", bias=True), 0.01),
        (replace(GPT, mlp_ratio=2, n_layer=3), 0.01),
        (replace(GPT, family="lstm", n_head=1), 0.1),
    ],
    ids=["gpt", "learned-positions", "layernorm-bias", "mlp2-L3", "lstm"],
)
def test_saved_activations_are_what_the_autograd_graph_keeps(cfg, tolerance):
    counted = get_family(cfg.family).saved_activations_per_token(cfg) + cfg.vocab_size  # + the log-softmax
    assert counted == pytest.approx(saved_elements_per_token(cfg), rel=tolerance)


def test_model_states_take_16_bytes_a_parameter_under_ddp_and_a_share_when_sharded():
    spec = tiny_spec()
    total = get_family("gpt").parameter_counts(spec.model).total
    ddp = memory_per_device(spec, sharded=False)
    assert (ddp.weights, ddp.gradients, ddp.optimizer) == (4 * total, 4 * total, 8 * total)
    assert sum(BYTES_PER_PARAMETER.values()) == 16
    assert memory_per_device(spec, sharded=True, devices=4).activations == ddp.activations  # own micro-batches


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_sharded_states_are_a_share_plus_the_units_gathered_whole(family):
    """Each of k devices keeps 1/k of every state; a GPT gathers its root unit (embedding, head) and one
    block's weights and holds one unit's gradients whole, an LSTM (one unit) the whole model's."""
    spec = tiny_spec(family=family, n_layer=24, d_model=256, n_head=4)
    counts = get_family(family).parameter_counts(spec.model)
    ddp = memory_per_device(spec, sharded=False)
    sharded = memory_per_device(spec, sharded=True, devices=4)
    assert sharded.optimizer == ddp.optimizer / 4
    if family == "gpt":
        block, root = counts.non_embedding / 24, counts.total - counts.non_embedding
        assert sharded.weights == pytest.approx(ddp.weights / 4 + 4 * (root + block))
        assert sharded.gradients == pytest.approx(ddp.gradients / 4 + 4 * max(root, block))
        assert sharded.total - sharded.activations < (ddp.total - ddp.activations) / 2
    else:
        assert sharded.weights == ddp.weights / 4 + 4 * counts.total
        assert sharded.gradients == ddp.gradients / 4 + 4 * counts.total


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_the_plan_and_the_model_agree_on_the_units_a_sharded_run_gathers(family):
    from workflow.model import build_model

    spec = tiny_spec(family=family, n_layer=2)
    assert bool(build_model(spec.model).shard_units()) == get_family(family).SHARDED_PER_LAYER


# Measured on the real trainer: (family, n_layer, d_model, n_head, seq_len, micro_batch), large enough
# that model states and activations dominate the process's baseline (torch, the data, the code).
MEASURED = [
    ("gpt", 4, 256, 4, 128, 16),
    ("gpt", 8, 384, 6, 128, 32),
    ("gpt", 2, 768, 12, 512, 4),
    ("lstm", 2, 1024, 1, 128, 32),
]


# The trainer's CLI, which writes its own peak resident memory (VmHWM, which exec resets) at exit.
# rusage's ru_maxrss would not do: Linux carries the forking parent's high-water mark (here pytest's,
# often larger than the run's) into the child across exec.
REPORTS_PEAK = """
import atexit, runpy, sys
path = sys.argv.pop(1)
def report():
    status = open("/proc/self/status").read()
    peak = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    open(path, "w").write(peak.split()[1])
atexit.register(report)
sys.argv[0] = "workflow.train"
runpy.run_module("workflow.train", run_name="__main__")
"""


def peak_bytes(spec, dataset_manifest, root) -> int:
    """Peak resident memory of the trainer's process for the run."""
    report = root.with_suffix(".peak")
    command = train_command(spec, dataset_manifest, root)
    result = subprocess.run(
        [sys.executable, "-c", REPORTS_PEAK, str(report), *command[3:]], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return int(report.read_text()) * 1024


def measured_spec(family, n_layer, d_model, n_head, seq_len, micro_batch):
    spec = tiny_spec()
    model = ModelConfig(384, seq_len, n_layer, d_model, n_head, family=family)
    tokens = 3 * micro_batch * seq_len  # three steps of one micro-batch
    return replace(
        spec,
        model=model,
        tokens=tokens,
        branch_tokens=(tokens,),
        optim=replace(spec.optim, micro_batch_size=micro_batch, batch_tokens=micro_batch * seq_len),
        execution=replace(spec.execution, device="cpu", log_every=1),
    )


@pytest.mark.slow
def test_memory_estimate_against_measured_peak_on_the_cpu(dataset_manifest, tmp_path):
    """Above a minuscule run's peak (the process's baseline), a GPT's measured peak is 0.75 to 1.3
    times its estimate (measured 2026-11-30: 0.98 to 1.13; the allocator moves a peak by some 8%
    from one run to the next); the LSTM's estimate is high (measured 0.63 to 0.68) and must not be low."""
    base_spec = measured_spec("gpt", 1, 16, 2, 32, 1)
    base = peak_bytes(base_spec, dataset_manifest, tmp_path / "base")
    base_estimate = memory_per_device(base_spec, sharded=False).total
    for shape in MEASURED:
        spec = measured_spec(*shape)
        measured = peak_bytes(spec, dataset_manifest, tmp_path / "_".join(map(str, shape))) - base
        estimate = memory_per_device(spec, sharded=False).total - base_estimate
        ratio = measured / estimate
        if shape[0] == "gpt":
            assert 0.75 <= ratio <= 1.3, (shape, measured / 2**20, estimate / 2**20)
        else:
            assert 0.5 <= ratio <= 1.05, (shape, measured / 2**20, estimate / 2**20)


def plan(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workflow.plan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("config", sorted(shipped_configs()))
def test_plan_runs_on_every_shipped_config(config):
    args = [] if config == "config/config.yaml" else ["--configfile", config]
    start = time.perf_counter()
    result = plan(*args)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "params", "PaLM"] and lines[-1].startswith("total: ")
    if "tinystories" in config:
        # 49 grid runs and 30 sweep runs, each with its memory, hours and Slurm request.
        assert "total: 79 runs" in lines[-1] and sum("--gpus=1" in line for line in lines) == 79


def test_a_run_that_cannot_fit_fails_the_plan_naming_it_and_what_fits():
    result = plan("--configfile", "config/experiments/tinystories_isoflop_gpu.yaml", "--device-memory-gb", "6")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert errors and all(line.startswith("error: run ") for line in errors)
    assert any("L24-d1536-h16" in line and "micro_batch_size" in line for line in errors)
    assert "6 GiB per GPU" in errors[0]
    # The table is still printed: what each run needs is what the user must see.
    assert result.stdout.splitlines()[-1].startswith("total: ")


def test_a_cpu_study_is_checked_against_the_host_memory_it_asks_for(tmp_path):
    config = tmp_path / "small_host.yaml"
    config.write_text("train: {device: cpu}\nresources: {train: {mem_mb: 1}}\n")
    result = plan("--configfile", str(config))
    assert result.returncode == 1
    assert "more than resources.train.mem_mb = 1 MB" in result.stderr


def test_auto_shards_only_where_ddp_does_not_fit_on_more_than_one_device():
    spec = tiny_spec()
    ddp = memory_per_device(spec, sharded=False).total

    def with_execution(**changes):
        return replace(spec, execution=replace(spec.execution, **changes))

    assert not shards(with_execution(devices=2), limit=ddp * 2)  # auto: DDP fits
    assert shards(with_execution(devices=2), limit=ddp / 2)  # auto: it does not
    assert shards(with_execution(devices=1, nodes=2), limit=ddp / 2)  # two nodes of one device
    assert not shards(with_execution(devices=1), limit=ddp / 2)  # one device: nothing to shard over
    assert not shards(with_execution(devices=2, shard="none"), limit=ddp / 2)
    assert shards(with_execution(devices=2, shard="full"), limit=ddp * 2)
    assert not shards(with_execution(devices=2), limit=None)  # auto on the CPU: the host's memory
    # Sharded over the world of n nodes x k devices.
    assert memory_per_device(with_execution(devices=2, nodes=2), sharded=True) == memory_per_device(
        spec, sharded=True, devices=4
    )


def test_slurm_request_of_a_multi_node_run_asks_for_a_task_and_the_gpus_of_each_node():
    spec = tiny_spec()
    cluster = {"train_flops_per_s": 1e12, "runtime_factor": 2, "min_runtime_minutes": 10}
    gpu = replace(spec, execution=replace(spec.execution, device="cuda", devices=4, nodes=2))
    assert "--nodes=2 --ntasks=2 --gres=gpu:4 --cpus-per-task=" in slurm_request(gpu, cluster, 1000)
    assert "--gpus=4 " in slurm_request(replace(gpu, execution=replace(gpu.execution, nodes=1)), cluster, 1000)


def test_gib_is_binary():
    assert GIB == 1024**3
