"""The settings of one run, as frozen dataclasses: what the grid makes and the trainer reads.

``workflow.config`` expands a study's config into one ``RunSpec`` per run; the
Train rule hands it to ``python -m workflow.train --spec`` as ``to_json()``.
That text is canonical (sorted keys, no spaces) and holds only what defines the
run's result; Snakemake reruns a run when it changes, so the field names and
nesting here are the JSON keys of every existing study: renaming or adding a
field retrains every run. How a run is executed (device, logging, checkpoint
interval, ...) is ``Execution``, passed beside it and never compared.

This module is data: it imports the standard library only, nothing of ``workflow``
(a test makes sure), and checks nothing beyond its types. Whether a ``ModelConfig``
can be built is its family's to say (``workflow.families.validate``), asked where
configs are made (``workflow.config``, ``workflow.tune``) and by
``workflow.model.build_model``. No torch, numpy or polars here: the Snakefile
imports this module (through ``workflow.config``) on every invocation, on login
nodes too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    """A model's full settings. ``n_head`` is kept for every family (an LSTM ignores it),
    so that the spec text of a run does not depend on its family. Not validated here:
    ``workflow.families.validate`` checks that the model can be built."""

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
class Execution:
    """How a run is computed and recorded. None of it changes what the run learns (up to
    floating-point rounding: another device, kernel or number of processes sums in another order),
    so none of it is in the text Snakemake compares: changing it never retrains a run."""

    device: str
    devices: int
    kernels: str
    compile: bool
    threads: int
    log_every: int
    checkpoint_every: int
    peak_flops: float | None
    allow_repeated_epochs: bool  # a guard: it decides whether a run may start, not what it learns
    # "none" (DDP: every device holds the whole model and its AdamW state), "full" (FSDP: each holds
    # 1/world of them), or "auto" (full where the memory plan says DDP does not fit the device).
    shard: str = "auto"
    nodes: int = 1  # Slurm nodes, each running `devices` processes

    @property
    def world_size(self) -> int:
        """Training processes of the run: one per device on each node."""
        return self.nodes * self.devices


@dataclass(frozen=True)
class RunSpec:
    """One run: what defines its result (model, data budget, optimiser, schedule, seed), and how it
    is executed (``execution``). The FLOP convention is the analysis's: the trainer records every one."""

    run_id: str
    grid: str  # "tokens" or "isoflop": which part of the config made the run
    compute_budget: float | None  # FLOPs, for IsoFLOP runs
    model: ModelConfig
    tokens: int
    branch_tokens: tuple[int, ...]  # the budgets of a WSD run's cooldown branches; (tokens,) otherwise
    seed: int
    optim: OptimizerSettings
    scaling: ScalingRules
    schedule: str
    wsd_decay_fraction: float
    data_order: str
    execution: Execution
    # The IsoFLOP budget (FLOPs) of each cooldown branch of a WSD run, None for a branch outside every
    # budget; () when no branch has one. Left out of the spec text while empty, so that adding it kept
    # the text (and the trained runs) of every study that has none.
    branch_compute_budgets: tuple[float | None, ...] = ()
    # The optimizer settings the tune stage set, each with where its value came from: "sweep" (this
    # shape's best sweep point) or "rule" (the power law in N fitted to the swept shapes). Left out of
    # the spec text while empty, like branch_compute_budgets.
    tuned: tuple[tuple[str, str], ...] = ()
    # train.warmup_tokens: the warmup in tokens, the same for every size and budget (``workflow.steps``);
    # None: warmup_fraction of the run's longest point. Left out of the spec text while None, like
    # branch_compute_budgets.
    warmup_tokens: int | None = None
    # The arm of a study with arms (``workflow.arms``) that the run belongs to; its run id starts with
    # it. Left out of the spec text while None, so that a study without arms keeps its runs.
    arm: str | None = None

    def result_dict(self) -> dict:
        """The settings that define the run's result, as plain JSON types."""
        spec = asdict(self)
        del spec["execution"]
        spec["branch_tokens"] = list(self.branch_tokens)
        if self.branch_compute_budgets:
            spec["branch_compute_budgets"] = list(self.branch_compute_budgets)
        else:
            del spec["branch_compute_budgets"]
        if self.tuned:
            spec["tuned"] = dict(self.tuned)
        else:
            del spec["tuned"]
        if self.warmup_tokens is None:
            del spec["warmup_tokens"]
        if self.arm is None:
            del spec["arm"]
        return spec

    def point_budget(self, tokens: int) -> float | None:
        """The IsoFLOP budget of the point trained to ``tokens`` (a branch, or the whole run)."""
        if self.branch_compute_budgets:
            return dict(zip(self.branch_tokens, self.branch_compute_budgets))[tokens]
        return self.compute_budget

    def to_json(self) -> str:
        """Canonical text of the result-defining settings: Snakemake reruns the run when it changes."""
        return json.dumps(self.result_dict(), sort_keys=True, separators=(",", ":"))

    def execution_json(self) -> str:
        return json.dumps(asdict(self.execution), sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict:
        """Everything, as plain JSON types: ``summary.json`` records this."""
        return {**self.result_dict(), "execution": asdict(self.execution)}

    @classmethod
    def from_dict(cls, spec: dict) -> RunSpec:
        return cls(
            **{
                **spec,
                "model": ModelConfig(**spec["model"]),
                "optim": OptimizerSettings(**spec["optim"]),
                "scaling": ScalingRules(**spec["scaling"]),
                "branch_tokens": tuple(spec["branch_tokens"]),
                "branch_compute_budgets": tuple(spec.get("branch_compute_budgets", ())),
                "tuned": tuple(sorted(spec.get("tuned", {}).items())),
                "execution": Execution(**spec["execution"]),
            }
        )

    @classmethod
    def from_json(cls, text: str, execution: str) -> RunSpec:
        """From the two texts the train rule passes: the result-defining settings and the execution."""
        return cls.from_dict({**json.loads(text), "execution": json.loads(execution)})
