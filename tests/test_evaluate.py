import math

import pytest
from helpers import tiny_spec

from workflow.evaluate import evaluate_run
from workflow.files import read_json, write_json_atomic
from workflow.train.trainer import train_run


def score(tmp_path, dataset_manifest, batch_size):
    result = evaluate_run(
        tmp_path / "w",
        tmp_path / "run" / "summary.json",
        dataset_manifest,
        batch_size=batch_size,
        device="cpu",
        threads=1,
    )
    return result, result["points"][0]


def test_evaluation_is_consistent(dataset_manifest, tmp_path):
    train_run(tiny_spec(), dataset_manifest, tmp_path / "run", tmp_path / "w")
    whole, result = score(tmp_path, dataset_manifest, 7)
    _, again = score(tmp_path, dataset_manifest, 64)
    # Batching does not change which tokens are scored, only float summation order.
    assert result["val_loss"] == pytest.approx(again["val_loss"], rel=1e-5)
    assert result["eval_tokens"] == again["eval_tokens"] > 0
    validation = read_json(dataset_manifest)["splits"]["validation"]
    assert result["perplexity"] == pytest.approx(math.exp(result["val_loss"]))
    assert result["point_id"] == whole["run_id"] == "L1-d32-h2_D32k_s0"
    assert result["bits_per_byte"] == pytest.approx(
        result["val_loss"] * validation["tokens"] / validation["bytes"] / math.log(2)
    )
    assert 0 < result["val_loss"] < math.log(384)


def test_diverged_run_is_not_scored(dataset_manifest, tmp_path):
    train_run(tiny_spec(), dataset_manifest, tmp_path / "run", tmp_path / "w")
    summary = read_json(tmp_path / "run" / "summary.json")
    summary["status"] = summary["points"][0]["status"] = "diverged"
    write_json_atomic(tmp_path / "run" / "summary.json", summary)
    whole, result = score(tmp_path, dataset_manifest, 8)
    assert whole["status"] == "diverged" and result["val_loss"] is None
