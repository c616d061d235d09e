"""Each model family in one module: labels, counts and classes agree with the rest of the pipeline."""

import pytest
import torch

from workflow import flops
from workflow.families import FAMILIES, get_family
from workflow.model import GPT, LSTM, build_model
from workflow.spec import ModelConfig


def model(**changes) -> ModelConfig:
    return ModelConfig(**{"vocab_size": 100, "seq_len": 16, "n_layer": 2, "d_model": 32, "n_head": 4, **changes})


def test_registry_names_each_family_once():
    assert set(FAMILIES) == {"gpt", "lstm"}
    assert all(name == family.NAME for name, family in FAMILIES.items())
    with pytest.raises(ValueError, match="unknown model family 'rnn'"):
        get_family("rnn")


def test_run_id_labels():
    assert get_family("gpt").label(model()) == "L2-d32-h4"
    assert get_family("lstm").label(model(family="lstm")) == "lstm-L2-d32"


def test_shape_keys():
    assert get_family("gpt").SHAPE_KEYS == ("n_layer", "d_model", "n_head")
    assert get_family("lstm").SHAPE_KEYS == ("n_layer", "d_model")


@pytest.mark.parametrize(("family", "cls"), [("gpt", GPT), ("lstm", LSTM)])
def test_family_names_its_model_class(family, cls):
    assert get_family(family).model_class() is cls
    assert type(build_model(model(family=family))) is cls


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_counts_every_convention(family):
    cfg = model(family=family)
    for convention in flops.CONVENTIONS:
        assert get_family(family).flops_per_token(convention, cfg) == flops.flops_per_token(convention, **cfg.to_dict())
        assert flops.flops_per_token(convention, **cfg.to_dict()) > 0
    counts = get_family(family).parameter_counts(cfg)
    torch.manual_seed(0)
    unique = {id(p): p for p in build_model(cfg).parameters()}.values()
    assert sum(p.numel() for p in unique) == counts.total
