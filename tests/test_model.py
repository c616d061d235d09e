import pytest
import torch

from workflow.model import GPT, GPTConfig


def small(**changes):
    return GPTConfig(**{**dict(vocab_size=100, seq_len=16, n_layer=2, d_model=32, n_head=4), **changes})


def test_forward_shapes_and_initial_loss():
    torch.manual_seed(0)
    model = GPT(small())
    x, y = torch.randint(0, 100, (2, 3, 16))
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 100)
    # Small initialisation: the first prediction is close to uniform.
    assert abs(loss.item() - torch.log(torch.tensor(100.0)).item()) < 0.3


def test_head_is_tied_to_the_embedding():
    model = GPT(small())
    assert model.head.weight is model.token_embedding.weight


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(small()).eval()
    x = torch.randint(0, 100, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 100
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_residual_projections_scaled_with_depth():
    deep = GPT(small(n_layer=8, d_model=256, n_head=4))
    std = deep.blocks[0].mlp.down.weight.std().item()
    assert std == pytest.approx(0.02 / 4, rel=0.1)


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="n_head=3 does not divide d_model=32"):
        small(n_head=3)
