"""One run of the grid, from its settings to metrics, weights and a summary.

The loop, in order: seeded batches of windows from the train shards (random or sequential,
addressed by step so a resumed run reads exactly what it would have), gradient accumulation up to
the global batch, gradient clipping, AdamW, and a learning-rate schedule (``schedule.py``): cosine,
or warmup-stable-decay with a cooldown branch forked at each token budget, so one run yields one
(N, D) point per budget (``docs/stages.md``, "train").

The trainer composes its parts: ``parallel`` (device, process group, DDP or FSDP), ``kernels``
(apex or torch, the optimizer), ``checkpoint`` (the ``Checkpointer``), ``record`` (progress, metrics
rows, versions) and ``prefetch``. It checkpoints every ``checkpoint_every`` steps and when Slurm
sends SIGTERM or SIGUSR1, then exits; started again, it resumes and, on the CPU, reproduces the
uninterrupted run bit for bit.

A loss that becomes NaN or inf, or blows up past twice that of a uniform prediction (2 ln V), stops
the run with status ``diverged``; the job still succeeds so that the rest of the sweep goes on.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from tqdm import tqdm

from workflow import families
from workflow.files import atomic_path, read_json, write_json_atomic
from workflow.model import build_model
from workflow.names import point_id
from workflow.shards import StepBatches, data_identity, load_split
from workflow.spec import RunSpec
from workflow.steps import wsd_fork
from workflow.train import kernels, parallel
from workflow.train.checkpoint import Checkpointer
from workflow.train.errors import StopForSignal, TrainError
from workflow.train.prefetch import Prefetcher
from workflow.train.record import Progress, device_name, execution_record, metrics_row, versions, write_metrics
from workflow.train.schedule import lr_multiplier, plan_steps, wsd_multiplier

# Slurm's warning before a time limit or preemption (TERM, USR1), and Ctrl-C in a terminal (INT).
CHECKPOINT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def training_tokens(spec: RunSpec, manifest: dict) -> int:
    """The dataset's training tokens, once its vocabulary and size suit the run."""
    if manifest["vocab_size"] != spec.model.vocab_size:
        raise TrainError(
            f"run {spec.run_id}: model vocab_size={spec.model.vocab_size} but the dataset's "
            f"tokenizer has {manifest['vocab_size']} ids"
        )
    train_tokens = manifest["splits"]["train"]["tokens"]
    largest = max(spec.branch_tokens) if spec.schedule == "wsd" else spec.tokens
    if largest > train_tokens and not spec.execution.allow_repeated_epochs:
        raise TrainError(
            f"run {spec.run_id}: token budget {largest} exceeds the {train_tokens} training tokens "
            f"of the dataset; set train.allow_repeated_epochs to train for more than one epoch"
        )
    return train_tokens


def check_micro_batches_divide(spec: RunSpec, world: int) -> None:
    """Each of the run's ``world`` processes takes an equal share of every step's micro-batches.
    ``python -m workflow.train`` checks this before it starts torchrun: checked only in the processes,
    every rank refused and torchrun named whichever one it saw fail first, which depends on the load."""
    accumulation = plan_steps(spec, world, 0).accumulation
    if accumulation % world:
        raise TrainError(
            f"run {spec.run_id}: {accumulation} micro-batches per step (batch_tokens "
            f"{spec.optim.batch_tokens} / (micro_batch_size {spec.optim.micro_batch_size} x seq_len "
            f"{spec.model.seq_len})) do not divide among {world} devices; change train.micro_batch_size"
        )


class Trainer:
    def __init__(self, spec: RunSpec, dataset_manifest: Path, out_dir: Path, weights_dir: Path, checkpoint: Path):
        self.spec, self.run_id, self.cfg = spec, spec.run_id, spec.model
        self.out_dir, self.weights_dir = out_dir, weights_dir
        self.world = parallel.Distributed()
        if self.world.world != spec.execution.world_size:
            raise TrainError(
                f"run {self.run_id} asks for {spec.execution.world_size} device(s) ({spec.execution.nodes} "
                f"node(s) x {spec.execution.devices}) but runs in {self.world.world} process(es); start it "
                f"with 'python -m workflow.train', which launches torchrun (and srun) itself"
            )
        self.device = self.world.start(parallel.resolve_device(spec.execution.device))
        # A node's CPU threads (train.threads, one Slurm task per node) are shared by its processes.
        torch.set_num_threads(max(1, spec.execution.threads // spec.execution.devices))
        torch.manual_seed(spec.seed)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.data = data_identity(dataset_manifest)
        self.train_tokens = training_tokens(spec, read_json(dataset_manifest))
        check_micro_batches_divide(spec, self.world.world)
        self.plan = plan_steps(spec, self.world.world, self.world.rank)
        self.batch_tokens = spec.optim.batch_tokens
        self.batches = StepBatches(
            load_split(dataset_manifest, "train"),
            self.cfg.seq_len,
            spec.optim.micro_batch_size * self.plan.accumulation,
            spec.seed,
            spec.data_order,
        )
        self.build()
        self.checkpointer = Checkpointer(checkpoint, self.world, self.run_id)
        self.progress = Progress()
        self.resumed_from: int | None = None
        self.signal_received: int | None = None
        # Every rank stops at the step where the all-reduced signal flag says so:
        # a signal landing on one rank just after the all-reduce counts at the next step.
        self.stop_agreed = False

    # -- setup

    def build(self) -> None:
        """The model, its counts, the layout across devices, the optimizer and kernels."""
        spec, optim = self.spec, self.spec.optim
        self.kernels = kernels.resolve_kernels(spec.execution.kernels, self.device)
        self.model = build_model(self.cfg, kernels=self.kernels).to(self.device)
        self.counts = families.parameter_counts(self.cfg)
        actual = sum(p.numel() for p in {id(p): p for p in self.model.parameters()}.values())
        assert actual == self.counts.total, f"parameter count {actual} != analytic {self.counts.total}"
        self.per_token = families.all_conventions(self.cfg)
        self.sharded, self.shard_reason = parallel.choose_sharding(spec, self.world, self.device)
        if self.sharded:
            parallel.shard(self.model)
        self.optimizer, optimizer_kernel = kernels.make_optimizer(
            self.model,
            self.device,
            "torch" if self.sharded else self.kernels,  # apex's FusedAdam takes no sharded (DTensor) parameters
            lr=optim.lr,
            betas=(optim.beta1, optim.beta2),
            eps=optim.eps,
            weight_decay=optim.weight_decay,
        )
        xentropy = kernels.apex_cross_entropy() if self.kernels == "apex" else None
        if xentropy is not None:
            self.model.cross_entropy = xentropy
        self.kernel_record = {
            "backend": self.kernels,
            "optimizer": optimizer_kernel,
            "norm": self.model.norm_kernel,
            "cross_entropy": "apex.contrib.xentropy" if xentropy is not None else "torch.cross_entropy",
            "attention": self.model.sequence_kernel,
            "compile": bool(spec.execution.compile),
        }
        self.wrapped = parallel.replicate(self.model, self.world, self.device, self.sharded)
        self.forward = torch.compile(self.wrapped) if spec.execution.compile else self.wrapped
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        per_device_peak = kernels.peak_flops_per_s(self.device, spec.execution.peak_flops)
        self.peak = per_device_peak * self.world.world if per_device_peak else None
        self.divergence_limit = 2.0 * math.log(self.cfg.vocab_size)

    def close(self, together: bool) -> None:
        """Leave the process group. Its gloo threads free each finished collective's tensors, which takes
        the GIL; if the group's last reference went with the DDP module (its reducer holds one) at the end
        of train_run, the destructor would wait for those threads while holding the GIL: a deadlock seen
        under Slurm. So the ranks first meet at a barrier (every earlier collective is then done and freed,
        since the barrier's wait releases the GIL), then the DDP and FSDP state goes while the group
        lives, then the group."""
        if not self.world.joined:
            return
        if together:
            self.world.barrier()
        self.wrapped = self.forward = self.model = self.optimizer = None
        gc.collect()
        self.world.stop()

    # -- checkpoints

    def save_checkpoint(self) -> None:
        progress = {
            **self.progress.to_state(),
            "torch_rng": torch.get_rng_state(),
            "world_size": self.world.world,
            "spec": self.spec.result_dict(),
            "data": self.data,
        }
        self.checkpointer.step = self.progress.step
        self.checkpointer.save(progress, self.model, self.optimizer, self.sharded)

    def load_checkpoint(self) -> bool:
        state = self.checkpointer.load(
            self.model, self.optimizer, self.sharded, self.device, self.spec.result_dict(), self.data
        )
        if state is None:
            return False
        torch.set_rng_state(state["torch_rng"].cpu())  # loaded onto the run's device, but a CPU generator's
        self.progress = Progress.from_state(state)
        self.resumed_from = self.progress.step
        return True

    def _on_signal(self, signum, _frame) -> None:
        self.signal_received = signum

    # -- steps

    def diverged(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.divergence_limit

    def train_step(self, lr: float, data: Prefetcher) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # [mean loss of the step, 1 if a checkpoint signal arrived]: one
        # all-reduce and one host sync per step, not one per micro-batch.
        total = torch.zeros(2, device=self.device)
        t0 = time.perf_counter()
        x_step, y_step = data.next()
        self.progress.wait += time.perf_counter() - t0
        micro_batches = list(
            zip(x_step.chunk(self.plan.local_accumulation), y_step.chunk(self.plan.local_accumulation))
        )
        for i, (x, y) in enumerate(micro_batches):
            # Under DDP, gradients are averaged across ranks on the last micro-batch only. A sharded run
            # reduce-scatters every micro-batch's: deferring it would keep every unsharded gradient on
            # each device until the last one, which is the memory sharding exists to save.
            sync = self.world.world == 1 or self.sharded or i == len(micro_batches) - 1
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                with self.autocast:
                    _, loss = self.forward(x, y)
                (loss / self.plan.local_accumulation).backward()
            total[0] += loss.detach() / self.plan.accumulation
        total[1] = float(self.signal_received is not None)
        self.world.all_reduce(total)
        total, signalled = total.tolist()
        self.stop_agreed = signalled > 0
        if not self.diverged(total):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.optim.grad_clip)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.processed_steps += 1
        return total

    def run_steps(self, start: int, end: int, lr_of_step, rows: list[dict], branch: str | None = None) -> str:
        """Train steps start..end-1; returns 'completed' or 'diverged'.

        The main trajectory advances the run's step, checkpoints and honours
        Slurm's signals; a cooldown ``branch`` is short and runs to its end.
        """
        progress = self.progress
        label = f"{self.run_id} {branch}" if branch else self.run_id
        data = Prefetcher(self.batches, start, end, self.device, self.plan.my_share)
        losses = progress.pending_losses if branch is None else []
        bar = tqdm(total=end - start, desc=label, unit="step", disable=None if self.world.main else True)
        clock = time.perf_counter()
        for step in range(start, end):
            lr = self.spec.optim.lr * lr_of_step(step)
            loss = self.train_step(lr, data)
            losses.append(loss)
            bar.update(1)
            diverged = self.diverged(loss)
            if (step + 1) % self.spec.execution.log_every == 0 or step == end - 1 or diverged:
                now = time.perf_counter()
                progress.elapsed += now - clock
                clock = now
                rows.append(metrics_row(progress, step + 1, float(np.mean(losses)), lr, self.batch_tokens, self.mfu))
                losses.clear()
                bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", tok_s=f"{rows[-1]['tokens_per_s']:.0f}")
                if bar.disable and self.world.main and (len(rows) % 10 == 0 or step == end - 1):
                    mfu = f", MFU {rows[-1]['mfu']:.1%}" if rows[-1]["mfu"] is not None else ""
                    print(
                        f"{label} step {step + 1}/{end} loss {rows[-1]['train_loss']:.4f} "
                        f"{rows[-1]['tokens_per_s']:.0f} tok/s{mfu}",
                        flush=True,
                    )
            if diverged:
                bar.close()
                print(
                    f"{self.run_id}: loss {loss} at step {step + 1} is not finite or above "
                    f"{self.divergence_limit:.2f}; run marked diverged",
                    file=sys.stderr,
                )
                return "diverged"
            if branch is None:
                progress.step = step + 1
                if self.stop_agreed:
                    progress.elapsed += time.perf_counter() - clock
                    bar.close()
                    raise StopForSignal(self.signal_received or signal.SIGTERM)
                if progress.step % self.spec.execution.checkpoint_every == 0 and progress.step < end:
                    self.save_checkpoint()
        bar.close()
        return "completed"

    def mfu(self, tokens_per_s: float) -> float | None:
        return tokens_per_s * self.per_token["palm"] / self.peak if self.peak else None

    def save_point(self, budget: int, steps: int, rows: list[dict], status: str) -> None:
        """Weights and record of one point, named after its token budget (tokens trained differ
        by less than one batch: whole steps only)."""
        tokens = steps * self.batch_tokens
        compute_budget = self.spec.point_budget(budget)
        pid = point_id(self.run_id, budget, self.spec.schedule, compute_budget)
        # The whole model on rank 0 (a collective when sharded: every rank takes part).
        weights = (
            get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if self.sharded
            else self.model.state_dict()
        )
        if self.world.main:
            self.checkpointer.step = self.progress.step
            self.checkpointer.stage_point(
                pid,
                {
                    "model_config": self.cfg.to_dict(),
                    "model": weights,
                    "point_id": pid,
                    "status": status,
                    "step": steps,
                    # Evaluation checks both: the weights must come from this run on this data.
                    "spec": self.spec.result_dict(),
                    "data": self.data,
                },
            )
        self.progress.points.append(
            {
                "point_id": pid,
                "status": status,
                "steps": steps,
                "tokens": tokens,
                "token_budget": budget,
                "compute_budget": compute_budget,
                "flops": {name: value * tokens for name, value in self.per_token.items()},
                "final_train_loss": rows[-1]["train_loss"] if rows else float("nan"),
                "weights": f"{pid}.pt",
                "cooldown_rows": rows if self.spec.schedule == "wsd" else [],
            }
        )

    # -- the run: load, loop, save

    def train(self) -> dict:
        previous = {s: signal.signal(s, self._on_signal) for s in CHECKPOINT_SIGNALS}
        try:
            self.load_checkpoint()
            if self.spec.schedule == "cosine":
                self.train_cosine()
            else:
                self.train_wsd()
        except StopForSignal:
            self.save_checkpoint()
            name = signal.Signals(self.signal_received or signal.SIGTERM).name
            print(
                f"{self.run_id}: {name} received; checkpoint saved at step {self.progress.step}, exiting so "
                f"the job can be requeued",
                file=sys.stderr,
                flush=True,
            )
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.write_outputs() if self.world.main else {}

    def train_cosine(self) -> None:
        optim, progress = self.spec.optim, self.progress
        if progress.status == "completed" and progress.step < self.plan.total_steps:
            progress.status = self.run_steps(
                progress.step,
                self.plan.total_steps,
                lambda s: lr_multiplier(s, self.plan.total_steps, self.plan.warmup_steps, optim.min_lr_ratio),
                progress.rows,
            )
        steps = progress.rows[-1]["step"] if progress.rows else 0
        self.save_point(self.spec.tokens, steps, progress.rows, progress.status)

    def train_wsd(self) -> None:
        """The stable trajectory, with a cooldown branch forked at each budget."""
        floor, progress = self.spec.optim.min_lr_ratio, self.progress
        done = {p["steps"] for p in progress.points}
        for budget, steps in zip(self.plan.budgets, self.plan.point_steps):
            if steps in done:
                continue
            fork = wsd_fork(steps, self.plan.warmup_steps, self.spec.wsd_decay_fraction)
            assert fork >= progress.step or progress.status != "completed", "cooldown forks must come in order"
            if progress.step < fork and progress.status == "completed":
                progress.status = self.run_steps(
                    progress.step, fork, lambda s: wsd_multiplier(s, self.plan.warmup_steps, None, floor), progress.rows
                )
                self.save_checkpoint()
            if progress.status != "completed":
                break
            # The branch trains a copy; the stable run goes on from the fork.
            stable = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
            branch_rows: list[dict] = []
            status = self.run_steps(
                fork,
                steps,
                lambda s, f=fork, e=steps: wsd_multiplier(s, self.plan.warmup_steps, (f, e), floor),
                branch_rows,
                branch=f"cooldown@{steps}",
            )
            self.save_point(budget, steps, branch_rows, status)
            self.model.load_state_dict(stable[0])
            self.optimizer.load_state_dict(stable[1])
            self.save_checkpoint()

    def write_outputs(self) -> dict:
        self.checkpointer.publish_points(self.weights_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out_dir / "metrics.csv") as tmp:
            write_metrics(self.progress.rows, tmp)
        summary = self.summary()
        write_json_atomic(self.out_dir / "summary.json", summary)
        self.checkpointer.remove()
        return summary

    def summary(self) -> dict:
        rows, spec, elapsed = self.progress.rows, self.spec, self.progress.elapsed
        tokens_trained = rows[-1]["tokens"] if rows else 0
        diverged = any(p["status"] == "diverged" for p in self.progress.points)
        return {
            "run_id": self.run_id,
            "status": "diverged" if diverged else self.progress.status,
            "family": self.cfg.family,
            "grid": spec.grid,
            "compute_budget": spec.compute_budget,
            "schedule": spec.schedule,
            "model": self.cfg.to_dict(),
            "parameters": self.counts.to_dict(),
            "tokens_requested": spec.tokens,
            "tokens_trained": tokens_trained,
            "steps": rows[-1]["step"] if rows else 0,
            "batch_tokens": self.batch_tokens,
            "micro_batch_size": spec.optim.micro_batch_size,
            "gradient_accumulation": self.plan.accumulation,
            "lr": spec.optim.lr,
            "warmup_steps": self.plan.warmup_steps,
            "flops_per_token": self.per_token,
            "flops": {name: value * tokens_trained for name, value in self.per_token.items()},
            "final_train_loss": rows[-1]["train_loss"] if rows else None,
            "points": self.progress.points,
            "seed": spec.seed,
            "device": self.device.type,
            "devices": self.world.world,
            "nodes": spec.execution.nodes,
            "distributed_backend": self.world.backend,
            "sharding": "full" if self.sharded else "none",
            "sharding_reason": self.shard_reason,
            "device_name": device_name(self.device),
            "precision": "bf16-autocast" if self.device.type == "cuda" else "fp32",
            "kernels": self.kernels,
            "kernel_components": self.kernel_record,
            "threads": spec.execution.threads,
            "elapsed_s": elapsed,
            "tokens_per_s": self.progress.processed_steps * self.batch_tokens / elapsed if elapsed else None,
            "peak_flops_per_s": self.peak,
            "mfu": rows[-1]["mfu"] if rows else None,
            "mfu_convention": "palm",
            "data_wait_fraction": self.progress.wait / elapsed if elapsed else 0.0,
            "resumed_from_step": self.resumed_from,
            "dataset_train_tokens": self.train_tokens,
            "data": self.data,
            "versions": versions(),
            "spec": spec.result_dict(),
            "execution": execution_record(spec.execution),
        }


def train_run(
    spec: RunSpec, dataset_manifest: Path, out_dir: Path, weights_dir: Path, checkpoint: Path | None = None
) -> dict:
    """Train one run to its end (or to a signal); its summary on rank 0, {} on the others."""
    checkpoint = checkpoint or weights_dir.parent / "checkpoint.pt"
    trainer = Trainer(spec, dataset_manifest, out_dir, weights_dir, checkpoint)
    together = False  # whether every rank ends here at once (a signal stops all at the same step)
    try:
        summary = trainer.train()
        together = True
        return summary
    except StopForSignal:
        together = True
        raise
    finally:
        trainer.close(together)
