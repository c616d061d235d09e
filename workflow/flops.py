"""Parameter counts and FLOPs per token, under named conventions.

Scaling-law papers disagree on what "N" and "C" count; a fit is only
comparable to a published one under the same convention. Every count here is
exact for ``workflow.model.GPT`` (norm gains and biases included) and computed
from the shape alone, so the IsoFLOP grid can size runs before training.

Conventions for training FLOPs per token (forward + backward):

``kaplan``      6 x non-embedding parameters (Kaplan et al. 2020, C = 6 N D).
``6N``          6 x every parameter except the input lookups (token and
                position embeddings); the output head is counted, whether or
                not it is tied to the token embedding.
``palm``        6N + 12 L d T: adds attention's score and value products
                (PaLM, Appendix B; the count nanoGPT uses for MFU).
``chinchilla``  Hoffmann et al. 2022, Appendix F: embeddings, QKV projections,
                attention logits, softmax, attention-weighted values, output
                projection, MLP and final logits, all at 2 FLOPs per
                multiply-add; backward counted as twice the forward.
"""

from __future__ import annotations

from dataclasses import dataclass

CONVENTIONS = ("kaplan", "6N", "palm", "chinchilla")
PARAMETER_COUNTS = ("non_embedding", "total")


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    embedding: int  # input lookups: token (and position) embeddings
    non_embedding: int  # Kaplan's N: everything but the embeddings
    head: int  # output projection, whether tied or not

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "embedding": self.embedding,
            "non_embedding": self.non_embedding,
            "head": self.head,
        }


def gpt_parameter_counts(
    *, vocab_size: int, seq_len: int, n_layer: int, d_model: int, mlp_ratio: int = 4,
    bias: bool = False, tie_embeddings: bool = True, **_ignored,
) -> ParameterCounts:
    d, V, f = d_model, vocab_size, mlp_ratio * d_model
    b = 1 if bias else 0
    attention = 3 * d * d + 3 * d * b + d * d + d * b
    mlp = d * f + f * b + f * d + d * b
    norms = 2 * (d + d * b)
    blocks = n_layer * (attention + mlp + norms)
    final_norm = d + d * b
    embedding = V * d + seq_len * d
    head = V * d
    non_embedding = blocks + final_norm
    total = embedding + non_embedding + (0 if tie_embeddings else head)
    return ParameterCounts(total=total, embedding=embedding, non_embedding=non_embedding, head=head)


def gpt_flops_per_token(convention: str, **shape) -> float:
    """Training FLOPs per token (forward and backward) for a GPT shape."""
    counts = gpt_parameter_counts(**shape)
    L, d, T, V = shape["n_layer"], shape["d_model"], shape["seq_len"], shape["vocab_size"]
    n_head, f = shape["n_head"], shape.get("mlp_ratio", 4) * shape["d_model"]
    n_6n = counts.non_embedding + counts.head
    if convention == "kaplan":
        return 6.0 * counts.non_embedding
    if convention == "6N":
        return 6.0 * n_6n
    if convention == "palm":
        return 6.0 * n_6n + 12.0 * L * d * T
    if convention == "chinchilla":
        # Per token, forward pass, 2 FLOPs per multiply-add (Appendix F).
        embeddings = 2 * V * d
        qkv = 2 * 3 * d * d
        logits = 2 * T * d
        softmax = 3 * n_head * T
        values = 2 * T * d
        out_proj = 2 * d * d
        dense = 2 * 2 * d * f
        final_logits = 2 * d * V
        forward = embeddings + L * (qkv + logits + softmax + values + out_proj + dense) + final_logits
        return 3.0 * forward
    raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")


def all_conventions(**shape) -> dict[str, float]:
    return {c: gpt_flops_per_token(c, **shape) for c in CONVENTIONS}
