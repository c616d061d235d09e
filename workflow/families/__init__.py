"""Model families: everything the pipeline knows about a kind of model, one module each, and the
parameter counts and FLOPs per token of any model, under named conventions.

A family module (``gpt.py``, ``lstm.py``) gives:

``NAME``                    the value of ``family`` in configs and specs;
``SHAPE_KEYS``              the keys a grid shape must give;
``SHARDED_PER_LAYER``       whether a fully sharded run gathers one layer at a time (the model's
                            ``shard_units``) or the whole model (the memory model);
``label(cfg)``              the run-id prefix, e.g. ``L2-d64-h4``;
``validate(cfg)``           raises ValueError for settings the model cannot be built with;
``parameter_counts(cfg)``   exact counts for the model (a ``ParameterCounts``);
``flops_per_token(convention, cfg)``
                            training FLOPs per token under each convention of ``CONVENTIONS``;
``saved_activations_per_token(cfg)``
                            elements the forward pass keeps for the backward pass per token (the
                            memory model, ``workflow.memory``).

This package imports only ``workflow.spec`` and its own modules: no torch, so the config check runs
without it, and no ``workflow.model``, which holds the torch module of each family (its ``MODELS``).
A new family is a new module here, one line in ``FAMILIES``, and its nn.Module plus one line in
``workflow.model.MODELS``.

Parameter counts and FLOPs per token
------------------------------------

Scaling-law papers disagree on what "N" and "C" count; a fit is only comparable to a published one
under the same convention. Every count is exact for ``workflow.model`` (norm gains and biases
included) and computed from the shape alone, so the IsoFLOP grid can size runs before training.
``parameter_counts``, ``flops_per_token`` and ``all_conventions`` below take a ``ModelConfig`` and
dispatch to its family.

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

from types import ModuleType

from workflow.families import gpt, lstm
from workflow.spec import ModelConfig, ParameterCounts

CONVENTIONS = ("kaplan", "6N", "palm", "chinchilla")
# What N counts in a fit: Kaplan's non-embedding parameters; those with the output head (the
# parameters the 6N convention multiplies, Porian et al. 2024); every parameter.
PARAMETER_COUNTS = ("non_embedding", "with_head", "total")
# The one count N for which a convention's C is exactly 6 N D: the fit's law, its allocation and its
# compute axis must share it (docs/methods.md, "One compute axis"). palm and chinchilla add terms
# that are not 6 x any count, so no count pairs with them.
MATCHING_COUNT = {"kaplan": "non_embedding", "6N": "with_head"}

FAMILIES: dict[str, ModuleType] = {
    gpt.NAME: gpt,
    lstm.NAME: lstm,
}


def get_family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def validate(cfg: ModelConfig) -> None:
    """Raise ValueError for settings the model cannot be built with: an unknown family, or what the
    family refuses (e.g. n_head not dividing d_model)."""
    get_family(cfg.family).validate(cfg)


def parameter_counts(cfg: ModelConfig) -> ParameterCounts:
    """Exact parameter counts of the model."""
    return get_family(cfg.family).parameter_counts(cfg)


def parameter_count(counts: ParameterCounts, name: str) -> int:
    """One of ``PARAMETER_COUNTS`` from a model's counts."""
    if name == "with_head":
        return counts.non_embedding + counts.head
    if name in ("non_embedding", "total"):
        return getattr(counts, name)
    raise ValueError(f"unknown parameter count {name!r}; choose one of {', '.join(PARAMETER_COUNTS)}")


def axis_mismatch(convention: str, count: str) -> str | None:
    """Why a FLOP convention and a parameter count do not form one compute axis (C = 6 N D), or None."""
    if MATCHING_COUNT.get(convention) == count:
        return None
    pairs = " or ".join(f"{c!r} with {n!r}" for c, n in MATCHING_COUNT.items())
    if convention not in MATCHING_COUNT:
        why = f"'{convention}' FLOPs are not 6 x any parameter count"
    else:
        why = f"'{convention}' FLOPs are 6 x the {MATCHING_COUNT[convention]!r} count, not 6 x {count!r}"
    return f"{why}, so the law's N and the compute axis would disagree; use {pairs}"


def flops_per_token(convention: str, cfg: ModelConfig) -> float:
    """Training FLOPs per token (forward and backward) under ``convention``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return get_family(cfg.family).flops_per_token(convention, cfg)


def all_conventions(cfg: ModelConfig) -> dict[str, float]:
    """Training FLOPs per token under every convention, keyed by its name."""
    return {c: flops_per_token(c, cfg) for c in CONVENTIONS}
