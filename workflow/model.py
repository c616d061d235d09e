"""The models trained by the grid, in one readable file.

``GPT``: pre-norm transformer blocks with causal self-attention through
``torch.nn.functional.scaled_dot_product_attention`` (the flash kernels on
CUDA). Settings: LayerNorm or RMSNorm, learned absolute or rotary positions,
tied or untied embeddings, bias on or off. Defaults follow current practice:
RMSNorm, rotary, no bias, tied embeddings.

``LSTM``: the recurrent baseline Kaplan et al. 2020 (Figure 7) compared
transformers against, with the same embedding and head, so a grid can put both
families side by side.

Settings (``ModelConfig``) live in ``workflow.spec``; parameter and FLOP
counts, validation and run-id labels in the family modules of
``workflow.families``: computed from the shape alone, so the numbers a fit
uses exist before any model does, and checked against these modules by the
tests. Each family's class is one line of ``MODELS`` here (a test checks that
every family has one); ``build_model`` validates the settings through the family
and builds the class.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from workflow import families
from workflow.spec import ModelConfig


def norm_factory(cfg: ModelConfig, kernels: str):
    """(constructor of one norm layer, name of its kernel) for the chosen backend.

    apex's FusedLayerNorm always carries a bias, so a bias-free LayerNorm stays
    on torch's kernel even under apex: the parameter count must not change with
    the backend.
    """
    d = cfg.d_model
    if kernels == "apex" and cfg.norm == "rmsnorm":
        from apex.normalization import FusedRMSNorm

        return (lambda: FusedRMSNorm(d)), "apex.FusedRMSNorm"
    if kernels == "apex" and cfg.bias:
        from apex.normalization import FusedLayerNorm

        return (lambda: FusedLayerNorm(d)), "apex.FusedLayerNorm"
    if cfg.norm == "rmsnorm":
        return (lambda: nn.RMSNorm(d)), "torch.RMSNorm"
    return (lambda: nn.LayerNorm(d, bias=cfg.bias)), "torch.LayerNorm"


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021): rotate query/key channel pairs by position."""

    def __init__(self, head_dim: int, seq_len: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        # Buffers, not parameters: nothing to learn, and not saved (recomputed exactly).
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, heads, T, head_dim)
        T = x.shape[-2]
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        # One matmul for queries, keys and values: fewer, larger kernels.
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.rotary = Rotary(cfg.d_model // cfg.n_head, cfg.seq_len) if cfg.positions == "rotary" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim), the layout SDPA expects.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=cfg.bias)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm: normalise the input of each branch, keep the residual stream clean."""

    def __init__(self, cfg: ModelConfig, make_norm):
        super().__init__()
        self.norm_attn = make_norm()
        self.attn = CausalSelfAttention(cfg)
        self.norm_mlp = make_norm()
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x))
        return x + self.mlp(self.norm_mlp(x))


class LanguageModel(nn.Module):
    """What both families share: token embedding, head (tied or not), loss, optimizer groups."""

    def __init__(self, cfg: ModelConfig, kernels: str = "torch"):
        super().__init__()
        self.cfg = cfg
        self.make_norm, self.norm_kernel = norm_factory(cfg, kernels)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.token_embedding.weight
        # Swapped by workflow.train for apex's fused cross-entropy where built.
        self.cross_entropy = F.cross_entropy

    def logits_and_loss(self, x: torch.Tensor, targets: torch.Tensor | None):
        logits = self.head(x)
        if targets is None:
            return logits, None
        # Loss in float32 whatever the autocast dtype: it is what we report.
        loss = self.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def shard_units(self) -> list[nn.Module]:
        """The submodules that a fully sharded run gathers one at a time (workflow.train); what is left,
        embedding and head among it, is the root's unit. A family without repeated blocks has none."""
        return []

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Decay matrices (weights, embeddings), not gains and biases."""
        params = {id(p): p for p in self.parameters()}.values()  # tied weights once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


class GPT(LanguageModel):
    sequence_kernel = "torch.scaled_dot_product_attention"  # what mixes positions, for the run's record

    def __init__(self, cfg: ModelConfig, kernels: str = "torch"):
        super().__init__(cfg, kernels)
        self.position_embedding = nn.Embedding(cfg.seq_len, cfg.d_model) if cfg.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, self.make_norm) for _ in range(cfg.n_layer))
        self.norm_final = self.make_norm()
        self.apply(self._init_weights)
        # GPT-2's residual scaling: each block adds two branches to the
        # residual stream, so shrink their output projections with depth to
        # keep the stream's variance independent of n_layer.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def shard_units(self) -> list[nn.Module]:
        return list(self.blocks)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        T = idx.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds seq_len={self.cfg.seq_len}")
        x = self.token_embedding(idx)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.logits_and_loss(self.norm_final(x), targets)


class LSTM(LanguageModel):
    """Stacked LSTM language model (cuDNN kernels on CUDA); no positions needed."""

    sequence_kernel = "torch.LSTM"

    def __init__(self, cfg: ModelConfig, kernels: str = "torch"):
        super().__init__(cfg, kernels)
        self.norm_kernel = "none"
        self.lstm = nn.LSTM(cfg.d_model, cfg.d_model, num_layers=cfg.n_layer, batch_first=True)
        nn.init.normal_(self.token_embedding.weight, mean=0.0, std=0.02)
        if not cfg.tie_embeddings:
            nn.init.normal_(self.head.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x, _ = self.lstm(self.token_embedding(idx))
        return self.logits_and_loss(x, targets)


# The torch module of each family of workflow.families.FAMILIES, by its name.
MODELS: dict[str, type[LanguageModel]] = {
    "gpt": GPT,
    "lstm": LSTM,
}


def build_model(cfg: ModelConfig, kernels: str = "torch") -> LanguageModel:
    """The model of ``cfg``; ValueError for settings its family refuses (``workflow.families.validate``)."""
    families.validate(cfg)
    if cfg.family not in MODELS:
        raise ValueError(f"model family {cfg.family!r} has no model class in workflow.model.MODELS")
    return MODELS[cfg.family](cfg, kernels)
