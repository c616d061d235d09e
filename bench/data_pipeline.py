"""Corpus, tokenizer and dataset stages at scale: time, throughput and peak memory.

Three measurements, on synthetic text made from the standard library's .py
files (no network; each copy of a file gets its own first line, so no two
documents are equal):

1. tokenizer training time against sample size (``workflow.tokenizer.train_tokenizer``);
2. encoding throughput in MB of UTF-8 text per second: the dataset stage
   (``workflow.dataset.build_dataset``: streaming from parquet, encoding,
   validation split, shard writing) with 1, 2, ... threads, against calling
   ``SentencePieceProcessor.encode`` directly on the same documents (a loop
   over them with 1 thread; one batched call with k threads) held in memory.
   The pipeline's overhead is its time over the direct call's at the same thread
   count, minus one;
3. peak resident memory (RSS) of the corpus and dataset stages, each its own
   process (``python -m workflow.corpus``, ``python -m workflow.dataset``),
   on a corpus of ``--big-gb`` GB: far more text than the memory it may use.

    python bench/data_pipeline.py --preset ci     # a minute, any machine
    python bench/data_pipeline.py --preset full   # the figures of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import polars as pl
import sentencepiece as spm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow.dataset import build_dataset  # noqa: E402
from workflow.tokenizer import train_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    "ci": {"sample_mb": [1, 2], "encode_mb": 8, "threads": [1, 2], "big_gb": 0.05, "vocab": 2048},
    "full": {"sample_mb": [4, 16, 64], "encode_mb": 128, "threads": [1, 2], "big_gb": 3.0, "vocab": 8192},
}
SEPARATOR = "\n<|end of document|>\n"
REPEATS = 3


def stdlib_texts() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.rglob("*.py")):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return [t for t in texts if t.strip() and SEPARATOR.strip() not in t]


def documents(total_bytes: int, texts: list[str]):
    """Documents of about ``total_bytes`` in all: copies of the stdlib files, each made unique."""
    produced, copy = 0, 0
    while produced < total_bytes:
        for text in texts:
            doc = f"# copy {copy}\n{text}"
            produced += len(doc.encode("utf-8"))
            yield doc
            if produced >= total_bytes:
                return
        copy += 1


def tokenizer_training(sizes_mb: list[int], vocab: int, texts: list[str]) -> list[dict]:
    rows = []
    for mb in sizes_mb:
        docs = list(documents(mb * 2**20, texts))
        start = time.perf_counter()
        train_tokenizer(docs, vocab_size=vocab, model_type="bpe", seed=0, sample_bytes=mb * 2**20, threads=2)
        rows.append({"sample_mb": mb, "vocab_size": vocab, "seconds": time.perf_counter() - start})
        print(f"tokenizer: {mb} MB sample, vocab {vocab}: {rows[-1]['seconds']:.1f} s", flush=True)
    return rows


def encoding(model: Path, encode_mb: int, thread_counts: list[int], texts: list[str], work: Path) -> list[dict]:
    docs = list(documents(encode_mb * 2**20, texts))
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    table = work / "encode_documents.parquet"
    pl.DataFrame({"text": docs}).write_parquet(table)
    processor = spm.SentencePieceProcessor(model_file=str(model))
    rows = []
    for threads in thread_counts:
        # Alternated and repeated; the best of each is kept (a shared machine's noise only slows).
        direct = pipeline = float("inf")
        for repeat in range(REPEATS):
            start = time.perf_counter()
            if threads == 1:
                for doc in docs:
                    processor.encode(doc)
            else:
                processor.encode(docs, num_threads=threads)
            direct = min(direct, time.perf_counter() - start)
            start = time.perf_counter()
            build_dataset(
                table,
                model,
                work / f"shards_{threads}_{repeat}",
                validation_fraction=0.01,
                validation_max_tokens=1 << 20,
                shard_tokens=1 << 24,
                threads=threads,
            )
            pipeline = min(pipeline, time.perf_counter() - start)
        rows.append(
            {
                "threads": threads,
                "megabytes": megabytes,
                "direct_mb_s": megabytes / direct,
                "pipeline_mb_s": megabytes / pipeline,
                "overhead": pipeline / direct - 1,
            }
        )
        print(
            f"encode: {threads} thread(s): direct {megabytes / direct:.2f} MB/s, pipeline "
            f"{megabytes / pipeline:.2f} MB/s, overhead {100 * rows[-1]['overhead']:+.1f}%",
            flush=True,
        )
    return rows


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of one child process.

    The peak is the kernel's high-water mark of the child's own memory (VmHWM in
    /proc/PID/status), read every 0.1 s until it exits: getrusage's ru_maxrss would
    also count the copy of this (large) benchmark process the child was forked from.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    status = Path(f"/proc/{process.pid}/status")
    peak_kb = 0
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.1)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {process.returncode}")
    return peak_kb / 1024, time.perf_counter() - start


def big_corpus(gigabytes: float, model: Path, texts: list[str], work: Path) -> dict:
    text_file = work / "big.txt"
    with open(text_file, "w", encoding="utf-8") as out:
        for i, doc in enumerate(documents(int(gigabytes * 2**30), texts)):
            if i:
                out.write(SEPARATOR)
            out.write(doc)
    size = text_file.stat().st_size
    sources = json.dumps([{"name": "big", "url": text_file.as_uri(), "format": "text", "separator": SEPARATOR}])
    corpus_rss, corpus_s = peak_rss_mb(
        [
            sys.executable,
            "-m",
            "workflow.corpus",
            "--sources",
            sources,
            f"--download=big={text_file}",
            "--out-documents",
            str(work / "big.parquet"),
            "--out-manifest",
            str(work / "big_corpus.json"),
        ]
    )
    dataset_rss, dataset_s = peak_rss_mb(
        [
            sys.executable,
            "-m",
            "workflow.dataset",
            "--documents",
            str(work / "big.parquet"),
            "--tokenizer",
            str(model),
            "--validation-fraction",
            "0.001",
            "--validation-max-tokens",
            str(1 << 22),
            "--shard-tokens",
            str(1 << 26),
            "--threads",
            "2",
            "--out-dir",
            str(work / "big_shards"),
            "--out-summary",
            str(work / "big_dataset.json"),
        ]
    )
    tokens = json.loads((work / "big_dataset.json").read_text())["splits"]["train"]["tokens"]
    result = {
        "corpus_bytes": size,
        "corpus_peak_rss_mb": corpus_rss,
        "corpus_seconds": corpus_s,
        "dataset_peak_rss_mb": dataset_rss,
        "dataset_seconds": dataset_s,
        "train_tokens": tokens,
    }
    print(
        f"big corpus {size / 1e9:.2f} GB: corpus stage peak RSS {corpus_rss:.0f} MB ({corpus_s:.0f} s), "
        f"dataset stage peak RSS {dataset_rss:.0f} MB ({dataset_s:.0f} s), {tokens} train tokens",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ci")
    parser.add_argument("--work-dir", type=Path, help="scratch space (default: a temporary directory)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--big-gb", type=float, help="size of the peak-memory corpus (default: the preset's)")
    parser.add_argument("--only-big", action="store_true", help="measure peak memory only")
    args = parser.parse_args()
    preset = dict(PRESETS[args.preset], **({"big_gb": args.big_gb} if args.big_gb else {}))
    if args.only_big:
        preset.update(sample_mb=[], threads=[])
    texts = stdlib_texts()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
        work = Path(scratch)
        tokenizer_rows = tokenizer_training(preset["sample_mb"], preset["vocab"], texts)
        data, _ = train_tokenizer(
            list(documents(4 * 2**20, texts)),
            vocab_size=preset["vocab"],
            model_type="bpe",
            seed=0,
            sample_bytes=4 * 2**20,
            threads=2,
        )
        model = work / "tokenizer.model"
        model.write_bytes(data)
        encode_rows = encoding(model, preset["encode_mb"], preset["threads"], texts, work)
        big = big_corpus(preset["big_gb"], model, texts, work)
    figures = {
        "date": datetime.date.today().isoformat(),
        "preset": args.preset,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "sentencepiece": spm.__version__,
        "tokenizer_training": tokenizer_rows,
        "encoding": encode_rows,
        "big_corpus": big,
        "bench_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
