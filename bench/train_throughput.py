"""Training throughput of the pipeline's model and optimizer, kernel settings side by side.

For each shape and each kernel setting, one child process builds the model with
``workflow.model.build_model``, its optimizer with ``workflow.train.kernels.make_optimizer``,
warms up, then times a fixed number of optimizer steps on random tokens and
reports tokens/s, MFU (PaLM FLOP convention, as nanoGPT counts it) and peak
memory. Settings:

- ``torch-eager``: torch kernels, no compilation;
- ``torch-compile``: torch kernels (fused AdamW on CUDA), ``torch.compile``;
- ``torch-compile-cudagraphs``: ``torch.compile(mode="reduce-overhead")`` (CUDA only);
- ``apex``: FusedAdam, fused norms and xentropy (CUDA with apex only).

Settings that cannot run on this machine are reported as skipped, with why.

    python bench/train_throughput.py --preset ci        # seconds, any CPU
    python bench/train_throughput.py --preset cpu       # CPU figures of docs/benchmarks.md
    python bench/train_throughput.py --preset gpu       # 124M and tiny shapes on a GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow import families  # noqa: E402
from workflow.model import build_model  # noqa: E402
from workflow.spec import ModelConfig  # noqa: E402
from workflow.train.kernels import apex_available, apex_cross_entropy, make_optimizer, peak_flops_per_s  # noqa: E402
from workflow.train.record import cpu_name  # noqa: E402

SHAPES = {
    "gpt2-124M": dict(n_layer=12, d_model=768, n_head=12, seq_len=1024, vocab_size=50304),
    "tiny-4x256": dict(n_layer=4, d_model=256, n_head=4, seq_len=256, vocab_size=512),
    "ci-2x64": dict(n_layer=2, d_model=64, n_head=2, seq_len=64, vocab_size=512),
}
PRESETS = {
    # shape -> (sequences per step, timed steps)
    "ci": {"ci-2x64": (8, 5)},
    "cpu": {"tiny-4x256": (8, 20), "gpt2-124M": (1, 3)},
    "gpu": {"tiny-4x256": (64, 200), "gpt2-124M": (16, 50)},
}
SETTINGS = ("torch-eager", "torch-compile", "torch-compile-cudagraphs", "apex")
OPTIM = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}


def skip_reason(setting: str, device: torch.device) -> str | None:
    if setting == "torch-compile-cudagraphs" and device.type != "cuda":
        return "CUDA graphs need CUDA"
    if setting == "apex" and device.type != "cuda":
        return "apex kernels need CUDA"
    if setting == "apex" and not apex_available():
        return "apex is not installed"
    return None


def measure(shape_name: str, setting: str, batch: int, steps: int, warmup: int) -> dict:
    """One setting on one shape, in this process."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = ModelConfig(**SHAPES[shape_name])
    kernels = "apex" if setting == "apex" else "torch"
    model = build_model(cfg, kernels=kernels).to(device)
    optimizer, optimizer_kernel = make_optimizer(model, device, kernels, **OPTIM)
    if kernels == "apex" and (xentropy := apex_cross_entropy()) is not None:
        model.cross_entropy = xentropy
    forward = model
    if setting == "torch-compile":
        forward = torch.compile(model)
    elif setting == "torch-compile-cudagraphs":
        forward = torch.compile(model, mode="reduce-overhead")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    x, y = torch.randint(0, cfg.vocab_size, (2, batch, cfg.seq_len), device=device)

    def step():
        with autocast:
            _, loss = forward(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    compile_start = time.perf_counter()
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - compile_start
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()  # waits for the device
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    tokens_per_s = steps * batch * cfg.seq_len / elapsed
    per_token = families.flops_per_token("palm", cfg)
    peak = peak_flops_per_s(device, None)
    return {
        "shape": shape_name,
        "setting": setting,
        "params_total": families.parameter_counts(cfg).total,
        "batch_sequences": batch,
        "seq_len": cfg.seq_len,
        "steps": steps,
        "tokens_per_s": tokens_per_s,
        "mfu": tokens_per_s * per_token / peak if peak else None,
        "achieved_tflops": tokens_per_s * per_token / 1e12,
        "warmup_s": warmup_s,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "memory_kind": "CUDA max allocated" if device.type == "cuda" else "process peak RSS",
        "optimizer": optimizer_kernel,
        "norm": model.norm_kernel,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
    }


def run_all(preset: str, settings: list[str], warmup: int) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for shape_name, (batch, steps) in PRESETS[preset].items():
        for setting in settings:
            reason = skip_reason(setting, device)
            if reason:
                results.append({"shape": shape_name, "setting": setting, "skipped": reason})
                continue
            # A child process per setting: separate peak memory, no compiled state shared.
            child = subprocess.run(
                [sys.executable, __file__, "--child", shape_name, setting, str(batch), str(steps), str(warmup)],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if child.returncode != 0:
                results.append(
                    {
                        "shape": shape_name,
                        "setting": setting,
                        "skipped": f"failed: {child.stderr.strip().splitlines()[-1:]}",
                    }
                )
                continue
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(f"{shape_name:>11} {setting:<25} {results[-1]['tokens_per_s']:>12.0f} tok/s", file=sys.stderr)
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| shape | setting | tokens/s | vs eager | MFU | TFLOP/s | peak memory (MB) | warm-up (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    eager = {r["shape"]: r["tokens_per_s"] for r in results if r["setting"] == "torch-eager" and "skipped" not in r}
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['shape']} | {r['setting']} | skipped: {r['skipped']} | | | | | |")
            continue
        ratio = r["tokens_per_s"] / eager[r["shape"]] if r["shape"] in eager else float("nan")
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (no peak known)"
        lines.append(
            f"| {r['shape']} | {r['setting']} | {r['tokens_per_s']:,.0f} | {ratio:.2f}x | {mfu} | "
            f"{r['achieved_tflops']:.3f} | {r['peak_memory_mb']:,.0f} | {r['warmup_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        shape, setting, batch, steps, warmup = argv[1:6]
        print(json.dumps(measure(shape, setting, int(batch), int(steps), int(warmup))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ci")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = run_all(args.preset, args.settings, args.warmup)
    header = (
        f"device: {next((r['device'] for r in results if 'device' in r), 'n/a')}; "
        f"torch {torch.__version__}; date {datetime.date.today()}; "
        f"command: python bench/train_throughput.py --preset {args.preset}"
    )
    print(header)
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps({"header": header, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
