"""train.scaling: the learning rate and batch of a run as power laws in its non-embedding parameters.

    lr           = lr x (N / reference_params)^lr_exponent
    batch_tokens = batch_tokens x (N / reference_params)^batch_exponent, rounded to whole micro-batches

An exponent of 0 leaves its setting as configured. ``workflow.config`` applies the rules to every
run's ``OptimizerSettings`` and records them in the spec (``ScalingRules``); the values that come
out are part of the spec text, so this arithmetic must not change.

Imports ``workflow.spec`` and ``workflow.families`` only: no torch, numpy or polars.
"""

from __future__ import annotations

from workflow.families import parameter_counts
from workflow.spec import ModelConfig, ScalingRules


def scaled_hyperparameters(
    rules: ScalingRules, model: ModelConfig, lr: float, batch_tokens: int, micro_batch_size: int
) -> tuple[float, int]:
    """(lr, batch_tokens) of ``model`` under ``rules``, from the configured ``lr`` and ``batch_tokens``:
    lr x (N / reference_params)^lr_exponent, and batch_tokens x (N / reference_params)^batch_exponent
    rounded to a whole number of micro-batches of ``micro_batch_size`` x ``model.seq_len`` tokens (at
    least one). Exponents of 0 leave both as set."""
    ratio = parameter_counts(model).non_embedding / rules.reference_params
    scaled_lr = lr * ratio**rules.lr_exponent if rules.lr_exponent else lr
    batch = batch_tokens
    if rules.batch_exponent:
        micro = micro_batch_size * model.seq_len
        batch = max(1, round(batch * ratio**rules.batch_exponent / micro)) * micro
    return scaled_lr, batch
