"""GPT: pre-norm transformer blocks (``workflow.model.GPT``).

Counts are exact for that module, norm gains and biases included. Per block:
attention's four d x d projections (Q, K, V fused, and the output), the MLP's
two d x f matrices (f = mlp_ratio x d) and two norms; then a final norm.
"""

from __future__ import annotations

from workflow.spec import ModelConfig, ParameterCounts

NAME = "gpt"
SHAPE_KEYS = ("n_layer", "d_model", "n_head")
# Fully sharded, each transformer block is a unit of its own (workflow.model.GPT.shard_units).
SHARDED_PER_LAYER = True


def label(cfg: ModelConfig) -> str:
    return f"L{cfg.n_layer}-d{cfg.d_model}-h{cfg.n_head}"


def validate(cfg: ModelConfig) -> None:
    if cfg.d_model % cfg.n_head:
        raise ValueError(f"n_head={cfg.n_head} does not divide d_model={cfg.d_model}")
    if cfg.positions == "rotary" and (cfg.d_model // cfg.n_head) % 2:
        raise ValueError(f"rotary positions need an even head size, got {cfg.d_model // cfg.n_head}")


def parameter_counts(cfg: ModelConfig) -> ParameterCounts:
    d, V, f = cfg.d_model, cfg.vocab_size, cfg.mlp_ratio * cfg.d_model
    b = 1 if cfg.bias else 0
    norm = d + d * b if cfg.norm == "layernorm" else d  # RMSNorm has a gain only
    attention = 4 * d * d + 4 * d * b
    mlp = 2 * d * f + f * b + d * b
    non_embedding = cfg.n_layer * (attention + mlp + 2 * norm) + norm
    embedding = V * d + (cfg.seq_len * d if cfg.positions == "learned" else 0)
    head = V * d
    total = embedding + non_embedding + (0 if cfg.tie_embeddings else head)
    return ParameterCounts(total=total, embedding=embedding, non_embedding=non_embedding, head=head)


def saved_activations_per_token(cfg: ModelConfig) -> float:
    """Elements the forward pass keeps per token for the backward pass (the logits aside), as counted
    on workflow.model.GPT's autograd graph on the CPU (tests/test_memory.py counts them with
    saved-tensor hooks). Per block: the MLP's hidden before and after GELU (2f); the fused QKV
    output, the attention output and its contiguous copy (5d), and the rotated Q and K with their
    pieces (3d) under rotary positions; each norm 2.5d (RMSNorm) or 1.25d (LayerNorm). Then 3d for
    the embedding and the final norm."""
    d, f = cfg.d_model, cfg.mlp_ratio * cfg.d_model
    attention = 5 * d + (3 * d if cfg.positions == "rotary" else 0)
    norm = 2.5 * d if cfg.norm == "rmsnorm" else 1.25 * d
    return cfg.n_layer * (2 * f + attention + 2 * norm) + 3 * d


def flops_per_token(convention: str, cfg: ModelConfig) -> float:
    counts = parameter_counts(cfg)
    L, d, T, V = cfg.n_layer, cfg.d_model, cfg.seq_len, cfg.vocab_size
    if convention == "kaplan":
        return 6.0 * counts.non_embedding
    if convention == "6N":
        return 6.0 * (counts.non_embedding + counts.head)
    if convention == "palm":
        return 6.0 * (counts.non_embedding + counts.head) + 12.0 * L * d * T
    if convention == "chinchilla":
        # Per token, forward pass, 2 FLOPs per multiply-add (Appendix F).
        f = cfg.mlp_ratio * d
        qkv = 2 * 3 * d * d
        logits = 2 * T * d
        softmax = 3 * cfg.n_head * T
        values = 2 * T * d
        out_proj = 2 * d * d
        dense = 2 * 2 * d * f
        layer = qkv + logits + softmax + values + out_proj + dense
        return 3.0 * (2 * V * d + L * layer + 2 * d * V)
    raise ValueError(f"the gpt family has no FLOP count under {convention!r}")
