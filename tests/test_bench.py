"""The training benchmark runs on the CPU in CI-sized settings and reports every setting."""

import json
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.bench  # runs the benchmark scripts' CI presets: the bench tier


def test_benchmark_ci_preset(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "train_throughput.py"), "--preset", "ci", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "| shape | setting | tokens/s |" in result.stdout
    data = json.loads(out.read_text())
    by_setting = {r["setting"]: r for r in data["results"]}
    assert set(by_setting) == {"torch-eager", "torch-compile", "torch-compile-cudagraphs", "apex"}
    for setting in ("torch-eager", "torch-compile"):
        assert by_setting[setting]["tokens_per_s"] > 0 and by_setting[setting]["peak_memory_mb"] > 0
    # Without a GPU the CUDA-only settings say why they did not run; nothing is estimated.
    assert "CUDA" in by_setting["torch-compile-cudagraphs"]["skipped"]
    assert "apex" in by_setting["apex"]["skipped"] or "CUDA" in by_setting["apex"]["skipped"]
    assert by_setting["torch-eager"]["mfu"] is None


def test_data_pipeline_benchmark_ci_preset(tmp_path):
    out = tmp_path / "data.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "data_pipeline.py"), "--preset", "ci", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert [row["sample_mb"] for row in data["tokenizer_training"]] == [1, 2]
    assert [row["threads"] for row in data["encoding"]] == [1, 2]
    assert all(row["pipeline_mb_s"] > 0 and row["direct_mb_s"] > 0 for row in data["encoding"])
    big = data["big_corpus"]
    assert big["corpus_bytes"] > 50e6 and big["train_tokens"] > 0
    assert 0 < big["corpus_peak_rss_mb"] < 2048 and 0 < big["dataset_peak_rss_mb"] < 2048
