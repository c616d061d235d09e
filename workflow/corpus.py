"""Corpus stage: gather documents from the configured sources into one table.

Sources (``corpus.sources``):

- ``builtin: stdlib``: the ``.py`` files of the running interpreter's standard
  library (about 30 MB of real code and prose), read offline, one document per
  file in sorted order. Files that are not valid UTF-8 are skipped and listed.
- ``url`` (one file) or ``urls`` (several, e.g. the parquet shards a dataset hub
  publishes), over http, https or file. Each file is fetched beforehand by
  ``workflow.download`` (resumable, retried, verified by sha256 or pinned by the
  lock file) to ``WORK/downloads/SOURCE/NNNN-NAME``; this stage reads those.

Formats (``format``, else from the URL's suffix: .jsonl/.ndjson/.json, .parquet,
anything else is text):

- ``text``: split into documents on ``separator`` (else one document per file);
- ``jsonl``: JSON lines, the string field ``field`` (default ``text``);
- ``parquet``: the string column ``field`` (default ``text``).

Text and JSON lines may be gzip or zstd compressed, or zip archives (every
member, in archive order); ``compression: auto`` (the default) tells them by
their first bytes. Parquet compresses its own pages and is read as it is.
Documents that are empty or only whitespace are left out and counted.

Bytes that are not UTF-8 in a text source: by default (``invalid_utf8: error``)
the build stops, naming the source, the file and the byte offset (in the
decompressed data); with ``invalid_utf8: skip`` the documents holding them are
left out, counted, and the offsets of the first few are recorded.

Output: the documents table (one parquet file, columns source, name, text,
bytes; one row per document in source and file order) written batch by batch
through polars' streaming engine, so memory stays bounded whatever the corpus
size (a document, and with no separator a whole text file, must fit in
memory). ``corpus.dedup`` removes exact duplicate documents across all sources
(the first copy is kept; a 16-byte hash per distinct document is held in
memory, about 100 bytes each). The manifest records per source its files (URL,
sha256, size, format, compression, documents read), documents, bytes,
duplicates removed and skipped documents, plus the Python version and the
table's sha256.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import platform
import sys
import sysconfig
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import polars as pl
from polars.io.plugins import register_io_source

from workflow.download import url_entries
from workflow.files import CHUNK_BYTES, atomic_path, run_stage, sha256_bytes, sha256_file, write_json_atomic
from workflow.zipf_markov import SourceSettingsError, read_zipf_markov


class CorpusError(RuntimeError):
    pass


BATCH_DOCUMENTS = 8192
BATCH_BYTES = 64 << 20
ROW_GROUP_DOCUMENTS = 1024  # documents per row group of the table (bounded memory for writer and readers)
JSONL_BLOCK_BYTES = 16 << 20
OFFSETS_KEPT = 10

TABLE_SCHEMA = {"source": pl.String, "name": pl.String, "text": pl.String, "bytes": pl.Int64}
COMPRESSION_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".zip": "zip"}
FORMAT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"))


# --------------------------------------------------------------------------- sources


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def read_stdlib(pattern: str = "**/*.py") -> tuple[list[dict], dict]:
    """Documents from the standard library, sorted by path relative to its root."""
    root = stdlib_root()
    paths = sorted(
        (p for p in root.glob(pattern) if p.is_file() and "site-packages" not in p.relative_to(root).parts),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    documents, skipped = [], []
    tree_hash = hashlib.sha256()
    for path in paths:
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        tree_hash.update(f"{rel}\0{sha256_bytes(data)}\n".encode())
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(rel)
            continue
        documents.append({"name": rel, "text": text})
    info = {
        "kind": "builtin:stdlib",
        "root": str(root),
        "glob": pattern,
        "files": len(paths),
        "sha256": tree_hash.hexdigest(),
        "skipped_not_utf8": skipped,
    }
    return documents, info


def stdlib_batches(source: dict):
    """The builtin reader of ``builtin: stdlib``: batches of (names, texts) and the source's info."""
    documents, info = read_stdlib(source.get("glob", "**/*.py"))
    chunks = (documents[i : i + BATCH_DOCUMENTS] for i in range(0, len(documents), BATCH_DOCUMENTS))
    return (([d["name"] for d in chunk], [d["text"] for d in chunk]) for chunk in chunks), info


# Builtin sources, one line each: name -> reader(source) giving batches of (names, texts) and the
# source's manifest info.
BUILTINS = {"stdlib": stdlib_batches, "zipf_markov": read_zipf_markov}


def detect_compression(path: Path) -> str:
    """gzip, zstd, zip or none, from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
    return next((name for magic, name in MAGIC if head.startswith(magic)), "none")


def format_from_name(name: str) -> str | None:
    """text, jsonl or parquet from a file name's suffixes (compression suffixes ignored); None if unknown."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    while suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes.pop()
    if not suffixes:
        return None
    return FORMAT_SUFFIXES.get(suffixes[-1], "text" if suffixes[-1] in (".txt", ".text") else None)


def _open_zstd(path: Path) -> BinaryIO:
    try:
        import zstandard
    except ImportError:
        raise CorpusError(f"{path} is zstd-compressed: reading it needs the Python package zstandard") from None
    return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True, closefd=True)


@contextlib.contextmanager
def _decompressed(path: Path, compression: str) -> Iterator[BinaryIO]:
    if compression == "gzip":
        stream = gzip.open(path, "rb")
    elif compression == "zstd":
        stream = _open_zstd(path)
    else:
        stream = open(path, "rb")
    with stream:
        yield stream


def _members(path: Path, compression: str) -> Iterator[tuple[str | None, BinaryIO]]:
    """(member name or None, decompressed byte stream) of a file: itself, or each zip member in order."""
    if compression == "zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    with archive.open(info) as stream:
                        yield info.filename, stream
    else:
        with _decompressed(path, compression) as stream:
            yield None, stream


def _split(stream: BinaryIO, separator: bytes | None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, bytes) of each document of a stream, split on ``separator``, read in chunks."""
    if not separator:
        data = bytearray()
        while chunk := stream.read(CHUNK_BYTES):
            data += chunk
        yield 0, bytes(data)
        return
    buf, base, scan = bytearray(), 0, 0
    while chunk := stream.read(CHUNK_BYTES):
        buf += chunk
        start = 0
        while (i := buf.find(separator, scan)) != -1:
            yield base + start, bytes(buf[start:i])
            start = scan = i + len(separator)
        del buf[:start]
        base += start
        scan = max(0, len(buf) - len(separator) + 1)
    yield base, bytes(buf)


class _SourceReader:
    """Reads one source's files as batches of (name, text), counting what it leaves out."""

    def __init__(self, source: dict, paths: list[Path]):
        self.source = source
        self.name = source["name"]
        self.paths = paths
        self.empty_skipped = 0
        self.invalid_utf8_skipped = 0
        self.invalid_utf8_at: list[dict] = []
        self.files: list[dict] = []

    def batches(self) -> Iterator[pl.DataFrame]:
        if builtin := self.source.get("builtin"):
            try:
                chunks, self.info = BUILTINS[builtin](self.source)
            except SourceSettingsError as e:
                raise CorpusError(str(e)) from None
            for names, texts in chunks:
                yield pl.DataFrame({"name": names, "text": texts}, schema={"name": pl.String, "text": pl.String})
            return
        entries = url_entries(self.source)
        if not entries:
            raise CorpusError(f"source {self.name!r} has neither 'builtin' nor 'url'/'urls'")
        if len(self.paths) != len(entries):
            raise CorpusError(f"source {self.name!r} lists {len(entries)} files but {len(self.paths)} were given")
        self.info = {"kind": "url", "files": self.files}
        for entry, path in zip(entries, self.paths):
            yield from self._file(entry, Path(path))

    def _file(self, entry: dict, path: Path) -> Iterator[pl.DataFrame]:
        url = entry["url"]
        if not path.is_file():
            raise CorpusError(f"source {self.name!r}: download of {url} missing: {path}")
        compression = self.source.get("compression", "auto")
        if compression == "auto":
            compression = detect_compression(path)
        fmt = self.source.get("format")
        if fmt is None:
            with open(path, "rb") as f:
                parquet = f.read(4) == b"PAR1"
            fmt = "parquet" if parquet else format_from_name(PurePosixPath(urllib.parse.urlsplit(url).path).name)
        record = {
            "url": url,
            "file": path.name,
            "format": fmt or "text",
            "compression": compression,
            "size": path.stat().st_size,
            "documents_read": 0,
        }
        label = f"source {self.name!r}: {path} (from {url})"
        try:
            for batch in self._read(path, fmt, compression, label):
                record["documents_read"] += batch.height  # before blank and duplicate documents are removed
                yield batch
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            raise CorpusError(f"{label}: cannot read it as {compression} {fmt or 'text'}: {e}") from None
        except pl.exceptions.PolarsError as e:
            raise CorpusError(f"{label}: cannot read it as {fmt}: {str(e).splitlines()[0]}") from None
        except Exception as e:
            if type(e).__module__.startswith("zstandard"):
                raise CorpusError(f"{label}: cannot read it as zstd: {e}") from None
            raise
        record["sha256"] = sha256_file(path)
        if entry.get("sha256") and record["sha256"] != entry["sha256"].lower():
            raise CorpusError(
                f"checksum mismatch for {url}: expected sha256 {entry['sha256'].lower()} "
                f"(from the config), got {record['sha256']} in {path}"
            )
        self.files.append(record)

    def _read(self, path: Path, fmt: str | None, compression: str, label: str) -> Iterator[pl.DataFrame]:
        if fmt == "parquet":
            if compression != "none":
                raise CorpusError(
                    f"{label}: a parquet file wrapped in {compression} is not supported "
                    f"(parquet compresses its pages itself): unpack it first"
                )
            yield from self._parquet(path, label)
            return
        for member, stream in _members(path, compression):
            prefix = f"{path.name}/{member}" if member else path.name
            member_label = f"{label}, member {member}" if member else label
            member_fmt = fmt or (format_from_name(member) if member else None) or "text"
            if member_fmt == "parquet":
                raise CorpusError(f"{member_label}: parquet inside a {compression} archive is not supported")
            if member_fmt == "jsonl":
                if member is None and compression in ("none", "gzip", "zstd"):
                    yield from self._jsonl_file(path, prefix, member_label)
                else:
                    yield from self._jsonl_stream(stream, prefix, member_label)
            else:
                yield from self._text(stream, prefix, member_label, compressed=compression != "none")

    def _text(self, stream: BinaryIO, prefix: str, label: str, compressed: bool) -> Iterator[pl.DataFrame]:
        separator = self.source.get("separator")
        skip = self.source.get("invalid_utf8", "error") == "skip"
        names, texts, size = [], [], 0
        for index, (offset, data) in enumerate(_split(stream, separator.encode() if separator else None)):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                where = offset + e.start
                if not skip:
                    raise CorpusError(
                        f"{label} is not UTF-8: invalid byte at offset {where}"
                        f"{' of the decompressed data' if compressed else ''}; "
                        f"set invalid_utf8: skip to leave out the documents holding such bytes"
                    ) from None
                self.invalid_utf8_skipped += 1
                if len(self.invalid_utf8_at) < OFFSETS_KEPT:
                    self.invalid_utf8_at.append({"file": prefix, "offset": where})
                continue
            names.append(f"{prefix}:{index}")
            texts.append(text)
            size += len(data)
            if len(texts) >= BATCH_DOCUMENTS or size >= BATCH_BYTES:
                yield pl.DataFrame({"name": names, "text": texts}, schema={"name": pl.String, "text": pl.String})
                names, texts, size = [], [], 0
        if texts:
            yield pl.DataFrame({"name": names, "text": texts}, schema={"name": pl.String, "text": pl.String})

    def _field(self) -> str:
        return self.source.get("field", "text")

    @staticmethod
    def _named(frame: pl.DataFrame, prefix: str, start: int) -> pl.DataFrame:
        column = frame.columns[0]
        return frame.select(
            name=pl.format("{}:{}", pl.lit(prefix), pl.int_range(start, start + frame.height, dtype=pl.Int64)),
            text=pl.col(column),
        )

    def _records(self, frames: Iterator[pl.DataFrame], prefix: str, label: str, what: str) -> Iterator[pl.DataFrame]:
        rows = present = 0
        for frame in frames:
            if frame.height == 0:
                continue
            present += frame.height - frame.null_count().item(0, 0)
            yield self._named(frame, prefix, rows)
            rows += frame.height
        if rows and not present:
            raise CorpusError(f"{label}: no {what} {self._field()!r} in any of its {rows} records")

    def _jsonl_file(self, path: Path, prefix: str, label: str) -> Iterator[pl.DataFrame]:
        field = self._field()
        frames = (
            pl.scan_ndjson(path, schema={field: pl.String}).select(field).collect_batches(chunk_size=BATCH_DOCUMENTS)
        )
        yield from self._records(frames, prefix, label, "field")

    def _jsonl_stream(self, stream: BinaryIO, prefix: str, label: str) -> Iterator[pl.DataFrame]:
        field = self._field()

        def blocks() -> Iterator[pl.DataFrame]:
            pending = b""
            while chunk := stream.read(JSONL_BLOCK_BYTES):
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                block, pending = data[:cut], data[cut:]
                if block.strip():
                    yield pl.read_ndjson(io.BytesIO(block), schema={field: pl.String}).select(field)
            if pending.strip():
                yield pl.read_ndjson(io.BytesIO(pending), schema={field: pl.String}).select(field)

        yield from self._records(blocks(), prefix, label, "field")

    def _parquet(self, path: Path, label: str) -> Iterator[pl.DataFrame]:
        field = self._field()
        scan = pl.scan_parquet(path)
        columns = scan.collect_schema().names()
        if field not in columns:
            raise CorpusError(f"{label}: no column {field!r} (columns: {', '.join(columns)}); set field")
        frames = scan.select(pl.col(field).cast(pl.String)).collect_batches(chunk_size=BATCH_DOCUMENTS)
        yield from self._records(frames, path.name, label, "column")

    def manifest(self, documents: int, text_bytes: int, duplicates: int) -> dict:
        info = dict(
            self.info,
            name=self.name,
            documents=documents,
            bytes=text_bytes,
            duplicates_removed=duplicates,
            empty_skipped=self.empty_skipped,
        )
        if "url" in self.source or "urls" in self.source:
            for key in ("format", "separator", "field", "compression", "invalid_utf8"):
                if key in self.source:
                    info[key] = self.source[key]
            info["invalid_utf8_skipped"] = self.invalid_utf8_skipped
            info["invalid_utf8_offsets"] = self.invalid_utf8_at
        if "license" in self.source:
            info["license"] = self.source["license"]
        return info


def _documents(readers: list[_SourceReader], dedup: bool, counts: dict) -> Iterator[pl.DataFrame]:
    """The table's batches: blank documents dropped, duplicates too under ``dedup``; ``counts`` filled in.

    A source without documents stops the build as soon as another source is
    known to have some; if none has, the corpus has no documents.
    """
    seen: set[bytes] = set()
    empty: list[str] = []

    def refuse(names: list[str], prefix: str = "") -> CorpusError:
        return CorpusError(f"{prefix}source {', '.join(repr(n) for n in names)} yielded no documents")

    for reader in readers:
        stats = counts[reader.name] = {"read": 0, "documents": 0, "bytes": 0, "duplicates": 0}
        for batch in reader.batches():
            # Blank documents of url sources are dropped (the stdlib's empty files are kept, as ever).
            kept = batch if reader.source.get("builtin") else batch.filter(pl.col("text").str.contains(r"\S"))
            reader.empty_skipped += batch.height - kept.height
            if kept.height and empty:
                raise refuse(empty)
            stats["read"] += kept.height
            if dedup and kept.height:
                mask = []
                for text in kept["text"]:
                    key = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
                    mask.append(key not in seen)
                    seen.add(key)
                kept = kept.filter(pl.Series(mask, dtype=pl.Boolean))
                stats["duplicates"] += len(mask) - kept.height
            if kept.height == 0:
                continue
            kept = kept.select(
                source=pl.lit(reader.name, dtype=pl.String),
                name="name",
                text="text",
                bytes=pl.col("text").str.len_bytes().cast(pl.Int64),
            )
            stats["documents"] += kept.height
            stats["bytes"] += int(kept["bytes"].sum())
            yield kept
        if stats["read"] == 0:
            empty.append(reader.name)
            if any(c["read"] for c in counts.values()):
                raise refuse(empty)
    if empty:
        raise refuse(empty, "corpus has no documents: ")


def build(
    sources: list[dict],
    downloads: dict[str, Path | str | list],
    out_documents: Path,
    out_manifest: Path,
    *,
    dedup: bool = False,
) -> dict:
    """Write the documents table (streamed, batch by batch) and the manifest; return the manifest.

    ``downloads`` maps each url source's name to its downloaded file (or list of
    files, in the order of its ``urls``).
    """
    readers = []
    for source in sources:
        paths = downloads.get(source["name"], [])
        readers.append(_SourceReader(source, [paths] if isinstance(paths, (str, Path)) else list(paths)))
    for reader in readers:
        for key, formats in (("separator", ("text",)), ("field", ("jsonl", "parquet"))):
            if key in reader.source and reader.source.get("format", formats[0]) not in formats:
                raise CorpusError(
                    f"source {reader.name!r}: {key!r} does not apply to format {reader.source['format']!r}"
                )
    counts: dict[str, dict] = {}
    failure: list[BaseException] = []

    def batches(with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        try:
            yield from _documents(readers, dedup, counts)
        except BaseException as e:  # re-raised below as it is, whatever polars wraps it in
            failure.append(e)
            raise

    with atomic_path(out_documents) as tmp:
        try:
            # Small row groups: the sink holds one row group in memory, and so does every
            # reader of the table (tokenizer, dataset); polars' default of 512^2 rows
            # would be gigabytes of text.
            register_io_source(batches, schema=TABLE_SCHEMA).sink_parquet(tmp, row_group_size=ROW_GROUP_DOCUMENTS)
        except BaseException:
            if failure:
                raise failure[0] from None
            raise
    documents = sum(c["documents"] for c in counts.values())
    manifest = {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "documents": documents,
        "bytes": sum(c["bytes"] for c in counts.values()),
        "dedup": dedup,
        "duplicates_removed": sum(c["duplicates"] for c in counts.values()),
        "sources": [
            r.manifest(counts[r.name]["documents"], counts[r.name]["bytes"], counts[r.name]["duplicates"])
            for r in readers
        ],
        "documents_sha256": sha256_file(out_documents),
    }
    # A corpus of one source whose entropy rate is known (a calibration source): later stages compare
    # the fitted floor with it.
    if len(manifest["sources"]) == 1 and "entropy" in manifest["sources"][0]:
        source = manifest["sources"][0]
        manifest["known_entropy"] = {"bits_per_byte": source["entropy"]["bits_per_byte"], "source": source["name"]}
    write_json_atomic(out_manifest, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", required=True, help="JSON list of source settings")
    parser.add_argument(
        "--download",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a downloaded file of source NAME; repeat, in the order of its urls",
    )
    parser.add_argument("--dedup", action="store_true", help="remove exact duplicate documents")
    parser.add_argument("--out-documents", required=True, type=Path)
    parser.add_argument("--out-manifest", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        downloads: dict[str, list[str]] = {}
        for item in args.download:
            name, path = item.split("=", 1)
            downloads.setdefault(name, []).append(path)
        manifest = build(json.loads(args.sources), downloads, args.out_documents, args.out_manifest, dedup=args.dedup)
        print(
            f"corpus: {manifest['documents']} documents, {manifest['bytes'] / 1e6:.1f} MB"
            + (f", {manifest['duplicates_removed']} duplicates removed" if args.dedup else "")
        )
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "corpus"))
