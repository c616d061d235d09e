"""What the plan (``workflow.plan``) knows beyond the config: the corpus's size in tokens, and the
throughput of each model size, each with where it came from.

The corpus size, first found of:

1. ``--corpus-tokens``, as the user gives it;
2. the dataset manifest the study's dataset stage wrote (``WORK/dataset/KEY/manifest.json``, keyed by
   the settings that make it, so it is this study's data): its training tokens, measured;
3. the bytes of the corpus's files, from the lock file's sizes or the downloads in the work directory,
   for plain-text sources only (a compressed, jsonl or parquet file's size is not its text's), less
   the validation split, at ``ASSUMED_BYTES_PER_TOKEN``: an estimate, and said to be one;

or unknown, with the reason.

The throughput: ``cluster.train_flops_per_s`` (PaLM FLOPs per second per device, assumed; the same
utilisation at every size, so tokens per second fall with the FLOPs per token), or a measured table
of tokens per second against N.

Imports the standard library and ``workflow`` modules without heavy packages: the plan runs on a
login node.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workflow.config import ConfigError
from workflow.download import DownloadError, download_name, read_lock, url_entries
from workflow.families import flops_per_token
from workflow.names import artefact_keys
from workflow.spec import ModelConfig

# English text under a BPE vocabulary of a few thousand pieces or more: about 4 bytes a token. An
# assumption for the estimate from bytes, not a measurement; code, other languages and small
# vocabularies differ (the default study's 512 pieces on Python code: 1.8, measured).
ASSUMED_BYTES_PER_TOKEN = 4.0
# Below half a GiB no GPU trains a model: a value like 0.001 or 0 is a unit slip, not a device.
MIN_DEVICE_MEMORY_GIB = 0.5
COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd", ".zip", ".bz2", ".xz")


@dataclass(frozen=True)
class CorpusSize:
    """Training tokens of the corpus (None: unknown), and how they are known."""

    tokens: float | None
    source: str
    estimated: bool = False

    @property
    def label(self) -> str:
        """'5.5e+08 (estimated)' or '1.69e+07': the size as the warnings quote it."""
        return f"~{self.tokens:.3g} (estimated)" if self.estimated else f"{self.tokens:.3g}"

    def describe(self) -> str:
        if self.tokens is None:
            return f"epochs '?': corpus size unknown: {self.source}"
        how = "estimated " if self.estimated else ""
        return f"{self.tokens:.3g} training tokens, {how}from {self.source}"


def corpus_size(config: dict, given: float | None = None) -> CorpusSize:
    """The corpus's training tokens: given, measured in the dataset manifest, estimated from bytes, or
    unknown with the reason."""
    if given is not None:
        return CorpusSize(given, "--corpus-tokens")
    work = Path(config["work_dir"])
    manifest = work / "dataset" / artefact_keys(config)["dataset"] / "manifest.json"
    try:
        tokens = json.loads(manifest.read_text())["splits"]["train"]["tokens"]
        return CorpusSize(float(tokens), f"the dataset manifest {manifest} (measured)")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    size, why = corpus_bytes(config, work)
    if size is None:
        return CorpusSize(None, f"no dataset manifest at {manifest} yet, and {why}; give --corpus-tokens N")
    dataset = config["dataset"]
    tokens = size / ASSUMED_BYTES_PER_TOKEN
    tokens -= min(tokens * dataset["validation_fraction"], dataset.get("validation_max_tokens") or math.inf)
    return CorpusSize(
        tokens,
        f"{size / 1e9:.3g} GB of text at an assumed {ASSUMED_BYTES_PER_TOKEN:g} bytes per token, less the "
        f"validation split (no dataset manifest at {manifest} yet)",
        estimated=True,
    )


def corpus_bytes(config: dict, work: Path) -> tuple[int | None, str]:
    """The text bytes of every corpus file, from the lock file or the downloads; None and why if any
    file's size is unknown or is not its text's."""
    corpus = config["corpus"]
    try:
        lock = read_lock(corpus.get("lock_file", "config/corpus.lock.json"))
    except DownloadError:  # a damaged lock file: the download stage names it; here it only means no sizes
        lock = {}
    total = 0
    for source in corpus["sources"]:
        if "builtin" in source:
            return None, f"source {source['name']} is builtin: its size is known once the corpus stage has run"
        fmt, compression = source.get("format", "text"), source.get("compression", "auto")
        for i, entry in enumerate(url_entries(source)):
            name = PurePosixPath(urllib.parse.urlsplit(entry["url"]).path).name
            if fmt != "text" or compression not in ("none", "auto") or name.endswith(COMPRESSED_SUFFIXES):
                return None, f"{name} of source {source['name']} is not plain text, so its size is not its text's"
            size = lock.get(entry["url"], {}).get("size")
            downloaded = work / "downloads" / source["name"] / download_name(i, entry["url"])
            if size is None and downloaded.is_file():
                size = downloaded.stat().st_size
            if size is None:
                return None, (
                    f"no size for {name} (source {source['name']}) in {corpus.get('lock_file')} or in "
                    f"{downloaded.parent} (its first download records it)"
                )
            total += int(size)
    return total, ""


@dataclass(frozen=True)
class Throughput:
    """Tokens per second per device of each size: from cluster.train_flops_per_s, or measured."""

    flops_per_s: float | None = None  # assumed PaLM FLOP/s per device
    table: tuple[tuple[float, float], ...] = ()  # measured (N, tokens/s per device), by N
    source: str = ""

    @property
    def measured(self) -> bool:
        return bool(self.table)

    def tokens_per_second(self, model: ModelConfig, n: float) -> float:
        if not self.table:
            return self.flops_per_s / flops_per_token("palm", model)
        sizes = [row[0] for row in self.table]
        i = bisect.bisect_left(sizes, n)
        if i == 0:
            return self.table[0][1]
        if i == len(self.table):
            return self.table[-1][1]
        (n0, t0), (n1, t1) = self.table[i - 1], self.table[i]
        share = math.log(n / n0) / math.log(n1 / n0)
        return math.exp(math.log(t0) + share * (math.log(t1) - math.log(t0)))

    def describe(self) -> str:
        if self.measured:
            return (
                f"measured tokens/s per device from {self.source} ({len(self.table)} sizes; between them "
                f"interpolated on log scales, beyond them the nearest)"
            )
        return (
            f"assumed MFU from cluster.*: cluster.train_flops_per_s = {self.flops_per_s:.3g} PaLM FLOP/s per "
            f"device at every size (6N plus attention's 12 L d T, the work the device does; not measured: "
            f"--throughput FILE takes a measured table)"
        )


def cluster_throughput(cluster: dict) -> Throughput:
    return Throughput(flops_per_s=cluster["train_flops_per_s"], source="cluster.train_flops_per_s")


def measured_throughput(path: Path, count: str) -> Throughput:
    """A CSV of params (N as ``count``) and tokens_per_s (per device); ConfigError naming the file and
    row of anything else."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"params", "tokens_per_s"} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"--throughput {path}: no column {', '.join(sorted(missing))} (params, tokens_per_s)")
            table = {}
            for line, row in enumerate(reader, start=2):
                try:
                    n, rate = float(row["params"]), float(row["tokens_per_s"])
                except (TypeError, ValueError):
                    n = rate = math.nan
                if not (n > 0 and rate > 0 and math.isfinite(n) and math.isfinite(rate)):
                    raise ConfigError(f"--throughput {path}, line {line}: params and tokens_per_s must be positive")
                table[n] = rate
    except OSError as e:
        raise ConfigError(f"--throughput {path}: {e.strerror}") from None
    if not table:
        raise ConfigError(f"--throughput {path}: no rows")
    return Throughput(table=tuple(sorted(table.items())), source=f"{path} (params as {count})")
