"""The memory model (workflow.memory): against the autograd graph and against measured peak memory on
the CPU, and the question of sharding."""

import subprocess
import sys
from dataclasses import replace

import pytest
from helpers import tiny_spec, train_command

from workflow.families import get_family
from workflow.memory import BYTES_PER_PARAMETER, GIB, memory_per_device, needs_sharding, what_fits
from workflow.spec import ModelConfig

GPT = ModelConfig(vocab_size=384, seq_len=64, n_layer=2, d_model=256, n_head=4)


def saved_elements_per_token(cfg: ModelConfig, batch: int = 2) -> float:
    """What the model's forward pass saves for backward, per token, in elements: every tensor the
    autograd graph packs (saved-tensor hooks), each storage once, parameters and buffers left out."""
    import torch

    from workflow.model import build_model

    model = build_model(cfg)
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


def test_auto_needs_sharding_only_where_ddp_does_not_fit_on_more_than_one_device():
    spec = tiny_spec()
    ddp = memory_per_device(spec, sharded=False).total

    def with_execution(**changes):
        return replace(spec, execution=replace(spec.execution, **changes))

    assert not needs_sharding(with_execution(devices=2), limit=ddp * 2)  # auto: DDP fits
    assert needs_sharding(with_execution(devices=2), limit=ddp / 2)  # auto: it does not
    assert needs_sharding(with_execution(devices=1, nodes=2), limit=ddp / 2)  # two nodes of one device
    assert not needs_sharding(with_execution(devices=1), limit=ddp / 2)  # one device: nothing to shard over
    assert not needs_sharding(with_execution(devices=2, shard="none"), limit=ddp / 2)
    assert needs_sharding(with_execution(devices=2, shard="full"), limit=ddp * 2)
    assert not needs_sharding(with_execution(devices=2), limit=None)  # auto on the CPU: the host's memory
    # Sharded over the world of n nodes x k devices.
    assert memory_per_device(with_execution(devices=2, nodes=2), sharded=True) == memory_per_device(
        spec, sharded=True, devices=4
    )


def test_what_fits_names_a_smaller_micro_batch_or_a_smaller_shape():
    spec = tiny_spec(micro_batch_size=4, batch_tokens=4 * 32)
    smallest = memory_per_device(spec, sharded=False, micro_batch=1).total
    assert what_fits(spec, smallest + 1).startswith("micro_batch_size 1 under DDP")
    assert what_fits(spec, 1) == "no micro-batch or sharding up to 64 devices: a smaller shape"


def test_gib_is_binary():
    assert GIB == 1024**3
