"""Model families: everything the pipeline knows about a kind of model, one module each.

A family module (``gpt.py``, ``lstm.py``) gives:

``NAME``                    the value of ``family`` in configs and specs;
``SHAPE_KEYS``              the keys a grid shape must give;
``SHARDED_PER_LAYER``       whether a fully sharded run gathers one layer at a time (the model's
                            ``shard_units``) or the whole model (the memory plan);
``label(cfg)``              the run-id prefix, e.g. ``L2-d64-h4``;
``validate(cfg)``           raises ValueError for settings the model cannot be built with;
``parameter_counts(cfg)``   exact counts for the model (a ``ParameterCounts``);
``flops_per_token(convention, cfg)``
                            training FLOPs per token under each convention of ``workflow.flops``;
``saved_activations_per_token(cfg)``
                            elements the forward pass keeps for the backward pass per token (the
                            memory plan, ``workflow.plan``);
``model_class()``           the torch module in ``workflow.model``, imported only when called.

Importing a family imports no torch: the config check runs without it. A new
family is a new module here, one line in ``FAMILIES`` and its nn.Module in
``workflow.model``.
"""

from __future__ import annotations

from types import ModuleType

from workflow.families import gpt, lstm

FAMILIES: dict[str, ModuleType] = {
    gpt.NAME: gpt,
    lstm.NAME: lstm,
}


def get_family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
