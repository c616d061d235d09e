"""The Checkpointer on its own (save, latest, load, set aside), and a checkpoint written by the trainer
before it became a package (tests/data/old_checkpoint) resuming under today's code."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import torch

from workflow.model import build_model
from workflow.spec import ModelConfig, RunSpec
from workflow.train.checkpoint import Checkpointer
from workflow.train.kernels import make_optimizer
from workflow.train.parallel import Distributed
from workflow.train.trainer import train_run

OLD = Path(__file__).parent / "data" / "old_checkpoint"
DATA = {"dataset_manifest_sha256": "d" * 64, "tokenizer_sha256": "t" * 64}
SPEC = {"run_id": "two-layers"}


def two_layers():
    """A 2-layer GPT and its AdamW, with optimizer state from one step on a made-up loss."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=64, seq_len=16, n_layer=2, d_model=32, n_head=2))
    optimizer, _ = make_optimizer(
        model, torch.device("cpu"), "torch", lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1
    )
    x = torch.randint(0, 64, (2, 16))
    model(x, x)[1].backward()
    optimizer.step()
    return model, optimizer


def progress(step: int) -> dict:
    return {"step": step, "spec": SPEC, "data": DATA, "world_size": 1}


def test_save_then_latest_then_load(tmp_path):
    model, optimizer = two_layers()
    checkpointer = Checkpointer(tmp_path / "checkpoint.pt", Distributed(), "two-layers")
    assert checkpointer.latest() is None
    checkpointer.save(progress(7), model, optimizer, sharded=False)
    assert checkpointer.latest() == tmp_path / "checkpoint.pt"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left

    other, other_optimizer = two_layers()
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    state = checkpointer.load(other, other_optimizer, False, torch.device("cpu"), SPEC, DATA)
    assert state["step"] == 7
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    saved, loaded = optimizer.state_dict()["state"], other_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k]["exp_avg"], loaded[k]["exp_avg"]) for k in saved)


def test_a_damaged_file_is_set_aside(tmp_path, capsys):
    model, optimizer = two_layers()
    checkpointer = Checkpointer(tmp_path / "checkpoint.pt", Distributed(), "two-layers")
    checkpointer.save(progress(3), model, optimizer, sharded=False)
    checkpointer.stage_point("two-layers@D1k", {"model": model.state_dict()})
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])

    assert checkpointer.load(model, optimizer, False, torch.device("cpu"), SPEC, DATA) is None
    assert "cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists() and (tmp_path / "checkpoint.pt.damaged").exists()
    assert (tmp_path / "checkpoint-points.damaged" / "two-layers@D1k.pt").exists()  # its points go with it
    assert checkpointer.latest() is None


@pytest.mark.parametrize(
    ("spec", "data", "reason"),
    [({"run_id": "another"}, DATA, "other-settings"), (SPEC, {**DATA, "tokenizer_sha256": "x" * 64}, "other-data")],
)
def test_a_checkpoint_of_other_settings_or_data_is_set_aside(tmp_path, capsys, spec, data, reason):
    model, optimizer = two_layers()
    checkpointer = Checkpointer(tmp_path / "checkpoint.pt", Distributed(), "two-layers")
    checkpointer.save(progress(3), model, optimizer, sharded=False)
    assert checkpointer.load(model, optimizer, False, torch.device("cpu"), spec, data) is None
    assert (tmp_path / f"checkpoint.pt.{reason}").exists()
    assert "starting afresh" in capsys.readouterr().err


def test_a_checkpoint_written_before_the_trainer_package_resumes(tmp_path, capfd):
    """The old trainer stopped this WSD run by SIGTERM at step 11, after its first cooldown point: it
    resumes there, makes the second point, and its losses are those of the old code's uninterrupted run
    (and bit for bit those of today's)."""
    spec = RunSpec.from_json((OLD / "spec.json").read_text(), (OLD / "execution.json").read_text())
    manifest = OLD / "dataset" / "manifest.json"
    shutil.copytree(OLD / "work", tmp_path / "resumed" / "work")
    resumed = train_run(spec, manifest, tmp_path / "resumed" / "run", tmp_path / "resumed" / "work" / "weights")
    assert "resumed from the checkpoint at step 11" in capfd.readouterr().out
    assert resumed["resumed_from_step"] == 11
    assert [p["point_id"] for p in resumed["points"]] == ["L1-d32-h2_D32k_s0@D6.144k", "L1-d32-h2_D32k_s0@D12.288k"]
    assert sorted(p.name for p in (tmp_path / "resumed" / "work" / "weights").iterdir()) == [
        "L1-d32-h2_D32k_s0@D12.288k.pt",
        "L1-d32-h2_D32k_s0@D6.144k.pt",
    ]

    old = pl.read_csv(OLD / "uninterrupted_metrics.csv")
    now = pl.read_csv(tmp_path / "resumed" / "run" / "metrics.csv")
    assert now["step"].to_list() == old["step"].to_list()
    assert now["train_loss"].to_list() == pytest.approx(old["train_loss"].to_list(), rel=1e-5)

    whole = train_run(spec, manifest, tmp_path / "whole" / "run", tmp_path / "whole" / "work" / "weights")
    assert whole["resumed_from_step"] is None
    assert (
        now["train_loss"].to_list() == pl.read_csv(tmp_path / "whole" / "run" / "metrics.csv")["train_loss"].to_list()
    )
