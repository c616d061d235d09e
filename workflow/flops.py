"""Parameter counts and FLOPs per token, under named conventions.

Scaling-law papers disagree on what "N" and "C" count; a fit is only
comparable to a published one under the same convention. Every count here is
exact for ``workflow.model`` (norm gains and biases included) and computed
from the shape alone, so the IsoFLOP grid can size runs before training.

Conventions for training FLOPs per token (forward + backward):

``kaplan``      6 x non-embedding parameters (Kaplan et al. 2020, C = 6 N D).
``6N``          6 x every parameter except the input lookups (token and
                learned position embeddings); the output head is counted,
                whether or not it is tied to the token embedding.
``palm``        6N + 12 L d T: adds attention's score and value products
                (PaLM, Appendix B; the count nanoGPT uses for MFU).
``chinchilla``  Hoffmann et al. 2022, Appendix F: embeddings, QKV projections,
                attention logits, softmax, attention-weighted values, output
                projection, MLP and final logits, all at 2 FLOPs per
                multiply-add; backward counted as twice the forward.

The LSTM baseline is counted under the same rules: its non-embedding
parameters are the recurrent layers, ``palm`` adds nothing for attention, and
``chinchilla`` counts 8 d^2 multiply-adds per layer and token.
"""

from __future__ import annotations

from dataclasses import dataclass

CONVENTIONS = ("kaplan", "6N", "palm", "chinchilla")
PARAMETER_COUNTS = ("non_embedding", "total")


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    embedding: int  # input lookups: token embedding, and learned positions if any
    non_embedding: int  # Kaplan's N: everything but the embeddings and the head
    head: int  # output projection, whether tied or not

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "embedding": self.embedding,
            "non_embedding": self.non_embedding,
            "head": self.head,
        }


def parameter_counts(
    *,
    vocab_size: int,
    seq_len: int,
    n_layer: int,
    d_model: int,
    family: str = "gpt",
    mlp_ratio: int = 4,
    norm: str = "rmsnorm",
    positions: str = "rotary",
    tie_embeddings: bool = True,
    bias: bool = False,
    **_ignored,
) -> ParameterCounts:
    d, V = d_model, vocab_size
    b = 1 if bias else 0
    if family == "lstm":
        # torch.nn.LSTM: four gates, input and recurrent weights, two bias vectors.
        blocks = n_layer * (4 * (d * d + d * d) + 8 * d)
        final_norm = 0
        embedding = V * d
    else:
        f = mlp_ratio * d
        norm_params = d + d * b if norm == "layernorm" else d
        attention = 4 * d * d + 4 * d * b
        mlp = 2 * d * f + f * b + d * b
        blocks = n_layer * (attention + mlp + 2 * norm_params)
        final_norm = norm_params
        embedding = V * d + (seq_len * d if positions == "learned" else 0)
    head = V * d
    non_embedding = blocks + final_norm
    total = embedding + non_embedding + (0 if tie_embeddings else head)
    return ParameterCounts(total=total, embedding=embedding, non_embedding=non_embedding, head=head)


def flops_per_token(convention: str, **shape) -> float:
    """Training FLOPs per token (forward and backward) for a model shape."""
    counts = parameter_counts(**shape)
    L, d, T, V = shape["n_layer"], shape["d_model"], shape["seq_len"], shape["vocab_size"]
    family = shape.get("family", "gpt")
    n_6n = counts.non_embedding + counts.head
    if convention == "kaplan":
        return 6.0 * counts.non_embedding
    if convention == "6N":
        return 6.0 * n_6n
    if convention == "palm":
        # An LSTM has no attention: its PaLM count is 6N.
        return 6.0 * n_6n + (12.0 * L * d * T if family == "gpt" else 0.0)
    if convention == "chinchilla":
        # Per token, forward pass, 2 FLOPs per multiply-add (Appendix F).
        embeddings = 2 * V * d
        final_logits = 2 * d * V
        if family == "lstm":
            # Same rules applied to the recurrence: 8 d^2 multiply-adds per layer.
            layer = 2 * 8 * d * d
        else:
            f = shape.get("mlp_ratio", 4) * d
            qkv = 2 * 3 * d * d
            logits = 2 * T * d
            softmax = 3 * shape["n_head"] * T
            values = 2 * T * d
            out_proj = 2 * d * d
            dense = 2 * 2 * d * f
            layer = qkv + logits + softmax + values + out_proj + dense
        return 3.0 * (embeddings + L * layer + final_logits)
    raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")


def all_conventions(**shape) -> dict[str, float]:
    return {c: flops_per_token(c, **shape) for c in CONVENTIONS}
