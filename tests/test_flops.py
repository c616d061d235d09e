"""The counts of ``workflow.families``: each FLOP convention against a count made by hand for one shape.

Shape: L=2 layers, d=64, 4 heads, T=128, V=1000, MLP ratio 4, no bias, tied
embeddings, LayerNorm, learned positions. Per block: attention 4 d^2 = 16384, MLP 8 d^2 = 32768, two norm
gains 128 -> 49280. Two blocks 98560, final norm 64 -> non-embedding 98624.
Embeddings: V d = 64000 and T d = 8192 -> 72192. Total 170816.
"""

from dataclasses import replace

import pytest

from workflow import families
from workflow.model import build_model
from workflow.spec import ModelConfig

SHAPE = ModelConfig(
    vocab_size=1000,
    seq_len=128,
    n_layer=2,
    d_model=64,
    n_head=4,
    mlp_ratio=4,
    bias=False,
    norm="layernorm",
    positions="learned",
)
ROTARY = replace(SHAPE, norm="rmsnorm", positions="rotary")
LSTM = ModelConfig(vocab_size=1000, seq_len=128, n_layer=2, d_model=64, family="lstm")


def test_parameter_counts_by_hand():
    counts = families.parameter_counts(SHAPE)
    assert counts.non_embedding == 98_624
    assert counts.embedding == 72_192
    assert counts.total == 170_816
    assert counts.head == 64_000


def test_rotary_has_no_position_parameters():
    counts = families.parameter_counts(ROTARY)
    assert counts.embedding == 64_000 and counts.non_embedding == 98_624 and counts.total == 162_624
    untied = families.parameter_counts(replace(ROTARY, tie_embeddings=False))
    assert untied.total == 162_624 + 64_000 and untied.non_embedding == 98_624
    # The head is counted by 6N whether tied or not; the rotary GPT's palm term is the same.
    assert families.flops_per_token("6N", ROTARY) == families.flops_per_token("6N", SHAPE)


def test_lstm_by_hand():
    # Per layer: 4 gates x (input + recurrent) 64x64 matrices, two 4x64 bias vectors.
    counts = families.parameter_counts(LSTM)
    assert counts.non_embedding == 2 * (8 * 64 * 64 + 8 * 64) == 66_560
    assert counts.embedding == 64_000 and counts.total == 130_560
    assert families.flops_per_token("kaplan", LSTM) == 6 * 66_560
    assert families.flops_per_token("palm", LSTM) == families.flops_per_token("6N", LSTM) == 6 * 130_560
    assert families.flops_per_token("chinchilla", LSTM) == 3 * (2 * 64_000 + 2 * (2 * 8 * 64 * 64) + 2 * 64_000)


def test_parameter_counts_match_the_models():
    for shape in (SHAPE, replace(SHAPE, bias=True), ROTARY, replace(ROTARY, tie_embeddings=False), LSTM):
        model = build_model(shape)
        unique = {id(p): p for p in model.parameters()}.values()
        assert sum(p.numel() for p in unique) == families.parameter_counts(shape).total


def test_kaplan():
    assert families.flops_per_token("kaplan", SHAPE) == 6 * 98_624


def test_6n_counts_the_head_not_the_lookups():
    assert families.flops_per_token("6N", SHAPE) == 6 * (98_624 + 64_000)


def test_palm_adds_attention():
    assert families.flops_per_token("palm", SHAPE) == 6 * 162_624 + 12 * 2 * 64 * 128


def test_chinchilla_appendix_f():
    # Forward FLOPs per token, Hoffmann et al. 2022 Appendix F:
    embeddings = 2 * 1000 * 64  # 128000
    per_layer = (
        2 * 3 * 64 * 64  # QKV projections: 24576
        + 2 * 128 * 64  # key @ query logits: 16384
        + 3 * 4 * 128  # softmax: 1536
        + 2 * 128 * 64  # softmax @ value: 16384
        + 2 * 64 * 64  # output projection: 8192
        + 2 * 2 * 64 * 256  # MLP: 65536
    )  # 132608
    logits = 2 * 64 * 1000  # 128000
    assert families.flops_per_token("chinchilla", SHAPE) == 3 * (embeddings + 2 * per_layer + logits)
    assert 3 * (embeddings + 2 * per_layer + logits) == 1_563_648


def test_unknown_convention():
    with pytest.raises(ValueError, match="unknown FLOP convention 'nope'"):
        families.flops_per_token("nope", SHAPE)


def test_all_conventions_counts_each_convention_in_order():
    counts = families.all_conventions(SHAPE)
    assert list(counts) == list(families.CONVENTIONS) == ["kaplan", "6N", "palm", "chinchilla"]
    assert counts == {c: families.flops_per_token(c, SHAPE) for c in families.CONVENTIONS}
    assert families.all_conventions(LSTM)["palm"] == families.flops_per_token("6N", LSTM)
