import math

import pytest

from helpers import tiny_spec
from workflow.evaluate import evaluate_run
from workflow.io import read_json, write_json_atomic
from workflow.train import train_run


def test_evaluation_is_consistent(dataset_manifest, tmp_path):
    train_run(tiny_spec(), dataset_manifest, tmp_path / "run", tmp_path / "model.pt")
    result = evaluate_run(tmp_path / "model.pt", tmp_path / "run" / "summary.json", dataset_manifest,
                          batch_size=7, device="cpu", threads=1)
    again = evaluate_run(tmp_path / "model.pt", tmp_path / "run" / "summary.json", dataset_manifest,
                         batch_size=64, device="cpu", threads=1)
    # Batching does not change which tokens are scored, only float summation order.
    assert result["val_loss"] == pytest.approx(again["val_loss"], rel=1e-5)
    assert result["eval_tokens"] == again["eval_tokens"] > 0
    validation = read_json(dataset_manifest)["splits"]["validation"]
    assert result["perplexity"] == pytest.approx(math.exp(result["val_loss"]))
    assert result["bits_per_byte"] == pytest.approx(
        result["val_loss"] * validation["tokens"] / validation["bytes"] / math.log(2))
    assert 0 < result["val_loss"] < math.log(384)


def test_diverged_run_is_not_scored(dataset_manifest, tmp_path):
    train_run(tiny_spec(), dataset_manifest, tmp_path / "run", tmp_path / "model.pt")
    summary = read_json(tmp_path / "run" / "summary.json")
    write_json_atomic(tmp_path / "run" / "summary.json", {**summary, "status": "diverged"})
    result = evaluate_run(tmp_path / "model.pt", tmp_path / "run" / "summary.json", dataset_manifest,
                          batch_size=8, device="cpu", threads=1)
    assert result["status"] == "diverged" and result["val_loss"] is None
