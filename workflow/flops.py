"""Parameter counts and FLOPs per token, under named conventions.

Scaling-law papers disagree on what "N" and "C" count; a fit is only
comparable to a published one under the same convention. Every count is exact
for ``workflow.model`` (norm gains and biases included) and computed from the
shape alone, so the IsoFLOP grid can size runs before training. The counts of
each model family live in its module under ``workflow.families``; this module
names the conventions and dispatches to the family.

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

The LSTM baseline is counted under the same rules (see ``workflow.families.lstm``).
"""

from __future__ import annotations

from workflow.families import get_family
from workflow.spec import ModelConfig, ParameterCounts

CONVENTIONS = ("kaplan", "6N", "palm", "chinchilla")
PARAMETER_COUNTS = ("non_embedding", "total")


def parameter_counts(**model_settings) -> ParameterCounts:
    """Counts for a model given as ``ModelConfig`` fields (defaults as there)."""
    cfg = ModelConfig(**model_settings)
    return get_family(cfg.family).parameter_counts(cfg)


def flops_per_token(convention: str, **model_settings) -> float:
    """Training FLOPs per token (forward and backward) for a model given as ``ModelConfig`` fields."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    cfg = ModelConfig(**model_settings)
    return get_family(cfg.family).flops_per_token(convention, cfg)


def all_conventions(**model_settings) -> dict[str, float]:
    return {c: flops_per_token(c, **model_settings) for c in CONVENTIONS}
