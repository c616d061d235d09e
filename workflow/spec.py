"""The settings of one run, as frozen dataclasses: what the grid makes and the trainer reads.

``workflow.config`` expands a study's config into one ``RunSpec`` per run; the
Train rule hands it to ``python -m workflow.train --spec`` as ``to_json()``.
That text is canonical (sorted keys, no spaces) and Snakemake reruns a run
when it changes, so the field names and nesting here are the JSON keys of
every existing study: renaming or adding a field retrains every run.

No torch, numpy or polars here: the Snakefile imports this module (through
``workflow.config``) on every invocation, on login nodes too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """A model's full settings. ``n_head`` is kept for every family (an LSTM ignores it),
    so that the spec text of a run does not depend on its family."""

    vocab_size: int
    seq_len: int
    n_layer: int
    d_model: int
    n_head: int = 1
    family: str = "gpt"
    mlp_ratio: int = 4
    norm: str = "rmsnorm"
    positions: str = "rotary"
    tie_embeddings: bool = True
    bias: bool = False

    def __post_init__(self):
        # Imported here: each family module imports this one for its types.
        from workflow.families import get_family

        get_family(self.family).validate(self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    embedding: int  # input lookups: token embedding, and learned positions if any
    non_embedding: int  # Kaplan's N: everything but the embeddings and the head
    head: int  # output projection, whether tied or not

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW, the learning-rate schedule's shape and the batch (after the scaling rules)."""

    lr: float
    min_lr_ratio: float
    warmup_fraction: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float
    batch_tokens: int
    micro_batch_size: int


@dataclass(frozen=True)
class ScalingRules:
    """train.scaling as configured; already applied to ``OptimizerSettings``, kept as a record."""

    reference_params: float
    lr_exponent: float
    batch_exponent: float


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    grid: str  # "tokens" or "isoflop": which part of the config made the run
    compute_budget: float | None  # FLOPs, for IsoFLOP runs
    model: ModelConfig
    tokens: int
    branch_tokens: tuple[int, ...]  # the budgets of a WSD run's cooldown branches; (tokens,) otherwise
    seed: int
    optim: OptimizerSettings
    scaling: ScalingRules
    device: str
    devices: int
    kernels: str
    threads: int
    log_every: int
    allow_repeated_epochs: bool
    schedule: str
    wsd_decay_fraction: float
    data_order: str
    compile: bool
    checkpoint_every: int
    peak_flops: float | None
    flop_convention: str

    def to_dict(self) -> dict:
        """Plain JSON types; ``summary.json`` and checkpoints record this dict."""
        spec = asdict(self)
        spec["branch_tokens"] = list(self.branch_tokens)
        return spec

    def to_json(self) -> str:
        """Canonical text of the run's settings: Snakemake reruns the run when it changes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, spec: dict) -> RunSpec:
        return cls(
            **{
                **spec,
                "model": ModelConfig(**spec["model"]),
                "optim": OptimizerSettings(**spec["optim"]),
                "scaling": ScalingRules(**spec["scaling"]),
                "branch_tokens": tuple(spec["branch_tokens"]),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls.from_dict(json.loads(text))
