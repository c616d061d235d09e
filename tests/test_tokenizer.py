import subprocess
import sys

import polars as pl
import pytest
import sentencepiece as spm

from workflow.files import read_json
from workflow.tokenizer import (
    TokenizerError,
    check_given_model,
    document_chunks,
    sample_documents,
    train_tokenizer,
)


def test_sample_is_seeded_and_bounded():
    texts = [f"document {i} " * 20 for i in range(2000)]
    chunks = [texts[i : i + 128] for i in range(0, len(texts), 128)]
    a = sample_documents(chunks, 5_000, seed=1)
    assert a == sample_documents(chunks, 5_000, seed=1)
    assert a != sample_documents(chunks, 5_000, seed=2)
    assert 5_000 <= sum(len(t) for t in a) < 5_000 + 300
    # Drawn from the whole corpus, not its head.
    assert max(int(t.split()[1]) for t in a) > 1000


def test_documents_stream_in_order_in_bounded_chunks(documents_path):
    texts = pl.read_parquet(documents_path)["text"].to_list()
    chunks = list(document_chunks(documents_path, 100))
    assert all(len(c) == 100 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 100
    assert [t for c in chunks for t in c] == texts


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_trained_model_round_trips_code(documents_path, model_type):
    texts = pl.read_parquet(documents_path)["text"].to_list()
    data, info = train_tokenizer(texts, vocab_size=400, model_type=model_type, seed=0, sample_bytes=200_000)
    processor = spm.SentencePieceProcessor(model_proto=data)
    assert info["vocab_size"] == processor.get_piece_size() == 400
    assert info["eos_id"] == 2 and info["model_type"] == model_type
    # Byte fallback and no normalisation: indentation, newlines and any
    # character survive encoding exactly; digits are split.
    sample = "def f(x):\n    return x  # naïve ✓ 12345\n\ttab\n"
    assert processor.decode(processor.encode(sample)) == sample
    assert all(len(p.strip("▁")) <= 1 for p in processor.encode("2024", out_type=str) if p.strip("▁").isdigit())
    again, _ = train_tokenizer(texts, vocab_size=400, model_type=model_type, seed=0, sample_bytes=200_000)
    assert again == data


def test_vocabulary_larger_than_the_sample_allows():
    with pytest.raises(TokenizerError, match="vocab_size=50000"):
        train_tokenizer(["a tiny sample\n"] * 5, vocab_size=50_000, model_type="bpe", seed=0, sample_bytes=100)


def test_cli_trains_from_the_documents_table(documents_path, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow.tokenizer",
            "--documents",
            str(documents_path),
            "--vocab-size",
            "400",
            "--sample-bytes",
            "100000",
            "--seed",
            "3",
            "--out-model",
            str(tmp_path / "m.model"),
            "--out-info",
            str(tmp_path / "info.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    info = read_json(tmp_path / "info.json")
    assert info["source"] == "trained" and info["vocab_size"] == 400
    assert 100_000 <= info["sample_bytes"] < 100_000 + max(len(t) for t in pl.read_parquet(documents_path)["text"])


def test_a_given_model_is_checked_and_used(tokenizer_path, tmp_path):
    info = check_given_model(tokenizer_path.read_bytes(), 384, str(tokenizer_path))
    assert info["vocab_size"] == 384 and info["eos_id"] == 2 and info["byte_fallback"]
    with pytest.raises(TokenizerError, match="has 384 pieces but tokenizer.vocab_size is 512"):
        check_given_model(tokenizer_path.read_bytes(), 512, str(tokenizer_path))
    with pytest.raises(TokenizerError, match="is not a SentencePiece model"):
        check_given_model(b"not a model", 384, "junk.model")
    out = tmp_path / "m.model"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow.tokenizer",
            "--given-model",
            str(tokenizer_path),
            "--vocab-size",
            "384",
            "--out-model",
            str(out),
            "--out-info",
            str(tmp_path / "info.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == tokenizer_path.read_bytes()
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow.tokenizer",
            "--given-model",
            str(tmp_path / "absent.model"),
            "--vocab-size",
            "384",
            "--out-model",
            str(tmp_path / "x.model"),
            "--out-info",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "absent.model does not exist" in missing.stderr
    assert not (tmp_path / "x.model").exists()


def cjk_texts() -> list[str]:
    """A CJK-like corpus: 100 common characters make up 99% of the text, 1000 rare ones the rest, so
    covering 99.95% of the characters takes more pieces than a 384-piece vocabulary holds."""
    import random

    rng = random.Random(0)
    common = [chr(0x4E00 + i) for i in range(100)]
    rare = [chr(0x5000 + i) for i in range(1000)]
    return [
        "".join(rng.choice(common) if rng.random() < 0.99 else rng.choice(rare) for _ in range(200)) for _ in range(400)
    ]


def test_a_cjk_corpus_names_the_settings_that_can_be_changed():
    """SentencePiece's advice (`--character_coverage`) named no setting of the config (issue 29, case 14)."""
    with pytest.raises(TokenizerError) as error:
        train_tokenizer(cjk_texts(), vocab_size=384, model_type="bpe", seed=0, sample_bytes=10**6)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "SentencePiece training failed for vocab_size=384: the sample's characters that character_coverage "
        "0.9995 keeps need "
    )
    assert message.endswith(
        "pieces, more than the vocabulary holds; raise tokenizer.vocab_size, or lower tokenizer.character_coverage "
        "(the rarer characters are then encoded as bytes)"
    )


def test_character_coverage_is_passed_to_sentencepiece_and_recorded():
    data, info = train_tokenizer(
        cjk_texts(), vocab_size=384, model_type="bpe", seed=0, sample_bytes=10**6, character_coverage=0.98
    )
    processor = spm.SentencePieceProcessor(model_proto=data)
    assert info["character_coverage"] == 0.98 and processor.get_piece_size() == 384
    # A common character has a piece of its own; a rare one, left out of the coverage, is bytes.
    assert processor.piece_to_id(chr(0x4E00 + 3)) != processor.unk_id()
    assert processor.piece_to_id(chr(0x5000 + 7)) == processor.unk_id()
    assert any(processor.is_byte(i) for i in processor.encode(chr(0x5000 + 7)))


def test_character_coverage_is_in_the_schema_and_keys_the_tokenizer_only_when_changed(config):
    """Its default leaves every existing study's tokenizer key (and so its work-directory paths) as it was."""
    import copy

    from snakemake.utils import validate

    from workflow.names import artefact_keys

    schema = str(__import__("helpers").REPO / "config" / "config.schema.yaml")
    validate(config, schema)
    assert config["tokenizer"]["character_coverage"] == 0.9995
    without = copy.deepcopy(config)
    del without["tokenizer"]["character_coverage"]
    assert artefact_keys(config) == artefact_keys(without)
    lowered = copy.deepcopy(config)
    lowered["tokenizer"]["character_coverage"] = 0.98
    assert artefact_keys(lowered)["tokenizer"] != artefact_keys(config)["tokenizer"]
    assert artefact_keys(lowered)["corpus"] == artefact_keys(config)["corpus"]
