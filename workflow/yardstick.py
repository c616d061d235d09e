"""Yardstick stage: the base arm's validation documents, encoded with one arm's tokenizer.

    python -m workflow.yardstick --documents BASE_DOCUMENTS --base-tokenizer BASE_MODEL
        --base-dataset BASE_DATASET/manifest.json --tokenizer ARM_MODEL --out-dir DIR

In a study whose arms differ in tokenizer or corpus (``workflow.arms``), every arm is scored on the
same text: the documents of the base arm's validation split. They are chosen again here as the dataset
stage chose them (the hash of each document's text against ``validation_fraction``, whole documents up
to ``validation_max_tokens`` of the base tokenizer's tokens, ``workflow.dataset``), checked against the
base dataset's manifest (documents, bytes and tokens, so a selection that does not reproduce stops),
and encoded with the arm's tokenizer into one shard, in the dataset's format.

The manifest records the text's sha256 and bytes, so that the analysis can check that every arm was
scored on the same bytes, and the bytes of the first token, which no model predicts (the evaluation
scores every other token: ``workflow.evaluate``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import sentencepiece as spm

from workflow.dataset import ENCODE_CHUNK_DOCUMENTS, SplitWriter, encode_batches, is_validation
from workflow.files import atomic_path, read_json, run_stage, sha256_file, write_json_atomic
from workflow.shards import dtype_for_vocab
from workflow.tokenizer import document_chunks

# What the yardstick is, as the runs table's `yardstick` column says it.
YARDSTICK = "bits/byte on base validation text"


class YardstickError(ValueError):
    """A yardstick that cannot be made; the message names the file."""


def base_validation_documents(documents: Path, base_tokenizer: Path, fraction: float, max_tokens: int) -> list[str]:
    """The documents of the base dataset's validation split, chosen as ``workflow.dataset`` chose them."""
    processor = spm.SentencePieceProcessor(model_file=str(base_tokenizer))
    kept: list[str] = []
    tokens = 0
    for chunk in encode_batches(document_chunks(documents, ENCODE_CHUNK_DOCUMENTS)):
        chosen = [text for text in chunk if is_validation(text.encode("utf-8"), fraction)]
        for text, ids in zip(chosen, processor.encode(chosen) if chosen else []):
            count = len(ids) + 1  # and its end-of-document id
            if tokens == 0 or tokens + count <= max_tokens:
                kept.append(text)
                tokens += count
    return kept


def build_yardstick(documents: Path, base_tokenizer: Path, base_dataset: Path, tokenizer: Path, out_dir: Path) -> dict:
    base = read_json(base_dataset)
    base_validation = base["splits"]["validation"]
    if base["tokenizer_sha256"] != sha256_file(base_tokenizer):
        raise YardstickError(f"{base_dataset} was not made with the base tokenizer {base_tokenizer}")
    texts = base_validation_documents(
        documents, base_tokenizer, base["validation_fraction"], base["validation_max_tokens"]
    )
    found = {"documents": len(texts), "bytes": sum(len(t.encode("utf-8")) for t in texts)}
    expected = {key: base_validation[key] for key in found}
    if found != expected:
        raise YardstickError(
            f"the base validation documents chosen again ({found}) are not those of {base_dataset} ({expected}): "
            f"the corpus or the dataset stage changed since it was made"
        )
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer))
    eod = processor.eos_id()
    dtype = dtype_for_vocab(processor.get_piece_size())
    digest = hashlib.sha256()
    encoded = processor.encode(texts)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        total = sum(len(ids) + 1 for ids in encoded)
        # One shard: every token but the very first is predicted (workflow.evaluate, --yardstick).
        split = SplitWriter(tmp, "validation", max(total, 1), dtype)
        for text, ids in zip(texts, encoded):
            raw = text.encode("utf-8")
            digest.update(len(raw).to_bytes(8, "big") + raw)
            split.add(np.array([*ids, eod], dtype=dtype), len(raw))
        first = encoded[0][0] if encoded and encoded[0] else None
        manifest = {
            "format_version": 1,
            "dtype": np.dtype(dtype).name,
            "eod_id": eod,
            "vocab_size": processor.get_piece_size(),
            "tokenizer_sha256": sha256_file(tokenizer),
            "splits": {"validation": split.finish()},
            "yardstick": {
                "name": YARDSTICK,
                "base_dataset_manifest_sha256": sha256_file(base_dataset),
                "documents": len(texts),
                "bytes": found["bytes"],
                "text_sha256": digest.hexdigest(),
                # The first token has no context and is never predicted: its bytes are not scored.
                "unscored_bytes": len(processor.decode([first]).encode("utf-8")) if first is not None else 0,
            },
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.yardstick", description=__doc__.splitlines()[0])
    parser.add_argument("--documents", required=True, type=Path, help="the base arm's documents.parquet")
    parser.add_argument("--base-tokenizer", required=True, type=Path, help="the base arm's tokenizer.model")
    parser.add_argument("--base-dataset", required=True, type=Path, help="the base arm's dataset manifest.json")
    parser.add_argument("--tokenizer", required=True, type=Path, help="the arm's tokenizer.model")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        manifest = build_yardstick(args.documents, args.base_tokenizer, args.base_dataset, args.tokenizer, args.out_dir)
    except YardstickError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    info = manifest["yardstick"]
    tokens = manifest["splits"]["validation"]["tokens"]
    print(f"yardstick: {info['documents']} documents, {info['bytes']} bytes, {tokens} tokens of this tokenizer")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "yardstick"))
