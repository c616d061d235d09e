"""Train stage: one run of the grid, from its settings to metrics and a summary.

The loop is deliberately plain: seeded random windows from the train shards,
AdamW with linear warmup then cosine decay to ``min_lr_ratio`` x lr, gradient
clipping, bf16 autocast on CUDA and fp32 on the CPU. Everything a fit or a
reviewer needs is recorded in ``summary.json``: the parameter counts, FLOPs
under every named convention, the device, the kernel backend, versions and
the seed.

A run whose loss becomes NaN or inf, or blows up past twice the loss of a
uniform prediction (2 ln V), stops with status ``diverged``; the job still
succeeds so that the rest of the sweep goes on.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from workflow import __version__, flops
from workflow.io import atomic_path, read_json, write_json_atomic
from workflow.model import GPT, GPTConfig
from workflow.shards import RandomWindows, load_split

APEX_INSTALL_HINT = (
    "NVIDIA Apex is not importable. Install it with conda-forge's 'nvidia-apex' package "
    "(envs/train.yaml, used by 'snakemake --sdm conda'), or build it from source with its CUDA "
    "extensions; or set train.kernels to 'torch' or 'auto'."
)


class TrainError(RuntimeError):
    pass


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainError("train.device is 'cuda' but no CUDA device is visible to this job")
    return torch.device(requested)


def resolve_kernels(requested: str, device: torch.device) -> str:
    """'apex' must import or the run fails; 'auto' uses apex only on CUDA where it imports."""
    if requested == "torch":
        return "torch"
    try:
        import apex  # noqa: F401
        apex_ok = True
    except ImportError:
        apex_ok = False
    if requested == "apex":
        if not apex_ok:
            raise TrainError(APEX_INSTALL_HINT)
        if device.type != "cuda":
            raise TrainError("train.kernels is 'apex' but the run is on the CPU; apex kernels need CUDA")
        return "apex"
    return "apex" if apex_ok and device.type == "cuda" else "torch"


def make_optimizer(model: GPT, optim: dict, device: torch.device, kernels: str) -> torch.optim.Optimizer:
    groups = model.optimizer_groups(optim["weight_decay"])
    betas = (optim["beta1"], optim["beta2"])
    if kernels == "apex":
        from apex.optimizers import FusedAdam

        return FusedAdam(groups, lr=optim["lr"], betas=betas, eps=optim["eps"], adam_w_mode=True)
    return torch.optim.AdamW(groups, lr=optim["lr"], betas=betas, eps=optim["eps"],
                             fused=device.type == "cuda")


def lr_at(step: int, total_steps: int, optim: dict) -> float:
    """Linear warmup over warmup_fraction of the steps, then cosine to min_lr_ratio x lr."""
    peak, floor = optim["lr"], optim["lr"] * optim["min_lr_ratio"]
    warmup = max(1, round(optim["warmup_fraction"] * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def versions() -> dict:
    import sentencepiece

    return {
        "pipeline": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "polars": pl.__version__,
        "sentencepiece": sentencepiece.__version__,
        "cuda": torch.version.cuda,
    }


def train_run(spec: dict, dataset_manifest: Path, out_dir: Path, model_path: Path) -> dict:
    run_id = spec["run_id"]
    device = resolve_device(spec["device"])
    kernels = resolve_kernels(spec["kernels"], device)
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    manifest = read_json(dataset_manifest)
    model_cfg = GPTConfig(**spec["model"])
    if manifest["vocab_size"] != model_cfg.vocab_size:
        raise TrainError(f"run {run_id}: model vocab_size={model_cfg.vocab_size} but the dataset's "
                         f"tokenizer has {manifest['vocab_size']} ids")
    train_tokens = manifest["splits"]["train"]["tokens"]
    if spec["tokens"] > train_tokens and not spec["allow_repeated_epochs"]:
        raise TrainError(
            f"run {run_id}: token budget {spec['tokens']} exceeds the {train_tokens} training tokens "
            f"of the dataset; set train.allow_repeated_epochs to train for more than one epoch"
        )
    windows = RandomWindows(load_split(dataset_manifest, "train"), model_cfg.seq_len, spec["seed"])

    model = GPT(model_cfg).to(device)
    counts = flops.gpt_parameter_counts(**model_cfg.to_dict())
    actual = sum(p.numel() for p in model.parameters())
    assert actual == counts.total, f"parameter count {actual} != analytic {counts.total}"
    per_token = flops.all_conventions(**model_cfg.to_dict())
    optim = spec["optim"]
    optimizer = make_optimizer(model, optim, device, kernels)

    batch_size = optim["batch_size"]
    batch_tokens = batch_size * model_cfg.seq_len
    total_steps = math.ceil(spec["tokens"] / batch_tokens)
    divergence_limit = 2.0 * math.log(model_cfg.vocab_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    rows: list[dict] = []
    status, interval_losses = "completed", []
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=run_id, unit="step", disable=None)
    for step in range(total_steps):
        lr = lr_at(step, total_steps, optim)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = (torch.from_numpy(a).to(device, non_blocking=True) for a in windows.batch(batch_size))
        with autocast:
            _, loss = model(x, y)
        loss_value = loss.item()
        if not math.isfinite(loss_value) or loss_value > divergence_limit:
            status = "diverged"
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        interval_losses.append(loss_value)
        bar.update(1)
        last = step == total_steps - 1 or status == "diverged"
        if (step + 1) % spec["log_every"] == 0 or last:
            tokens = (step + 1) * batch_tokens
            elapsed = time.perf_counter() - start
            rows.append({
                "step": step + 1,
                "tokens": tokens,
                "flops": tokens * per_token[spec["flop_convention"]],
                "train_loss": float(np.mean(interval_losses)),
                "lr": lr,
                "elapsed_s": elapsed,
                "tokens_per_s": tokens / elapsed,
            })
            interval_losses = []
            bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", tok_s=f"{rows[-1]['tokens_per_s']:.0f}")
            if bar.disable and (len(rows) % 10 == 0 or last):
                print(f"{run_id} step {step + 1}/{total_steps} loss {rows[-1]['train_loss']:.4f} "
                      f"{rows[-1]['tokens_per_s']:.0f} tok/s", flush=True)
        if status == "diverged":
            print(f"{run_id}: loss {loss_value} at step {step + 1} is not finite or above "
                  f"{divergence_limit:.2f}; run marked diverged", file=sys.stderr)
            break
    bar.close()
    elapsed = time.perf_counter() - start
    steps_done = rows[-1]["step"]
    tokens_trained = steps_done * batch_tokens

    with atomic_path(model_path) as tmp:
        torch.save({"model_config": model_cfg.to_dict(), "model": model.state_dict(),
                    "run_id": run_id, "status": status, "step": steps_done}, tmp)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "metrics.csv") as tmp:
        pl.DataFrame(rows).write_csv(tmp)
    summary = {
        "run_id": run_id,
        "status": status,
        "family": spec["family"],
        "grid": spec["grid"],
        "compute_budget": spec["compute_budget"],
        "model": model_cfg.to_dict(),
        "parameters": counts.to_dict(),
        "tokens_requested": spec["tokens"],
        "tokens_trained": tokens_trained,
        "steps": steps_done,
        "batch_size": batch_size,
        "batch_tokens": batch_tokens,
        "flops_per_token": per_token,
        "flops": {name: value * tokens_trained for name, value in per_token.items()},
        "flop_convention": spec["flop_convention"],
        "final_train_loss": rows[-1]["train_loss"],
        "seed": spec["seed"],
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "precision": "bf16-autocast" if device.type == "cuda" else "fp32",
        "kernels": kernels,
        "threads": spec["threads"],
        "elapsed_s": elapsed,
        "tokens_per_s": tokens_trained / elapsed,
        "dataset_train_tokens": train_tokens,
        "versions": versions(),
        "spec": spec,
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.train", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="the run's settings as JSON (from the grid)")
    parser.add_argument("--dataset", required=True, type=Path, help="dataset manifest.json")
    parser.add_argument("--out-dir", required=True, type=Path, help="results/runs/<run>: metrics, summary")
    parser.add_argument("--model", required=True, type=Path, help="where the final weights go (work dir)")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    try:
        summary = train_run(spec, args.dataset, args.out_dir, args.model)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{summary['run_id']}: {summary['status']}, train loss {summary['final_train_loss']:.4f}, "
          f"{summary['tokens_per_s']:.0f} tokens/s on {summary['device']} ({summary['kernels']} kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
