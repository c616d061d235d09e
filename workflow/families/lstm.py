"""LSTM: the recurrent baseline of Kaplan et al. 2020, Figure 7 (``workflow.model.LSTM``).

Counted under the same rules as the GPT: its non-embedding parameters are the
recurrent layers, ``palm`` adds nothing for attention, and ``chinchilla``
counts 8 d^2 multiply-adds per layer and token. It has no position embedding,
no norms and no heads: ``n_head`` is recorded but unused.
"""

from __future__ import annotations

from workflow.spec import ModelConfig, ParameterCounts

NAME = "lstm"
SHAPE_KEYS = ("n_layer", "d_model")
# Fully sharded, torch.nn.LSTM is one module: the whole model is one unit.
SHARDED_PER_LAYER = False


def label(cfg: ModelConfig) -> str:
    return f"lstm-L{cfg.n_layer}-d{cfg.d_model}"


def validate(cfg: ModelConfig) -> None:
    """Every positive n_layer and d_model builds (the schema checks that)."""


def parameter_counts(cfg: ModelConfig) -> ParameterCounts:
    d, V = cfg.d_model, cfg.vocab_size
    # torch.nn.LSTM: four gates, input and recurrent weights, two bias vectors.
    non_embedding = cfg.n_layer * (4 * (d * d + d * d) + 8 * d)
    embedding = V * d
    head = V * d
    total = embedding + non_embedding + (0 if cfg.tie_embeddings else head)
    return ParameterCounts(total=total, embedding=embedding, non_embedding=non_embedding, head=head)


def saved_activations_per_token(cfg: ModelConfig) -> float:
    """Elements the forward pass keeps per token for the backward pass (the logits aside), as counted
    on torch.nn.LSTM's autograd graph on the CPU (tests/test_memory.py): about 17d per layer (the
    gates before and after their nonlinearities, the cell states, the outputs), 2d outside."""
    return cfg.n_layer * 17 * cfg.d_model + 2 * cfg.d_model


def flops_per_token(convention: str, cfg: ModelConfig) -> float:
    counts = parameter_counts(cfg)
    if convention == "kaplan":
        return 6.0 * counts.non_embedding
    if convention in ("6N", "palm"):  # no attention: PaLM's count is 6N
        return 6.0 * (counts.non_embedding + counts.head)
    if convention == "chinchilla":
        d, V = cfg.d_model, cfg.vocab_size
        layer = 2 * 8 * d * d  # the recurrence: 8 d^2 multiply-adds per layer and token
        return 3.0 * (2 * V * d + cfg.n_layer * layer + 2 * d * V)
    raise ValueError(f"the lstm family has no FLOP count under {convention!r}")
