"""Which kernels a run uses: apex's fused ones or torch's, the optimizer, and the GPU's peak for MFU.

``train.kernels``: ``torch``; ``apex`` (must import, CUDA only); ``auto`` (apex on CUDA where it
imports). Each component's choice is recorded in ``summary.json`` (``kernel_components``).
"""

from __future__ import annotations

import torch

from workflow.train.errors import TrainError

APEX_INSTALL_HINT = (
    "NVIDIA Apex is not importable. Install it with conda-forge's 'nvidia-apex' package "
    "(envs/train.yaml, used by 'snakemake --sdm conda'), or build it from source with its CUDA "
    "extensions (--cpp_ext --cuda_ext); or set train.kernels to 'torch' or 'auto'."
)
# Dense bf16 peak FLOP/s for MFU, matched against torch.cuda.get_device_name().
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}


def apex_available() -> bool:
    try:
        import apex  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_kernels(requested: str, device: torch.device) -> str:
    """'apex' must import or the run fails; 'auto' uses apex only on CUDA where it imports."""
    if requested == "torch":
        return "torch"
    if requested == "apex":
        if not apex_available():
            raise TrainError(APEX_INSTALL_HINT)
        if device.type != "cuda":
            raise TrainError("train.kernels is 'apex' but the run is on the CPU; apex kernels need CUDA")
        return "apex"
    return "apex" if device.type == "cuda" and apex_available() else "torch"


def make_optimizer(
    model: torch.nn.Module,
    device: torch.device,
    kernels: str,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
):
    """AdamW over the model's groups (decayed and not): (optimizer, the kernel's name)."""
    groups = model.optimizer_groups(weight_decay)
    if kernels == "apex":
        from apex.optimizers import FusedAdam

        return FusedAdam(groups, lr=lr, betas=betas, eps=eps, adam_w_mode=True), "apex.FusedAdam"
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)
    return optimizer, "torch.AdamW(fused)" if fused else "torch.AdamW"


def apex_cross_entropy():
    """apex's fused softmax cross-entropy, or None where that extension was not built."""
    try:
        from apex.contrib.xentropy import SoftmaxCrossEntropyLoss
    except ImportError:
        return None

    def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # The kernel zeroes the loss wherever the label equals padding_idx
        # (default 0, a real token id here): -1 never occurs as a label.
        losses = SoftmaxCrossEntropyLoss.apply(logits, targets, 0.0, -1, False)
        return losses.float().mean()

    return cross_entropy


def peak_flops_per_s(device: torch.device, override: float | None) -> float | None:
    """``train.peak_flops`` where set, else the GPU's dense bf16 peak where known (None on the CPU)."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_FLOPS.items():
        if all(part in name for part in key.split()):
            return value
    return None
