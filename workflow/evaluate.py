"""Evaluate stage: validation loss, perplexity and bits-per-byte of a trained run.

Every run is scored on the same tokens: the validation split cut into
consecutive, non-overlapping windows of the run's sequence length. Bits per
byte converts the mean loss (nats per token) with the split's exact token and
UTF-8 byte counts, so runs with different tokenizers stay comparable.

With ``--yardstick`` (a study whose arms differ in tokenizer or corpus, ``workflow.arms``) the run is
scored instead on the base arm's validation text encoded with its own tokenizer
(``workflow.yardstick``): every token but the first is predicted (the last, shorter window too), and
bits per byte divide the summed loss by the bytes those tokens cover, the same bytes for every arm.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from workflow.files import DamagedOutput, move_aside, read_json, read_output_json, run_stage, write_json_atomic
from workflow.model import LanguageModel, build_model
from workflow.shards import data_identity, describe_identity, load_split, sequential_windows
from workflow.spec import ModelConfig
from workflow.train.parallel import resolve_device


class EvaluateError(RuntimeError):
    """Weights that cannot be scored for this study; the message names the run and the file."""


def load_weights(path: Path, summary: dict, data: dict, device: torch.device) -> dict:
    """A point's weights, checked to come from this run's settings on this study's data.

    A damaged file, or weights another study or other settings left in the work directory, stop the
    evaluation: the weights directory is moved aside, so that the next ``snakemake`` retrains the run
    instead of scoring the wrong model."""
    run_id = summary["run_id"]
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        recorded_spec, recorded_data = checkpoint.get("spec"), checkpoint.get("data")
    except Exception as e:  # a truncated or foreign file: torch raises many kinds
        raise EvaluateError(
            f"run {run_id}: the weights file {path} is damaged ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]})" + set_aside(path.parent)
        ) from None
    # Weights written before the pipeline recorded these carry neither: accepted as they are.
    if recorded_data is not None and recorded_data != data:
        raise EvaluateError(
            f"run {run_id}: the weights {path} were trained on other data ({describe_identity(recorded_data)}; "
            f"this study's: {describe_identity(data)})" + set_aside(path.parent)
        )
    if recorded_spec is not None and recorded_spec != summary["spec"]:
        raise EvaluateError(
            f"run {run_id}: the weights {path} were trained with other settings than its summary.json records"
            + set_aside(path.parent)
        )
    return checkpoint


def set_aside(weights_dir: Path) -> str:
    """Move a run's weights directory to WEIGHTS.set-aside; the sentence that says so and what to do."""
    aside = move_aside(weights_dir, "set-aside")
    return f"; moved the weights directory aside to {aside}: run snakemake again to retrain the run"


def tail_windows(shards: list[np.ndarray], seq_len: int):
    """The (input, target) window of each shard's tokens after its last whole window, where it
    predicts a token: with ``sequential_windows``, every token but each shard's first is scored."""
    for shard in shards:
        start = (len(shard) - 1) // seq_len * seq_len
        if len(shard) - start >= 2:
            chunk = np.asarray(shard[start:], dtype=np.int64)
            yield chunk[:-1], chunk[1:]


@torch.no_grad()
def validation_loss(
    model: LanguageModel, shards: list[np.ndarray], batch_size: int, device: torch.device, tails: bool = False
) -> tuple[float, int]:
    """Mean cross-entropy in nats per predicted token, and the number of tokens scored; with ``tails``
    the shorter window at the end of each shard is scored too."""
    model.eval()
    total, count, batch = 0.0, 0, []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def flush():
        nonlocal total, count
        x = torch.from_numpy(np.stack([b[0] for b in batch])).to(device)
        y = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)
        with autocast:
            _, loss = model(x, y)
        total += loss.item() * y.numel()
        count += y.numel()
        batch.clear()

    for window in sequential_windows(shards, model.cfg.seq_len):
        batch.append(window)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    for window in tail_windows(shards, model.cfg.seq_len) if tails else ():
        batch.append(window)
        flush()
    if count == 0:
        raise ValueError(f"the validation split holds no window of seq_len={model.cfg.seq_len} tokens")
    return total / count, count


def read_yardstick(path: Path, dataset_manifest: Path) -> dict:
    """The yardstick's manifest, checked to hold the token ids of the run's own tokenizer."""
    yardstick = read_json(path)
    if (
        yardstick.get("tokenizer_sha256") != read_json(dataset_manifest)["tokenizer_sha256"]
        or "yardstick" not in yardstick
    ):
        raise EvaluateError(f"the yardstick {path} is not encoded with the tokenizer of {dataset_manifest}")
    return yardstick


def evaluate_run(
    weights_dir: Path,
    summary_path: Path,
    dataset_manifest: Path,
    *,
    batch_size: int,
    device: str,
    threads: int,
    yardstick: Path | None = None,
) -> dict:
    """Score every point of a run (one for a cosine run, one per cooldown branch under WSD), on its
    validation split or on ``yardstick``'s text (``workflow.yardstick``)."""
    summary = read_output_json(summary_path, ("run_id", "status", "points", "spec"))
    scored_manifest = dataset_manifest if yardstick is None else yardstick
    common = read_yardstick(yardstick, dataset_manifest)["yardstick"] if yardstick is not None else None
    validation = read_json(scored_manifest)["splits"]["validation"]
    bytes_per_token = validation["bytes"] / validation["tokens"]
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    data = data_identity(dataset_manifest)
    shards = None
    points = []
    for point in summary["points"]:
        result = {"point_id": point["point_id"], "status": point["status"], "tokens": point["tokens"]}
        if point["status"] != "completed":
            # A diverged run has no meaningful loss; the fit leaves it out.
            result.update(val_loss=None, perplexity=None, bits_per_byte=None, eval_tokens=0)
        else:
            checkpoint = load_weights(weights_dir / point["weights"], summary, data, dev)
            model = build_model(ModelConfig(**checkpoint["model_config"])).to(dev)
            model.load_state_dict(checkpoint["model"])
            shards = shards if shards is not None else load_split(scored_manifest, "validation")
            loss, scored = validation_loss(model, shards, batch_size, dev, tails=common is not None)
            if common is None:
                bits_per_byte = loss / math.log(2) / bytes_per_token
            else:  # the summed loss over the bytes its tokens cover: the same bytes for every arm
                bits_per_byte = loss * scored / math.log(2) / (common["bytes"] - common["unscored_bytes"])
            result.update(
                val_loss=loss,
                perplexity=math.exp(loss),
                bits_per_byte=bits_per_byte,
                eval_tokens=scored,
            )
        points.append(result)
    return {
        "run_id": summary["run_id"],
        "status": summary["status"],
        "device": dev.type,
        "validation_tokens": validation["tokens"],
        "validation_bytes": validation["bytes"],
        "validation_documents": validation["documents"],
        "bytes_per_token": bytes_per_token,
        # Recorded only when scored on a yardstick, so that other studies' eval.json keep their form.
        **({"yardstick": common} if common is not None else {}),
        "points": points,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, type=Path, help="the run's weights directory")
    parser.add_argument("--summary", required=True, type=Path)
    parser.add_argument("--dataset", required=True, type=Path, help="dataset manifest.json")
    parser.add_argument("--batch-size", default=64, type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", default=1, type=int)
    parser.add_argument(
        "--yardstick", type=Path, help="score the base arm's validation text (a workflow.yardstick manifest.json)"
    )
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        result = evaluate_run(
            args.weights,
            args.summary,
            args.dataset,
            batch_size=args.batch_size,
            device=args.device,
            threads=args.threads,
            yardstick=args.yardstick,
        )
    except (EvaluateError, DamagedOutput) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_json_atomic(args.out, result)
    for point in result["points"]:
        if point["val_loss"] is None:
            print(f"{point['point_id']}: {point['status']}, not evaluated")
        else:
            print(
                f"{point['point_id']}: validation loss {point['val_loss']:.4f}, "
                f"{point['bits_per_byte']:.4f} bits/byte over {point['eval_tokens']} tokens"
            )
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "evaluate"))
