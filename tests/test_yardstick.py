"""The yardstick of arms with different tokenizers: the base arm's validation documents, encoded with each
arm's tokenizer, scored in bits per byte of the same text (workflow.yardstick, workflow.evaluate --yardstick),
and the runs table of such a study (workflow.collect)."""

import math
from dataclasses import replace

import polars as pl
import pytest
from helpers import tiny_spec

from workflow.collect import CollectError, collect
from workflow.dataset import build_dataset
from workflow.evaluate import EvaluateError, evaluate_run
from workflow.files import read_json, write_bytes_atomic, write_json_atomic
from workflow.shards import load_split
from workflow.tokenizer import train_tokenizer
from workflow.train.trainer import train_run
from workflow.yardstick import YARDSTICK, YardstickError, build_yardstick


@pytest.fixture(scope="module")
def other_tokenizer(documents_path, tmp_path_factory):
    """A second arm's tokenizer (another vocabulary and model type) and its dataset, on the same documents."""
    texts = pl.read_parquet(documents_path)["text"].to_list()
    data, _ = train_tokenizer(texts, vocab_size=448, model_type="unigram", seed=1, sample_bytes=400_000)
    root = tmp_path_factory.mktemp("other")
    write_bytes_atomic(root / "tokenizer.model", data)
    build_dataset(
        documents_path,
        root / "tokenizer.model",
        root / "dataset",
        validation_fraction=0.1,
        validation_max_tokens=20_000,
        shard_tokens=100_000,
    )
    return root / "tokenizer.model", root / "dataset" / "manifest.json"


@pytest.fixture(scope="module")
def yardsticks(documents_path, tokenizer_path, dataset_manifest, other_tokenizer, tmp_path_factory):
    """The yardstick of the base tokenizer and of the other one: (base, other) manifest paths."""
    root = tmp_path_factory.mktemp("yardstick")
    for name, tokenizer in (("base", tokenizer_path), ("other", other_tokenizer[0])):
        build_yardstick(documents_path, tokenizer_path, dataset_manifest, tokenizer, root / name)
    return root / "base" / "manifest.json", root / "other" / "manifest.json"


def test_every_tokenizer_encodes_the_base_validation_documents(dataset_manifest, other_tokenizer, yardsticks):
    base, other = (read_json(path) for path in yardsticks)
    validation = read_json(dataset_manifest)["splits"]["validation"]
    # The base tokenizer's yardstick is its own validation split, token for token.
    assert base["splits"]["validation"]["tokens"] == validation["tokens"]
    base_tokens = [int(t) for shard in load_split(dataset_manifest, "validation") for t in shard]
    assert [int(t) for t in load_split(yardsticks[0], "validation")[0]] == base_tokens
    # The other tokenizer encodes the same text (same bytes, same sha256) into other tokens.
    assert base["yardstick"]["text_sha256"] == other["yardstick"]["text_sha256"]
    assert base["yardstick"]["bytes"] == other["yardstick"]["bytes"] == validation["bytes"]
    assert other["splits"]["validation"]["tokens"] != validation["tokens"]
    # ... which its own dataset's validation split is not: that cap counts its own tokens.
    own = read_json(other_tokenizer[1])["splits"]["validation"]
    assert own["tokens"] <= 20_000 and other["tokenizer_sha256"] == read_json(other_tokenizer[1])["tokenizer_sha256"]


def test_a_yardstick_that_does_not_reproduce_the_base_split_is_refused(
    documents_path, tokenizer_path, other_tokenizer, tmp_path
):
    # The other tokenizer's dataset as the "base": its validation split is capped in other tokens.
    with pytest.raises(YardstickError, match="not made with the base tokenizer"):
        build_yardstick(documents_path, tokenizer_path, other_tokenizer[1], tokenizer_path, tmp_path / "y")
    assert not (tmp_path / "y").exists()


@pytest.fixture(scope="module")
def arm_runs(dataset_manifest, other_tokenizer, yardsticks, tmp_path_factory):
    """A run of each arm, each evaluated on its tokenizer's yardstick: [(run_dir, eval.json)]."""
    root = tmp_path_factory.mktemp("arm_runs")
    runs = []
    for arm, vocab, dataset, yardstick in (
        ("base", 384, dataset_manifest, yardsticks[0]),
        ("other", 448, other_tokenizer[1], yardsticks[1]),
    ):
        spec = replace(tiny_spec(vocab_size=vocab), run_id=f"{arm}_L1-d32-h2_D32k_s0", arm=arm)
        run_dir = root / spec.run_id
        train_run(spec, dataset, run_dir, root / "work" / spec.run_id)
        result = evaluate_run(
            root / "work" / spec.run_id,
            run_dir / "summary.json",
            dataset,
            batch_size=16,
            device="cpu",
            threads=1,
            yardstick=yardstick,
        )
        write_json_atomic(run_dir / "eval.json", result)
        runs.append((run_dir, result))
    return runs


def test_arms_with_different_tokenizers_are_scored_in_bits_per_byte_of_the_same_bytes(arm_runs, yardsticks):
    recorded = [result["yardstick"] for _, result in arm_runs]
    assert recorded[0] == read_json(yardsticks[0])["yardstick"] and recorded[1] == read_json(yardsticks[1])["yardstick"]
    assert recorded[0]["text_sha256"] == recorded[1]["text_sha256"] and recorded[0]["bytes"] == recorded[1]["bytes"]
    for (_, result), path in zip(arm_runs, yardsticks):
        point, yardstick = result["points"][0], read_json(path)
        # Every token but the first is predicted, the shorter last window too.
        assert point["eval_tokens"] == yardstick["splits"]["validation"]["tokens"] - 1
        scored_bytes = yardstick["yardstick"]["bytes"] - yardstick["yardstick"]["unscored_bytes"]
        assert 0 <= yardstick["yardstick"]["unscored_bytes"] < 16
        assert point["bits_per_byte"] == pytest.approx(
            point["val_loss"] * point["eval_tokens"] / math.log(2) / scored_bytes
        )
    # Nats per token of two tokenizers differ by far more than the bits per byte of the same text.
    base, other = (result["points"][0] for _, result in arm_runs)
    assert abs(math.log(base["val_loss"] / other["val_loss"])) > abs(
        math.log(base["bits_per_byte"] / other["bits_per_byte"])
    )


def test_a_yardstick_of_another_tokenizer_is_refused(dataset_manifest, arm_runs, yardsticks):
    run_dir, _ = arm_runs[0]
    with pytest.raises(EvaluateError, match="not encoded with the tokenizer"):
        evaluate_run(
            run_dir.parent / "work" / run_dir.name,
            run_dir / "summary.json",
            dataset_manifest,
            batch_size=16,
            device="cpu",
            threads=1,
            yardstick=yardsticks[1],
        )


def test_the_runs_table_compares_arms_in_bits_per_byte(arm_runs):
    runs, _ = collect([run_dir for run_dir, _ in arm_runs], "6N", "with_head")
    assert sorted(runs["arm"]) == ["base", "other"]
    assert set(runs["yardstick"]) == {YARDSTICK} == {"bits/byte on base validation text"}
    assert (runs["loss"] == runs["bits_per_byte"]).all()
    assert runs["nats_per_token"].to_list() != runs["loss"].to_list()


def test_runs_scored_on_other_text_are_not_collected_together(arm_runs, tmp_path):
    import shutil

    other = tmp_path / arm_runs[1][0].name
    shutil.copytree(arm_runs[1][0], other)
    result = read_json(other / "eval.json")
    result["yardstick"]["text_sha256"] = "0" * 64
    write_json_atomic(other / "eval.json", result)
    with pytest.raises(CollectError, match="not scored on one yardstick"):
        collect([arm_runs[0][0], other], "6N", "with_head")
