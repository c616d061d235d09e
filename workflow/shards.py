"""Token shard files: a 32-byte header, then the raw token ids.

Header (little-endian): magic ``b"SLAWTOKS"`` (8 bytes), format version
(uint32), bytes per token (uint32: 2 for uint16 ids, 4 for uint32), token
count (uint64), 8 reserved zero bytes. Readers check all of it and the file
size, so a truncated or foreign file fails loudly instead of training on junk.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from workflow.files import read_json, sha256_file

MAGIC = b"SLAWTOKS"
VERSION = 1
HEADER = struct.Struct("<8sIIQ8x")
assert HEADER.size == 32
DTYPES = {2: np.uint16, 4: np.uint32}


class ShardError(ValueError):
    pass


def dtype_for_vocab(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 65536 else np.uint32


class ShardWriter:
    """Append tokens to a shard file opened under its final name's directory."""

    def __init__(self, path: str | os.PathLike, dtype: type):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._file = open(self.path, "wb")
        self._file.write(HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, 0))

    def write(self, tokens: np.ndarray) -> None:
        self._file.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        self.count += len(tokens)

    def close(self) -> None:
        # The count goes in last, so a writer killed mid-file leaves a header
        # that disagrees with the size and the reader refuses the file.
        self._file.seek(0)
        self._file.write(HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.count))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a shard's tokens after checking its header and size."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER.size:
        raise ShardError(f"{path}: {size} bytes is shorter than the {HEADER.size}-byte shard header")
    with open(path, "rb") as f:
        magic, version, itemsize, count = HEADER.unpack(f.read(HEADER.size))
    if magic != MAGIC:
        raise ShardError(f"{path}: not a token shard (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise ShardError(f"{path}: shard format version {version}, this pipeline reads {VERSION}")
    if itemsize not in DTYPES:
        raise ShardError(f"{path}: unknown token width of {itemsize} bytes")
    expected = HEADER.size + count * itemsize
    if size != expected:
        raise ShardError(
            f"{path}: header says {count} tokens ({expected} bytes) but the file has {size} bytes; "
            f"it is truncated or was not closed"
        )
    if count == 0:
        return np.zeros(0, dtype=DTYPES[itemsize])
    return np.memmap(path, dtype=DTYPES[itemsize], mode="r", offset=HEADER.size, shape=(count,))


def data_identity(manifest_path: str | os.PathLike) -> dict[str, str]:
    """What a run trained on: the sha256 of the dataset manifest (which lists every shard's sha256)
    and of the tokenizer that made it. Checkpoints and weights carry it, so that a run never resumes
    from, and evaluation never scores, weights learned on other token ids."""
    manifest = read_json(manifest_path)
    return {"dataset_manifest_sha256": sha256_file(manifest_path), "tokenizer_sha256": manifest["tokenizer_sha256"]}


def describe_identity(identity: dict | None) -> str:
    if not identity:
        return "unrecorded data"
    return (
        f"dataset manifest sha256 {identity['dataset_manifest_sha256'][:12]}…, "
        f"tokenizer sha256 {identity['tokenizer_sha256'][:12]}…"
    )


def load_split(manifest_path: str | os.PathLike, split: str) -> list[np.ndarray]:
    """Every shard of one split, checked against the manifest's token counts."""
    manifest_path = Path(manifest_path)
    manifest = read_json(manifest_path)
    shards = []
    for entry in manifest["splits"][split]["shards"]:
        tokens = read_shard(manifest_path.parent / entry["file"])
        if len(tokens) != entry["tokens"]:
            raise ShardError(f"{entry['file']}: {len(tokens)} tokens but {manifest_path} records {entry['tokens']}")
        shards.append(tokens)
    return shards


class StepBatches:
    """The (input, target) windows of each training step, addressed by step number.

    ``random``: each step draws ``rows`` windows of ``seq_len`` + 1 tokens from a
    generator seeded with (seed, step), shards in proportion to the windows they
    hold; a window never crosses a shard boundary. ``sequential``: consecutive,
    non-overlapping windows through the shards, wrapping at the end (epochs).

    Because a batch depends only on its step, a resumed run or a prefetching
    thread reads exactly what an uninterrupted run would.
    """

    def __init__(self, shards: list[np.ndarray], seq_len: int, rows: int, seed: int, order: str = "random"):
        self.shards = [s for s in shards if len(s) > seq_len]
        if not self.shards:
            raise ShardError(f"no shard holds more than seq_len={seq_len} tokens")
        if order not in ("random", "sequential"):
            raise ValueError(f"unknown data order {order!r}")
        self.seq_len, self.rows, self.seed, self.order = seq_len, rows, seed, order
        starts = np.array([len(s) - seq_len for s in self.shards], dtype=np.float64)
        self.shard_probs = starts / starts.sum()
        self.windows_per_shard = np.array([(len(s) - 1) // seq_len for s in self.shards])
        self.window_offsets = np.concatenate([[0], np.cumsum(self.windows_per_shard)])

    def _window(self, shard: int, start: int) -> np.ndarray:
        return np.asarray(self.shards[shard][start : start + self.seq_len + 1], dtype=np.int64)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        if self.order == "random":
            rng = np.random.default_rng([self.seed, step])
            which = rng.choice(len(self.shards), size=self.rows, p=self.shard_probs)
            rows = [self._window(k, int(rng.integers(0, len(self.shards[k]) - self.seq_len))) for k in which]
        else:
            total = int(self.window_offsets[-1])
            rows = []
            for i in range(step * self.rows, (step + 1) * self.rows):
                index = i % total
                shard = int(np.searchsorted(self.window_offsets, index, side="right")) - 1
                rows.append(self._window(shard, (index - int(self.window_offsets[shard])) * self.seq_len))
        block = np.stack(rows)
        return np.ascontiguousarray(block[:, :-1]), np.ascontiguousarray(block[:, 1:])


def sequential_windows(shards: list[np.ndarray], seq_len: int):
    """Non-overlapping (input, target) windows in order: the fixed evaluation set."""
    for shard in shards:
        n = (len(shard) - 1) // seq_len
        for i in range(n):
            chunk = np.asarray(shard[i * seq_len : (i + 1) * seq_len + 1], dtype=np.int64)
            yield chunk[:-1], chunk[1:]
