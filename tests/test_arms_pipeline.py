"""A tiny study with arms through Snakemake (pipeline tier): a GPT baseline, an LSTM arm on its tokens,
and an arm with a tokenizer of its own, trained, evaluated on the baseline's validation text and
collected into one runs table."""

import json

import polars as pl
import pytest
from helpers import copy_pipeline, snakemake, write_config

pytestmark = pytest.mark.pipeline


def small_arms(config):
    config["train"]["grid"] = {
        "shapes": [{"n_layer": 1, "d_model": 16, "n_head": 2}, {"n_layer": 1, "d_model": 32, "n_head": 2}],
        "token_budgets": [16000, 32000],
        "seeds": [0],
    }
    config["arms"] = {
        "baseline": "gpt",
        "overlays": {"gpt": {}, "lstm": {"train": {"family": "lstm"}}, "vocab": {"tokenizer": {"vocab_size": 448}}},
    }


def test_arms_train_evaluate_on_one_text_and_collect_into_one_table(tmp_path):
    workdir = copy_pipeline(tmp_path)
    study = write_config(workdir, "arms.yaml", small_arms)
    snakemake(workdir, "results/tables/runs.parquet", "--configfile", study)
    runs = pl.read_parquet(workdir / "results" / "tables" / "runs.parquet")
    assert sorted(set(runs["arm"])) == ["gpt", "lstm", "vocab"] and runs.height == 12
    assert set(runs["yardstick"]) == {"bits/byte on base validation text"}
    assert (runs["loss"] == runs["bits_per_byte"]).all()
    assert set(runs.filter(pl.col("arm") == "lstm")["family"]) == {"lstm"}
    # Every run scored on the same bytes of the baseline's validation text; two tokenizers, two encodings.
    yardsticks = [json.loads((d / "eval.json").read_text()) for d in (workdir / "results" / "runs").iterdir()]
    assert len({(e["yardstick"]["text_sha256"], e["yardstick"]["bytes"]) for e in yardsticks}) == 1
    assert len({e["validation_tokens"] for e in yardsticks}) == 2
    # The gpt and lstm arms share one corpus, tokenizer and dataset; the vocab arm shares the corpus.
    assert len(list((workdir / "resources" / "corpus").iterdir())) == 1
    assert len(list((workdir / "resources" / "tokenizer").iterdir())) == 2
    assert len(list((workdir / "resources" / "dataset").iterdir())) == 2
    again = snakemake(workdir, "-n", "results/tables/runs.parquet", "--configfile", study)
    assert "Nothing to be done" in again.stdout + again.stderr
