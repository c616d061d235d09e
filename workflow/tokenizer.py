"""Tokenizer stage: train SentencePiece on a bounded, seeded sample of the documents,
or take a given model file.

Training (BPE or unigram): the documents are streamed once and a seeded
random sample of whole documents totalling ``sample_bytes`` is kept (see
``sample_documents``); memory is bounded by the sample, whatever the corpus
size.
Byte fallback makes every string encodable (no <unk> on unseen characters),
so bits-per-byte is well defined; digits are split. Normalisation is off and
whitespace-only pieces are allowed, because source code (the default corpus)
has indentation as content.

A given model (``tokenizer.model_file``, a path, or ``tokenizer.model_url``
with ``model_sha256``) is checked instead: its piece count must equal
``tokenizer.vocab_size`` and it must have an end-of-document (eos) piece.

Either way the end-of-document id appended by the dataset stage is the
model's ``eos`` id, and the dataset stage records bytes per token on the
validation split, so that bits-per-byte compares across tokenizers.
"""

from __future__ import annotations

import argparse
import heapq
import io
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import polars as pl
import sentencepiece as spm

from workflow.files import run_stage, sha256_bytes, write_bytes_atomic, write_json_atomic

# tokenizer.character_coverage's default (SentencePiece's own, and the schema's): the share of the
# sample's characters that get a piece of their own; the rarer ones are encoded as bytes.
from workflow.names import CHARACTER_COVERAGE

# SentencePiece's refusal when the covered characters need more pieces than the vocabulary holds.
TOO_MANY_CHARACTERS = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


class TokenizerError(RuntimeError):
    pass


def document_chunks(documents: Path, size: int) -> Iterator[list[str]]:
    """The documents' texts in order, ``size`` at a time, streamed from the parquet
    file (polars' streaming engine) so that memory stays bounded."""
    batches = pl.scan_parquet(documents).select("text").collect_batches(chunk_size=size)
    pending: list[str] = []
    for batch in batches:
        pending.extend(batch["text"].to_list())
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def sample_documents(chunks: Iterable[list[str]], sample_bytes: int, seed: int) -> list[str]:
    """A seeded random sample of whole documents totalling about ``sample_bytes``.

    Each document gets a seeded uniform key; the sample is the documents of
    smallest key whose bytes first reach ``sample_bytes`` (the same as shuffling
    the corpus and taking a prefix). A heap holds only the current sample, so
    memory is bounded by the sample, not the corpus.
    """
    rng = np.random.default_rng(seed)
    heap: list[tuple[float, int, str, int]] = []  # (-key, index, text, bytes): largest key on top
    held = 0
    index = 0
    for chunk in chunks:
        for text, key in zip(chunk, rng.random(len(chunk))):
            index += 1
            if held >= sample_bytes and key >= -heap[0][0]:
                continue
            size = len(text.encode("utf-8"))
            heapq.heappush(heap, (-key, index, text, size))
            held += size
            while heap and held - heap[0][3] >= sample_bytes:
                held -= heapq.heappop(heap)[3]
    return [text for _, _, text, _ in sorted(heap, key=lambda item: (-item[0], item[1]))]


def train_tokenizer(
    texts: list[str],
    *,
    vocab_size: int,
    model_type: str,
    seed: int,
    sample_bytes: int,
    threads: int = 1,
    character_coverage: float = CHARACTER_COVERAGE,
) -> tuple[bytes, dict]:
    """Train on a sample of ``texts`` (a list, or use ``sample_documents`` on a stream first)."""
    sample = sample_documents([texts], sample_bytes, seed)
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
            character_coverage=character_coverage,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            input_sentence_size=0,  # we sampled already: use every line given
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as e:
        # e.g. "Vocabulary size is too high (vocab_size=...). Please set it to a value <= N."
        if needed := TOO_MANY_CHARACTERS.search(str(e)):
            # A corpus of many characters (CJK): SentencePiece's advice names its own flag.
            raise TokenizerError(
                f"SentencePiece training failed for vocab_size={vocab_size}: the sample's characters that "
                f"character_coverage {character_coverage:g} keeps need {needed.group(2)} pieces, more than the "
                f"vocabulary holds; raise tokenizer.vocab_size, or lower tokenizer.character_coverage (the rarer "
                f"characters are then encoded as bytes)"
            ) from None
        raise TokenizerError(f"SentencePiece training failed for vocab_size={vocab_size}: {e}") from None
    data = model.getvalue()
    processor = spm.SentencePieceProcessor(model_proto=data)
    info = {
        "source": "trained",
        "vocab_size": processor.get_piece_size(),
        "model_type": model_type,
        "byte_fallback": True,
        "split_digits": True,
        "character_coverage": character_coverage,
        "eos_id": processor.eos_id(),
        "seed": seed,
        "sample_documents": len(sample),
        "sample_bytes": sum(len(t.encode("utf-8")) for t in sample),
        "sample_lines": len(lines),
        "sentencepiece_version": spm.__version__,
        "model_sha256": sha256_bytes(data),
    }
    return data, info


def check_given_model(data: bytes, vocab_size: int, origin: str) -> dict:
    """A tokenizer model supplied by the user, checked against the config."""
    try:
        processor = spm.SentencePieceProcessor(model_proto=data)
    except RuntimeError as e:
        raise TokenizerError(f"{origin} is not a SentencePiece model: {e}") from None
    if processor.get_piece_size() != vocab_size:
        raise TokenizerError(
            f"{origin} has {processor.get_piece_size()} pieces but tokenizer.vocab_size is "
            f"{vocab_size}; set tokenizer.vocab_size to {processor.get_piece_size()}"
        )
    if processor.eos_id() < 0:
        raise TokenizerError(
            f"{origin} has no end-of-document (eos) piece, which the dataset stage appends after every document"
        )
    return {
        "source": origin,
        "vocab_size": processor.get_piece_size(),
        "eos_id": processor.eos_id(),
        "byte_fallback": any(processor.is_byte(i) for i in range(processor.get_piece_size())),
        "sentencepiece_version": spm.__version__,
        "model_sha256": sha256_bytes(data),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.tokenizer", description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=Path, help="documents table to sample (training)")
    parser.add_argument("--given-model", type=Path, help="use this SentencePiece model instead of training")
    parser.add_argument("--vocab-size", required=True, type=int)
    parser.add_argument("--model-type", default="bpe", choices=["bpe", "unigram"])
    parser.add_argument("--sample-bytes", type=int, default=100_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", default=1, type=int)
    parser.add_argument(
        "--character-coverage",
        type=float,
        default=CHARACTER_COVERAGE,
        help=f"share of the sample's characters given pieces of their own (default {CHARACTER_COVERAGE})",
    )
    parser.add_argument("--out-model", required=True, type=Path)
    parser.add_argument("--out-info", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.given_model:
            if not args.given_model.exists():
                raise TokenizerError(f"tokenizer model file {args.given_model} does not exist")
            data = args.given_model.read_bytes()
            info = check_given_model(data, args.vocab_size, str(args.given_model))
        elif args.documents:
            sample = sample_documents(document_chunks(args.documents, 4096), args.sample_bytes, args.seed)
            data, info = train_tokenizer(
                sample,
                vocab_size=args.vocab_size,
                model_type=args.model_type,
                seed=args.seed,
                sample_bytes=args.sample_bytes,
                threads=args.threads,
                character_coverage=args.character_coverage,
            )
        else:
            raise TokenizerError("give --documents (to train) or --given-model")
    except TokenizerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_bytes_atomic(args.out_model, data)
    write_json_atomic(args.out_info, info)
    print(f"tokenizer: {info['vocab_size']} pieces ({info['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "tokenizer"))
