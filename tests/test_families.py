"""Each model family in one module: labels, counts, validation and classes agree with the rest of the pipeline."""

import pytest
import torch

from workflow import families
from workflow.families import FAMILIES, get_family
from workflow.model import GPT, LSTM, MODELS, build_model
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


def test_every_family_has_a_model_class_and_every_model_class_a_family():
    assert set(MODELS) == set(FAMILIES)


@pytest.mark.parametrize(("family", "cls"), [("gpt", GPT), ("lstm", LSTM)])
def test_build_model_builds_the_class_of_the_family(family, cls):
    assert MODELS[family] is cls
    assert type(build_model(model(family=family))) is cls


def test_validate_dispatches_to_the_family():
    with pytest.raises(ValueError, match="unknown model family 'rnn'; choose one of gpt, lstm"):
        families.validate(model(family="rnn"))
    with pytest.raises(ValueError, match="n_head=3 does not divide d_model=32"):
        families.validate(model(n_head=3))
    with pytest.raises(ValueError, match="rotary positions need an even head size, got 3"):
        families.validate(model(d_model=9, n_head=3))
    # An LSTM has no heads: n_head is recorded but not checked.
    families.validate(model(family="lstm", d_model=9, n_head=2))
    families.validate(model())


def test_families_import_no_model():
    """A family module names no torch module: workflow.model.MODELS maps families to classes."""
    for family in FAMILIES.values():
        assert not hasattr(family, "model_class")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_counts_every_convention(family):
    cfg = model(family=family)
    for convention in families.CONVENTIONS:
        assert get_family(family).flops_per_token(convention, cfg) == families.flops_per_token(convention, cfg)
        assert families.flops_per_token(convention, cfg) > 0
    counts = families.parameter_counts(cfg)
    assert counts == get_family(family).parameter_counts(cfg)
    torch.manual_seed(0)
    unique = {id(p): p for p in build_model(cfg).parameters()}.values()
    assert sum(p.numel() for p in unique) == counts.total
