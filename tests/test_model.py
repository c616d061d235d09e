import pytest
import torch

from workflow.families import parameter_counts
from workflow.model import GPT, build_model
from workflow.spec import ModelConfig


def small(**changes):
    return ModelConfig(**{**dict(vocab_size=100, seq_len=16, n_layer=2, d_model=32, n_head=4), **changes})


def test_defaults_follow_current_practice():
    cfg = small()
    assert (cfg.norm, cfg.positions, cfg.bias, cfg.tie_embeddings) == ("rmsnorm", "rotary", False, True)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"norm": "layernorm"},
        {"positions": "learned"},
        {"tie_embeddings": False},
        {"bias": True},
        {"norm": "layernorm", "bias": True, "positions": "learned", "tie_embeddings": False},
        {"family": "lstm"},
        {"family": "lstm", "tie_embeddings": False},
    ],
)
def test_every_variant_runs_and_matches_its_parameter_count(options):
    torch.manual_seed(0)
    cfg = small(**options)
    model = build_model(cfg)
    unique = {id(p): p for p in model.parameters()}.values()
    assert sum(p.numel() for p in unique) == parameter_counts(cfg).total
    x, y = torch.randint(0, 100, (2, 3, 16))
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 100)
    # Small initialisation: the first prediction is close to uniform.
    assert abs(loss.item() - torch.log(torch.tensor(100.0)).item()) < 0.3
    loss.backward()


def test_head_is_tied_to_the_embedding():
    model = GPT(small())
    assert model.head.weight is model.token_embedding.weight
    untied = GPT(small(tie_embeddings=False))
    assert untied.head.weight is not untied.token_embedding.weight


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_models_are_causal(family):
    torch.manual_seed(0)
    model = build_model(small(family=family)).eval()
    x = torch.randint(0, 100, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 100
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_rotary_makes_attention_depend_on_relative_position():
    torch.manual_seed(0)
    model = GPT(small(n_layer=1)).eval()
    x = torch.randint(0, 100, (1, 16))
    with torch.no_grad():
        shifted, _ = model(torch.roll(x, 3, dims=1))
        plain, _ = model(x)
    # Same tokens at other positions give other outputs: positions are seen.
    assert not torch.allclose(plain[0, 5], shifted[0, 8], atol=1e-4)


def test_residual_projections_scaled_with_depth():
    deep = GPT(small(n_layer=8, d_model=256, n_head=4))
    std = deep.blocks[0].mlp.down.weight.std().item()
    assert std == pytest.approx(0.02 / 4, rel=0.1)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="n_head=3 does not divide d_model=32"):
        build_model(small(n_head=3))
    with pytest.raises(ValueError, match="rotary positions need an even head size, got 5"):
        build_model(small(d_model=20, n_head=4))
    with pytest.raises(ValueError, match="unknown model family 'rnn'"):
        build_model(small(family="rnn"))
