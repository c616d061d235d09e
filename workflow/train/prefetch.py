"""A step's batch, made ready while the device works on the previous one."""

from __future__ import annotations

import queue
import threading

import torch

from workflow.shards import StepBatches


class Prefetcher:
    """Batches for steps start..end-1, built by a background thread on CUDA.

    On CUDA the host arrays go to pinned memory and are copied without
    blocking, so the next batch is ready while the GPU works. Batches are
    addressed by step, so prefetching never changes what a step reads.
    """

    def __init__(self, batches: StepBatches, start: int, end: int, device: torch.device, rows: slice = slice(None)):
        self.batches, self.device, self.rows = batches, device, rows
        self.steps = iter(range(start, end))
        self.background = device.type == "cuda"
        if self.background:
            self.queue: queue.Queue = queue.Queue(maxsize=3)
            self.thread = threading.Thread(target=self._fill, args=(start, end), daemon=True)
            self.thread.start()

    def _fill(self, start: int, end: int) -> None:
        for step in range(start, end):
            x, y = (a[self.rows] for a in self.batches.batch(step))
            self.queue.put((torch.from_numpy(x).pin_memory(), torch.from_numpy(y).pin_memory()))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.background:
            x, y = self.queue.get()
        else:
            x, y = (torch.from_numpy(a[self.rows]) for a in self.batches.batch(next(self.steps)))
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
