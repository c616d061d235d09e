"""Corpus stage: gather documents from the configured sources into one table.

Sources:
- ``builtin: stdlib``: the ``.py`` files of the running interpreter's standard
  library (about 30 MB of real code and prose), read offline, one document per
  file in sorted order. Files that are not valid UTF-8 are skipped and listed.
- ``url`` (http, https or file): downloaded by ``download`` and verified by
  sha256 before use; split into documents on ``separator`` (or one document).

Output: a documents table (parquet, via polars) with one row per document,
and a manifest recording hashes, sizes and the Python version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
from tqdm import tqdm

from workflow.io import CHUNK_BYTES, atomic_path, sha256_bytes, sha256_file, write_json_atomic


class CorpusError(RuntimeError):
    pass


# --------------------------------------------------------------------------- download

def download(url: str, out: str | Path, sha256: str, timeout_s: float = 60.0) -> Path:
    """Stream ``url`` to ``out``, verifying its sha256; nothing is left on failure."""
    out = Path(out)
    digest = hashlib.sha256()
    with atomic_path(out) as tmp:
        try:
            response = urllib.request.urlopen(url, timeout=timeout_s)
        except urllib.error.HTTPError as e:
            raise CorpusError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise CorpusError(f"download of {url} failed: {e.reason}") from None
        with response, open(tmp, "wb") as f:
            total = response.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=f"download {Path(url).name}", disable=None) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        seen = digest.hexdigest()
        if seen != sha256.lower():
            raise CorpusError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {seen}; "
                f"the download was discarded"
            )
    return out


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


def read_downloaded(path: Path, source: dict) -> tuple[list[dict], dict]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"source {source['name']!r} ({source['url']}) is not UTF-8: invalid byte at offset {e.start}"
        ) from None
    separator = source.get("separator")
    parts = text.split(separator) if separator else [text]
    documents = [{"name": f"{i:08d}", "text": part} for i, part in enumerate(parts) if part.strip()]
    info = {"kind": "url", "url": source["url"], "sha256": sha256_bytes(data), "separator": separator}
    return documents, info


def collect_documents(sources: list[dict], downloads: dict[str, Path]) -> tuple[pl.DataFrame, dict]:
    frames, infos = [], []
    for source in sources:
        if source.get("builtin") == "stdlib":
            documents, info = read_stdlib(source.get("glob", "**/*.py"))
        elif "url" in source:
            documents, info = read_downloaded(Path(downloads[source["name"]]), source)
        else:
            raise CorpusError(f"source {source['name']!r} has neither 'builtin' nor 'url'")
        if not documents:
            raise CorpusError(f"source {source['name']!r} yielded no documents")
        frame = pl.DataFrame(
            {
                "source": [source["name"]] * len(documents),
                "name": [d["name"] for d in documents],
                "text": [d["text"] for d in documents],
            },
            schema={"source": pl.String, "name": pl.String, "text": pl.String},
        ).with_columns(bytes=pl.col("text").str.len_bytes().cast(pl.Int64))
        info.update(name=source["name"], documents=frame.height, bytes=int(frame["bytes"].sum()))
        frames.append(frame)
        infos.append(info)
    table = pl.concat(frames)
    manifest = {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "documents": table.height,
        "bytes": int(table["bytes"].sum()),
        "sources": infos,
    }
    return table, manifest


def build(sources: list[dict], downloads: dict[str, Path], out_documents: Path, out_manifest: Path) -> dict:
    table, manifest = collect_documents(sources, downloads)
    with atomic_path(out_documents) as tmp:
        table.write_parquet(tmp)
    manifest["documents_sha256"] = sha256_file(out_documents)
    write_json_atomic(out_manifest, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.corpus", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_dl = sub.add_parser("download", help="fetch one url source and verify its sha256")
    p_dl.add_argument("--url", required=True)
    p_dl.add_argument("--sha256", required=True)
    p_dl.add_argument("--out", required=True, type=Path)
    p_build = sub.add_parser("build", help="build the documents table and manifest")
    p_build.add_argument("--sources", required=True, help="JSON list of source settings")
    p_build.add_argument("--download", action="append", default=[], metavar="NAME=PATH")
    p_build.add_argument("--out-documents", required=True, type=Path)
    p_build.add_argument("--out-manifest", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            download(args.url, args.out, args.sha256)
        else:
            downloads = dict(item.split("=", 1) for item in args.download)
            manifest = build(json.loads(args.sources), downloads, args.out_documents, args.out_manifest)
            print(f"corpus: {manifest['documents']} documents, {manifest['bytes'] / 1e6:.1f} MB")
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
