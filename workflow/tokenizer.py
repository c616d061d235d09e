"""Tokenizer stage: train a SentencePiece BPE model on a seeded sample of documents.

Byte fallback makes every string encodable (no <unk> on unseen characters), so
bits-per-byte is well defined. Normalisation is off and whitespace-only pieces
are allowed, because the default corpus is source code where indentation is
content. The end-of-document id appended by the dataset stage is the model's
``eos`` id.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

import polars as pl
import sentencepiece as spm

from workflow.io import sha256_bytes, write_bytes_atomic, write_json_atomic


class TokenizerError(RuntimeError):
    pass


def sample_documents(texts: list[str], sample_bytes: int, seed: int) -> list[str]:
    """A seeded random sample of whole documents totalling about ``sample_bytes``."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    sample, total = [], 0
    for i in order:
        if total >= sample_bytes:
            break
        sample.append(texts[i])
        total += len(texts[i].encode("utf-8"))
    return sample


def train_tokenizer(texts: list[str], *, vocab_size: int, model_type: str, seed: int,
                    sample_bytes: int, threads: int = 1) -> tuple[bytes, dict]:
    sample = sample_documents(texts, sample_bytes, seed)
    # SentencePiece trains on sentences; a line of a document is one.
    lines = [line for doc in sample for line in doc.splitlines() if line.strip()]
    if not lines:
        raise TokenizerError("the tokenizer sample holds no text")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            character_coverage=0.9995,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            input_sentence_size=0,  # we sampled already: use every line given
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        # e.g. "Vocabulary size is too high (vocab_size=...). Please set it to a value <= N."
        raise TokenizerError(f"SentencePiece training failed for vocab_size={vocab_size}: {e}") from None
    data = model.getvalue()
    processor = spm.SentencePieceProcessor(model_proto=data)
    info = {
        "vocab_size": processor.get_piece_size(),
        "model_type": model_type,
        "byte_fallback": True,
        "eos_id": processor.eos_id(),
        "seed": seed,
        "sample_documents": len(sample),
        "sample_bytes": sum(len(t.encode("utf-8")) for t in sample),
        "sample_lines": len(lines),
        "sentencepiece_version": spm.__version__,
        "model_sha256": sha256_bytes(data),
    }
    return data, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--documents", required=True, type=Path)
    parser.add_argument("--vocab-size", required=True, type=int)
    parser.add_argument("--model-type", default="bpe", choices=["bpe", "unigram"])
    parser.add_argument("--sample-bytes", required=True, type=int)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--threads", default=1, type=int)
    parser.add_argument("--out-model", required=True, type=Path)
    parser.add_argument("--out-info", required=True, type=Path)
    args = parser.parse_args(argv)
    texts = pl.read_parquet(args.documents, columns=["text"])["text"].to_list()
    try:
        data, info = train_tokenizer(texts, vocab_size=args.vocab_size, model_type=args.model_type,
                                     seed=args.seed, sample_bytes=args.sample_bytes, threads=args.threads)
    except TokenizerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_bytes_atomic(args.out_model, data)
    write_json_atomic(args.out_info, info)
    print(f"tokenizer: {info['vocab_size']} pieces from {info['sample_bytes'] / 1e6:.1f} MB of sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
