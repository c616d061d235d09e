"""Shared fixtures: a small real corpus, tokenizer and dataset built once per session."""

from __future__ import annotations

import copy
from pathlib import Path

import polars as pl
import pytest
import yaml
from helpers import REPO

# A slice of the standard library: real code and prose, a few hundred kB.
SMALL_STDLIB_GLOB = "[a-d]*.py"


@pytest.fixture(scope="session")
def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


@pytest.fixture
def config(default_config) -> dict:
    """The default study's settings on a plain grid, the run ids the config tests name: cosine runs
    of 4 shapes x 3 token budgets in batches of 32 x 64 tokens, no IsoFLOP budgets (the default
    study's own design is tested in test_config.test_default_study_is_designed_to_show_a_law)."""
    config = copy.deepcopy(default_config)
    config["train"].update(schedule="cosine", batch_tokens=2048, micro_batch_size=32)
    config["train"]["grid"] = {
        "shapes": [
            {"n_layer": 1, "d_model": 32, "n_head": 2},
            {"n_layer": 2, "d_model": 48, "n_head": 2},
            {"n_layer": 2, "d_model": 64, "n_head": 4},
            {"n_layer": 3, "d_model": 96, "n_head": 4},
        ],
        "token_budgets": [500_000, 1_000_000, 2_000_000],
        "seeds": [0],
    }
    config["train"]["isoflop"] = {"compute_budgets": [], "shapes": [], "seeds": [0]}
    return config


@pytest.fixture(scope="session")
def documents_path(tmp_path_factory) -> Path:
    from workflow.corpus import build

    out = tmp_path_factory.mktemp("corpus")
    build(
        [{"name": "stdlib", "builtin": "stdlib", "glob": SMALL_STDLIB_GLOB}],
        {},
        out / "documents.parquet",
        out / "corpus.json",
    )
    return out / "documents.parquet"


@pytest.fixture(scope="session")
def tokenizer_path(documents_path, tmp_path_factory) -> Path:
    from workflow.files import write_bytes_atomic
    from workflow.tokenizer import train_tokenizer

    texts = pl.read_parquet(documents_path)["text"].to_list()
    data, _ = train_tokenizer(texts, vocab_size=384, model_type="bpe", seed=0, sample_bytes=400_000)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    write_bytes_atomic(path, data)
    return path


@pytest.fixture(scope="session")
def dataset_manifest(documents_path, tokenizer_path, tmp_path_factory) -> Path:
    from workflow.dataset import build_dataset

    out = tmp_path_factory.mktemp("dataset") / "dataset"
    build_dataset(
        documents_path, tokenizer_path, out, validation_fraction=0.1, validation_max_tokens=20_000, shard_tokens=100_000
    )
    return out / "manifest.json"


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """config/tiny.yaml run once through Snakemake in a copy of the pipeline: (workdir, seconds).
    Tests that change the copy put it back."""
    import time

    from helpers import copy_pipeline, snakemake

    workdir = copy_pipeline(tmp_path_factory.mktemp("pipeline"))
    start = time.perf_counter()
    snakemake(workdir, "--configfile", "config/tiny.yaml")
    return workdir, time.perf_counter() - start
