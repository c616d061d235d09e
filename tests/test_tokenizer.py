import polars as pl
import pytest
import sentencepiece as spm

from workflow.tokenizer import TokenizerError, sample_documents, train_tokenizer


def test_sample_is_seeded_and_bounded():
    texts = [f"document {i} " * 20 for i in range(200)]
    a = sample_documents(texts, 5_000, seed=1)
    assert a == sample_documents(texts, 5_000, seed=1)
    assert a != sample_documents(texts, 5_000, seed=2)
    assert 5_000 <= sum(len(t) for t in a) < 5_000 + 300


def test_trained_model_round_trips_code(documents_path):
    texts = pl.read_parquet(documents_path)["text"].to_list()
    data, info = train_tokenizer(texts, vocab_size=400, model_type="bpe", seed=0, sample_bytes=200_000)
    processor = spm.SentencePieceProcessor(model_proto=data)
    assert info["vocab_size"] == processor.get_piece_size() == 400
    assert info["eos_id"] == 2
    # Byte fallback and no normalisation: indentation, newlines and any
    # character survive encoding exactly.
    sample = "def f(x):\n    return x  # naïve ✓\n\ttab\n"
    assert processor.decode(processor.encode(sample)) == sample
    again, _ = train_tokenizer(texts, vocab_size=400, model_type="bpe", seed=0, sample_bytes=200_000)
    assert again == data


def test_vocabulary_larger_than_the_sample_allows():
    with pytest.raises(TokenizerError, match="vocab_size=50000"):
        train_tokenizer(["a tiny sample\n"] * 5, vocab_size=50_000, model_type="bpe", seed=0, sample_bytes=100)
