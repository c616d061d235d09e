import numpy as np
import polars as pl
import sentencepiece as spm

from workflow.dataset import is_validation
from workflow.files import read_json, sha256_file
from workflow.shards import load_split


def test_validation_choice_is_by_document_hash():
    texts = [f"doc {i}" for i in range(2000)]
    chosen = [t for t in texts if is_validation(t, 0.1)]
    assert 150 < len(chosen) < 250
    assert chosen == [t for t in reversed(texts) if is_validation(t, 0.1)][::-1]


def test_manifest_matches_shards(dataset_manifest, documents_path, tokenizer_path):
    manifest = read_json(dataset_manifest)
    texts = pl.read_parquet(documents_path)["text"].to_list()
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    for split in ("train", "validation"):
        info = manifest["splits"][split]
        shards = load_split(dataset_manifest, split)
        assert sum(len(s) for s in shards) == info["tokens"] > 0
        for entry in info["shards"]:
            assert sha256_file(dataset_manifest.parent / entry["file"]) == entry["sha256"]
        # One end-of-document id per document.
        assert sum(int((s == manifest["eod_id"]).sum()) for s in shards) == info["documents"]
    assert manifest["splits"]["validation"]["tokens"] <= 20_000
    assert manifest["splits"]["train"]["bytes"] + manifest["splits"]["validation"]["bytes"] <= sum(
        len(t.encode()) for t in texts
    )
    # The first training document decodes back to its text.
    train = np.concatenate(load_split(dataset_manifest, "train"))
    first_end = int(np.argmax(train == manifest["eod_id"]))
    decoded = processor.decode(train[:first_end].tolist())
    assert decoded in texts and not is_validation(decoded, 0.1)
    assert len(manifest["splits"]["train"]["shards"]) >= 2  # shard_tokens was 100k
