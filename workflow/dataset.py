"""Dataset stage: encode documents into train and validation token shards.

Each document is encoded with the trained SentencePiece model and followed by
the end-of-document id. A document goes to validation when the first 8 bytes
of the sha256 of its text, read as a fraction of 2**64, fall below
``validation_fraction``: deterministic, independent of document order, and
identical duplicates always land in the same split. Validation keeps whole
documents up to ``validation_max_tokens`` so every run is evaluated on the
same, exactly byte-counted set.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import sentencepiece as spm
from tqdm import tqdm

from workflow.files import atomic_path, run_stage, sha256_file, write_json_atomic
from workflow.shards import ShardWriter, dtype_for_vocab
from workflow.tokenizer import document_chunks

ENCODE_CHUNK_DOCUMENTS = 256
ENCODE_BATCH_CHARACTERS = 2 << 20  # characters of text per SentencePiece call


def encode_batches(chunks: Iterable[list[str]], max_characters: int = ENCODE_BATCH_CHARACTERS) -> Iterator[list[str]]:
    """The documents regrouped into batches of about ``max_characters`` of text (a long
    document alone): SentencePiece returns Python lists of ints, some 40 bytes per token, so a
    batch's memory follows its text, not its document count."""
    batch: list[str] = []
    size = 0
    for chunk in chunks:
        for text in chunk:
            batch.append(text)
            size += len(text)
            if size >= max_characters:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def is_validation(text: str | bytes, fraction: float) -> bool:
    data = text.encode("utf-8") if isinstance(text, str) else text
    head = hashlib.sha256(data).digest()[:8]
    return int.from_bytes(head, "big") / 2**64 < fraction


class SplitWriter:
    """Writes one split's tokens into shards of at most ``shard_tokens`` tokens."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, dtype: type):
        self.directory, self.split, self.shard_tokens, self.dtype = directory, split, shard_tokens, dtype
        self.shards: list[dict] = []
        self.documents = 0
        self.bytes = 0
        self.tokens = 0
        self._writer: ShardWriter | None = None

    def add(self, tokens: np.ndarray, n_bytes: int, documents: int = 1) -> None:
        """Append ``documents`` whole documents (each already followed by the end-of-document id)."""
        self.documents += documents
        self.bytes += n_bytes
        self.tokens += len(tokens)
        while len(tokens):
            if self._writer is None:
                name = f"{self.split}_{len(self.shards):06d}.bin"
                self._writer = ShardWriter(self.directory / name, self.dtype)
                self.shards.append({"file": name})
            room = self.shard_tokens - self._writer.count
            self._writer.write(tokens[:room])
            tokens = tokens[room:]
            if self._writer.count == self.shard_tokens:
                self._close_shard()

    def _close_shard(self) -> None:
        self._writer.close()
        self.shards[-1].update(tokens=self._writer.count, sha256=sha256_file(self.directory / self.shards[-1]["file"]))
        self._writer = None

    def finish(self) -> dict:
        if self._writer is not None:
            self._close_shard()
        return {
            "documents": self.documents,
            "bytes": self.bytes,
            "tokens": self.tokens,
            # UTF-8 bytes per token: converts nats/token into bits per byte, which
            # compares across tokenizers.
            "bytes_per_token": self.bytes / self.tokens if self.tokens else None,
            "shards": self.shards,
        }


def build_dataset(
    documents: Path,
    tokenizer_model: Path,
    out_dir: Path,
    *,
    validation_fraction: float,
    validation_max_tokens: int,
    shard_tokens: int,
    threads: int = 1,
) -> dict:
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    eod = processor.eos_id()
    vocab_size = processor.get_piece_size()
    dtype = dtype_for_vocab(vocab_size)
    total_documents = pl.scan_parquet(documents).select(pl.len()).collect().item()
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        train = SplitWriter(tmp, "train", shard_tokens, dtype)
        validation = SplitWriter(tmp, "validation", shard_tokens, dtype)
        validation_overflow = 0
        with tqdm(total=total_documents, unit="doc", desc="encode", disable=None) as bar:
            for chunk in encode_batches(document_chunks(documents, ENCODE_CHUNK_DOCUMENTS)):
                # SentencePiece encodes the batch on `threads` threads of its own.
                encoded = processor.encode(chunk, num_threads=threads)
                # The batch's training documents go to the shards as one array: one
                # conversion to numpy per batch, not one per document (most of the
                # stage's time beside SentencePiece's own, bench/data_pipeline.py).
                train_ids: list[int] = []
                train_documents = train_bytes = 0
                for text, ids in zip(chunk, encoded):
                    raw = text.encode("utf-8")
                    ids.append(eod)
                    if is_validation(raw, validation_fraction):
                        # Whole documents only, so the byte count stays exact.
                        if validation.tokens == 0 or validation.tokens + len(ids) <= validation_max_tokens:
                            validation.add(np.array(ids, dtype=dtype), len(raw))
                        else:
                            validation_overflow += 1
                    else:
                        train_ids.extend(ids)
                        train_documents += 1
                        train_bytes += len(raw)
                if train_documents:
                    train.add(np.array(train_ids, dtype=dtype), train_bytes, train_documents)
                bar.update(len(chunk))
        manifest = {
            "format_version": 1,
            "dtype": np.dtype(dtype).name,
            "eod_id": eod,
            "vocab_size": vocab_size,
            "tokenizer_sha256": sha256_file(tokenizer_model),
            "validation_fraction": validation_fraction,
            "validation_max_tokens": validation_max_tokens,
            "validation_documents_unused": validation_overflow,
            "splits": {"train": train.finish(), "validation": validation.finish()},
        }
        for split in ("train", "validation"):
            if manifest["splits"][split]["tokens"] == 0:
                raise ValueError(f"the {split} split is empty: adjust dataset.validation_fraction or add documents")
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.dataset", description=__doc__.splitlines()[0])
    parser.add_argument("--documents", required=True, type=Path)
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--validation-fraction", required=True, type=float)
    parser.add_argument("--validation-max-tokens", required=True, type=int)
    parser.add_argument("--shard-tokens", required=True, type=int)
    parser.add_argument("--threads", default=1, type=int)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument(
        "--out-summary", required=True, type=Path, help="copy of the manifest for results/ (small, reviewable)"
    )
    args = parser.parse_args(argv)
    try:
        manifest = build_dataset(
            args.documents,
            args.tokenizer,
            args.out_dir,
            validation_fraction=args.validation_fraction,
            validation_max_tokens=args.validation_max_tokens,
            shard_tokens=args.shard_tokens,
            threads=args.threads,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_json_atomic(args.out_summary, manifest)
    for split, info in manifest["splits"].items():
        print(f"dataset: {split}: {info['documents']} documents, {info['tokens']} tokens, {len(info['shards'])} shards")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "dataset"))
